"""Object builders: real-world sizes in metres, turned into pixel geometry by the GSD.

Sizes follow common dimensions: cars about 4.5 × 1.8 m, trucks and buses
8–16 × 2.5 m (DOTA's sample vehicles measure 2.4–3 × 4.8–5.6 m and
2.7 × 12.8 m), soccer pitches 105 × 68 m, tennis courts 23.8 × 11 m, a 400 m
track about 176 × 92 m, airliners 30–70 m long, storage tanks 10–40 m across.
"""

from __future__ import annotations

import math

import numpy as np

from geoassist.synth.palette import (
    RESIDENTIAL_ROOFS,
    ROOF_COLOURS,
    SHIP_COLOURS,
    TANK_COLOURS,
    VEHICLE_COLOURS,
)
from geoassist.synth.plan import ObjSpec, Plan, Point, Prim, ellipse, local, min_area_obox, rect
from geoassist.synth.types import OrientedBox


def _shade(c: tuple[int, int, int], k: float) -> tuple[int, int, int]:
    return tuple(int(min(255, max(0, v * k))) for v in c)  # type: ignore[return-value]


def _unit(angle_deg: float) -> tuple[float, float]:
    a = math.radians(angle_deg)
    return (math.cos(a), math.sin(a))


def building(
    plan: Plan,
    rng: np.random.Generator,
    cx: float,
    cy: float,
    length_m: float,
    width_m: float,
    angle: float,
    roof: str | None = None,
    colour: str | None = None,
    height_m: float | None = None,
    industrial: bool = False,
) -> ObjSpec:
    L, W = plan.m(length_m), plan.m(width_m)
    colour = colour or str(rng.choice(RESIDENTIAL_ROOFS))
    roof = roof or ("flat" if industrial else str(rng.choice(["gable", "gable", "hip", "flat"])))
    height_m = height_m if height_m is not None else (rng.uniform(6, 14) if industrial else rng.uniform(4, 9))
    base = ROOF_COLOURS[colour]
    outline = rect(cx, cy, L, W, angle)
    prims: list[Prim] = []
    ux, uy = _unit(angle)
    vx, vy = -uy, ux
    if roof == "flat":
        prims.append(Prim(outline, _shade(base, 0.9)))
        inset = rect(cx, cy, L - max(1.2, plan.m(0.8)), W - max(1.2, plan.m(0.8)), angle)
        prims.append(Prim(inset, base))
        for _ in range(int(rng.integers(0, 4 if industrial else 2))):  # roof units
            s = plan.m(rng.uniform(1.5, 4))
            px, py = rng.uniform(-0.35, 0.35) * L, rng.uniform(-0.3, 0.3) * W
            prims.append(Prim(local(cx, cy, angle, rect(px, py, s, s * 0.7, 0)), _shade(base, 0.75)))
    elif roof == "gable":
        half_a = local(cx, cy, angle, [(-L / 2, -W / 2), (L / 2, -W / 2), (L / 2, 0), (-L / 2, 0)])
        half_b = local(cx, cy, angle, [(-L / 2, 0), (L / 2, 0), (L / 2, W / 2), (-L / 2, W / 2)])
        prims.append(Prim(half_a, base, normal=(-vx, -vy)))
        prims.append(Prim(half_b, base, normal=(vx, vy)))
    else:  # hip
        r = min(W / 2, L / 2)
        p = [(-L / 2, -W / 2), (L / 2, -W / 2), (L / 2, W / 2), (-L / 2, W / 2)]
        ridge = [(-L / 2 + r, 0.0), (L / 2 - r, 0.0)]
        facets = [
            ([p[0], p[1], ridge[1], ridge[0]], (-vx, -vy)),
            ([p[2], p[3], ridge[0], ridge[1]], (vx, vy)),
            ([p[1], p[2], ridge[1]], (ux, uy)),
            ([p[3], p[0], ridge[0]], (-ux, -uy)),
        ]
        for poly, n in facets:
            prims.append(Prim(local(cx, cy, angle, poly), base, normal=n))
    obox = OrientedBox(cx, cy, L, W, angle)
    attrs = {
        "colour": colour,
        "roof": roof,
        "height_m": round(float(height_m), 1),
        "size_m2": round(length_m * width_m, 1),
        "orientation_deg": round(angle % 180, 1),
        "use": "industrial" if industrial else "residential",
    }
    return ObjSpec("building", outline, obox, prims, height_m=float(height_m), layer=2, attrs=attrs)


