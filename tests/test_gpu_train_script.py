"""bench/gpu_train.sh, run with tiny shapes on the CPU: the pipeline, the checkpoint and its card
in OUT_DIR, the figures file, and nothing written anywhere else."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_train_script_runs_with_tiny_shapes(tmp_path):
    out = tmp_path / "out"
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "GEOASSIST_GPU_SCALE": "tiny", "HOME": str(home)}
    env.pop("GEOASSIST_CACHE", None)
    done = subprocess.run(
        ["bash", str(REPO / "bench" / "gpu_train.sh"), str(out)],
        env=env, capture_output=True, text=True, timeout=1200,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    model = out / "model"
    for name in ("config.json", "README.md", "geoassist.json", "projector.safetensors"):
        assert (model / name).is_file(), name
    card = json.loads((model / "geoassist.json").read_text())["card"]
    assert card["name"] == "geoassist-mini-gpu"
    assert card["validation"]["step"] in (2, 4) and card["cumulative_minutes"] > 0
    assert sum(card["samples_per_task"].values()) > 0
    figures = (out / "gpu_train.md").read_text()
    assert "supervised answers seen:" in figures and "geosynth_test" in figures
    # the continuation trained on a new GeoSynth seed range, with its features cached
    work = out / "work"
    assert (work / "data" / "geosynth_train-seed1" / "manifest.json").is_file()
    assert list((work / "features").rglob("*.safetensors"))
    assert not (work / "stage1").exists()
    # nothing outside OUT_DIR: no cache in the home folder, no run folder in the repository
    assert not any(home.rglob("*")), sorted(str(p) for p in home.rglob("*"))[:5]
    assert not (REPO / "runs" / "geoassist-mini-gpu").exists()
