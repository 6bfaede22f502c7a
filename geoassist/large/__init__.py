"""Large scenes: windowed reading, tiling at the model's GSD, coarse-to-fine tile choice, merging.

- :mod:`~geoassist.large.sources`: raster sources read window by window;
- :mod:`~geoassist.large.plan`: the tile grid, tile scores and the choice of tiles;
- :mod:`~geoassist.large.merge`: geometry merging, mask mosaics, text and count merging;
- :mod:`~geoassist.large.answer`: the planner that answers a large scene through the single-image core;
- :mod:`~geoassist.large.route`: which requests are large scenes, decided once per request.
"""

from __future__ import annotations

from geoassist.large.answer import answer_large
from geoassist.large.merge import merge_geometries, merge_text, mosaic_masks
from geoassist.large.plan import (
    DEFAULT_MAX_TILES,
    Tile,
    TileGrid,
    TilingOptions,
    plan_tiles,
    score_tiles,
    select_tiles,
)
from geoassist.large.route import LargeScene, answer_scene, large_scene
from geoassist.large.sources import RasterSource

__all__ = [
    "DEFAULT_MAX_TILES",
    "LargeScene",
    "Tile",
    "TileGrid",
    "TilingOptions",
    "RasterSource",
    "plan_tiles",
    "score_tiles",
    "select_tiles",
    "merge_geometries",
    "mosaic_masks",
    "merge_text",
    "answer_large",
    "answer_scene",
    "large_scene",
]
