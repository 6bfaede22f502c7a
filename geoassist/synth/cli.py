"""`geoassist synth`: generate GeoSynth datasets in the real datasets' formats."""

from __future__ import annotations

import argparse
import time

from geoassist.synth.types import FormatKindError, SynthError

KIND_FORMATS = {
    "hr": ["rsvqa", "dota", "dior", "dior-rsvg", "karpathy", "coco", "folders", "geotiff", "geosynth"],
    "ms": ["rsvqa", "karpathy", "eurosat", "folders", "geotiff", "geosynth"],
    "pair": ["levir-cd", "levir-cc", "geosynth"],
    "series": ["levir-cd", "levir-cc", "geosynth"],
}


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("synth", help="generate synthetic EO scenes with exact ground truth", description=__doc__)
    p.add_argument("--out", required=True, help="output folder; each format goes to OUT/<format>/")
    p.add_argument("--n", type=int, default=None, help="number of samples (default 10)")
    p.add_argument("--seed", type=int, default=0, help="same seed, byte-identical output")
    p.add_argument("--kind", choices=["hr", "ms", "pair", "series"], default="hr")
    p.add_argument("--formats", default="", help="comma-separated: rsvqa,dota,dior,dior-rsvg,levir-cd,levir-cc,karpathy,coco,eurosat,folders,geotiff,geosynth")
    p.add_argument("--split", default="train", help="split name written where the real dataset puts it")
    p.add_argument("--size", type=int, default=None, help="image side in pixels (default 512 hr, 256 otherwise)")
    p.add_argument("--georef", action="store_true", help="also write GeoTIFFs with a UTM CRS and a GSD-matching transform")
    p.add_argument("--nir", action="store_true", help="HR scenes get a fourth, near-infrared band")
    p.add_argument("--workers", type=int, default=1, help="worker processes")
    p.add_argument("--preview", action="store_true", help="write OUT/preview.png: annotated contact sheet beside a real sample")
    t = p.add_argument_group("tiled mode: one large GeoTIFF (OUT/large_scene.tif, .json, .geojson) mosaicked from scenes, written window by window")
    t.add_argument("--tiled", action="store_true", help="write one --size × --size HR raster instead of --n samples")
    t.add_argument("--compress", choices=["jpeg", "deflate"], default=None, help="tiled: block compression (default jpeg)")
    t.add_argument("--overviews", action="store_true", help="tiled: add internal overviews (as in a COG)")
    t.add_argument("--pool", type=int, default=None, help="tiled: draw pieces (with flips) from this many scenes instead of one scene each")
    t.add_argument("--piece-px", type=int, default=None, help="tiled: side of each mosaicked scene (default 1024)")
    t.add_argument("--labels", action="store_true", help="tiled: a fourth band with each object's class code (needs --compress deflate)")
    p.set_defaults(func=run)


TILED_ONLY = ("compress", "overviews", "pool", "piece_px", "labels")


def check_tiled(args: argparse.Namespace) -> None:
    """Refuses option combinations that tiled mode (or the sample mode) cannot honour."""
    if not args.tiled:
        given = [f"--{k.replace('_', '-')}" for k in TILED_ONLY if getattr(args, k) not in (None, False)]
        if given:
            raise SynthError(f"{', '.join(given)} only apply with --tiled")
        return
    problems = []
    if args.kind != "hr":
        problems.append(f"--tiled writes high-resolution scenes only (--kind hr), not --kind {args.kind}")
    if args.size is None:
        problems.append("--tiled needs --size (the raster's side in pixels, e.g. --size 40000)")
    for flag, value in (("--formats", args.formats), ("--n", args.n), ("--preview", args.preview), ("--nir", args.nir), ("--split", args.split != "train")):
        if value:
            problems.append(f"{flag} does not apply with --tiled (it writes one raster and its annotation)")
    if args.labels and (args.compress or "jpeg") == "jpeg":
        problems.append("--labels needs --compress deflate (JPEG would blur the class codes)")
    if problems:
        raise SynthError("; ".join(problems))


def run_tiled(args: argparse.Namespace) -> int:
    from geoassist.synth.large import generate_large_scene

    t0 = time.perf_counter()
    result = generate_large_scene(
        f"{args.out}/large_scene.tif", args.size, args.seed, georef=args.georef, compress=args.compress or "jpeg",
        overviews=args.overviews, pool=args.pool or 0, piece_px=args.piece_px or 1024, labels=args.labels, workers=args.workers,
    )  # fmt: skip
    dt = time.perf_counter() - t0
    print(f"wrote {result.path} ({result.width}×{result.height}, {result.n_pieces} scenes, {result.n_objects} objects) and {result.annotation_path.name}"
          f"{' and ' + result.geojson_path.name if result.geojson_path else ''} in {dt:.1f} s")  # fmt: skip
    return 0


def run(args: argparse.Namespace) -> int:
    from geoassist.synth.pipeline import generate_dataset

    check_tiled(args)
    if args.tiled:
        return run_tiled(args)
    args.n = 10 if args.n is None else args.n

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
