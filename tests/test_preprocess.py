"""From an Image to the encoder's input: one band choice and one stretch per scene, and refusals."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from rasterio.crs import CRS

from geoassist.errors import BandMismatchError, ImageError
from geoassist.io import Image, load_image
from geoassist.preprocess import EncoderInput, prepare_for_encoder, to_pixel_values
from geoassist.sensors import apply_stretch, compute_stretch

S2_IDS = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"]


def _s2(seed: int = 0, size: int = 48) -> Image:
    rng = np.random.default_rng(seed)
    array = rng.integers(200, 3000, (size, size, 13), dtype=np.uint16)
    array[: size // 4, : size // 4] = 0  # a nodata corner
    return Image(array, S2_IDS, nodata=0, transform=Affine(10, 0, 5e5, 0, -10, 4e6),
                 crs=CRS.from_epsg(32631))  # fmt: skip


def test_bands_are_chosen_in_one_order_of_precedence(tiny_config):
    config = tiny_config.preprocess
    image = _s2()
    assert EncoderInput(config, image).indexes == [3, 2, 1]  # recognised Sentinel-2 true colour
    assert EncoderInput(config, image, bands=["B08", "B04", "B03"]).indexes == [7, 3, 2]
    assert EncoderInput(config, image, bands=[8], sensor=None).indexes == [7]  # gray
    # A sensor or composite wins over bands.
    assert EncoderInput(config, image, bands=[1, 2, 3], composite="false_color").indexes == [
        7,
        3,
        2,
    ]
    ndvi = EncoderInput(config, image, composite="ndvi")
    assert ndvi.index_name == "ndvi" and ndvi(image).array.shape == (48, 48, 3)
    with pytest.raises(BandMismatchError, match="3 bands"):
        EncoderInput(config, image, bands=["B04", "B03"])
    unnamed = Image(np.ones((8, 8, 6), np.uint16), [f"band_{i}" for i in range(1, 7)])
    with pytest.raises(BandMismatchError, match="cannot tell which bands are red, green and blue"):
        EncoderInput(config, unnamed)


def test_one_stretch_for_a_scene_and_its_windows(tiny_config):
    config = tiny_config.preprocess
    image = _s2(1)
    encoder = EncoderInput(config, image)
    whole = encoder(image).array
    limits = compute_stretch(image, [3, 2, 1], config.stretch_percentiles)
    np.testing.assert_array_equal(whole, apply_stretch(image.array[:, :, [3, 2, 1]], limits,
                                                       image.valid_mask()))  # fmt: skip
    window = Image(image.array[20:40, 10:30], S2_IDS, nodata=0)
    np.testing.assert_array_equal(encoder(window).array, whole[20:40, 10:30])
    assert (whole[:12, :12] == 0).all()  # nodata is black
    # The small-image path makes the same input: display composite == encoder input.
    np.testing.assert_array_equal(prepare_for_encoder(image, config).array, whole)
    np.testing.assert_array_equal(image.to_rgb_uint8(), whole)
    x = to_pixel_values(image, config)
    assert x.shape == (3, config.image_size, config.image_size) and x.dtype == torch.float32


def _write(path: Path, array: np.ndarray, nodata: float | None) -> Path:
    h, w, c = array.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with rasterio.open(path, "w", driver="GTiff", width=w, height=h, count=c,
                           dtype=array.dtype, nodata=nodata) as dst:  # fmt: skip
            dst.write(np.moveaxis(array, -1, 0))
    return path


def test_all_nodata_raster_is_refused_with_a_message(tmp_path: Path, tiny_config, make_tiny):
    from geoassist.assistant import Assistant

    nan = _write(tmp_path / "all_nan.tif", np.full((40, 40, 1), np.nan, np.float32), np.nan)
    zeros = _write(tmp_path / "all_zero.tif", np.zeros((40, 40, 3), np.uint16), 0)
    for path in (nan, zeros):
        image = load_image(path)  # reading is fine: a window of a scene may well be empty
        with pytest.raises(ImageError, match=r"has no valid pixel: every pixel is nodata"):
            to_pixel_values(image, tiny_config.preprocess)
    with pytest.raises(ImageError, match=r"all_nan\.tif has no valid pixel.*nodata value"):
        Assistant(make_tiny()).ask(nan, "What is in this image?")
    # One valid pixel is enough.
    array = np.full((40, 40, 1), np.nan, np.float32)
    array[3, 4] = 0.2
    assert (
        to_pixel_values(Image(array, ["gray"], nodata=np.nan), tiny_config.preprocess)
        .isfinite()
        .all()
    )
