"""A scene plan: land-cover regions and objects as geometry, before any pixel is coloured.

Layouts build a :class:`Plan`; the renderer turns it into pixels; change
generation edits a copy of it. Everything is in pixels of the output image.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from geoassist.synth.palette import LC
from geoassist.synth.types import OrientedBox

Point = tuple[float, float]


@dataclass
class Prim:
    """One filled polygon of an object's appearance, drawn in order."""

    polygon: list[Point]
    fill: tuple[int, int, int]
    # Direction a roof facet slopes down to (image frame); lit facets face the sun.
    normal: tuple[float, float] | None = None
    # Pixels this primitive moves towards the sun (crown highlights).
    sun_shift: float = 0.0


@dataclass
class Region:
    """A land-cover area drawn into the land-cover map (later regions on top)."""

    lc: int
    polygon: list[Point]
    cls: str | None = None  # annotated region class ("water_area", "forest", "road"…) or None
    attrs: dict[str, Any] = field(default_factory=dict)
    holes: list[list[Point]] = field(default_factory=list)


@dataclass
class ObjSpec:
    cls: str
    outline: list[Point]
    obox: OrientedBox
    prims: list[Prim]
    height_m: float = 0.0
    layer: int = 1  # 0 ground markings, 1 vehicles and ships, 2 buildings, 3 trees
    attrs: dict[str, Any] = field(default_factory=dict)
    annotate: bool = True
    uid: int = 0  # stable identity across the dates of a pair


@dataclass
class Plan:
    size: tuple[int, int]  # (height, width)
    gsd_m: float
    scene_class: str
    rural_urban: str
    background_lc: int
    regions: list[Region] = field(default_factory=list)
    objects: list[ObjSpec] = field(default_factory=list)
    seed: int = 0
    next_uid: int = 1

    def add(self, obj: ObjSpec) -> ObjSpec:
        obj.uid = self.next_uid
        self.next_uid += 1
        self.objects.append(obj)
        return obj

    def copy(self) -> Plan:
        return copy.deepcopy(self)

    def m(self, metres: float) -> float:
        """Metres to pixels."""
        return metres / self.gsd_m


# --------------------------------------------------------------------------- geometry


def rect(cx: float, cy: float, w: float, h: float, angle_deg: float) -> list[Point]:
    return OrientedBox(cx, cy, w, h, angle_deg).corners()


def local(cx: float, cy: float, angle_deg: float, pts: list[Point]) -> list[Point]:
    """Places points given in an object's own frame (x along its length) into the image."""
    a = math.radians(angle_deg)
    ca, sa = math.cos(a), math.sin(a)
    return [(cx + x * ca - y * sa, cy + x * sa + y * ca) for x, y in pts]


def ellipse(cx: float, cy: float, rx: float, ry: float, angle_deg: float = 0.0, n: int = 24) -> list[Point]:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return local(cx, cy, angle_deg, list(zip((rx * np.cos(t)).tolist(), (ry * np.sin(t)).tolist(), strict=True)))


