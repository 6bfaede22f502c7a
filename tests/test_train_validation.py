"""Longer runs: the best checkpoint by validation loss, and a card that adds up training time
and samples per task across continued runs."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from geoassist.splits import record_split
from geoassist.train.config import config_from_dict
from geoassist.train.data import validation_samples


@pytest.fixture(scope="module")
def geosynth(tmp_path_factory):
    from geoassist.data_recipes import build

    out = tmp_path_factory.mktemp("gs") / "geosynth"
    build("geosynth", "seed=5,size=64,kinds=hr+pair", out, options={"splits": {"train": 3, "val": 2}})
    return out


def test_validation_samples_are_val_seeds_and_real_val_images(geosynth, tmp_path):
    from test_recipes_vqa import make_rsvqa

    from geoassist.data_recipes import build

    make_rsvqa(tmp_path / "rsvqa_src", "lr")
    build("rsvqa_lr", tmp_path / "rsvqa_src", tmp_path / "rsvqa")
    samples = validation_samples([str(geosynth), str(tmp_path / "rsvqa")], tasks=None, seed=0, limit=10_000)
    by_source: dict[str, set] = {}
    for s in samples:
        side = record_split(s.record)
        by_source.setdefault(s.record["source"], set()).add(side if side is not None else s.record["split"])
    assert by_source == {"geosynth": {"val"}, "rsvqa_lr": {"val"}}
    # a fixed, seeded choice
    first = [s.record["id"] for s in validation_samples([str(geosynth)], tasks=None, seed=3, limit=5)]
    assert first == [s.record["id"] for s in validation_samples([str(geosynth)], tasks=None, seed=3, limit=5)]
    assert len(first) == 5


def test_final_weights_are_the_best_validated_and_the_card_adds_up(geosynth, tmp_path):
    from geoassist.train.trainer import train

    def run(name, model, steps):
        config = config_from_dict(
            {
                "stage": 2, "model": model, "out_dir": str(tmp_path / name),
                "data": {"train": [str(geosynth)], "val": [str(geosynth)], "val_limit": 6, "max_length": 384},
                "optim": {"max_steps": steps, "batch_size": 2, "lr": 5e-3},
                "stage2": {"packing": True}, "lora": {"r": 4, "alpha": 8},
                "val_every": 2, "save_every": 2, "seed": 1,
            }
        )  # fmt: skip
        return train(config)

    first = run("first", "tiny", 4)
    best = json.loads((tmp_path / "first" / "best" / "best.json").read_text())
    assert [h["step"] for h in best["history"]] == [2, 4]
    assert best["val_loss"] == min(h["val_loss"] for h in best["history"])
    card = json.loads((first.final / "geoassist.json").read_text())["card"]
    assert card["validation"]["step"] == best["step"]
    kept = load_file(str(tmp_path / "first" / "best" / "trainable.safetensors"))
    final_projector = load_file(str(first.final / "projector.safetensors"))
    for name, value in final_projector.items():
        torch.testing.assert_close(value.float(), kept[f"model.projector.{name}"].float())
    seen = card["samples_per_task"]
    assert sum(seen.values()) >= 4 * 2 and card["cumulative_samples_per_task"] == seen
    assert "Cumulative training time" in card["training_data"]

    second = run("second", str(first.final), 2)
    again = json.loads((second.final / "geoassist.json").read_text())["card"]
    assert again["cumulative_minutes"] == pytest.approx(
        card["cumulative_minutes"] + again["compute_minutes"], abs=0.011
    )
    for task, n in again["cumulative_samples_per_task"].items():
        assert n == seen.get(task, 0) + again["samples_per_task"].get(task, 0)


def test_val_every_needs_validation_data():
    from geoassist.errors import ConfigError

    with pytest.raises(ConfigError, match="data.val"):
        config_from_dict({"stage": 2, "model": "tiny", "out_dir": "x", "data": {"train": ["a"]}, "val_every": 5})
