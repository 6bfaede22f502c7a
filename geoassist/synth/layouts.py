"""Scene-class layouts for high-resolution scenes (RESISC45 / AID-like classes).

A class is decided by what is where — a runway with aircraft on an apron, a
coast with piers and moored ships, a road grid lined with houses — and never by
a colour of its own: every class draws its land cover from the same palette,
and season, illumination and haze change all of them alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from geoassist.synth import objects as ob
from geoassist.synth.palette import CROP_COLOURS, LC
from geoassist.synth.plan import (
    ObjSpec,
    Occupancy,
    Plan,
    Point,
    Prim,
    Region,
    blob,
    buffer_line,
    local,
    meander,
    rasterise_regions,
    rect,
    sample_lc,
)

Layout = Callable[[Plan, np.random.Generator], None]


class Ctx:
    """Placement state shared by a layout's steps."""

    def __init__(self, plan: Plan, rng: np.random.Generator):
        self.plan, self.rng = plan, rng
        self.H, self.W = plan.size
        self.occ = Occupancy(plan.size)
        self.things = Occupancy(plan.size)  # cells taken by objects only: water and roads stay open here
        self.lc: np.ndarray | None = None

    def freeze_regions(self) -> None:
        """Rasterises the regions so far; objects placed after this see them."""
        self.lc, _ = rasterise_regions(self.plan)
        for code in (LC["water"], LC["road"]):
            self.occ.block_mask(self.lc == code)

    def take(self, outline: list[Point], margin: float = 0.0) -> None:
        self.occ.take(outline, margin)
        self.things.take(outline, margin)

    def try_add(self, obj: ObjSpec, allowed: set[int] | None = None, margin: float = 1.0, ignore_occ: bool = False, afloat: bool = False) -> bool:
        """Adds ``obj`` if it is inside, free and on ``allowed`` land cover.

        :meth:`freeze_regions` blocks water for land objects; ``afloat`` objects (ships) avoid
        only other objects, and ``allowed`` keeps them on the water.
        """
        if not self.occ.inside(obj.outline, border=2):
            return False
        if not ignore_occ and not (self.things if afloat else self.occ).free(obj.outline, margin):
            return False
        probe = _densify(obj.outline, 4) if afloat else obj.outline  # a hull must not cross a pier between corners
        if allowed is not None and self.lc is not None and not set(sample_lc(self.lc, probe).tolist()) <= allowed:
            return False
        self.take(obj.outline, 0 if ignore_occ else margin * 0.5)
        self.plan.add(obj)
        return True

    def rand_pt(self, pad: float = 0.0) -> tuple[float, float]:
        return float(self.rng.uniform(pad, self.W - pad)), float(self.rng.uniform(pad, self.H - pad))


def _densify(pts: list[Point], k: int) -> list[Point]:
    """``pts`` with ``k - 1`` evenly spaced points added on every edge of the closed polygon."""
    out: list[Point] = []
    for (x0, y0), (x1, y1) in zip(pts, pts[1:] + pts[:1], strict=True):
        out += [(x0 + (x1 - x0) * i / k, y0 + (y1 - y0) * i / k) for i in range(k)]
    return out


def _across(cx: float, cy: float, angle: float, reach: float) -> list[Point]:
    ux, uy = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    return [(cx - ux * reach, cy - uy * reach), (cx + ux * reach, cy + uy * reach)]


def add_road(ctx: Ctx, pts: list[Point], width_m: float, name: str = "road", lc: int = LC["road"], markings: bool = True) -> None:
    plan = ctx.plan
    w = plan.m(width_m)
    plan.regions.append(Region(lc, buffer_line(pts, w), cls=name, attrs={"width_m": round(width_m, 1), "centerline": pts}))
    if markings and width_m >= 7 and plan.gsd_m <= 0.7:
        # dashed centre line as an unannotated ground marking
        p = np.asarray(pts)
        seg = np.linalg.norm(np.diff(p, axis=0), axis=1)
        s = np.concatenate([[0], np.cumsum(seg)])
        dash, gap = plan.m(3), plan.m(6)
        colour = (205, 200, 180) if ctx.rng.random() < 0.7 else (200, 176, 90)
        for t in np.arange(0, s[-1], dash + gap):
            x, y = np.interp(t, s, p[:, 0]), np.interp(t, s, p[:, 1])
            i = min(int(np.searchsorted(s, t, side="right")) - 1, len(seg) - 1)
            ang = math.degrees(math.atan2(p[i + 1, 1] - p[i, 1], p[i + 1, 0] - p[i, 0]))
            plan.objects.append(ObjSpec("marking", rect(x, y, dash, max(plan.m(0.15), 0.6), ang), None, [Prim(rect(x, y, dash, max(plan.m(0.15), 0.6), ang), colour)], layer=0, annotate=False))  # type: ignore[arg-type]


