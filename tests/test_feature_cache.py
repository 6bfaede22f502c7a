"""Cached vision-tower features (train/feature_cache.py) and the model's ``vision_features`` path."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import noise_pngs, watch_batches
from PIL import Image

from geoassist.chat import render
from geoassist.errors import ImageSlotMismatchError
from geoassist.train.data import ConversationDataset, Sample, collate_conversations
from geoassist.train.feature_cache import (
    FeatureCache,
    FeatureCacheError,
    digests_of,
    image_digest,
    tower_is_frozen,
)


@pytest.fixture
def images(tmp_path):
    return noise_pngs(tmp_path, [f"img{i}.png" for i in range(3)], (48, 48), seed=1)


def _samples(paths):
    out = []
    for i, path in enumerate(paths):
        record = {
            "id": f"toy:{i}", "source": "toy", "split": "train", "task": "vqa", "images": [path.name],
            "conversations": [
                {"role": "user", "content": "<image>\n[vqa] How many ships?"},
                {"role": "assistant", "content": str(i + 1)},
            ],
            "answer": str(i + 1), "qtype": None, "targets": {}, "meta": {},
        }  # fmt: skip
        out.append(Sample(record, path.parent))
    # a pair: two images of one sample
    pair = {**out[0].record, "id": "toy:pair", "images": [paths[0].name, paths[1].name]}
    pair["conversations"] = [
        {"role": "user", "content": "<image><image>\n[change] What changed?"},
        {"role": "assistant", "content": "a road"},
    ]
    return out + [Sample(pair, paths[0].parent)]


def _filled(model, paths, root):
    cache = FeatureCache(root, model.vision, model.config.preprocess)
    digests = digests_of(paths)
    assert cache.fill(model, {d: p for p, d in digests.items()}, batch_size=2) == len(paths)
    return cache, digests


def test_same_loss_with_cached_features_as_with_pixels(make_tiny, images, tmp_path):
    model = make_tiny(seed=0, r=4)
    cache, digests = _filled(model, images, tmp_path / "cache")
    samples = _samples(images)
    pixels_set = ConversationDataset(samples, model.config, model.tokenizer, max_length=256, captions_only=False)
    cached_set = ConversationDataset(samples, model.config, model.tokenizer, max_length=256, captions_only=False)
    cached_set.images.use_cache(cache, digests)
    collate = collate_conversations(model.pad_token_id)
    with_pixels = collate([pixels_set[i] for i in range(len(samples))])
    with_features = collate([cached_set[i] for i in range(len(samples))])
    assert with_features["pixel_values"] is None and with_features["vision_features"].shape[0] == 5
    model.eval()
    with torch.no_grad():
        a = model(with_pixels["input_ids"], with_pixels["pixel_values"], with_pixels["attention_mask"],
                  with_pixels["labels"], return_logits=False).loss  # fmt: skip
        b = model(with_features["input_ids"], None, with_features["attention_mask"],
                  with_features["labels"], return_logits=False,
                  vision_features=with_features["vision_features"]).loss  # fmt: skip
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)
    # and the gradient reaches the projector through the cached path
    model.train()
    loss = model(with_features["input_ids"], None, with_features["attention_mask"], with_features["labels"],
                 return_logits=False, vision_features=with_features["vision_features"]).loss  # fmt: skip
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.projector.parameters())
    assert cache.hits == 5


def test_pixels_and_features_together_are_refused(tiny_model):
    rendered = render([{"role": "user", "content": "<image>\nHi"}], tiny_model.tokenizer,
                      num_image_tokens=tiny_model.config.num_image_tokens)  # fmt: skip
    ids = torch.tensor([rendered.input_ids])
    pixels = torch.zeros(1, 3, 32, 32)
    features = tiny_model.vision(pixels)
    with pytest.raises(ImageSlotMismatchError, match="either"):
        tiny_model(ids, pixels, vision_features=features)
    with pytest.raises(ImageSlotMismatchError, match="2 image"):
        tiny_model(ids, vision_features=torch.cat([features, features]))


def test_a_changed_tower_or_preprocessing_never_reads_stale_features(make_tiny, images, tmp_path):
    model = make_tiny(seed=0)
    cache, digests = _filled(model, images, tmp_path / "cache")
    digest = digests[images[0]]
    assert cache.has(digest)
    # one weight of the tower changes: another folder, nothing found, features computed anew
    with torch.no_grad():
        next(model.vision.parameters()).add_(0.01)
    changed = FeatureCache(tmp_path / "cache", model.vision, model.config.preprocess)
    assert changed.folder != cache.folder and not changed.has(digest)
    # another feature layer (configuration only, same weights)
    from geoassist.model.vision import VisionTower

    other = make_tiny(seed=0)
    config = other.config.vision
    config.feature_layer = -2
    other.vision = VisionTower(config)
    other.vision.load_state_dict(make_tiny(seed=0).vision.state_dict())
    assert FeatureCache(tmp_path / "cache", other.vision, other.config.preprocess).folder != cache.folder
    # other preprocessing
    fresh = make_tiny(seed=0)
    fresh.config.preprocess.mean = [0.5, 0.5, 0.5]
    again = FeatureCache(tmp_path / "cache", fresh.vision, fresh.config.preprocess)
    assert again.tower == cache.tower and again.folder != cache.folder and not again.has(digest)
    # the same model again finds everything: nothing recomputed
    same = FeatureCache(tmp_path / "cache", make_tiny(seed=0).vision, make_tiny(seed=0).config.preprocess)
    assert same.folder == cache.folder
    assert same.fill(make_tiny(seed=0), {d: p for p, d in digests.items()}) == 0
    # an image rewritten in place is a new image
    Image.fromarray(np.zeros((48, 48, 3), dtype=np.uint8)).save(images[0])
    assert image_digest(images[0]) != digest


def test_a_file_of_another_tower_is_refused(make_tiny, images, tmp_path):
    model = make_tiny(seed=0)
    cache, digests = _filled(model, images, tmp_path / "cache")
    first, second = digests[images[0]], digests[images[1]]
    # a file copied under another image's name: the metadata says whose it is
    cache.path(second).write_bytes(cache.path(first).read_bytes())
    with pytest.raises(FeatureCacheError, match="delete the file"):
        cache.load(second)
    cache.path(first).write_bytes(b"not safetensors")
    with pytest.raises(FeatureCacheError, match="cannot be read"):
        cache.load(first)
    # writes are atomic: no temporary file is left behind
    assert not [p for p in cache.folder.rglob("*") if p.name.startswith(".tmp-")]


def test_the_trainer_reads_the_cache_and_bypasses_it_when_the_tower_trains(tmp_path, images, monkeypatch):
    import geoassist.train.trainer as trainer
    from geoassist.train.config import config_from_dict

    samples = _samples(images)
    monkeypatch.setattr(trainer, "load_samples", lambda *a, **k: samples)
    seen: list[set[str]] = []
    watch_batches(
        monkeypatch,
        trainer,
        lambda batch: seen.append(
            {k for k in ("pixel_values", "vision_features") if batch.get(k) is not None}
        ),
    )

    def run(name, **stage2):
        config = config_from_dict(
            {
                "stage": 2, "model": "tiny", "out_dir": str(tmp_path / name),
                "data": {"train": ["toy"], "max_length": 256},
                "optim": {"max_steps": 2, "batch_size": 2, "lr": 1e-3},
                "stage2": {"feature_cache": str(tmp_path / "features"), **stage2},
                "save_every": 2, "seed": 0,
            }
        )  # fmt: skip
        return trainer.train(config)

    run("frozen")
    assert seen and all(keys == {"vision_features"} for keys in seen)
    files = list((tmp_path / "features").rglob("*.safetensors"))
    assert len(files) == 3  # three distinct images, the pair's two among them
    seen.clear()
    run("unfrozen", train_vision_blocks=1)
    assert seen and all(keys == {"pixel_values"} for keys in seen)
    assert len(list((tmp_path / "features").rglob("*.safetensors"))) == 3


def test_tower_is_frozen(make_tiny):
    model = make_tiny()
    model.requires_grad_(False)
    assert tower_is_frozen(model)
    next(model.vision.parameters()).requires_grad_(True)
    assert not tower_is_frozen(model)


def test_cache_files_name_their_keys(make_tiny, images, tmp_path):
    from safetensors import safe_open

    model = make_tiny()
    cache, digests = _filled(model, images, tmp_path / "cache")
    with safe_open(str(cache.path(digests[images[2]])), framework="pt") as f:
        meta = f.metadata()
    assert json.loads(json.dumps(meta))["tower"] == cache.tower
    assert meta["image"] == digests[images[2]] and meta["preprocess"] == cache.preprocess
