"""geoassist.eval: the evaluation harness with published protocols and strict scoring.

``evaluate(task, records, predictions_or_assistant, image_root, out=None, …)`` scores a task
from a model or from predictions and writes ``predictions.jsonl``, ``report.json``,
``report.md`` and plots; the metric functions themselves are in :mod:`geoassist.eval.metrics`
and the answer normalisation in :mod:`geoassist.eval.normalize`. See docs/EVAL.md.
"""

from geoassist.eval.harness import EVAL_TASKS, evaluate, read_predictions, score
from geoassist.eval.targets import EvalDataError

__all__ = ["EVAL_TASKS", "EvalDataError", "evaluate", "read_predictions", "score"]