def cars_along(ctx: Ctx, pts: list[Point], width_m: float, density: float, large_share: float = 0.12) -> None:
    """Vehicles in both lanes of a road, heading along it."""
    plan, rng = ctx.plan, ctx.rng
    p = np.asarray(pts)
    seg = np.linalg.norm(np.diff(p, axis=0), axis=1)
    s = np.concatenate([[0], np.cumsum(seg)])
    n = rng.poisson(density * s[-1] * plan.gsd_m / 100)
    for t in rng.uniform(0, s[-1], size=n):
        px, py = np.interp(t, s, p[:, 0]), np.interp(t, s, p[:, 1])
        if not (0 <= px <= ctx.W and 0 <= py <= ctx.H):
            continue
        i = min(int(np.searchsorted(s, t, side="right")) - 1, len(seg) - 1)
        dx, dy = (p[i + 1] - p[i]) / (seg[i] + 1e-9)
        lane = 1 if rng.random() < 0.5 else -1
        off = plan.m(width_m) * 0.25 * lane
        x, y = np.interp(t, s, p[:, 0]) - dy * off, np.interp(t, s, p[:, 1]) + dx * off
        ang = math.degrees(math.atan2(dy, dx)) + (180 if lane < 0 else 0) + rng.normal(0, 2)
        ctx.try_add(ob.vehicle(plan, rng, x, y, ang, large=rng.random() < large_share), {LC["road"]}, margin=plan.m(1.0), ignore_occ=False)


def _unblock_roads(ctx: Ctx) -> None:
    ctx.occ.grid[:] = False


def parking_lot(ctx: Ctx, cx: float, cy: float, L: float, W: float, angle: float, fill: float) -> None:
    """A paved lot with painted stalls, partly filled with cars."""
    plan, rng = ctx.plan, ctx.rng
    plan.regions.append(Region(LC["impervious"], rect(cx, cy, L, W, angle), cls="parking_lot", attrs={"fill": round(fill, 2)}))
    stall_w, stall_l = plan.m(2.6), plan.m(5.2)
    aisle = plan.m(6.5)
    rows: list[float] = []
    y = -W / 2 + stall_l / 2 + plan.m(1)
    while y + stall_l / 2 < W / 2 - plan.m(1):
        rows.append(y)
        y += stall_l if len(rows) % 2 == 1 else stall_l + aisle
    return_cars: list[tuple[float, float, float]] = []
    for r_i, ry in enumerate(rows):
        x = -L / 2 + stall_w / 2 + plan.m(1)
        while x + stall_w / 2 < L / 2 - plan.m(1):
            line = local(cx, cy, angle, rect(x - stall_w / 2, ry, max(plan.m(0.12), 0.6), stall_l * 0.9, 0))
            plan.objects.append(ObjSpec("marking", line, None, [Prim(line, (212, 212, 206))], layer=0, annotate=False))  # type: ignore[arg-type]
            if rng.random() < fill:
                gx, gy = local(cx, cy, angle, [(x, ry)])[0]
                return_cars.append((gx, gy, angle + 90 + (180 if (r_i % 2 or rng.random() < 0.3) else 0) + rng.normal(0, 3)))
            x += stall_w
    ctx.pending_cars = getattr(ctx, "pending_cars", []) + return_cars  # placed after freeze


def place_pending_cars(ctx: Ctx) -> None:
    for x, y, ang in getattr(ctx, "pending_cars", []):
        ctx.try_add(ob.vehicle(ctx.plan, ctx.rng, x, y, ang, large=ctx.rng.random() < 0.05), {LC["impervious"]}, margin=0.3)
    ctx.pending_cars = []


