"""High-resolution optical scenes: plan → render → exact annotation."""

from __future__ import annotations

import math

import numpy as np

from geoassist.synth.layouts import SCENE_CLASSES, build_plan
from geoassist.synth.palette import LANDCOVER, SEM, SEMANTIC_CLASSES
from geoassist.synth.plan import Plan, bounds, min_area_obox
from geoassist.synth.render import Look, Rendered, render, sample_look
from geoassist.synth.types import Relation, Scene, SceneAnnotation, SynthError, SynthObject

HR_SENSOR = "GeoSynth-HR (aerial RGB)"

# Region classes that are annotated as objects (the rest only shape the land cover).
REGION_CLASSES = {"water_area", "forest", "road", "parking_lot", "farmland", "runway", "pier", "residential_area", "grass_area"}


def utm_georef(rng: np.random.Generator, gsd_m: float) -> tuple[str, tuple[float, float, float, float, float, float]]:
    """A plausible UTM CRS (northern zones 10–50) and a north-up geotransform at ``gsd_m``."""
    zone = int(rng.integers(10, 51))
    x0 = float(np.round(rng.uniform(300_000, 700_000), 2))
    y0 = float(np.round(rng.uniform(3_000_000, 6_500_000), 2))
    return f"EPSG:{32600 + zone}", (x0, gsd_m, 0.0, y0, 0.0, -gsd_m)


def _clip_polygon(poly: list[tuple[float, float]], w: int, h: int) -> list[tuple[float, float]]:
    x0, y0, x1, y1 = bounds(poly)
    if x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h:
        return poly
    from shapely.geometry import Polygon, box

    g = Polygon(poly).buffer(0).intersection(box(0, 0, w, h))
    if g.is_empty:
        return []
    if g.geom_type != "Polygon":
        g = max(getattr(g, "geoms", [g]), key=lambda p: p.area)
        if g.geom_type != "Polygon":
            return []
    return [(float(x), float(y)) for x, y in list(g.exterior.coords)[:-1]]


def _mask_in(index_map: np.ndarray, value: int, poly: list[tuple[float, float]]) -> tuple[np.ndarray, tuple[int, int]] | None:
    """The visible mask of ``value`` inside ``poly``'s bounds, cropped to its tight box."""
    h, w = index_map.shape
    x0, y0, x1, y1 = bounds(poly)
    a, b = max(int(math.floor(x0)) - 3, 0), max(int(math.floor(y0)) - 3, 0)
    c, d = min(int(math.ceil(x1)) + 4, w), min(int(math.ceil(y1)) + 4, h)
    if a >= c or b >= d:
        return None
    m = index_map[b:d, a:c] == value
    ys, xs = np.nonzero(m)
    if len(xs) == 0:
        return None
    return m[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1], (a + int(xs.min()), b + int(ys.min()))


def annotate(plan: Plan, r: Rendered, look: Look, scene_id: str, seed: int, crs: str, geotransform: tuple, min_px: int = 4) -> SceneAnnotation:
    """Builds the exact annotation of a rendered plan."""
    h, w = plan.size
    objs: list[SynthObject] = []
    sem = r.landcover.copy()
    for i, o in enumerate(plan.objects):
        if not o.annotate:
            continue
        found = _mask_in(r.instance, i + 1, r.outlines[i])
        if found is None or found[0].sum() < min_px:
            continue
        mask, (mx, my) = found
        box = [float(mx), float(my), float(mx + mask.shape[1]), float(my + mask.shape[0])]
        outline = r.outlines[i]
        obox = o.obox if outline is o.outline and o.obox is not None else min_area_obox(outline)
        attrs = dict(o.attrs)
        attrs["area_px"] = int(mask.sum())
        attrs["visible_m2"] = round(float(mask.sum()) * plan.gsd_m**2, 1)
        attrs["uid"] = o.uid
        objs.append(SynthObject(len(objs), o.cls, outline, box, obox, attrs, mask, (mx, my)))
    inst = r.instance
    if objs:
        lut = np.zeros(len(plan.objects) + 1, np.uint8)
        for i, o in enumerate(plan.objects):
            if o.annotate:
                lut[i + 1] = SEM.get(o.cls, 0)
        obj_px = inst > 0
        sem[obj_px] = lut[inst[obj_px]]
    for k, reg in enumerate(plan.regions, start=1):
        if reg.cls not in REGION_CLASSES:
            continue
        poly = _clip_polygon(reg.polygon, w, h)
        if len(poly) < 3:
            continue
        found = _mask_in(r.region_index, k, poly)
        if found is None or found[0].sum() < 16:
            continue
        mask, (mx, my) = found
        box = [float(mx), float(my), float(mx + mask.shape[1]), float(my + mask.shape[0])]
        attrs = {key: v for key, v in reg.attrs.items() if key != "centerline"}
        attrs["area_px"] = int(mask.sum())
        attrs["visible_m2"] = round(float(mask.sum()) * plan.gsd_m**2, 1)
        attrs["size_m2"] = attrs["visible_m2"]
        attrs["colour"] = {"water_area": "dark", "forest": "green", "road": "grey", "parking_lot": "grey", "farmland": "green"}.get(reg.cls, "grey")
        objs.append(SynthObject(len(objs), reg.cls, poly, box, min_area_obox(poly), attrs, mask, (mx, my), is_region=True))
    ann = SceneAnnotation(
        scene_id=scene_id,
        seed=seed,
        kind="hr",
        scene_class=plan.scene_class,
        rural_urban=plan.rural_urban,
        gsd_m=plan.gsd_m,
        sensor=HR_SENSOR,
        width=w,
        height=h,
        band_names=["red", "green", "blue"] + (["nir"] if r.image.shape[2] == 4 else []),
        crs=crs,
        geotransform=geotransform,
        sun_azimuth_deg=round(look.sun_azimuth_deg, 1),
        sun_elevation_deg=round(look.sun_elevation_deg, 1),
        season=look.season,
        objects=objs,
        semantic_mask=sem,
        semantic_classes=list(SEMANTIC_CLASSES),
    )
    ann.relations = relations(ann)
    return ann


