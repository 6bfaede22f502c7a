"""Re-score a saved model's card from evaluation reports, without retraining it.

    python -m geoassist.train.rescore MODEL_DIR --report NAME=REPORT [--report ...] [--note TEXT]

Each ``REPORT`` is the ``report.json`` (or the folder holding it) that ``geoassist eval … --out``
wrote for this model; ``NAME`` is the evaluation's name in the card (e.g. ``geosynth_test``).
The card's scores are replaced by those of the reports, whole: a card never mixes scores of
an older scorer with new ones. Each accuracy keeps its 95 % interval and the visual gain over
every blind control the report ran (train/card.py). ``geoassist.json`` and ``README.md`` are
rewritten atomically; the weights are not touched.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from geoassist.errors import ConfigError


def read_report(path: str | Path) -> dict[str, Any]:
    """A ``report.json`` from ``geoassist eval`` (the file or its folder); clear errors otherwise."""
    path = Path(path)
    if path.is_dir():
        path = path / "report.json"
    if not path.is_file():
        raise ConfigError(f"{path} does not exist; pass the report.json that `geoassist eval … --out` wrote")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path} is not a readable report ({exc}); run the evaluation again") from exc
    if not isinstance(report, dict) or not isinstance(report.get("metrics"), dict):
        raise ConfigError(f"{path} has no 'metrics': it is not a report of `geoassist eval`")
    return report


def _replace_section(text: str, title: str, body: str) -> str:
    """Replace the body of the Markdown section ``## title`` (up to the next ``## ``)."""
    pattern = re.compile(rf"(^## {re.escape(title)}\n)(.*?)(?=^## |\Z)", re.S | re.M)
    if not pattern.search(text):
        raise ConfigError(f"the model card has no '## {title}' section; re-save the checkpoint to rebuild it")
    return pattern.sub(lambda m: m.group(1) + body.rstrip("\n") + "\n\n", text, count=1)


def rescore(folder: str | Path, reports: dict[str, str | Path], note: str = "") -> dict[str, Any]:
    """Replace the card's scores in ``folder`` by ``reports`` (name → report); return the new scores."""
    from geoassist.atomic import replace_file
    from geoassist.checkpoint import score_lines
    from geoassist.train.card import card_scores, count_score_notes
    from geoassist.train.pipeline import score_entry

    folder = Path(folder)
    meta_path, readme = folder / "geoassist.json", folder / "README.md"
    if not meta_path.is_file():
        raise ConfigError(f"{folder} is not a saved GeoAssist model (no geoassist.json)")
    if not reports:
        raise ConfigError("name at least one report (--report NAME=REPORT)")
    loaded = {name: read_report(path) for name, path in reports.items()}  # every one read before any write
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    card = meta.setdefault("card", {})
    scores = {name: card_scores(score_entry(report)) for name, report in loaded.items()}
    card["scores"] = scores
    training = re.sub(r"\n\n(Re-scored: |Count accuracies in the scores: ).*", "", card.get("training_data", ""), flags=re.S)
    extra = count_score_notes(scores)
    if note:
        extra += f"\n\nRe-scored: {note.strip()}"
    card["training_data"] = training + extra
    text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
    if text:
        text = _replace_section(text, "Scores", "\n".join(score_lines(scores)))
        text = _replace_section(text, "Training data", card["training_data"])
    replace_file(meta_path, json.dumps(meta, indent=2) + "\n")
    if text:
        replace_file(readme, text)
    return scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", help="a saved model folder (geoassist.json, README.md)")
    parser.add_argument("--report", action="append", default=[], metavar="NAME=REPORT",
                        help="an evaluation's name in the card and its report.json (or folder)")
    parser.add_argument("--note", default="", help="a sentence saying how the reports were made")
    args = parser.parse_args(argv)
    reports = {}
    for item in args.report:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            parser.error(f"--report takes NAME=REPORT, got {item!r}")
        reports[name] = path
    try:
        scores = rescore(args.model, reports, args.note)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"re-scored {args.model}: " + ", ".join(f"{k} ({len(v)} rows)" for k, v in scores.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
