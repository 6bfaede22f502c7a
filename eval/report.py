"""Writing an evaluation's files: ``predictions.jsonl``, ``report.json``, ``report.md`` and plots."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from geoassist.eval.intervals import CI_SUFFIX
from geoassist.extras import MissingExtraError, require

logger = logging.getLogger(__name__)

__all__ = ["write_outputs", "to_json_safe", "render_markdown"]

MAX_LISTED_IDS = 20


def to_json_safe(value: Any) -> Any:
    """Numpy scalars and arrays, tuples and NaN made JSON-friendly (NaN becomes null)."""
    if isinstance(value, dict):
        return {str(k): to_json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_json_safe(value.tolist())
    if isinstance(value, np.generic):
        return to_json_safe(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def _item_line(item: dict[str, Any]) -> str:
    return json.dumps(
        to_json_safe({k: v for k, v in item.items() if not k.startswith("_")}), ensure_ascii=False
    )


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, list) and len(value) == 2 and all(isinstance(v, float) for v in value):
        return f"[{value[0]:.4f}, {value[1]:.4f}]"
    return str(value)


def _with_intervals(values: dict[str, Any]) -> dict[str, Any]:
    """``name`` and ``name_ci95`` as one cell: ``0.6412 [0.5900, 0.6900]``."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key.endswith(CI_SUFFIX) and key[: -len(CI_SUFFIX)] in values:
            continue
        interval = values.get(key + CI_SUFFIX)
        out[key] = f"{_fmt(value)} {_fmt(interval)}" if interval is not None else value
    return out


def _table(rows: list[dict[str, Any]], columns: list[str]) -> list[str]:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c)) for c in columns) + " |")
    return lines


def _by_type_table(by_type: dict[str, dict[str, Any]]) -> list[str]:
    if not by_type:
        return []
    rows = [{"type": t, **_with_intervals(e)} for t, e in by_type.items()]
    columns: list[str] = []
    for entry in rows:
        for key, value in entry.items():
            if key != "type" and key not in columns and not isinstance(value, (dict, list)):
                columns.append(key)
    return _table(rows, ["type", *columns])


def _metrics_table(metrics: dict[str, Any]) -> list[str]:
    return _table(
        [{"metric": k, "value": v} for k, v in _with_intervals(metrics).items()],
        ["metric", "value"],
    )


