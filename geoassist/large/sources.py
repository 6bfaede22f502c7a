"""Where a large scene's pixels come from: windowed raster sources, and the encoder's input.

A :class:`RasterSource` reads a raster window by window (rasterio windows of a
GeoTIFF/COG, JPEG 2000, ENVI or NetCDF file, also over HTTP range reads for a
URL; a band-per-file product; or an in-memory array), so the whole raster is
never held in memory. :class:`_EncoderInput` turns its windows into what the
model's preprocessing takes, with one colour stretch shared by every tile.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from geoassist.errors import BandMismatchError, ImageError
from geoassist.geo import Georef

__all__ = ["GDAL_CACHE_MB", "RasterSource"]

GDAL_CACHE_MB = 256


class RasterSource:
    """A raster read window by window: a file, URL or GDAL name, a band-per-file product, or an array.

    ``read(window, out_size)`` returns an :class:`~geoassist.io.Image` of that
    window (resampled to ``out_size`` when given) with its georeferencing;
    ``overview(max_side)`` a downscaled copy of the whole scene, from the file's
    own overviews when it has them. GDAL's block cache is capped at
    ``GDAL_CACHE_MB`` while reading.
    """

    def __init__(self, name: str, width: int, height: int, band_names: Sequence[str], dtype: str,
                 nodata: float | None, georef: Georef | None) -> None:  # fmt: skip
        self.name = name
        self.width, self.height = int(width), int(height)
        self.band_names = list(band_names)
        self.dtype = dtype
        self.nodata = nodata
        self.georef = georef
        self.has_overviews = False

    @property
    def count(self) -> int:
        return len(self.band_names)

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    # -- opening
    @staticmethod
    def open(source: Any) -> RasterSource:
        """A source for a path, URL (``http(s)://``, ``s3://``…), band folder, Image or array."""
        from geoassist.io import Image, load_image

        if isinstance(source, (Image, np.ndarray)):
            return _ArraySource(source if isinstance(source, Image) else load_image(source))
        text = str(source)
        if _is_gdal_name(text):
            return _RasterioSource(text)
        path = Path(text).expanduser()
        if path.is_dir():
            return _BandStackSource(path)
        return _RasterioSource(str(path))

    # -- reading (subclasses implement _read)
    def read(
        self,
        window: tuple[int, int, int, int] | None = None,
        out_size: tuple[int, int] | None = None,
    ) -> Any:
        from geoassist.io import Image

        col, row, w, h = window if window is not None else (0, 0, self.width, self.height)
        if w <= 0 or h <= 0 or col < 0 or row < 0 or col + w > self.width or row + h > self.height:
            raise ImageError(
                f"window {window} does not fit inside {self.name} ({self.width}×{self.height})"
            )
        out_w, out_h = out_size if out_size is not None else (w, h)
        array = self._read((col, row, w, h), (out_w, out_h))
        georef = None
        if self.georef is not None:
            georef = self.georef.window(col, row).scaled(w / out_w, h / out_h)
        return Image(
            array,
            self.band_names,
            nodata=self.nodata,
            transform=georef.transform if georef else None,
            crs=georef.crs if georef else None,
            source=f"{self.name}[{col},{row},{w},{h}]",
        )

    def overview(self, max_side: int) -> Any:
        """The whole scene resampled so that its longer side is at most ``max_side``."""
        scale = max(self.width, self.height) / max_side
        if scale <= 1:
            return self.read()
        out = (max(1, round(self.width / scale)), max(1, round(self.height / scale)))
        return self.read(None, out)

    def _read(self, window: tuple[int, int, int, int], out_size: tuple[int, int]) -> np.ndarray:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> RasterSource:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


_GDAL_NAME = re.compile(r"^(?:[A-Za-z][A-Za-z0-9_]+:(?!\\)|/vsi)")


def _is_gdal_name(text: str) -> bool:
    """A URL (``https://``, ``s3://``), a GDAL subdataset (``NETCDF:"f.nc":var``) or a ``/vsi…`` path."""
    return "://" in text or bool(_GDAL_NAME.match(text))


def _resampling(window: tuple[int, int, int, int], out_size: tuple[int, int]):
    from rasterio.enums import Resampling

    if out_size == (window[2], window[3]):
        return Resampling.nearest
    return Resampling.average if out_size[0] < window[2] else Resampling.bilinear


class _RasterioSource(RasterSource):
    def __init__(self, path: str) -> None:
        import rasterio

        from geoassist.errors import CorruptImageError, ImageNotFoundError
        from geoassist.io import _RasterioReader

        self._env = rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB)
        self._env.__enter__()
        if not _is_gdal_name(path) and not Path(path).exists():
            self._env.__exit__(None, None, None)
            raise ImageNotFoundError(f"no such image file: {path}")
        try:
            self.ds = rasterio.open(path)
        except (rasterio.errors.RasterioError, OSError) as exc:
            self._env.__exit__(None, None, None)
            raise CorruptImageError(f"{path} cannot be opened by rasterio ({exc})") from exc
        reader = _RasterioReader(self.ds, path, keep_palette=False)
        info = reader.info
        self._palette = reader.palette
        georef = (
            Georef(info.transform, info.crs, info.width, info.height)
            if info.transform is not None
            else None
        )
        super().__init__(
            path, info.width, info.height, info.band_names, info.dtype, info.nodata, georef
        )
        self.has_overviews = bool(self.ds.overviews(1))
        self.driver = self.ds.driver

    def _read(self, window: tuple[int, int, int, int], out_size: tuple[int, int]) -> np.ndarray:
        from rasterio.enums import Resampling
        from rasterio.windows import Window

        win = Window(*window)
        out_w, out_h = out_size
        if self._palette is not None:
            indices = self.ds.read(
                1, window=win, out_shape=(out_h, out_w), resampling=Resampling.nearest
            )
            return self._palette[np.clip(indices, 0, len(self._palette) - 1)]
        data = self.ds.read(
            window=win,
            out_shape=(self.ds.count, out_h, out_w),
            resampling=_resampling(window, out_size),
            out_dtype=self.dtype,
        )
        return np.ascontiguousarray(np.moveaxis(data, 0, -1))

    def close(self) -> None:
        if getattr(self, "ds", None) is not None:
            self.ds.close()
            self.ds = None
            self._env.__exit__(None, None, None)


