"""A tiny stage 0 with every dense head: the trainer's real entry point on a GeoSynth shard cache,
the heads saved beside (not inside) the inference checkpoint, and a batch the heads overfit."""

from __future__ import annotations

import json

import pytest
import torch

from geoassist.errors import CheckpointError, ConfigError
from geoassist.train.config import config_from_dict

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _config(tmp_path, **stage0):
    return config_from_dict(
        {
            "stage": 0,
            "model": "tiny",
            "out_dir": str(tmp_path / "run"),
            "optim": {"max_steps": 4, "batch_size": 6, "lr": 2e-3},
            "save_every": 2,
            "log_every": 1,
            "stage0": {
                "dense": {"feature_path": "conv8", "width": 16},
                "synth": {"cache_dir": str(tmp_path / "cache"), "scenes": 6, "pairs": 4, "size": 96,
                          "workers": 1, "shard_size": 6},
                **stage0,
            },
        }
    )


def test_tiny_stage0_with_all_heads_trains_and_saves_heads_beside_the_checkpoint(tmp_path, caplog):
    import logging

    from geoassist.checkpoint import load_checkpoint
    from geoassist.model.dense_heads import DENSE_HEADS_FILE, load_dense_heads
    from geoassist.train.trainer import train

    caplog.set_level(logging.INFO)
    result = train(_config(tmp_path), resume=False)
    assert result.final is not None and len(result.losses) == 4
    assert all(torch.isfinite(torch.tensor(loss)) for _, loss in result.losses)
    assert (result.final / DENSE_HEADS_FILE).is_file()
    assert any("GeoSynth cache" in m and "MB on disk" in m for m in caplog.messages)
    # the card counts the samples of each kind: 4 steps of 6, scenes and pairs
    seen = json.loads((result.final / "geoassist.json").read_text())["card"]["samples_per_task"]
    assert set(seen) == {"geosynth_scene", "geosynth_pair"} and sum(seen.values()) == 24
    # each loss term is logged apart, a line per logged step
    terms = [json.loads(line) for line in (tmp_path / "run" / "loss_terms.jsonl").read_text().splitlines()]
    assert [t["step"] for t in terms] == [1, 2, 3, 4]
    assert {"scene", "presence", "semantic", "centre", "change"} <= set(terms[-1])
    assert all(v >= 0 for t in terms for k, v in t.items() if k != "step")
    # the inference path ignores the heads; the probe and a continued stage 0 read them
    model = load_checkpoint(result.final)
    assert not any("dense" in n for n, _ in model.named_parameters())
    heads = load_dense_heads(result.final)
    assert heads.config.feature_path == "conv8" and "geosynth" in heads.config.scene_spaces
    # a run continuing from the saved model with a new seed range starts from its heads
    cont = _config(tmp_path, synth={"cache_dir": str(tmp_path / "cache"), "scenes": 6, "pairs": 4,
                                    "size": 96, "workers": 1, "shard_size": 6, "start": 6})
    cont.model, cont.out_dir = str(result.final), str(tmp_path / "cont")
    cont.optim.max_steps = 1
    caplog.clear()
    assert train(cont, resume=False).final is not None
    assert any("dense heads continue from" in m for m in caplog.messages)


def test_checkpoints_without_heads_load_as_before(tmp_path):
    from geoassist.checkpoint import create_model, load_checkpoint, save_checkpoint
    from geoassist.model.dense_heads import has_dense_heads, load_dense_heads

    folder = save_checkpoint(create_model("tiny"), tmp_path / "plain")
    assert not has_dense_heads(folder)
    load_checkpoint(folder)
    with pytest.raises(CheckpointError, match="dense_heads.safetensors"):
        load_dense_heads(folder)


def test_the_heads_overfit_one_batch(tmp_path):
    """Every term falls on one fixed batch (targets without augmentation)."""
    from geoassist.checkpoint import create_model
    from geoassist.train.dense_data import collate_stage0, prepare_stage0, stage0_dataset
    from geoassist.train.dense_loss import dense_stage0_loss
    from geoassist.train.stages import build_stage

    torch.manual_seed(0)
    config = _config(tmp_path)
    config.stage0.synth.augment = False
    model = create_model("tiny")
    sources = prepare_stage0(config)
    module = build_stage(0, model, config, sources.scene_spaces)
    dataset = stage0_dataset(config, model, module.dense, sources)
    batch = collate_stage0([dataset[i] for i in range(len(dataset))])
    assert batch["pixel_values_b"].shape[0] == 4 and batch["t_change"].shape[0] == 4
    params = [p for p in module.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=3e-3)
    first = None
    for _ in range(40):
        loss, terms = dense_stage0_loss(module, batch)
        first = first or terms
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert set(first) == {"contrastive", "scene", "presence", "count", "semantic", "centre", "box", "change"}
    for name in ("scene", "presence", "count", "centre"):
        assert terms[name] < 0.6 * first[name], (name, first[name], terms[name])
    # soft cell fractions: the semantic cross-entropy has the targets' entropy as its floor
    assert terms["semantic"] < 0.8 * first["semantic"]