def houses_along(ctx: Ctx, pts: list[Point], road_w_m: float, spacing_m: tuple[float, float], setback_m: tuple[float, float], pools: float = 0.0, trees: float = 0.0, industrial: bool = False) -> None:
    """Buildings facing a road on both sides, with optional pools and trees behind them."""
    plan, rng = ctx.plan, ctx.rng
    p = np.asarray(pts)
    seg = np.linalg.norm(np.diff(p, axis=0), axis=1)
    s = np.concatenate([[0], np.cumsum(seg)])
    pad = plan.m(60 if industrial else 25)
    for side in (1, -1):
        t = rng.uniform(0, plan.m(10))
        while t < s[-1]:
            i = min(int(np.searchsorted(s, t, side="right")) - 1, len(seg) - 1)
            dx, dy = (p[i + 1] - p[i]) / (seg[i] + 1e-9)
            px, py = np.interp(t, s, p[:, 0]), np.interp(t, s, p[:, 1])
            if not (-pad <= px <= ctx.W + pad and -pad <= py <= ctx.H + pad):
                t += plan.m(12)
                continue
            if industrial:
                lm, wm = rng.uniform(30, 90), rng.uniform(20, 50)
            else:
                lm, wm = rng.uniform(9, 18), rng.uniform(7, 12)
            back = plan.m(road_w_m / 2 + rng.uniform(*setback_m)) + plan.m(wm) / 2
            x, y = np.interp(t, s, p[:, 0]) - dy * back * side, np.interp(t, s, p[:, 1]) + dx * back * side
            ang = math.degrees(math.atan2(dy, dx)) + rng.normal(0, 1.5)
            b = ob.building(plan, rng, x, y, lm, wm, ang, industrial=industrial)
            ok = ctx.try_add(b, {LC["grassland"], LC["bare_soil"], LC["impervious"]}, margin=plan.m(1.5))
            if ok and not industrial:
                behind = plan.m(wm / 2 + rng.uniform(5, 9))
                bx, by = x - dy * behind * side, y + dx * behind * side
                if rng.random() < pools:
                    ctx.try_add(ob.swimming_pool(plan, rng, bx, by, ang), {LC["grassland"], LC["bare_soil"]}, margin=plan.m(1))
                elif rng.random() < trees:
                    ctx.try_add(ob.tree(plan, rng, bx + rng.normal(0, 3), by + rng.normal(0, 3)), {LC["grassland"], LC["bare_soil"]}, margin=0)
            t += plan.m(lm + rng.uniform(*spacing_m))


def scatter(ctx: Ctx, make: Callable[[float, float], ObjSpec], n: int, allowed: set[int], margin: float = 1.0, pad: float = 0, afloat: bool = False) -> int:
    placed = 0
    for _ in range(n * 4):
        if placed >= n:
            break
        x, y = ctx.rand_pt(pad)
        placed += ctx.try_add(make(x, y), allowed, margin=margin, afloat=afloat)
    return placed


def farmland_parcels(ctx: Ctx, x0: float, y0: float, x1: float, y1: float, angle: float) -> None:
    """A grid of field parcels with their own crop and row direction."""
    plan, rng = ctx.plan, ctx.rng
    size_m = rng.uniform(60, 180)
    step = plan.m(size_m)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    reach = math.hypot(x1 - x0, y1 - y0) / 2 + step
    u = -reach
    while u < reach:
        du = step * rng.uniform(0.5, 1.5)
        v = -reach
        while v < reach:
            dv = step * rng.uniform(0.6, 1.6)
            poly = local(cx, cy, angle, rect(u + du / 2, v + dv / 2, du - plan.m(2.5), dv - plan.m(2.5), 0))
            crop = str(rng.choice(list(CROP_COLOURS)))
            row_angle = angle + (0 if rng.random() < 0.5 else 90) + rng.normal(0, 2)
            plan.regions.append(Region(LC["farmland"], poly, cls="farmland", attrs={"crop": crop, "row_angle": row_angle, "row_period_px": max(plan.m(rng.uniform(0.75, 3.0)), 2.2)}))
            v += dv
        u += du


# --------------------------------------------------------------------------- classes


def residential(plan: Plan, rng: np.random.Generator, dense: bool) -> None:
    ctx = Ctx(plan, rng)
    H, W = plan.size
    ang = rng.uniform(0, 180)
    block = rng.uniform(55, 80) if dense else rng.uniform(80, 130)
    roads: list[list[Point]] = []
    reach = math.hypot(H, W)
    cx, cy = ctx.rand_pt()
    for d_ang in (0, 90):
        step = plan.m(block * (1 if d_ang == 0 else rng.uniform(1.2, 1.8)))
        k0 = -int(reach / step) - 1
        for k in range(k0, -k0 + 1):
            ox = cx + k * step * -math.sin(math.radians(ang + d_ang))
            oy = cy + k * step * math.cos(math.radians(ang + d_ang))
            pts = _across(ox, oy, ang + d_ang, reach)
            if dense or rng.random() < 0.8:
                roads.append(pts)
    widths = [rng.uniform(6, 9) for _ in roads]
    if not dense and rng.random() < 0.5:  # sparse areas mix lawns with a few woods
        for _ in range(int(rng.integers(1, 3))):
            x, y = ctx.rand_pt()
            plan.regions.append(Region(LC["forest"], blob(rng, x, y, plan.m(rng.uniform(25, 50))), cls="forest"))
    for pts, w in zip(roads, widths, strict=True):
        add_road(ctx, pts, w)
    ctx.freeze_regions()
    for pts, w in zip(roads, widths, strict=True):
        houses_along(ctx, pts, w, spacing_m=(1.5, 5) if dense else (8, 25), setback_m=(2, 6) if dense else (6, 14), pools=0.08 if dense else 0.3, trees=0.3 if dense else 0.6)
    _unblock_roads(ctx)
    for pts, w in zip(roads, widths, strict=True):
        cars_along(ctx, pts, w, density=3.0 if dense else 1.2)
    scatter(ctx, lambda x, y: ob.tree(plan, rng, x, y), int(rng.integers(5, 25 if dense else 50)), {LC["grassland"], LC["bare_soil"]}, margin=0)