class _BandStackSource(RasterSource):
    def __init__(self, folder: Path) -> None:
        from geoassist.sensors import BandStack

        self.stack = BandStack.from_folder(folder)
        s = self.stack
        super().__init__(
            str(folder), s.width, s.height, s.band_names, s.dtype,
            s.nodata, Georef(s.transform, s.crs, s.width, s.height),
        )  # fmt: skip

    def _read(self, window: tuple[int, int, int, int], out_size: tuple[int, int]) -> np.ndarray:
        from rasterio.windows import Window

        resampling = _resampling(window, out_size).name
        data = self.stack.read(Window(*window), (out_size[1], out_size[0]), resampling)
        return np.ascontiguousarray(np.moveaxis(data, 0, -1))

    def close(self) -> None:
        self.stack.close()


class _ArraySource(RasterSource):
    def __init__(self, image: Any) -> None:
        self.image = image
        super().__init__(
            image.source or "array", image.width, image.height, image.band_names,
            str(image.dtype), image.nodata, Georef.from_image(image),
        )  # fmt: skip

    def _read(self, window: tuple[int, int, int, int], out_size: tuple[int, int]) -> np.ndarray:
        col, row, w, h = window
        part = self.image.array[row : row + h, col : col + w]
        if out_size == (w, h):
            return part
        # Nearest-neighbour sampling at pixel centres: cheap and dtype-preserving.
        xs = np.minimum(((np.arange(out_size[0]) + 0.5) * w / out_size[0]).astype(int), w - 1)
        ys = np.minimum(((np.arange(out_size[1]) + 0.5) * h / out_size[1]).astype(int), h - 1)
        return part[ys][:, xs]


# ------------------------------------------------------------- encoder input


class _EncoderInput:
    """Turns windows of one scene into what the model's preprocessing takes, with one colour stretch.

    Multi-band models get the bands as they are (normalised later with fixed
    statistics). RGB models get a uint8 composite whose stretch is computed once on
    the overview, so that tiles share one colour scale.
    """

    def __init__(self, config: Any, overview: Any, *, bands=None, sensor=None, composite=None):
        from geoassist.sensors import INDICES, compute_stretch, detect_sensor, get_sensor

        self.multiband = len(config.bands) != 3
        self.index_name: str | None = None
        self.sensor = None
        self.indexes: list[int] = []
        self.limits: np.ndarray | None = None
        if self.multiband:
            return
        names = overview.band_names
        lowered = [n.lower() for n in names]
        if sensor is not None or composite is not None:
            self.sensor = get_sensor(sensor) if sensor is not None else None
            key = (composite or "true_color").lower().replace("-", "_")
            if key in INDICES:
                self.index_name = key
                return
            from geoassist.sensors import sensor_for

            self.sensor = sensor_for(overview, self.sensor)
            self.indexes = self.sensor.locate(names, self.sensor.composite_bands(key))
        elif bands is not None:
            from geoassist.io import _resolve_bands

            self.indexes = _resolve_bands(bands, names, overview.source)
        elif all(c in lowered for c in ("red", "green", "blue")):
            self.indexes = [lowered.index(c) for c in ("red", "green", "blue")]
        elif overview.count == 1 or "gray" in lowered:
            self.indexes = [lowered.index("gray") if "gray" in lowered else 0]
        elif overview.count == 3 or (
            overview.count == 4 and lowered == [f"band_{i}" for i in range(1, 5)]
        ):
            self.indexes = [0, 1, 2]  # as io.Image.to_rgb_uint8: R, G, B (+ NIR)
        elif (found := detect_sensor(names)) is not None:
            self.sensor = found
            self.indexes = found.locate(names, found.composite_bands("true_color"))
        else:
            raise BandMismatchError(
                f"cannot tell which bands are red, green and blue in {overview.source}: bands "
                f"{', '.join(names[:16])}; pass bands=[...] or sensor=/composite="
            )
        if len(self.indexes) not in (1, 3):
            raise BandMismatchError(f"a composite needs 3 bands (or 1), got {len(self.indexes)}")
        if overview.dtype != np.uint8:
            self.limits = compute_stretch(overview, self.indexes, tuple(config.stretch_percentiles))

    def __call__(self, image: Any) -> Any:
        from geoassist.io import Image
        from geoassist.sensors import apply_stretch, make_composite

        if self.multiband:
            # The model answers in the window's pixels; map coordinates come from the source.
            return Image(image.array, image.band_names, nodata=image.nodata, source=image.source)
        if self.index_name is not None:
            rgb = make_composite(image, self.sensor, self.index_name)
        else:
            chosen = image.array[:, :, self.indexes]
            if self.limits is not None:
                chosen = apply_stretch(chosen, self.limits, image.valid_mask())
            rgb = np.repeat(chosen, 3, axis=2) if chosen.shape[2] == 1 else chosen
        return Image(np.ascontiguousarray(rgb), ["red", "green", "blue"], source=image.source)
