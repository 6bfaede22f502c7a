"""Band-per-file products (a Sentinel-2 ``.SAFE``, a folder of Landsat ``*_B4.TIF``) read as one raster.

:class:`BandStack` puts separate band files on one grid (the finest band's, or a
given resolution) through GDAL warped VRTs, so a window read decodes only the source
blocks it touches; :class:`BandStackReader` serves it through the
:class:`~geoassist.raster.readers.RasterReader` interface.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from geoassist.errors import CorruptImageError, ImageNotFoundError
from geoassist.raster import DEFAULT_MAX_PIXELS
from geoassist.raster.image import ImageInfo
from geoassist.raster.readers import RasterReader, Window4, resampling_for
from geoassist.sensors import Sensor, find_band_files

__all__ = ["BandStack", "BandStackReader"]


@dataclass
class BandStack:
    """Separate band files read as one multi-band raster on a common grid, window by window.

    The grid is that of the band files at ``resolution_m`` (default: the finest);
    coarser or offset bands are resampled onto it through a GDAL warped VRT, so a
    window read decodes only the source blocks it touches.
    """

    files: Mapping[str, Path]
    resolution_m: float | None = None
    resampling: str = "bilinear"

    def __post_init__(self) -> None:
        if not self.files:
            raise ImageNotFoundError("BandStack needs at least one band file")
        self.band_names = list(self.files)
        opened: list[Any] = []
        for band, path in self.files.items():
            try:
                opened.append(rasterio.open(path))
            except (RasterioError, OSError) as exc:
                for ds in opened:
                    ds.close()
                raise CorruptImageError(
                    f"band {band} ({path}) cannot be opened ({exc}); the file is missing, "
                    "truncated or damaged — re-download the product"
                ) from exc
        self._sources = opened
        res = [abs(ds.transform.a) for ds in opened]
        target = min(res) if self.resolution_m is None else self.resolution_m
        ref = min(opened, key=lambda ds: abs(abs(ds.transform.a) - target))
        if abs(abs(ref.transform.a) - target) > 1e-6:
            # No file at this resolution: the finest file's extent on a target-sized grid.
            t = ref.transform
            scale = target / abs(t.a)
            self.transform = t @ Affine.scale(scale)
            self.width = int(round(ref.width / scale))
            self.height = int(round(ref.height / scale))
        else:
            self.transform, self.width, self.height = ref.transform, ref.width, ref.height
        self.crs = ref.crs
        self.dtype = np.result_type(*[ds.dtypes[0] for ds in opened]).name
        self.nodata = ref.nodata
        self.count = len(opened)
        self._aligned_sources = [self._aligned(ds) for ds in opened]

    @classmethod
    def from_folder(cls, folder: str | Path, sensor: Sensor | str | None = None, **kw) -> BandStack:
        return cls(find_band_files(folder, sensor), **kw)

    def _aligned(self, ds: Any) -> Any:
        same = (
            ds.width == self.width
            and ds.height == self.height
            and ds.transform.almost_equals(self.transform)
        )
        if same:
            return ds
        return WarpedVRT(
            ds,
            crs=self.crs,
            transform=self.transform,
            width=self.width,
            height=self.height,
            resampling=Resampling[self.resampling],
        )

    def read(
        self,
        window: Any = None,
        out_shape: tuple[int, int] | None = None,
        resampling: str = "bilinear",
        bands: Sequence[int] | None = None,
    ) -> np.ndarray:
        """(bands, h, w) array of ``window`` (a rasterio Window; None = everything).

        ``bands`` are 0-based positions in :attr:`band_names` (default: all).
        """
        chosen = range(self.count) if bands is None else bands
        layers = [
            self._aligned_sources[i]
            .read(1, window=window, out_shape=out_shape, resampling=Resampling[resampling])
            .astype(self.dtype, copy=False)
            for i in chosen
        ]
        return np.stack(layers)

    def close(self) -> None:
        for src, ds in zip(self._aligned_sources, self._sources, strict=True):
            if src is not ds:
                src.close()
            ds.close()

    def __enter__(self) -> BandStack:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class BandStackReader(RasterReader):
    """A :class:`BandStack` behind the :class:`RasterReader` interface; closing it closes the stack.

    Band files are read block by block (no overviews through the warped grid), so the
    pixel limit bounds the output and the total decoded per read.
    """

    whole_decode = False

    def __init__(
        self, stack: BandStack, name: str | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS
    ) -> None:
        super().__init__(max_pixels)
        self.stack = stack
        s = stack
        transform = s.transform
        self.info = ImageInfo(
            s.width, s.height, s.count, str(s.dtype), tuple(s.band_names),
            None if s.nodata is None else float(s.nodata), transform, s.crs, "band files",
            name or ", ".join(str(p) for p in list(s.files.values())[:2]),
        )  # fmt: skip

    def _read(self, indexes: list[int], window: Window4, out_size: tuple[int, int]) -> np.ndarray:
        resampling = resampling_for(window, out_size).name
        data = self.stack.read(Window(*window), (out_size[1], out_size[0]), resampling, indexes)
        return np.ascontiguousarray(np.moveaxis(data, 0, -1))

    def close(self) -> None:
        self.stack.close()
        super().close()


def open_band_stack(
    folder: str | Path,
    sensor: Sensor | str | None = None,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    **kw: Any,
) -> BandStackReader:
    """A reader of the band files found in ``folder`` (see :func:`~geoassist.sensors.find_band_files`)."""
    return BandStackReader(
        BandStack(find_band_files(folder, sensor), **kw), str(folder), max_pixels
    )