def industrial(plan: Plan, rng: np.random.Generator) -> None:
    ctx = Ctx(plan, rng)
    H, W = plan.size
    ang = rng.uniform(0, 180)
    reach = math.hypot(H, W)
    cx, cy = ctx.rand_pt(0.3 * W)
    main = _across(cx, cy, ang, reach)
    side = _across(cx + rng.normal(0, 0.2 * W), cy + rng.normal(0, 0.2 * H), ang + 90, reach)
    plan.regions.append(Region(LC["impervious"], rect(cx, cy, W * 1.6, H * rng.uniform(0.5, 1.6), ang), cls=None))
    add_road(ctx, main, 10)
    add_road(ctx, side, 8)
    if rng.random() < 0.6:
        parking_lot(ctx, *ctx.rand_pt(0.25 * W), plan.m(rng.uniform(40, 80)), plan.m(rng.uniform(25, 45)), ang, rng.uniform(0.3, 0.8))
    ctx.freeze_regions()
    place_pending_cars(ctx)
    houses_along(ctx, main, 10, spacing_m=(6, 20), setback_m=(6, 20), industrial=True)
    houses_along(ctx, side, 8, spacing_m=(6, 20), setback_m=(6, 20), industrial=True)
    n_tanks = int(rng.integers(0, 10))
    d = rng.uniform(12, 30)
    scatter(ctx, lambda x, y: ob.storage_tank(plan, rng, x, y, d * rng.uniform(0.9, 1.1)), n_tanks, {LC["impervious"], LC["bare_soil"], LC["grassland"]}, margin=plan.m(3))
    scatter(ctx, lambda x, y: ob.vehicle(plan, rng, x, y, ang + rng.choice([0, 90, 180]), large=True), int(rng.integers(2, 14)), {LC["impervious"]}, margin=plan.m(1))
    _unblock_roads(ctx)
    cars_along(ctx, main, 10, density=1.5, large_share=0.4)


def farmland(plan: Plan, rng: np.random.Generator) -> None:
    ctx = Ctx(plan, rng)
    H, W = plan.size
    ang = rng.uniform(0, 180)
    farmland_parcels(ctx, 0, 0, W, H, ang)
    if rng.random() < 0.6:
        pts = meander(rng, *_across(*ctx.rand_pt(0.2 * W), ang + rng.choice([0, 90]), math.hypot(H, W)), amp=plan.m(10))
        add_road(ctx, pts, rng.uniform(4, 6), markings=False, lc=LC["bare_soil"] if rng.random() < 0.5 else LC["road"])
    ctx.freeze_regions()
    if rng.random() < 0.3:
        scatter(ctx, lambda x, y: ob.building(plan, rng, x, y, rng.uniform(12, 35), rng.uniform(8, 15), ang, colour=str(rng.choice(["grey", "red", "beige"]))), int(rng.integers(1, 4)), None, margin=plan.m(3))  # type: ignore[arg-type]
    scatter(ctx, lambda x, y: ob.tree(plan, rng, x, y), int(rng.integers(0, 12)), {LC["farmland"], LC["grassland"]}, margin=0)


def forest(plan: Plan, rng: np.random.Generator) -> None:
    ctx = Ctx(plan, rng)
    H, W = plan.size
    plan.regions.append(Region(LC["forest"], rect(W / 2, H / 2, W * 1.5, H * 1.5, 0), cls="forest"))
    for _ in range(int(rng.integers(0, 3))):
        x, y = ctx.rand_pt()
        plan.regions.append(Region(int(rng.choice([LC["grassland"], LC["bare_soil"]])), blob(rng, x, y, plan.m(rng.uniform(15, 40))), cls=None))
    if rng.random() < 0.5:
        pts = meander(rng, *_across(*ctx.rand_pt(0.2 * W), rng.uniform(0, 180), math.hypot(H, W)), amp=plan.m(20))
        add_road(ctx, pts, rng.uniform(3.5, 5), markings=False, lc=LC["bare_soil"])
    ctx.freeze_regions()
    scatter(ctx, lambda x, y: ob.tree(plan, rng, x, y, rng.uniform(6, 12)), int(rng.integers(0, 15)), {LC["grassland"], LC["bare_soil"]}, margin=0)