def relations(ann: SceneAnnotation, max_things: int = 80) -> list[Relation]:
    """Spatial relations: nearest-neighbour direction, 'near' and 'inside' (thing in region)."""
    things = ann.things()[:max_things]
    regions = [o for o in ann.objects if o.is_region]
    rel: list[Relation] = []
    if len(things) >= 2:
        c = np.array([t.center for t in things])
        d = np.linalg.norm(c[:, None] - c[None], axis=2)
        np.fill_diagonal(d, np.inf)
        near_px = 25.0 / ann.gsd_m
        for i, t in enumerate(things):
            j = int(np.argmin(d[i]))
            if d[i, j] > near_px * 2:
                continue
            rel.append(Relation(t.id, "near", things[j].id))
            dx, dy = c[j] - c[i]
            if abs(dx) > abs(dy):
                rel.append(Relation(t.id, "left_of" if dx > 0 else "right_of", things[j].id))
            else:
                rel.append(Relation(t.id, "above" if dy > 0 else "below", things[j].id))
    for t in things:
        cx, cy = (int(min(max(v, 0), lim - 1)) for v, lim in zip(t.center, (ann.width, ann.height), strict=True))
        for reg in regions:
            x0, y0 = reg.mask_origin
            hh, ww = reg.mask.shape  # type: ignore[union-attr]
            if x0 <= cx < x0 + ww and y0 <= cy < y0 + hh and reg.mask[cy - y0, cx - x0]:  # type: ignore[index]
                rel.append(Relation(t.id, "inside", reg.id))
                break
    return rel


def generate_hr(
    seed: int,
    scene_class: str | None = None,
    size: int | tuple[int, int] = 512,
    gsd_m: float | None = None,
    nir: bool = False,
    look: Look | None = None,
    with_text: bool = True,
) -> tuple[Scene, Plan, Look]:
    rng = np.random.default_rng([seed, 1])
    classes = sorted(SCENE_CLASSES)
    scene_class = scene_class or classes[int(rng.integers(len(classes)))]
    if scene_class not in SCENE_CLASSES:
        raise SynthError(f"unknown scene class {scene_class!r}; choose one of {', '.join(classes)}")
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if min(hw) < 64:
        raise SynthError(f"size {hw} is too small for a high-resolution scene; use at least 64 px")
    plan = build_plan(scene_class, hw, rng, gsd_m=gsd_m, seed=seed)  # type: ignore[arg-type]
    look = look or sample_look(rng)
    r = render(plan, look, nir=nir)
    crs, gt = utm_georef(rng, plan.gsd_m)
    ann = annotate(plan, r, look, f"hr_{seed}", seed, crs, gt)
    if with_text:
        from geoassist.synth.text import describe_scene

        describe_scene(ann, np.random.default_rng([seed, 2]))
    return Scene(r.image, ann), plan, look


__all__ = ["generate_hr", "annotate", "LANDCOVER", "REGION_CLASSES"]
