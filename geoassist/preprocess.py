"""From an :class:`~geoassist.io.Image` to the encoder's input tensor: the one client of band
selection and stretch (:func:`geoassist.sensors.select_bands`, ``compute_stretch``,
``apply_stretch``) on the way to the model.

RGB encoders (``len(config.bands) == 3``) get a uint8 composite, resized and
normalised with ``config.mean``/``config.std`` on the 0–1 scale. Which bands make
it, and how they are stretched, is decided once per scene by :class:`EncoderInput`
(for a large scene: on its overview, so that every tile shares one colour scale).
Multi-band encoders (the learned band adapter, ``VisionConfig.in_bands != 3``) get
the named bands as reflectance (through ``config.sensor``'s scale and offset),
standardised per band with ``config.mean``/``config.std`` and resized; invalid
(nodata) pixels become 0, the band mean. An image without a single valid pixel is
refused with a message, rather than answered as a black square.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image as PILImage

from geoassist.config import PreprocessConfig
from geoassist.errors import BandMismatchError, ImageError
from geoassist.io import Image
from geoassist.sensors import (
    INDICES,
    apply_stretch,
    compute_stretch,
    detect_sensor,
    get_sensor,
    make_composite,
    select_bands,
    sensor_for,
)

__all__ = ["EncoderInput", "prepare_for_encoder", "to_pixel_values"]

_RGB = ["red", "green", "blue"]


class EncoderInput:
    """How the images of one scene become the model's input, decided once on ``image``.

    Multi-band models get the bands as they are (normalised later with fixed
    statistics). RGB models get a uint8 composite named red/green/blue made of, in
    order of precedence: the ``sensor``/``composite`` asked for (an index such as
    ``ndvi`` in gray); the ``bands`` asked for (or ``config.bands`` when those are not
    red/green/blue); the image's own RGB (:func:`~geoassist.sensors.select_bands`).
    Values other than uint8 are stretched between ``config.stretch_percentiles`` of
    ``image``'s valid pixels, or between ``limits`` when given, and calling the
    object applies the same choice and stretch to ``image`` or to any window of it.
    """

    def __init__(
        self,
        config: PreprocessConfig,
        image: Any,
        *,
        bands: Sequence[str | int] | None = None,
        sensor: str | None = None,
        composite: str | None = None,
        limits: np.ndarray | None = None,
    ) -> None:
        check_has_data(image)
        self.multiband = len(config.bands) != 3
        self.index_name: str | None = None
        self.sensor = None
        self.indexes: list[int] = []
        self.limits: np.ndarray | None = None
        if self.multiband:
            return
        names = image.band_names
        if sensor is not None or composite is not None:
            self.sensor = sensor_for(image, sensor)
            key = (composite or "true_color").lower().replace("-", "_")
            if key in INDICES:
                self.index_name = key
                return
            self.indexes = select_bands(
                names, composite=key, sensor=self.sensor, source=image.source
            )
        else:
            if bands is None and [b.lower() for b in config.bands] != _RGB:
                bands = list(config.bands)
            self.indexes = select_bands(names, bands, rgb=True, source=image.source)
        if limits is not None:
            self.limits = np.asarray(limits, dtype=np.float64)
        elif image.dtype != np.uint8:
            self.limits = compute_stretch(image, self.indexes, tuple(config.stretch_percentiles))

    def rgb(self, image: Any) -> np.ndarray:
        """H×W×3 uint8 of ``image`` (an RGB model's input before resizing)."""
        if self.index_name is not None:
            return make_composite(image, self.sensor, self.index_name)
        chosen = image.array[:, :, self.indexes]
        if self.limits is not None:
            chosen = apply_stretch(chosen, self.limits, image.valid_mask())
        rgb = np.repeat(chosen, 3, axis=2) if chosen.shape[2] == 1 else chosen
        return np.ascontiguousarray(rgb)

    def __call__(self, image: Any) -> Image:
        """``image`` as the model's preprocessing takes it, in the window's own pixels
        (map coordinates, if any, come from the caller)."""
        if self.multiband:
            return Image(image.array, image.band_names, nodata=image.nodata, source=image.source)
        return Image(self.rgb(image), list(_RGB), source=image.source)


def check_has_data(image: Any) -> None:
    """Refuse an image in which every pixel is nodata, NaN or transparent."""
    if image.valid_mask().any():
        return
    nodata = "" if image.nodata is None else f" (nodata value {image.nodata:g})"
    raise ImageError(
        f"{image.source or 'the image'} has no valid pixel: every pixel is nodata{nodata}, NaN "
        "or transparent; check that this is the right file or band, or correct its nodata value "
        "(e.g. gdal_edit.py -unsetnodata FILE when 0 is a real value)"
    )


def prepare_for_encoder(
    image: Any,
    preprocess: PreprocessConfig,
    *,
    sensor: str | None = None,
    composite: str | None = None,
    stretch: np.ndarray | None = None,
) -> Any:
    """The image as the model's preprocessing wants it, keeping size and georeferencing.

    A multi-band model (``len(preprocess.bands) > 3``) gets the image unchanged
    (:func:`to_pixel_values` selects and normalises its bands). An RGB model gets a
    uint8 composite named red/green/blue when a sensor or composite is asked for, or
    when the image has no red/green/blue bands but its sensor can be recognised from
    band names (Sentinel-2, Landsat 8/9); otherwise the image is returned as it is.
    """
    if len(preprocess.bands) > 3:
        return image
    if sensor is None and composite is None:
        lowered = {n.lower() for n in image.band_names}
        found = detect_sensor(image.band_names)
        if set(_RGB) <= lowered or found is None:
            return image
        sensor = found.name
    encoder = EncoderInput(
        preprocess, image, sensor=sensor, composite=composite or "true_color", limits=stretch
    )
    return Image(encoder.rgb(image), list(_RGB), nodata=None, transform=image.transform,
                 crs=image.crs, source=image.source)  # fmt: skip


def to_pixel_values(
    image, config: PreprocessConfig, bands: list[str | int] | None = None
) -> torch.Tensor:
    """(C, S, S) float tensor for the encoder; C is 3, or ``len(config.bands)`` for multi-band models.

    ``bands`` overrides which bands make the composite (names or 1-based indices);
    by default the bands named in ``config.bands`` are used, found by name.
    """
    if len(config.bands) != 3:
        return _multiband_pixel_values(image, config, bands)
    rgb = EncoderInput(config, image, bands=bands).rgb(image)
    size = config.image_size
    if rgb.shape[:2] != (size, size):
        rgb = np.asarray(PILImage.fromarray(rgb).resize((size, size), PILImage.Resampling.BICUBIC))
    x = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(config.mean).view(-1, 1, 1)
    std = torch.tensor(config.std).view(-1, 1, 1)
    return (x - mean) / std


def _multiband_pixel_values(
    image, config: PreprocessConfig, bands: list[str | int] | None
) -> torch.Tensor:
    check_has_data(image)
    names = list(bands) if bands is not None else list(config.bands)
    if len(names) != len(config.bands):
        raise BandMismatchError(
            f"this model reads {len(config.bands)} bands ({', '.join(config.bands)}); "
            f"bands= names {len(names)}"
        )
    try:
        positions = select_bands(image.band_names, names, sensor=config.sensor, source=image.source)
    except BandMismatchError as exc:
        if config.sensor is not None:
            raise
        raise BandMismatchError(
            f"the model reads bands {list(config.bands)} but the image has "
            f"{', '.join(image.band_names)} ({exc}); name the bands, or set preprocess.sensor so "
            "that they are found by product id or common name"
        ) from None
    values = image.array[:, :, positions]
    if config.sensor is not None:
        values = get_sensor(config.sensor).to_reflectance(values)
    else:
        values = values.astype(np.float32)
    mean = np.asarray(config.mean, dtype=np.float32)
    std = np.asarray(config.std, dtype=np.float32)
    values = (values - mean) / std
    invalid = ~image.valid_mask() | ~np.isfinite(values).all(axis=2)
    values[invalid] = 0.0
    x = torch.from_numpy(np.ascontiguousarray(values)).permute(2, 0, 1).unsqueeze(0)
    size = config.image_size
    if x.shape[-2:] != (size, size):
        x = F.interpolate(
            x, size=(size, size), mode="bilinear", align_corners=False, antialias=True
        )
    return x[0]
