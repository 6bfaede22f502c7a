"""Turns a :class:`Plan` into pixels: textured land cover, shadows, objects, atmosphere, sensor.

What belongs to the *place* (texture, layout) comes from the plan's seed; what
belongs to the *acquisition* (sun, season, haze, clouds, noise, off-nadir lean,
misregistration) comes from a :class:`Look`, so that two dates of one place
differ only where something really changed plus these nuisances.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from geoassist.synth.noise import crowns as noise_crowns
from geoassist.synth.noise import noise
from geoassist.synth.palette import (
    CROP_COLOURS,
    HR_TEXTURE,
    LANDCOVER,
    LC,
    SEASONS,
    hr_landcover_colours,
)
from geoassist.synth.plan import ObjSpec, Plan, Point, convex_hull, rasterise_regions, translate

# NIR reflectance as 8-bit DN per land cover (vegetation bright, water dark).
_NIR_LC = np.array([120, 190, 170, 200, 18, 95, 70], np.float32)
_NIR_OBJECT = {"tree": 175, "soccer_field": 185, "swimming_pool": 20, "ship": 110}


@dataclass
class Look:
    """Acquisition conditions of one image."""

    seed: int
    sun_azimuth_deg: float
    sun_elevation_deg: float
    season: str
    gain: float
    cast: tuple[float, float, float]
    haze: float
    cloud: float  # 0 = none; otherwise the fraction-ish of cloud cover
    noise_dn: float
    lean: tuple[float, float]  # off-nadir displacement per metre of height, in px/m
    shift_px: tuple[int, int] = (0, 0)  # misregistration (dx, dy)


def sample_look(rng: np.random.Generator, season: str | None = None) -> Look:
    return Look(
        seed=int(rng.integers(2**31)),
        sun_azimuth_deg=float(rng.uniform(90, 270)),  # northern-hemisphere daytime: sun from the south half
        sun_elevation_deg=float(rng.uniform(25, 70)),
        season=season or str(rng.choice(SEASONS, p=[0.25, 0.4, 0.2, 0.15])),
        gain=float(rng.uniform(0.75, 1.22)),
        cast=tuple(float(v) for v in rng.normal(1.0, 0.035, 3)),  # type: ignore[arg-type]
        haze=float(rng.uniform(0, 0.2)) if rng.random() < 0.55 else 0.0,
        cloud=float(rng.uniform(0.05, 0.25)) if rng.random() < 0.06 else 0.0,
        noise_dn=float(rng.uniform(1.5, 4.0)),
        lean=tuple(float(v) for v in rng.normal(0, 0.05, 2)),  # type: ignore[arg-type]
    )


@dataclass
class Rendered:
    image: np.ndarray  # H×W×C uint8
    landcover: np.ndarray  # H×W uint8 land-cover codes
    region_index: np.ndarray  # H×W int32 (index into plan.regions, +1)
    instance: np.ndarray  # H×W int32 (index into plan.objects, +1; markings excluded)
    outlines: dict[int, list[Point]]  # visible outline per object index


_GRID: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    if (h, w) not in _GRID:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        _GRID.clear()
        _GRID[(h, w)] = (yy, xx)
    return _GRID[(h, w)]


def _sun_vectors(plan: Plan, look: Look) -> tuple[tuple[float, float], tuple[float, float]]:
    """(unit vector towards the sun in the image frame, shadow displacement in px per metre of height)."""
    az = math.radians(look.sun_azimuth_deg)
    to_sun = (math.sin(az), -math.cos(az))  # north is up
    k = 1.0 / math.tan(math.radians(look.sun_elevation_deg)) / plan.gsd_m
    return to_sun, (-to_sun[0] * k, -to_sun[1] * k)


def visible_outline(plan: Plan, obj: ObjSpec, look: Look) -> list[Point]:
    """The outline as seen: tall objects lean away from nadir and show a wall."""
    if obj.cls == "building" and obj.height_m > 0:
        dx, dy = look.lean[0] * obj.height_m / plan.gsd_m, look.lean[1] * obj.height_m / plan.gsd_m
        if abs(dx) + abs(dy) > 0.3:
            return convex_hull(obj.outline + translate(obj.outline, dx, dy))
    return obj.outline


def _ground(plan: Plan, look: Look, lc: np.ndarray, rid: np.ndarray) -> np.ndarray:
    h, w = plan.size
    place = np.random.default_rng(plan.seed * 7 + 3)
    cols = hr_landcover_colours(look.season, np.random.default_rng(look.seed))
    img = cols[lc]  # H×W×3 float32
    # Farmland parcels: each its crop colour and row texture.
    n = len(plan.regions) + 1
    crop = np.zeros((n, 3), np.float32)
    has = np.zeros(n, bool)
    ca, sa, per = np.zeros(n, np.float32), np.zeros(n, np.float32), np.ones(n, np.float32)
    season_k = {"spring": (1.0, 1.05, 0.95), "summer": (1, 1, 1), "autumn": (1.12, 1.04, 0.95), "winter": (1.1, 1.0, 1.0)}[look.season]
    for i, reg in enumerate(plan.regions, start=1):
        if "crop" in reg.attrs:
            has[i] = True
            crop[i] = np.array(CROP_COLOURS[reg.attrs["crop"]], np.float32) * season_k
            a = math.radians(reg.attrs["row_angle"])
            ca[i], sa[i], per[i] = math.cos(a), math.sin(a), reg.attrs["row_period_px"]
    if has.any():
        m = has[rid]
        if m.any():
            yy, xx = _grid(h, w)
            r = rid[m]
            phase = (xx[m] * ca[r] + yy[m] * sa[r]) * (2 * np.pi / per[r])
            img[m] = crop[r] * (1.0 + 0.07 * np.sin(phase))[:, None]
    # Woodland: a canopy height field, lit on the sun side, dark in the gaps between crowns.
    veg = (lc == LC["forest"]) | (lc == LC["grassland"])
    if veg.any():
        to_sun, _ = _sun_vectors(plan, look)
        can = noise_crowns(place, (h, w), 3.5 / plan.gsd_m)
        gy, gx = np.gradient(can)
        lit = np.clip(1.0 + 2.2 * (gx * to_sun[0] + gy * to_sun[1]) * (plan.gsd_m ** 0.3), 0.5, 1.6)
        canopy = (0.42 + 0.78 * can) * lit
        weight = np.where(lc == LC["forest"], 1.0, 0.0).astype(np.float32)
        img *= (1.0 + weight * (canopy - 1.0))[..., None]
    fine_a = np.array([HR_TEXTURE[c][0] for c in LANDCOVER], np.float32)
    mid_a = np.array([HR_TEXTURE[c][1] for c in LANDCOVER], np.float32)
    tex = 1.0 + fine_a[lc] * noise(place, (h, w), "fine") + mid_a[lc] * noise(place, (h, w), "mid")
    img *= tex[..., None]
    # Soil and grass vary in hue as well as brightness (moisture, species).
    # (paved ground keeps a neutral grey: hue drift there read as a purple mottle)
    natural = np.array([1, 1, 0.6, 1, 0.3, 0, 0], np.float32)
    hue = noise(place, (h, w), "mid") * (0.035 * natural[lc])
    img[..., 0] *= 1 + hue
    img[..., 1] *= 1 + 0.6 * hue
    img[..., 2] *= 1 - hue
    return img


def _shadows(plan: Plan, look: Look, objs: list[tuple[int, ObjSpec]]) -> np.ndarray | None:
    h, w = plan.size
    _, (sx, sy) = _sun_vectors(plan, look)
    sh = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(sh)
    any_shadow = False
    for _, o in objs:
        if o.height_m <= 0:
            continue
        dx, dy = sx * o.height_m, sy * o.height_m
        if o.cls in ("airplane", "tree"):
            poly = translate(o.outline, dx * (0.5 if o.cls == "airplane" else 1.0), dy * (0.5 if o.cls == "airplane" else 1.0))
        else:
            poly = convex_hull(o.outline + translate(o.outline, dx, dy))
        d.polygon(poly, fill=255)
        any_shadow = True
    if not any_shadow:
        return None
    return np.asarray(sh, np.float32) / 255.0


def _shaded(fill: tuple[int, int, int], normal: tuple[float, float] | None, to_sun: tuple[float, float], elev: float) -> tuple[int, int, int]:
    if normal is None:
        return fill
    k = 1.0 + 0.28 * (normal[0] * to_sun[0] + normal[1] * to_sun[1]) * math.cos(math.radians(elev))
    return tuple(int(min(255, v * k)) for v in fill)  # type: ignore[return-value]


def _atmosphere(img: np.ndarray, plan: Plan, look: Look) -> np.ndarray:
    h, w = plan.size
    acq = np.random.default_rng(look.seed)
    img *= np.array(look.cast, np.float32) * look.gain
    img *= (1.0 + 0.05 * noise(acq, (h, w), "coarse"))[..., None]
    if look.haze > 0:
        f = look.haze * np.clip(0.75 + 0.35 * noise(acq, (h, w), "coarse"), 0, 1.2)[..., None]
        img = img * (1 - f) + f * np.array([180, 183, 188], np.float32)
    if look.cloud > 0:
        field = noise(acq, (h, w), "coarse") + 0.35 * noise(acq, (h, w), "mid")
        thr = np.quantile(field[::8, ::8], 1 - look.cloud)
        alpha = np.clip((field - thr) * 0.9, 0, 0.75)
        to_sun, (sx, sy) = _sun_vectors(plan, look)
        off = (int(sy * 400 * plan.gsd_m) % h, int(sx * 400 * plan.gsd_m) % w)
        shade = np.roll(alpha, off, axis=(0, 1))
        img *= (1 - 0.45 * shade)[..., None]
        img = img * (1 - alpha[..., None]) + alpha[..., None] * np.array([236, 236, 238], np.float32)
    return img


def render(plan: Plan, look: Look, nir: bool = False) -> Rendered:
    h, w = plan.size
    lc, rid = rasterise_regions(plan)
    img = _ground(plan, look, lc, rid)
    order = sorted(enumerate(plan.objects), key=lambda t: t[1].layer)
    outlines = {i: visible_outline(plan, o, look) for i, o in order}
    shadow = _shadows(plan, look, order)
    if shadow is not None:
        sh = shadow
        # soften the penumbra a little without a full-image filter pass
        sh = 0.5 * sh + 0.125 * (np.roll(sh, 1, 0) + np.roll(sh, -1, 0) + np.roll(sh, 1, 1) + np.roll(sh, -1, 1))
        img *= (1.0 - sh[..., None] * np.array([0.58, 0.55, 0.48], np.float32))
    to_sun, _ = _sun_vectors(plan, look)
    # Objects are drawn at twice the resolution and box-filtered down: anti-aliased edges.
    canvas = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).resize((2 * w, 2 * h), Image.NEAREST)
    draw = ImageDraw.Draw(canvas)
    inst = Image.new("I", (w, h), 0)
    dinst = ImageDraw.Draw(inst)
    for i, o in order:
        if o.cls == "building" and outlines[i] is not o.outline:
            dx, dy = look.lean[0] * o.height_m / plan.gsd_m, look.lean[1] * o.height_m / plan.gsd_m
            draw.polygon([(2 * x, 2 * y) for x, y in outlines[i]], fill=(118, 116, 112))  # facade
        else:
            dx = dy = 0.0
        for p in o.prims:
            sx, sy = dx + to_sun[0] * p.sun_shift, dy + to_sun[1] * p.sun_shift
            draw.polygon([(2 * (x + sx), 2 * (y + sy)) for x, y in p.polygon], fill=_shaded(p.fill, p.normal, to_sun, look.sun_elevation_deg))
        if o.annotate:
            dinst.polygon(outlines[i], fill=i + 1)
    img = np.asarray(canvas.reduce(2), np.float32)
    instance = np.asarray(inst, np.int32)
    if nir:
        nir_band = _NIR_LC[lc].copy()
        for i, o in enumerate(plan.objects):
            if o.annotate and o.cls in _NIR_OBJECT:
                nir_band[instance == i + 1] = _NIR_OBJECT[o.cls]
        nir_band *= 1.0 + 0.08 * noise(np.random.default_rng(plan.seed), (h, w), "fine")
        if shadow is not None:
            nir_band *= 1.0 - 0.5 * shadow
        img = np.concatenate([img, nir_band[..., None]], axis=2)
    img = _atmosphere(img, plan, look) if not nir else np.concatenate([_atmosphere(img[..., :3], plan, look), img[..., 3:]], 2)
    # Sensor: a light point-spread blur, then noise.
    img = 0.5 * img + 0.125 * (np.roll(img, 1, 0) + np.roll(img, -1, 0) + np.roll(img, 1, 1) + np.roll(img, -1, 1))
    acq = np.random.default_rng(look.seed + 1)
    img += look.noise_dn * noise(acq, (h, w), "grain")[..., None]
    out = np.clip(img + 0.5, 0, 255).astype(np.uint8)
    if look.shift_px != (0, 0):  # misregistration moves the truth with the pixels
        out = shift_image(out, look.shift_px)
        lc, rid, instance = (shift_image(a, look.shift_px) for a in (lc, rid, instance))
        outlines = {i: translate(p, *look.shift_px) for i, p in outlines.items()}
    return Rendered(out, lc, rid, instance, outlines)


def shift_image(img: np.ndarray, shift: tuple[int, int]) -> np.ndarray:
    """Moves content by (dx, dy) pixels, repeating the edge (misregistration)."""
    dx, dy = shift
    h, w = img.shape[:2]
    ys = np.clip(np.arange(h) - dy, 0, h - 1)
    xs = np.clip(np.arange(w) - dx, 0, w - 1)
    return img[ys][:, xs]


def landcover_fraction(lc: np.ndarray) -> dict[str, float]:
    counts = np.bincount(lc.ravel(), minlength=len(LANDCOVER)) / lc.size
    return {name: float(counts[LC[name]]) for name in LANDCOVER}
