"""Encodes a sample's rasters once (PNG, JPEG, TIFF, GeoTIFF), shared by every exporter.

Encoding dominates export time, so each raster is encoded at most once per
sample whatever the number of formats, and workers can encode in parallel and
hand bytes to the writer.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image

from geoassist.synth.types import Pair, Scene

# iSAID class palette (instance_color_RGB) and category names.
ISAID_CLASSES: dict[str, tuple[str, tuple[int, int, int]]] = {
    "ship": ("ship", (0, 0, 63)),
    "storage_tank": ("storage_tank", (0, 63, 63)),
    "tennis_court": ("tennis_court", (0, 63, 127)),
    "ground_track_field": ("Ground_Track_Field", (0, 63, 255)),
    "bridge": ("Bridge", (0, 127, 63)),
    "large_vehicle": ("Large_Vehicle", (0, 127, 127)),
    "small_vehicle": ("Small_Vehicle", (0, 0, 127)),
    "swimming_pool": ("Swimming_pool", (0, 0, 255)),
    "soccer_field": ("Soccer_ball_field", (0, 127, 191)),
    "airplane": ("plane", (0, 127, 255)),
}


def png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def jpeg(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def tiff(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="TIFF")
    return buf.getvalue()


def geotiff(arr: np.ndarray, crs: str, geotransform: tuple, band_names: list[str] | None = None) -> bytes:
    """A north-up GeoTIFF (bands last in ``arr``) as bytes."""
    import rasterio
    from rasterio.io import MemoryFile
    from rasterio.transform import Affine

    if arr.ndim == 2:
        arr = arr[..., None]
    x0, dx, rx, y0, ry, dy = geotransform
    profile: dict[str, Any] = {
        "driver": "GTiff",
        "width": arr.shape[1],
        "height": arr.shape[0],
        "count": arr.shape[2],
        "dtype": arr.dtype.name,
        "crs": rasterio.crs.CRS.from_string(crs),
        "transform": Affine(dx, rx, x0, ry, dy, y0),
        "interleave": "pixel",
    }
    with MemoryFile() as mem:
        with mem.open(**profile) as dst:
            dst.write(np.moveaxis(arr, 2, 0))
            if band_names:
                for i, n in enumerate(band_names, start=1):
                    dst.set_band_description(i, n)
        return bytes(mem.read())


def isaid_masks(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """iSAID-style class-colour and instance-id RGB masks (id = R + 256·G + 65536·B)."""
    a = scene.annotation
    color = np.zeros((a.height, a.width, 3), np.uint8)
    ids = np.zeros((a.height, a.width, 3), np.uint8)
    k = 0
    for o in a.things():
        if o.cls not in ISAID_CLASSES:
            continue
        k += 1
        x0, y0 = o.mask_origin
        h, w = o.mask.shape  # type: ignore[union-attr]
        sl = (slice(y0, y0 + h), slice(x0, x0 + w))
        color[sl][o.mask] = ISAID_CLASSES[o.cls][1]
        ids[sl][o.mask] = (k & 255, (k >> 8) & 255, k >> 16)
    return color, ids


class Encoded:
    """Lazily encoded rasters of one sample, keyed by what they are."""

    def __init__(self, sample: Scene | Pair, georef: bool = False):
        self.sample = sample
        self.georef = georef
        self._cache: dict[str, bytes] = {}

    def get(self, key: str) -> bytes:
        if key not in self._cache:
            self._cache[key] = self._encode(key)
        return self._cache[key]

    def _encode(self, key: str) -> bytes:
        s = self.sample
        if isinstance(s, Pair):
            a = s.annotation
            last = len(s.images) - 1
            if key == "A.png":
                return png(s.images[0][..., :3])
            if key == "B.png":
                return png(s.images[last][..., :3])
            if key.startswith("t") and key.endswith(".png"):
                return png(s.images[int(key[1:-4])][..., :3])
            if key == "label.png":
                return png(a.change_mask.astype(np.uint8) * 255)  # type: ignore[union-attr]
            raise KeyError(key)
        a = s.annotation
        if key == "rgb.png":
            return png(s.rgb)
        if key == "rgb.jpg":
            return jpeg(s.rgb)
        if key == "rgb.tif":
            return geotiff(s.rgb, a.crs, a.geotransform, ["red", "green", "blue"]) if self.georef else tiff(s.rgb)
        if key == "geo.tif":
            return geotiff(s.image, a.crs, a.geotransform, a.band_names)
        if key in ("isaid_color.png", "isaid_id.png"):
            color, ids = isaid_masks(s)
            self._cache["isaid_color.png"], self._cache["isaid_id.png"] = png(color), png(ids)
            return self._cache[key]
        raise KeyError(key)

    def prepare(self, keys: set[str]) -> Encoded:
        for k in sorted(keys):
            self.get(k)
        return self
