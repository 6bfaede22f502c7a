"""From an :class:`~geoassist.io.Image` to the encoder's input tensor."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image as PILImage

from geoassist.config import PreprocessConfig

_RGB = ["red", "green", "blue"]


def to_pixel_values(
    image, config: PreprocessConfig, bands: list[str | int] | None = None
) -> torch.Tensor:
    """(3, S, S) float tensor: the image's RGB composite, resized to S and normalised.

    ``bands`` overrides which bands make the composite (names or 1-based indices);
    by default the bands named in ``config.bands`` are used, found by name.
    """
    if bands is None and [b.lower() for b in config.bands] != _RGB:
        bands = list(config.bands)
    rgb = image.to_rgb_uint8(bands=bands, percentiles=config.stretch_percentiles)
    size = config.image_size
    if rgb.shape[:2] != (size, size):
        rgb = np.asarray(PILImage.fromarray(rgb).resize((size, size), PILImage.Resampling.BICUBIC))
    x = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1).float().div_(255.0)
    mean = torch.tensor(config.mean).view(-1, 1, 1)
    std = torch.tensor(config.std).view(-1, 1, 1)
    return (x - mean) / std
