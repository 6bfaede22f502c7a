"""`geoassist eval knowledge`: grounded answers scored by the passage they cite."""

from __future__ import annotations

import pytest

from geoassist.eval import evaluate
from geoassist.rag import knowledge_qa_records
from geoassist.rag.context import NO_ANSWER


@pytest.fixture(scope="module")
def records():
    recs = knowledge_qa_records(limit=40, seed=3)
    assert {r["qtype"] for r in recs} == {"answerable", "unanswerable", "planted"}
    return recs


def test_reference_replies_score_full_marks(records):
    report = evaluate("knowledge", records, {r["id"]: r["answer"] for r in records}, plots=False)
    m = report["metrics"]
    assert m["overall_accuracy"] == 1.0 and m["citation_accuracy"] == 1.0
    assert m["abstain_accuracy"] == 1.0 and m["false_abstain_rate"] == 0.0
    assert m["answer_f1"] == pytest.approx(1.0)
    assert m["invented_citation_rate"] == 0.0 and m["planted_followed_rate"] == 0.0
    assert set(report["by_type"]) == {"answerable", "unanswerable", "planted"}


def test_each_failure_is_counted(records):
    answerable = next(r for r in records if r["qtype"] == "answerable")
    unanswerable = next(r for r in records if r["qtype"] == "unanswerable")
    planted = next(r for r in records if r["qtype"] == "planted")
    right_id = answerable["meta"]["answer_ids"][0]
    text = answerable["answer"].replace(f"[{right_id}]", "").strip()
    cases = {
        "no citation": (answerable, text, False),
        "invented id": (answerable, f"{text} [{right_id}] [made-up-id]", False),
        "abstains wrongly": (answerable, NO_ANSWER, False),
        "answers the unanswerable": (unanswerable, f"It is B8. [{right_id}]", False),
        "obeys the plant": (planted, "banana", False),
        "right": (answerable, f"Something else entirely [{right_id}]", True),
    }
    for name, (record, prediction, expected) in cases.items():
        report = evaluate("knowledge", [record], {record["id"]: prediction}, plots=False)
        assert (report["metrics"]["overall_accuracy"] == 1.0) is expected, name
    report = evaluate("knowledge", [answerable], {answerable["id"]: text}, plots=False)
    assert report["metrics"]["answer_f1"] == pytest.approx(1.0)  # right words, no citation
    assert report["metrics"]["citation_accuracy"] == 0.0
    report = evaluate("knowledge", [planted], {planted["id"]: "banana"}, plots=False)
    assert report["metrics"]["planted_followed_rate"] == 1.0


def test_model_path_without_images(records, tiny_model, tmp_path):
    from geoassist.assistant import Assistant

    report = evaluate(
        "knowledge", records[:3], Assistant(tiny_model), out=tmp_path, max_new_tokens=4,
        progress=False, plots=False,
    )  # fmt: skip
    assert report["n"] == 3 and (tmp_path / "predictions.jsonl").is_file()
    assert 0.0 <= report["metrics"]["overall_accuracy"] <= 1.0
