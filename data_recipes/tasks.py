"""Record generators shared by the object recipes (DOTA, DIOR, FAIR1M, iSAID, COCO, GeoTIFF tiles, GeoSynth).

From one image's labelled objects they make detection, grounding, counting, presence,
referring and region-caption records plus a box-to-caption (B2C) caption, and the negative
examples that teach the model to answer ``none``/``0``/``no`` when a class is absent.
Every object is a dict::

    {"label": "small vehicle",         # class in words (what the answer text says)
     "class": "small-vehicle",         # the source's own class name
     "box": [x1, y1, x2, y2],          # pixels of the original image
     "points": [[x, y], ...],          # optional: the source's quadrilateral/polygon
     "difficult": 0, ...}              # optional extra fields are kept in the targets
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from geoassist.formats import corners_to_obbox, format_box, format_objects

from .core import Dropped, Outcome, make_record, stable_pick
from .geometry import (
    box_overlaps_image,
    box_to_caption,
    position_word,
    quantity,
    region_caption,
    where_phrase,
)


def check_objects(
    rid: str,
    objects: Sequence[dict[str, Any]],
    size: Sequence[int],
    classes: Sequence[str] | None = None,
) -> tuple[list[dict[str, Any]], list[Dropped]]:
    """Keep objects whose box overlaps the image and whose class is known; the rest become :class:`Dropped`."""
    kept, dropped = [], []
    known = set(classes) if classes is not None else None
    for n, obj in enumerate(objects):
        x1, y1, x2, y2 = obj["box"]
        if known is not None and obj["class"] not in known:
            dropped.append(Dropped(rid, "unknown class", f"object {n}: {obj['class']!r}"))
        elif not (x2 > x1 and y2 > y1):
            dropped.append(Dropped(rid, "degenerate geometry", f"object {n}: box {obj['box']}"))
        elif not box_overlaps_image(obj["box"], size):
            dropped.append(
                Dropped(
                    rid,
                    "box outside the image",
                    f"object {n}: box {obj['box']} on a {size[0]}x{size[1]} image",
                )
            )
        else:
            kept.append(obj)
    return kept, dropped


def _box_target(obj: dict[str, Any]) -> dict[str, Any]:
    out = {"label": obj["label"], "box": [round(float(v), 3) for v in obj["box"]]}
    for key in ("class", "difficult", "id", "area_px"):
        if key in obj:
            out[key] = obj[key]
    return out


def _poly_target(obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "label": obj["label"],
        "points": [[round(float(x), 3), round(float(y), 3)] for x, y in obj["points"]],
    }


def object_records(
    *,
    source: str,
    oid: str,
    split: str,
    image: str,
    size: Sequence[int],
    objects: Sequence[dict[str, Any]],
    class_labels: Sequence[str],
    meta: dict[str, Any] | None = None,
    oriented: bool = False,
    polygons: bool = False,
    n_regions: int = 3,
    n_referring: int = 3,
    n_negatives: int = 1,
    tasks: Sequence[str] = (
        "detection",
        "grounding",
        "counting",
        "presence",
        "referring",
        "region_caption",
        "caption",
    ),
    extra_targets: dict[str, Any] | None = None,
) -> list[Outcome]:
    """All object-derived records of one image (see the module docstring).

    ``class_labels`` are every class of the dataset in words (negatives pick absent ones).
    ``oriented``: objects carry 4-point ``points`` and detection answers use ``<obox>``.
    ``polygons``: ``points`` are instance outlines kept as ``polygons`` targets.
    """
    width, height = size
    meta = {"width": width, "height": height, **(meta or {})}
    common = {"source": source, "split": split, "images": [image], "meta": meta}
    extra_targets = extra_targets or {}
    by_label: dict[str, list[dict[str, Any]]] = {}
    for obj in objects:
        by_label.setdefault(obj["label"], []).append(obj)
    present = sorted(by_label)
    absent = [c for c in dict.fromkeys(class_labels) if c not in by_label]
    negatives = stable_pick(f"{source}:{oid}:negative", absent, n_negatives)
    records: list[Outcome] = []

    def targets_for(objs: Sequence[dict[str, Any]], **more: Any) -> dict[str, Any]:
        targets: dict[str, Any] = {"boxes": [_box_target(o) for o in objs], **more}
        if oriented:
            targets["obboxes"] = [_poly_target(o) for o in objs if "points" in o]
        elif polygons:
            targets["polygons"] = [_poly_target(o) for o in objs if "points" in o]
        return targets

    if "detection" in tasks:
        if oriented:
            geometry = [
                {"label": o["label"], "obox": corners_to_obbox(o["points"])}
                if "points" in o
                else {"label": o["label"], "box": o["box"]}
                for o in objects
            ]
        else:
            geometry = [{"label": o["label"], "box": o["box"]} for o in objects]
        records.append(
            make_record(
                oid=f"{oid}:detection",
                task="detection",
                argument="all objects",
                answer=format_objects(geometry, size),
                oriented=oriented,
                targets={**targets_for(objects, count=len(objects)), **extra_targets},
                **common,
            )
        )
    if "grounding" in tasks:
        for label in [*present, *negatives]:
            objs = by_label.get(label, [])
            records.append(
                make_record(
                    oid=f"{oid}:grounding:{label}",
                    task="grounding",
                    argument=f"all {_plural(label)}",
                    answer=format_objects([{"label": label, "box": o["box"]} for o in objs], size),
                    targets=targets_for(objs, count=len(objs)),
                    **common,
                )
            )
    if "counting" in tasks:
        for label in [*present, *negatives]:
            objs = by_label.get(label, [])
            records.append(
                make_record(
                    oid=f"{oid}:counting:{label}",
                    task="counting",
                    argument=f"How many {_plural(label)} are there in the image?",
                    answer=str(len(objs)),
                    qtype="count",
                    targets=targets_for(objs, count=len(objs)),
                    **common,
                )
            )
    if "presence" in tasks:
        asked = stable_pick(f"{source}:{oid}:presence", present, 1) + negatives
        for label in asked:
            objs = by_label.get(label, [])
            records.append(
                make_record(
                    oid=f"{oid}:presence:{label}",
                    task="vqa",
                    argument=f"Is there {_a(label)} in the image?",
                    answer="yes" if objs else "no",
                    qtype="presence",
                    targets=targets_for(objs, count=len(objs)),
                    **common,
                )
            )
    if "referring" in tasks:
        # An object is referred to by class and position when nothing else of its class shares its cell.
        cells = Counter((o["label"], position_word(o["box"], size)) for o in objects)
        unique = [o for o in objects if cells[(o["label"], position_word(o["box"], size))] == 1]
        keys = [f"{o['label']}@{position_word(o['box'], size)}" for o in unique]
        chosen = set(stable_pick(f"{source}:{oid}:refer", keys, n_referring))
        for obj, key in zip(unique, keys, strict=True):
            if key not in chosen:
                continue
            cell = position_word(obj["box"], size)
            where = where_phrase(cell)
            only = len(by_label[obj["label"]]) == 1
            expression = f"the {obj['label']}" if only else f"the {obj['label']} {where}"
            records.append(
                make_record(
                    oid=f"{oid}:referring:{key}",
                    task="referring",
                    argument=expression,
                    answer=format_box(obj["box"], size),
                    targets=targets_for([obj], count=1),
                    meta={**meta, "expression_cues": [] if only else ["position"]},
                    **{k: v for k, v in common.items() if k != "meta"},
                )
            )
        for label in negatives:
            records.append(
                make_record(
                    oid=f"{oid}:referring:{label}@none",
                    task="referring",
                    argument=f"the {label}",
                    answer="none",
                    targets={"boxes": [], "count": 0},
                    **common,
                )
            )
    if "region_caption" in tasks and objects:
        indexed = {f"{i}": o for i, o in enumerate(objects)}
        for key in sorted(stable_pick(f"{source}:{oid}:region", list(indexed), n_regions), key=int):
            obj = indexed[key]
            region = format_box(obj["box"], size)
            records.append(
                make_record(
                    oid=f"{oid}:region:{key}",
                    task="region_caption",
                    argument="",
                    region=region,
                    answer=region_caption(obj["label"], obj["box"], size),
                    targets=targets_for([obj], count=1),
                    **common,
                )
            )
    if "caption" in tasks:
        records.append(
            make_record(
                oid=f"{oid}:b2c",
                task="caption",
                answer=[box_to_caption(objects, size)],
                targets=targets_for(objects, count=len(objects)),
                meta={**meta, "caption_from": "boxes (B2C)"},
                **{k: v for k, v in common.items() if k != "meta"},
            )
        )
    return records


def _plural(label: str) -> str:
    return quantity(2, label).split(" ", 1)[1]


def _a(label: str) -> str:
    from .geometry import article

    return article(label)


def obb_detection_record(
    *,
    source: str,
    oid: str,
    split: str,
    image: str,
    size: Sequence[int],
    objects: Sequence[dict[str, Any]],
    meta: dict[str, Any] | None = None,
) -> Outcome:
    """One oriented-detection record (``<obox>`` answers) for objects that carry 4-point ``points``."""
    return make_record(
        source=source,
        oid=f"{oid}:detection_obb",
        split=split,
        task="detection",
        images=[image],
        argument="all objects",
        oriented=True,
        answer=format_objects(
            [{"label": o["label"], "obox": corners_to_obbox(o["points"])} for o in objects], size
        ),
        targets={
            "boxes": [_box_target(o) for o in objects],
            "obboxes": [_poly_target(o) for o in objects],
            "count": len(objects),
        },
        meta={"width": size[0], "height": size[1], **(meta or {})},
    )
