"""Recipe throughput: records per second for a GeoSynth build of about 10,000 records.

Baseline = the GeoSynth generator alone (the same samples generated in one process, no
records, no files). The recipe run generates the same samples, writes their images and
masks, builds and validates every record and streams them into Parquet shards with the
manifest. Both rates are printed, with the ratio recipe / generator-only (the share of the
build spent on what the recipe adds is 1 - ratio), for one process and for --workers.

    python bench/bench_recipes.py --records 10000 --workers 2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from geoassist.data_recipes import build
from geoassist.data_recipes.recipes.geosynth import parse_spec, sample_seed


def _generate_only(spec: dict, n: int) -> float:
    from geoassist.synth import generate_pair, generate_scene

    kinds = spec["kinds"]
    t0 = time.perf_counter()
    for i in range(n):
        kind = kinds[i % len(kinds)]
        seed = sample_seed(spec["seed"], "train", i)
        if kind == "pair":
            generate_pair(seed, size=spec["size"])
        else:
            generate_scene(seed, kind, size=spec["ms_size"] if kind == "ms" else spec["size"])
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--records", type=int, default=10_000, help="target number of records")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--kinds", default="hr+hr+pair+ms")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        probe = build(
            "geosynth", f"n=8,seed=99,size={args.size},kinds={args.kinds}", Path(tmp) / "probe"
        )
        per_sample = probe["written"] / 8
        n = max(1, round(args.records / per_sample))
        spec_text = f"n={n},seed=0,size={args.size},kinds={args.kinds}"
        spec = parse_spec(spec_text)
        base_s = _generate_only(spec, n)
        print(
            f"GeoSynth {n} samples ({args.kinds}, {args.size}px), about {per_sample:.1f} records per sample"
        )
        print(f"generate only, 1 process:      {n / base_s:7.1f} samples/s  (baseline)")
        for workers in sorted({1, args.workers}):
            out = Path(tmp) / f"out{workers}"
            t0 = time.perf_counter()
            manifest = build("geosynth", spec_text, out, workers=workers)
            seconds = time.perf_counter() - t0
            rate = manifest["written"] / seconds
            ratio = (n / seconds) / (n / base_s)
            print(
                f"recipe build, {workers} worker(s):    {rate:7.1f} records/s  {n / seconds:6.1f} samples/s  "
                f"({manifest['written']} records in {seconds:.1f} s; ratio vs generate-only: {ratio:.2f})"
            )


if __name__ == "__main__":
    main()
