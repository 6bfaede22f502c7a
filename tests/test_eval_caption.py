"""Caption metrics equal pycocoevalcap run the way COCOEvalCap runs it (needs Java)."""

from __future__ import annotations

import shutil

import pytest

pytest.importorskip("pycocoevalcap")
pytestmark = pytest.mark.skipif(
    shutil.which("java") is None, reason="the COCO caption toolkit needs java"
)

PREDICTIONS = {
    "levir_cc:1": "Two new buildings were built on the bare land.",
    "levir_cc:2": "nothing has changed",
    "levir_cc:3": "",  # an empty caption scores zero, it is not dropped
    "levir_cc:4": "A road appears along the river, near some houses.",
}
REFERENCES = {
    "levir_cc:1": ["Two buildings are built on the bare land.", "Some houses appear on the empty ground.", "two new houses are constructed"],
    "levir_cc:2": ["The scene is the same as before.", "There is no change.", "nothing has changed"],
    "levir_cc:3": ["A road is built.", "A new road appears at the top."],
    "levir_cc:4": ["A road is built along the river.", "A new road appears near the houses by the river."],
}  # fmt: skip


def direct_scores():
    """pycocoevalcap the way its COCOEvalCap.evaluate calls it (two tokenizer runs)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.meteor.meteor import Meteor
    from pycocoevalcap.rouge.rouge import Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({k: [{"caption": c} for c in v] for k, v in REFERENCES.items()})
    res = tokenizer.tokenize({k: [{"caption": v}] for k, v in PREDICTIONS.items()})
    scores, per_item = {}, {}
    for scorer, names in (
        (Bleu(4), ["Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4"]),
        (Meteor(), ["METEOR"]),
        (Rouge(), ["ROUGE_L"]),
        (Cider(), ["CIDEr"]),
    ):
        score, items = scorer.compute_score(gts, res)
        if len(names) == 1:
            score, items = [score], [items]
        for name, s, values in zip(names, score, items, strict=True):
            scores[name] = s
            per_item[name] = dict(zip(gts, values, strict=True))
    return scores, per_item


@pytest.fixture(scope="module")
def ours():
    from geoassist.eval.metrics import caption_metrics

    return caption_metrics(PREDICTIONS, REFERENCES)


def test_caption_metrics_equal_pycocoevalcap(ours):
    scores, per_item = ours
    expected, expected_items = direct_scores()
    assert set(scores) == {"Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "METEOR", "ROUGE_L", "CIDEr"}
    for name, value in expected.items():
        assert scores[name] == pytest.approx(value, rel=1e-9, abs=1e-12), name
        for key in PREDICTIONS:
            assert per_item[key][name] == pytest.approx(
                expected_items[name][key], rel=1e-9, abs=1e-12
            )
    assert per_item["levir_cc:3"]["CIDEr"] == 0.0
    assert per_item["levir_cc:2"]["Bleu_1"] == pytest.approx(1.0)


def test_change_caption_task_report(ours, tmp_path, caplog):
    from geoassist.eval import evaluate

    records = [
        {
            "id": key, "source": "levir_cc", "split": "test", "task": "change_caption",
            "images": ["A/x.png", "B/x.png"],
            "conversations": [{"role": "user", "content": "<image><image>\n[change] What changed between the two images?"}],
            "answer": refs,
        }
        for key, refs in REFERENCES.items()
    ]  # fmt: skip
    report = evaluate(
        "change_caption", records, PREDICTIONS, out=tmp_path, progress=False, spice=True
    )
    scores, _ = ours
    assert report["metrics"] == pytest.approx(scores)
    assert report["parse_failure_rate"] == 0.25
    assert "SPICE skipped" in caplog.text or "SPICE" in report["metrics"]
    line = (tmp_path / "predictions.jsonl").read_text().splitlines()[0]
    assert '"CIDEr"' in line and '"reference": [' in line
