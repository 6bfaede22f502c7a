"""The primitives of the answer grammar: geometry types, the 0-1000 grid, and the writers.

Everything here writes the grammar (``format_*``) or works on its geometry (IoU, oriented-box
corners); it imports nothing else of the answer grammar, so the parser
(:mod:`geoassist.formats`), the mask codec (:mod:`geoassist.format_masks`) and the converters
from other systems' grammars (:mod:`geoassist.format_converters`) all build on it without an
import cycle. The public import path for all of it is :mod:`geoassist.formats`.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely

__all__ = [
    "GRID_MAX",
    "MAX_OBOX_SIDE",
    "Box",
    "OBox",
    "Polygon",
    "check_image_size",
    "to_grid",
    "from_grid",
    "box_iou",
    "obox_iou",
    "obbox_to_corners",
    "corners_to_obbox",
    "format_box",
    "format_obox",
    "format_polygon",
    "format_objects",
]

GRID_MAX = 1000
"""Coordinates in model text are integers in ``[0, GRID_MAX]`` relative to the image."""

MAX_OBOX_SIDE = 1415
"""Largest oriented-box side in grid units: no rectangle inside the image is longer than its
diagonal, which is at most ``sqrt(2) * 1000`` units of ``max(W, H) / 1000``."""


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


# ---------------------------------------------------------------------------------------------
# Grid and geometry helpers


def check_image_size(image_size: Sequence[int]) -> tuple[int, int]:
    """``(width, height)`` as two positive Python ints; raises ValueError on anything else."""
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
    width, height = check_image_size(image_size)
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
    width, height = check_image_size(image_size)
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
    width, height = check_image_size(image_size)
    points = np.asarray(points_px, dtype=float)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) < 3:
        raise ValueError(f"a polygon needs an (N, 2) array with N >= 3, got shape {points.shape}")
    _finite(*points.ravel())
    values = [
        str(to_grid(v, width if i % 2 == 0 else height)) for i, v in enumerate(points.ravel())
    ]
    return f"<poly>{','.join(values)}</poly>"


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
