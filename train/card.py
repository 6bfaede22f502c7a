"""The model card a training run writes beside its weights."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

LM_LICENCES = {
    "smollm2": ("SmolLM2-135M-Instruct (HuggingFaceTB)", "Apache-2.0"),
    "random": ("randomly initialised LM", "n/a"),
}


def _sources(config) -> list[dict[str, Any]]:
    """One entry per training folder: recipe, record counts and licence from its manifest."""
    licences = {}
    try:
        from geoassist.data_recipes import list_recipes

        licences = {info.name: getattr(info, "licence", None) for info in list_recipes()}
    except ImportError:
        pass
    out = []
    for entry in config.data.train:
        path = Path(entry["path"] if isinstance(entry, dict) else entry)
        manifest = {}
        if (path / "manifest.json").is_file():
            manifest = json.loads((path / "manifest.json").read_text())
        recipe = manifest.get("recipe", path.name)
        out.append(
            {
                "path": str(path),
                "recipe": recipe,
                "records": manifest.get("written"),
                "licence": manifest.get("licence")
                or licences.get(recipe)
                or "see the dataset's terms",
            }
        )
    return out


def starting_card(name_or_path: str) -> dict[str, Any]:
    """The card of the model a run starts from (a checkpoint folder or a published name), or {}."""
    from geoassist.checkpoint import PRETRAINED, weights_dir

    folder = Path(str(name_or_path)).expanduser()
    if not folder.is_dir() and str(name_or_path) in PRETRAINED:
        folder = weights_dir() / PRETRAINED[str(name_or_path)]["folder"]
    meta = folder / "geoassist.json"
    if not meta.is_file():
        return {}
    try:
        return json.loads(meta.read_text()).get("card") or {}
    except (OSError, json.JSONDecodeError):
        return {}


def add_counts(*counts: dict[str, int] | None) -> dict[str, int]:
    """Per-task sample counts added up (a run's own after those of the model it started from)."""
    total: dict[str, int] = {}
    for one in counts:
        for task, n in (one or {}).items():
            total[task] = total.get(task, 0) + int(n)
    return dict(sorted(total.items()))


# What each count accuracy of a score table measures (docs/EVAL.md, "Counting").
COUNT_ACCURACY_NOTES = {
    "count_exact_accuracy": "the number in the answer equals the true count",
    "count_binned_accuracy": (
        "the answer's count and the true one fall in the same RSVQA bin "
        "(0, 1-10, 11-100, 101-1000, more than 1000; RSVQA-LR only)"
    ),
}


def _with_interval(value: float, interval: Any, signed: bool = False) -> str:
    shown = f"{value:+.4g}" if signed else f"{value:.4g}"
    if isinstance(interval, (list, tuple)) and len(interval) == 2:
        lo, hi = interval
        shown += f" (95 % CI {lo:+.4g} to {hi:+.4g})" if signed else f" (95 % CI {lo:.4g}–{hi:.4g})"
    return shown


def card_scores(entry: dict[str, Any]) -> dict[str, Any]:
    """One evaluation's rows for the card: each accuracy with its 95 % interval, and right after
    it the visual gain over each blind control (accuracy minus the control's, docs/EVAL.md).

    ``entry`` is a pipeline score (``n``, ``metrics``, ``by_type``, ``controls``)."""
    from geoassist.eval.intervals import is_accuracy

    metrics = entry.get("metrics") or {}
    controls = entry.get("controls") or {}
    out: dict[str, Any] = {}

    def gains_of(label: str, source: dict[str, Any], prefix: str) -> None:
        for control in ("shuffled", "blank"):
            if control not in controls:
                continue
            gain = source.get(f"{prefix}{control}")
            if isinstance(gain, (int, float)):
                interval = source.get(f"{prefix}{control}_ci95")
                out[f"{label}: visual gain over {control}"] = _with_interval(gain, interval, True)

    for key, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        interval = metrics.get(f"{key}_ci95")
        out[key] = _with_interval(value, interval) if is_accuracy(key) and interval else value
        for control in ("shuffled", "blank"):
            gain = (controls.get(control) or {}).get("visual_gain") or {}
            if isinstance(gain.get(key), (int, float)):
                out[f"{key}: visual gain over {control}"] = _with_interval(
                    gain[key], gain.get(f"{key}_ci95"), True
                )
    for kind, d in (entry.get("by_type") or {}).items():
        for field_name in ("accuracy", "score"):
            value = d.get(field_name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            label = f"{kind}.{field_name}"
            if label in out:
                continue
            out[label] = _with_interval(value, d.get(f"{field_name}_ci95"))
            gains_of(label, d, "visual_gain_")
    return out


def count_score_notes(scores: dict[str, Any]) -> str:
    """A paragraph saying which count accuracy each count metric of ``scores`` (evaluation
    name → {metric: value}) is, or "" when there is none."""
    names = {
        str(metric).rsplit(".", 1)[-1]
        for entry in scores.values()
        if isinstance(entry, dict)
        for metric in entry
    }
    found = [f"`{k}`: {v}" for k, v in COUNT_ACCURACY_NOTES.items() if k in names]
    if not found:
        return ""
    return (
        "\n\nCount accuracies in the scores: " + "; ".join(found) + ". The `accuracy` of count "
        "questions is the strict text match (the answer is the number and nothing else)."
    )


def training_card(
    config,
    model,
    *,
    step: int,
    elapsed_s: float,
    n_trainable: int,
    scores: dict,
    hardware: str,
    samples_per_task: dict[str, int] | None = None,
    best: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The card of a run's final model. ``cumulative_minutes`` and ``cumulative_samples_per_task``
    add this run to what the card of its starting model says (a continued model keeps its history);
    ``best`` is the validation record of the step whose weights the final model holds."""
    lm_name, lm_licence = LM_LICENCES.get(
        model.config.lm.source, (model.config.lm.name_or_path, "see the model's card")
    )
    vision = model.config.vision
    vision_origin = vision.weights or (
        "trained from random initialisation by stage 0"
        if config.stage == 0
        else f"from {config.model}"
    )
    sources = _sources(config)
    data_lines = "\n".join(
        f"- `{s['recipe']}` ({s['records'] if s['records'] is not None else '?'} records, licence: {s['licence']}) from {s['path']}"
        for s in sources
    )
    before = starting_card(config.model)
    this_minutes = round(elapsed_s / 60, 2)
    cumulative = round(float(before.get("cumulative_minutes") or 0.0) + this_minutes, 2)
    history = (
        f"\n\nCumulative training time {cumulative:.1f} min (this run and the model it started from)."
    )
    if samples_per_task:
        history += " Samples seen by this run per task: " + ", ".join(
            f"{t} {n}" for t, n in sorted(samples_per_task.items())
        ) + "."
    if best:
        history += (
            f" The weights are those of step {best['step']}, the best validation loss "
            f"({best['val_loss']:.4f} on {best.get('n', '?')} validation samples)."
        )
    return {
        "name": Path(config.out_dir).name,
        "summary": config.card.get(
            "summary",
            f"GeoAssist model after training stage {config.stage} (started from `{config.model}`).",
        ),
        "training_data": (
            f"{data_lines}\n\n"
            f"Stage {config.stage}, {step} optimizer steps of batch {config.optim.batch_size}×{config.optim.grad_accum}, "
            f"lr {config.optim.lr}, {n_trainable:,} trainable parameters, {elapsed_s / 60:.1f} min on {hardware}.\n\n"
            f"Base models: language model {lm_name} (licence {lm_licence}); vision tower {vision_origin}."
            f"{history}{count_score_notes(scores)}"
        ),
        "scores": scores,
        "stage": config.stage,
        "steps": step,
        "compute_minutes": this_minutes,
        "cumulative_minutes": cumulative,
        "samples_per_task": dict(sorted((samples_per_task or {}).items())),
        "cumulative_samples_per_task": add_counts(
            before.get("cumulative_samples_per_task"), samples_per_task
        ),
        "validation": best,
        "hardware": hardware,
        "sources": sources,
    }
