"""Low-resolution multispectral scenes like Sentinel-2 L1C at 10 m: 13 bands, uint16, georeferenced.

Scene classes follow EuroSAT (AnnualCrop, Forest, …, SeaLake); each is a
layout of land-cover regions whose pixels take the class signatures of
:mod:`geoassist.synth.palette`, so NDVI and NDWI behave physically. The 20 m and
60 m bands are blurred to their native resolution.
"""

from __future__ import annotations

import math

import numpy as np

from geoassist.synth.noise import noise
from geoassist.synth.palette import LANDCOVER, LC, S2_BANDS, S2_RESOLUTION_M, s2_signatures
from geoassist.synth.plan import Plan, Region, blob, buffer_line, meander, rasterise_regions, rect
from geoassist.synth.render import Look, Rendered, sample_look
from geoassist.synth.types import Scene, SynthError

MS_SENSOR = "GeoSynth-S2 (Sentinel-2 MSI L1C-like)"
MS_CLASSES = ["AnnualCrop", "Forest", "HerbaceousVegetation", "Highway", "Industrial", "Pasture", "PermanentCrop", "Residential", "River", "SeaLake"]
GSD_MS = 10.0


def _across(cx: float, cy: float, ang: float, reach: float) -> list[tuple[float, float]]:
    u = (math.cos(math.radians(ang)), math.sin(math.radians(ang)))
    return [(cx - u[0] * reach, cy - u[1] * reach), (cx + u[0] * reach, cy + u[1] * reach)]


def _parcels(plan: Plan, rng: np.random.Generator, size_m: tuple[float, float], perennial: bool = False) -> None:
    h, w = plan.size
    ang = rng.uniform(0, 180)
    step = plan.m(rng.uniform(*size_m))
    reach = math.hypot(h, w)
    u = -reach
    while u < reach:
        du = step * rng.uniform(0.6, 1.5)
        v = -reach
        while v < reach:
            dv = step * rng.uniform(0.6, 1.5)
            cu, cv = u + du / 2, v + dv / 2
            a = math.radians(ang)
            cx, cy = w / 2 + cu * math.cos(a) - cv * math.sin(a), h / 2 + cu * math.sin(a) + cv * math.cos(a)
            if -step < cx < w + step and -step < cy < h + step:
                green = rng.uniform(0.5, 1.0) if perennial else float(rng.choice([0.0, 0.15, 0.5, 0.85, 1.0]))
                plan.regions.append(Region(LC["farmland"], rect(cx, cy, du - 0.6, dv - 0.6, ang), cls=None, attrs={"greenness": green}))
            v += dv
        u += du


