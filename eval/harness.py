"""The evaluation harness: pick a task's records, get predictions (from a model or a file),
score them and write the report.

``evaluate(task, records, predictions_or_assistant, image_root, out=None, …)`` is the one
entry point; the CLI (``geoassist eval``) and the trainer call it. :func:`score` is the
model-free part, for predictions already in hand.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from geoassist.errors import GeoAssistError
from geoassist.eval.scorers import (
    GRAMMARS,
    LENIENT_PROTOCOL,
    SCORERS,
    ScoreContext,
    Summary,
    reference_text,
    user_prompt,
)
from geoassist.eval.targets import EvalDataError, resolve_image
from geoassist.tasks import TASKS as TASK_REGISTRY

logger = logging.getLogger(__name__)

__all__ = [
    "EVAL_TASKS",
    "TASK_RECORDS",
    "DEFAULT_MAX_NEW_TOKENS",
    "evaluate",
    "score",
    "predict",
    "select_records",
    "sample_records",
    "read_predictions",
]

# The task tables below are read from the task registry (geoassist.tasks) on every access, so a
# task added there is evaluated here with no other change: each registry task names its record
# kinds, its scorer, the `geoassist eval` tasks that score it and its answer-length budget.


class _FromRegistry(Mapping[str, Any]):
    """A read-only mapping rebuilt from the task registry each time it is read."""

    def __init__(self, build: Callable[[], dict[str, Any]]) -> None:
        self._build = build

    def __getitem__(self, key: str) -> Any:
        return self._build()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._build())

    def __len__(self) -> int:
        return len(self._build())

    def __repr__(self) -> str:
        return repr(self._build())


# The record kinds the CHOICE benchmark asks as multiple-choice questions (source ``choice``).
CHOICE_RECORD_KINDS = ("vqa", "scene_cls", "counting", "change_qa", "grounding", "refer_seg")


def _record_scorers() -> dict[str, str]:
    return {kind: t.scorer for t in TASK_REGISTRY.values() for kind in t.record_kinds}


def _task_records() -> dict[str, dict[str, str]]:
    table: dict[str, dict[str, str]] = {}
    for spec in TASK_REGISTRY.values():
        for name in spec.eval_tasks:
            for kind in spec.record_kinds:
                table.setdefault(name, {})[kind] = spec.scorer
    table["choice"] = {kind: "choice" for kind in CHOICE_RECORD_KINDS}
    table["synth"] = _record_scorers()
    return table


def _max_new_tokens() -> dict[str, int]:
    limits: dict[str, int] = {}
    for spec in TASK_REGISTRY.values():
        for kind in spec.record_kinds:
            limits[kind] = max(limits.get(kind, 0), spec.max_new_tokens)
    return limits


# Record kind -> its scorer (what ``synth`` scores every kind with).
DEFAULT_SCORERS: Mapping[str, str] = _FromRegistry(_record_scorers)
# Evaluation task -> {record kind it scores: scorer}.
TASK_RECORDS: Mapping[str, Mapping[str, str]] = _FromRegistry(_task_records)
EVAL_TASKS = tuple(TASK_RECORDS)  # as at import: the CLI's choices
# Answer-length limits (new tokens) by record kind: long enough for a complete answer in the
# grammar (a detection lists many boxes, a text mask has one run-length row per grid row).
DEFAULT_MAX_NEW_TOKENS: Mapping[str, int] = _FromRegistry(_max_new_tokens)
CHOICE_MAX_NEW_TOKENS = 48

# The headline number of each scorer, used for synth's per-task table and the CLI summary.
PRIMARY_METRIC = {
    "qa": "overall_accuracy",
    "caption": "CIDEr",
    "grounding": "acc@0.5",
    "detection": "map@0.5",
    "scene_cls": "top1_accuracy",
    "refer_seg": "miou",
    "change_seg": "change_iou",
    "choice": "overall_accuracy",
    "knowledge": "overall_accuracy",
}

PROTOCOL = {
    "strict": "exact match after the normalisation in docs/EVAL.md (lower case, no punctuation or "
    "articles, number words as digits, one yes/no spelling); empty predictions are wrong",
    "lenient": LENIENT_PROTOCOL,
    "iou": "pixels of the original image, no +1 term; a threshold t counts iou >= t",
    "missing": "ids without a prediction count as wrong (empty prediction)",
}


class UnknownTaskError(GeoAssistError, ValueError):
    """The evaluation task name is not one the harness knows."""


def _check_task(task: str) -> Mapping[str, str]:
    try:
        return TASK_RECORDS[task]
    except KeyError:
        raise UnknownTaskError(
            f"unknown evaluation task {task!r}; choose one of {', '.join(TASK_RECORDS)}"
        ) from None


def select_records(
    records: Iterable[dict[str, Any]], task: str
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The records ``task`` scores, and how many of each other record task were left out.

    ``choice`` takes only the CHOICE benchmark's records (source ``choice``).
    """
    accepted = _check_task(task)
    kept, skipped = [], Counter()
    for record in records:
        if record["task"] in accepted and (task != "choice" or record.get("source") == "choice"):
            kept.append(record)
        else:
            skipped[record["task"]] += 1
    return kept, dict(skipped)


