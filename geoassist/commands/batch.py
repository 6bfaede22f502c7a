"""`geoassist batch`: answer one or more prompts about every image of an archive, into JSONL.

The work is :func:`geoassist.batch.run_archive` (batched, resumable); this module is its
command line.
"""

from __future__ import annotations

from pathlib import Path

from geoassist.batch import (
    FOLDER_SUFFIXES,
    LIST_SUFFIXES,
    build_requests,
    collect_images,
    read_prompts,
    run_archive,
)
from geoassist.errors import GeoAssistError

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
    from geoassist.commands.core import _bands, read_prompt
    from geoassist.request import AskRequest
    from geoassist.util import quiet_transformers

    images = collect_images(args.images)
    prompts = [read_prompt(args.prompt)] if args.prompt is not None else read_prompts(args.prompts)
    if args.task is None and not any(prompts):
        raise GeoAssistError("the prompt is empty; give a question, @FILE, or --task")
    requests = build_requests(images, prompts)
    template = AskRequest.build(
        task=args.task, bands=_bands(args.bands), max_new_tokens=args.max_new_tokens
    )
    quiet_transformers()
    assistant = Assistant.from_pretrained(args.model or DEFAULT_MODEL, device=args.device)
    counts = run_archive(
        assistant, requests, args.out, batch_size=args.batch_size, progress=not args.no_progress,
        template=template,
    )  # fmt: skip
    print(
        f"{counts['answered']} answered, {counts['failed']} failed, {counts['skipped']} already in "
        f"{args.out} (of {counts['total']} requests)"
    )
    return 0
