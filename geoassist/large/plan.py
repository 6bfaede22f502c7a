"""The tile grid of a large scene and the choice of tiles to read.

:func:`plan_tiles` lays overlapping tiles whose size is the encoder's input at
the model's ground sample distance; each tile *owns* the part of the scene
nearer to it than to its neighbours (its core), so cores partition the scene.
:func:`score_tiles` scores every tile on a low-resolution overview (valid
fraction, detail and, when the question has text, how close the overview's
projected visual tokens come to the question's embedding in the LM's input
space) and :func:`select_tiles` keeps the best up to a budget.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from shapely.geometry import box

from geoassist.errors import GeoAssistError
from geoassist.geo import Georef
from geoassist.request import DEFAULT_MAX_TILES, OVERVIEW_MAX_SIDE, TilingOptions

__all__ = [
    "DEFAULT_MAX_TILES",
    "OVERVIEW_MAX_SIDE",
    "Tile",
    "TileGrid",
    "TilingOptions",
    "plan_tiles",
    "score_tiles",
    "select_tiles",
    "text_relevance",
    "tile_size_px",
    "needs_tiling",
]

# ---------------------------------------------------------------------- the grid


@dataclass(frozen=True)
class Tile:
    """One tile: ``window`` (col_off, row_off, width, height) and ``core`` (x0, y0, x1, y1) in source pixels."""

    index: int
    row: int
    col: int
    window: tuple[int, int, int, int]
    core: tuple[int, int, int, int]

    @property
    def bounds(self) -> tuple[int, int, int, int]:
        c, r, w, h = self.window
        return c, r, c + w, r + h


@dataclass
class TileGrid:
    width: int
    height: int
    tile_px: int
    overlap_px: int
    tiles: list[Tile]
    n_cols: int
    n_rows: int
    col_cuts: list[int] = field(repr=False, default_factory=list)
    row_cuts: list[int] = field(repr=False, default_factory=list)

    def owner(self, x: float, y: float) -> int:
        """Index of the tile whose core holds the point (x, y) (clamped into the scene)."""
        col = int(np.searchsorted(self.col_cuts, x, side="right")) - 1
        row = int(np.searchsorted(self.row_cuts, y, side="right")) - 1
        col = min(max(col, 0), self.n_cols - 1)
        row = min(max(row, 0), self.n_rows - 1)
        return row * self.n_cols + col


def _axis(length: int, tile: int, overlap: int) -> tuple[list[int], list[int], list[int]]:
    """Starts, sizes and core cut positions along one axis."""
    if length <= tile:
        return [0], [length], [0, length]
    stride = tile - overlap
    n = math.ceil((length - tile) / stride) + 1
    starts = [round(i * (length - tile) / (n - 1)) for i in range(n)]
    cuts = [0] + [(starts[i - 1] + tile + starts[i]) // 2 for i in range(1, n)] + [length]
    return starts, [tile] * n, cuts


def plan_tiles(width: int, height: int, tile_px: int, overlap_px: int) -> TileGrid:
    """Overlapping tiles of ``tile_px`` covering a ``width`` × ``height`` scene, evenly spaced.

    Every overlap is at least ``overlap_px``; tiles keep their full size (the last
    one is not a sliver); a scene side shorter than a tile gets one tile of that
    side. Cores cut each overlap in the middle, so they partition the scene.
    """
    if tile_px <= overlap_px:
        raise GeoAssistError(
            f"tile overlap ({overlap_px}) must be smaller than the tile ({tile_px})"
        )
    xs, ws, col_cuts = _axis(width, tile_px, overlap_px)
    ys, hs, row_cuts = _axis(height, tile_px, overlap_px)
    tiles = []
    for r, (y, h) in enumerate(zip(ys, hs, strict=True)):
        for c, (x, w) in enumerate(zip(xs, ws, strict=True)):
            core = (col_cuts[c], row_cuts[r], col_cuts[c + 1], row_cuts[r + 1])
            tiles.append(Tile(len(tiles), r, c, (x, y, w, h), core))
    return TileGrid(
        width, height, tile_px, overlap_px, tiles, len(xs), len(ys), col_cuts[:-1], row_cuts[:-1]
    )


# -------------------------------------------------------------- tile selection


def _footprints(grid: TileGrid, shape_hw: tuple[int, int]) -> list[tuple[slice, slice]]:
    """Each tile's window as slices of an array of ``shape_hw`` covering the whole scene."""
    sy, sx = shape_hw[0] / grid.height, shape_hw[1] / grid.width
    out = []
    for t in grid.tiles:
        x0, y0, x1, y1 = t.bounds
        c0, c1 = int(x0 * sx), max(int(x0 * sx) + 1, math.ceil(x1 * sx))
        r0, r1 = int(y0 * sy), max(int(y0 * sy) + 1, math.ceil(y1 * sy))
        out.append((slice(r0, min(r1, shape_hw[0])), slice(c0, min(c1, shape_hw[1]))))
    return out


