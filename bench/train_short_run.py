"""A short `mini` run through stages 0–2, stopped mid-run and resumed, then loaded by ask and eval.

What it does, each step through the real command line:

1. ``geoassist train --preset mini-short --out WORKDIR`` (GeoSynth data, stage 0 contrastive
   encoder, stage 1 alignment, stage 2 instruction tuning, evaluation);
2. once stage 2 has written the checkpoint of step ``--stop-at``, SIGTERM to the run: the trainer
   saves and exits;
3. the same command again: finished stages are skipped, stage 2 resumes from its checkpoint
   and the run finishes;
4. ``geoassist ask --model WORKDIR/stage2/final`` on an example image and
   ``geoassist eval synth --model WORKDIR/stage2/final`` on the run's GeoSynth test split.

It prints the wall time of each phase and of the whole, the stage-2 loss logged around the
resume point, and the answer and scores. ``--fresh`` deletes WORKDIR first.

    python bench/train_short_run.py --workdir /tmp/geoassist-mini-short --fresh
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def geoassist(*args: str) -> list[str]:
    return [sys.executable, "-m", "geoassist", *args]


def checkpoint_steps(folder: Path) -> list[int]:
    root = folder / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(
        int(p.name.split("-")[1])
        for p in root.glob("step-*")
        if p.name.split("-")[1].isdigit() and not p.name.endswith(".tmp")
    )


def run_until_checkpoint(cmd: list[str], stage_dir: Path, step: int, log) -> tuple[int, float]:
    """Start ``cmd``; SIGTERM it once ``stage_dir`` holds a checkpoint at ``step`` or later."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, process_group=0)
    while proc.poll() is None:
        if any(s >= step for s in checkpoint_steps(stage_dir)):
            os.killpg(proc.pid, signal.SIGTERM)
            break
        time.sleep(1.0)
    code = proc.wait()
    return code, time.perf_counter() - start


def timed(cmd: list[str], log) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/geoassist-mini-short"))
    parser.add_argument("--preset", default="mini-short")
    parser.add_argument("--stop-at", type=int, default=40, help="stage-2 step to stop after")
    parser.add_argument("--fresh", action="store_true", help="delete WORKDIR first")
    args = parser.parse_args(argv)

    work: Path = args.workdir
    if args.fresh and work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True, exist_ok=True)
    stage2 = work / "stage2"
    train_cmd = geoassist("train", "--preset", args.preset, "--out", str(work))
    phases: dict[str, float] = {}
    with open(work / "short_run.log", "a") as log:
        code, phases["train until SIGTERM"] = run_until_checkpoint(
            train_cmd, stage2, args.stop_at, log
        )
        saved = checkpoint_steps(stage2)
        print(f"first run: exit code {code}, stage-2 checkpoints at steps {saved}")
        if (stage2 / "final" / "config.json").is_file():
            print("the run finished before the stop step; use a smaller --stop-at")
            return 1
        phases["resume to the end"] = timed(train_cmd, log)
        final = stage2 / "final"
        image = REPO / "examples" / "residential.png"
        ask = geoassist(
            "ask", "--model", str(final), "--json", str(image), "How many buildings are there?"
        )
        start = time.perf_counter()
        answer = subprocess.run(ask, capture_output=True, text=True, check=True).stdout
        phases["geoassist ask"] = time.perf_counter() - start
        eval_out = work / "eval-cli"
        phases["geoassist eval synth"] = timed(
            geoassist(
                "eval", "synth", "--model", str(final), "--data",
                str(work / "data" / "geosynth_test"), "--split", "test",
                "--limit", "24", "--out", str(eval_out),
            ),
            log,
        )  # fmt: skip
    with open(stage2 / "log.csv") as f:
        rows = list(csv.DictReader(f))
    around = [r for r in rows if abs(int(r["step"]) - args.stop_at) <= 10]
    report = json.loads((eval_out / "report.json").read_text())
    print(f"\n{'phase':<24} {'minutes':>8}")
    for name, seconds in phases.items():
        print(f"{name:<24} {seconds / 60:>8.2f}")
    train_minutes = (phases["train until SIGTERM"] + phases["resume to the end"]) / 60
    print(f"{'training, all stages':<24} {train_minutes:>8.2f}")
    print(f"\nstage-2 loss around the resume point (stopped after step {args.stop_at}):")
    for r in around:
        print(f"  step {r['step']:>4}  loss {float(r['loss']):.4f}")
    print(f"\ngeoassist ask: {json.loads(answer).get('raw')!r}")
    metrics = {k: v for k, v in report.get("metrics", {}).items() if isinstance(v, int | float)}
    headline = ("overall_accuracy", "CIDEr", "acc@0.5", "miou", "map@0.5", "count_within_1")
    shown = ", ".join(f"{k}={v:.3g}" for k, v in metrics.items() if k.endswith(headline))
    print(f"geoassist eval synth (n={report['n']}): {shown}")
    summary = {"phases_s": phases, "training_minutes": train_minutes, "eval": metrics}
    (work / "short_run.json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
