"""The answer grammar: how boxes, oriented boxes, polygons and masks are written in model text.

:func:`parse` reads model output back into pixel geometry and never raises on any string;
what it could not read (or had to repair) is listed in :attr:`ParseResult.errors`.
The ``format_*`` functions write the same grammar and build training targets. The grammar,
with examples, is written down in ``docs/FORMATS.md``; converters from other systems'
grammars live in :mod:`geoassist.format_converters` and are re-exported here.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import shapely

if TYPE_CHECKING:
    # Loaded lazily by __getattr__ below; imported here so type checkers see the re-exports.
    from geoassist.format_converters import (
        convert,
        from_florence,
        from_geochat,
        from_plain_list,
        from_qwen,
    )

__all__ = [
    "GRID_MAX",
    "MAX_MASK_SIDE",
    "MAX_OBOX_SIDE",
    "Box",
    "OBox",
    "Polygon",
    "ParseResult",
    "parse",
    "format_box",
    "format_obox",
    "format_polygon",
    "format_mask",
    "format_objects",
    "to_grid",
    "from_grid",
    "box_iou",
    "obox_iou",
    "obbox_to_corners",
    "corners_to_obbox",
    "mask_to_grid",
    "grid_to_mask",
    "from_geochat",
    "from_qwen",
    "from_florence",
    "from_plain_list",
    "convert",
]

GRID_MAX = 1000
"""Coordinates in model text are integers in ``[0, GRID_MAX]`` relative to the image."""

MAX_OBOX_SIDE = 1415
"""Largest oriented-box side in grid units: no rectangle inside the image is longer than its
diagonal, which is at most ``sqrt(2) * 1000`` units of ``max(W, H) / 1000``."""

MAX_MASK_SIDE = 512
"""Largest mask grid side the parser accepts; bounds the memory a hostile answer can ask for."""

DEFAULT_MASK_GRID = (16, 16)


@dataclass
class Box:
    """A horizontal box in pixels of the original image, ``x1 <= x2`` and ``y1 <= y2``."""

    label: str | None
    box: tuple[float, float, float, float]
    score: float | None = None


@dataclass
class OBox:
    """An oriented box in pixels; ``angle_deg`` turns counter-clockwise on screen (see FORMATS.md)."""

    label: str | None
    cx: float
    cy: float
    w: float
    h: float
    angle_deg: float
    score: float | None = None

    def corners(self) -> np.ndarray:
        """The four corners in pixels, shape (4, 2), clockwise on screen (see :func:`obbox_to_corners`)."""
        return obbox_to_corners(self.cx, self.cy, self.w, self.h, self.angle_deg)


@dataclass
class Polygon:
    """A polygon in pixels of the original image (at least three points, not closed)."""

    label: str | None
    points: list[tuple[float, float]]


@dataclass
class ParseResult:
    """Everything :func:`parse` read from one answer.

    ``errors`` holds one message per problem; each starts with ``dropped`` (the item or tag was
    not used) or ``repaired`` (the item was used after a fix, such as clamping or swapping).
    """

    text: str
    boxes: list[Box] = field(default_factory=list)
    obboxes: list[OBox] = field(default_factory=list)
    polygons: list[Polygon] = field(default_factory=list)
    mask: np.ndarray | None = None
    mask_grid: np.ndarray | None = None
    errors: list[str] = field(default_factory=list)
    is_none: bool = False


# ---------------------------------------------------------------------------------------------
# Grid and geometry helpers


def _image_size(image_size: Sequence[int]) -> tuple[int, int]:
    try:
        width, height = image_size
        width, height = operator.index(width), operator.index(height)
    except (TypeError, ValueError):
        raise ValueError(
            f"image_size must be (width, height) as two integers, got {image_size!r}"
        ) from None
    if width <= 0 or height <= 0:
        raise ValueError(f"image_size must be positive, got (width={width}, height={height})")
    return width, height


def _round_half_up(value: float) -> int:
    # Python's round() rounds halves to even, which would make the grid depend on parity.
    return math.floor(value + 0.5)


def _finite(*values: float) -> None:
    for value in values:
        if not math.isfinite(value):
            raise ValueError(f"coordinates must be finite numbers, got {value!r}")


def to_grid(x_px: float, size_px: float) -> int:
    """Pixel coordinate -> integer on the 0-1000 grid along an axis of ``size_px`` pixels (clamped)."""
    if not size_px > 0:
        raise ValueError(f"size_px must be positive, got {size_px!r}")
    value = float(x_px) / size_px * GRID_MAX
    _finite(value)
    return min(GRID_MAX, max(0, _round_half_up(value)))


def from_grid(g: float, size_px: float) -> float:
    """Grid value -> pixel coordinate along an axis of ``size_px`` pixels."""
    return g / GRID_MAX * size_px


def _wrap_angle(angle_deg: float) -> float:
    """Bring an angle into [-90, 90); a rectangle turned by 180 degrees is the same rectangle."""
    wrapped = (angle_deg + 90.0) % 180.0 - 90.0
    # float modulo can return exactly 180 for tiny negative inputs
    return wrapped - 180.0 if wrapped >= 90.0 else wrapped


def obbox_to_corners(cx: float, cy: float, w: float, h: float, angle_deg: float) -> np.ndarray:
    """Corners of an oriented box in pixels, shape (4, 2).

    The width axis points along ``(cos a, -sin a)`` in pixel coordinates: the image y axis
    points down, so a positive angle turns the box counter-clockwise as seen on screen.
    At angle 0 the corners are top-left, top-right, bottom-right, bottom-left (clockwise on
    screen, the order DOTA uses).
    """
    theta = math.radians(angle_deg)
    half_w = np.array([math.cos(theta), -math.sin(theta)]) * (w / 2.0)
    half_h = np.array([math.sin(theta), math.cos(theta)]) * (h / 2.0)
    center = np.array([cx, cy], dtype=float)
    return np.stack(
        [
            center - half_w - half_h,
            center + half_w - half_h,
            center + half_w + half_h,
            center - half_w + half_h,
        ]
    )


def corners_to_obbox(quad: Any) -> tuple[float, float, float, float, float]:
    """Fit the minimum-area rectangle around points in pixels (a DOTA quadrilateral, say).

    Accepts an (N, 2) array or a flat list of 2N numbers. Returns ``(cx, cy, w, h, angle_deg)``
    with ``w >= h`` (the long side is the width) and the angle in [-90, 90), in the convention
    of :func:`obbox_to_corners`. Collinear points give ``h == 0``; identical points ``w == h == 0``.
    """
    points = np.asarray(quad, dtype=float)
    if points.size < 2 or points.size % 2:
        raise ValueError(f"expected an (N, 2) array of points, got shape {points.shape}")
    points = points.reshape(-1, 2)
    if not np.isfinite(points).all():
        raise ValueError("points must be finite")
    hull = shapely.MultiPoint(points).convex_hull
    if isinstance(hull, shapely.Polygon):
        ring = np.asarray(hull.exterior.coords)[:-1]
    else:
        ring = np.asarray(hull.coords)
    edges = np.diff(np.vstack([ring, ring[:1]]), axis=0)
    edges = edges[np.hypot(edges[:, 0], edges[:, 1]) > 0]
    if len(edges) == 0:
        return float(ring[0, 0]), float(ring[0, 1]), 0.0, 0.0, 0.0
    # A minimum-area rectangle has one side along a hull edge, so trying each edge suffices.
    best: tuple[float, np.ndarray, np.ndarray, np.ndarray] | None = None
    for dx, dy in edges:
        along = np.array([dx, dy]) / math.hypot(dx, dy)
        across = np.array([-along[1], along[0]])
        a, c = ring @ along, ring @ across
        area = float(np.ptp(a) * np.ptp(c))
        if best is None or area < best[0] - 1e-9 * max(1.0, best[0]):
            best = (area, along, across, np.array([a.min(), a.max(), c.min(), c.max()]))
    assert best is not None
    _, along, across, (a0, a1, c0, c1) = best
    center = along * (a0 + a1) / 2.0 + across * (c0 + c1) / 2.0
    w, h, axis = a1 - a0, c1 - c0, along
    if h > w:
        w, h, axis = h, w, across
    angle = _wrap_angle(math.degrees(math.atan2(-axis[1], axis[0])))
    return float(center[0]), float(center[1]), float(w), float(h), float(angle)


def box_iou(a: Box | Sequence[float], b: Box | Sequence[float]) -> float:
    """IoU of two ``(x1, y1, x2, y2)`` boxes in pixels, with no +1 term.

    Boxes of zero or negative area (or with non-finite coordinates) give 0.0.
    """
    ax1, ay1, ax2, ay2 = (float(v) for v in (a.box if isinstance(a, Box) else a))
    bx1, by1, bx2, by2 = (float(v) for v in (b.box if isinstance(b, Box) else b))
    if not all(math.isfinite(v) for v in (ax1, ay1, ax2, ay2, bx1, by1, bx2, by2)):
        return 0.0
    area_a = (ax2 - ax1) * (ay2 - ay1) if ax2 > ax1 and ay2 > ay1 else 0.0
    area_b = (bx2 - bx1) * (by2 - by1) if bx2 > bx1 and by2 > by1 else 0.0
    if area_a <= 0.0 or area_b <= 0.0:
        return 0.0
    inter_w = max(0.0, min(ax2, bx2) - max(ax1, bx1))
    inter_h = max(0.0, min(ay2, by2) - max(ay1, by1))
    inter = inter_w * inter_h
    return inter / (area_a + area_b - inter)


def obox_iou(a: OBox, b: OBox) -> float:
    """IoU of two oriented boxes, computed on their rectangles in pixels; degenerate boxes give 0.0."""
    corners_a, corners_b = a.corners(), b.corners()
    if not (np.isfinite(corners_a).all() and np.isfinite(corners_b).all()):
        return 0.0
    # Working around a's centre keeps the numbers small, so the snapping grid below can be fine.
    origin = corners_a.mean(axis=0)
    corners_a, corners_b = corners_a - origin, corners_b - origin
    pa, pb = shapely.Polygon(corners_a), shapely.Polygon(corners_b)
    if pa.area <= 0.0 or pb.area <= 0.0:
        return 0.0
    # Floating-point overlay can lose nearly coincident rectangles entirely (an empty
    # intersection for two copies of one box); snap-rounding on a fine grid is robust.
    scale = max(float(np.abs(corners_a).max()), float(np.abs(corners_b).max()))
    inter = shapely.intersection(pa, pb, grid_size=scale * 1e-12).area
    return float(min(1.0, max(0.0, inter / (pa.area + pb.area - inter))))


def _cell_edges(n_cells: int, n_pixels: int) -> np.ndarray:
    # Cell k covers pixels [edges[k], edges[k + 1]); cells are empty when n_cells > n_pixels.
    return (np.arange(n_cells + 1, dtype=np.int64) * n_pixels) // n_cells


def _grid_shape(grid: Sequence[int]) -> tuple[int, int]:
    try:
        rows, cols = (operator.index(v) for v in grid)
    except (TypeError, ValueError):
        raise ValueError(f"grid must be (rows, cols) as two integers, got {grid!r}") from None
    if not (1 <= rows <= MAX_MASK_SIDE and 1 <= cols <= MAX_MASK_SIDE):
        raise ValueError(f"grid sides must be in 1..{MAX_MASK_SIDE}, got {rows}x{cols}")
    return rows, cols


def _sum_cells(values: np.ndarray, edges: np.ndarray, axis: int) -> np.ndarray:
    starts = edges[:-1]
    nonempty = edges[1:] > starts
    shape = list(values.shape)
    shape[axis] = len(starts)
    sums = np.zeros(shape, dtype=np.int64)
    if nonempty.any():
        # reduceat sums from one start to the next, so passing only the starts of non-empty
        # cells gives each of them exactly its own pixels; empty cells stay 0.
        index = [slice(None)] * values.ndim
        index[axis] = nonempty
        sums[tuple(index)] = np.add.reduceat(values, starts[nonempty], axis=axis, dtype=np.int64)
    return sums


def mask_to_grid(mask: np.ndarray, grid: Sequence[int] = DEFAULT_MASK_GRID) -> np.ndarray:
    """Boolean (H, W) mask -> (rows, cols) uint8 grid; a cell is 1 when >= 50 % of its pixels are set."""
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.size == 0:
        raise ValueError(f"mask must be a non-empty 2-D array, got shape {mask.shape}")
    rows, cols = _grid_shape(grid)
    height, width = mask.shape
    row_edges, col_edges = _cell_edges(rows, height), _cell_edges(cols, width)
    sums = _sum_cells(_sum_cells(mask.astype(bool), row_edges, 0), col_edges, 1)
    area = np.diff(row_edges)[:, None] * np.diff(col_edges)[None, :]
    return ((area > 0) & (2 * sums >= area)).astype(np.uint8)


def grid_to_mask(grid: np.ndarray, image_size: Sequence[int]) -> np.ndarray:
    """(rows, cols) label grid -> boolean (H, W) mask by nearest upsampling of the cells."""
    width, height = _image_size(image_size)
    cells = np.asarray(grid).astype(bool)
    rows, cols = _grid_shape(cells.shape)
    row_of_pixel = np.searchsorted(_cell_edges(rows, height), np.arange(height), side="right") - 1
    col_of_pixel = np.searchsorted(_cell_edges(cols, width), np.arange(width), side="right") - 1
    return cells[row_of_pixel][:, col_of_pixel]


# ---------------------------------------------------------------------------------------------
# Formatting


def _score_suffix(score: float | None) -> str:
    if score is None:
        return ""
    score = float(score)
    if not 0.0 <= score <= 1.0:
        raise ValueError(f"score must be in [0, 1], got {score!r}")
    return f":{score:.2f}"


def _clean_label(label: Any) -> str | None:
    if label is None:
        return None
    text = " ".join(str(label).split())
    if "<" in text or ">" in text:
        raise ValueError(f"labels cannot contain '<' or '>', got {text!r}")
    return text or None


def format_box(
    box_px: Sequence[float], image_size: Sequence[int], score: float | None = None
) -> str:
    """``<box>x1,y1,x2,y2[:score]</box>`` for a pixel box; swapped corners are put in order."""
    width, height = _image_size(image_size)
    x1, y1, x2, y2 = (float(v) for v in box_px)
    x1, x2 = sorted((x1, x2))
    y1, y2 = sorted((y1, y2))
    grid = (to_grid(x1, width), to_grid(y1, height), to_grid(x2, width), to_grid(y2, height))
    return f"<box>{','.join(map(str, grid))}{_score_suffix(score)}</box>"


def format_obox(
    cx: float,
    cy: float,
    w: float,
    h: float,
    angle_deg: float,
    image_size: Sequence[int],
    score: float | None = None,
) -> str:
    """``<obox>cx,cy,w,h,a[:score]</obox>`` for an oriented box in pixels (angle in degrees)."""
    width, height = _image_size(image_size)
    w, h, angle_deg = float(w), float(h), float(angle_deg)
    _finite(w, h, angle_deg)
    if w < 0 or h < 0:
        raise ValueError(f"oriented box sides must be >= 0, got w={w}, h={h}")
    side_unit = max(width, height) / GRID_MAX
    sides = [min(MAX_OBOX_SIDE, _round_half_up(s / side_unit)) for s in (w, h)]
    # Round first so that 89.6 becomes -90, not 90, keeping the written angle in [-90, 90).
    angle = int(_wrap_angle(_round_half_up(angle_deg)))
    values = (to_grid(cx, width), to_grid(cy, height), *sides, angle)
    return f"<obox>{','.join(map(str, values))}{_score_suffix(score)}</obox>"


def format_polygon(points_px: Any, image_size: Sequence[int]) -> str:
    """``<poly>x1,y1,...,xn,yn</poly>`` for at least three pixel points."""
    width, height = _image_size(image_size)
    points = np.asarray(points_px, dtype=float)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) < 3:
        raise ValueError(f"a polygon needs an (N, 2) array with N >= 3, got shape {points.shape}")
    _finite(*points.ravel())
    values = [
        str(to_grid(v, width if i % 2 == 0 else height)) for i, v in enumerate(points.ravel())
    ]
    return f"<poly>{','.join(values)}</poly>"


def _encode_row(row: np.ndarray) -> str:
    bounds = [0, *(np.flatnonzero(np.diff(row)) + 1).tolist(), len(row)]
    runs = []
    for start, end in zip(bounds[:-1], bounds[1:], strict=False):
        value, count = int(row[start]), end - start
        runs.append(f"{value}*{count}" if count > 1 else str(value))
    return ",".join(runs)


def format_mask(mask: np.ndarray, grid: Sequence[int] = DEFAULT_MASK_GRID) -> str:
    """``<mask>RxC|rows</mask>`` for a boolean (H, W) mask, cells set by majority (>= 50 %)."""
    cells = mask_to_grid(mask, grid)
    rows = ";".join(_encode_row(row) for row in cells)
    return f"<mask>{cells.shape[0]}x{cells.shape[1]}|{rows}</mask>"


def _format_geometry(obj: Any, image_size: Sequence[int]) -> tuple[str | None, str]:
    if isinstance(obj, Box):
        return obj.label, format_box(obj.box, image_size, obj.score)
    if isinstance(obj, OBox):
        return obj.label, format_obox(
            obj.cx, obj.cy, obj.w, obj.h, obj.angle_deg, image_size, obj.score
        )
    if isinstance(obj, Polygon):
        return obj.label, format_polygon(obj.points, image_size)
    if not isinstance(obj, dict):
        raise ValueError(f"objects must be dicts (or Box/OBox/Polygon), got {type(obj).__name__}")
    kinds = [key for key in ("box", "obox", "polygon") if key in obj]
    if len(kinds) != 1:
        raise ValueError(
            f"each object needs exactly one of 'box', 'obox', 'polygon'; got keys {list(obj)}"
        )
    kind, score = kinds[0], obj.get("score")
    if kind == "box":
        return obj.get("label"), format_box(obj["box"], image_size, score)
    if kind == "obox":
        cx, cy, w, h, angle = obj["obox"]
        return obj.get("label"), format_obox(cx, cy, w, h, angle, image_size, score)
    if score is not None:
        raise ValueError(
            "polygons carry no score in the grammar; drop 'score' from polygon objects"
        )
    return obj.get("label"), format_polygon(obj["polygon"], image_size)


def format_objects(objects: Sequence[Any], image_size: Sequence[int]) -> str:
    """A detection/grounding answer: one ``<ref>`` per label, labels in first-appearance order.

    Each object is a dict with ``label`` and one of ``box`` (x1, y1, x2, y2), ``obox``
    (cx, cy, w, h, angle_deg) or ``polygon`` (points), all in pixels, plus an optional
    ``score``; :class:`Box`, :class:`OBox` and :class:`Polygon` are accepted too. Unlabelled
    objects are written first, before any ``<ref>``. An empty list gives ``none``.
    """
    groups: dict[str | None, list[str]] = {}
    for obj in objects:
        label, tag = _format_geometry(obj, image_size)
        groups.setdefault(_clean_label(label), []).append(tag)
    if not groups:
        return "none"
    parts = ["".join(groups.pop(None))] if None in groups else []
    parts += [f"<ref>{label}</ref>{''.join(tags)}" for label, tags in groups.items()]
    return " ".join(parts)


# ---------------------------------------------------------------------------------------------
# Parsing

_FLAGS = re.IGNORECASE | re.ASCII
_ITEM_RE = re.compile(r"<(ref|box|obox|poly|mask)>([^<>]*)</\1>", _FLAGS)
_FRAGMENT_RE = re.compile(r"</?(?:ref|box|obox|poly|mask)\b[^<>]*>?", _FLAGS)
_NONE_RE = re.compile(r"\s*none\s*\.?\s*", _FLAGS)
_NUMBER_RE = re.compile(r"[+-]?\d+(?:\.\d+)?", re.ASCII)
_SCORE_RE = re.compile(r"\d*\.?\d+", re.ASCII)
_MASK_HEADER_RE = re.compile(r"\s*(\d{1,6})\s*x\s*(\d{1,6})\s*\|(.*)", _FLAGS | re.DOTALL)
_RUN_RE = re.compile(r"\s*([01])\s*(?:\*\s*(\d+)\s*)?", re.ASCII)
_SATURATE = 1e9  # stands in for numbers too large to be meant; clamping then reports them


def _snippet(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


class _ItemReader:
    """Reads the numbers of one tag body and collects what had to be repaired."""

    def __init__(self, name: str, body: str, result: ParseResult) -> None:
        self.name, self.body, self.result = name, body, result
        self.repairs: list[str] = []

    def drop(self, why: str) -> None:
        self.result.errors.append(f"dropped {self.name} {_snippet(self.body)}: {why}")

    def commit(self) -> None:
        for why in dict.fromkeys(self.repairs):
            self.result.errors.append(f"repaired {self.name}: {why}")

    def numbers(self, text: str) -> list[float] | None:
        values = []
        for token in text.split(","):
            token = token.strip()
            if not _NUMBER_RE.fullmatch(token):
                self.drop(f"{_snippet(token, 20)} is not a number")
                return None
            if "." in token:
                self.repairs.append("non-integer number used as is")
            value = float(token)
            values.append(value if math.isfinite(value) else math.copysign(_SATURATE, value))
        return values

    def split_score(self) -> tuple[str, float | None]:
        coords, sep, score_text = self.body.partition(":")
        if not sep:
            return coords, None
        if not _SCORE_RE.fullmatch(score_text.strip()):
            self.repairs.append(f"unreadable score {_snippet(score_text, 20)} ignored")
            return coords, None
        score = float(score_text)
        if score > 1.0:
            self.repairs.append(f"score {score_text.strip()[:20]} clamped to 1")
            score = 1.0
        return coords, score

    def clamp(self, value: float, low: float, high: float, what: str) -> float:
        if value < low or value > high:
            self.repairs.append(f"{what} outside {low:g}..{high:g} clamped")
            return min(high, max(low, value))
        return value


def _parse_box(reader: _ItemReader, label: str | None, size: tuple[int, int]) -> None:
    coords, score = reader.split_score()
    values = reader.numbers(coords)
    if values is None:
        return
    if len(values) != 4:
        return reader.drop(f"expected 4 numbers x1,y1,x2,y2, got {len(values)}")
    x1, y1, x2, y2 = (reader.clamp(v, 0, GRID_MAX, "coordinate") for v in values)
    if x1 > x2 or y1 > y2:
        reader.repairs.append("swapped corners put in order")
        x1, x2 = sorted((x1, x2))
        y1, y2 = sorted((y1, y2))
    width, height = size
    box = (from_grid(x1, width), from_grid(y1, height), from_grid(x2, width), from_grid(y2, height))
    reader.result.boxes.append(Box(label, box, score))
    reader.commit()


def _parse_obox(reader: _ItemReader, label: str | None, size: tuple[int, int]) -> None:
    coords, score = reader.split_score()
    values = reader.numbers(coords)
    if values is None:
        return
    if len(values) != 5:
        return reader.drop(f"expected 5 numbers cx,cy,w,h,angle, got {len(values)}")
    cx, cy = (reader.clamp(v, 0, GRID_MAX, "center") for v in values[:2])
    sides = []
    for side in values[2:4]:
        if side < 0:
            reader.repairs.append("negative side length made positive")
        sides.append(reader.clamp(abs(side), 0, MAX_OBOX_SIDE, "side length"))
    angle = values[4]
    if not -90 <= angle < 90:
        reader.repairs.append("angle brought into [-90, 90)")
        angle = _wrap_angle(angle)
    width, height = size
    side_unit = max(width, height) / GRID_MAX
    reader.result.obboxes.append(
        OBox(
            label,
            from_grid(cx, width),
            from_grid(cy, height),
            sides[0] * side_unit,
            sides[1] * side_unit,
            angle,
            score,
        )
    )
    reader.commit()


def _parse_polygon(reader: _ItemReader, label: str | None, size: tuple[int, int]) -> None:
    values = reader.numbers(reader.body)
    if values is None:
        return
    if len(values) % 2:
        reader.repairs.append("odd number of coordinates, last one ignored")
        values = values[:-1]
    if len(values) < 6:
        return reader.drop(f"a polygon needs at least 3 points, got {len(values) // 2}")
    width, height = size
    values = [reader.clamp(v, 0, GRID_MAX, "coordinate") for v in values]
    points = [
        (from_grid(x, width), from_grid(y, height))
        for x, y in zip(values[::2], values[1::2], strict=True)
    ]
    reader.result.polygons.append(Polygon(label, points))
    reader.commit()


def _decode_mask_row(text: str, cols: int) -> tuple[list[int], bool]:
    """One run-length row -> ``cols`` cell labels, and whether it had to be repaired."""
    cells: list[int] = []
    clean = True
    for token in text.split(","):
        match = _RUN_RE.fullmatch(token)
        if match is None:
            clean = False
            continue
        digits = match[2]
        if digits is None:
            count = 1
        elif len(digits) > 6:
            count = cols + 1  # longer than any row can be; cut below without building it
        else:
            count = int(digits)
        if count == 0:
            clean = False
            continue
        # Never build more than one cell past the row, however long the runs claim to be.
        cells.extend([int(match[1])] * min(count, cols + 1 - len(cells)))
    if len(cells) != cols:
        clean = False
    return (cells + [0] * cols)[:cols], clean


def _parse_mask(reader: _ItemReader, label: str | None, size: tuple[int, int]) -> None:
    result = reader.result
    if result.mask is not None:
        return reader.drop("only one <mask> per answer is read; the first one is kept")
    header = _MASK_HEADER_RE.fullmatch(reader.body)
    if header is None:
        return reader.drop("expected 'RxC|row;row;...'")
    rows, cols = int(header[1]), int(header[2])
    if not (1 <= rows <= MAX_MASK_SIDE and 1 <= cols <= MAX_MASK_SIDE):
        return reader.drop(f"grid sides must be in 1..{MAX_MASK_SIDE}, got {rows}x{cols}")
    row_texts = header[3].split(";")
    if len(row_texts) != rows:
        reader.repairs.append(
            f"{len(row_texts)} rows for a {rows}x{cols} grid; missing rows set to 0, extra rows ignored"
        )
    grid = np.zeros((rows, cols), dtype=np.uint8)
    bad_rows = []
    for r, row_text in enumerate(row_texts[:rows]):
        cells, clean = _decode_mask_row(row_text, cols)
        grid[r] = cells
        if not clean:
            bad_rows.append(r)
    if bad_rows:
        shown = ", ".join(map(str, bad_rows[:8])) + (", ..." if len(bad_rows) > 8 else "")
        rows_word = "rows" if len(bad_rows) > 1 else "row"
        reader.repairs.append(
            f"{rows_word} {shown} had bad runs or did not add up to {cols} cells; padded with 0 or cut"
        )
    result.mask_grid = grid
    result.mask = grid_to_mask(grid, size)
    reader.commit()


_ITEM_PARSERS: dict[str, Callable[[_ItemReader, str | None, tuple[int, int]], None]] = {
    "box": _parse_box,
    "obox": _parse_obox,
    "poly": _parse_polygon,
    "mask": _parse_mask,
}


def _drop_fragments(text: str, errors: list[str]) -> str:
    def replace(match: re.Match[str]) -> str:
        errors.append(f"dropped stray or malformed tag {_snippet(match[0])}")
        return " "

    return _FRAGMENT_RE.sub(replace, text)


def _tidy(text: str) -> str:
    text = re.sub(r"[ \t\f\v]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    text = re.sub(r" ([.,;:!?])", r"\1", text)
    return text.strip()


def parse(text: str, image_size: Sequence[int]) -> ParseResult:
    """Read an answer into pixel geometry; never raises on any string.

    ``image_size`` is ``(width, height)`` of the original image. Geometry takes the label of the
    closest ``<ref>`` before it (``None`` if there is none, or after an empty ``<ref></ref>``).
    Anything tag-like that could not be read is dropped and reported in ``errors``.
    """
    size = _image_size(image_size)
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if _NONE_RE.fullmatch(text):
        return ParseResult(text=text.strip(), is_none=True)
    result = ParseResult(text="")
    pieces: list[str] = []
    counts = dict.fromkeys(_ITEM_PARSERS, 0)
    label: str | None = None
    position = 0
    for match in _ITEM_RE.finditer(text):
        pieces.append(_drop_fragments(text[position : match.start()], result.errors))
        tag, body = match[1].lower(), match[2]
        if tag == "ref":
            label = " ".join(body.split()) or None
            # Spaces keep the label from gluing onto neighbouring text (and from forming a tag).
            pieces.append(f" {label} " if label else " ")
        else:
            counts[tag] += 1
            pieces.append(" ")
            _ITEM_PARSERS[tag](_ItemReader(f"<{tag}> #{counts[tag]}", body, result), label, size)
        position = match.end()
    pieces.append(_drop_fragments(text[position:], result.errors))
    result.text = _tidy("".join(pieces))
    return result


_CONVERTERS = frozenset(
    {"from_geochat", "from_qwen", "from_florence", "from_plain_list", "convert"}
)


def __getattr__(name: str) -> Any:
    # The converters build on this module, so they are loaded on first use to avoid an import cycle.
    if name in _CONVERTERS:
        from geoassist import format_converters

        return getattr(format_converters, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