def _rank01(values: np.ndarray) -> np.ndarray:
    if values.size <= 1:
        return np.ones_like(values, dtype=float)
    order = values.argsort(kind="stable").argsort(kind="stable")
    return order / (values.size - 1)


def score_tiles(
    grid: TileGrid,
    valid: np.ndarray,
    detail: np.ndarray,
    relevance: np.ndarray | None = None,
    relevance_weight: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-tile scores and valid fractions from overview maps.

    ``valid`` (bool) and ``detail`` (float) cover the scene at overview
    resolution; ``relevance`` (any resolution) is the question's closeness to
    each place, or None. A tile's score is its valid fraction times its detail
    rank — mixed with its relevance rank (``relevance_weight``) when there is one.
    """
    frac = np.array(
        [valid[f].mean() if valid[f].size else 0.0 for f in _footprints(grid, valid.shape)]
    )
    det = np.array(
        [detail[f].mean() if detail[f].size else 0.0 for f in _footprints(grid, detail.shape)]
    )
    score = _rank01(det)
    if relevance is not None:
        rel = np.array(
            [
                relevance[f].mean() if relevance[f].size else 0.0
                for f in _footprints(grid, relevance.shape)
            ]
        )
        score = (1 - relevance_weight) * score + relevance_weight * _rank01(rel)
    return frac * (0.05 + 0.95 * score), frac


def select_tiles(scores: np.ndarray, valid_fraction: np.ndarray, max_tiles: int) -> list[int]:
    """Indices of the tiles to read: all tiles with data when they fit the budget, else the best."""
    candidates = [i for i in range(len(scores)) if valid_fraction[i] >= 0.01]
    if len(candidates) <= max_tiles:
        return candidates
    best = sorted(candidates, key=lambda i: (-scores[i], i))[:max_tiles]
    return sorted(best)


def _detail_map(rgb: np.ndarray, block: int = 1) -> np.ndarray:
    """Local contrast of an overview, after averaging ``block``×``block`` cells (drops pixel noise)."""
    gray = rgb.astype(np.float32).mean(axis=2)
    if block > 1:
        h, w = (gray.shape[0] // block) * block, (gray.shape[1] // block) * block
        if h and w:
            gray = gray[:h, :w].reshape(h // block, block, w // block, block).mean(axis=(1, 3))
    gx = np.abs(np.diff(gray, axis=1, append=gray[:, -1:]))
    gy = np.abs(np.diff(gray, axis=0, append=gray[-1:, :]))
    return gx + gy


def text_relevance(model: Any, image: Any, prompt: str, side: int) -> np.ndarray | None:
    """(g, g) closeness of the question to each place of ``image`` in the LM's input space.

    The image is encoded once at ``side`` pixels; its patch tokens go through the
    projector (without pooling) and are compared by cosine similarity with the mean
    input embedding of the question's tokens. None for an empty question.
    """
    import torch

    from geoassist.preprocess import to_pixel_values

    words = re.sub(r"\[[a-z_]+\]", " ", prompt).strip()
    if not words:
        return None
    config = dataclasses.replace(model.config.preprocess, image_size=side)
    with torch.no_grad():
        device = next(model.parameters()).device
        pixels = to_pixel_values(image, config).unsqueeze(0).to(device)
        tokens = model.vision(pixels)
        if model.vision.config.use_cls_token:
            tokens = tokens[:, 1:]
        visual = model.projector.proj(tokens)[0].float()
        ids = model.tokenizer(words, add_special_tokens=False, return_tensors="pt").input_ids.to(
            device
        )
        if ids.numel() == 0:
            return None
        text = model.lm.get_input_embeddings()(ids)[0].float().mean(0)
        sim = torch.nn.functional.cosine_similarity(visual, text.unsqueeze(0), dim=-1)
    g = int(math.isqrt(sim.numel()))
    return sim[: g * g].reshape(g, g).cpu().numpy()


def tile_size_px(config: Any, georef: Georef | None, options: TilingOptions) -> int:
    """Tile side in source pixels: the encoder's input at the model's GSD (or 1:1)."""
    size = config.preprocess.image_size
    if options.tile_px is not None:
        return options.tile_px
    model_gsd = config.preprocess.gsd_m
    raster_gsd = georef.gsd_m if georef is not None else None
    if model_gsd and raster_gsd:
        return int(min(max(round(size * model_gsd / raster_gsd), size // 4, 8), 16 * size))
    return size


def needs_tiling(width: int, height: int, tile_px: int, options: TilingOptions) -> bool:
    return max(width, height) > max(options.min_side_px, 2 * tile_px)


def _relevance_side(config: Any) -> int:
    vision = config.vision.resolved()
    return 2 * vision.image_size


def _read_fraction(grid: TileGrid, chosen: list[int], valid_fraction: np.ndarray) -> float:
    if not chosen:
        return 0.0
    area = shapely.unary_union([box(*grid.tiles[i].bounds) for i in chosen]).area
    total = float(grid.width * grid.height) * max(float(valid_fraction.mean()), 1e-9)
    return min(1.0, area / total) if total else 0.0
