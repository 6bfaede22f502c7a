"""GeoSynth throughput: scenes per second at 512², with and without exporters.

Baseline = generation alone (plan, render, annotation, text) in one process;
the exporter run writes the named formats to a temporary folder. Both are
measured over --n scenes after a warm-up so that start-up does not count, and
the ratio (with exporters / without) is printed.

    python bench/bench_synth.py --n 300 --workers 2
"""

from __future__ import annotations

import argparse
import tempfile
import time

from geoassist.synth.noise import warm_up
from geoassist.synth.pipeline import generate_dataset, iter_samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--kind", default="hr")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--formats", default="rsvqa,dota,coco,karpathy")
    args = ap.parse_args()
    warm_up()
    for _ in iter_samples(args.kind, 5, 12345, args.size, set()):  # warm caches
        pass

    t0 = time.perf_counter()
    for _ in iter_samples(args.kind, args.n, 0, args.size, set(), workers=1):
        pass
    base = args.n / (time.perf_counter() - t0)
    print(f"generate only, 1 process:        {base:6.1f} scenes/s  ({args.n} scenes {args.size}px)")
    if args.workers > 1:
        t0 = time.perf_counter()
        for _ in iter_samples(args.kind, args.n, 0, args.size, set(), workers=args.workers):
            pass
        par = args.n / (time.perf_counter() - t0)
        print(f"generate only, {args.workers} workers:        {par:6.1f} scenes/s")
    formats = [f for f in args.formats.split(",") if f]
    for w in sorted({1, args.workers}):
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            generate_dataset(d, args.n, seed=0, kind=args.kind, formats=formats, size=args.size, workers=w, progress=False)
            rate = args.n / (time.perf_counter() - t0)
        print(f"with exporters ({','.join(formats)}), {w} worker(s): {rate:6.1f} scenes/s  ratio vs generate-only 1 process: {rate / base:.2f}")


if __name__ == "__main__":
    main()