def river(plan: Plan, rng: np.random.Generator) -> None:
    ctx = Ctx(plan, rng)
    H, W = plan.size
    ang = rng.uniform(0, 180)
    if rng.random() < 0.5:
        farmland_parcels(ctx, 0, 0, W, H, rng.uniform(0, 180))
    for _ in range(int(rng.integers(1, 4))):
        x, y = ctx.rand_pt()
        plan.regions.append(Region(LC["forest"], blob(rng, x, y, plan.m(rng.uniform(30, 70))), cls="forest"))
    cx, cy = ctx.rand_pt(0.35 * W)
    river_w = min(rng.uniform(25, 70), 0.3 * W * plan.gsd_m)
    pts = meander(rng, *_across(cx, cy, ang, math.hypot(H, W)), amp=plan.m(rng.uniform(20, 60)))
    bank = buffer_line(pts, plan.m(river_w) + plan.m(rng.uniform(6, 16)))
    plan.regions.append(Region(LC["grassland"], bank, cls=None))
    plan.regions.append(Region(LC["water"], buffer_line(pts, plan.m(river_w)), cls="water_area", attrs={"water": "river", "width_m": round(river_w, 1)}))
    crossing = None
    if rng.random() < 0.6:
        t = len(pts) // 2
        (x0, y0), (x1, y1) = pts[t - 1], pts[t + 1]
        rang = math.degrees(math.atan2(y1 - y0, x1 - x0)) + 90 + rng.normal(0, 8)
        crossing = (pts[t], rang)
        add_road(ctx, _across(*pts[t], rang, math.hypot(H, W)), rng.uniform(7, 10))
    ctx.freeze_regions()
    if crossing:
        (bx, by), rang = crossing
        width = plan.regions[-1].attrs["width_m"]
        plan.add(ob.bridge(plan, rng, bx, by, plan.m(river_w) * 1.25 + plan.m(10), plan.m(width + 2), rang))
        ctx.take(plan.objects[-1].outline)
        _unblock_roads(ctx)
        cars_along(ctx, plan.regions[-1].attrs["centerline"], width, density=1.0)
    scatter(ctx, lambda x, y: ob.ship(plan, rng, x, y, ang + rng.normal(0, 10) + rng.choice([0, 180]), rng.uniform(8, min(30, river_w * 0.8))), int(rng.integers(0, 4)), {LC["water"]}, margin=plan.m(4), afloat=True)
    scatter(ctx, lambda x, y: ob.tree(plan, rng, x, y), int(rng.integers(5, 30)), {LC["grassland"]}, margin=0)


def lake(plan: Plan, rng: np.random.Generator) -> None:
    ctx = Ctx(plan, rng)
    H, W = plan.size
    for _ in range(int(rng.integers(0, 3))):
        x, y = ctx.rand_pt()
        plan.regions.append(Region(LC["forest"], blob(rng, x, y, plan.m(rng.uniform(30, 80))), cls="forest"))
    x, y = W / 2 + rng.normal(0, W * 0.1), H / 2 + rng.normal(0, H * 0.1)
    r = min(H, W) * rng.uniform(0.22, 0.36)
    shore = blob(rng, x, y, r * 1.08, 0.3)
    plan.regions.append(Region(LC["bare_soil"] if rng.random() < 0.4 else LC["grassland"], shore))
    plan.regions.append(Region(LC["water"], blob(rng, x, y, r, 0.3), cls="water_area", attrs={"water": "lake"}))
    if rng.random() < 0.4:
        add_road(ctx, meander(rng, *_across(*ctx.rand_pt(), rng.uniform(0, 180), math.hypot(H, W)), amp=plan.m(30)), 6)
    ctx.freeze_regions()
    scatter(ctx, lambda x, y: ob.ship(plan, rng, x, y, rng.uniform(0, 360), rng.uniform(5, 14)), int(rng.integers(0, 4)), {LC["water"]}, margin=plan.m(5), afloat=True)
    scatter(ctx, lambda x, y: ob.tree(plan, rng, x, y), int(rng.integers(5, 40)), {LC["grassland"], LC["bare_soil"]}, margin=0)
    if rng.random() < 0.4:
        scatter(ctx, lambda x, y: ob.building(plan, rng, x, y, rng.uniform(8, 15), rng.uniform(7, 10), rng.uniform(0, 180)), int(rng.integers(1, 6)), {LC["grassland"], LC["bare_soil"]}, margin=plan.m(4))