def sample_records(records: Sequence[dict[str, Any]], limit: int | None) -> list[dict[str, Any]]:
    """``limit`` records chosen by a hash of their ids (the same ids whatever the input order),
    kept in input order."""
    if limit is None or limit >= len(records):
        return list(records)
    if limit < 1:
        raise EvalDataError(f"--limit must be at least 1, got {limit}")
    ranked = sorted(
        range(len(records)), key=lambda i: hashlib.sha1(records[i]["id"].encode()).hexdigest()
    )
    keep = set(ranked[:limit])
    return [r for i, r in enumerate(records) if i in keep]


def read_predictions(path: str | Path) -> dict[str, str]:
    """A predictions JSONL file: one ``{"id": "<record id>", "prediction": "<text>"}`` per line."""
    import json

    path = Path(path)
    if not path.is_file():
        raise EvalDataError(f"predictions file {path} does not exist")
    predictions: dict[str, str] = {}
    with path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EvalDataError(
                    f"{path}:{number}: not valid JSON ({exc.msg}); each line is one JSON object"
                ) from None
            if not isinstance(row, dict) or not isinstance(row.get("id"), str):
                raise EvalDataError(
                    f'{path}:{number}: each line needs "id" (a record id such as "rsvqa_lr:17")'
                )
            text = row.get("prediction")
            if text is not None and not isinstance(text, str):
                raise EvalDataError(
                    f'{path}:{number}: "prediction" must be a string, got {type(text).__name__}'
                )
            if row["id"] in predictions:
                raise EvalDataError(
                    f"{path}:{number}: id {row['id']!r} appears twice; keep one prediction per id"
                )
            predictions[row["id"]] = text or ""
    return predictions


# ------------------------------------------------------------------------------ the model


def _request(record: dict[str, Any], image_root: str | Path | None) -> dict[str, Any]:
    paths = [str(resolve_image(record, image_root, i)) for i in range(len(record["images"]))]
    image: Any = paths if len(paths) > 1 else (paths[0] if paths else None)
    return {"image": image, "prompt": user_prompt(record)}


