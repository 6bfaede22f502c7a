"""Two-process data parallel training on the CPU (gloo), started by ``accelerate launch``.

The same code path as DDP on GPUs: each process trains on its shard of every global batch,
gradients are averaged, the main process alone writes checkpoints, logs and the final model.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("accelerate")


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kwargs)


def test_ddp_two_cpu_processes_train_and_resume(tmp_path):
    bin_dir = Path(sys.executable).parent
    data = tmp_path / "data"
    built = _run(
        [
            str(bin_dir / "geoassist"), "data", "build", "geosynth",
            "--src", "seed=5,size=64,kinds=hr", "--out", str(data),
            "--option", 'splits={"train": 8}',
        ]
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    out = tmp_path / "run"
    config = tmp_path / "run.yaml"
    config.write_text(
        f"stage: 2\nmodel: tiny\nout_dir: {out}\n"
        f"data: {{train: [{data}], train_split: train, max_length: 256}}\n"
        "optim: {max_steps: 4, batch_size: 2}\nsave_every: 2\nlog_every: 1\n"
    )
    launch = [
        sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
        "-m", "geoassist.train", str(config),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = _run(launch, env=env)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (out / "final" / "config.json").is_file()
    with open(out / "log.csv") as f:
        steps = [int(r["step"]) for r in csv.DictReader(f)]
    assert steps == [1, 2, 3, 4]  # one writer: the main process
    checkpoints = sorted(p.name for p in (out / "checkpoints").iterdir())
    assert checkpoints[-1] == "step-0000004"
    # Longer run in the same folder: both processes resume from step 4.
    again = _run([*launch, "--set", "optim.max_steps=6"], env=env)
    assert again.returncode == 0, again.stderr[-3000:]
    with open(out / "log.csv") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [1, 2, 3, 4, 5, 6]
