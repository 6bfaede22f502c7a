"""The windowed reader interface and its readers for arrays, Pillow images and rasterio datasets.

A :class:`RasterReader` describes its source (``info``) from the header alone and
reads any window of it, at full resolution or resampled to ``out_size``, into an
:class:`~geoassist.raster.image.Image`. Every read, the overview included, checks
the pixel limit from the header *before* decoding anything:

- the values returned (width × height × bands of the output) must fit ``max_pixels``;
- formats that are decoded whole whatever part is asked for (PNG, JPEG, GIF, BMP,
  WebP, and anything Pillow decodes) must fit it whole;
- block-by-block formats (tiled or striped GeoTIFF, JPEG 2000…) must fit one block in
  it, and may decode at most ``SCAN_FACTOR`` × ``max_pixels`` values in total (a
  decimated read of a file without overviews at that scale decodes every block once).

Decoding errors of rasterio, GDAL and Pillow become :class:`CorruptImageError`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import Any

import numpy as np
import PIL.Image
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import RasterioError
from rasterio.io import DatasetReader
from rasterio.windows import Window

from geoassist.errors import (
    BandMismatchError,
    CorruptImageError,
    ImageError,
    ImageTooLargeError,
    UnsupportedImageError,
)
from geoassist.raster import DEFAULT_MAX_PIXELS, SCAN_FACTOR
from geoassist.raster.image import (
    RGB_NAMES,
    Image,
    ImageInfo,
    array_band_names,
    as_hwc,
    check_dtype,
    window_transform,
)

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "RasterReader",
    "ArrayReader",
    "PillowReader",
    "RasterioReader",
    "overview_size",
]

# GDAL drivers that decode a whole image (or every row above a window) for any read.
WHOLE_DECODE_DRIVERS = frozenset({"PNG", "JPEG", "GIF", "BMP", "WEBP"})

# Pillow mode -> (mode to convert to, band names). None: keep the mode as it is.
_PIL_MODES: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "1": ("L", ("gray",)),
    "L": (None, ("gray",)),
    "LA": (None, ("gray", "alpha")),
    "La": ("LA", ("gray", "alpha")),
    "PA": ("RGBA", (*RGB_NAMES, "alpha")),
    "RGB": (None, RGB_NAMES),
    "RGBA": (None, (*RGB_NAMES, "alpha")),
    "RGBa": ("RGBA", (*RGB_NAMES, "alpha")),
    "RGBX": ("RGB", RGB_NAMES),
    "CMYK": ("RGB", RGB_NAMES),
    "YCbCr": ("RGB", RGB_NAMES),
    "LAB": ("RGB", RGB_NAMES),
    "HSV": ("RGB", RGB_NAMES),
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
_DECODE_ERRORS = (RasterioError, OSError, ValueError, EOFError, SyntaxError)

Window4 = tuple[int, int, int, int]


def overview_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) scaled so that the longer side is at most ``max_side`` (never enlarged)."""
    scale = max(width, height) / max_side
    if scale <= 1:
        return width, height
    return max(1, round(width / scale)), max(1, round(height / scale))


