"""Merging the answers of a large scene's tiles into one.

Boxes, oriented boxes and polygons seen by several tiles become one
(:func:`merge_geometries`), masks are mosaicked core by core
(:func:`mosaic_masks`), and text answers are merged by what the question asks
(:func:`merge_text`: sums for additive questions, "any tile" for existential
ones). :func:`drop_repeats` keeps one of the pieces that many tiles answered at
the same place of their window (an answer that does not depend on what the tile
shows, which would otherwise become a grid of copies), and :func:`best_single`
picks the one answer of a task that expects one thing. :func:`count_target`
recognises "how many X" questions, which the planner answers by counting merged
detections.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely
from shapely.geometry import Polygon, box

from geoassist.answer import AnswerBox, AnswerOBox, AnswerPolygon
from geoassist.large.plan import Tile, TileGrid

__all__ = ["best_single", "drop_repeats", "merge_geometries", "mosaic_masks", "merge_text"]

# Where in its tile's window a piece lies, in steps of 1/REPEAT_GRID of the window.
REPEAT_GRID = 64


# ------------------------------------------------------------------------ merging


@dataclass
class _Piece:
    kind: str  # box, obox, polygon
    shape: Polygon
    label: str | None
    score: float | None
    tile: int | None  # None: from the overview
    cut: bool  # touches an edge of its tile that lies inside the scene
    foreign: bool = False  # its centre lies in another tile's core (or on the edge of its own)
    tiles: set = field(default_factory=set)

    def key(self) -> str:
        return (self.label or "").strip().lower()


def _is_cut(shape: Polygon, tile: Tile, grid: TileGrid, tol: float) -> bool:
    """Whether the geometry touches an edge of its tile that is inside the scene."""
    x0, y0, x1, y1 = shape.bounds
    tx0, ty0, tx1, ty1 = tile.bounds
    return (
        (x0 <= tx0 + tol and tx0 > 0)
        or (y0 <= ty0 + tol and ty0 > 0)
        or (x1 >= tx1 - tol and tx1 < grid.width)
        or (y1 >= ty1 - tol and ty1 < grid.height)
    )


def _join(a: _Piece, b: _Piece) -> Polygon:
    union = shapely.unary_union([a.shape, b.shape])
    if a.kind == "box":
        return box(*union.bounds)
    if a.kind == "obox":
        return shapely.minimum_rotated_rectangle(union)
    return union if isinstance(union, Polygon) else union.convex_hull


def merge_geometries(pieces: list[_Piece], iou: float = 0.5, ios: float = 0.3) -> list[_Piece]:
    """One piece per object from per-tile pieces.

    Pieces of one tile are never merged with each other (the model told them
    apart). Pieces of different tiles with the same label are the same object when
    their IoU is at least ``iou``, or when one of them is not its tile's to judge —
    cut by the tile's edge, or centred in another tile's core — and their
    intersection covers at least ``ios`` of the smaller one (two views of one object
    from differently aligned tiles rarely agree to the pixel). Pieces are taken in
    order of trust: whole and owned first. Two cut pieces join into their union;
    otherwise the trusted piece stands for the object.
    """
    order = sorted(
        pieces,
        key=lambda p: (p.cut, p.foreign, -p.shape.area, p.tile if p.tile is not None else -1),
    )
    kept: list[_Piece] = []
    bounds = np.zeros((len(order), 4))
    for piece in order:
        piece.tiles = {piece.tile}
        b = np.array(piece.shape.bounds)
        merged = False
        if kept:
            kb = bounds[: len(kept)]
            overlap = (kb[:, 0] < b[2]) & (kb[:, 2] > b[0]) & (kb[:, 1] < b[3]) & (kb[:, 3] > b[1])
            # The best match, not the first: a piece near two kept neighbours joins the one it
            # overlaps most, so that the neighbour's own view is not left to count twice.
            best, best_iou = -1, -1.0
            for j in np.flatnonzero(overlap):
                other = kept[j]
                if other.key() != piece.key() or piece.tile in other.tiles:
                    continue
                inter = other.shape.intersection(piece.shape).area
                if inter <= 0:
                    continue
                union = other.shape.area + piece.shape.area - inter
                smaller = min(other.shape.area, piece.shape.area)
                doubtful = piece.cut or other.cut or piece.foreign or other.foreign
                if (
                    inter / union >= iou or (doubtful and inter / smaller >= ios)
                ) and inter / union > best_iou:
                    best, best_iou = int(j), inter / union
            if best >= 0:
                other = kept[best]
                if piece.cut and other.cut:
                    other.shape = _join(other, piece)
                    bounds[best] = other.shape.bounds
                other.tiles.add(piece.tile)
                if other.score is None or (piece.score or 0) > other.score:
                    other.score = piece.score if piece.score is not None else other.score
                merged = True
        if not merged:
            bounds[len(kept)] = b
            kept.append(piece)
    return kept


def drop_repeats(
    pieces: list[_Piece], grid: TileGrid, tiles_answered: int, rank: dict[int, int] | None = None
) -> tuple[list[_Piece], int]:
    """One piece for each answer repeated at one place of the window by many tiles; how many went.

    Pieces of different tiles with the same kind and label whose bounds, relative to their
    tile's window, agree to 1/:data:`REPEAT_GRID` of the window are the same per-tile answer.
    When at least two tiles, and at least half of the ``tiles_answered``, gave it, it says
    nothing about what each tile shows (real objects do not sit at the same place of every
    tile); only the copy from the best-ranked tile (``rank``: lower is better; default the
    tile index) is kept. Pieces from the overview (``tile`` None) are left alone.
    """
    rank = rank or {}
    groups: dict[tuple, list[_Piece]] = {}
    for piece in pieces:
        if piece.tile is None:
            continue
        col, row, w, h = grid.tiles[piece.tile].window
        x0, y0, x1, y1 = piece.shape.bounds
        where = tuple(
            round(v * REPEAT_GRID)
            for v in ((x0 - col) / w, (y0 - row) / h, (x1 - col) / w, (y1 - row) / h)
        )
        groups.setdefault((piece.kind, piece.key(), where), []).append(piece)
    dropped: set[int] = set()
    for group in groups.values():
        tiles = {p.tile for p in group}
        if len(tiles) >= 2 and 2 * len(tiles) >= tiles_answered:
            keep = min(group, key=lambda p: (rank.get(p.tile, len(rank) + p.tile), p.tile))
            dropped.update(id(p) for p in group if p is not keep)
    return [p for p in pieces if id(p) not in dropped], len(dropped)


def best_single(pieces: list[_Piece], logprob: dict[int | None, float] | None = None) -> list[_Piece]:
    """The one best match of a task that expects one thing (merge rule ``single``).

    By the instance score where the model gave one; otherwise by the sequence
    log-probability of the answer each piece came from (``logprob``: tile index, None
    for the overview), then by how many tiles saw it and its area.
    """
    if len(pieces) <= 1:
        return list(pieces)
    if any(p.score is not None for p in pieces):
        return [max(pieces, key=lambda p: (p.score if p.score is not None else -1.0, len(p.tiles)))]
    logprob = logprob or {}
    return [
        max(
            pieces,
            key=lambda p: (logprob.get(p.tile, float("-inf")), len(p.tiles), p.shape.area),
        )
    ]


def mosaic_masks(
    grid: TileGrid,
    tile_masks: dict[int, np.ndarray],
    out_shape: tuple[int, int],
    base: np.ndarray | None = None,
) -> np.ndarray:
    """A scene mask of ``out_shape`` (h, w) from tile masks, each written over its tile's core.

    ``tile_masks[i]`` covers tile i's window at any resolution; ``base`` (any
    resolution, e.g. the overview's mask) fills the places no tile was read.
    """
    h, w = out_shape
    sy, sx = h / grid.height, w / grid.width
    if base is not None:
        ys = np.minimum(((np.arange(h) + 0.5) * base.shape[0] / h).astype(int), base.shape[0] - 1)
        xs = np.minimum(((np.arange(w) + 0.5) * base.shape[1] / w).astype(int), base.shape[1] - 1)
        out = base[ys][:, xs].astype(bool)
    else:
        out = np.zeros(out_shape, dtype=bool)
    for index, mask in tile_masks.items():
        tile = grid.tiles[index]
        col, row, tw, th = tile.window
        x0, y0, x1, y1 = tile.core
        # Core in output pixels, and where each output pixel centre falls in the tile mask.
        c0, c1 = round(x0 * sx), round(x1 * sx)
        r0, r1 = round(y0 * sy), round(y1 * sy)
        if c1 <= c0 or r1 <= r0:
            continue
        src_x = ((np.arange(c0, c1) + 0.5) / sx - col) * mask.shape[1] / tw
        src_y = ((np.arange(r0, r1) + 0.5) / sy - row) * mask.shape[0] / th
        src_x = np.clip(src_x.astype(int), 0, mask.shape[1] - 1)
        src_y = np.clip(src_y.astype(int), 0, mask.shape[0] - 1)
        out[r0:r1, c0:c1] = mask[src_y][:, src_x]
    return out


_NUMBER = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*(?:m2|m²|square meters)?\s*\.?\s*$", re.IGNORECASE)
_YES_NO = {"yes": True, "no": False}
_ADDITIVE = re.compile(r"\b(how many|number of|count|area|total|how much)\b", re.IGNORECASE)
_EXISTENTIAL = re.compile(r"^\s*(is|are|does|do)\s+(there|the image|this image)\b", re.IGNORECASE)
_COMPARATIVE = re.compile(r"\b(more|less|fewer|than|larger|smaller|most|least)\b", re.IGNORECASE)


def merge_text(
    task: str | None,
    prompt: str,
    overview_text: str,
    tile_texts: dict[int, str],
    grid: TileGrid,
) -> tuple[str, str]:
    """The merged text answer for non-geometry tasks, and how it was merged.

    Additive questions ("how many…", "what area…") answered with numbers by every
    tile are summed, each tile weighted by the share of its window that it owns
    (so objects in overlaps count once on average); existential yes/no questions
    are "yes" when any tile says yes; anything else keeps the overview's answer.
    """
    if task in ("vqa", None) and tile_texts:
        values = [(_NUMBER.match(t), t.strip().lower().rstrip(".")) for t in tile_texts.values()]
        if all(m for m, _ in values) and _ADDITIVE.search(prompt):
            total = 0.0
            for index, text in tile_texts.items():
                tile = grid.tiles[index]
                x0, y0, x1, y1 = tile.core
                owned = (x1 - x0) * (y1 - y0) / (tile.window[2] * tile.window[3])
                total += float(_NUMBER.match(text).group(1)) * owned
            decimals = any("." in m.group(1) for m, _ in values)
            return (f"{total:.1f}" if decimals else str(int(round(total)))), "sum_over_tiles"
        if (
            all(v in _YES_NO for _, v in values)
            and _EXISTENTIAL.search(prompt)
            and not _COMPARATIVE.search(prompt)
        ):
            return ("yes" if any(_YES_NO[v] for _, v in values) else "no"), "any_tile"
    return overview_text, "overview"


def _tile_geometry(
    answer: Any, tile: Tile, grid: TileGrid, image_size: tuple[int, int]
) -> list[_Piece]:
    """The answer's geometry in source pixels, as pieces."""
    col, row, tw, th = tile.window
    sx, sy = tw / image_size[0], th / image_size[1]
    to_source = [sx, 0, 0, sy, col, row]
    tol = max(2.0 * max(sx, sy), 0.004 * max(tw, th))
    pieces = []
    for item in (*answer.boxes, *answer.obboxes, *answer.polygons):
        kind = item.kind
        shape = item.shape()
        if kind == "polygon" and not isinstance(shape, Polygon):
            shape = shape.convex_hull
        shape = shapely.affinity.affine_transform(shape, to_source)
        if shape.is_empty or (kind != "box" and shape.area <= 0):
            continue
        cx, cy = shape.centroid.x, shape.centroid.y
        x0, y0, x1, y1 = tile.core
        # A centre within ``2 * tol`` of the core's edge is not this tile's to judge either: the
        # neighbour's view of the same object may be centred just across the cut.
        m = 2 * tol
        foreign = tile.index >= 0 and not (
            x0 + (m if x0 > 0 else 0) <= cx <= x1 - (m if x1 < grid.width else 0)
            and y0 + (m if y0 > 0 else 0) <= cy <= y1 - (m if y1 < grid.height else 0)
        )
        cut = _is_cut(shape, tile, grid, tol)
        score = getattr(item, "score", None)
        pieces.append(_Piece(kind, shape, item.label, score, tile.index, cut, foreign))
    return pieces


