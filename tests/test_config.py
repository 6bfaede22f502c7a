"""Configs: JSON round trip, presets, validation with messages that say what to fix."""

from __future__ import annotations

import json

import pytest

from geoassist.config import ModelConfig, list_presets, load_preset
from geoassist.errors import ConfigError


@pytest.mark.parametrize("name", list_presets())
def test_every_preset_loads_and_round_trips(name, tmp_path):
    config = load_preset(name)
    path = tmp_path / "config.json"
    config.to_json(path)
    assert ModelConfig.from_json(path) == config
    assert config.num_image_tokens > 0


def test_presets_cover_test_cpu_and_real_scale():
    names = set(list_presets())
    assert {"tiny", "mini", "rs-large"} <= names
    assert load_preset("mini").lm.source == "smollm2"
    assert load_preset("rs-large").vision.open_clip_arch == "ViT-L-14-quickgelu"


@pytest.mark.parametrize(
    "patch,match",
    [
        ({"projector": {"type": "mlp3x"}}, "projector type"),
        ({"vision": {"image_size": 30, "patch_size": 8}}, "multiple of patch_size"),
        ({"lm": {"source": "pretrained"}}, "name_or_path"),
        ({"lora": {"r": 0}}, "lora r"),
        (
            {
                "preprocess": {
                    "image_size": 32,
                    "bands": ["red", "green"],
                    "mean": [0, 0],
                    "std": [1, 1],
                }
            },
            "3 bands",
        ),
        ({"preprocess": {"image_size": 64}}, "differs from the vision tower"),
        ({"vision": {"bogus": 1}}, "unknown config field"),
        ({"projector": {"token_pool": 3}}, "must divide"),
    ],
)
def test_invalid_configs_are_explained(patch, match):
    data = load_preset("tiny").to_dict()
    for section, values in patch.items():
        data[section].update(values)
    with pytest.raises(ConfigError, match=match):
        ModelConfig.from_dict(data)


def test_bad_json_is_a_config_error(tmp_path):
    path = tmp_path / "config.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        ModelConfig.from_json(path)
    path.write_text(json.dumps([1, 2]))
    with pytest.raises(ConfigError, match="JSON object"):
        ModelConfig.from_json(path)
    with pytest.raises(ConfigError, match="no model preset"):
        load_preset("huge")


def test_prompt_templates_are_documented():
    from pathlib import Path

    from geoassist.prompts import TASKS

    doc = (Path(__file__).resolve().parents[1] / "docs" / "PROMPTS.md").read_text()
    for task in TASKS.values():
        assert f"`{task.template}`" in doc, f"docs/PROMPTS.md lacks the template of {task.name}"