def vehicle(plan: Plan, rng: np.random.Generator, cx: float, cy: float, angle: float, large: bool = False) -> ObjSpec:
    colour = str(rng.choice(list(VEHICLE_COLOURS), p=[0.3, 0.2, 0.2, 0.12, 0.09, 0.09]))
    c = VEHICLE_COLOURS[colour]
    if large:
        length_m, width_m = rng.uniform(8, 16), rng.uniform(2.4, 2.6)
    else:
        length_m, width_m = rng.uniform(4.0, 5.0), rng.uniform(1.7, 1.95)
    L, W = plan.m(length_m), plan.m(width_m)
    outline = rect(cx, cy, L, W, angle)
    prims = [Prim(outline, c)]
    if large:
        trailer = str(rng.choice(["white", "silver", "grey"]))
        prims.append(Prim(local(cx, cy, angle, rect(-L * 0.1, 0, L * 0.78, W * 0.96, 0)), VEHICLE_COLOURS[trailer]))
        prims.append(Prim(local(cx, cy, angle, rect(L * 0.43, 0, L * 0.1, W * 0.8, 0)), _shade(c, 0.6)))
    else:
        prims.append(Prim(local(cx, cy, angle, rect(L * 0.18, 0, L * 0.16, W * 0.8, 0)), (40, 44, 50)))
        prims.append(Prim(local(cx, cy, angle, rect(-L * 0.28, 0, L * 0.1, W * 0.76, 0)), (52, 56, 62)))
    attrs = {"colour": colour, "size_m2": round(length_m * width_m, 1), "orientation_deg": round(angle % 180, 1), "length_m": round(length_m, 1)}
    return ObjSpec("large_vehicle" if large else "small_vehicle", outline, OrientedBox(cx, cy, L, W, angle), prims, height_m=3.5 if large else 1.5, layer=1, attrs=attrs)


def ship(plan: Plan, rng: np.random.Generator, cx: float, cy: float, angle: float, length_m: float | None = None) -> ObjSpec:
    length_m = length_m or float(rng.choice([rng.uniform(10, 25), rng.uniform(30, 120)], p=[0.6, 0.4]))
    beam_m = length_m / rng.uniform(4.5, 7)
    L, B = plan.m(length_m), plan.m(beam_m)
    shape = [(-L / 2, -B / 2), (L * 0.25, -B / 2), (L / 2, 0), (L * 0.25, B / 2), (-L / 2, B / 2)]
    outline = local(cx, cy, angle, shape)
    colour = str(rng.choice(list(SHIP_COLOURS)))
    c = SHIP_COLOURS[colour]
    prims = [Prim(outline, c)]
    deck = (190, 190, 186) if colour != "white" else (150, 152, 156)
    prims.append(Prim(local(cx, cy, angle, rect(-L * 0.28, 0, L * 0.22, B * 0.7, 0)), deck))
    if length_m > 40:  # cargo hatches
        for k in range(3):
            prims.append(Prim(local(cx, cy, angle, rect(L * (-0.05 + 0.12 * k), 0, L * 0.09, B * 0.6, 0)), _shade(c, 0.7)))
    attrs = {"colour": colour, "size_m2": round(0.85 * length_m * beam_m, 1), "orientation_deg": round(angle % 360, 1), "length_m": round(length_m, 1)}
    return ObjSpec("ship", outline, min_area_obox(outline), prims, height_m=3.0 + length_m / 20, layer=1, attrs=attrs)


def airplane(plan: Plan, rng: np.random.Generator, cx: float, cy: float, angle: float) -> ObjSpec:
    length_m = rng.uniform(30, 70)
    span_m = length_m * rng.uniform(0.85, 1.05)
    L, S = plan.m(length_m), plan.m(span_m)
    f = L * 0.05  # fuselage half width
    sweep = L * 0.12
    shape = [
        (L / 2, 0), (L * 0.42, -f), (L * 0.12, -f), (-L * 0.02 - sweep, -S / 2), (-L * 0.1 - sweep, -S / 2),
        (-L * 0.08, -f), (-L * 0.36, -f), (-L * 0.47, -S * 0.17), (-L * 0.5, -S * 0.17), (-L * 0.48, 0),
        (-L * 0.5, S * 0.17), (-L * 0.47, S * 0.17), (-L * 0.36, f), (-L * 0.08, f),
        (-L * 0.1 - sweep, S / 2), (-L * 0.02 - sweep, S / 2), (L * 0.12, f), (L * 0.42, f),
    ]  # fmt: skip
    outline = local(cx, cy, angle, shape)
    colour = str(rng.choice(["white", "silver"], p=[0.75, 0.25]))
    c = VEHICLE_COLOURS[colour]
    prims = [Prim(outline, c), Prim(local(cx, cy, angle, rect(L * 0.05, 0, L * 0.8, f * 1.2, 0)), _shade(c, 1.06))]
    attrs = {"colour": colour, "size_m2": round(0.3 * length_m * span_m, 1), "orientation_deg": round(angle % 360, 1), "length_m": round(length_m, 1)}
    return ObjSpec("airplane", outline, min_area_obox(outline), prims, height_m=6.0, layer=2, attrs=attrs)