def _pieces_to_items(
    pieces: list[_Piece],
) -> tuple[list[AnswerBox], list[AnswerOBox], list[AnswerPolygon]]:
    """Merged pieces as answer geometry, top to bottom, each saying which tiles saw it."""
    boxes, oboxes, polygons = [], [], []
    for p in sorted(pieces, key=lambda p: (p.shape.bounds[1], p.shape.bounds[0])):
        tiles = sorted(t for t in p.tiles if t is not None)
        extra: dict[str, Any] = {"source": "overview"} if p.tile is None else {"tiles": tiles}
        if p.kind == "box":
            boxes.append(AnswerBox(p.label, tuple(p.shape.bounds), p.score, **extra))
        elif p.kind == "obox":
            corners = np.asarray(p.shape.exterior.coords)[:4]
            oboxes.append(AnswerOBox.from_corners(p.label, corners, p.score, **extra))
        else:
            points = list(p.shape.exterior.coords)[:-1]
            polygons.append(AnswerPolygon(p.label, points, **extra))
    return boxes, oboxes, polygons


def _counts_text(boxes: list, oboxes: list, polygons: list) -> tuple[str, dict[str, int]]:
    counts: dict[str, int] = {}
    for item in (*boxes, *oboxes, *polygons):
        label = item.label or "object"
        counts[label] = counts.get(label, 0) + 1
    text = "; ".join(f"{label}: {n}" for label, n in counts.items()) if counts else "none"
    return text, counts


