"""`geoassist synth`: generate GeoSynth datasets in the real datasets' formats."""

from __future__ import annotations

import argparse
import time

from geoassist.synth.types import FormatKindError

KIND_FORMATS = {
    "hr": ["rsvqa", "dota", "dior", "dior-rsvg", "karpathy", "coco", "folders", "geotiff", "geosynth"],
    "ms": ["rsvqa", "karpathy", "eurosat", "folders", "geotiff", "geosynth"],
    "pair": ["levir-cd", "levir-cc", "geosynth"],
    "series": ["levir-cd", "levir-cc", "geosynth"],
}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("synth", help="generate synthetic EO scenes with exact ground truth", description=__doc__)
    p.add_argument("--out", required=True, help="output folder; each format goes to OUT/<format>/")
    p.add_argument("--n", type=int, default=10, help="number of samples")
    p.add_argument("--seed", type=int, default=0, help="same seed, byte-identical output")
    p.add_argument("--kind", choices=["hr", "ms", "pair", "series"], default="hr")
    p.add_argument("--formats", default="", help="comma-separated: rsvqa,dota,dior,dior-rsvg,levir-cd,levir-cc,karpathy,coco,eurosat,folders,geotiff,geosynth")
    p.add_argument("--split", default="train", help="split name written where the real dataset puts it")
    p.add_argument("--size", type=int, default=None, help="image side in pixels (default 512 hr, 256 otherwise)")
    p.add_argument("--georef", action="store_true", help="also write GeoTIFFs with a UTM CRS and a GSD-matching transform")
    p.add_argument("--nir", action="store_true", help="HR scenes get a fourth, near-infrared band")
    p.add_argument("--workers", type=int, default=1, help="worker processes")
    p.add_argument("--preview", action="store_true", help="write OUT/preview.png: annotated contact sheet beside a real sample")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from geoassist.synth.pipeline import generate_dataset

    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    bad = [f for f in formats if f in sum(KIND_FORMATS.values(), []) and f not in KIND_FORMATS[args.kind]]
    if bad:
        fits = ", ".join(KIND_FORMATS[args.kind])
        raise FormatKindError(f"format(s) {', '.join(bad)} do not fit --kind {args.kind}; formats for {args.kind}: {fits}")
    t0 = time.perf_counter()
    written = generate_dataset(args.out, args.n, args.seed, args.kind, formats, args.split, args.size, args.georef, args.workers, args.nir, args.preview)
    dt = time.perf_counter() - t0
    print(f"wrote {args.n} {args.kind} samples to {args.out} ({', '.join(written) or 'no format'}) in {dt:.1f} s ({args.n / dt:.1f} samples/s)")
    if args.preview:
        print(f"preview: {args.out}/preview.png")
    return 0
