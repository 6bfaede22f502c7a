"""Pure metric functions: numbers in, numbers out, no files and no model.

Every accuracy is a fraction in [0, 1]. Geometry is in pixels of the original image and IoU
has no +1 term (:func:`geoassist.formats.box_iou`); an IoU threshold ``t`` counts ``iou >= t``.
Caption metrics (which run the COCO caption toolkit in Java) are in
:mod:`geoassist.eval.caption` and re-exported here as :func:`caption_metrics`.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Hashable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

__all__ = [
    "accuracy",
    "mean",
    "qa_summary",
    "count_metrics",
    "RSVQA_COUNT_BINS",
    "rsvqa_count_bin",
    "count_binned_accuracy",
    "match_greedy",
    "iou_summary",
    "average_precision",
    "detection_map",
    "classification_summary",
    "mask_intersection_union",
    "segmentation_summary",
    "caption_metrics",
]

G = TypeVar("G")

SEG_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)


def accuracy(flags: Sequence[bool]) -> float | None:
    """Fraction of true values; None for an empty sequence (no items, no score)."""
    return sum(bool(f) for f in flags) / len(flags) if len(flags) else None


def mean(values: Sequence[float]) -> float | None:
    return float(sum(values) / len(values)) if len(values) else None


def count_metrics(pairs: Sequence[tuple[float | None, float]]) -> dict[str, float | None]:
    """Counting scores from ``(predicted, reference)`` pairs; ``predicted`` is None when unreadable.

    ``count_exact_accuracy`` is the share whose predicted number equals the true count (an
    unreadable count is wrong); ``count_rmse`` and ``count_mae`` are over the readable
    predictions; ``count_within_1`` is over all of them (an unreadable count is not within 1);
    ``count_unreadable_rate`` says how many had no number at all.
    """
    if not pairs:
        return {
            "count_exact_accuracy": None,
            "count_rmse": None,
            "count_mae": None,
            "count_within_1": None,
            "count_unreadable_rate": None,
        }
    readable = [(p, r) for p, r in pairs if p is not None]
    errors = [p - r for p, r in readable]
    return {
        "count_exact_accuracy": sum(e == 0 for e in errors) / len(pairs),
        "count_rmse": math.sqrt(sum(e * e for e in errors) / len(errors)) if errors else None,
        "count_mae": sum(abs(e) for e in errors) / len(errors) if errors else None,
        "count_within_1": sum(abs(e) <= 1 for e in errors) / len(pairs),
        "count_unreadable_rate": 1 - len(readable) / len(pairs),
    }


# Upper ends of the count bins the RSVQA paper (Lobry et al., 2020) scores low-resolution
# counting answers in: 0, 1-10, 11-100, 101-1000, and more than 1000.
RSVQA_COUNT_BINS = (0, 10, 100, 1000)


def rsvqa_count_bin(count: float | None) -> int | None:
    """The RSVQA bin of a count (0: none, 1: 1-10, 2: 11-100, 3: 101-1000, 4: more than 1000);
    None for an unreadable or negative count. Counts are rounded to whole objects first."""
    if count is None or not math.isfinite(count) or count < 0:
        return None
    whole = round(count)
    for i, upper in enumerate(RSVQA_COUNT_BINS):
        if whole <= upper:
            return i
    return len(RSVQA_COUNT_BINS)


def count_binned_accuracy(pairs: Sequence[tuple[float | None, float]]) -> float | None:
    """Share of ``(predicted, reference)`` counts in the same RSVQA bin (unreadable: wrong)."""
    return accuracy([p is not None and rsvqa_count_bin(p) == rsvqa_count_bin(r) for p, r in pairs])


def qa_summary(
    types: Sequence[str],
    strict: Sequence[bool],
    lenient: Sequence[bool],
    counts: Mapping[int, tuple[float | None, float]] | None = None,
    *,
    binned: Collection[int] = (),
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """Overall and per-type accuracy of question answering.

    ``types[i]`` is the question type of item ``i``; ``counts`` maps item indexes of counting
    questions to ``(predicted, reference)`` numbers, and ``binned`` names those of them that
    are also scored in RSVQA's count bins (RSVQA-LR). Returns ``(metrics, by_type)``, where
    ``metrics`` holds ``overall_accuracy`` (OA, over items), ``average_accuracy`` (AA, the mean of
    the per-type accuracies) and their lenient twins, plus the :func:`count_metrics` when there
    are counting questions and ``count_binned_accuracy`` when some are binned.
    """
    if not (len(types) == len(strict) == len(lenient)):
        raise ValueError("types, strict and lenient must have one entry per item")
    counts = counts or {}
    if set(binned) - set(counts):
        raise ValueError("binned names items that have no count")
    groups: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(types):
        groups[t].append(i)
    by_type: dict[str, dict[str, Any]] = {}
    for t in sorted(groups):
        idx = groups[t]
        entry: dict[str, Any] = {
            "accuracy": accuracy([strict[i] for i in idx]),
            "lenient": accuracy([lenient[i] for i in idx]),
            "n": len(idx),
        }
        entry.update(_count_entry(idx, counts, binned))
        by_type[t] = entry
    metrics: dict[str, Any] = {
        "overall_accuracy": accuracy(strict),
        "average_accuracy": mean([e["accuracy"] for e in by_type.values()]),
        "lenient_overall_accuracy": accuracy(lenient),
        "lenient_average_accuracy": mean([e["lenient"] for e in by_type.values()]),
    }
    metrics.update(_count_entry(range(len(types)), counts, binned))
    return metrics, by_type


def _count_entry(
    idx: Sequence[int] | range,
    counts: Mapping[int, tuple[float | None, float]],
    binned: Collection[int],
) -> dict[str, Any]:
    pairs = [counts[i] for i in idx if i in counts]
    if not pairs:
        return {}
    out: dict[str, Any] = count_metrics(pairs)
    in_bins = [counts[i] for i in idx if i in binned]
    if in_bins:
        out["count_binned_accuracy"] = count_binned_accuracy(in_bins)
    return out


def match_greedy(
    predicted: Sequence[G],
    reference: Sequence[G],
    iou: Callable[[G, G], float],
    *,
    limit: bool = True,
) -> list[float]:
    """One-to-one matching by highest IoU first; returns each reference's IoU (0.0 if unmatched).

    With ``limit`` (the default, for grounding) only as many predictions as there are
    references take part, in the order given, so answering with many guesses cannot raise the
    score.
    """
    predicted = list(predicted)[: len(reference)] if limit else list(predicted)
    pairs = sorted(
        ((iou(p, r), i, j) for i, p in enumerate(predicted) for j, r in enumerate(reference)),
        key=lambda x: (-x[0], x[1], x[2]),
    )
    used_p: set[int] = set()
    result = [0.0] * len(reference)
    used_r: set[int] = set()
    for value, i, j in pairs:
        if i in used_p or j in used_r or value <= 0.0:
            continue
        used_p.add(i)
        used_r.add(j)
        result[j] = float(value)
    return result


def iou_summary(
    ious: Sequence[float], thresholds: Sequence[float] = (0.5, 0.25)
) -> dict[str, float | None]:
    """``acc@t`` (fraction with IoU >= t) for each threshold, and ``mean_iou``."""
    out: dict[str, float | None] = {
        f"acc@{t:g}": accuracy([v >= t for v in ious]) for t in thresholds
    }
    out["mean_iou"] = mean(list(ious))
    return out


def average_precision(recall: Sequence[float], precision: Sequence[float]) -> float:
    """Area under the precision–recall curve with the precision envelope (all points, VOC 2010+).

    ``recall`` and ``precision`` follow the ranked detections, one value per detection.
    """
    r = np.concatenate([[0.0], np.asarray(recall, dtype=float), [1.0]])
    p = np.concatenate([[0.0], np.asarray(precision, dtype=float), [0.0]])
    for i in range(len(p) - 2, -1, -1):
        p[i] = max(p[i], p[i + 1])
    steps = np.flatnonzero(r[1:] != r[:-1])
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


def detection_map(
    detections: Sequence[Sequence[tuple[Hashable, G, float]]],
    ground_truth: Sequence[Sequence[tuple[Hashable, G]]],
    iou: Callable[[G, G], float],
    iou_threshold: float = 0.5,
) -> dict[str, Any]:
    """Mean average precision over classes, VOC style.

    ``detections[k]`` and ``ground_truth[k]`` belong to image ``k``: ``(label, geometry, score)``
    and ``(label, geometry)``. Detections of a class are ranked by score over all images (ties
    keep image order, then the order within the image); each one is a true positive when its
    best-overlapping, not yet matched ground truth of that class reaches ``iou_threshold``.
    Classes without ground truth get no AP and are left out of the mean.
    Returns ``{"map", "per_class": {label: {"ap", "n_gt", "n_det"}}}``.
    """
    if len(detections) != len(ground_truth):
        raise ValueError("detections and ground_truth must have one entry per image")
    n_gt: Counter = Counter(label for image in ground_truth for label, _ in image)
    ranked: dict[Hashable, list[tuple[float, int, int, G]]] = defaultdict(list)
    for k, image in enumerate(detections):
        for order, (label, geometry, score) in enumerate(image):
            ranked[label].append((float(score), k, order, geometry))
    per_class: dict[Hashable, dict[str, Any]] = {}
    for label in sorted(set(n_gt) | set(ranked), key=str):
        dets = sorted(ranked.get(label, []), key=lambda d: (-d[0], d[1], d[2]))
        if n_gt[label] == 0:
            per_class[label] = {"ap": None, "n_gt": 0, "n_det": len(dets)}
            continue
        matched: dict[int, set[int]] = defaultdict(set)
        tp = np.zeros(len(dets))
        for d, (_, k, _, geometry) in enumerate(dets):
            best, best_j = 0.0, -1
            for j, (gt_label, gt_geometry) in enumerate(ground_truth[k]):
                if gt_label != label:
                    continue
                value = iou(geometry, gt_geometry)
                if value > best:
                    best, best_j = value, j
            if best_j >= 0 and best >= iou_threshold and best_j not in matched[k]:
                matched[k].add(best_j)
                tp[d] = 1.0
        cum_tp = np.cumsum(tp)
        recall = cum_tp / n_gt[label]
        precision = cum_tp / np.arange(1, len(dets) + 1) if len(dets) else np.zeros(0)
        per_class[label] = {
            "ap": average_precision(recall, precision) if len(dets) else 0.0,
            "n_gt": int(n_gt[label]),
            "n_det": len(dets),
        }
    aps = [v["ap"] for v in per_class.values() if v["ap"] is not None]
    return {"map": mean(aps), "per_class": per_class}


def classification_summary(
    predicted: Sequence[str | None], reference: Sequence[str], classes: Sequence[str] | None = None
) -> dict[str, Any]:
    """Top-1 accuracy, per-class accuracy (recall) and the confusion matrix.

    Labels are compared as given (normalise them first). ``classes`` fixes the order of the
    matrix (default: the sorted reference labels); rows are references, columns predictions,
    and the last column, ``(other)``, holds predictions outside ``classes`` (empty ones too).
    """
    if len(predicted) != len(reference):
        raise ValueError("predicted and reference must have the same length")
    labels = list(classes) if classes is not None else sorted(set(reference))
    index = {c: i for i, c in enumerate(labels)}
    matrix = np.zeros((len(labels), len(labels) + 1), dtype=np.int64)
    for p, r in zip(predicted, reference, strict=True):
        if r not in index:
            raise ValueError(f"reference label {r!r} is not among the classes")
        matrix[index[r], index.get(p, len(labels)) if p is not None else len(labels)] += 1
    per_class = {
        c: (float(matrix[i, i] / matrix[i].sum()) if matrix[i].sum() else None)
        for c, i in index.items()
    }
    return {
        "top1_accuracy": accuracy([p == r for p, r in zip(predicted, reference, strict=True)]),
        "mean_class_accuracy": mean([v for v in per_class.values() if v is not None]),
        "per_class_accuracy": per_class,
        "confusion": {"labels": labels, "columns": [*labels, "(other)"], "matrix": matrix.tolist()},
    }


def mask_intersection_union(predicted: np.ndarray | None, reference: np.ndarray) -> tuple[int, int]:
    """Pixel counts of intersection and union of two boolean masks (None predicts nothing)."""
    reference = np.asarray(reference, dtype=bool)
    if predicted is None:
        return 0, int(reference.sum())
    predicted = np.asarray(predicted, dtype=bool)
    if predicted.shape != reference.shape:
        raise ValueError(
            f"mask shapes differ: predicted {predicted.shape}, reference {reference.shape}"
        )
    return int(np.logical_and(predicted, reference).sum()), int(
        np.logical_or(predicted, reference).sum()
    )


def segmentation_summary(
    intersections: Sequence[int],
    unions: Sequence[int],
    thresholds: Sequence[float] = SEG_THRESHOLDS,
) -> dict[str, float | None]:
    """Referring-segmentation scores over prompts whose target exists: ``miou`` (mean of
    per-item IoU), ``oiou`` (total intersection over total union) and ``p@t`` (fraction of
    items with IoU >= t).

    A prompt without a target has no IoU (an empty answer to it would score 1 and let "none"
    everywhere raise ``miou``); score those apart, as the scorers' ``absent_accuracy`` does.
    """
    if len(intersections) != len(unions):
        raise ValueError("intersections and unions must have one entry per item")
    if any(u <= 0 for u in unions):
        raise ValueError(
            "segmentation_summary takes prompts whose target exists (union > 0); "
            "score prompts without a target apart (absent_accuracy)"
        )
    ious = [i / u for i, u in zip(intersections, unions, strict=True)]
    out: dict[str, float | None] = {
        "miou": mean(ious),
        "oiou": (sum(intersections) / sum(unions)) if sum(unions) else None,
    }
    for t in thresholds:
        out[f"p@{t:g}"] = accuracy([v >= t for v in ious])
    return out


def caption_metrics(
    predictions: Mapping[str, str], references: Mapping[str, Sequence[str]], *, spice: bool = False
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """BLEU-1…4, METEOR, ROUGE-L and CIDEr with the COCO caption protocol (see :mod:`.caption`)."""
    from geoassist.eval.caption import caption_metrics as _caption_metrics

    return _caption_metrics(predictions, references, spice=spice)