def test_stage0_options_are_checked():
    base = {"stage": 0, "model": "tiny", "out_dir": "x"}
    with pytest.raises(ConfigError, match="stage0.dense.feature_path"):
        config_from_dict({**base, "stage0": {"dense": {"feature_path": "fpn"}, "synth": {}}})
    with pytest.raises(ConfigError, match="unknown stage0.dense.weights"):
        config_from_dict({**base, "stage0": {"dense": {"weights": {"depth": 1}}, "synth": {}}})
    with pytest.raises(ConfigError, match="stage0.synth.colour"):
        config_from_dict({**base, "stage0": {"dense": {}, "synth": {"colour": 1}}})
    with pytest.raises(ConfigError, match="set stage0.dense too"):
        config_from_dict({**base, "data": {"train": ["d"]}, "stage0": {"synth": {}}})
    with pytest.raises(ConfigError, match="leave data.train empty"):
        config_from_dict({**base, "data": {"train": ["d"]}, "stage0": {"dense": {}, "synth": {}}})
    with pytest.raises(ConfigError, match="data.train needs"):
        config_from_dict({**base})
    config = config_from_dict({**base, "stage0": {"dense": {"weights": {"change": 0}}, "synth": {}}})
    assert config.stage0.dense.weights["change"] == 0 and config.stage0.dense.weights["scene"] == 0


def test_rsvqa_questions_become_image_labels():
    from geoassist.synth.palette import OBJECT_CLASSES, SEMANTIC_CLASSES
    from geoassist.train.dense_data import rsvqa_labels

    assert rsvqa_labels("Is there a water area?", "yes") == ("presence", SEMANTIC_CLASSES.index("water"), 1.0)
    assert rsvqa_labels("Is a road present?", "no") == ("presence", SEMANTIC_CLASSES.index("road"), 0.0)
    assert rsvqa_labels("How many buildings are there?", "12") == ("count", OBJECT_CLASSES.index("building"), 12.0)
    assert rsvqa_labels("Is there a small water area?", "yes") is None  # qualified: not a whole-image label
    assert rsvqa_labels("Is a commercial building present?", "yes") is None
    assert rsvqa_labels("Are there more buildings than roads?", "yes") is None


@pytest.mark.realdata
def test_real_samples_join_with_the_training_split_only(rs_samples):
    from geoassist.splits import real_split
    from geoassist.train.dense_data import read_real_source

    items, spaces = read_real_source({"source": "scenes", "path": str(rs_samples / "scenes/ucmerced/UCMerced_LandUse")})
    assert len(spaces["ucm"]) == 21 and 1000 < len(items) < 2100
    assert all(real_split("ucm", it.path.stem) == "train" for it in items)
    ucm = items[0].truth(128)
    assert ucm.image.shape == (128, 128, 3) and list(ucm.scene) == ["ucm"]
    items, spaces = read_real_source({"source": "scenes", "path": str(rs_samples / "scenes/rsscn7")})
    assert items == []  # evaluation-only in the committed split
    items, _ = read_real_source({"source": "rsvqa_lr", "path": str(rs_samples / "rsvqa/LR_reduced")})
    assert items and all(it.presence for it in items)
    assert all(real_split("rsvqa_lr", it.path.stem) == "train" for it in items)
    truth = items[0].truth(128)
    assert truth.image.shape == (128, 128, 3)


def test_a_corrupt_heads_file_is_reported(tmp_path):
    from geoassist.model.dense_heads import DENSE_HEADS_FILE, load_dense_heads

    (tmp_path / DENSE_HEADS_FILE).write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_dense_heads(tmp_path)


def test_real_samples_make_their_share_of_the_epoch(tmp_path):
    import numpy as np
    from PIL import Image

    from geoassist.config import load_preset
    from geoassist.train.dense_data import RealItem, Stage0Dataset

    path = tmp_path / "a.png"
    Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(path)

    class FakeCache:
        class config:
            size = 96

    real = [RealItem("scenes", path, {"x": 0}, {}, {}) for _ in range(50)]
    preset = load_preset("tiny")
    many = Stage0Dataset([(FakeCache(), list(range(80)))], real, model_config=preset, grid=4, real_weight=0.2)
    assert len(many) == 100 and sum(c < 0 for c, _ in many.entries) == 20  # a subset of the 50
    few = Stage0Dataset([(FakeCache(), list(range(400)))], real, model_config=preset, grid=4, real_weight=0.2)
    assert sum(c < 0 for c, _ in few.entries) == 100  # every item twice
    assert len({i for c, i in few.entries if c < 0}) == 50
    none = Stage0Dataset([(FakeCache(), list(range(80)))], real, model_config=preset, grid=4, real_weight=0.0)
    assert len(none) == 80
    with pytest.raises(ConfigError, match="no samples"):
        Stage0Dataset([], [], model_config=preset, grid=4)


def test_one_pass_gives_the_lm_tokens_and_the_clip_embedding():
    from geoassist.checkpoint import create_model

    vision = create_model("tiny").vision.eval()
    pixels = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        tokens, pooled, grid = vision.forward_features(pixels)
        assert grid == (4, 4)
        assert torch.allclose(tokens, vision(pixels), atol=1e-5)
        assert torch.allclose(pooled, vision.encode_image(pixels), atol=1e-5)
