"""What every scorer shares: the scoring context, the summary and scorer types, and small helpers.

Each scorer has ``item(record, prediction, ctx) -> dict`` (one line of ``predictions.jsonl``;
keys starting with ``_`` stay in memory only) and ``summarize(items, ctx) -> Summary``.
Structured answers are read with :func:`geoassist.formats.parse` at the size of the image
the answer refers to (the last image of a pair); ``ctx.grammar`` first converts another
system's grammar with :func:`geoassist.formats.convert`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geoassist import formats
from geoassist.eval import metrics
from geoassist.eval.normalize import normalize_answer
from geoassist.eval.targets import record_image_size

__all__ = [
    "GRAMMARS",
    "ScoreContext",
    "Summary",
    "Scorer",
    "user_prompt",
    "reference_text",
    "explicit_none",
    "rate",
    "absent_metrics",
]

GRAMMARS = (
    "geoassist",
    "geochat",
    "qwen",
    "florence",
    "plain",
    "plain-normalized",
    "plain-grid1000",
)


@dataclass
class ScoreContext:
    """What scoring needs besides the record and the prediction."""

    image_root: Path | None = None
    grammar: str | None = None
    spice: bool = False
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)

    def size(self, record: dict[str, Any]) -> tuple[int, int]:
        if record["id"] not in self.sizes:
            self.sizes[record["id"]] = record_image_size(record, self.image_root)
        return self.sizes[record["id"]]

    def parse(self, record: dict[str, Any], text: str) -> formats.ParseResult:
        size = self.size(record)
        if self.grammar and self.grammar != "geoassist":
            source, _, units = self.grammar.partition("-")
            options = (
                {"units": {"": "pixels", "normalized": "normalized", "grid1000": "grid1000"}[units]}
                if source == "plain"
                else {}
            )
            text = formats.convert(text, size, source, **options)
        return formats.parse(text, size)


@dataclass
class Summary:
    metrics: dict[str, Any]
    by_type: dict[str, dict[str, Any]]
    parse_failure_rate: float | None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Scorer:
    name: str
    item: Callable[[dict[str, Any], str, ScoreContext], dict[str, Any]]
    summarize: Callable[[list[dict[str, Any]], ScoreContext], Summary]


def user_prompt(record: dict[str, Any]) -> str:
    """The record's first user turn, sent to the model as is."""
    return record["conversations"][0]["content"]


def reference_text(record: dict[str, Any]) -> str | list[str]:
    return record["answer"]


def explicit_none(parsed: formats.ParseResult) -> bool:
    """The answer says there is nothing to find (``none``, ``nothing``, the grammar's none)."""
    return parsed.is_none or normalize_answer(parsed.text) in ("none", "nothing")


def rate(items: Sequence[dict[str, Any]], key: str = "parse_failed") -> float | None:
    """Share of ``items`` whose ``key`` is true (None without items)."""
    return metrics.accuracy([bool(it.get(key)) for it in items])


def absent_metrics(absent: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Scores of the prompts whose target does not exist, kept out of every headline metric:
    ``n_absent``, ``absent_accuracy`` (the answer says none and gives no geometry) and
    ``false_positive_rate`` (the answer gives geometry anyway)."""
    return {
        "n_absent": len(absent),
        "absent_accuracy": metrics.accuracy([it["correct"] for it in absent]),
        "false_positive_rate": rate(absent, "false_positive"),
    }
