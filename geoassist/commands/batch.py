"""`geoassist batch`: answer one or more prompts about every image of an archive, into JSONL.

Requests are answered ``--batch-size`` at a time through :meth:`Assistant.ask_batch`
(left-padded batched generation), so a run goes at the batched speed. Each answer is one
JSON line, written as soon as its batch is done; a run that stops (crash, Ctrl-C, a full
disk) is resumed by running the same command again: requests whose id is already in the
output are skipped.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geoassist.errors import GeoAssistError

logger = logging.getLogger(__name__)

# What a folder is searched for (ENVI data files are left out: their .hdr pairs are ambiguous).
FOLDER_SUFFIXES = (
    ".png",
    ".jpg",
    ".jpeg",
    ".tif",
    ".tiff",
    ".gtif",
    ".jp2",
    ".webp",
    ".bmp",
    ".gif",
)
LIST_SUFFIXES = (".txt", ".lst", ".list")

DESCRIPTION = (
    """Answer PROMPT (or every prompt of --prompts FILE) about every image, batched, into a
JSONL file with one line per request: {"id", "image", "prompt", "task", "text", "boxes", …}.

IMAGE may be an image file, a folder (searched recursively for """
    + ", ".join(FOLDER_SUFFIXES)
    + """)
or a list file ("""
    + ", ".join(LIST_SUFFIXES)
    + """: one image path per line, relative to the list's
folder; '#' starts a comment). With several prompts every image gets every prompt, and ids are
IMAGE#pN. Running the same command again skips the ids already in --out, so an interrupted run
resumes; a request that fails (an unreadable file) gets a line with "error" and is not retried."""
)


@dataclass
class Request:
    id: str
    image: str
    prompt: str
    prompt_index: int


# ----------------------------------------------------------------- inputs
def collect_images(inputs: Sequence[str | Path]) -> list[str]:
    """Image paths from files, folders (recursive, sorted) and list files, in the given order,
    without duplicates."""
    images: list[str] = []
    for item in inputs:
        path = Path(item).expanduser()
        if path.is_dir():
            found = sorted(
                p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in FOLDER_SUFFIXES
            )
            if not found:
                raise GeoAssistError(
                    f"no images ({', '.join(FOLDER_SUFFIXES)}) in the folder {path}"
                )
            images += [str(p) for p in found]
        elif path.suffix.lower() in LIST_SUFFIXES:
            images += _read_list(path)
        else:
            images.append(str(item))
    seen: set[str] = set()
    return [p for p in images if not (p in seen or seen.add(p))]


def _read_list(path: Path) -> list[str]:
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise GeoAssistError(f"cannot read the image list {path}: {exc.strerror}") from exc
    out = []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            entry = Path(line).expanduser()
            out.append(str(entry if entry.is_absolute() else path.parent / entry))
    if not out:
        raise GeoAssistError(f"the image list {path} names no images")
    return out


def read_prompts(path: str | Path) -> list[str]:
    """One prompt per non-empty line (a JSON string on a line may hold newlines)."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise GeoAssistError(f"cannot read the prompts file {path}: {exc.strerror}") from exc
    prompts = []
    for line in lines:
        line = line.strip()
        if not line:
            continue
        if line.startswith('"'):
            try:
                line = json.loads(line)
            except json.JSONDecodeError:
                pass
        prompts.append(line)
    if not prompts:
        raise GeoAssistError(f"the prompts file {path} holds no prompt")
    return prompts


def build_requests(images: Sequence[str], prompts: Sequence[str]) -> list[Request]:
    """Every image × every prompt, prompt by prompt (equal prompts batch without padding)."""
    if not images:
        raise GeoAssistError("no images given")
    many = len(prompts) > 1
    return [
        Request(f"{image}#p{k}" if many else image, image, prompt, k)
        for k, prompt in enumerate(prompts)
        for image in images
    ]


def done_ids(out: Path) -> set[str]:
    """Ids already answered in ``out`` (a torn last line from a killed run is ignored)."""
    ids: set[str] = set()
    if not out.is_file():
        return ids
    with out.open() as f:
        for line in f:
            try:
                ids.add(json.loads(line)["id"])
            except (json.JSONDecodeError, KeyError, TypeError):
                continue
    return ids


# ------------------------------------------------------------------- run
def answer_requests(
    assistant,
    requests: Sequence[Request],
    *,
    batch_size: int = 8,
    ask_options: dict[str, Any] | None = None,
    generate_options: dict[str, Any] | None = None,
) -> Iterator[tuple[list[Request], list[dict[str, Any]]]]:
    """Yield each chunk of ``batch_size`` requests with its result records.

    A chunk that fails as a whole (one unreadable image) is answered one by one, so only the
    bad request gets an ``error`` record.
    """
    ask_options = ask_options or {}
    generate_options = generate_options or {}
    for start in range(0, len(requests), batch_size):
        chunk = list(requests[start : start + batch_size])
        asks = [{"image": r.image, "prompt": r.prompt, **ask_options} for r in chunk]
        try:
            answers = assistant.ask_batch(asks, batch_size=len(chunk), **generate_options)
            records = [_record(r, a, ask_options) for r, a in zip(chunk, answers, strict=True)]
        except GeoAssistError:
            records = []
            for request, ask in zip(chunk, asks, strict=True):
                try:
                    (answer,) = assistant.ask_batch([ask], batch_size=1, **generate_options)
                    records.append(_record(request, answer, ask_options))
                except GeoAssistError as exc:
                    logger.warning("%s: %s", request.id, exc)
                    records.append(_error_record(request, exc, ask_options))
        yield chunk, records


