"""Caption metrics with the COCO caption protocol (pycocoevalcap).

Predictions and all references go through the Stanford PTB tokenizer (lower case,
punctuation removed), then BLEU-1…4, METEOR 1.5, ROUGE-L and CIDEr (CIDEr-D as the toolkit
computes it, document frequencies from the references being scored) are computed exactly as
``pycocoevalcap.eval.COCOEvalCap`` does. The tokenizer and METEOR run in Java (``java`` must be
on PATH). SPICE is optional: it also needs the Stanford CoreNLP 3.6.0 models, which the toolkit
downloads separately; without them it is skipped with a warning.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from geoassist.errors import GeoAssistError
from geoassist.extras import require

logger = logging.getLogger(__name__)

__all__ = ["caption_metrics", "CaptionMetricsError", "spice_available", "METRIC_NAMES"]

METRIC_NAMES = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr")


class CaptionMetricsError(GeoAssistError):
    """The caption toolkit cannot run here (no Java; a missing pycocoevalcap raises
    :class:`~geoassist.extras.MissingExtraError`)."""


def _require_toolkit() -> None:
    require("pycocoevalcap", "eval", "caption metrics")
    if shutil.which("java") is None:
        raise CaptionMetricsError(
            "caption metrics need Java for the PTB tokenizer and METEOR: install a JRE "
            "(e.g. apt-get install default-jre-headless) so that `java` is on PATH"
        )


def spice_available() -> bool:
    """Whether the Stanford CoreNLP models SPICE needs are installed beside pycocoevalcap."""
    try:
        import pycocoevalcap.spice as spice
    except ModuleNotFoundError:
        return False
    return (Path(spice.__file__).parent / "lib" / "stanford-corenlp-3.6.0-models.jar").is_file()


def _check_inputs(predictions: Mapping[str, str], references: Mapping[str, Sequence[str]]) -> None:
    if set(predictions) != set(references):
        missing = sorted(set(references) - set(predictions))[:5]
        extra = sorted(set(predictions) - set(references))[:5]
        raise ValueError(
            f"predictions and references must have the same ids (missing {missing}, extra {extra})"
        )
    for key, refs in references.items():
        if isinstance(refs, str) or not refs:
            raise ValueError(f"item {key!r}: references must be a non-empty list of strings")


def caption_metrics(
    predictions: Mapping[str, str], references: Mapping[str, Sequence[str]], *, spice: bool = False
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Corpus scores and per-item scores of ``predictions`` against all ``references``.

    ``predictions`` maps an item id to one caption (an empty one scores 0), ``references`` maps
    the same ids to every reference caption. Returns ``(scores, per_item)`` with the toolkit's
    names (``Bleu_1``…``Bleu_4``, ``METEOR``, ``ROUGE_L``, ``CIDEr``, and ``SPICE`` when asked
    for and available) and values as the toolkit gives them (fractions; CIDEr is unbounded).
    """
    _check_inputs(predictions, references)
    if not predictions:
        return {}, {}
    _require_toolkit()
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    ids = list(references)
    # One tokenizer run for both sides (one Java start instead of two): the tokenizer reads
    # one caption per line, so the result is the same as tokenising them apart.
    both = {("ref", k): [{"caption": c} for c in references[k]] for k in ids}
    both.update({("pred", k): [{"caption": predictions[k] or ""}] for k in ids})
    tokens = PTBTokenizer().tokenize(both)
    gts = {k: tokens[("ref", k)] for k in ids}
    res = {k: tokens[("pred", k)] for k in ids}

    scores: dict[str, float] = {}
    per_item: dict[str, dict[str, float]] = {k: {} for k in ids}

    def keep(name: str, corpus: float, items: Sequence[float]) -> None:
        scores[name] = float(corpus)
        for k, value in zip(ids, items, strict=True):
            per_item[k][name] = float(value)

    bleu, bleu_items = Bleu(4).compute_score(gts, res, verbose=0)
    for n in range(4):
        keep(f"Bleu_{n + 1}", bleu[n], bleu_items[n])
    meteor = Meteor()
    try:
        keep("METEOR", *meteor.compute_score(gts, res))
    finally:
        _close_meteor(meteor)
    keep("ROUGE_L", *Rouge().compute_score(gts, res))
    keep("CIDEr", *Cider().compute_score(gts, res))
    if spice:
        if not spice_available():
            logger.warning(
                "SPICE skipped: it needs the Stanford CoreNLP 3.6.0 models; download them once with "
                "`python -c 'from pycocoevalcap.spice.get_stanford_models import get_stanford_models as g; g()'`"
            )
        else:
            from pycocoevalcap.spice.spice import Spice

            try:
                corpus, items = Spice().compute_score(gts, res)
                keep("SPICE", corpus, [item["All"]["f"] for item in items])
            except Exception as exc:  # noqa: BLE001 - an optional metric must not lose the others
                logger.warning("SPICE skipped: it failed to run (%s)", exc)
    return scores, per_item


def _close_meteor(meteor) -> None:
    # The toolkit only stops its Java process when the object is garbage collected.
    process = getattr(meteor, "meteor_p", None)
    if process is None:
        return
    try:
        process.stdin.close()
        process.kill()
        process.wait(timeout=10)
    except Exception:  # noqa: BLE001 - best effort; the process may already be gone
        pass