def blob(rng: np.random.Generator, cx: float, cy: float, r: float, roughness: float = 0.25, n: int = 48) -> list[Point]:
    """A smooth irregular closed shape (lakes, forest patches, clearings)."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    rad = np.ones(n)
    for k in range(2, 7):
        rad += roughness / k * rng.normal() * np.cos(k * t + rng.uniform(0, 2 * np.pi))
    rad = r * np.clip(rad, 0.35, 2.0)
    return list(zip((cx + rad * np.cos(t)).tolist(), (cy + rad * np.sin(t)).tolist(), strict=True))


def meander(rng: np.random.Generator, p0: Point, p1: Point, amp: float, n: int = 40) -> list[Point]:
    """A wavy polyline from p0 to p1 (rivers, country roads)."""
    t = np.linspace(0, 1, n)
    (x0, y0), (x1, y1) = p0, p1
    dx, dy = x1 - x0, y1 - y0
    length = math.hypot(dx, dy) + 1e-9
    nx, ny = -dy / length, dx / length
    off = np.zeros(n)
    for k in (1, 2, 3):
        off += amp / k * rng.normal() * np.sin(np.pi * k * t + rng.uniform(0, np.pi)) * np.sin(np.pi * t) ** 0.3
    xs, ys = x0 + dx * t + nx * off, y0 + dy * t + ny * off
    return list(zip(xs.tolist(), ys.tolist(), strict=True))


def buffer_line(pts: list[Point], width: float) -> list[Point]:
    """Polygon of a polyline with flat ends (mitred joints, fine for gentle bends)."""
    p = np.asarray(pts, np.float64)
    d = np.gradient(p, axis=0)
    d /= np.linalg.norm(d, axis=1, keepdims=True) + 1e-12
    nrm = np.stack([-d[:, 1], d[:, 0]], 1) * (width / 2)
    left, right = p + nrm, p - nrm
    return [tuple(v) for v in left.tolist()] + [tuple(v) for v in right[::-1].tolist()]


def convex_hull(points: list[Point]) -> list[Point]:
    pts = sorted(set(points))
    if len(pts) <= 2:
        return pts

    def cross(o: Point, a: Point, b: Point) -> float:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list[Point] = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list[Point] = []
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    return lower[:-1] + upper[:-1]


def min_area_obox(points: list[Point]) -> OrientedBox:
    """The minimum-area oriented box of a point set (rotating calipers over hull edges)."""
    hull = np.asarray(convex_hull(points), np.float64)
    if len(hull) < 3:
        xs, ys = zip(*points, strict=True)
        return OrientedBox((min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2, max(xs) - min(xs), max(ys) - min(ys), 0.0)
    best = None
    for i in range(len(hull)):
        e = hull[(i + 1) % len(hull)] - hull[i]
        a = math.atan2(e[1], e[0])
        ca, sa = math.cos(a), math.sin(a)
        u = hull @ np.array([ca, sa])
        v = hull @ np.array([-sa, ca])
        area = (u.max() - u.min()) * (v.max() - v.min())
        if best is None or area < best[0]:
            cu, cv = (u.max() + u.min()) / 2, (v.max() + v.min()) / 2
            best = (area, OrientedBox(cu * ca - cv * sa, cu * sa + cv * ca, u.max() - u.min(), v.max() - v.min(), math.degrees(a)))
    assert best is not None
    return best[1]


def translate(pts: list[Point], dx: float, dy: float) -> list[Point]:
    return [(x + dx, y + dy) for x, y in pts]


def bounds(pts: list[Point]) -> tuple[float, float, float, float]:
    a = np.asarray(pts)
    return float(a[:, 0].min()), float(a[:, 1].min()), float(a[:, 0].max()), float(a[:, 1].max())


# --------------------------------------------------------------------------- rasterising


def rasterise_regions(plan: Plan) -> tuple[np.ndarray, np.ndarray]:
    """Land-cover map (uint8 codes) and region-index map (int32, 0 = background)."""
    h, w = plan.size
    lc = Image.new("L", (w, h), plan.background_lc)
    rid = Image.new("I", (w, h), 0)
    dl, dr = ImageDraw.Draw(lc), ImageDraw.Draw(rid)
    for i, reg in enumerate(plan.regions, start=1):
        dl.polygon(reg.polygon, fill=reg.lc)
        dr.polygon(reg.polygon, fill=i)
        for hole in reg.holes:
            dl.polygon(hole, fill=plan.background_lc)
            dr.polygon(hole, fill=0)
    return np.asarray(lc, np.uint8), np.asarray(rid, np.int32)


class Occupancy:
    """A coarse grid of taken cells so that objects do not overlap."""

    def __init__(self, size: tuple[int, int], cell: int = 2):
        self.cell = cell
        self.grid = np.zeros((size[0] // cell + 2, size[1] // cell + 2), bool)
        self.size = size

    def _cover(self, pts: list[Point], margin: float) -> tuple[int, int, np.ndarray] | None:
        """Cells whose centre lies within ``margin`` (+ half a cell) of the convex hull of ``pts``."""
        c = self.cell
        x0, y0, x1, y1 = bounds(pts)
        a, b = max(int((x0 - margin) // c), 0), max(int((y0 - margin) // c), 0)
        e, d = min(int((x1 + margin) // c) + 1, self.grid.shape[1]), min(int((y1 + margin) // c) + 1, self.grid.shape[0])
        if a >= e or b >= d:
            return None
        gy, gx = np.mgrid[b:d, a:e]
        if gx.size <= 9:  # tiny objects: the bounding cells are close enough
            return a, b, np.ones(gx.shape, bool)
        hull = np.asarray(convex_hull(pts), np.float64)
        if len(hull) < 3:
            return a, b, np.ones(gx.shape, bool)
        nxt = np.concatenate([hull[1:], hull[:1]])
        ex, ey = nxt[:, 0] - hull[:, 0], nxt[:, 1] - hull[:, 1]
        sign = 1.0 if np.sum(hull[:, 0] * nxt[:, 1] - nxt[:, 0] * hull[:, 1]) > 0 else -1.0
        ln = np.hypot(ex, ey) + 1e-12
        px, py = ((gx + 0.5) * c).ravel(), ((gy + 0.5) * c).ravel()
        dist = sign * (ex[:, None] * (py[None] - hull[:, 1:2]) - ey[:, None] * (px[None] - hull[:, 0:1])) / ln[:, None]
        inside = (dist >= -(margin + 0.71 * c)).all(0).reshape(gx.shape)
        return a, b, inside

    def inside(self, pts: list[Point], border: float = 1.0) -> bool:
        x0, y0, x1, y1 = bounds(pts)
        return x0 >= border and y0 >= border and x1 <= self.size[1] - border and y1 <= self.size[0] - border

    def free(self, pts: list[Point], margin: float = 0.0) -> bool:
        c = self.cell
        x0, y0, x1, y1 = bounds(pts)
        a, b = max(int((x0 - margin) // c), 0), max(int((y0 - margin) // c), 0)
        if not self.grid[b : int((y1 + margin) // c) + 1, a : int((x1 + margin) // c) + 1].any():
            return True
        cov = self._cover(pts, margin)
        if cov is None:
            return True
        a, b, m = cov
        return not (self.grid[b : b + m.shape[0], a : a + m.shape[1]] & m).any()

    def take(self, pts: list[Point], margin: float = 0.0) -> None:
        cov = self._cover(pts, margin)
        if cov is not None:
            a, b, m = cov
            self.grid[b : b + m.shape[0], a : a + m.shape[1]] |= m

    def block_mask(self, mask: np.ndarray) -> None:
        """Marks every cell that touches a True pixel of a full-size mask as taken."""
        c = self.cell
        h, w = mask.shape
        hh, ww = (h + c - 1) // c, (w + c - 1) // c
        pad = np.zeros((hh * c, ww * c), bool)
        pad[:h, :w] = mask
        self.grid[:hh, :ww] |= pad.reshape(hh, c, ww, c).any(axis=(1, 3))


def sample_lc(lc_map: np.ndarray, pts: list[Point]) -> np.ndarray:
    """Land-cover codes under a polygon's vertices and centre (cheap placement test)."""
    a = np.asarray(pts)
    allp = np.vstack([a, a.mean(0, keepdims=True)])
    xs = np.clip(allp[:, 0].astype(int), 0, lc_map.shape[1] - 1)
    ys = np.clip(allp[:, 1].astype(int), 0, lc_map.shape[0] - 1)
    return lc_map[ys, xs]


LAND = {LC["bare_soil"], LC["grassland"], LC["forest"], LC["farmland"], LC["impervious"]}
