"""The raster readers behind :mod:`geoassist.io`, split by job.

- :mod:`~geoassist.raster.image`: the :class:`Image` and :class:`ImageInfo` types;
- :mod:`~geoassist.raster.readers`: the windowed :class:`RasterReader` interface and
  its readers for numpy arrays, Pillow images and rasterio datasets, with the pixel
  limit checked before any decoding;
- :mod:`~geoassist.raster.bandstack`: band-per-file products read as one raster;
- :mod:`~geoassist.raster.opening`: :func:`open_raster`, which picks the reader for a
  path, URL, bytes, file object, PIL image or array.

Import the public names from :mod:`geoassist.io`; this package only holds the parts.
"""

DEFAULT_MAX_PIXELS = 2**28
"""Default limit on width × height × bands decoded at once (about 268 million values)."""

SCAN_FACTOR = 32
"""A block-by-block read (a decimated read of a tiled raster without overviews) may decode
up to this many times the pixel limit in total, never more than one block at once."""
