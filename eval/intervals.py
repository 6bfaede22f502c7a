"""95 % bootstrap intervals for every accuracy (and visual gain) in a report, resampled by image.

Items are resampled in clusters: all the items of one image (all the questions about one RSVQA
image, every prompt about one scene; the two images of a change pair count as one) are drawn
together, because they are not independent. Each of :data:`N_RESAMPLES` seeded draws takes as
many images as the evaluation has, with replacement, and scores them again with the task's own
scorer; the interval is the 2.5th and 97.5th percentile of the redrawn values. A visual gain is
redrawn *paired*: the same images, scored with the real image and with the control image.

Accuracies are shares of items right, so a draw's accuracy is a ratio of per-image sums and all
:data:`N_RESAMPLES` draws cost one matrix product; whether a value is such a plain mean is
checked, not assumed (each item is scored alone and the mean compared with the whole). Other
values (``average_accuracy``, a mean over types) are scored again on the first
:data:`RESCORED_DRAWS` draws.

An interval sits beside its value under the same name with ``_ci95`` appended:
``metrics["overall_accuracy_ci95"] = [lo, hi]``, ``by_type["presence"]["accuracy_ci95"]``,
``by_type["presence"]["visual_gain_shuffled_ci95"]``. Mean-IoU, mAP and caption metrics have
none (they are not accuracies, and mAP and CIDEr are too slow to score a thousand times).
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

N_RESAMPLES = 1000
RESCORED_DRAWS = 100  # draws scored again for values that are not plain means (see bootstrap)
SEED = 0
CI_SUFFIX = "_ci95"  # an interval's name: its value's name with this appended
# Scorers whose summaries are redrawn; the others report no accuracy to put an interval on.
RESAMPLED_SCORERS = ("qa", "grounding", "scene_cls", "refer_seg", "choice", "knowledge")
_ACCURACY = re.compile(r"(^|_)(accuracy|lenient)($|_)|^acc@|^p@|within_1$")

Values = dict[tuple[str, ...], float]


def is_accuracy(name: str) -> bool:
    """Whether a metric is a share of items right (its interval is reported)."""
    return bool(_ACCURACY.search(name))


def image_cluster(record: Mapping[str, Any]) -> str:
    """The resampling unit of a record: its image (or pair); its own id when it has none."""
    images = record.get("images") or []
    return "\x1f".join(images) if images else f"id:{record['id']}"


def accuracy_values(metrics: Mapping[str, Any], by_type: Mapping[str, Any]) -> Values:
    """The accuracies of a summary, keyed ``("metrics", name)`` / ``("by_type", type, name)``."""

    def wanted(name: str, value: Any) -> bool:
        return is_accuracy(name) and isinstance(value, (int, float)) and not isinstance(value, bool)

    out: Values = {("metrics", k): float(v) for k, v in metrics.items() if wanted(k, v)}
    for kind, entry in by_type.items():
        if isinstance(entry, Mapping):
            out.update(
                {("by_type", str(kind), k): float(v) for k, v in entry.items() if wanted(k, v)}
            )
    return out


def _cluster_index(clusters: Sequence[str]) -> tuple[np.ndarray, int]:
    """Each item's cluster number, and the number of clusters."""
    numbers: dict[str, int] = {}
    index = np.asarray([numbers.setdefault(c, len(numbers)) for c in clusters], dtype=np.int64)
    return index, len(numbers)


def draw_counts(n_clusters: int, n: int = N_RESAMPLES, seed: int = SEED) -> np.ndarray:
    """``n`` seeded draws of ``n_clusters`` images with replacement: how often each is drawn."""
    rng = np.random.default_rng(seed)
    picked = rng.integers(0, n_clusters, size=(n, n_clusters))
    counts = np.zeros((n, n_clusters), dtype=np.int64)
    np.add.at(counts, (np.arange(n)[:, None], picked), 1)
    return counts