def predict(
    assistant: Any,
    records: Sequence[dict[str, Any]],
    image_root: str | Path | None,
    *,
    batch_size: int = 8,
    max_new_tokens: int | Mapping[str, int] | None = None,
    progress: bool = True,
    desc: str = "eval",
) -> tuple[dict[str, str], dict[str, tuple[int, int]], dict[str, str]]:
    """Run ``assistant.ask_batch`` over the records, ``batch_size`` at a time (greedy, KV cache).

    ``max_new_tokens`` is one limit for all, or a limit per record task (default
    :data:`DEFAULT_MAX_NEW_TOKENS`). A batch holds records of one limit, grouped by image count
    and prompt length so that it pads little. Answers are the model's raw text. Returns
    ``(predictions, image sizes, errors)``; a record whose request fails (a missing image, say)
    gets an empty prediction and its error.
    """
    from tqdm.auto import tqdm

    if batch_size < 1:
        raise EvalDataError(f"--batch-size must be at least 1, got {batch_size}")
    # one snapshot of the registry's limits: limit_of is called several times per record
    limits = max_new_tokens if max_new_tokens is not None else dict(DEFAULT_MAX_NEW_TOKENS)

    def limit_of(record: dict[str, Any]) -> int:
        if isinstance(limits, int):
            return limits
        return int(limits.get(record["task"], 64))

    order = sorted(
        range(len(records)),
        key=lambda i: (
            limit_of(records[i]),
            len(records[i]["images"]),
            len(user_prompt(records[i])),
        ),
    )
    batches: list[list[dict[str, Any]]] = []
    for i in order:
        if (
            batches
            and len(batches[-1]) < batch_size
            and limit_of(batches[-1][0]) == limit_of(records[i])
        ):
            batches[-1].append(records[i])
        else:
            batches.append([records[i]])
    predictions: dict[str, str] = {}
    sizes: dict[str, tuple[int, int]] = {}
    errors: dict[str, str] = {}

    def keep(record: dict[str, Any], answer: Any) -> None:
        predictions[record["id"]] = answer.raw
        if answer.image_size:
            sizes[record["id"]] = tuple(answer.image_size)

    with tqdm(
        total=len(records), unit="item", desc=desc, disable=not progress, dynamic_ncols=True
    ) as bar:
        for chunk in batches:
            tokens = limit_of(chunk[0])
            try:
                requests = [_request(r, image_root) for r in chunk]
                answers = assistant.ask_batch(
                    requests, batch_size=len(chunk), max_new_tokens=tokens
                )
                for record, answer in zip(chunk, answers, strict=True):
                    keep(record, answer)
            except GeoAssistError:
                for record in chunk:  # find which request failed; the others still count
                    try:
                        (answer,) = assistant.ask_batch(
                            [_request(record, image_root)],
                            batch_size=1,
                            max_new_tokens=tokens,
                        )
                        keep(record, answer)
                    except GeoAssistError as exc:
                        predictions[record["id"]] = ""
                        errors[record["id"]] = str(exc)
                        logger.warning("record %s: %s", record["id"], exc)
            bar.update(len(chunk))
    return predictions, sizes, errors


# ------------------------------------------------------------------------------- scoring


def _base_item(record: dict[str, Any], prediction: str | None) -> dict[str, Any]:
    return {
        "id": record["id"],
        "task": record["task"],
        "qtype": str(record.get("qtype") or record["task"]),
        "split": record.get("split"),
        "prompt": user_prompt(record),
        "prediction": prediction or "",
        "reference": reference_text(record),
        "missing": prediction is None,
    }


def _summary_dict(summary: Summary, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "n": len(items),
        "metrics": summary.metrics,
        "by_type": summary.by_type,
        "parse_failure_rate": summary.parse_failure_rate,
        **{k: v for k, v in summary.extra.items() if k != "ious"},
    }