def storage_tank(plan: Plan, rng: np.random.Generator, cx: float, cy: float, diameter_m: float | None = None) -> ObjSpec:
    d_m = diameter_m or rng.uniform(10, 40)
    r = plan.m(d_m) / 2
    colour = str(rng.choice(list(TANK_COLOURS)))
    c = TANK_COLOURS[colour]
    outline = ellipse(cx, cy, r, r, 0, n=32)
    prims = [Prim(outline, _shade(c, 0.92)), Prim(ellipse(cx, cy, r * 0.8, r * 0.8, 0, n=32), c, sun_shift=r * 0.1)]
    prims.append(Prim(ellipse(cx, cy, max(r * 0.08, 0.6), max(r * 0.08, 0.6), 0, n=8), _shade(c, 0.7)))
    attrs = {"colour": colour, "size_m2": round(math.pi * d_m * d_m / 4, 1), "diameter_m": round(d_m, 1), "orientation_deg": 0.0}
    return ObjSpec("storage_tank", outline, OrientedBox(cx, cy, 2 * r, 2 * r, 0.0), prims, height_m=d_m * rng.uniform(0.4, 0.9), layer=2, attrs=attrs)


def _lines(plan: Plan, cx: float, cy: float, angle: float, segs: list[tuple[float, float, float, float]]) -> list[Prim]:
    lw = max(plan.m(0.12), 0.55)
    return [Prim(local(cx, cy, angle, rect(x, y, max(w, lw), max(h, lw), 0)), (226, 228, 224)) for x, y, w, h in segs]


def soccer_field(plan: Plan, rng: np.random.Generator, cx: float, cy: float, angle: float) -> ObjSpec:
    L, W = plan.m(rng.uniform(95, 110)), plan.m(rng.uniform(64, 72))
    outline = rect(cx, cy, L, W, angle)
    grass = (int(rng.uniform(70, 95)), int(rng.uniform(112, 132)), int(rng.uniform(58, 74)))
    prims = [Prim(outline, grass)]
    # mowing stripes
    n = 10
    for k in range(0, n, 2):
        prims.append(Prim(local(cx, cy, angle, rect(-L / 2 + L * (k + 0.5) / n, 0, L / n, W, 0)), _shade(grass, 1.1)))
    segs = [(0, -W / 2, L, 0), (0, W / 2, L, 0), (-L / 2, 0, 0, W), (L / 2, 0, 0, W), (0, 0, 0, W)]
    segs += [(s * (L / 2 - plan.m(8.25)), 0, 0, plan.m(40.3)) for s in (-1, 1)]
    prims += _lines(plan, cx, cy, angle, segs)
    attrs = {"colour": "green", "size_m2": round(L * W * plan.gsd_m**2, 1), "orientation_deg": round(angle % 180, 1)}
    return ObjSpec("soccer_field", outline, OrientedBox(cx, cy, L, W, angle), prims, layer=0, attrs=attrs)


def tennis_court(plan: Plan, rng: np.random.Generator, cx: float, cy: float, angle: float) -> ObjSpec:
    L, W = plan.m(34.7), plan.m(17.1)
    surface = str(rng.choice(["green", "blue", "red clay"]))
    c = {"green": (64, 118, 84), "blue": (52, 90, 138), "red clay": (168, 92, 64)}[surface]
    outline = rect(cx, cy, L, W, angle)
    prims = [Prim(outline, _shade(c, 0.85)), Prim(local(cx, cy, angle, rect(0, 0, plan.m(23.77), plan.m(10.97), 0)), c)]
    l2, w2 = plan.m(23.77) / 2, plan.m(10.97) / 2
    prims += _lines(plan, cx, cy, angle, [(0, -w2, 2 * l2, 0), (0, w2, 2 * l2, 0), (-l2, 0, 0, 2 * w2), (l2, 0, 0, 2 * w2), (0, 0, 0, 2 * w2)])
    attrs = {"colour": surface, "size_m2": round(34.7 * 17.1, 1), "orientation_deg": round(angle % 180, 1)}
    return ObjSpec("tennis_court", outline, OrientedBox(cx, cy, L, W, angle), prims, layer=0, attrs=attrs)


