"""From an :class:`~geoassist.io.Image` to the encoder's input tensor.

RGB encoders (``len(config.bands) == 3``) get a uint8 composite, resized and
normalised with ``config.mean``/``config.std`` on the 0–1 scale. Multi-band
encoders (the learned band adapter, ``VisionConfig.in_bands != 3``) get the
named bands as reflectance (through ``config.sensor``'s scale and offset),
standardised per band with ``config.mean``/``config.std`` and resized; invalid
(nodata) pixels become 0, the band mean.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image as PILImage

from geoassist.config import PreprocessConfig
from geoassist.errors import BandMismatchError

_RGB = ["red", "green", "blue"]


def to_pixel_values(
    image, config: PreprocessConfig, bands: list[str | int] | None = None
) -> torch.Tensor:
    """(C, S, S) float tensor for the encoder; C is 3, or ``len(config.bands)`` for multi-band models.

    ``bands`` overrides which bands make the composite (names or 1-based indices);
    by default the bands named in ``config.bands`` are used, found by name.
    """
    if len(config.bands) != 3:
        return _multiband_pixel_values(image, config, bands)
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


def _band_positions(image, names: list[str | int], config: PreprocessConfig) -> list[int]:
    if config.sensor is not None:
        from geoassist.sensors import get_sensor

        return get_sensor(config.sensor).locate(image.band_names, [str(n) for n in names])
    lowered = [n.lower() for n in image.band_names]
    out = []
    for name in names:
        if isinstance(name, int) and 1 <= name <= image.count:
            out.append(name - 1)
        elif str(name).lower() in lowered:
            out.append(lowered.index(str(name).lower()))
        else:
            raise BandMismatchError(
                f"the model reads bands {list(config.bands)} but the image has "
                f"{', '.join(image.band_names)}; name the bands, or set preprocess.sensor so that "
                "they are found by product id or common name"
            )
    return out


def _multiband_pixel_values(
    image, config: PreprocessConfig, bands: list[str | int] | None
) -> torch.Tensor:
    names = list(bands) if bands is not None else list(config.bands)
    if len(names) != len(config.bands):
        raise BandMismatchError(
            f"this model reads {len(config.bands)} bands ({', '.join(config.bands)}); "
            f"bands= names {len(names)}"
        )
    positions = _band_positions(image, names, config)
    values = image.array[:, :, positions]
    if config.sensor is not None:
        from geoassist.sensors import get_sensor

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
