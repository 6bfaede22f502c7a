"""Scoring one prediction against one record, and summarising a task's items.

Each scorer has ``item(record, prediction, ctx) -> dict`` (one line of ``predictions.jsonl``;
keys starting with ``_`` stay in memory only) and ``summarize(items, ctx) -> Summary``. This
module holds the text scorers (QA, captions, scene classes, CHOICE) and :data:`SCORERS`, the
registry of every scorer; answers with geometry are scored in
:mod:`geoassist.eval.scorers_geometry` and grounded knowledge answers in
:mod:`geoassist.eval.scorers_knowledge`. The shared types are in
:mod:`geoassist.eval.scorers_common`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from typing import Any

from geoassist import formats
from geoassist.eval import metrics
from geoassist.eval.normalize import (
    AnswerPool,
    answer_tokens,
    choice_letter,
    choice_options,
    exact_match,
    lenient_match,
    named_answers,
    normalize_label,
    read_number,
)
from geoassist.eval.scorers_change import CHANGE_SCORERS
from geoassist.eval.scorers_common import (
    GRAMMARS,
    ScoreContext,
    Scorer,
    Summary,
    rate,
    reference_text,
    user_prompt,
)
from geoassist.eval.scorers_geometry import (
    detection_item,
    detection_summarize,
    enclosing_box,
    geometry_json,
    grounding_item,
    grounding_summarize,
    plain_box,
    segmentation_item,
    segmentation_summarize,
)
from geoassist.eval.scorers_knowledge import knowledge_item, knowledge_summarize
from geoassist.eval.targets import EvalDataError, reference_boxes
from geoassist.formats import Box

__all__ = [
    "ScoreContext",
    "Summary",
    "Scorer",
    "SCORERS",
    "GRAMMARS",
    "user_prompt",
    "reference_text",
]

COUNT_TYPES = frozenset({"count", "counting", "number", "object_counting"})
# Sources whose counting answers are also scored in the RSVQA paper's bins (RSVQA-LR).
BINNED_COUNT_SOURCES = frozenset({"rsvqa_lr"})
LENIENT_PROTOCOL = (
    "the normalised reference appears in the normalised prediction as whole words, and the "
    "prediction names no other answer: not both yes and no, no number the reference lacks, "
    "no other answer of the question's type in the data"
)
SCENE_LENIENT_PROTOCOL = (
    "the reference class is the one class of the data that the prediction names as whole words"
)

# ----------------------------------------------------------------------------------- QA


def _count_reference(record: dict[str, Any]) -> float | None:
    """The true count of a counting question (``targets.count``, else the number in the answer)."""
    if record["task"] != "counting" and str(record.get("qtype") or "").lower() not in COUNT_TYPES:
        return None
    count = (record.get("targets") or {}).get("count")
    if isinstance(count, int):
        return float(count)
    answer = record["answer"]
    return read_number(answer) if isinstance(answer, str) else None


def qa_item(record: dict[str, Any], prediction: str, ctx: ScoreContext) -> dict[str, Any]:
    reference = reference_text(record)
    item: dict[str, Any] = {
        "correct": exact_match(prediction, reference),
        # yes/no and numbers are checked here; summarize also checks the other answers of
        # the question's type in the data
        "lenient": lenient_match(prediction, reference),
        "parse_failed": not prediction.strip(),
    }
    count = _count_reference(record)
    if count is not None:
        item["count_reference"] = count
        item["count_predicted"] = read_number(prediction)
        source = str(record.get("source") or record["id"].split(":", 1)[0])
        item["count_binned"] = source in BINNED_COUNT_SOURCES
    return item


def _as_list(reference: str | list[str]) -> list[str]:
    return [reference] if isinstance(reference, str) else [str(r) for r in reference]


def _type_pools(items: list[dict[str, Any]]) -> dict[str, AnswerPool]:
    """The answers of each question type in the data: the candidates a lenient answer must not
    name besides its own (``"urban or rural"`` names two land-cover answers)."""
    answers: dict[str, list[str]] = defaultdict(list)
    for it in items:
        answers[it["qtype"]] += _as_list(it["reference"])
    return {t: AnswerPool.of(a) for t, a in answers.items()}


def _check_lenient(items: list[dict[str, Any]], check: Callable[[dict[str, Any]], bool]) -> None:
    """Settle each item's lenient flag against the candidates of the data it was first
    summarised with (the whole task); later summaries of subsets (splits, bootstrap draws)
    keep that decision instead of judging against fewer candidates."""
    for it in items:
        if not it.get("_lenient_checked"):
            it["lenient"] = check(it)
            it["_lenient_checked"] = True


def qa_summarize(items: list[dict[str, Any]], ctx: ScoreContext) -> Summary:
    if not all(it.get("_lenient_checked") for it in items):
        pools = _type_pools(items)
        _check_lenient(
            items,
            lambda it: lenient_match(it["prediction"], it["reference"], pools[it["qtype"]]),
        )
    counts = {
        i: (it["count_predicted"], it["count_reference"])
        for i, it in enumerate(items)
        if "count_reference" in it
    }
    m, by_type = metrics.qa_summary(
        [it["qtype"] for it in items],
        [it["correct"] for it in items],
        [it["lenient"] for it in items],
        counts,
        binned=[i for i in counts if items[i].get("count_binned")],
    )
    return Summary(m, by_type, rate(items), {"protocol": {"lenient": LENIENT_PROTOCOL}})


# ------------------------------------------------------------------------------ captions


def _references(record: dict[str, Any]) -> list[str]:
    answer = record["answer"]
    refs = [answer] if isinstance(answer, str) else list(answer)
    if not refs:
        raise EvalDataError(f"record {record['id']} has no reference caption")
    return refs


def caption_item(record: dict[str, Any], prediction: str, ctx: ScoreContext) -> dict[str, Any]:
    return {"parse_failed": not prediction.strip(), "_references": _references(record)}


def caption_summarize(items: list[dict[str, Any]], ctx: ScoreContext) -> Summary:
    predictions = {it["id"]: it["prediction"] for it in items}
    references = {it["id"]: it["_references"] for it in items}
    scores, per_item = metrics.caption_metrics(predictions, references, spice=ctx.spice)
    for it in items:
        it.update({k: round(v, 6) for k, v in per_item.get(it["id"], {}).items()})
    return Summary(dict(scores), {}, rate(items))


# ------------------------------------------------------------------------ classification


def _label_tokens(text: str) -> list[str]:
    return [
        t[:-1] if len(t) > 3 and t.endswith("s") and not t.endswith("ss") else t
        for t in answer_tokens(text.replace("_", " "))
    ]


def scene_item(record: dict[str, Any], prediction: str, ctx: ScoreContext) -> dict[str, Any]:
    reference = normalize_label(
        record["answer"] if isinstance(record["answer"], str) else record["answer"][0]
    )
    predicted = normalize_label(prediction)
    return {
        "reference_class": reference,
        "predicted_class": predicted,
        "correct": bool(predicted) and predicted == reference,
        # summarize: the reference class is the only class of the data the answer names
        "lenient": False,
        "parse_failed": not predicted,
    }


def _scene_lenient(prediction: str, reference: str, classes: AnswerPool) -> bool:
    ref_tokens = _label_tokens(reference)
    return bool(ref_tokens) and named_answers(_label_tokens(prediction), classes, [ref_tokens]) == {
        " ".join(ref_tokens)
    }


def scene_summarize(items: list[dict[str, Any]], ctx: ScoreContext) -> Summary:
    refs = [it["reference_class"] for it in items]
    classes = sorted(set(refs))
    pool = AnswerPool.of(classes, _label_tokens)
    _check_lenient(items, lambda it: _scene_lenient(it["prediction"], it["reference_class"], pool))
    preds = [it["predicted_class"] if it["predicted_class"] in classes else None for it in items]
    result = metrics.classification_summary(preds, refs, classes)
    by_type = {}
    for c in classes:
        members = [it for it in items if it["reference_class"] == c]
        by_type[c] = {
            "accuracy": result["per_class_accuracy"][c],
            "lenient": metrics.accuracy([it["lenient"] for it in members]),
            "n": len(members),
        }
    m = {
        "top1_accuracy": result["top1_accuracy"],
        "lenient_top1_accuracy": metrics.accuracy([it["lenient"] for it in items]),
        "mean_class_accuracy": result["mean_class_accuracy"],
    }
    extra = {"confusion": result["confusion"], "protocol": {"lenient": SCENE_LENIENT_PROTOCOL}}
    return Summary(m, by_type, rate(items), extra)


# --------------------------------------------------------------------------------- CHOICE


def choice_item(record: dict[str, Any], prediction: str, ctx: ScoreContext) -> dict[str, Any]:
    item = _choice_item(record, prediction, ctx)
    # CHOICE groups its tasks under two dimensions, "perception" and "reasoning".
    item["_group"] = str((record.get("meta") or {}).get("dimension") or "")
    return item


def _choice_item(record: dict[str, Any], prediction: str, ctx: ScoreContext) -> dict[str, Any]:
    if record["task"] == "refer_seg":
        item = segmentation_item(record, prediction, ctx)
        item["lenient"] = item["correct"]
        return item
    if record["task"] == "grounding":
        size = ctx.size(record)
        parsed = ctx.parse(record, prediction)
        boxes = [b.box for b in parsed.boxes] + [enclosing_box(o) for o in parsed.obboxes]
        box = boxes[0] if boxes else plain_box(prediction, size)
        ref = reference_boxes(record)[0][1]
        iou = formats.box_iou(Box(None, box), ref) if box else 0.0
        return {
            "reference": geometry_json(ref),
            "predicted": geometry_json(box) if box else None,
            "iou": round(iou, 6),
            "correct": iou >= 0.5,
            "lenient": iou >= 0.5,
            "parse_failed": box is None,
        }
    meta = record.get("meta") or {}
    options = meta.get("options") or choice_options(user_prompt(record))
    answer = str(record["answer"]).strip().upper()
    strict = choice_letter(prediction, options)
    return {
        "predicted_option": strict,
        "correct": strict == answer,
        "lenient": choice_letter(prediction, options, lenient=True) == answer,
        "parse_failed": strict is None,
    }


def choice_summarize(items: list[dict[str, Any]], ctx: ScoreContext) -> Summary:
    m, by_type = metrics.qa_summary(
        [it["qtype"] for it in items],
        [it["correct"] for it in items],
        [it["lenient"] for it in items],
    )
    groups: dict[str, list[bool]] = defaultdict(list)
    for it in items:
        if it.get("_group"):
            groups[it["_group"]].append(it["correct"])
    for group, flags in sorted(groups.items()):
        m[f"{group}_accuracy"] = metrics.accuracy(flags)
    ious = [it["iou"] for it in items if "iou" in it]
    return Summary(m, by_type, rate(items), {"ious": ious} if ious else {})


SCORERS: dict[str, Scorer] = {
    "qa": Scorer("qa", qa_item, qa_summarize),
    "caption": Scorer("caption", caption_item, caption_summarize),
    "grounding": Scorer("grounding", grounding_item, grounding_summarize),
    "detection": Scorer("detection", detection_item, detection_summarize),
    "scene_cls": Scorer("scene_cls", scene_item, scene_summarize),
    "refer_seg": Scorer("refer_seg", segmentation_item, segmentation_summarize),
    "choice": Scorer("choice", choice_item, choice_summarize),
    "knowledge": Scorer("knowledge", knowledge_item, knowledge_summarize),
    **CHANGE_SCORERS,
}
