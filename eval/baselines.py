"""Blind baselines: predictions made from the question alone, without looking at the image.

They measure how much of a VQA score a model could get from language priors. Both fit on
the records being scored, leaving each record's own answer out (so no item sees its answer).

- ``type_majority``: the most frequent answer of the question's type.
- ``question_prior``: the most frequent answer to the same question text (after
  normalisation) elsewhere in the data, falling back to ``type_majority``.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from geoassist.eval.normalize import normalize_answer
from geoassist.eval.scorers import user_prompt

__all__ = ["BASELINES", "baseline_predictions"]

BASELINES = ("type_majority", "question_prior")


def _answer(record: dict[str, Any]) -> str:
    answer = record["answer"]
    return answer if isinstance(answer, str) else (answer[0] if answer else "")


def _question(record: dict[str, Any]) -> str:
    return normalize_answer(user_prompt(record).replace("<image>", " "))


def _most_common_without(counter: Counter, leave_out: str) -> str | None:
    counts = counter.copy()
    counts[leave_out] -= 1
    ranked = sorted(((n, a) for a, n in counts.items() if n > 0), key=lambda x: (-x[0], x[1]))
    return ranked[0][1] if ranked else None


def baseline_predictions(
    records: Sequence[dict[str, Any]], name: str = "question_prior"
) -> dict[str, str]:
    """Record id → a blind prediction (see the module docstring); ties go to the answer that
    sorts first."""
    if name not in BASELINES:
        raise ValueError(f"unknown baseline {name!r}; choose one of {', '.join(BASELINES)}")
    by_type: dict[str, Counter] = defaultdict(Counter)
    by_question: dict[str, Counter] = defaultdict(Counter)
    for record in records:
        by_type[str(record.get("qtype") or record["task"])][_answer(record)] += 1
        by_question[_question(record)][_answer(record)] += 1
    predictions = {}
    for record in records:
        answer = _answer(record)
        guess = None
        if name == "question_prior":
            guess = _most_common_without(by_question[_question(record)], answer)
        if guess is None:
            guess = _most_common_without(
                by_type[str(record.get("qtype") or record["task"])], answer
            )
        predictions[record["id"]] = guess or ""
    return predictions