def build_ms_plan(scene_class: str, size: tuple[int, int], rng: np.random.Generator, seed: int) -> Plan:
    h, w = size
    reach = math.hypot(h, w)
    bg = {"Forest": "forest", "Pasture": "grassland", "HerbaceousVegetation": "grassland", "SeaLake": "grassland"}.get(scene_class, str(rng.choice(["farmland", "grassland"])))
    plan = Plan(size=size, gsd_m=GSD_MS, scene_class=scene_class, rural_urban="rural", background_lc=LC[bg], seed=seed)
    scale = w / 64  # patch sizes grow with the scene so that 64 px and 256 px tiles both look right
    if scene_class in ("AnnualCrop", "PermanentCrop") or (bg == "farmland" and scene_class not in ("Forest",)):
        _parcels(plan, rng, (80, 200) if scene_class == "PermanentCrop" else (150, 450), perennial=scene_class == "PermanentCrop")
    n_forest = {"Forest": 0, "Pasture": 2, "HerbaceousVegetation": 2}.get(scene_class, 1)
    for _ in range(int(rng.integers(0, n_forest + 1)) + (scale > 2)):
        plan.regions.append(Region(LC["forest"], blob(rng, rng.uniform(0, w), rng.uniform(0, h), rng.uniform(5, 14) * scale, 0.35), cls="forest"))
    if scene_class == "Forest":
        for _ in range(int(rng.integers(0, 3))):
            plan.regions.append(Region(LC["grassland"], blob(rng, rng.uniform(0, w), rng.uniform(0, h), rng.uniform(2, 6) * scale), cls="grass_area"))
    if scene_class == "HerbaceousVegetation":
        for _ in range(int(rng.integers(1, 4))):
            plan.regions.append(Region(LC["bare_soil"], blob(rng, rng.uniform(0, w), rng.uniform(0, h), rng.uniform(3, 8) * scale), cls=None))
    if scene_class in ("Residential", "Industrial") or (scale > 2 and rng.random() < 0.35):
        n = 1 if scene_class == "Industrial" else int(rng.integers(1, 3))
        for _ in range(n):
            r = rng.uniform(14, 26) * scale if scene_class in ("Residential", "Industrial") else rng.uniform(6, 14) * scale
            plan.regions.append(Region(LC["impervious"], blob(rng, rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h, r, 0.3), cls="residential_area", attrs={"industrial": scene_class == "Industrial"}))
    if scene_class == "River" or (scale > 2 and rng.random() < 0.25):
        pts = meander(rng, *_across(rng.uniform(0.3, 0.7) * w, rng.uniform(0.3, 0.7) * h, rng.uniform(0, 180), reach), amp=rng.uniform(3, 10) * scale)
        plan.regions.append(Region(LC["water"], buffer_line(pts, rng.uniform(2, 6) * max(scale / 2, 1)), cls="water_area", attrs={"water": "river"}))
    if scene_class == "SeaLake" or (scale > 2 and rng.random() < 0.3):
        if scene_class == "SeaLake" and rng.random() < 0.5:  # open sea with an irregular coast
            side = rng.uniform(0, 2 * math.pi)
            cx, cy = w / 2 + 0.6 * w * math.cos(side), h / 2 + 0.6 * h * math.sin(side)
            plan.regions.append(Region(LC["water"], blob(rng, cx, cy, 0.8 * max(w, h), 0.12, n=64), cls="water_area", attrs={"water": "sea"}))
        else:
            plan.regions.append(Region(LC["water"], blob(rng, rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h, rng.uniform(8, 22) * scale, 0.3), cls="water_area", attrs={"water": "lake"}))
    n_roads = {"Highway": 1, "Residential": 3, "Industrial": 2}.get(scene_class, int(rng.integers(0, 2 + (scale > 2))))
    for k in range(n_roads):
        width = rng.uniform(2.5, 4) if scene_class == "Highway" and k == 0 else rng.uniform(0.9, 1.6)
        pts = meander(rng, *_across(rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h, rng.uniform(0, 180), reach), amp=rng.uniform(0, 4) * scale)
        plan.regions.append(Region(LC["road"], buffer_line(pts, width), cls="road", attrs={"width_m": round(width * GSD_MS, 1)}))
    return plan


