"""Reading images and rasters safely.

:func:`load_image` turns a file path, raw bytes, a binary file object, a
``PIL.Image.Image`` or a numpy array into an :class:`Image`: an H×W×C array in
its native dtype plus band names, nodata, the geotransform and the CRS.
:func:`read_header` describes the same source without decoding any pixel, so
that huge scenes can be sized up and read by window.

Which library decodes what:

- PNG, JPEG, GIF, BMP and WebP (8-bit) go through Pillow, which reports
  truncated files as errors; palette, gray+alpha, CMYK and similar modes are
  converted as described in :func:`load_image`. A world file or ``.aux.xml``
  beside such a file is read with rasterio for the georeferencing.
- Everything else (GeoTIFF, JPEG 2000, ENVI, 16-bit colour PNG, images too big
  for Pillow's own limit, windowed reads of those) goes through rasterio.

Every source's size (width × height × bands) is checked against ``max_pixels``
from the header, before any pixel is decoded. Nothing here changes global
state: Pillow's ``MAX_IMAGE_PIXELS`` is only read, and rasterio's
``NotGeoreferencedWarning`` is silenced for the duration of an open under a
module lock.
"""

from __future__ import annotations

import io
import os
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import PIL.Image
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import ColorInterp
from rasterio.errors import NotGeoreferencedWarning, RasterioError
from rasterio.io import DatasetReader, MemoryFile
from rasterio.windows import Window

from geoassist.errors import (
    BandMismatchError,
    CorruptImageError,
    ImageError,
    ImageNotFoundError,
    ImageTooLargeError,
    UnsupportedImageError,
)

__all__ = ["DEFAULT_MAX_PIXELS", "Image", "ImageInfo", "ImageSource", "load_image", "read_header"]

DEFAULT_MAX_PIXELS = 2**28
"""Default limit on width × height × bands decoded at once (about 268 million values)."""

_RGB = ("red", "green", "blue")
_PILLOW_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM")
_RASTER_SIGNATURES = (
    b"II*\x00",  # TIFF little-endian
    b"MM\x00*",  # TIFF big-endian
    b"II+\x00",  # BigTIFF
    b"MM\x00+",
    b"\x00\x00\x00\x0cjP  ",  # JPEG 2000 (JP2 box)
    b"\xffO\xffQ",  # JPEG 2000 codestream
    b"ENVI",  # an ENVI header
)
_IMAGE_SUFFIXES = {
    ".png", ".jpg", ".jpeg", ".jpe", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".gtif",
    ".jp2", ".j2k", ".j2c", ".jpf", ".jpx", ".hdr", ".img", ".dat", ".bin", ".raw",
    ".bil", ".bsq", ".bip", ".envi", ".vrt",
}  # fmt: skip
_ENVI_DATA_SUFFIXES = ("", ".img", ".dat", ".bin", ".raw", ".bil", ".bsq", ".bip", ".envi")
_WORLD_FILE_SUFFIXES = (
    ".wld", ".pgw", ".pngw", ".jgw", ".jpgw", ".jpegw", ".gfw", ".gifw", ".bpw", ".bmpw",
)  # fmt: skip

# Pillow mode -> (mode to convert to, band names). None: keep the mode as it is.
_PIL_MODES: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "1": ("L", ("gray",)),
    "L": (None, ("gray",)),
    "LA": (None, ("gray", "alpha")),
    "La": ("LA", ("gray", "alpha")),
    "PA": ("RGBA", (*_RGB, "alpha")),
    "RGB": (None, _RGB),
    "RGBA": (None, (*_RGB, "alpha")),
    "RGBa": ("RGBA", (*_RGB, "alpha")),
    "RGBX": ("RGB", _RGB),
    "CMYK": ("RGB", _RGB),
    "YCbCr": ("RGB", _RGB),
    "LAB": ("RGB", _RGB),
    "HSV": ("RGB", _RGB),
    "I": (None, ("gray",)),
    "F": (None, ("gray",)),
    "I;16": (None, ("gray",)),
    "I;16L": (None, ("gray",)),
    "I;16B": (None, ("gray",)),
    "I;16N": (None, ("gray",)),
}
_PIL_DTYPES = {"I": "int32", "F": "float32"} | dict.fromkeys(
    ("I;16", "I;16L", "I;16B", "I;16N"), "uint16"
)