def draws(clusters: Sequence[str], n: int = N_RESAMPLES, seed: int = SEED) -> list[np.ndarray]:
    """``n`` seeded resamples of item indices, drawn image by image with replacement."""
    index, n_clusters = _cluster_index(clusters)
    if n_clusters == 0:
        return []
    members = [np.flatnonzero(index == c) for c in range(n_clusters)]
    return [
        np.concatenate([np.repeat(members[c], k) for c, k in enumerate(row) if k] or [index[:0]])
        for row in draw_counts(n_clusters, n, seed)
    ]


def redraw(items: Sequence[dict[str, Any]], indices: np.ndarray) -> list[dict[str, Any]]:
    """Copies of the drawn items, each with its own id (a scorer may key items by id)."""
    out = []
    for n, i in enumerate(indices.tolist()):
        item = dict(items[i])
        item["id"] = f"{item['id']}#{n}"
        out.append(item)
    return out


def percentile_interval(samples: Sequence[float]) -> list[float] | None:
    values = np.asarray([s for s in samples if s is not None and np.isfinite(s)], dtype=float)
    if values.size == 0:
        return None
    lo, hi = np.percentile(values, [2.5, 97.5])
    return [round(float(lo), 6), round(float(hi), 6)]


def _contributions(
    summarize: Callable[[list[dict[str, Any]]], Values], items: Sequence[dict[str, Any]]
) -> tuple[Values, dict[tuple[str, ...], np.ndarray]]:
    """The summary, and for each value that is a plain mean over items (an accuracy: the share
    of its items that are right), each item's own value (NaN where the item does not count).

    Such values are redrawn exactly and fast as ratios of per-image sums; the others (an
    average over types, say) are redrawn by scoring resampled items again."""
    whole = summarize([dict(item) for item in items])  # copies: a scorer may write to items
    try:
        singles = [summarize([dict(item)]) for item in items]
    except Exception as exc:  # a scorer that cannot summarise one item: rescore draws instead
        logger.debug("per-item summaries failed (%s); intervals by rescoring", exc)
        return whole, {}
    linear: dict[tuple[str, ...], np.ndarray] = {}
    for key, value in whole.items():
        own = np.asarray([one.get(key, np.nan) for one in singles], dtype=float)
        present = ~np.isnan(own)
        if present.any() and abs(float(own[present].mean()) - value) < 1e-9:
            linear[key] = own
    return whole, linear


def _ratio_draws(own: np.ndarray, index: np.ndarray, counts: np.ndarray, n_clusters: int):
    present = ~np.isnan(own)
    sums = np.bincount(index[present], weights=own[present], minlength=n_clusters)
    sizes = np.bincount(index[present], minlength=n_clusters).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (counts @ sums) / (counts @ sizes)  # NaN when a draw holds none of its items


def _fast_draws(
    whole: Values,
    linear: Mapping[tuple[str, ...], np.ndarray],
    index: np.ndarray,
    counts: np.ndarray,
    n_clusters: int,
) -> dict[tuple[str, ...], np.ndarray]:
    """Redrawn plain means, and the values that are averages of per-type plain means
    (``average_accuracy``: the mean of the types' accuracies), all from per-image sums."""
    out = {key: _ratio_draws(own, index, counts, n_clusters) for key, own in linear.items()}
    per_field: dict[str, list[tuple[str, ...]]] = {}
    for key in whole:
        if key[0] == "by_type":
            per_field.setdefault(key[2], []).append(key)
    for key, value in whole.items():
        if key in out or key[0] != "metrics":
            continue
        for keys in per_field.values():
            if (
                all(k in out for k in keys)
                and abs(np.mean([whole[k] for k in keys]) - value) < 1e-9
            ):
                with np.errstate(invalid="ignore"), warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)  # a draw without a type
                    out[key] = np.nanmean(np.stack([out[k] for k in keys]), axis=0)
                break
    return out