def track_field(plan: Plan, rng: np.random.Generator, cx: float, cy: float, angle: float) -> ObjSpec:
    straight, r_in, lanes = plan.m(84.4), plan.m(36.5), plan.m(9.8)

    def stadium_shape(r: float) -> list[Point]:
        pts: list[Point] = []
        for side in (1, -1):
            for t in np.linspace(-np.pi / 2, np.pi / 2, 14):
                pts.append((side * (straight / 2 + r * math.cos(t)), side * r * math.sin(t)))
        return pts

    outer = local(cx, cy, angle, stadium_shape(r_in + lanes))
    track = (int(rng.uniform(150, 178)), int(rng.uniform(70, 92)), int(rng.uniform(56, 70)))
    prims = [Prim(outer, track), Prim(local(cx, cy, angle, stadium_shape(r_in)), (82, 122, 66))]
    prims += _lines(plan, cx, cy, angle, [(0, -r_in + plan.m(3), straight, 0), (0, r_in - plan.m(3), straight, 0), (0, 0, 0, 2 * r_in - plan.m(6))])
    attrs = {"colour": "red", "size_m2": round((straight * 2 * (r_in + lanes) + math.pi * (r_in + lanes) ** 2) * plan.gsd_m**2, 1), "orientation_deg": round(angle % 180, 1)}
    L, W = straight + 2 * (r_in + lanes), 2 * (r_in + lanes)
    return ObjSpec("ground_track_field", outer, OrientedBox(cx, cy, L, W, angle), prims, layer=0, attrs=attrs)


def swimming_pool(plan: Plan, rng: np.random.Generator, cx: float, cy: float, angle: float) -> ObjSpec:
    lm, wm = rng.uniform(7, 14), rng.uniform(3.5, 6)
    L, W = plan.m(lm), plan.m(wm)
    outline = rect(cx, cy, L, W, angle)
    water = (int(rng.uniform(60, 90)), int(rng.uniform(150, 175)), int(rng.uniform(170, 195)))
    prims = [Prim(outline, (214, 212, 204)), Prim(rect(cx, cy, L - max(1.0, plan.m(0.6)), W - max(1.0, plan.m(0.6)), angle), water)]
    attrs = {"colour": "blue", "size_m2": round(lm * wm, 1), "orientation_deg": round(angle % 180, 1)}
    return ObjSpec("swimming_pool", outline, OrientedBox(cx, cy, L, W, angle), prims, layer=0, attrs=attrs)


def tree(plan: Plan, rng: np.random.Generator, cx: float, cy: float, crown_m: float | None = None) -> ObjSpec:
    d_m = crown_m or rng.uniform(4, 11)
    r = plan.m(d_m) / 2
    outline = ellipse(cx, cy, r * rng.uniform(0.9, 1.1), r * rng.uniform(0.9, 1.1), rng.uniform(0, 180), n=16)
    g = rng.uniform(0.85, 1.15)
    dark = (int(44 * g), int(60 * g), int(38 * g))
    prims = [Prim(outline, dark), Prim(ellipse(cx, cy, r * 0.62, r * 0.62, 0, n=12), (int(64 * g), int(84 * g), int(50 * g)), sun_shift=r * 0.3)]
    attrs = {"colour": "green", "size_m2": round(math.pi * d_m * d_m / 4, 1), "crown_m": round(d_m, 1), "orientation_deg": 0.0}
    return ObjSpec("tree", outline, OrientedBox(cx, cy, 2 * r, 2 * r, 0.0), prims, height_m=d_m * rng.uniform(1.0, 1.8), layer=3, attrs=attrs)


def bridge(plan: Plan, rng: np.random.Generator, cx: float, cy: float, length_px: float, width_px: float, angle: float) -> ObjSpec:
    outline = rect(cx, cy, length_px, width_px, angle)
    prims = [Prim(outline, (150, 148, 144)), Prim(rect(cx, cy, length_px, width_px * 0.78, angle), (98, 98, 100))]
    length_m = length_px * plan.gsd_m
    attrs = {"colour": "grey", "size_m2": round(length_m * width_px * plan.gsd_m, 1), "orientation_deg": round(angle % 180, 1), "length_m": round(length_m, 1)}
    return ObjSpec("bridge", outline, OrientedBox(cx, cy, length_px, width_px, angle), prims, height_m=6.0, layer=2, attrs=attrs)