def _record(request: Request, answer, ask_options: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": request.id,
        "image": request.image,
        "prompt": request.prompt,
        **answer.to_dict(),
        "task": answer.task or ask_options.get("task"),
    }


def _error_record(request: Request, exc: Exception, ask_options: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": request.id,
        "image": request.image,
        "prompt": request.prompt,
        "task": ask_options.get("task"),
        "error": str(exc),
    }


def run_archive(
    assistant,
    requests: Sequence[Request],
    out: str | Path,
    *,
    batch_size: int = 8,
    progress: bool = True,
    ask_options: dict[str, Any] | None = None,
    generate_options: dict[str, Any] | None = None,
) -> dict[str, int]:
    """Answer the requests whose ids are not yet in ``out`` and append their lines to it.

    Returns counts: ``total``, ``skipped`` (already there), ``answered``, ``failed``.
    """
    from tqdm import tqdm

    if batch_size < 1:
        raise GeoAssistError(f"--batch-size must be at least 1, got {batch_size}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = done_ids(out)
    todo = [r for r in requests if r.id not in done]
    counts = {
        "total": len(requests),
        "skipped": len(requests) - len(todo),
        "answered": 0,
        "failed": 0,
    }
    _end_with_newline(out)
    bar = tqdm(total=len(todo), unit="req", disable=not progress, dynamic_ncols=True, desc="batch")
    try:
        with out.open("a", encoding="utf-8") as f:
            for _, records in answer_requests(
                assistant, todo, batch_size=batch_size,
                ask_options=ask_options, generate_options=generate_options,
            ):  # fmt: skip
                for record in records:
                    f.write(json.dumps(record, ensure_ascii=False) + "\n")
                    counts["failed" if "error" in record else "answered"] += 1
                f.flush()
                os.fsync(f.fileno())
                bar.update(len(records))
    finally:
        bar.close()
    return counts


def _end_with_newline(path: Path) -> None:
    """A killed run may leave a torn last line; start the next line on a fresh one."""
    if path.is_file() and path.stat().st_size:
        with path.open("rb+") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                f.write(b"\n")


# -------------------------------------------------------------------- CLI
def register(subparsers) -> None:
    import argparse

    from geoassist.prompts import TASKS

    p = subparsers.add_parser(
        "batch",
        help="answer prompts about many images (a folder, a list), batched and resumable, into JSONL",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files, folders or list files")
    prompts = p.add_mutually_exclusive_group(required=True)
    prompts.add_argument(
        "--prompt", help="the prompt for every image ('@FILE' reads it from a file)"
    )
    prompts.add_argument("--prompts", type=Path, metavar="FILE", help="one prompt per line")
    p.add_argument("--out", type=Path, required=True, metavar="RESULTS.jsonl", help="output file")
    p.add_argument(
        "--model", help="checkpoint folder, preset or model name (default: the trained default)"
    )
    p.add_argument(
        "--batch-size", type=int, default=8, help="requests per generate call (default 8)"
    )
    p.add_argument(
        "--task", choices=list(TASKS), help="use the documented prompt template of this task"
    )
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument(
        "--bands", help="comma-separated band names or 1-based indices for the RGB composite"
    )
    p.add_argument("--device", help="cpu, cuda, cuda:1… (default: cuda when available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run_batch)


def run_batch(args) -> int:
    from geoassist.assistant import DEFAULT_MODEL, Assistant
    from geoassist.commands.core import _bands, _quiet_transformers, read_prompt

    images = collect_images(args.images)
    prompts = [read_prompt(args.prompt)] if args.prompt is not None else read_prompts(args.prompts)
    if args.task is None and not any(prompts):
        raise GeoAssistError("the prompt is empty; give a question, @FILE, or --task")
    requests = build_requests(images, prompts)
    _quiet_transformers()
    assistant = Assistant.from_pretrained(args.model or DEFAULT_MODEL, device=args.device)
    ask_options: dict[str, Any] = {}
    if args.task:
        ask_options["task"] = args.task
    if args.bands:
        ask_options["bands"] = _bands(args.bands)
    counts = run_archive(
        assistant, requests, args.out, batch_size=args.batch_size, progress=not args.no_progress,
        ask_options=ask_options, generate_options={"max_new_tokens": args.max_new_tokens},
    )  # fmt: skip
    print(
        f"{counts['answered']} answered, {counts['failed']} failed, {counts['skipped']} already in "
        f"{args.out} (of {counts['total']} requests)"
    )
    return 0
