"""The image types every reader returns: :class:`Image` (pixels plus metadata) and :class:`ImageInfo`."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
import PIL.Image
from affine import Affine
from rasterio.crs import CRS

from geoassist.errors import BandMismatchError, ImageError, UnsupportedImageError
from geoassist.sensors import (
    apply_stretch,
    compute_stretch,
    default_band_names,
    select_bands,
)

__all__ = ["Image", "ImageInfo", "ImageSource"]

RGB_NAMES = ("red", "green", "blue")


class _Extent:
    """What :class:`ImageInfo` and :class:`Image` derive alike from ``width``, ``height``, ``transform``."""

    width: int
    height: int
    transform: Affine | None

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels, as Pillow orders it."""
        return (self.width, self.height)

    @property
    def is_georeferenced(self) -> bool:
        return self.transform is not None


@dataclass(frozen=True)
class ImageInfo(_Extent):
    """What :func:`~geoassist.io.load_image` would return for a source, read from its header only.

    ``count``, ``dtype`` and ``band_names`` describe the decoded image (a palette
    file is described as RGB or RGBA), not necessarily the bands stored on disk.
    """

    width: int
    height: int
    count: int
    dtype: str
    band_names: tuple[str, ...]
    nodata: float | None
    transform: Affine | None
    crs: CRS | None
    driver: str
    source: str | None


@dataclass
class Image(_Extent):
    """An image or raster: an H×W×C array plus what is known about its bands and place.

    ``array`` is always 3-D (height, width, bands) and keeps the file's dtype.
    ``transform`` maps pixel (column, row) to map coordinates in ``crs``; both are
    ``None`` for images that are not georeferenced.
    """

    array: np.ndarray
    band_names: list[str]
    nodata: float | None = None
    transform: Affine | None = None
    crs: CRS | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        self.array = np.asarray(self.array)
        if self.array.ndim != 3:
            raise UnsupportedImageError(
                f"Image.array must be H×W×C, got shape {self.array.shape}; "
                "use load_image() to convert H×W or C×H×W arrays"
            )
        check_dtype(self.array.dtype, self.source)
        if self.array.shape[0] == 0 or self.array.shape[1] == 0 or self.array.shape[2] == 0:
            raise ImageError(
                f"image {self.source or ''} is empty (shape {self.array.shape}); pass a non-empty image"
            )
        self.band_names = [str(n) for n in self.band_names]
        if len(self.band_names) != self.array.shape[2]:
            raise BandMismatchError(
                f"{len(self.band_names)} band names for an array with {self.array.shape[2]} bands; "
                "give one name per band"
            )
        if len(set(self.band_names)) != len(self.band_names):
            raise BandMismatchError(f"band names must be unique, got {self.band_names}")

    @property
    def height(self) -> int:
        return int(self.array.shape[0])

    @property
    def width(self) -> int:
        return int(self.array.shape[1])

    @property
    def count(self) -> int:
        """Number of bands."""
        return int(self.array.shape[2])

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    def valid_mask(self) -> np.ndarray:
        """H×W bool: False where the alpha band is 0, or where every other band equals nodata.

        A NaN nodata matches NaN values; in float images, pixels that are NaN in
        every band are invalid even without a declared nodata.
        """
        lowered = [n.lower() for n in self.band_names]
        valid = np.ones((self.height, self.width), dtype=bool)
        data_bands = list(range(self.count))
        if "alpha" in lowered and self.count > 1:
            alpha_index = lowered.index("alpha")
            valid &= self.array[:, :, alpha_index] != 0
            data_bands.remove(alpha_index)
        data = self.array[:, :, data_bands]
        if self.nodata is not None and not np.isnan(self.nodata):
            valid &= ~np.all(data == self.nodata, axis=2)
        elif data.dtype.kind == "f":
            valid &= ~np.all(np.isnan(data), axis=2)
        return valid

    def to_rgb_uint8(
        self,
        bands: Sequence[str | int] | None = None,
        percentiles: tuple[float, float] = (2, 98),
    ) -> np.ndarray:
        """H×W×3 uint8 composite for display and for RGB image encoders.

        Bands are ``bands`` (three names or 1-based band numbers, or one for a gray
        composite) or, without them, the image's own RGB as
        :func:`geoassist.sensors.select_bands` finds it (red/green/blue names; one or
        a gray band, replicated three times; 3 unnamed bands as R, G, B; 4 unnamed
        as R, G, B, NIR; a recognised Sentinel-2 or Landsat 8/9 true colour).
        Anything else raises :class:`BandMismatchError`.

        uint8 bands pass through unchanged. Other dtypes are stretched band by band
        between the given percentiles of the valid pixels (see :meth:`valid_mask`)
        to 0–255 (:func:`geoassist.sensors.compute_stretch` and ``apply_stretch``);
        invalid pixels become 0.
        """
        indexes = select_bands(self.band_names, bands, rgb=True, source=self.source)
        chosen = self.array[:, :, indexes]
        if chosen.dtype != np.uint8:
            limits = compute_stretch(self, indexes, percentiles)
            chosen = apply_stretch(chosen, limits, self.valid_mask())
        if chosen.shape[2] == 1:
            chosen = np.repeat(chosen, 3, axis=2)
        return np.ascontiguousarray(chosen)

    def pixel_to_map(self, x: Any, y: Any) -> tuple[Any, Any]:
        """Map coordinates (in ``crs`` units) of pixel position (x = column, y = row).

        Positions follow GDAL: (0, 0) is the top-left corner of the top-left pixel,
        so the centre of pixel (col, row) is (col + 0.5, row + 0.5). Scalars or
        numpy arrays are accepted.
        """
        if self.transform is None:
            raise ImageError(
                f"image {self.source or ''} is not georeferenced (no geotransform); "
                "pixel_to_map needs a GeoTIFF/JP2/ENVI file with georeferencing, a world file "
                "beside a PNG/JPEG, or an Image built with transform= and crs="
            )
        t = self.transform
        return (t.a * x + t.b * y + t.c, t.d * x + t.e * y + t.f)