class RasterReader:
    """A raster described from its header and read window by window.

    ``read(indexes, window, out_size)`` returns an :class:`Image` of ``window``
    (``(col_off, row_off, width, height)`` or a rasterio ``Window``; ``None``: the
    whole raster) with the 0-based bands ``indexes`` (``None``: all), resampled to
    ``out_size=(width, height)`` when given (nearest at full resolution, average
    when shrinking, bilinear when enlarging), its transform shifted and scaled to
    match. ``read_overview(max_side)`` is the whole raster with its longer side at
    most ``max_side``, from the file's own overviews when it has them.
    ``max_pixels`` (set when the reader is opened; ``None``: no cap) is checked
    from the header before any decoding (see the module docstring). Readers are context managers; closing one closes its file.
    """

    info: ImageInfo
    whole_decode: bool = True
    overview_factors: tuple[int, ...] = ()
    remote: bool = False

    def __init__(self, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> None:
        if max_pixels is not None and max_pixels <= 0:
            raise ValueError(f"max_pixels must be positive or None, got {max_pixels}")
        self.max_pixels = max_pixels
        self.resources = ExitStack()  # what closing the reader closes (files, GDAL settings)

    @property
    def has_overviews(self) -> bool:
        return bool(self.overview_factors)

    # ----------------------------------------------------------------- reading
    def read(
        self,
        indexes: Sequence[int] | None = None,
        window: Window4 | Window | None = None,
        out_size: tuple[int, int] | None = None,
    ) -> Image:
        info = self.info
        selected = list(range(info.count)) if indexes is None else [int(i) for i in indexes]
        if any(not 0 <= i < info.count for i in selected) or not selected:
            raise BandMismatchError(
                f"band indexes {selected} do not fit {info.source or 'the image'}, which has "
                f"{info.count} bands (0-based here; select by name with geoassist.sensors.select_bands)"
            )
        if len(set(selected)) != len(selected):
            names = [info.band_names[i] for i in selected]
            raise BandMismatchError(f"bands selects the same band more than once: {names}")
        win = check_window(window, info)
        out = _check_out_size(out_size, win)
        self.check_limit(len(selected), win, out, self.max_pixels)
        try:
            array = self._read(selected, win, out)
        except _DECODE_ERRORS as exc:
            if self.remote:
                raise ImageError(
                    f"reading {info.source} over the network failed ({exc}); check the network "
                    "connection, or download the file and pass its local path"
                ) from exc
            raise CorruptImageError(
                f"{info.source or 'the image'} cannot be decoded ({exc}); the file is truncated "
                "or damaged — re-download or re-export it"
            ) from exc
        except PIL.Image.DecompressionBombError as exc:  # pragma: no cover - limit checked first
            raise too_large_for_pillow(info.source or "image", exc) from exc
        col, row, w, h = win
        transform = window_transform(info.transform, col, row, (w / out[0], h / out[1]))
        names = [info.band_names[i] for i in selected]
        nodata = self._nodata(selected)
        return Image(array, names, nodata=nodata, transform=transform, crs=info.crs,
                     source=info.source)  # fmt: skip

    def read_overview(self, max_side: int, indexes: Sequence[int] | None = None) -> Image:
        """The whole raster resampled so that its longer side is at most ``max_side``."""
        info = self.info
        out = overview_size(info.width, info.height, max(1, int(max_side)))
        return self.read(indexes, None, None if out == (info.width, info.height) else out)

    def check_limit(
        self, count: int, window: Window4, out_size: tuple[int, int], max_pixels: int | None
    ) -> None:
        """Raise :class:`ImageTooLargeError` when a read would break ``max_pixels`` (header only)."""
        if max_pixels is None:
            return
        info = self.info
        full = info.width * info.height * info.count
        if self.whole_decode and full > max_pixels:
            raise ImageTooLargeError(
                f"{info.source or 'image'} is {info.width}×{info.height} pixels × {info.count} "
                f"bands = {full:,} values, over the limit of {max_pixels:,}, and {info.driver} "
                "files are decoded whole whatever part of them is read; if you trust the file, "
                f"pass max_pixels={full} (or None) or convert it to a tiled GeoTIFF (e.g. "
                "gdal_translate -co TILED=YES -co COMPRESS=DEFLATE in out.tif), which is read "
                "window by window"
            )
        values = out_size[0] * out_size[1] * count
        if values > max_pixels:
            raise ImageTooLargeError(_over_limit(info, window, out_size, count, max_pixels))
        if not self.whole_decode:
            self._check_blocks(count, window, out_size, max_pixels)

    def _check_blocks(
        self, count: int, window: Window4, out_size: tuple[int, int], max_pixels: int
    ) -> None:
        pass

    # ------------------------------------------------------------ implementation
    def _read(self, indexes: list[int], window: Window4, out_size: tuple[int, int]) -> np.ndarray:
        """H×W×len(indexes) array of ``window`` at ``out_size``; the limit is already checked."""
        raise NotImplementedError

    def _nodata(self, indexes: list[int]) -> float | None:
        return self.info.nodata

    def close(self) -> None:
        self.resources.close()

    def __enter__(self) -> RasterReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class ArrayReader(RasterReader):
    """Serves an in-memory array, or an :class:`Image` with its metadata kept.

    Nothing is decoded, so only resampled reads are checked against the limit (their
    output is new memory); full-resolution windows are views of the array.
    """

    whole_decode = False

    def __init__(self, source: np.ndarray | Image, name: str, max_pixels: int | None = None):
        super().__init__(max_pixels)
        if isinstance(source, Image):
            self.array, names = source.array, tuple(source.band_names)
            georef = (source.nodata, source.transform, source.crs)
            name = source.source or name
        else:
            self.array = as_hwc(source, name)
            names = array_band_names(self.array.shape[2])
            georef = (None, None, None)
        h, w, c = self.array.shape
        self.info = ImageInfo(w, h, c, str(self.array.dtype), names, *georef, "array", name)

    def check_limit(self, count, window, out_size, max_pixels) -> None:
        if out_size != (window[2], window[3]):
            super().check_limit(count, window, out_size, max_pixels)

    def _read(self, indexes: list[int], window: Window4, out_size: tuple[int, int]) -> np.ndarray:
        col, row, w, h = window
        part = self.array[row : row + h, col : col + w]
        part = part if indexes == list(range(self.info.count)) else part[:, :, indexes]
        return resample_nearest(part, out_size)


class PillowReader(RasterReader):
    """Decodes with Pillow (once, kept while the reader is open); resampled reads go through
    ``fallback`` (rasterio on the same file) when there is one, so they match a GDAL read."""

    def __init__(
        self,
        pil: PIL.Image.Image,
        name: str,
        keep_palette: bool,
        georef: tuple[Affine | None, CRS | None] = (None, None),
        fallback: Callable[[], Any] | None = None,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        super().__init__(max_pixels)
        self.pil, self.name, self.fallback = pil, name, fallback
        self._array: np.ndarray | None = None
        mode = pil.mode
        transparency = pil.info.get("transparency")
        nodata: float | None = None
        if mode == "P":
            if keep_palette:
                target, names = None, ("palette_index",)
            elif "transparency" in pil.info or (
                pil.palette is not None and pil.palette.mode == "RGBA"
            ):
                target, names = "RGBA", (*RGB_NAMES, "alpha")
            else:
                target, names = "RGB", RGB_NAMES
        elif mode not in _PIL_MODES:
            raise UnsupportedImageError(
                f"{name}: Pillow mode {mode!r} is not supported; convert it to RGB or L first"
            )
        else:
            target, names = _PIL_MODES[mode]
            if mode == "RGB" and transparency is not None:
                target, names = "RGBA", (*RGB_NAMES, "alpha")
            elif names == ("gray",) and isinstance(transparency, int):
                nodata = float(transparency)
        self.target = target
        width, height = pil.size
        dtype = _PIL_DTYPES.get(target or mode, "uint8")
        self.info = ImageInfo(
            width, height, len(names), dtype, names, nodata, georef[0], georef[1],
            pil.format or "PIL", name,
        )  # fmt: skip

    def _decode(self) -> np.ndarray:
        if self._array is None:
            self.pil.seek(0)
            self.pil.load()
            pil = self.pil.convert(self.target) if self.target else self.pil
            array = np.asarray(pil)
            if array.dtype.byteorder == ">":
                array = array.astype(array.dtype.newbyteorder("="))
            if array.dtype == bool:
                array = array.astype(np.uint8) * 255
            self._array = array[:, :, None] if array.ndim == 2 else array
        return self._array

    def _read(self, indexes: list[int], window: Window4, out_size: tuple[int, int]) -> np.ndarray:
        col, row, w, h = window
        if out_size != (w, h) and self.fallback is not None:
            with self.fallback() as reader:
                return reader._read(indexes, window, out_size)
        part = self._decode()[row : row + h, col : col + w]
        part = part if indexes == list(range(self.info.count)) else part[:, :, indexes]
        return resample_nearest(part, out_size)

    def close(self) -> None:
        self._array = None
        super().close()


class RasterioReader(RasterReader):
    """Reads an open rasterio dataset by window; palette bands are expanded to RGB(A)."""

    def __init__(
        self,
        ds: DatasetReader,
        name: str,
        keep_palette: bool = False,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
    ) -> None:
        super().__init__(max_pixels)
        self.ds, self.name = ds, name
        for dt in ds.dtypes:
            if "complex" in dt:
                raise UnsupportedImageError(
                    f"{name} holds complex values ({dt}), e.g. SAR single-look complex data; "
                    "convert to amplitude or intensity (a real dtype) first"
                )
            check_dtype(np.dtype(dt), name)
        if ds.count == 0:
            subdatasets = ", ".join(ds.subdatasets[:3]) + (" …" if len(ds.subdatasets) > 3 else "")
            raise UnsupportedImageError(
                f"{name} has no raster bands of its own; open one of its subdatasets instead "
                f"({subdatasets or 'none listed'})"
            )
        transform, crs = dataset_georef(ds)
        self.palette: np.ndarray | None = None
        nodata = ds.nodata
        if ds.count == 1 and ds.colorinterp[0] == ColorInterp.palette and not keep_palette:
            self.palette = _palette_lut(ds)
            names: tuple[str, ...] = (
                (*RGB_NAMES, "alpha") if self.palette.shape[1] == 4 else RGB_NAMES
            )
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
        self.whole_decode = ds.driver in WHOLE_DECODE_DRIVERS
        self.overview_factors = tuple(int(f) for f in ds.overviews(1))
        block_h, block_w = ds.block_shapes[0]
        self.block_values = int(block_h) * int(block_w) * ds.count

    def _check_blocks(self, count, window, out_size, max_pixels) -> None:
        info = self.info
        if self.block_values > max_pixels:
            raise ImageTooLargeError(
                f"{info.source} is stored in blocks of {self.block_values:,} values (all bands), "
                f"over the limit of {max_pixels:,}, and a block is decoded whole; if you trust the "
                "file, convert it to a tiled GeoTIFF (gdal_translate -co TILED=YES in out.tif)"
            )
        col, row, w, h = window
        factor = max([f for f in self.overview_factors if f <= min(w / out_size[0], h / out_size[1])],
                     default=1)  # fmt: skip
        scanned = math.ceil(w / factor) * math.ceil(h / factor) * count
        if scanned > SCAN_FACTOR * max_pixels:
            raise ImageTooLargeError(
                f"reading {info.source} ({info.width}×{info.height}) at {out_size[0]}×{out_size[1]} "
                f"would decode {scanned:,} values block by block, over {SCAN_FACTOR} × the limit of "
                f"{max_pixels:,}, because the file has no overviews at that scale; build them once "
                "(gdaladdo -r average FILE, or a COG), or read a smaller window"
            )

    def _read(self, indexes: list[int], window: Window4, out_size: tuple[int, int]) -> np.ndarray:
        win = Window(*window)
        out_w, out_h = out_size
        if self.palette is not None:
            idx = self.ds.read(
                1, window=win, out_shape=(out_h, out_w), resampling=Resampling.nearest
            )
            return self.palette[np.clip(idx, 0, len(self.palette) - 1)][:, :, indexes]
        file_indexes = [i + 1 for i in indexes]
        dtype = np.result_type(*[self.ds.dtypes[i - 1] for i in file_indexes])
        data = self.ds.read(
            file_indexes, window=win, out_shape=(len(file_indexes), out_h, out_w),
            resampling=resampling_for(window, out_size), out_dtype=dtype,
        )  # fmt: skip
        return np.ascontiguousarray(np.moveaxis(data, 0, -1))

    def _nodata(self, indexes: list[int]) -> float | None:
        if self.palette is not None:
            return None
        first = self.ds.nodatavals[indexes[0]]  # one nodata per image: the first band's
        return None if first is None else float(first)


# --------------------------------------------------------------------------- helpers


def check_window(window: Window4 | Window | None, info: ImageInfo) -> Window4:
    """``window`` as four integers inside the image (the whole image for None)."""
    if window is None:
        return (0, 0, info.width, info.height)
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
    return (col, row, width, height)


def _check_out_size(out_size: tuple[int, int] | None, window: Window4) -> tuple[int, int]:
    if out_size is None:
        return (window[2], window[3])
    out = tuple(int(v) for v in out_size)
    if len(out) != 2 or min(out) <= 0 or out != tuple(out_size):
        raise ImageError(
            f"out_size must be two positive integers (width, height), got {out_size!r}"
        )
    return out  # type: ignore[return-value]


def _over_limit(
    info: ImageInfo, window: Window4, out_size: tuple[int, int], count: int, max_pixels: int
) -> str:
    width, height = out_size
    values = width * height * count
    part = ""
    if (window[2], window[3]) != (info.width, info.height):
        part = f" (window of a {info.width}×{info.height} image)"
    if out_size != (window[2], window[3]):
        part += f" (resampled from {window[2]}×{window[3]})"
    return (
        f"{info.source or 'image'} is {width}×{height} pixels × {count} bands{part} = {values:,} "
        f"values, over the limit of {max_pixels:,}; if you trust the file pass max_pixels={values} "
        "(or None), otherwise read part of it with window=(col_off, row_off, width, height) or "
        "bands=[...], or tile it (read_header gives the size without decoding)"
    )


def too_large_for_pillow(name: str, exc: Exception) -> ImageTooLargeError:
    return ImageTooLargeError(
        f"{name} is too large for Pillow's decompression-bomb limit ({exc}); if you trust the file "
        "convert it to a tiled GeoTIFF and read it by window, or pass it as a path that rasterio can read"
    )


def resampling_for(window: Window4, out_size: tuple[int, int]) -> Resampling:
    """Nearest at full resolution, average when shrinking, bilinear when enlarging."""
    if out_size == (window[2], window[3]):
        return Resampling.nearest
    return Resampling.average if out_size[0] < window[2] else Resampling.bilinear


def resample_nearest(array: np.ndarray, out_size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour sampling at pixel centres: cheap and dtype-preserving."""
    h, w = array.shape[:2]
    if out_size == (w, h):
        return array
    xs = np.minimum(((np.arange(out_size[0]) + 0.5) * w / out_size[0]).astype(int), w - 1)
    ys = np.minimum(((np.arange(out_size[1]) + 0.5) * h / out_size[1]).astype(int), h - 1)
    return array[ys][:, xs]


def dataset_georef(ds: DatasetReader) -> tuple[Affine | None, CRS | None]:
    crs = ds.crs if ds.crs else None
    transform = ds.transform
    if crs is None and transform.is_identity:
        return None, None  # GDAL's default for files without a geotransform
    return transform, crs


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
