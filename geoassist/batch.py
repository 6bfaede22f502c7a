"""Answering an archive: prompts about every image of a folder or list, batched and resumable, into JSONL.

Requests are answered ``batch_size`` at a time through :meth:`Assistant.ask_batch
<geoassist.assistant.Assistant.ask_batch>` (left-padded batched generation). Each answer
is one JSON line, written as soon as its batch is done; a run that stops (crash, Ctrl-C,
a full disk) is resumed by running it again: requests whose id is already in the output
are skipped; a torn last line left by a killed run is dropped first. A file that cannot
be read (corrupt, a decompression bomb, not an image) becomes an ``error`` line and the
rest of its chunk is answered, so a resumed run always finishes. ``geoassist batch`` is
the command-line face of :func:`run_archive`.
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
from geoassist.request import AskRequest
from geoassist.textio import read_text_file

logger = logging.getLogger(__name__)


def _read_failures() -> tuple[type[BaseException], ...]:
    """What reading one bad file can raise: the project's errors and the readers' own."""
    from PIL import Image as PILImage
    from rasterio.errors import RasterioError

    return (GeoAssistError, OSError, ValueError, MemoryError, RasterioError,
            PILImage.DecompressionBombError)  # fmt: skip

__all__ = [
    "FOLDER_SUFFIXES",
    "LIST_SUFFIXES",
    "Request",
    "answer_requests",
    "build_requests",
    "collect_images",
    "done_ids",
    "read_prompts",
    "run_archive",
]

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
    """One prompt per non-empty line (a JSON string on a line may hold newlines).

    The file must be UTF-8 text (:func:`geoassist.textio.read_text_file`).
    """
    lines = read_text_file(path, "prompts file").splitlines()
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
    template: AskRequest | None = None,
) -> Iterator[tuple[list[Request], list[dict[str, Any]]]]:
    """Yield each chunk of ``batch_size`` requests with its result records.

    Every request is ``template`` (task, bands, token budget…) with its image and prompt.
    A chunk that fails as a whole (one unreadable image) is answered one by one, so only the
    bad request gets an ``error`` record.
    """
    template = template or AskRequest()
    failures = _read_failures()
    for start in range(0, len(requests), batch_size):
        chunk = list(requests[start : start + batch_size])
        asks = [template.replace(images=[r.image], prompt=r.prompt) for r in chunk]
        try:
            answers = assistant.ask_batch(asks, batch_size=len(chunk))
            records = [_record(r, a, template) for r, a in zip(chunk, answers, strict=True)]
        except failures:
            records = []
            for request, ask in zip(chunk, asks, strict=True):
                try:
                    (answer,) = assistant.ask_batch([ask], batch_size=1)
                    records.append(_record(request, answer, template))
                except failures as exc:
                    if not isinstance(exc, GeoAssistError):
                        logger.warning("%s could not be answered", request.id, exc_info=True)
                    else:
                        logger.warning("%s: %s", request.id, exc)
                    records.append(_error_record(request, exc, template))
        yield chunk, records


def _record(request: Request, answer, template: AskRequest) -> dict[str, Any]:
    return {
        "id": request.id,
        "image": request.image,
        "prompt": request.prompt,
        **answer.to_dict(),
        "task": answer.task or template.task,
    }


def _error_record(request: Request, exc: Exception, template: AskRequest) -> dict[str, Any]:
    return {
        "id": request.id,
        "image": request.image,
        "prompt": request.prompt,
        "task": template.task,
        "error": str(exc) if isinstance(exc, GeoAssistError) else (
            f"{Path(request.image).name} could not be read ({type(exc).__name__}: {exc}); "
            "check the file or leave it out"
        ),
    }  # fmt: skip


def run_archive(
    assistant,
    requests: Sequence[Request],
    out: str | Path,
    *,
    batch_size: int = 8,
    progress: bool = True,
    template: AskRequest | None = None,
    ask_options: dict[str, Any] | None = None,
    generate_options: dict[str, Any] | None = None,
) -> dict[str, int]:
    """Answer the requests whose ids are not yet in ``out`` and append their lines to it.

    Each request is ``template`` with its image and prompt; without a template, one is built
    from ``ask_options`` (``task``, ``bands``…) and ``generate_options`` (``max_new_tokens``…),
    the keyword arguments of :meth:`Assistant.ask <geoassist.assistant.Assistant.ask>`.
    Returns counts: ``total``, ``skipped`` (already there), ``answered``, ``failed``.
    """
    from tqdm import tqdm

    if batch_size < 1:
        raise GeoAssistError(f"--batch-size must be at least 1, got {batch_size}")
    if template is None:
        template = AskRequest.build(**(ask_options or {}), **(generate_options or {}))
    elif ask_options or generate_options:
        raise GeoAssistError("give run_archive either a template request or options, not both")
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
    _drop_torn_line(out)
    bar = tqdm(total=len(todo), unit="req", disable=not progress, dynamic_ncols=True, desc="batch")
    try:
        with out.open("a", encoding="utf-8") as f:
            for _, records in answer_requests(
                assistant, todo, batch_size=batch_size, template=template
            ):
                for record in records:
                    f.write(json.dumps(record, ensure_ascii=False) + "\n")
                    counts["failed" if "error" in record else "answered"] += 1
                f.flush()
                os.fsync(f.fileno())
                bar.update(len(records))
    finally:
        bar.close()
    return counts


def _drop_torn_line(path: Path) -> None:
    """A killed run may leave a torn last line (no newline): cut it off, so every line is JSON.

    Its request is not in :func:`done_ids` and is answered again.
    """
    if not path.is_file() or not path.stat().st_size:
        return
    with path.open("rb+") as f:
        size = f.seek(0, os.SEEK_END)
        f.seek(size - 1)
        if f.read(1) == b"\n":
            return
        # Back to the end of the last complete line, a block at a time.
        end, block = size, 65536
        while end > 0:
            start = max(0, end - block)
            f.seek(start)
            at = f.read(end - start).rfind(b"\n")
            if at >= 0:
                end = start + at + 1
                break
            end = start
        logger.warning("dropped a torn last line (%d bytes) from %s", size - end, path)
        f.truncate(end)
        f.flush()
        os.fsync(f.fileno())