ImageSource = (
    str
    | os.PathLike
    | bytes
    | bytearray
    | memoryview
    | BinaryIO
    | PIL.Image.Image
    | np.ndarray
    | Image
)


# --------------------------------------------------------------------------- helpers


def check_dtype(dtype: np.dtype, source: str | None) -> None:
    """Refuse dtypes GeoAssist does not read (bool, complex, object…)."""
    if dtype.kind not in "uif":
        raise UnsupportedImageError(
            f"{source or 'image'} has dtype {dtype}, which GeoAssist does not read; "
            "convert it to an integer or float dtype first (e.g. bool masks with .astype(np.uint8))"
        )


def as_hwc(array: np.ndarray, name: str) -> np.ndarray:
    """An H×W, H×W×C or (unambiguous) C×H×W array as H×W×C in native byte order."""
    check_dtype(array.dtype, name)
    if array.ndim == 2:
        array = array[:, :, None]
    elif array.ndim == 3 and array.shape[0] <= 16 < array.shape[2]:
        array = np.moveaxis(array, 0, -1)  # C×H×W, unambiguous
    elif array.ndim != 3:
        raise UnsupportedImageError(
            f"{name}: expected an H×W, H×W×C or C×H×W array, got {array.ndim} dimensions {array.shape}"
        )
    if 0 in array.shape:
        raise ImageError(
            f"{name} is empty (shape {array.shape}); pass an image with at least one pixel"
        )
    if array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("="))
    return array


def array_band_names(count: int) -> tuple[str, ...]:
    """Names of an array's bands: gray (1 band), red/green/blue (3 bands) or band_i."""
    return {1: ("gray",), 3: RGB_NAMES}.get(count, tuple(default_band_names(count)))


def window_transform(
    transform: Affine | None, col_off: int, row_off: int, scale: tuple[float, float] = (1.0, 1.0)
) -> Affine | None:
    """The transform of a window whose top-left pixel is (col_off, row_off), resampled by ``scale``."""
    if transform is None:
        return None
    t = transform
    x, y = t.c + t.a * col_off + t.b * row_off, t.f + t.d * col_off + t.e * row_off
    shifted = Affine(t.a, t.b, x, t.d, t.e, y)
    return shifted if scale == (1.0, 1.0) else shifted @ Affine.scale(*scale)
