"""Bi-temporal pairs and short series of one place, with real changes and nuisance differences.

Real changes edit a copy of the plan (buildings built or demolished, forest
cleared, flooding, a new road, a crop change). Nuisances change only the
:class:`~geoassist.synth.render.Look`: sun, season, haze, clouds, noise, off-nadir
lean and a 1–2 px misregistration. The change mask is, by construction, the
union of the changes' masks, all in the first date's pixel frame.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw

from geoassist.synth import objects as ob
from geoassist.synth.hr import annotate, utm_georef
from geoassist.synth.layouts import SCENE_CLASSES, Ctx, _across, add_road, build_plan
from geoassist.synth.palette import LC
from geoassist.synth.plan import Plan, Region, blob, bounds, rasterise_regions
from geoassist.synth.render import Look, render, sample_look
from geoassist.synth.types import Change, Pair, PairAnnotation, SynthError

PAIR_CLASSES = ["sparse_residential", "dense_residential", "bare_land", "farmland", "meadow", "forest", "river", "lake", "industrial"]
CHANGE_KINDS = ["building_built", "building_demolished", "forest_cleared", "flooding", "new_road", "crop_change"]


def _poly_mask(poly: list[tuple[float, float]], h: int, w: int) -> np.ndarray:
    im = Image.new("L", (w, h), 0)
    ImageDraw.Draw(im).polygon(poly, fill=1)
    return np.asarray(im, bool)


def _crop(mask: np.ndarray) -> tuple[np.ndarray, tuple[int, int], list[float]] | None:
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
    return mask[y0:y1, x0:x1].copy(), (x0, y0), [float(x0), float(y0), float(x1), float(y1)]


def _make_change(kind: str, cls: str, poly: list[tuple[float, float]], mask: np.ndarray, before: str, after: str, t: int) -> Change | None:
    c = _crop(mask)
    if c is None or c[0].sum() < 6:
        return None
    m, origin, box = c
    return Change(kind, cls, poly, box, before, after, m, origin, t=t)


def apply_changes(plan: Plan, rng: np.random.Generator, kinds: list[str], t: int) -> tuple[Plan, list[Change]]:
    """A changed copy of ``plan`` and the list of what changed."""
    h, w = plan.size
    new = plan.copy()
    lc0, rid0 = rasterise_regions(plan)
    changes: list[Change] = []
    for kind in kinds:
        if kind == "building_built":
            ctx = Ctx(new, rng)
            ctx.freeze_regions()
            for o in new.objects:
                if o.annotate:
                    ctx.occ.take(o.outline, new.m(2))
            ang = next((o.obox.angle_deg for o in new.objects if o.cls == "building"), rng.uniform(0, 180))
            n = int(rng.integers(1, 7))
            for _ in range(n * 6):
                if sum(c.kind == kind for c in changes) >= n:
                    break
                x, y = ctx.rand_pt(new.m(10))
                b = ob.building(new, rng, x, y, rng.uniform(9, 20), rng.uniform(7, 12), ang + rng.normal(0, 2))
                if ctx.try_add(b, {LC["grassland"], LC["bare_soil"]}, margin=new.m(2)):
                    ch = _make_change(kind, "building", b.outline, _poly_mask(b.outline, h, w), "bare land", "building", t)
                    if ch:
                        changes.append(ch)
                    else:
                        new.objects.remove(b)
        elif kind == "building_demolished":
            blds = [o for o in new.objects if o.cls == "building" and o.annotate]
            for i in rng.permutation(len(blds))[: int(rng.integers(1, 5))]:
                b = blds[int(i)]
                new.objects.remove(b)
                new.regions.append(Region(LC["bare_soil"], b.outline))
                ch = _make_change(kind, "building", b.outline, _poly_mask(b.outline, h, w), "building", "bare land", t)
                if ch:
                    changes.append(ch)
        elif kind in ("forest_cleared", "flooding", "new_road"):
            if kind == "forest_cleared":
                ys, xs = np.nonzero(lc0[::4, ::4] == LC["forest"])
                if len(xs) == 0:
                    continue
                k = int(rng.integers(len(xs)))
                poly = blob(rng, xs[k] * 4.0, ys[k] * 4.0, new.m(rng.uniform(15, 40)), 0.3)
                new.regions.append(Region(LC["bare_soil"], poly))
                before, after, cls = "forest", "bare land", "forest"
            elif kind == "flooding":
                ys, xs = np.nonzero(lc0[::4, ::4] == LC["water"])
                k = int(rng.integers(len(xs))) if len(xs) else -1
                cx, cy = (xs[k] * 4.0, ys[k] * 4.0) if k >= 0 else (rng.uniform(0, w), rng.uniform(0, h))
                poly = blob(rng, cx, cy, new.m(rng.uniform(20, 50)), 0.35)
                new.regions.append(Region(LC["water"], poly, cls=None))
                before, after, cls = "land", "water", "water_area"
            else:
                ctx = Ctx(new, rng)
                pts = _across(rng.uniform(0.2, 0.8) * w, rng.uniform(0.2, 0.8) * h, rng.uniform(0, 180), math.hypot(h, w))
                add_road(ctx, pts, rng.uniform(6, 9), markings=False)
                poly = new.regions[-1].polygon
                before, after, cls = "land", "road", "road"
            lc1, _ = rasterise_regions(new)
            area = _poly_mask(poly, h, w)
            # things standing where the land changed are gone too
            for o in list(new.objects):
                x0, y0, x1, y1 = bounds(o.outline)
                cx, cy = int(min(max((x0 + x1) / 2, 0), w - 1)), int(min(max((y0 + y1) / 2, 0), h - 1))
                if area[cy, cx] and o.layer >= 1:
                    new.objects.remove(o)
                    area |= _poly_mask(o.outline, h, w)
            changed = area & ((lc0 != lc1) | _objects_mask(plan, h, w, area))
            ch = _make_change(kind, cls, poly, changed, before, after, t)
            if ch:
                changes.append(ch)
        elif kind == "crop_change":
            parcels = [i for i, r in enumerate(new.regions) if "crop" in r.attrs]
            if not parcels:
                continue
            from geoassist.synth.palette import CROP_COLOURS

            i = parcels[int(rng.integers(len(parcels)))]
            old = new.regions[i].attrs["crop"]
            choices = [c for c in CROP_COLOURS if c != old]
            new.regions[i].attrs["crop"] = str(rng.choice(choices))
            ch = _make_change(kind, "farmland", new.regions[i].polygon, rid0 == i + 1, old, new.regions[i].attrs["crop"], t)
            if ch:
                changes.append(ch)
        else:
            raise SynthError(f"unknown change kind {kind!r}; choose from {', '.join(CHANGE_KINDS)}")
    return new, changes


def _objects_mask(plan: Plan, h: int, w: int, area: np.ndarray) -> np.ndarray:
    out = np.zeros((h, w), bool)
    for o in plan.objects:
        if o.layer >= 1:
            x0, y0, x1, y1 = bounds(o.outline)
            cx, cy = int(min(max((x0 + x1) / 2, 0), w - 1)), int(min(max((y0 + y1) / 2, 0), h - 1))
            if area[cy, cx]:
                out |= _poly_mask(o.outline, h, w)
    return out


def _possible(plan: Plan) -> list[str]:
    lc, _ = rasterise_regions(plan)
    kinds = ["new_road"]
    if ((lc == LC["grassland"]) | (lc == LC["bare_soil"])).mean() > 0.2:
        kinds.append("building_built")
    if any(o.cls == "building" for o in plan.objects):
        kinds.append("building_demolished")
    if (lc == LC["forest"]).mean() > 0.05:
        kinds.append("forest_cleared")
    if (lc == LC["water"]).any() or plan.scene_class in ("meadow", "farmland"):
        kinds.append("flooding")
    if any("crop" in r.attrs for r in plan.regions):
        kinds.append("crop_change")
    return kinds


def generate_series(seed: int, n_dates: int = 2, scene_class: str | None = None, size: int | tuple[int, int] = 256, p_change: float = 0.8, kinds: list[str] | None = None, with_text: bool = True) -> Pair:
    """``n_dates`` images of one place; changes happen between consecutive dates."""
    if n_dates < 2:
        raise SynthError("a pair or series needs at least 2 dates")
    rng = np.random.default_rng([seed, 21])
    scene_class = scene_class or PAIR_CLASSES[int(rng.integers(len(PAIR_CLASSES)))]
    if scene_class not in SCENE_CLASSES:
        raise SynthError(f"unknown scene class {scene_class!r}")
    hw = (size, size) if isinstance(size, int) else tuple(size)
    plan = build_plan(scene_class, hw, rng, seed=seed)  # type: ignore[arg-type]
    crs, gt = utm_georef(rng, plan.gsd_m)
    base_season = str(rng.choice(["spring", "summer", "autumn"]))
    plans, looks, changes = [plan], [], []
    for t in range(n_dates):
        look = sample_look(rng, season=base_season if rng.random() < 0.6 else None)
        if t > 0 and rng.random() < 0.6:
            look.shift_px = (int(rng.integers(-2, 3)), int(rng.integers(-2, 3)))
        looks.append(look)
        if t > 0:
            possible = _possible(plans[-1])
            chosen = kinds if kinds is not None else ([str(k) for k in rng.choice(possible, size=min(len(possible), int(rng.integers(1, 3))), replace=False)] if rng.random() < p_change else [])
            nxt, ch = apply_changes(plans[-1], rng, [k for k in chosen if k in possible] if kinds is None else chosen, t)
            plans.append(nxt)
            changes.extend(ch)
    images, scenes = [], []
    for t, (p, look) in enumerate(zip(plans, looks, strict=True)):
        r = render(p, look)
        images.append(r.image)
        scenes.append(annotate(p, r, look, f"pair_{seed}_t{t}", seed, crs, gt))
    h, w = hw
    mask = np.zeros(hw, bool)
    for c in changes:
        mask |= c.full_mask(h, w)
    ann = PairAnnotation(f"pair_{seed}", seed, scenes, changes, mask, [look.shift_px for look in looks])
    if with_text:
        from geoassist.synth.text import change_captions, change_qa, describe_scene

        trng = np.random.default_rng([seed, 22])
        for s in scenes:
            describe_scene(s, trng)
        ann.change_captions = change_captions(ann, trng)
        ann.change_qa = change_qa(ann, trng)
    return Pair(images, ann)


def generate_pair(seed: int, scene_class: str | None = None, size: int | tuple[int, int] = 256, p_change: float = 0.8, kinds: list[str] | None = None, with_text: bool = True) -> Pair:
    """A before/after pair (LEVIR-CD / LEVIR-CC style)."""
    return generate_series(seed, 2, scene_class, size, p_change, kinds, with_text)


__all__ = ["generate_pair", "generate_series", "apply_changes", "CHANGE_KINDS", "Look"]
