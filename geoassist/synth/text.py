"""Language from ground truth: captions, RSVQA-style QA, referring expressions, region and change captions.

Every sentence is computed from the annotation, so answers are exact; several
paraphrase templates per item keep the phrasing varied. Question types use
RSVQA's published names: ``presence``, ``comp``, ``count``, ``area``,
``rural_urban``; change questions use ``change_presence``, ``change_count`` and
``change_type``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from geoassist.synth.types import (
    QA,
    Change,
    PairAnnotation,
    ReferringExpression,
    RegionCaption,
    SceneAnnotation,
    SynthObject,
)

NAMES: dict[str, tuple[str, str]] = {
    "building": ("building", "buildings"),
    "small_vehicle": ("car", "cars"),
    "large_vehicle": ("truck", "trucks"),
    "ship": ("ship", "ships"),
    "airplane": ("airplane", "airplanes"),
    "storage_tank": ("storage tank", "storage tanks"),
    "soccer_field": ("soccer field", "soccer fields"),
    "tennis_court": ("tennis court", "tennis courts"),
    "ground_track_field": ("running track", "running tracks"),
    "swimming_pool": ("swimming pool", "swimming pools"),
    "tree": ("tree", "trees"),
    "bridge": ("bridge", "bridges"),
    "water_area": ("water area", "water areas"),
    "forest": ("forest", "forests"),
    "road": ("road", "roads"),
    "parking_lot": ("parking lot", "parking lots"),
    "farmland": ("field", "fields"),
    "runway": ("runway", "runways"),
    "pier": ("pier", "piers"),
    "residential_area": ("residential area", "residential areas"),
    "grass_area": ("grass area", "grass areas"),
    "bare_area": ("bare soil area", "bare soil areas"),
}

SCENE_PHRASES: dict[str, list[str]] = {
    "airport": ["an airport", "an airfield", "part of an airport"],
    "harbour": ["a harbour", "a port", "a harbour on the coast"],
    "dense_residential": ["a dense residential area", "a densely built neighbourhood", "a crowded residential district"],
    "sparse_residential": ["a sparse residential area", "a quiet suburb", "a loosely built residential area"],
    "industrial": ["an industrial area", "an industrial zone", "a factory district"],
    "farmland": ["farmland", "an agricultural area", "cultivated fields"],
    "forest": ["a forest", "a dense forest", "woodland"],
    "river": ["a river", "a river winding through the land", "a river landscape"],
    "lake": ["a lake", "a lake surrounded by land", "a pond"],
    "parking_lot": ["a parking lot", "a large car park", "a parking area"],
    "stadium": ["a stadium", "a sports ground", "a sports complex"],
    "bare_land": ["bare land", "an area of bare soil", "barren land"],
    "meadow": ["a meadow", "a grassland", "an open meadow"],
    "AnnualCrop": ["farmland with annual crops", "cropland", "fields of annual crops"],
    "Forest": ["a forest", "woodland", "a wooded area"],
    "HerbaceousVegetation": ["herbaceous vegetation", "scrubland", "natural grassland and shrubs"],
    "Highway": ["a highway through the countryside", "a motorway", "a major road"],
    "Industrial": ["an industrial area", "an industrial zone", "a commercial and industrial district"],
    "Pasture": ["pasture", "grazing land", "meadows used as pasture"],
    "PermanentCrop": ["permanent crops", "orchards and vineyards", "plantations"],
    "Residential": ["a residential area", "a town", "a built-up residential area"],
    "River": ["a river", "a river crossing the land", "a river landscape"],
    "SeaLake": ["a lake or the sea", "open water", "a coast with water"],
    "rural": ["a rural area", "countryside"],
    "urban": ["an urban area", "a built-up area"],
}

CELLS = [["top left", "top", "top right"], ["left", "centre", "right"], ["bottom left", "bottom", "bottom right"]]


def name(cls: str, n: int = 1) -> str:
    s, p = NAMES.get(cls, (cls.replace("_", " "), cls.replace("_", " ") + "s"))
    return s if n == 1 else p


def quantity(n: int, rng: np.random.Generator) -> str:
    if n == 1:
        return "a" if not rng.integers(3) else "one"
    if n <= 3:
        return str(rng.choice(["two" if n == 2 else "three", "a few", "several"]))
    if n <= 10:
        return str(rng.choice(["some", "several", str(n)]))
    return str(rng.choice(["many", "lots of", "a large number of", "dozens of" if n >= 24 else "many"]))


def cell_of(o: SynthObject, w: int, h: int) -> str:
    cx, cy = o.center
    return CELLS[min(int(3 * cy / h), 2)][min(int(3 * cx / w), 2)]


def _art(word: str) -> str:
    return ("an " if word[0] in "aeiou" else "a ") + word


def _counts(ann: SceneAnnotation) -> dict[str, int]:
    out: dict[str, int] = {}
    for o in ann.objects:
        out[o.cls] = out.get(o.cls, 0) + 1
    return out


# --------------------------------------------------------------------------- captions


def captions(ann: SceneAnnotation, rng: np.random.Generator, n: int = 5) -> list[str]:
    counts = _counts(ann)
    things = sorted((c for c in counts if c not in ("road", "farmland", "forest", "water_area", "runway", "pier", "parking_lot")), key=lambda c: -counts[c])
    scene = SCENE_PHRASES[ann.scene_class]
    out: list[str] = []
    mains = things[:3]

    def listing(classes: list[str]) -> str:
        parts = [_art(name(c)) if counts[c] == 1 else f"{quantity(counts[c], rng)} {name(c, counts[c])}" for c in classes]
        if not parts:
            return ""
        return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]

    extras = []
    if "road" in counts:
        extras.append(str(rng.choice(["crossed by roads" if counts["road"] > 1 else "crossed by a road", "with roads running through it" if counts["road"] > 1 else "with a road running through it"])))
    if "water_area" in counts and ann.scene_class not in ("river", "lake", "harbour"):
        extras.append("next to some water")
    templates = [
        lambda: f"this is {rng.choice(scene)}" + (f" with {listing(mains)}" if mains else "") + ".",
        lambda: (f"{listing(mains[:2])} {'is' if mains and counts[mains[0]] == 1 and len(mains[:2]) == 1 else 'are'} in {rng.choice(scene)}." if mains else f"it is {rng.choice(scene)}."),
        lambda: f"{rng.choice(scene)}" + (f" {extras[0]}" if extras else "") + ".",
        lambda: f"an aerial image of {rng.choice(scene)}" + (f" where {listing(mains[-2:])} can be seen" if mains else "") + ".",
        lambda: (f"there {'is' if counts[mains[0]] == 1 else 'are'} {listing(mains[:1])} in {rng.choice(scene)}" if mains else f"many {rng.choice(['green', 'natural', 'open'])} areas make up {rng.choice(scene)}") + ".",
        lambda: f"{rng.choice(scene)} seen from above in {ann.season}.",
        lambda: f"the {ann.rural_urban} scene shows {rng.choice(scene)}" + (f" and {listing(things[1:3])}" if len(things) > 1 else "") + ".",
    ]
    order = rng.permutation(len(templates))
    for i in order:
        s = templates[int(i)]().replace("  ", " ").strip()
        s = s[0].upper() + s[1:] if s else s
        s = s[0].lower() + s[1:]  # UCM/RSICD captions are lower case
        if s not in out:
            out.append(s)
        if len(out) == n:
            break
    return out


# --------------------------------------------------------------------------- VQA

PRESENCE_T = ["Is there {a} {s}?", "Is {a} {s} present?", "Is {a} {s} present in the image?", "Are there any {p}?", "Can you see {a} {s}?"]
COUNT_T = ["How many {p} are there?", "What is the number of {p}?", "What is the amount of {p} in the image?", "How many {p} can be seen?"]
COMP_T = {
    "more": ["Are there more {p1} than {p2}?", "Is the number of {p1} greater than the number of {p2}?"],
    "less": ["Are there less {p1} than {p2}?", "Are there fewer {p1} than {p2}?"],
    "equal": ["Is the number of {p1} equal to the number of {p2}?", "Are there as many {p1} as {p2}?"],
}
AREA_T = ["What is the area covered by {p}?", "What area do the {p} cover?", "How much area is covered by {p}?"]


def vqa(ann: SceneAnnotation, rng: np.random.Generator, n: int = 16, classes: list[str] | None = None) -> list[QA]:
    counts = _counts(ann)
    classes = classes or [c for c in NAMES if c not in ("residential_area", "grass_area", "bare_area")]
    present = [c for c in classes if counts.get(c, 0) > 0]
    absent = [c for c in classes if counts.get(c, 0) == 0]
    out: list[QA] = []
    for _ in range(n * 3):
        if len(out) >= n:
            break
        kind = str(rng.choice(["presence", "count", "comp", "area"] if ann.kind == "hr" else ["presence", "count", "comp"], p=[0.35, 0.3, 0.25, 0.1] if ann.kind == "hr" else [0.4, 0.3, 0.3]))
        if kind == "presence":
            pool = present if (rng.random() < 0.5 and present) or not absent else absent
            c = str(rng.choice(pool))
            colour_q = c in present and rng.random() < 0.3
            if colour_q:
                colour = str(rng.choice(sorted({o.attributes.get("colour", "") for o in ann.by_class(c)} | {"red", "white"})))
                s = f"{colour} {name(c)}"
                ans = any(o.attributes.get("colour") == colour for o in ann.by_class(c))
                q = str(rng.choice(PRESENCE_T[:3])).format(a=_art(s).split()[0], s=s, p=name(c, 2))
            else:
                q = str(rng.choice(PRESENCE_T)).format(a=_art(name(c)).split()[0], s=name(c), p=name(c, 2))
                ans = counts.get(c, 0) > 0
            out.append(QA(q, "yes" if ans else "no", "presence"))
        elif kind == "count":
            c = str(rng.choice(present if present and rng.random() < 0.8 else classes))
            out.append(QA(str(rng.choice(COUNT_T)).format(p=name(c, 2)), str(counts.get(c, 0)), "count"))
        elif kind == "comp":
            c1, c2 = (str(v) for v in rng.choice(classes, 2, replace=False))
            if rng.random() < 0.7 and len(present) >= 1:
                c1 = str(rng.choice(present))
            n1, n2 = counts.get(c1, 0), counts.get(c2, 0)
            rel = str(rng.choice(["more", "less", "equal"]))
            ans = {"more": n1 > n2, "less": n1 < n2, "equal": n1 == n2}[rel]
            out.append(QA(str(rng.choice(COMP_T[rel])).format(p1=name(c1, 2), p2=name(c2, 2)), "yes" if ans else "no", "comp"))
        else:
            c = str(rng.choice(present if present and rng.random() < 0.85 else classes))
            m2 = int(round(sum(o.area_px for o in ann.by_class(c)) * ann.gsd_m**2))
            out.append(QA(str(rng.choice(AREA_T)).format(p=name(c, 2)), f"{m2}m2", "area"))
    if ann.kind == "ms":
        out.insert(0, QA(str(rng.choice(["Is it a rural or an urban area", "Is this a rural or an urban area?", "Is the area rural or urban?"])), ann.rural_urban, "rural_urban"))
    return out


# --------------------------------------------------------------------------- referring expressions


def match_spec(ann: SceneAnnotation, spec: dict[str, Any]) -> list[int]:
    """The ids of every object that a referring-expression spec describes."""
    cands = [o for o in ann.things() if o.cls == spec["cls"]]
    if "colour" in spec:
        cands = [o for o in cands if o.attributes.get("colour") == spec["colour"]]
    if "cell" in spec:
        cands = [o for o in cands if cell_of(o, ann.width, ann.height) == spec["cell"]]
    if "extreme" in spec:
        key = {"leftmost": lambda o: o.center[0], "rightmost": lambda o: -o.center[0], "topmost": lambda o: o.center[1], "bottommost": lambda o: -o.center[1], "largest": lambda o: -o.area_px}[spec["extreme"]]
        if cands:
            best = min(key(o) for o in cands)
            cands = [o for o in cands if key(o) == best]
    if "near" in spec:
        ids = {r.subject for r in ann.relations if r.predicate == "near" and ann.object(r.object).cls == spec["near"]}
        cands = [o for o in cands if o.id in ids]
    if "inside" in spec:
        ids = {r.subject for r in ann.relations if r.predicate == "inside" and ann.object(r.object).cls == spec["inside"]}
        cands = [o for o in cands if o.id in ids]
    return [o.id for o in cands]


def _spec_text(spec: dict[str, Any], rng: np.random.Generator) -> str:
    noun = name(spec["cls"])
    if "colour" in spec:
        noun = f"{spec['colour']} {noun}"
    if "extreme" in spec:
        ext = {"leftmost": "leftmost", "rightmost": "rightmost", "topmost": "topmost", "bottommost": "bottom-most", "largest": "largest"}[spec["extreme"]]
        noun = f"{ext} {noun}"
    text = f"the {noun}"
    if "cell" in spec:
        text += str(rng.choice([f" in the {spec['cell']}", f" at the {spec['cell']} of the image", f" located in the {spec['cell']} part"]))
    if "near" in spec:
        text += str(rng.choice([f" near {_art(name(spec['near']))}", f" next to {_art(name(spec['near']))}", f" close to {_art(name(spec['near']))}"]))
    if "inside" in spec:
        text += f" in the {name(spec['inside'])}"
    return text


def referring(ann: SceneAnnotation, rng: np.random.Generator, n: int = 6) -> list[ReferringExpression]:
    things = ann.things()
    out: list[ReferringExpression] = []
    seen: set[int] = set()
    if not things:
        return out
    for i in rng.permutation(len(things))[: n * 4]:
        if len(out) >= n:
            break
        o = things[int(i)]
        if o.id in seen:
            continue
        near = [ann.object(r.object).cls for r in ann.relations if r.subject == o.id and r.predicate == "near"]
        inside = [ann.object(r.object).cls for r in ann.relations if r.subject == o.id and r.predicate == "inside"]
        options: list[dict[str, Any]] = [
            {"cls": o.cls},
            {"cls": o.cls, "colour": o.attributes.get("colour")},
            {"cls": o.cls, "cell": cell_of(o, ann.width, ann.height)},
            {"cls": o.cls, "colour": o.attributes.get("colour"), "cell": cell_of(o, ann.width, ann.height)},
        ]
        if near:
            options.append({"cls": o.cls, "colour": o.attributes.get("colour"), "near": near[0]})
            options.append({"cls": o.cls, "cell": cell_of(o, ann.width, ann.height), "near": near[0]})
        if inside:
            options.append({"cls": o.cls, "inside": inside[0], "cell": cell_of(o, ann.width, ann.height)})
        for ext in ("leftmost", "rightmost", "topmost", "bottommost", "largest"):
            options.append({"cls": o.cls, "extreme": ext})
        rng.shuffle(options)  # type: ignore[arg-type]
        for spec in options:
            spec = {k: v for k, v in spec.items() if v is not None}
            if match_spec(ann, spec) == [o.id]:
                out.append(ReferringExpression(_spec_text(spec, rng), o.id, list(o.box), spec))
                seen.add(o.id)
                break
    return out


def region_captions(ann: SceneAnnotation, rng: np.random.Generator, n: int = 4) -> list[RegionCaption]:
    things = ann.things()
    out = []
    for i in rng.permutation(len(things))[:n]:
        o = things[int(i)]
        size = o.attributes.get("size_m2", 0)
        bits = [f"{_art(str(o.attributes.get('colour', '')) + ' ' + name(o.cls)).strip()}"]
        if o.cls == "building":
            bits.append(f"with a {o.attributes.get('roof')} roof")
        bits.append(str(rng.choice([f"of about {int(round(size))} square metres", f"covering roughly {int(round(size))} m²"])))
        bits.append(f"in the {cell_of(o, ann.width, ann.height)} of the image")
        rel = [r for r in ann.relations if r.subject == o.id and r.predicate == "inside"]
        if rel:
            bits.append(f"inside the {name(ann.object(rel[0].object).cls)}")
        out.append(RegionCaption(o.id, list(o.box), " ".join(bits) + "."))
    return out


def describe_scene(ann: SceneAnnotation, rng: np.random.Generator) -> None:
    """Fills captions, QA, referring expressions and region captions in place."""
    ann.captions = captions(ann, rng)
    ann.vqa = vqa(ann, rng)
    ann.referring = referring(ann, rng)
    ann.region_captions = region_captions(ann, rng)


# --------------------------------------------------------------------------- change

CHANGE_PHRASES = {
    "building_built": ["{q} {p} {be} built {where}", "{q} new {p} appear {where}", "{q} {p} {be} constructed {where}"],
    "building_demolished": ["{q} {p} {be} demolished {where}", "{q} {p} {where} {be} removed", "{q} {p} disappear {where}"],
    "forest_cleared": ["part of the forest {where} is cleared", "trees {where} are cut down", "the woods {where} are turned into bare land"],
    "flooding": ["water floods the land {where}", "the water spreads over the area {where}", "an area {where} is flooded"],
    "new_road": ["a new road is built {where}", "a road appears {where}", "a new road crosses the area {where}"],
    "crop_change": ["the crops in a field {where} change", "a field {where} is harvested or replanted", "the farmland {where} changes its colour"],
}
NO_CHANGE = ["there is no difference", "the scene is the same as before", "nothing has changed", "no change has occurred", "the two images look the same"]


def _where(changes: list[Change], w: int, h: int) -> str:
    xs = [(c.box[0] + c.box[2]) / 2 for c in changes]
    ys = [(c.box[1] + c.box[3]) / 2 for c in changes]
    cell = CELLS[min(int(3 * np.mean(ys) / h), 2)][min(int(3 * np.mean(xs) / w), 2)]
    return "in the middle" if cell == "centre" else f"at the {cell}"


def change_captions(pair: PairAnnotation, rng: np.random.Generator, n: int = 5) -> list[str]:
    scene = pair.scenes[0]
    if not pair.changes:
        return [str(s) for s in rng.permutation(NO_CHANGE)[:n]]
    kinds: dict[str, list[Change]] = {}
    for c in pair.changes:
        kinds.setdefault(c.kind, []).append(c)
    out: list[str] = []
    for _ in range(n * 4):
        if len(out) >= n:
            break
        parts = []
        for kind, cs in kinds.items():
            k = len(cs)
            where = _where(cs, scene.width, scene.height)
            t = str(rng.choice(CHANGE_PHRASES[kind]))
            q = quantity(k, rng)
            noun = str(rng.choice(["houses", "buildings"])) if k > 1 else str(rng.choice(["house", "building"]))
            s = t.format(q=q, p=noun, be="are" if k > 1 else "is", where=where)
            parts.append(s.replace("a new", "a new").replace("  ", " "))
        s = " and ".join(parts)
        s = s[0].lower() + s[1:]
        if s not in out:
            out.append(s)
    while len(out) < n:
        out.append(out[-1])
    return out


def change_qa(pair: PairAnnotation, rng: np.random.Generator) -> list[QA]:
    ch = pair.changes
    built = sum(c.kind == "building_built" for c in ch)
    gone = sum(c.kind == "building_demolished" for c in ch)
    out = [
        QA(str(rng.choice(["Has anything changed?", "Are there any changes between the two images?", "Did the area change?"])), "yes" if ch else "no", "change_presence"),
        QA(str(rng.choice(["How many buildings were built?", "How many new buildings appear?"])), str(built), "change_count"),
        QA(str(rng.choice(["How many buildings were demolished?", "How many buildings disappeared?"])), str(gone), "change_count"),
    ]
    for kind, q in (("forest_cleared", "Was any forest cleared?"), ("flooding", "Is there any flooding?"), ("new_road", "Was a new road built?"), ("crop_change", "Did the crops change in any field?")):
        out.append(QA(q, "yes" if any(c.kind == kind for c in ch) else "no", "change_type"))
    return out