_VERSUS = re.compile(r"\b(?:compared|versus|vs|relative|ratio)\b", re.IGNORECASE)
_COUNT_QUESTIONS = [
    re.compile(
        r"^\s*how\s+many\s+(.+?)(?:\s+(?:are|is|were|can|do|does|could)\b.*)?\s*\??\s*$",
        re.IGNORECASE,
    ),
    re.compile(
        r"^\s*(?:what\s+is\s+)?(?:the\s+)?(?:total\s+)?number\s+of\s+(.+?)"
        r"(?:\s+(?:are|is|that|which|visible|present|shown|seen)\b.*)?\s*[?.]?\s*$",
        re.IGNORECASE,
    ),
    re.compile(r"^\s*count\s+(?:all\s+)?(.+?)\s*[?.!]?\s*$", re.IGNORECASE),
]


def _count_target(prompt: str) -> str | None:
    """``cars`` for "How many cars are there?", "What is the number of cars?" or "Count the cars".

    None for other questions, and for comparisons ("how many more cars than trucks"),
    which a count of one kind of object does not answer.
    """
    match = next((m for p in _COUNT_QUESTIONS if (m := p.match(prompt.strip()))), None)
    if not match or _COMPARATIVE.search(match.group(1)) or _VERSUS.search(match.group(1)):
        return None
    target = re.sub(r"\b(?:the|in|on|of|this|image|scene|picture|all)\b", " ", match.group(1))
    target = " ".join(target.split())
    return target or None