def bootstrap(
    summarize: Callable[[list[dict[str, Any]]], Values],
    items: Sequence[dict[str, Any]],
    clusters: Sequence[str],
    paired: Mapping[str, tuple[Sequence[dict[str, Any]], Sequence[int | None]]] | None = None,
    *,
    n: int = N_RESAMPLES,
    seed: int = SEED,
    rescored: int = RESCORED_DRAWS,
) -> tuple[dict[tuple[str, ...], list[float] | None], dict[str, dict]]:
    """Intervals of the accuracies ``summarize`` returns, and of the gains over paired controls.

    ``paired`` maps a control name to ``(control items, control index of each item or None)``;
    the gain of a value is the item set's minus the control's, on the same draw of images.
    Plain means (every per-type accuracy) use all ``n`` draws; other values are scored again on
    the first ``rescored`` draws. Returns ``(intervals, {control: gain intervals})``.
    """
    index, n_clusters = _cluster_index(clusters)
    if n_clusters == 0 or n <= 0:
        return {}, {name: {} for name in paired or {}}
    counts = draw_counts(n_clusters, n, seed)
    slow = draws(clusters, min(n, rescored), seed)  # the first draws of the same sequence
    whole, linear = _contributions(summarize, items)

    samples: dict[tuple[str, ...], list[float]] = {
        key: v.tolist() for key, v in _fast_draws(whole, linear, index, counts, n_clusters).items()
    }
    rest = [k for k in whole if k not in samples]
    if rest:
        for indices in slow:
            values = summarize(redraw(items, indices))
            for key in rest:
                if key in values:
                    samples.setdefault(key, []).append(values[key])
    intervals = {key: percentile_interval(v) for key, v in samples.items()}
    gain_intervals: dict[str, dict] = {}
    for name, (control_items, position) in (paired or {}).items():
        asked = np.asarray([p is not None for p in position])
        if not asked.any():
            gain_intervals[name] = {}
            continue
        ours_items = [it for it, a in zip(items, asked, strict=True) if a]
        theirs_items = [control_items[p] for p in position if p is not None]
        ours_whole, ours_linear = _contributions(summarize, ours_items)
        theirs_whole, theirs_linear = _contributions(summarize, theirs_items)
        sub_index = index[asked]
        ours_fast = _fast_draws(ours_whole, ours_linear, sub_index, counts, n_clusters)
        theirs_fast = _fast_draws(theirs_whole, theirs_linear, sub_index, counts, n_clusters)
        gains: dict[tuple[str, ...], list[float]] = {}
        for key in [k for k in ours_whole if k in theirs_whole]:
            if key in ours_fast and key in theirs_fast:
                gains[key] = (ours_fast[key] - theirs_fast[key]).tolist()
        rest = [k for k in ours_whole if k in theirs_whole and k not in gains]
        if rest:
            where = np.cumsum(asked) - 1  # item index -> index among the asked items
            for indices in slow:
                kept = np.asarray([where[i] for i in indices.tolist() if asked[i]], np.int64)
                if kept.size == 0:
                    continue
                ours = summarize(redraw(ours_items, kept))
                theirs = summarize(redraw(theirs_items, kept))
                for key in rest:
                    if key in ours and key in theirs:
                        gains.setdefault(key, []).append(ours[key] - theirs[key])
        gain_intervals[name] = {key: percentile_interval(v) for key, v in gains.items()}
    return intervals, gain_intervals


def attach(
    metrics: dict[str, Any],
    by_type: dict[str, Any],
    intervals: Mapping[tuple[str, ...], list[float] | None],
) -> None:
    """Write ``intervals`` beside their values (``name`` + :data:`CI_SUFFIX`)."""
    for key, interval in intervals.items():
        if interval is None:
            continue
        if key[0] == "metrics":
            metrics[key[1] + CI_SUFFIX] = interval
        elif key[0] == "by_type" and isinstance(by_type.get(key[1]), dict):
            by_type[key[1]][key[2] + CI_SUFFIX] = interval


__all__ = [
    "CI_SUFFIX",
    "N_RESAMPLES",
    "RESAMPLED_SCORERS",
    "accuracy_values",
    "attach",
    "bootstrap",
    "draws",
    "image_cluster",
    "is_accuracy",
    "percentile_interval",
    "redraw",
]
