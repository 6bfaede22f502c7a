"""Which requests are large scenes — decided once per request — and how each kind is answered.

:func:`large_scene` looks at a request's images (their headers, not their pixels)
and returns a :class:`LargeScene` when one of them is larger than the
encoder's input would show well, or None: the request then goes straight to the
single-image core. :func:`answer_scene` answers a large scene through the core:
one image through the tile planner (:func:`~geoassist.large.answer.answer_large`),
read whole when it proves small once opened (URLs and band folders are always
opened), and a pair or series from downscaled overviews of its images.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geoassist.answer import Answer
from geoassist.errors import GeoAssistError
from geoassist.large.answer import Core, answer_large
from geoassist.large.plan import needs_tiling, tile_size_px
from geoassist.large.sources import RasterSource
from geoassist.raster.opening import is_gdal_name
from geoassist.request import AskRequest, TilingOptions

__all__ = ["LargeScene", "answer_scene", "large_scene"]


@dataclass(frozen=True)
class LargeScene:
    """A request's images, to be answered through the large-scene path with ``options``."""

    items: tuple[Any, ...]
    options: TilingOptions


def large_scene(config: Any, request: AskRequest) -> LargeScene | None:
    """The request's large scene, or None when the single-image core answers it as it is.

    None when tiling is off (``request.tiling is None``), when an image is not a file,
    URL, band folder, array or :class:`~geoassist.io.Image`, or when every image is
    small enough. URLs and band-product folders always go through a RasterSource.
    """
    options = request.tiling
    items = request.images
    if options is None or not items or not all(_is_large_candidate(i) for i in items):
        return None
    tile_px = tile_size_px(config, None, options)
    sizes = [_size_of(i) for i in items]
    if all(s is not None and not needs_tiling(*s, tile_px, options) for s in sizes):
        return None
    return LargeScene(tuple(items), options)


def answer_scene(core: Core, request: AskRequest, scene: LargeScene) -> Answer:
    """Answer a large scene through ``core`` (see the module docstring)."""
    options = scene.options
    if len(scene.items) == 1:
        with RasterSource.open(scene.items[0]) as source:
            tile_px = tile_size_px(core.config, source.georef, options)
            if not needs_tiling(source.width, source.height, tile_px, options):
                whole = request.replace(images=[source.read()], tiling=None, stream=False)
                return core.answer_inputs([whole], batch_size=1)[0]
            return answer_large(core, source, request)
    # A pair or series with a large image: every image is answered from its overview.
    overviews = []
    side = max(options.min_side_px, 2 * tile_size_px(core.config, None, options))
    for item in scene.items:
        with RasterSource.open(item) as source:
            overviews.append((source.overview(side), source.size, source.georef))
    small = request.replace(images=[o for o, _, _ in overviews], tiling=None, stream=False)
    answer = core.answer_inputs([small], batch_size=1)[0]
    last_overview, last_size, last_georef = overviews[-1]
    sx, sy = last_size[0] / last_overview.size[0], last_size[1] / last_overview.size[1]
    answer = answer.rescaled(sx, sy, image_size=last_size, georef=last_georef)
    answer.coverage = {
        "mode": "overview",
        "complete": False,
        "note": "large images in a pair or series are answered from downscaled overviews",
    }
    return answer


def _is_large_candidate(item: Any) -> bool:
    from geoassist.io import Image

    if isinstance(item, (Image, np.ndarray)):
        return True
    if isinstance(item, (str, Path)):
        text = str(item)
        if isinstance(item, str) and is_gdal_name(text):
            return True
        return Path(text).expanduser().is_dir() or Path(text).expanduser().is_file()
    return False


def _size_of(item: Any) -> tuple[int, int] | None:
    from geoassist.io import Image, read_header

    if isinstance(item, Image):
        return item.size
    if isinstance(item, np.ndarray):
        if item.ndim == 3 and item.shape[0] <= 16 < item.shape[2]:
            return item.shape[2], item.shape[1]
        return (item.shape[1], item.shape[0]) if item.ndim >= 2 else None
    text = str(item)
    if (isinstance(item, str) and is_gdal_name(text)) or Path(text).expanduser().is_dir():
        return None  # always goes through a RasterSource
    try:
        return read_header(item).size
    except GeoAssistError:
        return (0, 0)  # not large: the core reports the problem with its own message
