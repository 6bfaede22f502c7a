"""`geoassist serve`: the chat app in the browser (one process; see docs/APP.md)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from geoassist.errors import GeoAssistError

DESCRIPTION = """Serve the GeoAssist app: chat about uploaded imagery (one image, a before/after
pair or a short series, PNG/JPEG/GeoTIFF), see boxes, outlines and masks drawn on the image,
and download georeferenced answers as GeoJSON. The named API endpoint `ask` (image, prompt,
task) lets gradio_client scripts use the same model. Binds 127.0.0.1 unless --host says
otherwise; no public link unless --share."""


def register(subparsers) -> None:
    from geoassist.assistant import DEFAULT_MODEL

    p = subparsers.add_parser(
        "serve",
        help="the chat app in the browser (Gradio)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"checkpoint folder, preset (tiny, mini…) or model name (default {DEFAULT_MODEL})",
    )
    p.add_argument(
        "--kb", metavar="KB", help="ground answers in a knowledge store: a folder or 'default'"
    )
    p.add_argument(
        "--kb-k", type=int, default=5, help="passages retrieved per question (default 5)"
    )
    p.add_argument("--device", help="cpu, cuda, cuda:1… (default: cuda when available)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument(
        "--share", action="store_true", help="also make a temporary public link (off by default)"
    )
    p.add_argument(
        "--concurrency", type=int, default=2, help="answers generated at once (default 2)"
    )
    p.add_argument(
        "--max-queue", type=int, default=32, help="requests allowed to wait (default 32)"
    )
    p.add_argument(
        "--max-file-size", default="50mb", help="largest upload, e.g. 50mb, 2gb (default 50mb)"
    )
    p.add_argument(
        "--max-prompt-chars", type=int, default=2000, help="longest prompt (default 2000)"
    )
    p.add_argument(
        "--timeout", type=float, default=120.0, help="seconds one answer may take (default 120)"
    )
    p.add_argument("--max-new-tokens", type=int, default=256, help="longest answer in tokens")
    p.add_argument(
        "--examples", type=Path, metavar="DIR", help="folder of example images (default: examples/)"
    )
    p.set_defaults(func=run_serve)


def _check(args) -> None:
    for name in ("concurrency", "max_queue", "max_prompt_chars", "max_new_tokens", "kb_k"):
        if getattr(args, name) < 1:
            raise GeoAssistError(f"--{name.replace('_', '-')} must be at least 1")
    if args.timeout <= 0:
        raise GeoAssistError("--timeout must be a positive number of seconds")
    if not 0 < args.port < 65536:
        raise GeoAssistError(f"--port {args.port} is not a port number (1–65535)")
    if args.examples is not None and not args.examples.is_dir():
        raise GeoAssistError(f"--examples {args.examples}: no such folder")


def run_serve(args) -> int:
    from geoassist.util import quiet_transformers

    _check(args)
    # The app reports nothing about its users unless its operator turns Gradio's analytics on.
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from geoassist.extras import require

    require("gradio", "app", "geoassist serve")
    from geoassist.app.server import ServeOptions, serve

    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"note: binding {args.host}: anyone who can reach this machine on port {args.port} "
            "can use the app and upload files to it",
            file=sys.stderr,
        )
    quiet_transformers()
    options = ServeOptions(
        model=args.model,
        kb=args.kb,
        kb_k=args.kb_k,
        device=args.device,
        host=args.host,
        port=args.port,
        share=args.share,
        concurrency=args.concurrency,
        max_queue=args.max_queue,
        max_file_size=args.max_file_size,
        max_prompt_chars=args.max_prompt_chars,
        timeout_s=args.timeout,
        max_new_tokens=args.max_new_tokens,
        examples=args.examples,
    )
    try:
        serve(options)
    except OSError as exc:
        raise GeoAssistError(
            f"cannot serve on {args.host}:{args.port} ({exc}); pick another --port"
        ) from None
    return 0
