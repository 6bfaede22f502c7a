"""`geoassist info`, `geoassist ask` and `geoassist chat`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from geoassist.errors import GeoAssistError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "info", help="versions, model presets and where their weights come from"
    )
    p.set_defaults(func=run_info)

    p = subparsers.add_parser(
        "ask",
        help="ask one question about one image (or a before/after pair)",
        description="Answer PROMPT about the images. The last positional argument is the prompt; "
        "'-' reads it from standard input and '@FILE' from a file. With no image, the question is text-only.",
    )
    p.add_argument(
        "inputs", nargs="+", metavar="IMAGE… PROMPT", help="zero or more images, then the prompt"
    )
    _model_options(p)
    p.add_argument("--json", action="store_true", help="print the whole Answer as JSON")
    p.add_argument("--stream", action="store_true", help="print the text as it is generated")
    p.add_argument(
        "--geojson",
        metavar="OUT",
        help="also write the answer's boxes, polygons and mask as GeoJSON (lon/lat) to OUT; "
        "the image must be georeferenced",
    )
    p.set_defaults(func=run_ask, trailing_positionals="inputs")

    p = subparsers.add_parser(
        "chat", help="an interactive conversation about images (type /help inside)"
    )
    p.add_argument(
        "images", nargs="*", metavar="IMAGE", help="images to talk about (a pair for change)"
    )
    _model_options(p)
    p.set_defaults(func=run_chat)


def _model_options(p: argparse.ArgumentParser) -> None:
    from geoassist.assistant import DEFAULT_MODEL
    from geoassist.prompts import TASKS

    p.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help=f"checkpoint folder, preset or model name (default {DEFAULT_MODEL})",
    )
    p.add_argument(
        "--task", choices=list(TASKS), help="use the documented prompt template of this task"
    )
    p.add_argument(
        "--region",
        type=float,
        nargs=4,
        metavar=("X1", "Y1", "X2", "Y2"),
        help="pixel box for --task region",
    )
    p.add_argument(
        "--bands", help="comma-separated band names or 1-based indices for the RGB composite"
    )
    p.add_argument(
        "--sensor",
        help="sensor preset for multispectral input (sentinel2-l1c, sentinel2-l2a, landsat8, "
        "naip, planetscope-4, …; see geoassist.sensors)",
    )
    p.add_argument(
        "--composite",
        help="encoder input made from the bands: true_color (default), false_color, swir, "
        "agriculture, urban, ndvi, ndwi, nbr, ndbi",
    )
    p.add_argument(
        "--max-tiles",
        type=int,
        metavar="N",
        help="large scenes: read at most N tiles at full resolution (default 64; 0 answers "
        "from a downscaled overview)",
    )
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="cpu, cuda, cuda:1… (default: cuda when available)")
    p.add_argument(
        "--kb",
        metavar="KB",
        help="ground answers in a knowledge store: a store folder or 'default' (the bundled one)",
    )
    p.add_argument(
        "--kb-k", type=int, default=5, help="passages retrieved per question (default 5)"
    )


def _bands(text: str | None):
    if not text:
        return None
    return [int(b) if b.strip().isdigit() else b.strip() for b in text.split(",")]


def read_prompt(text: str) -> str:
    """``-`` reads standard input, ``@FILE`` reads a file; anything else is the prompt itself.

    Each must be UTF-8 text; anything else is a :class:`~geoassist.textio.TextInputError`.
    """
    from geoassist.textio import check_text, read_stdin_text, read_text_file

    if text == "-":
        return read_stdin_text("the prompt on standard input").strip()
    if text.startswith("@"):
        return read_text_file(text[1:], "prompt file").strip()
    return check_text(text, "the prompt")


def run_info(args) -> int:
    import importlib.metadata as md

    from geoassist import __version__
    from geoassist.checkpoint import PRETRAINED, weights_dir
    from geoassist.config import list_presets, load_preset
    from geoassist.model.lm import SMOLLM2_CACHE_NAME, cache_dir, smollm2_gguf_path

    print(f"geoassist {__version__}")
    for pkg in (
        "torch",
        "transformers",
        "peft",
        "open_clip_torch",
        "rasterio",
        "faiss-cpu",
        "gradio",
    ):
        try:
            version = md.version(pkg)
        except md.PackageNotFoundError:
            version = "not installed"
        print(f"  {pkg:<16} {version}")
    import torch

    print(
        f"  device           {'cuda (' + torch.cuda.get_device_name(0) + ')' if torch.cuda.is_available() else 'cpu'}"
    )
    print("\nPresets (architectures; --model NAME builds them):")
    for name in list_presets():
        config = load_preset(name)
        lm = config.lm.name_or_path or config.lm.source
        vision = (
            config.vision.open_clip_arch
            or f"ViT {config.vision.layers}x{config.vision.width}/{config.vision.patch_size}"
        )
        weights = config.vision.weights or "random init"
        print(
            f"  {name:<10} vision {vision} ({weights}); LM {lm}; {config.num_image_tokens} visual tokens/image"
        )
    print("\nPublished models (--model NAME loads trained weights):")
    for name, entry in PRETRAINED.items():
        folder = weights_dir() / entry["folder"]
        state = "installed" if (folder / "config.json").is_file() else "not installed"
        print(f"  {name:<16} {state} at {folder}\n  {'':<16} {entry['description']}")
    print("\nWeights:")
    try:
        print(f"  SmolLM2 GGUF     {smollm2_gguf_path()}")
    except GeoAssistError as exc:
        print(f"  SmolLM2 GGUF     missing: {exc}")
    cached = cache_dir() / "lm" / SMOLLM2_CACHE_NAME
    print(
        f"  SmolLM2 cache    {cached} ({'ready' if (cached / 'model.safetensors').is_file() else 'made on first use'})"
    )
    print(f"  cache root       {cache_dir()} (set GEOASSIST_CACHE to move it)")
    return 0


def _assistant(args):
    from geoassist.assistant import Assistant
    from geoassist.util import quiet_transformers

    quiet_transformers()
    return Assistant.from_pretrained(
        args.model, device=args.device, kb=getattr(args, "kb", None), kb_k=getattr(args, "kb_k", 5)
    )


def _request(args, images: list[str], prompt: str, **changes):
    """The one request the command line builds from its flags (``changes`` override them)."""
    from geoassist.request import AskRequest

    options = dict(
        task=args.task,
        region=args.region,
        bands=_bands(args.bands),
        sensor=args.sensor,
        composite=args.composite,
        max_tiles=args.max_tiles,
        max_new_tokens=args.max_new_tokens,
        do_sample=args.sample,
        temperature=args.temperature,
        seed=args.seed,
    )
    return AskRequest.build(images or None, prompt, **{**options, **changes})


def split_inputs(inputs: list[str], task: str | None) -> tuple[list[str], str]:
    """Images and prompt from the positional arguments: the last one is the prompt, unless the
    task takes no prompt (caption, classify, change) and the last one is an existing file."""
    from geoassist.prompts import TASKS

    if task in TASKS and not TASKS[task].needs_argument and Path(inputs[-1]).is_file():
        return list(inputs), ""
    *images, prompt_arg = inputs
    return images, read_prompt(prompt_arg)


def run_ask(args) -> int:
    images, prompt = split_inputs(args.inputs, args.task)
    if args.task is None and not prompt:
        raise GeoAssistError(
            "the prompt is empty; give a question, '-' for stdin, @FILE, or --task"
        )
    assistant = _assistant(args)
    if args.stream and not args.json:
        stream = assistant.answer(_request(args, images, prompt, stream=True))
        for piece in stream:
            print(piece, end="", flush=True)
        print()
        _print_sources(stream.answer)
        _geo_outputs(stream.answer, args)
        return 0
    answer = assistant.answer(_request(args, images, prompt))
    print(answer.to_json() if args.json else answer.text)
    if not args.json:
        _print_sources(answer)
    _geo_outputs(answer, args)
    return 0


def _geo_outputs(answer, args) -> None:
    """The coverage note of a large scene (on stderr) and the --geojson file."""
    note = (answer.coverage or {}).get("note")
    if note:
        print(f"note: {note}", file=sys.stderr)
    if getattr(args, "geojson", None):
        from geoassist.geo import write_geojson

        write_geojson(answer, args.geojson)
        print(f"wrote {args.geojson}", file=sys.stderr)


def _print_sources(answer) -> None:
    """The knowledge-store passages an answer cites, one line each."""
    cited = [c for c in answer.citations if c.get("cited")]
    if cited:
        print("\nSources:")
    for c in cited:
        url = f" <{c['url']}>" if c.get("url") else ""
        print(f"  [{c['id']}] {c['title']} — {c['source']}{url}")


CHAT_HELP = """commands:
  /image PATH [PATH…]   talk about these images from now on (starts a new conversation)
  /task NAME            use a task template for the next questions (/task off to stop)
  /reset                forget the conversation
  /json                 show the last answer as JSON
  /quit                 leave (or Ctrl-D)"""


def run_chat(args) -> int:
    assistant = _assistant(args)
    images = list(args.images)
    task = args.task
    history: list[dict[str, str]] = []
    last = None
    print(f"GeoAssist chat — model {args.model}, {len(images)} image(s). /help for commands.")
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            print()
            return 0
        if not line:
            continue
        if line.startswith("/"):
            cmd, _, rest = line.partition(" ")
            if cmd in ("/quit", "/exit"):
                return 0
            if cmd == "/help":
                print(CHAT_HELP)
            elif cmd == "/reset":
                history = []
            elif cmd == "/image":
                images, history = rest.split(), []
                print(f"now talking about {len(images)} image(s)")
            elif cmd == "/task":
                task = None if rest.strip() in ("", "off") else rest.strip()
            elif cmd == "/json":
                print(last.to_json() if last else "no answer yet")
            else:
                print(f"unknown command {cmd}; /help lists them")
            continue
        try:
            request = _request(args, images, line, task=task, history=history, stream=True)
            stream = assistant.answer(request)
            print("geoassist> ", end="", flush=True)
            for piece in stream:
                print(piece, end="", flush=True)
            print()
        except GeoAssistError as exc:
            print(f"error: {exc}")
            continue
        last = stream.answer
        _print_sources(last)
        for note in last.notes:  # e.g. the oldest turns left out to fit the context
            print(f"({note})")
        history = last.history