def render_ms(plan: Plan, look: Look) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """13-band uint16 DN (reflectance × 10 000), land-cover map and region map."""
    h, w = plan.size
    lc, rid = rasterise_regions(plan)
    place = np.random.default_rng(plan.seed * 7 + 5)
    sig = s2_signatures(look.season, np.random.default_rng(look.seed))
    refl = sig[lc]  # H×W×13
    green = np.full(len(plan.regions) + 1, -1.0, np.float32)
    for i, reg in enumerate(plan.regions, start=1):
        if "greenness" in reg.attrs:
            green[i] = reg.attrs["greenness"]
    g = green[rid]
    m = g >= 0
    if m.any():
        t = g[m][:, None]
        refl[m] = t * sig[LC["farmland"]] + (1 - t) * sig[LC["bare_soil"]]
    urban = lc == LC["impervious"]
    if urban.any():  # towns mix roofs, streets and gardens at 10 m
        mix = np.clip(0.35 + 0.35 * noise(place, (h, w), "fine"), 0, 0.8)[urban][:, None]
        refl[urban] = (1 - mix) * sig[LC["impervious"]] + mix * sig[LC["grassland"]]
    tex = 1.0 + np.array([0.04, 0.05, 0.05, 0.03, 0.06, 0.05, 0.04], np.float32)[lc] * noise(place, (h, w), "mid")
    tex += 0.03 * noise(place, (h, w), "fine")
    refl *= tex[..., None]
    acq = np.random.default_rng(look.seed)
    # Atmosphere: path radiance strongest in the blue, haze adds a little everywhere.
    path = np.array([0.02, 0.012, 0.006, 0.003, 0.002, 0.002, 0.001, 0.001, 0.001, 0.0, 0.0, 0.0, 0.0], np.float32)
    refl = refl * look.gain ** 0.3 + path * 3 * look.haze
    if look.cloud > 0:
        field = noise(acq, (h, w), "coarse") + 0.4 * noise(acq, (h, w), "mid")
        alpha = np.clip((field - np.quantile(field[::4, ::4], 1 - look.cloud)) * 2.0, 0, 0.9)[..., None]
        cloud = np.array([0.45, 0.42, 0.41, 0.41, 0.42, 0.43, 0.44, 0.44, 0.45, 0.2, 0.05, 0.35, 0.25], np.float32)
        refl = refl * (1 - alpha) + alpha * cloud
    refl += 0.002 * noise(acq, (h, w), "grain")[..., None]
    # Native resolutions: 20 m bands are 2×2 box means, 60 m bands 6×6.
    from scipy.ndimage import uniform_filter

    for b, res in enumerate(S2_RESOLUTION_M):
        if res > 10:
            refl[..., b] = uniform_filter(refl[..., b], size=res // 10, mode="nearest")
    dn = np.clip(refl * 10000 + 0.5, 1, 65535).astype(np.uint16)
    return dn, lc, rid


def generate_ms(seed: int, scene_class: str | None = None, size: int | tuple[int, int] = 256, look: Look | None = None, with_text: bool = True) -> tuple[Scene, Plan, Look]:
    from geoassist.synth.hr import annotate, utm_georef

    rng = np.random.default_rng([seed, 11])
    scene_class = scene_class or MS_CLASSES[int(rng.integers(len(MS_CLASSES)))]
    if scene_class not in MS_CLASSES:
        raise SynthError(f"unknown multispectral scene class {scene_class!r}; choose one of {', '.join(MS_CLASSES)}")
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if min(hw) < 16:
        raise SynthError(f"size {hw} is too small; use at least 16 px")
    plan = build_ms_plan(scene_class, hw, rng, seed)  # type: ignore[arg-type]
    look = look or sample_look(rng)
    dn, lc, rid = render_ms(plan, look)
    built = float((lc == LC["impervious"]).mean())
    plan.rural_urban = "urban" if built >= 0.12 else "rural"
    crs, gt = utm_georef(rng, GSD_MS)
    r = Rendered(dn, lc, rid, np.zeros(hw, np.int32), {})
    ann = annotate(plan, r, look, f"ms_{seed}", seed, crs, gt)
    ann.kind, ann.sensor, ann.band_names = "ms", MS_SENSOR, list(S2_BANDS)
    ann.semantic_mask = lc
    ann.semantic_classes = list(LANDCOVER)
    if with_text:
        from geoassist.synth.text import describe_scene

        describe_scene(ann, np.random.default_rng([seed, 12]))
    return Scene(dn, ann), plan, look


def ndvi(dn: np.ndarray) -> np.ndarray:
    nir, red = dn[..., 7].astype(np.float32), dn[..., 3].astype(np.float32)
    return (nir - red) / (nir + red + 1e-6)


def ndwi(dn: np.ndarray) -> np.ndarray:
    green, nir = dn[..., 2].astype(np.float32), dn[..., 7].astype(np.float32)
    return (green - nir) / (green + nir + 1e-6)
