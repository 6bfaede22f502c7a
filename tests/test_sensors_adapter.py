"""The learned band adapter: 13-band GeoSynth MS input trains, saves, loads and answers."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from rasterio.crs import CRS

from geoassist.chat import collate, render, with_image_slots
from geoassist.config import ModelConfig, load_preset
from geoassist.errors import BandMismatchError, ConfigError
from geoassist.io import Image
from geoassist.preprocess import to_pixel_values
from geoassist.sensors import band_statistics

S2_IDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]
CLASSES = ["Forest", "SeaLake", "Residential", "AnnualCrop"]
STEPS = 60


@pytest.fixture(scope="module")
def ms_scenes():
    from geoassist.synth import generate_scene

    scenes = []
    for seed, cls in enumerate(CLASSES):
        s = generate_scene(seed, "ms", scene_class=cls, size=64)
        a = s.annotation
        image = Image(
            s.image,
            a.band_names,
            transform=Affine.from_gdal(*a.geotransform),
            crs=CRS.from_string(a.crs),
        )
        scenes.append((image, cls))
    return scenes


def _ms_config(scenes) -> ModelConfig:
    mean, std = band_statistics([im for im, _ in scenes], S2_IDS, "sentinel2-l1c")
    data = load_preset("tiny").to_dict()
    data["vision"] |= {"in_bands": 13, "band_adapter_init": [3, 2, 1]}  # B04, B03, B02 → R, G, B
    data["preprocess"] |= {"bands": S2_IDS, "mean": mean, "std": std, "sensor": "sentinel2-l1c"}
    return ModelConfig.from_dict(data)


def _model(config, seed=0):
    from geoassist.model.lm import load_tokenizer
    from geoassist.model.vlm import GeoAssistModel

    torch.manual_seed(seed)
    return GeoAssistModel(config, load_tokenizer(config.lm))


def test_config_checks_band_counts():
    data = load_preset("tiny").to_dict()
    data["vision"]["in_bands"] = 13
    with pytest.raises(ConfigError, match="takes 13 bands"):
        ModelConfig.from_dict(data)
    data["preprocess"] |= {"bands": S2_IDS, "mean": [0.1] * 13, "std": [0.1] * 13}
    data["vision"]["band_adapter_init"] = [3, 2, 13]
    with pytest.raises(ConfigError, match="band_adapter_init"):
        ModelConfig.from_dict(data)
    data["vision"]["band_adapter_init"] = None
    data["preprocess"]["sensor"] = "sentinel9"
    with pytest.raises(ConfigError, match="unknown sensor"):
        ModelConfig.from_dict(data)


def test_multiband_pixel_values(ms_scenes):
    config = _ms_config(ms_scenes)
    image, _ = ms_scenes[0]
    x = to_pixel_values(image, config.preprocess)
    assert x.shape == (13, 32, 32) and x.dtype == torch.float32
    # Standardised with the training statistics: roughly zero mean over the training scenes.
    xs = torch.stack([to_pixel_values(im, config.preprocess) for im, _ in ms_scenes])
    assert xs.mean().abs() < 0.3
    # Nodata pixels sit at the band mean (0 after standardisation).
    arr = image.array.copy()
    arr[:16] = 0
    masked = to_pixel_values(Image(arr, image.band_names, nodata=0), config.preprocess)
    assert masked[:, :6].abs().max() == 0
    with pytest.raises(BandMismatchError, match="no B01"):
        to_pixel_values(Image(arr[:, :, :3], ["a", "b", "c"]), config.preprocess)


def test_adapter_starts_as_true_colour_and_keeps_the_tower_standard(ms_scenes):
    model = _model(_ms_config(ms_scenes))
    weight = model.vision.band_adapter.conv.weight[:, :, 0, 0]
    assert weight[0, 3] == 1 and weight[1, 2] == 1 and weight[2, 1] == 1 and weight.sum() == 3
    assert model.vision.visual.conv1.in_channels == 3  # the open_clip ViT is untouched
    assert all(k.startswith("visual.") for k in model.vision.open_clip_state_dict())
    with pytest.raises(BandMismatchError, match="takes 13 band"):
        model.vision(torch.zeros(1, 3, 32, 32))


def test_thirteen_band_input_trains_saves_and_answers(ms_scenes, tmp_path):
    from geoassist.assistant import Assistant
    from geoassist.checkpoint import load_checkpoint, save_checkpoint

    config = _ms_config(ms_scenes)
    model = _model(config).train()
    rendered = [
        render(
            [
                {"role": "user", "content": with_image_slots("[classify] Scene?", 1)},
                {"role": "assistant", "content": scene_class},
            ],
            model.tokenizer,
            num_image_tokens=config.num_image_tokens,
            num_images=1,
        )
        for _, scene_class in ms_scenes
    ]
    batch = collate(rendered, model.pad_token_id)
    pixels = torch.stack([to_pixel_values(im, config.preprocess) for im, _ in ms_scenes])
    assert pixels.shape == (4, 13, 32, 32)
    before = model.vision.band_adapter.conv.weight.detach().clone()
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for step in range(STEPS):
        loss = model(batch["input_ids"], pixels, batch["attention_mask"], batch["labels"]).loss
        optimizer.zero_grad()
        loss.backward()
        if step == 0:
            grad = model.vision.band_adapter.conv.weight.grad[:, :, 0, 0]
            # Every band, not only the three true-colour ones, gets a training signal.
            assert (grad.abs().sum(dim=0) > 0).all()
        optimizer.step()
        losses.append(loss.item())
    # The four answers differ only through the image, so the loss can only fall this far
    # by reading the 13-band input.
    assert losses[-1] < losses[0] / 10, f"loss went {losses[0]:.3f} → {losses[-1]:.3f}"
    after = model.vision.band_adapter.conv.weight.detach()
    assert not torch.allclose(before, after)

    model.eval()
    folder = save_checkpoint(model, tmp_path / "ms-ckpt")
    assert (folder / "band_adapter.safetensors").is_file()
    loaded = load_checkpoint(folder)
    assert (
        loaded.config.vision.in_bands == 13 and loaded.config.preprocess.sensor == "sentinel2-l1c"
    )
    torch.testing.assert_close(loaded.vision.band_adapter.conv.weight, after)
    with torch.no_grad():
        torch.testing.assert_close(
            loaded(batch["input_ids"], pixels, batch["attention_mask"]).logits,
            model(batch["input_ids"], pixels, batch["attention_mask"]).logits,
        )

    # Inference on a 13-band GeoTIFF as written by `geoassist synth --georef`.
    image, _ = ms_scenes[1]
    path = tmp_path / "scene.tif"
    with rasterio.open(
        path, "w", driver="GTiff", width=64, height=64, count=13, dtype="uint16",
        crs=image.crs, transform=image.transform,
    ) as dst:  # fmt: skip
        dst.write(np.moveaxis(image.array, 2, 0))
        dst.descriptions = tuple(S2_IDS)
    answer = Assistant(loaded).ask(path, "", task="caption", max_new_tokens=4)
    assert answer.image_size == (64, 64) and answer.geo["crs"] == image.crs.to_string()