def harbour(plan: Plan, rng: np.random.Generator) -> None:
    ctx = Ctx(plan, rng)
    H, W = plan.size
    ang = rng.uniform(0, 360)
    ux, uy = math.cos(math.radians(ang)), math.sin(math.radians(ang))
    cx, cy = W / 2 + ux * W * rng.uniform(-0.1, 0.15), H / 2 + uy * H * rng.uniform(-0.1, 0.15)
    reach = math.hypot(H, W)
    sea = [(cx - uy * reach, cy + ux * reach), (cx + uy * reach, cy - ux * reach)]
    sea += [(sea[1][0] + ux * reach, sea[1][1] + uy * reach), (sea[0][0] + ux * reach, sea[0][1] + uy * reach)]
    plan.regions.append(Region(LC["impervious"], rect(W / 2, H / 2, 2 * W, 2 * H, 0)))
    plan.regions.append(Region(LC["water"], sea, cls="water_area", attrs={"water": "sea"}))
    piers: list[tuple[float, float, float, float]] = []
    n_piers = int(rng.integers(1, 5))
    coast_dir = (-uy, ux)
    for k in range(n_piers):
        off = (k - (n_piers - 1) / 2) * plan.m(rng.uniform(50, 90))
        length, width = plan.m(rng.uniform(60, 160)), plan.m(rng.uniform(12, 25))
        px, py = cx + coast_dir[0] * off + ux * length / 2, cy + coast_dir[1] * off + uy * length / 2
        plan.regions.append(Region(LC["impervious"], rect(px, py, length, width, ang), cls="pier"))
        piers.append((px, py, length, width))
    add_road(ctx, _across(cx - ux * plan.m(40), cy - uy * plan.m(40), ang + 90, reach), 9)
    ctx.freeze_regions()
    for px, py, length, width in piers:  # moored ships along both sides of each pier
        for side in (1, -1):
            t = -length / 2 + plan.m(5)
            while t < length / 2:
                sl = rng.uniform(20, 90)
                beam = plan.m(sl / 5.5)
                gap = width / 2 + beam / 2 + plan.m(2)
                sx = px + ux * (t + plan.m(sl) / 2) + coast_dir[0] * gap * side
                sy = py + uy * (t + plan.m(sl) / 2) + coast_dir[1] * gap * side
                if rng.random() < 0.7:
                    ctx.try_add(ob.ship(plan, rng, sx, sy, ang + (180 if rng.random() < 0.5 else 0), sl), {LC["water"]}, margin=plan.m(1), afloat=True)
                t += plan.m(sl) + plan.m(rng.uniform(5, 20))
    if not any(o.cls == "ship" for o in plan.objects):  # a small view shows little pier: moor at the quay
        for _ in range(48):
            sl = rng.uniform(12, 45)
            off = plan.m(sl / 4.5) / 2 + plan.m(2)  # half the widest beam off the quay wall
            t = rng.uniform(-0.5, 0.5) * min(H, W)
            sx, sy = cx + coast_dir[0] * t + ux * off, cy + coast_dir[1] * t + uy * off
            if ctx.try_add(ob.ship(plan, rng, sx, sy, ang + 90 + (180 if rng.random() < 0.5 else 0), sl), {LC["water"]}, margin=plan.m(1), afloat=True):
                break
    scatter(ctx, lambda x, y: ob.ship(plan, rng, x, y, rng.uniform(0, 360)), int(rng.integers(0, 5)), {LC["water"]}, margin=plan.m(10), afloat=True)
    scatter(ctx, lambda x, y: ob.storage_tank(plan, rng, x, y), int(rng.integers(0, 6)), {LC["impervious"]}, margin=plan.m(3))
    scatter(ctx, lambda x, y: ob.building(plan, rng, x, y, rng.uniform(25, 70), rng.uniform(15, 35), ang + 90, industrial=True), int(rng.integers(2, 8)), {LC["impervious"]}, margin=plan.m(4))
    scatter(ctx, lambda x, y: ob.vehicle(plan, rng, x, y, ang + rng.choice([0, 90]), large=rng.random() < 0.6), int(rng.integers(2, 15)), {LC["impervious"]}, margin=plan.m(1))


