"""The change-mask scorer (``change_seg``): the mask of what changed between two dates.

A prediction is read like a referring segmentation (:func:`segmentation_item`: the mask in the
answer grammar at the size of the later image, ``none`` or an empty mask for "nothing
changed"), against the record's reference change mask. ``change_iou`` is the IoU of the change
class over all pairs with a change (intersections and unions summed, as LEVIR-CD reports it);
``mean_change_iou`` and ``p@0.5`` are per pair; pairs where nothing changed are scored apart
(``absent_accuracy``, ``false_positive_rate``), as for every grounding task.
"""

from __future__ import annotations

from typing import Any

from geoassist.eval import metrics
from geoassist.eval.scorers_common import ScoreContext, Scorer, Summary, absent_metrics, rate
from geoassist.eval.scorers_geometry import segmentation_item


def change_item(record: dict[str, Any], prediction: str, ctx: ScoreContext) -> dict[str, Any]:
    return segmentation_item(record, prediction, ctx)


def change_summarize(items: list[dict[str, Any]], ctx: ScoreContext) -> Summary:
    present = [it for it in items if not it["absent"]]
    s = metrics.segmentation_summary(
        [it["intersection"] for it in present], [it["union"] for it in present], thresholds=(0.5,)
    )
    m: dict[str, Any] = {
        "change_iou": s["oiou"],
        "mean_change_iou": s["miou"],
        "p@0.5": s["p@0.5"],
        "n_present": len(present),
    }
    m.update(absent_metrics([it for it in items if it["absent"]]))
    return Summary(m, {}, rate(items), {"ious": [it["iou"] for it in present]})


CHANGE_SCORERS: dict[str, Scorer] = {
    "change_seg": Scorer("change_seg", change_item, change_summarize)
}
"""Added to :data:`geoassist.eval.scorers.SCORERS`."""