def _control_lines(report: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for name in ("shuffled", "blank"):
        part = report.get(f"control_{name}")
        if not part:
            continue
        what = (
            "each record asked with another record's image of the same split (a seeded "
            "derangement): the control that counts"
            if name == "shuffled"
            else "each image replaced by the dataset's mean colour"
        )
        lines += ["", f"## Control `{name}` ({part['n']} items; {what})", ""]
        if part.get("not_controlled"):
            lines.append(f"{part['not_controlled']} item(s) had no control image and are left out.")
            lines.append("")
        lines += _metrics_table(part["metrics"])
        if part.get("visual_gain"):
            lines += ["", "Visual gain (real image minus this control):", ""]
            lines += _metrics_table(part["visual_gain"])
        if part.get("by_type") and not part.get("tasks"):
            lines += [""] + _by_type_table(part["by_type"])
    return lines


def render_markdown(report: dict[str, Any], plot_files: list[str]) -> str:
    """The human-readable report."""
    lines = [f"# `geoassist eval {report['task']}`", ""]
    lines.append(f"- model: {report.get('model') or '–'}")
    lines.append(f"- data: {report.get('data') or '–'}")
    missing = report.get("missing_ids") or []
    lines.append(
        f"- items: {report['n']} (without a prediction: {len(missing)}; errors: {report.get('errors', 0)})"
    )
    if report.get("limit"):
        lines.append(f"- limit: {report['limit']} (records chosen by a hash of their ids)")
    generation = report.get("generation")
    if generation:
        limit = generation["max_new_tokens"]
        if isinstance(limit, dict):
            limit = ", ".join(f"{k} {v}" for k, v in limit.items())
        lines.append(
            f"- generation: batch size {generation['batch_size']}, at most {limit} new tokens, "
            f"{generation['items_per_second']} items/s"
        )
    lines.append(f"- seconds: {report.get('seconds')}")
    rate = report.get("parse_failure_rate")
    lines.append(f"- parse-failure rate: {_fmt(rate)}")
    lines += [
        "",
        "Accuracies are fractions in [0, 1]; [lo, hi] after a value is its 95 % bootstrap "
        "interval, resampled by image (docs/EVAL.md). Protocol:",
        "",
    ]
    for key, text in (report.get("protocol") or {}).items():
        lines.append(f"- {key}: {text}")
    if report.get("tasks"):  # synth: the headline per task here, every metric per task below
        lines += ["", "## Per task", ""] + _by_type_table(report["by_type"])
    else:
        lines += ["", "## Metrics", ""]
        lines += _metrics_table(report["metrics"])
        if report.get("by_type"):
            lines += ["", "## By type", ""] + _by_type_table(report["by_type"])
    lines += _control_lines(report)
    for split, part in (report.get("by_split") or {}).items():
        lines += ["", f"## Split `{split}` ({part['n']} items)", ""]
        lines += _table(
            [{"metric": k, "value": v} for k, v in part["metrics"].items()], ["metric", "value"]
        )
    for sub, part in (report.get("tasks") or {}).items():
        lines += [
            "",
            f"## {sub} ({part['n']} items, parse-failure rate {_fmt(part['parse_failure_rate'])})",
            "",
        ]
        lines += _metrics_table(part["metrics"])
        if part.get("by_type"):
            lines += [""] + _by_type_table(part["by_type"])
    if missing:
        shown = ", ".join(f"`{m}`" for m in missing[:MAX_LISTED_IDS])
        more = (
            f" and {len(missing) - MAX_LISTED_IDS} more (all in report.json)"
            if len(missing) > MAX_LISTED_IDS
            else ""
        )
        lines += [
            "",
            f"## Ids without a prediction ({len(missing)}, counted wrong)",
            "",
            shown + more,
        ]
    if plot_files:
        lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plot_files]
    return "\n".join(lines) + "\n"


def _bar_values(
    by_type: dict[str, dict[str, Any]],
) -> tuple[str, dict[str, float], dict[str, float]] | None:
    for key in ("accuracy", "score", "ap", "miou"):
        values = {t: e[key] for t, e in by_type.items() if isinstance(e.get(key), (int, float))}
        if values:
            lenient = {
                t: e["lenient"]
                for t, e in by_type.items()
                if isinstance(e.get("lenient"), (int, float))
            }
            return key, values, lenient
    return None


