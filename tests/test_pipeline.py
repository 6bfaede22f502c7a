"""Training pipelines: data → stages → evaluation → shipped model, resumable step by step."""

from __future__ import annotations

import json

import pytest
import yaml

from geoassist.train.pipeline import load_pipeline, run_pipeline


@pytest.mark.realdata
def test_pipeline_runs_end_to_end_on_real_rsvqa(tmp_path, rs_samples):
    spec = {
        "pipeline": "toy",
        "workdir": str(tmp_path / "work"),
        "data": [
            {"name": "rsvqa", "recipe": "rsvqa_lr", "src": str(rs_samples / "rsvqa" / "LR_reduced")},
            {"name": "absent", "recipe": "rsvqa_hr", "src": str(tmp_path / "nowhere"), "optional": True},
        ],
        "stages": [
            {
                "stage": 2, "model": "tiny", "train_split": None,
                "data": {"train": [{"path": "{data:rsvqa}", "holdout": 0.2}, "{data:absent}"], "train_split": None},
                "optim": {"max_steps": 2, "batch_size": 2}, "log_every": 1,
            }
        ],
        "evaluation": [{"task": "rsvqa", "data": "{data:rsvqa}", "holdout": 0.2, "limit": 8, "name": "rsvqa_lr_heldout"}],
        "ship_to": str(tmp_path / "shipped"),
    }
    spec["stages"][0].pop("train_split")
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec))
    summary = run_pipeline(load_pipeline(path))
    assert summary["data"]["rsvqa"]["written"] == 3003
    assert "skipped" in summary["data"]["absent"]
    assert summary["stages"]["0"]["steps"] == 2
    assert summary["scores"]["rsvqa_lr_heldout"]["n"] == 8
    card = (tmp_path / "shipped" / "README.md").read_text()
    assert "rsvqa_lr_heldout" in card and "skipped" in card
    # Everything done: a second run redoes nothing and gives the same summary.
    again = run_pipeline(load_pipeline(path))
    assert again["stages"] == summary["stages"]
    assert json.loads((tmp_path / "work" / "summary.json").read_text())["scores"] == again["scores"]
    # The final stage trained again (longer): the old scores belong to the old model.
    import shutil

    shutil.rmtree(tmp_path / "work" / "stage0" / "final")
    spec["stages"][0]["optim"]["max_steps"] = 3
    path.write_text(yaml.safe_dump(spec))
    retrained = run_pipeline(load_pipeline(path))
    assert retrained["stages"]["0"]["steps"] == 3
    assert retrained["scores_model"] != summary["scores_model"]
    assert retrained["scores"]["rsvqa_lr_heldout"]["n"] == 8
