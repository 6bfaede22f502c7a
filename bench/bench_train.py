"""Training throughput and peak memory of each stage for the `mini` architecture.

    python bench/bench_train.py [--steps 6] [--scenes 24]

Every configuration runs in its own process (so peak RSS is its own) on the same
GeoSynth recipe output, and the table reports samples/s and peak RSS with length
grouping and gradient checkpointing on and off. Ratios are against the named
baseline of each stage (length grouping on, gradient checkpointing off), measured
in the same run.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

STAGE_BATCH = {0: 32, 1: 8, 2: 8}


def worker(data: str, stage: int, group: bool, ckpt: bool, steps: int, out: str) -> dict:
    from geoassist.sysinfo import peak_rss_mb
    from geoassist.train.config import config_from_dict
    from geoassist.train.trainer import train

    config = config_from_dict(
        {
            "stage": stage, "model": "mini", "out_dir": out,
            "data": {"train": [data], "group_by_length": group, "max_length": 512},
            "optim": {"max_steps": steps, "batch_size": STAGE_BATCH[stage], "lr": 1e-4},
            "gradient_checkpointing": ckpt, "save_every": 10_000, "log_every": 10_000,
        }
    )
    result = train(config)
    return {
        "samples_per_s": result.samples / result.loop_seconds,
        "peak_rss_mb": peak_rss_mb(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--scenes", type=int, default=24)
    parser.add_argument("--worker", nargs=5, metavar=("DATA", "STAGE", "GROUP", "CKPT", "OUT"))
    args = parser.parse_args()
    if args.worker:
        data, stage, group, ckpt, out = args.worker
        print(json.dumps(worker(data, int(stage), group == "1", ckpt == "1", args.steps, out)))
        return

    from geoassist.data_recipes import build

    tmp = Path(tempfile.mkdtemp(prefix="bench-train-"))
    data = tmp / "geosynth"
    build("geosynth", f"n={args.scenes},seed=5,size=256,kinds=hr+hr+hr+pair", data)
    runs = [(0, True, False), (0, True, True)]
    runs += [(s, g, c) for s in (1, 2) for g, c in ((True, False), (False, False), (True, True))]
    results = {}
    for stage, group, ckpt in runs:
        out = tmp / f"s{stage}g{int(group)}c{int(ckpt)}"
        cmd = [sys.executable, __file__, "--steps", str(args.steps), "--worker", str(data), str(stage), str(int(group)), str(int(ckpt)), str(out)]
        line = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        results[(stage, group, ckpt)] = json.loads(line)
    print(f"mini architecture, {args.steps} steps per run, batch {STAGE_BATCH}")
    print(f"{'stage':>5} {'group_by_length':>16} {'grad_ckpt':>10} {'samples/s':>10} {'peak RSS MB':>12} {'vs baseline':>12}")
    for (stage, group, ckpt), r in results.items():
        base = results[(stage, True, False)]
        ratio = r["samples_per_s"] / base["samples_per_s"]
        print(f"{stage:>5} {str(group):>16} {str(ckpt):>10} {r['samples_per_s']:>10.2f} {r['peak_rss_mb']:>12.0f} {ratio:>11.2f}x")
    print("baseline per stage: group_by_length on, gradient checkpointing off")


if __name__ == "__main__":
    main()
