"""Scorers of answers with geometry: grounding and referring boxes, detection, referring masks.

Headline metrics (``acc@t``, ``mean_iou``, ``prompt_accuracy``, ``map@0.5``, ``miou``,
``oiou``, ``p@t``) are over prompts whose target exists. Prompts whose target is absent are
scored apart (:func:`~geoassist.eval.scorers_common.absent_metrics`): answering "none" to
everything earns ``absent_accuracy`` 1 and nothing in the headline.

Referring expressions whose records say what they need beyond the class
(``meta.expression_cues``) are also scored by group: ``acc@0.5_class_only`` for expressions
the class alone resolves, ``acc@0.5_beyond_class`` for those that need an attribute, a
position, a relation or an extreme, and ``acc@0.5_needs_<cue>`` for each cue.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np

from geoassist import formats
from geoassist.eval import metrics
from geoassist.eval.normalize import normalize_label
from geoassist.eval.scorers_common import (
    ScoreContext,
    Summary,
    absent_metrics,
    explicit_none,
    rate,
    user_prompt,
)
from geoassist.eval.targets import (
    EvalDataError,
    rasterize_polygons,
    reference_boxes,
    reference_mask,
    reference_oboxes,
)
from geoassist.formats import OBox

__all__ = [
    "grounding_item",
    "grounding_summarize",
    "detection_item",
    "detection_summarize",
    "segmentation_item",
    "segmentation_summarize",
    "enclosing_box",
    "geometry_json",
    "plain_box",
]

# ----------------------------------------------------------------------- box geometry


def enclosing_box(o: OBox) -> tuple[float, float, float, float]:
    corners = o.corners()
    return (*corners.min(axis=0).tolist(), *corners.max(axis=0).tolist())


def _predicted_geometry(
    parsed: formats.ParseResult, oriented: bool
) -> list[tuple[str | None, Any, float | None]]:
    """``(label, geometry, score)`` in output order: oriented boxes for oriented targets
    (horizontal boxes read as angle 0), horizontal boxes otherwise (oriented ones by their
    enclosing box)."""
    if oriented:
        out = [(o.label, o, o.score) for o in parsed.obboxes]
        for b in parsed.boxes:
            x1, y1, x2, y2 = b.box
            out.append(
                (
                    b.label,
                    OBox(b.label, (x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1, 0.0),
                    b.score,
                )
            )
        return out
    out = [(b.label, tuple(b.box), b.score) for b in parsed.boxes]
    out += [(o.label, enclosing_box(o), o.score) for o in parsed.obboxes]
    return out


def _iou_fn(oriented: bool) -> Callable[[Any, Any], float]:
    return formats.obox_iou if oriented else formats.box_iou


def _wants_oriented(record: dict[str, Any]) -> bool:
    """Oriented scoring when the targets are oriented boxes only, or when the record also has
    horizontal boxes but asks for oriented ones (``[detect_obb]``, an ``<obox>`` reference)."""
    targets = record.get("targets") or {}
    if not targets.get("obboxes"):
        return False
    if not targets.get("boxes"):
        return True
    answer = record["answer"] if isinstance(record["answer"], str) else " ".join(record["answer"])
    return "<obox>" in answer or "[detect_obb]" in user_prompt(record)


def _reference_geometry(
    record: dict[str, Any], oriented: bool | None = None
) -> tuple[bool, list[tuple[str | None, Any]]]:
    oriented = _wants_oriented(record) if oriented is None else oriented
    return oriented, (reference_oboxes(record) if oriented else reference_boxes(record))


def geometry_json(geometry: Any) -> list[float]:
    if isinstance(geometry, OBox):
        return [
            round(v, 2)
            for v in (geometry.cx, geometry.cy, geometry.w, geometry.h, geometry.angle_deg)
        ]
    return [round(float(v), 2) for v in geometry]


def plain_box(text: str, size: tuple[int, int]) -> tuple[float, float, float, float] | None:
    """The first four numbers of a plain answer, read as 0–1 fractions when all are <= 1 and as
    pixels otherwise (the CHOICE grounding prompt asks for ``(x1, y1, x2, y2)``)."""
    numbers = [float(v) for v in re.findall(r"[+-]?(?:\d+\.\d*|\.\d+|\d+)", text)][:4]
    if len(numbers) != 4:
        return None
    width, height = size
    if all(0.0 <= v <= 1.0 for v in numbers):
        numbers = [numbers[0] * width, numbers[1] * height, numbers[2] * width, numbers[3] * height]
    x1, y1, x2, y2 = numbers
    return (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))


# ------------------------------------------------------------------------------ grounding


def grounding_item(record: dict[str, Any], prediction: str, ctx: ScoreContext) -> dict[str, Any]:
    parsed = ctx.parse(record, prediction)
    oriented, refs = _reference_geometry(record)
    preds = _predicted_geometry(parsed, oriented)
    has_geometry, none = bool(preds), explicit_none(parsed)
    item: dict[str, Any] = {
        "reference": [geometry_json(g) for _, g in refs] or "none",
        "predicted": [geometry_json(g) for _, g, _ in preds],
        "oriented": oriented,
        "parse_failed": not has_geometry and not none,
        "parse_errors": list(parsed.errors),
    }
    cues = _expression_cues(record)
    if cues is not None:
        item["expression_cues"] = cues
    if not refs:
        item.update(absent=True, false_positive=has_geometry, correct=none and not has_geometry)
        return item
    ious = metrics.match_greedy([g for _, g, _ in preds], [g for _, g in refs], _iou_fn(oriented))
    item.update(
        absent=False,
        ious=[round(v, 6) for v in ious],
        iou=round(float(np.mean(ious)), 6),
        correct=all(v >= 0.5 for v in ious),
    )
    return item


def _expression_cues(record: dict[str, Any]) -> list[str] | None:
    """What the record's referring expression needs beyond its class (``meta.expression_cues``;
    empty: the class alone), or None when the record does not say."""
    cues = (record.get("meta") or {}).get("expression_cues")
    if cues is None:
        return None
    if not isinstance(cues, list) or not all(isinstance(c, str) and c for c in cues):
        raise EvalDataError(
            f"record {record['id']}: meta.expression_cues must be a list of cue names such as "
            f'["attribute", "relation"] (empty for the class alone), got {cues!r}'
        )
    return sorted(set(cues))


def _expression_metrics(present: list[dict[str, Any]]) -> dict[str, Any]:
    """Acc@0.5 of the present targets by what their expressions need (see the module docstring)."""
    described = [it for it in present if "expression_cues" in it]
    groups: dict[str, list[dict[str, Any]]] = {
        "class_only": [it for it in described if not it["expression_cues"]],
        "beyond_class": [it for it in described if it["expression_cues"]],
    }
    for cue in sorted({c for it in described for c in it["expression_cues"]}):
        groups[f"needs_{cue}"] = [it for it in described if cue in it["expression_cues"]]
    out: dict[str, Any] = {}
    for name, group in groups.items():
        if group:
            out[f"acc@0.5_{name}"] = metrics.iou_summary(
                [v for it in group for v in it["ious"]], thresholds=(0.5,)
            )["acc@0.5"]
            out[f"n_{name}"] = len(group)
    return out


def _by_qtype(items: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The items grouped by question type, types in sorted order."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for it in items:
        groups[it["qtype"]].append(it)
    return dict(sorted(groups.items()))


def grounding_summarize(items: list[dict[str, Any]], ctx: ScoreContext) -> Summary:
    present = [it for it in items if not it["absent"]]
    ious = [v for it in present for v in it["ious"]]
    m: dict[str, Any] = metrics.iou_summary(ious)
    m["prompt_accuracy"] = metrics.accuracy([it["correct"] for it in present])
    m["n_targets"] = len(ious)
    m["n_oriented_prompts"] = sum(it["oriented"] for it in present)
    m.update(_expression_metrics(present))
    m.update(absent_metrics([it for it in items if it["absent"]]))
    by_type = {}
    for t, group in _by_qtype(present).items():
        s = metrics.iou_summary([v for it in group for v in it["ious"]])
        by_type[t] = {"accuracy": s["acc@0.5"], **s, "n": len(group)}
    return Summary(m, by_type, rate(items), {"ious": ious})


# ------------------------------------------------------------------------------ detection


def _detection_side(
    record: dict[str, Any], parsed: formats.ParseResult, oriented: bool
) -> tuple[list[tuple[str, Any]], list[tuple[str, Any, float | None, int]]]:
    """Reference ``(class, geometry)`` and predicted ``(class, geometry, score, order)`` of one kind."""
    _, refs = _reference_geometry(record, oriented)
    ref_labels = [normalize_label(label) or "object" for label, _ in refs]
    only_class = ref_labels[0] if len(set(ref_labels)) == 1 else None
    preds = []
    for order, (label, geometry, score) in enumerate(_predicted_geometry(parsed, oriented)):
        name = normalize_label(label) if label else (only_class or "object")
        preds.append((name, geometry, score, order))
    return list(zip(ref_labels, [g for _, g in refs], strict=True)), preds


def _recall(
    refs: list[tuple[str, Any]], preds: list[tuple[str, Any, Any, int]], oriented: bool
) -> float | None:
    """Fraction of targets that a box of their class overlaps with IoU >= 0.5 (one box each)."""
    if not refs:
        return None
    found = 0
    for label in {c for c, _ in refs}:
        same = [g for c, g in refs if c == label]
        guesses = [g for c, g, _, _ in preds if c == label]
        ious = metrics.match_greedy(guesses, same, _iou_fn(oriented), limit=False)
        found += sum(v >= 0.5 for v in ious)
    return found / len(refs)


def detection_item(record: dict[str, Any], prediction: str, ctx: ScoreContext) -> dict[str, Any]:
    parsed = ctx.parse(record, prediction)
    oriented = _wants_oriented(record)
    # Each record counts in the mAP of the kind its prompt asks for (``[detect_obb]`` or an
    # ``<obox>`` reference: oriented; otherwise horizontal).
    refs, preds = _detection_side(record, parsed, oriented)
    has_geometry, none = bool(preds), explicit_none(parsed)
    item: dict[str, Any] = {
        "reference": [{"label": c, "geometry": geometry_json(g)} for c, g in refs],
        "predicted": [
            {"label": c, "geometry": geometry_json(g), "score": s} for c, g, s, _ in preds
        ],
        "oriented": oriented,
        "n_gt": len(refs),
        "n_pred": len(preds),
        "recall@0.5": _recall(refs, preds, oriented),
        "absent": not refs,
        "false_positive": not refs and has_geometry,
        "parse_failed": not has_geometry and not none,
        "parse_errors": list(parsed.errors),
        "_side": (refs, preds),
    }
    if not refs:
        item["correct"] = none and not has_geometry
    return item


def detection_summarize(items: list[dict[str, Any]], ctx: ScoreContext) -> Summary:
    all_preds = [p for it in items for p in it["_side"][1]]
    ranking = "score" if all_preds and all(p[2] is not None for p in all_preds) else "output_order"

    def confidence(score: float | None, order: int) -> float:
        return float(score) if ranking == "score" else 1.0 / (1.0 + order)

    m: dict[str, Any] = {}
    by_type: dict[str, dict[str, Any]] = {}
    for oriented, key in ((False, "map@0.5"), (True, "map@0.5_oriented")):
        subset = [it["_side"] for it in items if it["oriented"] == oriented]
        if not subset:
            continue
        # Images without targets stay in: a box there is a false positive that lowers the
        # precision of its class, and saying "none" there adds nothing to any class's AP.
        result = metrics.detection_map(
            [[(c, g, confidence(s, o)) for c, g, s, o in preds] for _, preds in subset],
            [refs for refs, _ in subset],
            _iou_fn(oriented),
        )
        m[key] = result["map"]
        for label, entry in result["per_class"].items():
            by_type[f"{label} (oriented)" if oriented else label] = {**entry, "n": entry["n_gt"]}
    m["n_images"] = len(items)
    m["n_gt"] = sum(it["n_gt"] for it in items)
    m["n_pred"] = sum(it["n_pred"] for it in items)
    m.update(absent_metrics([it for it in items if it["absent"]]))
    return Summary(m, by_type, rate(items), {"protocol": {"ranking": ranking}})


# ------------------------------------------------------------------------- segmentation


def _predicted_mask(parsed: formats.ParseResult, size: tuple[int, int]) -> np.ndarray | None:
    if parsed.mask is not None:
        return parsed.mask
    if parsed.polygons:
        return rasterize_polygons([p.points for p in parsed.polygons], size)
    return None


def segmentation_item(record: dict[str, Any], prediction: str, ctx: ScoreContext) -> dict[str, Any]:
    size = ctx.size(record)
    parsed = ctx.parse(record, prediction)
    predicted = _predicted_mask(parsed, size)
    reference = reference_mask(record, size, ctx.image_root)
    none = explicit_none(parsed)
    item: dict[str, Any] = {
        "reference": f"mask, {int(reference.sum())} px",
        "parse_failed": predicted is None and not none,
        "parse_errors": list(parsed.errors),
    }
    if not reference.any():
        # Nothing to find: scored apart. An empty mask says "none" as well as the word does.
        false_positive = predicted is not None and bool(predicted.any())
        said_none = none or (predicted is not None and not false_positive)
        item.update(absent=True, false_positive=false_positive, correct=said_none)
        return item
    inter, union = metrics.mask_intersection_union(predicted, reference)
    iou = inter / union
    item.update(
        absent=False,
        intersection=inter,
        union=union,
        iou=round(iou, 6),
        correct=iou >= 0.5,
    )
    return item


def _segmentation_scores(items: list[dict[str, Any]]) -> dict[str, Any]:
    return metrics.segmentation_summary(
        [it["intersection"] for it in items], [it["union"] for it in items]
    )


def segmentation_summarize(items: list[dict[str, Any]], ctx: ScoreContext) -> Summary:
    present = [it for it in items if not it["absent"]]
    m: dict[str, Any] = _segmentation_scores(present)
    m["n_present"] = len(present)
    m.update(absent_metrics([it for it in items if it["absent"]]))
    by_type = {}
    for t, group in _by_qtype(present).items():
        s = _segmentation_scores(group)
        by_type[t] = {"accuracy": s["p@0.5"], "miou": s["miou"], "oiou": s["oiou"], "n": len(group)}
    return Summary(m, by_type, rate(items), {"ious": [it["iou"] for it in present]})