def airport(plan: Plan, rng: np.random.Generator) -> None:
    ctx = Ctx(plan, rng)
    H, W = plan.size
    ang = rng.uniform(0, 180)
    ux, uy = math.cos(math.radians(ang)), math.sin(math.radians(ang))
    nx, ny = -uy, ux
    reach = math.hypot(H, W)
    ax, ay = ctx.rand_pt(0.35 * W)  # the apron is always in view; the runway may not be
    rw = plan.m(45)
    tx, ty = ax - nx * plan.m(115), ay - ny * plan.m(115)
    cx, cy = tx - nx * plan.m(110), ty - ny * plan.m(110)
    plan.regions.append(Region(LC["road"], rect(cx, cy, 2 * reach, rw, ang), cls="runway"))
    plan.regions.append(Region(LC["road"], rect(tx, ty, 2 * reach, plan.m(23), ang), cls="taxiway"))
    plan.regions.append(Region(LC["impervious"], rect(ax, ay, 2 * reach, plan.m(180), ang), cls="apron"))
    for t in np.arange(-reach, reach, plan.m(60)):  # runway centre-line dashes and edge lines
        p = rect(cx + ux * t, cy + uy * t, plan.m(30), max(plan.m(0.9), 0.8), ang)
        plan.objects.append(ObjSpec("marking", p, None, [Prim(p, (220, 220, 214))], layer=0, annotate=False))  # type: ignore[arg-type]
    for s in (-1, 1):
        p = rect(cx + nx * s * (rw / 2 - plan.m(1.5)), cy + ny * s * (rw / 2 - plan.m(1.5)), 2 * reach, max(plan.m(0.9), 0.8), ang)
        plan.objects.append(ObjSpec("marking", p, None, [Prim(p, (214, 214, 208))], layer=0, annotate=False))  # type: ignore[arg-type]
    ctx.freeze_regions()
    ctx.occ.grid[:] = False
    t = -W
    for _ in range(int(2 * W / plan.m(55))):  # aircraft parked in a row on the apron
        px, py = ax + ux * t, ay + uy * t
        if rng.random() < 0.75:
            ctx.try_add(ob.airplane(plan, rng, px, py, ang + 90 + rng.choice([0, 180]) + rng.normal(0, 3)), {LC["impervious"]}, margin=plan.m(4))
        t += plan.m(rng.uniform(55, 85))
    if rng.random() < 0.5:
        ctx.try_add(ob.airplane(plan, rng, cx + ux * rng.uniform(-W / 3, W / 3), cy + uy * rng.uniform(-W / 3, W / 3), ang + rng.choice([0, 180])), {LC["road"]}, margin=plan.m(2))
    scatter(ctx, lambda x, y: ob.vehicle(plan, rng, x, y, rng.uniform(0, 360), large=rng.random() < 0.3), int(rng.integers(0, 10)), {LC["impervious"]}, margin=plan.m(2))
    bx, by = ax + nx * plan.m(115), ay + ny * plan.m(115)
    ctx.try_add(ob.building(plan, rng, bx, by, rng.uniform(120, 260), rng.uniform(30, 50), ang, industrial=True), None, margin=0)


def parking(plan: Plan, rng: np.random.Generator) -> None:
    ctx = Ctx(plan, rng)
    H, W = plan.size
    ang = rng.uniform(0, 180)
    L = W * rng.uniform(0.6, 0.95)
    parking_lot(ctx, W / 2 + rng.normal(0, W * 0.05), H / 2 + rng.normal(0, H * 0.05), L, H * rng.uniform(0.5, 0.85), ang, rng.uniform(0.3, 0.95))
    add_road(ctx, _across(*ctx.rand_pt(), ang, math.hypot(H, W)), 8)
    ctx.freeze_regions()
    place_pending_cars(ctx)
    scatter(ctx, lambda x, y: ob.building(plan, rng, x, y, rng.uniform(30, 80), rng.uniform(20, 40), ang, industrial=True), int(rng.integers(0, 3)), {LC["grassland"], LC["bare_soil"], LC["impervious"]}, margin=plan.m(3))
    scatter(ctx, lambda x, y: ob.tree(plan, rng, x, y), int(rng.integers(3, 25)), {LC["grassland"], LC["bare_soil"]}, margin=0)


def stadium(plan: Plan, rng: np.random.Generator) -> None:
    ctx = Ctx(plan, rng)
    H, W = plan.size
    ang = rng.uniform(0, 180)
    cx, cy = W / 2 + rng.normal(0, W * 0.06), H / 2 + rng.normal(0, H * 0.06)
    plan.regions.append(Region(LC["impervious"], rect(cx, cy, plan.m(rng.uniform(230, 300)), plan.m(rng.uniform(150, 210)), ang), cls=None))
    roads = [_across(cx + rng.normal(0, 3) + math.sin(math.radians(ang)) * plan.m(130), cy - math.cos(math.radians(ang)) * plan.m(130), ang, math.hypot(H, W))]
    add_road(ctx, roads[0], 9)
    ctx.freeze_regions()
    ctx.occ.grid[:] = False
    if rng.random() < 0.5:
        ctx.try_add(ob.track_field(plan, rng, cx, cy, ang), None, margin=0)
        inner = ob.soccer_field(plan, rng, cx, cy, ang)
        inner.outline = rect(cx, cy, plan.m(84), plan.m(60), ang)
        inner.prims = [Prim(inner.outline, inner.prims[0].fill)] + [Prim(p.polygon, p.fill) for p in inner.prims[-7:-2]]
        plan.add(inner)
    else:
        ctx.try_add(ob.soccer_field(plan, rng, cx, cy, ang), None, margin=0)
    for _ in range(int(rng.integers(2, 8))):
        ctx.try_add(ob.tennis_court(plan, rng, *ctx.rand_pt(plan.m(20)), ang), {LC["grassland"], LC["impervious"], LC["bare_soil"]}, margin=plan.m(2))
    _unblock_roads(ctx)
    cars_along(ctx, roads[0], 9, density=2.0)
    scatter(ctx, lambda x, y: ob.tree(plan, rng, x, y), int(rng.integers(3, 20)), {LC["grassland"]}, margin=0)
    scatter(ctx, lambda x, y: ob.vehicle(plan, rng, x, y, ang + rng.choice([0, 90]), large=False), int(rng.integers(0, 20)), {LC["impervious"]}, margin=plan.m(1.0))


