"""`geoassist export`: write a model in a format other engines run (transformers, vLLM)."""

from __future__ import annotations

from pathlib import Path

DESCRIPTION = """Convert CHECKPOINT (a checkpoint folder, preset or model name) to another format.

hf-llava: a transformers LlavaForConditionalGeneration folder (CLIP vision tower, LLaVA
projector, the LM with LoRA merged) with its processor and chat template. It loads with plain
transformers (no GeoAssist needed) and serves with vLLM. One RGB image per conversation; models
with token pooling or a multispectral band adapter are refused with the reason. A model with a
region decoder is exported without it: the exported model never writes <seg>, so its detect,
ground, refer, segment and change_seg answers carry no decoded geometry (GeoAssist's own
checkpoint keeps the decoder); its text answers are unchanged."""


def register(subparsers) -> None:
    import argparse

    from geoassist.export import EXPORT_FORMATS

    p = subparsers.add_parser(
        "export",
        help="export a model to the Hugging Face LLaVA format (transformers, vLLM)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "checkpoint", metavar="CHECKPOINT", help="checkpoint folder, preset or model name"
    )
    p.add_argument("--format", choices=EXPORT_FORMATS, default="hf-llava", help="target format")
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        metavar="DIR",
        help="output folder, new or empty (--force replaces an earlier export); the hidden "
        "temporary folders an interrupted export left beside it are removed",
    )
    p.add_argument(
        "--dtype",
        choices=("float32", "float16", "bfloat16"),
        help="store the weights in this dtype (default: the model's own)",
    )
    p.add_argument("--force", action="store_true", help="replace DIR if it exists")
    p.set_defaults(func=run_export)


def run_export(args) -> int:
    from geoassist.export import export_hf_llava
    from geoassist.util import quiet_transformers

    quiet_transformers()
    out = export_hf_llava(args.checkpoint, args.out, dtype=args.dtype, overwrite=args.force)
    files = sorted(p.name for p in out.iterdir())
    print(f"wrote {args.format} model to {out} ({', '.join(files)})")
    print(
        "load it with transformers: LlavaForConditionalGeneration.from_pretrained"
        f"({str(out)!r}) and AutoProcessor.from_pretrained({str(out)!r})"
    )
    return 0