def score(
    task: str,
    records: Sequence[dict[str, Any]],
    predictions: Mapping[str, str],
    image_root: str | Path | None = None,
    *,
    grammar: str | None = None,
    spice: bool = False,
    sizes: Mapping[str, tuple[int, int]] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any]]:
    """Score ``predictions`` (record id → text) on ``records``, which ``task`` must accept.

    Returns ``(report, items, plots_data)``: the report's task-specific part (``n``,
    ``metrics``, ``by_type``, ``parse_failure_rate``, ``missing_ids``…), one item per record
    and what the plots need.
    """
    accepted = _check_task(task)
    if grammar is not None and grammar not in GRAMMARS:
        raise EvalDataError(
            f"unknown answer grammar {grammar!r}; choose one of {', '.join(GRAMMARS)}"
        )
    ctx = ScoreContext(Path(image_root) if image_root else None, grammar, spice, dict(sizes or {}))
    items: list[dict[str, Any]] = []
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        scorer_name = accepted.get(record["task"])
        if scorer_name is None:
            raise EvalDataError(
                f"task {task!r} does not score records of task {record['task']!r} ({record['id']})"
            )
        prediction = predictions.get(record["id"])
        item = _base_item(record, prediction)
        item.update(SCORERS[scorer_name].item(record, item["prediction"], ctx))
        items.append(item)
        groups[record["task"] if task == "synth" else scorer_name].append(item)

    missing = [it["id"] for it in items if it["missing"]]
    plots: dict[str, Any] = {}
    if task != "synth":
        (scorer_name,) = {accepted[r["task"]] for r in records} or {next(iter(accepted.values()))}
        summary = SCORERS[scorer_name].summarize(items, ctx)
        report = _summary_dict(summary, items)
        plots = {"by_type": summary.by_type, **summary.extra}
        splits = sorted({str(it["split"]) for it in items})
        if len(splits) > 1:  # e.g. RSVQA-HR test1 and test2 are reported apart
            report["by_split"] = {}
            for split in splits:
                subset = [dict(it) for it in items if str(it["split"]) == split]
                s = SCORERS[scorer_name].summarize(subset, ctx)
                report["by_split"][split] = {
                    "n": len(subset),
                    "metrics": s.metrics,
                    "by_type": s.by_type,
                }
    else:
        report = {"n": len(items), "metrics": {}, "by_type": {}, "tasks": {}}
        for sub in sorted(groups):
            scorer_name = DEFAULT_SCORERS[sub]
            summary = SCORERS[scorer_name].summarize(groups[sub], ctx)
            report["tasks"][sub] = _summary_dict(summary, groups[sub])
            primary = PRIMARY_METRIC[scorer_name]
            if scorer_name == "detection" and primary not in summary.metrics:
                primary = "map@0.5_oriented"
            for key, value in summary.metrics.items():
                report["metrics"][f"{sub}.{key}"] = value
            report["by_type"][sub] = {
                "metric": primary,
                "score": summary.metrics.get(primary),
                "n": len(groups[sub]),
                "parse_failure_rate": summary.parse_failure_rate,
            }
            plots[sub] = {"by_type": summary.by_type, **summary.extra}
        failed = [bool(it.get("parse_failed")) for it in items]
        report["parse_failure_rate"] = sum(failed) / len(failed) if failed else None
    report["missing_ids"] = missing
    return report, items, plots


# ---------------------------------------------------------------------------- evaluate


def _is_assistant(obj: Any) -> bool:
    return callable(getattr(obj, "ask_batch", None))