def bare_land(plan: Plan, rng: np.random.Generator) -> None:
    ctx = Ctx(plan, rng)
    H, W = plan.size
    for _ in range(int(rng.integers(0, 3))):
        x, y = ctx.rand_pt()
        plan.regions.append(Region(LC["grassland"], blob(rng, x, y, plan.m(rng.uniform(10, 40))), cls=None))
    for _ in range(int(rng.integers(0, 3))):
        pts = meander(rng, *_across(*ctx.rand_pt(), rng.uniform(0, 180), math.hypot(H, W)), amp=plan.m(30))
        add_road(ctx, pts, rng.uniform(3, 5), markings=False, lc=LC["bare_soil"])
    ctx.freeze_regions()
    scatter(ctx, lambda x, y: ob.vehicle(plan, rng, x, y, rng.uniform(0, 360), large=rng.random() < 0.5), int(rng.integers(0, 4)), {LC["bare_soil"]}, margin=plan.m(2))
    scatter(ctx, lambda x, y: ob.tree(plan, rng, x, y, rng.uniform(2, 5)), int(rng.integers(0, 10)), {LC["bare_soil"], LC["grassland"]}, margin=0)


def meadow(plan: Plan, rng: np.random.Generator) -> None:
    ctx = Ctx(plan, rng)
    H, W = plan.size
    for _ in range(int(rng.integers(0, 4))):
        x, y = ctx.rand_pt()
        plan.regions.append(Region(LC["bare_soil"], blob(rng, x, y, plan.m(rng.uniform(5, 15))), cls=None))
    if rng.random() < 0.4:
        add_road(ctx, meander(rng, *_across(*ctx.rand_pt(), rng.uniform(0, 180), math.hypot(H, W)), amp=plan.m(30)), 3, markings=False, lc=LC["bare_soil"])
    ctx.freeze_regions()
    scatter(ctx, lambda x, y: ob.tree(plan, rng, x, y), int(rng.integers(0, 25)), {LC["grassland"]}, margin=0)


def _dense(plan: Plan, rng: np.random.Generator) -> None:
    residential(plan, rng, dense=True)


def _sparse(plan: Plan, rng: np.random.Generator) -> None:
    residential(plan, rng, dense=False)


# name -> (layout, GSD range in m, rural/urban, background land-cover choices)
SCENE_CLASSES: dict[str, tuple[Layout, tuple[float, float], str, tuple[str, ...]]] = {
    "airport": (airport, (0.6, 1.0), "urban", ("grassland", "bare_soil")),
    "harbour": (harbour, (0.5, 1.0), "urban", ("impervious",)),
    "dense_residential": (_dense, (0.3, 0.7), "urban", ("grassland", "bare_soil", "impervious")),
    "sparse_residential": (_sparse, (0.3, 0.8), "rural", ("grassland", "grassland", "bare_soil")),
    "industrial": (industrial, (0.4, 1.0), "urban", ("bare_soil", "grassland", "impervious")),
    "farmland": (farmland, (0.5, 1.0), "rural", ("grassland", "bare_soil")),
    "forest": (forest, (0.3, 1.0), "rural", ("forest",)),
    "river": (river, (0.5, 1.0), "rural", ("grassland", "farmland", "forest")),
    "lake": (lake, (0.5, 1.0), "rural", ("grassland", "forest", "bare_soil")),
    "parking_lot": (parking, (0.3, 0.6), "urban", ("grassland", "bare_soil")),
    "stadium": (stadium, (0.6, 1.0), "urban", ("grassland", "impervious", "bare_soil")),
    "bare_land": (bare_land, (0.3, 1.0), "rural", ("bare_soil",)),
    "meadow": (meadow, (0.3, 1.0), "rural", ("grassland",)),
}


def build_plan(scene_class: str, size: tuple[int, int], rng: np.random.Generator, gsd_m: float | None = None, seed: int = 0) -> Plan:
    layout, (g0, g1), rural_urban, backgrounds = SCENE_CLASSES[scene_class]
    gsd = float(gsd_m) if gsd_m is not None else float(round(rng.uniform(g0, g1), 3))
    plan = Plan(size=size, gsd_m=gsd, scene_class=scene_class, rural_urban=rural_urban, background_lc=LC[str(rng.choice(backgrounds))], seed=seed)
    layout(plan, rng)
    return plan