def _plot_by_type(by_type: dict[str, dict[str, Any]], path: Path, title: str) -> bool:
    found = _bar_values(by_type)
    if not found:
        return False
    import matplotlib.pyplot as plt

    key, values, lenient = found
    names = list(values)
    x = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(names) + 2), 3.6))
    width = 0.4 if lenient else 0.7
    ax.bar(
        x - (width / 2 if lenient else 0),
        [values[n] for n in names],
        width,
        label=f"{key} (strict)" if lenient else key,
    )
    if lenient:
        ax.bar(
            x + width / 2, [lenient.get(n, 0.0) for n in names], width, label="lenient", alpha=0.6
        )
        ax.legend(fontsize=8, loc="lower left", bbox_to_anchor=(0, 1.08), ncol=2, frameon=False)
    ax.set_xticks(
        x,
        names,
        rotation=45 if len(names) > 4 else 0,
        ha="right" if len(names) > 4 else "center",
        fontsize=8,
    )
    if key != "score" or all(v <= 1.0 for v in values.values()):
        ax.set_ylim(0, 1)
    ax.set_ylabel(key)
    ax.set_title(title, fontsize=10, loc="right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _plot_confusion(confusion: dict[str, Any], path: Path, title: str) -> bool:
    import matplotlib.pyplot as plt

    matrix = np.asarray(confusion["matrix"], dtype=float)
    if matrix.size == 0:
        return False
    rows = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    n_rows, n_cols = matrix.shape
    cell = 0.32 if n_cols > 12 else 0.5
    fig, ax = plt.subplots(figsize=(cell * n_cols + 3.0, cell * n_rows + 2.2), layout="constrained")
    image = ax.imshow(rows, vmin=0, vmax=1, cmap="Blues", aspect="auto")
    ax.set_xticks(range(n_cols), confusion["columns"], rotation=90, fontsize=7)
    ax.set_yticks(range(n_rows), confusion["labels"], fontsize=7)
    if n_cols <= 20:  # counts in the cells while they stay legible
        for r in range(n_rows):
            for c in range(n_cols):
                if matrix[r, c]:
                    colour = "white" if rows[r, c] > 0.5 else "black"
                    ax.text(
                        c,
                        r,
                        f"{int(matrix[r, c])}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color=colour,
                    )
    ax.set_xlabel("predicted")
    ax.set_ylabel("reference")
    ax.set_title(title, fontsize=9, loc="left")
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of the reference class")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _plot_ious(ious: list[float], path: Path, title: str) -> bool:
    if not ious:
        return False
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.8, 3.2))
    ax.hist(ious, bins=np.linspace(0, 1, 21), color="tab:blue", edgecolor="white")
    ax.axvline(0.5, color="tab:red", linestyle="--", linewidth=1, label="0.5")
    ax.set_xlabel("IoU")
    ax.set_ylabel("items")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _plots(out: Path, report: dict[str, Any], plot_data: dict[str, Any]) -> list[str]:
    try:
        matplotlib = require("matplotlib", "eval", "report plots")
    except MissingExtraError as exc:
        logger.warning("plots skipped: %s", exc)
        return []
    matplotlib.use("Agg", force=True)
    written: list[str] = []

    def one(data: dict[str, Any], prefix: str, title: str) -> None:
        for name, make in (
            (
                "by_type.png",
                lambda p: _plot_by_type(data.get("by_type") or {}, p, f"{title}: by type"),
            ),
            (
                "confusion_matrix.png",
                lambda p: (
                    bool(data.get("confusion"))
                    and _plot_confusion(data["confusion"], p, f"{title}: confusion (counts)")
                ),
            ),
            ("iou_histogram.png", lambda p: _plot_ious(data.get("ious") or [], p, f"{title}: IoU")),
        ):
            path = out / f"{prefix}{name}"
            if make(path):
                written.append(path.name)

    if report["task"] == "synth":
        one({"by_type": report["by_type"]}, "", "synth, headline metric per task")
        for sub, data in plot_data.items():
            one(data, f"{sub}_", f"synth {sub}")
    else:
        one(plot_data, "", report["task"])
    return written


def write_outputs(
    out: str | Path,
    report: dict[str, Any],
    items: list[dict[str, Any]],
    plot_data: dict[str, Any] | None,
    controls: dict[str, list[dict[str, Any]]] | None = None,
) -> list[Path]:
    """Write the evaluation's files under ``out`` (created if needed); returns their paths.

    ``controls`` (control name → scored items) adds ``predictions_control_<name>.jsonl``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = [out / "predictions.jsonl"]
    with (out / "predictions.jsonl").open("w", encoding="utf-8") as handle:
        for item in items:
            handle.write(_item_line(item) + "\n")
    for name, control_items in (controls or {}).items():
        path = out / f"predictions_control_{name}.jsonl"
        with path.open("w", encoding="utf-8") as handle:
            for item in control_items:
                handle.write(_item_line(item) + "\n")
        written.append(path)
    plot_files = _plots(out, report, plot_data) if plot_data is not None else []
    report["plots"] = plot_files
    (out / "report.json").write_text(
        json.dumps(to_json_safe(report), indent=2, ensure_ascii=False) + "\n"
    )
    (out / "report.md").write_text(render_markdown(report, plot_files))
    return [
        *written,
        out / "report.json",
        out / "report.md",
        *(out / p for p in plot_files),
    ]