def evaluate(
    task: str,
    records: Iterable[dict[str, Any]],
    predictions_or_assistant: Any,
    image_root: str | Path | None = None,
    out: str | Path | None = None,
    *,
    limit: int | None = None,
    batch_size: int = 8,
    max_new_tokens: int | None = None,
    grammar: str | None = None,
    spice: bool = False,
    plots: bool = True,
    progress: bool = True,
    model_name: str | None = None,
    data_name: str | None = None,
    control: str | None = None,
    control_seed: int = 0,
    ci_resamples: int | None = None,
) -> dict[str, Any]:
    """Score ``task`` on ``records`` and return the report (and write it under ``out``).

    ``control`` (``blank``, ``shuffled`` or ``both``, a model only) asks every record again
    without its own image and reports the visual gain (:mod:`geoassist.eval.controls`). Every
    accuracy gets a 95 % bootstrap interval over images (:mod:`geoassist.eval.intervals`,
    ``ci_resamples`` draws; 0 for none).

    ``predictions_or_assistant`` is an :class:`~geoassist.assistant.Assistant` (or anything with
    its ``ask_batch``), a mapping of record id → prediction text, or the path of a predictions
    JSONL file. Records of other tasks are left out; ``limit`` keeps that many, chosen by a hash
    of their ids. ``out`` receives ``predictions.jsonl``, ``report.json``, ``report.md`` and PNG
    plots (see docs/EVAL.md).
    """
    started = time.perf_counter()
    from geoassist.eval import controls as blind

    if blind.control_names(control) and not _is_assistant(predictions_or_assistant):
        raise EvalDataError(
            "--control asks the records again without their images, so it needs a model "
            "(--model); it cannot run on a predictions file or a baseline"
        )
    all_records = list(records)
    selected, skipped = select_records(all_records, task)
    if not selected:
        found = ", ".join(f"{k} ({v})" for k, v in sorted(skipped.items())) or "none"
        raise EvalDataError(f"no records for task {task!r} (record tasks found: {found})")
    if skipped:
        logger.info(
            "task %s: left out %s", task, ", ".join(f"{v} {k}" for k, v in sorted(skipped.items()))
        )
    selected = sample_records(selected, limit)

    sizes: dict[str, tuple[int, int]] = {}
    errors: dict[str, str] = {}
    generation: dict[str, Any] = {}
    unknown = 0
    if _is_assistant(predictions_or_assistant):
        if max_new_tokens is not None:
            tokens: int | dict[str, int] = max_new_tokens
        elif task == "choice":
            tokens = CHOICE_MAX_NEW_TOKENS
        else:
            tokens = {
                t: DEFAULT_MAX_NEW_TOKENS.get(t, 64) for t in sorted({r["task"] for r in selected})
            }
        t0 = time.perf_counter()
        predictions, sizes, errors = predict(
            predictions_or_assistant, selected, image_root, batch_size=batch_size,
            max_new_tokens=tokens, progress=progress, desc=f"eval {task}",
        )  # fmt: skip
        seconds = time.perf_counter() - t0
        generation = {
            "batch_size": batch_size,
            "max_new_tokens": tokens,
            "seconds": round(seconds, 3),
            "items_per_second": round(len(selected) / seconds, 3) if seconds > 0 else None,
        }
    else:
        if isinstance(predictions_or_assistant, (str, Path)):
            model_name = model_name or f"predictions file {predictions_or_assistant}"
            predictions = read_predictions(predictions_or_assistant)
        elif isinstance(predictions_or_assistant, Mapping):
            predictions = dict(predictions_or_assistant)
        else:
            raise TypeError(
                "predictions_or_assistant must be an Assistant, a mapping id -> text or a JSONL path"
            )
        known = {r["id"] for r in all_records}
        unknown = sum(1 for key in predictions if key not in known)
        if unknown:
            logger.warning(
                "%d prediction ids match no record of the data; they are ignored", unknown
            )

    report_core, items, plot_data = score(
        task, selected, predictions, image_root, grammar=grammar, spice=spice, sizes=sizes
    )
    for item in items:
        if item["id"] in errors:
            item["error"] = errors[item["id"]]
    control_runs = {}
    if blind.control_names(control):
        control_runs = blind.run_controls(
            control, task, selected, predictions_or_assistant, image_root, sizes=sizes,
            predict_options={"batch_size": batch_size, "max_new_tokens": tokens, "progress": progress},
            score_options={"grammar": grammar, "spice": spice}, seed=control_seed,
        )  # fmt: skip
    blind.annotate(
        task, report_core, items, selected,
        {"image_root": Path(image_root) if image_root else None, "grammar": grammar,
         "spice": spice, "sizes": sizes},
        control_runs, resamples=blind.N_RESAMPLES if ci_resamples is None else ci_resamples,
    )  # fmt: skip
    report: dict[str, Any] = {"task": task, **report_core}
    report.update(
        {
            "model": model_name,
            "data": data_name,
            "seconds": round(time.perf_counter() - started, 3),
            "limit": limit,
            "skipped_record_tasks": skipped,
            "unknown_prediction_ids": unknown,
            "errors": len(errors),
            "protocol": {
                **PROTOCOL,
                **report_core.pop("protocol", {}),
                "grammar": grammar or "geoassist",
            },
        }
    )
    if generation:
        report["generation"] = generation
    if out is not None:
        from geoassist.eval.report import write_outputs

        write_outputs(
            out,
            report,
            items,
            plot_data if plots else None,
            controls={name: run[2] for name, run in control_runs.items()},
        )
    return report
