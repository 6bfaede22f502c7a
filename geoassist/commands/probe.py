"""`geoassist probe`: linear probes of frozen vision towers on GeoSynth and real images."""

from __future__ import annotations

from pathlib import Path

DESCRIPTION = """Freeze each model's vision tower and fit linear probes on its features.

GeoSynth (train split of one seed sequence, test split of another; both cached under
--cache-dir and reused): scene_top1, presence_map, count_mae (classes present 1-20 times),
semantic_miou (32x32 cells whatever the tower's stride) and change_iou (pairs).
--rsvqa-lr DIR adds a leave-one-image-out probe of RSVQA-LR presence questions next to the
per-question majority answer; --scenes DIR a linear probe of scene class on a folder-per-class
dataset (image-level split). --split val scores a validation split of its own seeds (for choosing
a tower); the test split is for the chosen one. Writes OUT/probe.json and OUT/probe.md."""


def register(subparsers) -> None:
    import argparse

    p = subparsers.add_parser(
        "probe",
        help="linear probes of frozen vision towers (GeoSynth and real images)",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", action="append", required=True, metavar="M",
                   help="checkpoint folder, preset or model name (repeat to compare towers)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    p.add_argument("--rsvqa-lr", type=Path, metavar="DIR", help="an RSVQA-LR folder (published layout)")
    p.add_argument("--scenes", type=Path, metavar="DIR", help="a folder-per-class scene dataset")
    p.add_argument("--scenes-limit", type=int, metavar="N", help="at most N images per scene class")
    p.add_argument("--n-train", type=int, default=1000, help="GeoSynth training scenes (default 1000)")
    p.add_argument("--n-test", type=int, default=500, help="GeoSynth test scenes (default 500)")
    p.add_argument("--pairs-train", type=int, default=200, help="GeoSynth training pairs (default 200)")
    p.add_argument("--pairs-test", type=int, default=200, help="GeoSynth test pairs (default 200; 0: no change probe)")
    p.add_argument("--size", type=int, default=256, help="GeoSynth scene size in pixels (default 256)")
    p.add_argument("--cache-dir", default="~/.cache/geoassist/synth", help="GeoSynth shard cache folder")
    p.add_argument("--workers", type=int, default=2, help="GeoSynth generation processes")
    p.add_argument("--split", choices=("val", "test"), default="test",
                   help="GeoSynth split scored: val to choose between towers, test (default) once for the chosen one")
    p.set_defaults(func=run_probe_command)


def run_probe_command(args) -> int:
    from geoassist.probe import ProbeSettings, probe_table, run_probe
    from geoassist.util import quiet_transformers

    quiet_transformers()
    settings = ProbeSettings(
        n_train=args.n_train, n_test=args.n_test, n_pairs_train=args.pairs_train,
        n_pairs_test=args.pairs_test, size=args.size, cache_dir=args.cache_dir, workers=args.workers,
        split=args.split,
    )
    results = run_probe(args.model, args.out, settings, rsvqa_lr=args.rsvqa_lr, scenes=args.scenes,
                        scenes_limit=args.scenes_limit)
    print(probe_table(results), end="")
    print(f"wrote {args.out / 'probe.json'} and {args.out / 'probe.md'}")
    return 0
