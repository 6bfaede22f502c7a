"""Reading images and rasters safely: the public face of :mod:`geoassist.raster`.

:func:`load_image` turns a file path, raw bytes, a binary file object, a
``PIL.Image.Image`` or a numpy array into an :class:`Image`: an H×W×C array in
its native dtype plus band names, nodata, the geotransform and the CRS.
:func:`read_header` describes the same source without decoding any pixel, and
:func:`open_raster` opens it as a :class:`RasterReader` that reads any window,
at full resolution or resampled, and an overview — the one windowed reader that
the large-scene code, the app and :func:`load_image` all use.

Which library decodes what:

- PNG, JPEG, GIF, BMP and WebP (8-bit) go through Pillow, which reports
  truncated files as errors; palette, gray+alpha, CMYK and similar modes are
  converted as described in :func:`load_image`. A world file or ``.aux.xml``
  beside such a file is read with rasterio for the georeferencing.
- Everything else (GeoTIFF, JPEG 2000, ENVI, 16-bit colour PNG, images too big
  for Pillow's own limit, windowed reads of those) goes through rasterio.

Every read checks the pixel limit (``max_pixels``, width × height × bands) from
the header, before any pixel is decoded, and formats that can only be decoded
whole (PNG, JPEG…) are checked whole; decoding errors become
:class:`~geoassist.errors.CorruptImageError`. See :mod:`geoassist.raster.readers`.
"""

from __future__ import annotations

from collections.abc import Sequence

from rasterio.windows import Window

from geoassist.raster import DEFAULT_MAX_PIXELS
from geoassist.raster.image import Image, ImageInfo, ImageSource
from geoassist.raster.opening import open_raster
from geoassist.raster.readers import RasterReader
from geoassist.sensors import select_bands

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "Image",
    "ImageInfo",
    "ImageSource",
    "RasterReader",
    "load_image",
    "open_raster",
    "read_header",
]


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
      else GDAL reads (also a GDAL name such as ``NETCDF:"f.nc":var``); a URL is
      refused (download the file first; the large-scene reader,
      :func:`open_raster`, reads COGs over HTTP);
    - raw ``bytes``/``bytearray``/``memoryview`` or a binary file object;
    - a ``PIL.Image.Image`` (the first frame of a multi-frame image);
    - an :class:`Image` (band selection and window apply; metadata is kept);
    - a numpy array: H×W (one band), H×W×C, or C×H×W, which is only recognised
      when the first dimension is ≤ 16 and the last > 16 (a (3, 512, 512) array
      is C×H×W; a (3, 10, 10) array is read as H×W×C with 10 bands). Arrays are
      not copied unless needed, so the result may share memory with them.

    ``bands`` selects bands by name or 1-based number, at read time for rasters
    (:func:`geoassist.sensors.select_bands`).
    ``window=(col_off, row_off, width, height)`` reads that part only (for
    GeoTIFF and JPEG 2000 only the blocks it touches are decoded; PNG and JPEG
    are decoded whole, so the whole image must fit ``max_pixels``) and shifts the
    transform. ``max_pixels`` caps width × height × bands decoded (``None``: no
    cap); in-memory arrays are not checked.

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
    opened = open_raster(
        source, max_pixels=max_pixels, keep_palette=keep_palette, folders=False, remote=False
    )
    with opened as reader:
        info = reader.info
        indexes = None
        if bands is not None:
            indexes = select_bands(info.band_names, bands, source=info.source)
        return reader.read(indexes, window)


def read_header(source: ImageSource, *, keep_palette: bool = False) -> ImageInfo:
    """Describe a source (size, bands, dtype, nodata, georeferencing, driver) without decoding pixels.

    The description matches what :func:`load_image` returns for the same source
    and ``keep_palette``. No size limit applies, so this is the way to size up a
    scene too large to load whole before reading it by ``window``.
    """
    opened = open_raster(source, keep_palette=keep_palette, folders=False, remote=False)
    with opened as reader:
        return reader.info
