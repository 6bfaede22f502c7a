"""Checkpoints: one folder, safetensors only, identical logits after a round trip, atomic saves."""

from __future__ import annotations

import json

import pytest
import torch

from geoassist.chat import collate, render, with_image_slots
from geoassist.checkpoint import create_model, load_checkpoint, save_checkpoint
from geoassist.errors import CheckpointError, ModelNotFoundError, UnsafeCheckpointError


def _inputs(model):
    conv = [
        {"role": "user", "content": with_image_slots("Describe.", 2)},
        {"role": "assistant", "content": "Fields."},
    ]
    r = render(conv, model.tokenizer, num_image_tokens=model.config.num_image_tokens, num_images=2)
    batch = collate([r], model.pad_token_id)
    return batch["input_ids"], torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _perturb(model):
    # Non-zero temporal embedding and LoRA B so that a lost tensor would change the logits.
    torch.manual_seed(11)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "temporal" in name or "lora_B" in name:
                p.normal_(std=0.05)


def _assert_same_logits(a, b):
    ids, px = _inputs(a)
    with torch.no_grad():
        torch.testing.assert_close(a(ids, px).logits, b(ids, px).logits, rtol=0, atol=1e-6)


def test_round_trip_full_model(tmp_path, make_tiny):
    model = make_tiny(seed=1)
    _perturb(model)
    folder = save_checkpoint(model, tmp_path / "ckpt", card={"scores": {"vqa": {"accuracy": 0.5}}})
    names = {p.name for p in folder.iterdir()}
    assert {
        "config.json",
        "preprocess.json",
        "vision.safetensors",
        "projector.safetensors",
        "lm",
        "tokenizer",
        "README.md",
    } <= names
    assert not list(folder.rglob("*.bin")) and not list(folder.rglob("*.pt"))
    assert "| vqa | accuracy | 0.5 |" in (folder / "README.md").read_text()
    _assert_same_logits(model, load_checkpoint(folder))


def test_round_trip_lora_on_random_base_is_merged(tmp_path, make_tiny):
    model = make_tiny(seed=2, r=4, alpha=8)
    _perturb(model)
    folder = save_checkpoint(model, tmp_path / "ckpt")
    assert (folder / "lm").is_dir() and not (folder / "lm_adapter").exists()
    assert model.has_lora  # saving merged a copy, not the caller's model
    _assert_same_logits(model, load_checkpoint(folder))


def test_round_trip_lora_adapter_over_pretrained_base(tmp_path, make_tiny):
    base = make_tiny(seed=3)
    base.lm.save_pretrained(tmp_path / "base_lm")
    from geoassist.model.vlm import GeoAssistModel

    config = base.config
    config.lm.source, config.lm.name_or_path = "pretrained", str(tmp_path / "base_lm")
    config.lora.enabled, config.lora.r = True, 4
    from geoassist.model.lm import build_lm

    model = GeoAssistModel(config, base.tokenizer, lm=build_lm(config.lm, len(base.tokenizer)))
    model.vision.load_state_dict(base.vision.state_dict())
    _perturb(model)
    folder = save_checkpoint(model, tmp_path / "ckpt")
    assert (folder / "lm_adapter" / "adapter_model.safetensors").is_file() and not (
        folder / "lm"
    ).exists()
    assert json.loads((folder / "geoassist.json").read_text())["lm"] == "adapter"
    _assert_same_logits(model, load_checkpoint(folder))


def test_vision_weights_are_standard_open_clip(tmp_path):
    import open_clip
    from safetensors.torch import load_file, save_file

    from geoassist.config import VisionConfig
    from geoassist.model.vision import VisionTower

    torch.manual_seed(0)
    tower = VisionTower(VisionConfig(open_clip_arch="ViT-B-32"))
    save_file(tower.open_clip_state_dict(), str(tmp_path / "v.safetensors"))
    clip = open_clip.create_model("ViT-B-32", pretrained=None)
    result = clip.load_state_dict(load_file(str(tmp_path / "v.safetensors")), strict=False)
    assert not [k for k in result.missing_keys if k.startswith("visual.")]
    assert not result.unexpected_keys
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(clip.encode_image(x), tower.encode_image(x))
    # …and our loader reads such a file back into a fresh tower.
    again = VisionTower(
        VisionConfig(open_clip_arch="ViT-B-32", weights=str(tmp_path / "v.safetensors"))
    )
    with torch.no_grad():
        torch.testing.assert_close(again(x), tower(x))


def test_pickles_are_refused(tmp_path, make_tiny):
    folder = save_checkpoint(make_tiny(), tmp_path / "ckpt")
    (folder / "lm" / "pytorch_model.bin").write_bytes(b"\x80\x04not really")
    with pytest.raises(UnsafeCheckpointError, match="never unpickles"):
        load_checkpoint(folder)


def test_pickled_vision_weights_are_refused(tmp_path):
    from geoassist.config import VisionConfig
    from geoassist.model.vision import VisionTower

    path = tmp_path / "remoteclip.pt"
    path.write_bytes(b"junk")
    with pytest.raises(UnsafeCheckpointError, match="safetensors"):
        VisionTower(
            VisionConfig(
                image_size=32, patch_size=8, width=32, layers=2, head_width=16, weights=str(path)
            )
        )


def test_corrupt_weights_give_clear_error(tmp_path, make_tiny):
    folder = save_checkpoint(make_tiny(), tmp_path / "ckpt")
    (folder / "vision.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(folder)


def test_failed_save_keeps_previous_checkpoint(tmp_path, make_tiny, monkeypatch):
    model = make_tiny(seed=4)
    folder = save_checkpoint(model, tmp_path / "ckpt")
    import geoassist.checkpoint as ckpt

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "_write_safetensors", boom)
    with pytest.raises(OSError):
        save_checkpoint(make_tiny(seed=5), folder)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]  # no temp folders left behind
    _assert_same_logits(model, load_checkpoint(folder))


def test_create_model_resolves_names(tmp_path, make_tiny):
    assert create_model("tiny").config.name == "tiny"
    folder = save_checkpoint(make_tiny(), tmp_path / "ckpt")
    assert create_model(str(folder)).config.name == "tiny"
    with pytest.raises(ModelNotFoundError, match="preset"):
        create_model("no-such-model")
    with pytest.raises(ModelNotFoundError):
        create_model(str(tmp_path / "missing" / "folder"))


def test_half_precision_checkpoint_is_smaller_and_close(tmp_path, make_tiny):
    model = make_tiny(seed=9)
    _perturb(model)
    full = save_checkpoint(model, tmp_path / "full")
    half = save_checkpoint(model, tmp_path / "half", half=True)
    assert (half / "vision.safetensors").stat().st_size < 0.6 * (full / "vision.safetensors").stat().st_size
    loaded = load_checkpoint(half)
    assert next(loaded.vision.parameters()).dtype == torch.float32
    ids, px = _inputs(model)
    with torch.no_grad():
        torch.testing.assert_close(loaded(ids, px).logits, model(ids, px).logits, rtol=1e-2, atol=1e-2)