# GDAL colour interpretations that become band names (gray only for single-band images).
_INTERP_NAMES = {
    ci: ci.name.lower() for ci in ColorInterp if ci.name not in ("undefined", "gray", "palette")
}

# rasterio warns on every open of an image without a geotransform; the warning
# filter is process-wide, so changes to it are serialised.
_WARNINGS_LOCK = threading.Lock()


# --------------------------------------------------------------------------- data types


@dataclass(frozen=True)
class ImageInfo:
    """What :func:`load_image` would return for a source, read from its header only.

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

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels, as Pillow orders it."""
        return (self.width, self.height)

    @property
    def is_georeferenced(self) -> bool:
        return self.transform is not None


@dataclass
class Image:
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
        _check_dtype(self.array.dtype, self.source)
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

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels, as Pillow orders it."""
        return (self.width, self.height)

    @property
    def is_georeferenced(self) -> bool:
        return self.transform is not None

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

        Bands are chosen, in order: the given ``bands`` (three names or 1-based
        band numbers, or one for a gray composite); the bands named red, green
        and blue; the only band, or the band named gray, replicated three times;
        the three bands of an unnamed 3-band image, taken as R, G, B; the first
        three bands of an unnamed 4-band image, taken as R, G, B, NIR (the order of
        NAIP and PlanetScope 4-band products). Anything else (2 bands, 5 or more
        bands without red/green/blue names) raises :class:`BandMismatchError`.

        uint8 bands pass through unchanged. Other dtypes are stretched band by band
        between the given percentiles of the valid pixels (see :meth:`valid_mask`)
        to 0–255; invalid pixels become 0.
        """
        indexes = self._rgb_indexes(bands)
        chosen = self.array[:, :, indexes]
        if chosen.dtype != np.uint8:
            chosen = self._stretch(chosen, indexes, percentiles)
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

    def _rgb_indexes(self, bands: Sequence[str | int] | None) -> list[int]:
        if bands is not None:
            if isinstance(bands, (str, int)):
                bands = [bands]
            if len(bands) not in (1, 3):
                raise BandMismatchError(
                    f"to_rgb_uint8 needs 3 bands (or 1 for gray), got bands={list(bands)}; "
                    f"the image has bands {_describe_names(self.band_names)}"
                )
            return _resolve_bands(bands, self.band_names, self.source)
        lowered = [n.lower() for n in self.band_names]
        if all(c in lowered for c in _RGB):
            return [lowered.index(c) for c in _RGB]
        if self.count == 1:
            return [0]
        if "gray" in lowered:
            return [lowered.index("gray")]
        unnamed = self.band_names == _default_names(self.count)
        if self.count == 3 or (self.count == 4 and unnamed):
            return [0, 1, 2]
        raise BandMismatchError(
            f"cannot tell which bands are red, green and blue: image has {self.count} bands "
            f"named {_describe_names(self.band_names)}; pass bands=[...] (three band names or "
            "1-based band numbers, e.g. bands=[4, 3, 2] for Sentinel-2 true colour) or a sensor preset"
        )

    def _stretch(
        self, chosen: np.ndarray, indexes: list[int], percentiles: tuple[float, float]
    ) -> np.ndarray:
        low_pct, high_pct = percentiles
        if not 0 <= low_pct < high_pct <= 100:
            raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles}")
        valid = self.valid_mask()
        out = np.zeros(chosen.shape, dtype=np.uint8)
        for k in range(chosen.shape[2]):
            band = chosen[:, :, k].astype(np.float32, copy=False)
            ok = valid & np.isfinite(band)
            values = band[ok]
            if values.size == 0:
                continue
            if values.size > 1_000_000:  # percentiles of a regular subsample are close enough
                values = values[:: values.size // 1_000_000]
            low, high = np.percentile(values, [low_pct, high_pct])
            scale = 255.0 / (high - low) if high > low else 0.0
            scaled = np.clip((band - low) * scale, 0, 255)
            out[:, :, k] = np.where(ok, np.rint(scaled), 0).astype(np.uint8)
        return out


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

# --------------------------------------------------------------------------- public functions


def load_image(
    source: ImageSource,
    *,
    bands: Sequence[str | int] | None = None,
    window: tuple[int, int, int, int] | Window | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    keep_palette: bool = False,
) -> Image:
    """Read an image or raster into an :class:`Image`.

    ``source`` is one of:

    - a path (``str`` or ``Path``) to a PNG, JPEG, GIF, BMP, WebP, TIFF/GeoTIFF,
      JPEG 2000 or ENVI file (the ``.hdr`` or the binary beside it), or anything
      else GDAL reads;
    - raw ``bytes``/``bytearray``/``memoryview`` or a binary file object;
    - a ``PIL.Image.Image`` (the first frame of a multi-frame image);
    - an :class:`Image` (band selection and window apply; metadata is kept);
    - a numpy array: H×W (one band), H×W×C, or C×H×W, which is only recognised
      when the first dimension is ≤ 16 and the last > 16 (a (3, 512, 512) array
      is C×H×W; a (3, 10, 10) array is read as H×W×C with 10 bands). Arrays are
      not copied unless needed, so the result may share memory with them.

    ``bands`` selects bands by name or 1-based number, at read time for rasters.
    ``window=(col_off, row_off, width, height)`` reads that part only (for
    GeoTIFF and JPEG 2000 only the blocks it touches are decoded; PNG and JPEG
    are decoded whole when they fit ``max_pixels``) and shifts the transform.
    ``max_pixels`` caps width × height × bands decoded (``None``: no cap);
    in-memory arrays are not checked.

    Pillow modes are converted so that the result is plain data: palette (P, PA)
    becomes RGB, or RGBA when the palette has transparency (``keep_palette=True``
    keeps the 1-band indices, named ``palette_index``; the same holds for
    palette TIFFs); 1-bit becomes 0/255 gray; CMYK, YCbCr, LAB and HSV become
    RGB; LA and RGBA keep their alpha band; 16-bit gray stays uint16, 32-bit
    integer and float gray stay int32 and float32. A gray image whose PNG
    declares a transparent value gets it as nodata; an RGB one gets an alpha
    band. EXIF orientation is not applied, so pixels stay aligned with any
    georeferencing.

    Band names come from the file's band descriptions when present, else from its
    colour interpretation (red, green, blue, alpha, nir…; gray for one band), else
    ``band_1``…``band_N``. Arrays get gray (1 band), red/green/blue (3 bands) or
    ``band_i``.

    Raises :class:`ImageNotFoundError`, :class:`CorruptImageError`,
    :class:`UnsupportedImageError`, :class:`ImageTooLargeError` or
    :class:`BandMismatchError` (unknown band names), all :class:`ImageError`.
    """
    if max_pixels is not None and max_pixels <= 0:
        raise ValueError(f"max_pixels must be positive or None, got {max_pixels}")
    with _open_source(source, keep_palette=keep_palette) as reader:
        info = reader.info
        indexes = _resolve_bands(bands, info.band_names, info.source) if bands is not None else None
        win = _check_window(window, info)
        return reader.read(indexes, win, max_pixels)


def read_header(source: ImageSource, *, keep_palette: bool = False) -> ImageInfo:
    """Describe a source (size, bands, dtype, nodata, georeferencing, driver) without decoding pixels.

    The description matches what :func:`load_image` returns for the same source
    and ``keep_palette``. No size limit applies, so this is the way to size up a
    scene too large to load whole before reading it by ``window``.
    """
    with _open_source(source, keep_palette=keep_palette) as reader:
        return reader.info


# --------------------------------------------------------------------------- readers


class _ArrayReader:
    """Serves an in-memory array, or an :class:`Image` with its metadata kept."""

    def __init__(self, source: np.ndarray | Image, name: str) -> None:
        if isinstance(source, Image):
            self.array, names = source.array, tuple(source.band_names)
            georef = (source.nodata, source.transform, source.crs)
            name = source.source or name
        else:
            self.array = _as_hwc(source, name)
            c = self.array.shape[2]
            names = {1: ("gray",), 3: _RGB}.get(c, tuple(_default_names(c)))
            georef = (None, None, None)
        h, w, c = self.array.shape
        self.info = ImageInfo(w, h, c, str(self.array.dtype), names, *georef, "array", name)

    def read(self, indexes: list[int] | None, win: Window | None, max_pixels: int | None) -> Image:
        info, array, transform = self.info, self.array, self.info.transform
        if win is not None:
            array = _crop(array, win)
            if transform is not None:
                transform = _shift(transform, win.col_off, win.row_off)
        names = list(info.band_names)
        return _finish(array, names, indexes, info.nodata, transform, info.crs, info.source)


class _PillowReader:
    """Decodes with Pillow; ``fallback`` (rasterio) serves windows of images too big to decode whole."""

    def __init__(
        self,
        pil: PIL.Image.Image,
        name: str,
        keep_palette: bool,
        georef: tuple[Affine | None, CRS | None] = (None, None),
        fallback: Callable[[], Any] | None = None,
    ) -> None:
        self.pil, self.name, self.fallback = pil, name, fallback
        mode = pil.mode
        transparency = pil.info.get("transparency")
        nodata: float | None = None
        if mode == "P":
            if keep_palette:
                target, names = None, ("palette_index",)
            elif "transparency" in pil.info or (
                pil.palette is not None and pil.palette.mode == "RGBA"
            ):
                target, names = "RGBA", (*_RGB, "alpha")
            else:
                target, names = "RGB", _RGB
        elif mode not in _PIL_MODES:
            raise UnsupportedImageError(
                f"{name}: Pillow mode {mode!r} is not supported; convert it to RGB or L first"
            )
        else:
            target, names = _PIL_MODES[mode]
            if mode == "RGB" and transparency is not None:
                target, names = "RGBA", (*_RGB, "alpha")
            elif names == ("gray",) and isinstance(transparency, int):
                nodata = float(transparency)
        self.target = target
        width, height = pil.size
        dtype = _PIL_DTYPES.get(target or mode, "uint8")
        self.info = ImageInfo(
            width, height, len(names), dtype, names, nodata, georef[0], georef[1],
            pil.format or "PIL", name,
        )  # fmt: skip

    def read(self, indexes: list[int] | None, win: Window | None, max_pixels: int | None) -> Image:
        info = self.info
        full = info.width * info.height * info.count
        if (
            max_pixels is not None
            and full > max_pixels
            and win is not None
            and self.fallback is not None
        ):
            # Decoding the whole image would break the limit; rasterio reads just the window.
            with self.fallback() as reader:
                return reader.read(indexes, win, max_pixels)
        _check_size(info, info.width, info.height, info.count, max_pixels)
        try:
            self.pil.seek(0)
            self.pil.load()
            pil = self.pil.convert(self.target) if self.target else self.pil
            array = np.asarray(pil)
        except PIL.Image.DecompressionBombError as exc:
            raise _too_large_from_pillow(self.name, exc) from exc
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise CorruptImageError(
                f"{self.name} cannot be decoded ({exc}); the file is truncated or damaged"
            ) from exc
        if array.dtype.byteorder == ">":
            array = array.astype(array.dtype.newbyteorder("="))
        if array.dtype == bool:
            array = array.astype(np.uint8) * 255
        if array.ndim == 2:
            array = array[:, :, None]
        transform = info.transform
        if win is not None:
            array = _crop(array, win)
            if transform is not None:
                transform = _shift(transform, win.col_off, win.row_off)
        return _finish(
            array, list(info.band_names), indexes, info.nodata, transform, info.crs, self.name
        )


class _RasterioReader:
    def __init__(self, ds: DatasetReader, name: str, keep_palette: bool) -> None:
        self.ds, self.name = ds, name
        for dt in ds.dtypes:
            if "complex" in dt:
                raise UnsupportedImageError(
                    f"{name} holds complex values ({dt}), e.g. SAR single-look complex data; "
                    "convert to amplitude or intensity (a real dtype) first"
                )
            _check_dtype(np.dtype(dt), name)
        if ds.count == 0:
            subdatasets = ", ".join(ds.subdatasets[:3]) + (" …" if len(ds.subdatasets) > 3 else "")
            raise UnsupportedImageError(
                f"{name} has no raster bands of its own; open one of its subdatasets instead "
                f"({subdatasets or 'none listed'})"
            )
        transform, crs = _georef(ds)
        self.palette: np.ndarray | None = None
        nodata = ds.nodata
        if ds.count == 1 and ds.colorinterp[0] == ColorInterp.palette and not keep_palette:
            self.palette = _palette_lut(ds)
            names: tuple[str, ...] = (*_RGB, "alpha") if self.palette.shape[1] == 4 else _RGB
            dtype, nodata = "uint8", None
        elif ds.count == 1 and ds.colorinterp[0] == ColorInterp.palette:
            names, dtype = ("palette_index",), ds.dtypes[0]
        else:
            names = tuple(_band_names(ds))
            dtype = str(np.result_type(*ds.dtypes))
        if nodata is not None:
            nodata = float(nodata)
        self.info = ImageInfo(
            ds.width, ds.height, len(names), dtype, names, nodata, transform, crs, ds.driver, name
        )

    def read(self, indexes: list[int] | None, win: Window | None, max_pixels: int | None) -> Image:
        info = self.info
        selected = indexes if indexes is not None else list(range(info.count))
        width = win.width if win is not None else info.width
        height = win.height if win is not None else info.height
        _check_size(info, width, height, len(selected), max_pixels)
        try:
            if self.palette is not None:
                indices = self.ds.read(1, window=win)
                array = self.palette[np.clip(indices, 0, len(self.palette) - 1)]
                file_indexes = None
            else:
                file_indexes = [i + 1 for i in selected]
                dtype = np.result_type(*[self.ds.dtypes[i - 1] for i in file_indexes])
                array = self.ds.read(file_indexes, window=win, out_dtype=dtype)
                array = np.ascontiguousarray(np.moveaxis(array, 0, -1))
        except (RasterioError, OSError, ValueError) as exc:
            raise CorruptImageError(
                f"{self.name} cannot be decoded ({exc}); the file is truncated or damaged"
            ) from exc
        transform = info.transform
        if win is not None and transform is not None:
            transform = _shift(transform, win.col_off, win.row_off)
        nodata = None
        if file_indexes is not None:
            # One nodata per image: the first selected band's.
            first = self.ds.nodatavals[file_indexes[0] - 1]
            nodata = None if first is None else float(first)
        if self.palette is not None:
            return _finish(
                array, list(info.band_names), indexes, None, transform, info.crs, self.name
            )
        names = [info.band_names[i] for i in selected]
        return _finish(array, names, None, nodata, transform, info.crs, self.name)


# --------------------------------------------------------------------------- opening sources


@contextmanager
def _open_source(source: ImageSource, *, keep_palette: bool) -> Iterator[Any]:
    if isinstance(source, (np.ndarray, Image)):
        yield _ArrayReader(source, "<array>")
        return
    if isinstance(source, PIL.Image.Image):
        name = getattr(source, "filename", None) or "<PIL image>"
        yield _PillowReader(source, str(name), keep_palette)
        return
    if isinstance(source, (str, os.PathLike)):
        path = _existing_file(source)
        with path.open("rb") as f:
            head = f.read(32)

        def open_dataset() -> DatasetReader:
            return rasterio.open(path)

        def georef() -> tuple[Affine | None, CRS | None]:
            return _sidecar_georef(path)

        with _open_file_like(
            str(path), head, lambda: PIL.Image.open(path), open_dataset, georef,
            suffix=path.suffix.lower(), keep_palette=keep_palette,
        ) as reader:  # fmt: skip
            yield reader
        return
    if isinstance(source, (bytes, bytearray, memoryview)):
        data, name = bytes(source), "<bytes>"
    elif hasattr(source, "read"):
        data = source.read()
        name = getattr(source, "name", None)
        name = name if isinstance(name, str) else "<file object>"
        if not isinstance(data, bytes):
            raise UnsupportedImageError(
                f"{name} returned {type(data).__name__}; open the file in binary mode ('rb')"
            )
    else:
        raise UnsupportedImageError(
            f"cannot read an image from {type(source).__name__}; pass a path, bytes, a binary file "
            "object, a PIL.Image.Image or a numpy array"
        )
    if not data:
        raise CorruptImageError(f"{name} is empty (0 bytes); pass the image's full contents")
    with ExitStack() as stack:

        def open_dataset() -> DatasetReader:
            memfile = stack.enter_context(MemoryFile(data))
            return memfile.open()

        with _open_file_like(
            name, data[:32], lambda: PIL.Image.open(io.BytesIO(data)), open_dataset,
            lambda: (None, None), suffix="", keep_palette=keep_palette,
        ) as reader:  # fmt: skip
            yield reader


@contextmanager
def _open_file_like(
    name: str,
    head: bytes,
    open_pil: Callable[[], PIL.Image.Image],
    open_dataset: Callable[[], DatasetReader],
    georef: Callable[[], tuple[Affine | None, CRS | None]],
    *,
    suffix: str,
    keep_palette: bool,
) -> Iterator[Any]:
    """Pillow first for 8-bit PNG/JPEG/GIF/BMP/WebP, rasterio for the rest and as a fallback."""

    @contextmanager
    def rasterio_reader() -> Iterator[_RasterioReader]:
        errors: list[str] = []
        ds = _open_dataset(open_dataset, errors)
        if ds is None:
            raise CorruptImageError(f"{name} cannot be opened by rasterio ({errors[0]})")
        with ds:
            yield _RasterioReader(ds, name, keep_palette)

    pillow_error: Exception | None = None
    tried_pillow = False
    if _is_pillow_format(head):
        tried_pillow = True
        try:
            pil = open_pil()
        except PIL.Image.DecompressionBombError as exc:
            # Bigger than Pillow allows: rasterio reads the header and applies max_pixels.
            pillow_error = exc
        except (PIL.UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            pillow_error = exc
        else:
            with pil:
                yield _PillowReader(pil, name, keep_palette, georef(), fallback=rasterio_reader)
            return
    gdal_errors: list[str] = []
    ds = _open_dataset(open_dataset, gdal_errors)
    if ds is not None:
        with ds:
            yield _RasterioReader(ds, name, keep_palette)
        return
    if not tried_pillow and not head.startswith(_RASTER_SIGNATURES):
        try:
            pil = open_pil()
        except (PIL.UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            pillow_error = exc
        else:
            with pil:
                yield _PillowReader(pil, name, keep_palette, georef())
            return
    if isinstance(pillow_error, PIL.Image.DecompressionBombError):
        raise _too_large_from_pillow(name, pillow_error) from pillow_error
    if _is_pillow_format(head) or head.startswith(_RASTER_SIGNATURES) or suffix in _IMAGE_SUFFIXES:
        hint = (
            " (an ENVI binary needs its .hdr beside it)"
            if suffix in _ENVI_DATA_SUFFIXES[1:]
            else ""
        )
        reason = pillow_error or (gdal_errors[0] if gdal_errors else None)
        raise CorruptImageError(
            f"{name} cannot be decoded as an image{hint}; the file is truncated, damaged or not what "
            "its name says — re-download or re-export it" + (f" ({reason})" if reason else "")
        )
    raise UnsupportedImageError(
        f"{name} is not in a recognised image format; GeoAssist reads PNG, JPEG, GIF, BMP, WebP, "
        "TIFF/GeoTIFF, JPEG 2000, ENVI and other GDAL raster formats"
    )


def _open_dataset(
    open_dataset: Callable[[], DatasetReader], errors: list[str] | None = None
) -> DatasetReader | None:
    """Open with rasterio, or None (the reason appended to ``errors``) when GDAL cannot."""
    with _WARNINGS_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        try:
            return open_dataset()
        except (RasterioError, OSError) as exc:
            if errors is not None:
                errors.append(str(exc))
            return None


def _existing_file(source: str | os.PathLike) -> Path:
    text = os.fspath(source)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if "://" in text:
        raise UnsupportedImageError(f"{text} is a URL; download the file and pass its local path")
    path = Path(text).expanduser()
    if not path.exists():
        raise ImageNotFoundError(
            f"no such image file: {path}; check the path (relative paths start at {Path.cwd()})"
        )
    if path.is_dir():
        raise UnsupportedImageError(
            f"{path} is a folder; pass the path of one image file inside it"
        )
    if path.suffix.lower() == ".hdr":
        # An ENVI header: GDAL opens the binary beside it, which finds the header again.
        for suffix in _ENVI_DATA_SUFFIXES:
            candidate = path.with_suffix(suffix)
            if candidate.is_file():
                path = candidate
                break
        else:
            looked = ", ".join(path.with_suffix(s).name for s in _ENVI_DATA_SUFFIXES)
            raise ImageNotFoundError(
                f"ENVI header {path} has no data file beside it (looked for {looked})"
            )
    if path.stat().st_size == 0:
        raise CorruptImageError(f"{path} is empty (0 bytes); re-download or re-export it")
    return path


def _sidecar_georef(path: Path) -> tuple[Affine | None, CRS | None]:
    """Georeferencing of a PNG/JPEG from a world file or .aux.xml beside it, else (None, None)."""
    sidecars = [path.with_name(path.name + ".aux.xml")] + [
        path.with_suffix(s) for s in _WORLD_FILE_SUFFIXES
    ]
    if not any(p.is_file() for p in sidecars):
        return None, None
    ds = _open_dataset(lambda: rasterio.open(path))
    if ds is None:
        return None, None
    with ds:
        return _georef(ds)


# --------------------------------------------------------------------------- helpers


def _is_pillow_format(head: bytes) -> bool:
    if head.startswith(b"\x89PNG\r\n\x1a\n") and len(head) >= 26:
        bit_depth, colour_type = head[24], head[25]
        # Pillow reduces 16-bit colour PNGs to 8 bits; rasterio keeps them uint16 (but, unlike
        # Pillow, GDAL does not report truncated PNG data, so 8-bit PNGs stay with Pillow).
        return not (bit_depth == 16 and colour_type in (2, 4, 6))
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return True
    return head.startswith(_PILLOW_SIGNATURES)


def _georef(ds: DatasetReader) -> tuple[Affine | None, CRS | None]:
    crs = ds.crs if ds.crs else None
    transform = ds.transform
    if crs is None and transform.is_identity:
        return None, None  # GDAL's default for files without a geotransform
    return transform, crs


def _crop(array: np.ndarray, win: Window) -> np.ndarray:
    return array[win.row_off : win.row_off + win.height, win.col_off : win.col_off + win.width]


def _shift(transform: Affine, col_off: int, row_off: int) -> Affine:
    """The transform of a window whose top-left pixel is (col_off, row_off)."""
    t = transform
    x, y = t.c + t.a * col_off + t.b * row_off, t.f + t.d * col_off + t.e * row_off
    return Affine(t.a, t.b, x, t.d, t.e, y)


def _band_names(ds: DatasetReader) -> list[str]:
    interps = list(ds.colorinterp)
    names: list[str] = []
    for i, (desc, interp) in enumerate(zip(ds.descriptions, interps, strict=True), start=1):
        if desc and desc.strip():
            names.append(desc.strip())
        elif interp == ColorInterp.gray and (
            ds.count == 1 or (ds.count == 2 and ColorInterp.alpha in interps)
        ):
            names.append("gray")
        else:
            names.append(_INTERP_NAMES.get(interp, f"band_{i}"))
    seen: set[str] = set()
    for i, n in enumerate(names):
        if n in seen:
            names[i] = f"{n}_{i + 1}" if ds.descriptions[i] else f"band_{i + 1}"
        seen.add(names[i])
    return names


def _palette_lut(ds: DatasetReader) -> np.ndarray:
    """Index -> RGB(A) lookup table; RGBA when the palette has transparency or a nodata index."""
    colormap = ds.colormap(1)
    dtype = np.dtype(ds.dtypes[0])
    size = 1 << (8 * dtype.itemsize) if dtype in (np.uint8, np.uint16) else max(colormap) + 1
    lut = np.zeros((size, 4), dtype=np.uint8)
    for index, rgba in colormap.items():
        if 0 <= index < size:
            lut[index] = rgba
    has_alpha = bool((lut[[i for i in colormap if 0 <= i < size], 3] != 255).any())
    if ds.nodata is not None and 0 <= ds.nodata < size:
        lut[int(ds.nodata), 3] = 0
        has_alpha = True
    return lut if has_alpha else lut[:, :3]


def _default_names(count: int) -> list[str]:
    return [f"band_{i}" for i in range(1, count + 1)]


def _describe_names(names: Sequence[str]) -> str:
    names = list(names)
    if names == _default_names(len(names)) and len(names) > 2:
        return f"band_1..band_{len(names)}"
    return ", ".join(names) if len(names) <= 20 else ", ".join(names[:20]) + ", …"


def _resolve_bands(
    bands: Sequence[str | int], names: Sequence[str], source: str | None
) -> list[int]:
    """0-based indexes of ``bands`` (names, case-insensitive, or 1-based numbers)."""
    if isinstance(bands, (str, int)):
        bands = [bands]
    if len(bands) == 0:
        raise BandMismatchError("bands=[] selects nothing; name at least one band")
    lowered = [n.lower() for n in names]
    out = []
    for band in bands:
        if isinstance(band, (int, np.integer)) and not isinstance(band, bool):
            if not 1 <= band <= len(names):
                raise BandMismatchError(
                    f"band {band} does not exist in {source or 'the image'}, which has {len(names)} bands "
                    f"({_describe_names(names)}); band numbers start at 1"
                )
            out.append(int(band) - 1)
        elif isinstance(band, str) and band.lower() in lowered:
            out.append(lowered.index(band.lower()))
        else:
            raise BandMismatchError(
                f"no band {band!r} in {source or 'the image'}; its bands are {_describe_names(names)} "
                "(select by these names or by 1-based number)"
            )
    return out


def _check_window(
    window: tuple[int, int, int, int] | Window | None, info: ImageInfo
) -> Window | None:
    if window is None:
        return None
    if isinstance(window, Window):
        values = (window.col_off, window.row_off, window.width, window.height)
    else:
        values = tuple(window)
    if len(values) != 4 or any(int(v) != v for v in values):
        raise ImageError(
            f"window must be four integers (col_off, row_off, width, height), got {window!r}"
        )
    col, row, width, height = (int(v) for v in values)
    if (
        col < 0
        or row < 0
        or width <= 0
        or height <= 0
        or col + width > info.width
        or row + height > info.height
    ):
        raise ImageError(
            f"window (col_off={col}, row_off={row}, width={width}, height={height}) does not fit inside "
            f"{info.source or 'the image'}, which is {info.width}×{info.height}; clip it to the image"
        )
    return Window(col, row, width, height)


def _check_size(
    info: ImageInfo, width: int, height: int, count: int, max_pixels: int | None
) -> None:
    values = width * height * count
    if max_pixels is None or values <= max_pixels:
        return
    part = (
        ""
        if (width, height) == (info.width, info.height)
        else f" (window of a {info.width}×{info.height} image)"
    )
    raise ImageTooLargeError(
        f"{info.source or 'image'} is {width}×{height} pixels × {count} bands{part} = {values:,} values, "
        f"over the limit of {max_pixels:,}; if you trust the file pass max_pixels={values} (or None), "
        "otherwise read part of it with window=(col_off, row_off, width, height) or bands=[...], "
        "or tile it (read_header gives the size without decoding)"
    )


def _too_large_from_pillow(name: str, exc: Exception) -> ImageTooLargeError:
    return ImageTooLargeError(
        f"{name} is too large for Pillow's decompression-bomb limit ({exc}); if you trust the file "
        "convert it to a tiled GeoTIFF and read it by window, or pass it as a path that rasterio can read"
    )


def _check_dtype(dtype: np.dtype, source: str | None) -> None:
    if dtype.kind not in "uif":
        raise UnsupportedImageError(
            f"{source or 'image'} has dtype {dtype}, which GeoAssist does not read; "
            "convert it to an integer or float dtype first (e.g. bool masks with .astype(np.uint8))"
        )


def _as_hwc(array: np.ndarray, name: str) -> np.ndarray:
    _check_dtype(array.dtype, name)
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


def _finish(
    array: np.ndarray,
    names: list[str],
    indexes: list[int] | None,
    nodata: float | None,
    transform: Affine | None,
    crs: CRS | None,
    source: str | None,
) -> Image:
    if indexes is not None:
        array = array[:, :, indexes]
        names = [names[i] for i in indexes]
        if len(set(names)) != len(names):
            raise BandMismatchError(f"bands selects the same band more than once: {names}")
    return Image(array, names, nodata=nodata, transform=transform, crs=crs, source=source)
