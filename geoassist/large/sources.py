"""Where a large scene's pixels come from: a :class:`RasterSource` over the one windowed reader.

A :class:`RasterSource` reads a raster window by window through
:func:`geoassist.io.open_raster` (rasterio windows of a GeoTIFF/COG, JPEG 2000, ENVI
or NetCDF file, also over HTTP range reads for a URL; a band-per-file product; an
in-memory array), so the whole raster is never held in memory, and every read —
the overview included — is checked against the pixel limit before anything is
decoded. :class:`~geoassist.preprocess.EncoderInput` turns its windows into what the
model's preprocessing takes, with one colour stretch shared by every tile.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import rasterio

from geoassist.geo import Georef
from geoassist.io import DEFAULT_MAX_PIXELS, Image, RasterReader, open_raster
from geoassist.raster.readers import overview_size
from geoassist.request import OVERVIEW_MAX_SIDE

__all__ = ["GDAL_CACHE_MB", "RasterSource"]

GDAL_CACHE_MB = 256


class RasterSource:
    """A raster read window by window: a file, URL or GDAL name, a band-per-file product, or an array.

    ``read(window, out_size)`` returns an :class:`~geoassist.io.Image` of that
    window (resampled to ``out_size`` when given) with its georeferencing;
    ``overview(max_side)`` a downscaled copy of the whole scene, from the file's
    own overviews when it has them. GDAL's block cache is capped at
    ``GDAL_CACHE_MB`` while the source is open.
    """

    def __init__(self, reader: RasterReader, env: Any = None) -> None:
        self.reader = reader
        self._env = env
        info = reader.info
        self.name = info.source or "array"
        self.width, self.height = int(info.width), int(info.height)
        self.band_names = list(info.band_names)
        self.dtype = info.dtype
        self.nodata = info.nodata
        self.georef = Georef.from_image(info)
        self.has_overviews = reader.has_overviews
        self.driver = info.driver

    @property
    def count(self) -> int:
        return len(self.band_names)

    @property
    def size(self) -> tuple[int, int]:
        return self.width, self.height

    # -- opening
    @staticmethod
    def open(
        source: Any,
        *,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        overview_side: int = OVERVIEW_MAX_SIDE,
    ) -> RasterSource:
        """A source for a path, URL (``http(s)://``, ``s3://``…), band folder, Image or array.

        Every large-scene answer reads an overview of the scene, so a scene whose
        overview (``overview_side`` px) cannot be read within ``max_pixels`` (a PNG bomb,
        a huge raster without overviews) is refused here, from its header, before any
        planning or decoding.
        """
        env = rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB)
        env.__enter__()
        try:
            reader = open_raster(source, max_pixels=max_pixels)
            try:
                info = reader.info
                out = overview_size(info.width, info.height, overview_side)
                reader.check_limit(info.count, (0, 0, info.width, info.height), out, max_pixels)
            except BaseException:
                reader.close()
                raise
        except BaseException:
            env.__exit__(None, None, None)
            raise
        return RasterSource(reader, env)

    # -- reading
    def read(
        self,
        window: tuple[int, int, int, int] | None = None,
        out_size: tuple[int, int] | None = None,
    ) -> Image:
        col, row, w, h = window if window is not None else (0, 0, self.width, self.height)
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

    def overview(self, max_side: int) -> Image:
        """The whole scene resampled so that its longer side is at most ``max_side``."""
        out = overview_size(self.width, self.height, max_side)
        return self.read(None, None if out == self.size else out)

    def _read(self, window: tuple[int, int, int, int], out_size: tuple[int, int]) -> np.ndarray:
        """Every pixel a source reads passes here (the reader checks the pixel limit first)."""
        return self.reader.read(None, window, out_size).array

    def close(self) -> None:
        if self.reader is not None:
            self.reader.close()
            self.reader = None
            if self._env is not None:
                self._env.__exit__(None, None, None)

    def __enter__(self) -> RasterSource:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
