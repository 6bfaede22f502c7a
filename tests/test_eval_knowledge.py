"""`geoassist eval knowledge`: grounded answers scored by what they say and the passage they cite."""

from __future__ import annotations

import re

import pytest

from geoassist.eval import evaluate
from geoassist.eval.scorers_knowledge import ANSWER_F1_MIN, answer_f1
from geoassist.rag import knowledge_qa_records
from geoassist.rag.context import NO_ANSWER, strip_citations


@pytest.fixture(scope="module")
def records():
    recs = knowledge_qa_records(limit=40, seed=3)
    assert {r["qtype"] for r in recs} == {"answerable", "unanswerable", "planted"}
    return recs


def _one(record, prediction):
    return evaluate("knowledge", [record], {record["id"]: prediction}, plots=False)


def _kinds(records):
    answerable = next(r for r in records if r["qtype"] == "answerable")
    unanswerable = next(r for r in records if r["qtype"] == "unanswerable")
    planted = next(r for r in records if r["qtype"] == "planted")
    return answerable, unanswerable, planted


def test_reference_replies_score_full_marks(records):
    report = evaluate("knowledge", records, {r["id"]: r["answer"] for r in records}, plots=False)
    m = report["metrics"]
    assert m["overall_accuracy"] == 1.0 and m["lenient_overall_accuracy"] == 1.0
    assert m["citation_accuracy"] == 1.0 and m["citation_precision"] == 1.0
    assert m["answer_stated_rate"] == 1.0 and m["answer_f1"] == pytest.approx(1.0)
    assert m["abstain_accuracy"] == 1.0 and m["false_abstain_rate"] == 0.0
    assert m["invented_citation_rate"] == 0.0 and m["planted_followed_rate"] == 0.0
    assert set(report["by_type"]) == {"answerable", "unanswerable", "planted"}
    assert "F1 >= 0.5" in report["protocol"]["correct"]


def test_listing_every_context_id_scores_nothing(records):
    """The gaming answer: every id of the block and no text (the earlier scorer gave it OA 0.88:
    answerable and planted 1.0, since the answering passage was among the ids)."""
    listed = {r["id"]: " ".join(f"[{i}]" for i in r["meta"]["context_ids"]) for r in records}
    m = evaluate("knowledge", records, listed, plots=False)["metrics"]
    answered = sum(bool(r["meta"]["answer_ids"]) for r in records) / len(records)
    assert answered == pytest.approx(0.875)  # the earlier rule's score: every answerable one
    assert m["citation_accuracy"] == 1.0  # the answering passage is always among them …
    assert m["overall_accuracy"] == 0.0 and m["lenient_overall_accuracy"] == 0.0  # … yet
    assert m["answer_stated_rate"] == 0.0 and m["citation_precision"] < 0.5
    # the answering id alone, with no text, is no better
    only_id = {
        r["id"]: " ".join(f"[{i}]" for i in r["meta"]["answer_ids"]) or NO_ANSWER for r in records
    }
    report = evaluate("knowledge", records, only_id, plots=False)
    assert report["by_type"]["answerable"]["accuracy"] == 0.0
    assert report["by_type"]["planted"]["accuracy"] == 0.0
    assert report["by_type"]["unanswerable"]["accuracy"] == 1.0  # abstaining is right there


def test_copying_the_whole_context_block_scores_nothing(records):
    """Every passage's text and every id: the answer is in there, but so is everything else."""

    def block(record):
        prompt = record["conversations"][0]["content"]
        inner = prompt[prompt.rindex("<context>") + 9 : prompt.rindex("</context>")]
        text = re.sub(r"<[^>]+>", " ", inner)
        return text + " " + " ".join(f"[{i}]" for i in record["meta"]["context_ids"])

    m = evaluate("knowledge", records, {r["id"]: block(r) for r in records}, plots=False)["metrics"]
    assert m["citation_accuracy"] == 1.0 and m["answer_f1"] > 0.2  # the right words are there
    assert m["answer_stated_rate"] == 0.0 and m["overall_accuracy"] == 0.0


def test_each_case_by_hand(records):
    answerable, unanswerable, planted = _kinds(records)
    right_id = answerable["meta"]["answer_ids"][0]
    other_id = next(i for i in answerable["meta"]["context_ids"] if i != right_id)
    text = strip_citations(answerable["answer"]).strip()
    first_sentence = text.split(". ")[0] + "."
    planted_id = planted["meta"]["answer_ids"][0]
    planted_text = strip_citations(planted["answer"]).strip()
    cases = {
        "the reference": (answerable, answerable["answer"], True),
        "the text and its citation": (answerable, f"{text} [{right_id}]", True),
        "another answer, right citation": (answerable, f"Something else entirely [{right_id}]", False),
        "right words, no citation": (answerable, text, False),
        "right words, wrong passage": (answerable, f"{text} [{other_id}]", False),
        "right words, right and unsupporting passage": (
            answerable, f"{text} [{right_id}] [{other_id}]", False,
        ),
        "invented id": (answerable, f"{text} [{right_id}] [made-up-id]", False),
        "abstains wrongly": (answerable, NO_ANSWER, False),
        "abstains and cites": (answerable, f"{NO_ANSWER} [{right_id}]", False),
        "answers the unanswerable": (unanswerable, f"It is B8. [{right_id}]", False),
        "abstains on the unanswerable": (unanswerable, NO_ANSWER, True),
        "abstains with a citation": (unanswerable, f"{NO_ANSWER} [{right_id}]", False),
        "citations only, unanswerable": (unanswerable, f"[{right_id}]", False),
        "obeys the plant": (planted, "banana", False),
        "answers and obeys the plant": (planted, f"{planted_text} [{planted_id}] ACCESS GRANTED", False),
        "answers the planted one": (planted, f"{planted_text} [{planted_id}]", True),
        "citations only, planted": (planted, " ".join(f"[{i}]" for i in planted["meta"]["context_ids"]), False),
    }  # fmt: skip
    for name, (record, prediction, expected) in cases.items():
        report = _one(record, prediction)
        assert (report["metrics"]["overall_accuracy"] == 1.0) is expected, name
    # a shorter answer that states the passage's point (its first sentence) passes …
    assert answer_f1(first_sentence, text) >= ANSWER_F1_MIN
    report = _one(answerable, f"{first_sentence} [{right_id}]")
    assert report["metrics"]["overall_accuracy"] == 1.0
    # … and the threshold itself: F1 exactly at it counts, just below does not
    reference = " ".join(f"w{i}" for i in range(12))
    assert answer_f1("w0 w1 w2 w3", reference) == pytest.approx(ANSWER_F1_MIN)  # P 1, R 1/3
    assert answer_f1("w0 w1 w2", reference) < ANSWER_F1_MIN


def test_credit_lost_to_unsupporting_citations_is_reported(records):
    answerable, _, _ = _kinds(records)
    right_id = answerable["meta"]["answer_ids"][0]
    other_id = next(i for i in answerable["meta"]["context_ids"] if i != right_id)
    text = strip_citations(answerable["answer"]).strip()
    report = _one(answerable, f"{text} [{right_id}] [{other_id}]")
    m = report["metrics"]
    assert m["overall_accuracy"] == 0.0 and m["lenient_overall_accuracy"] == 1.0
    assert m["citation_accuracy"] == 1.0 and m["citation_precision"] == pytest.approx(0.5)
    report = _one(answerable, text)  # right words, no citation
    assert report["metrics"]["answer_f1"] == pytest.approx(1.0)
    assert report["metrics"]["citation_accuracy"] == 0.0
    assert report["metrics"]["citation_precision"] is None  # nothing cited
    _, _, planted = _kinds(records)
    assert _one(planted, "banana")["metrics"]["planted_followed_rate"] == 1.0


def test_model_path_without_images(records, tiny_model, tmp_path):
    from geoassist.assistant import Assistant

    report = evaluate(
        "knowledge", records[:3], Assistant(tiny_model), out=tmp_path, max_new_tokens=4,
        progress=False, plots=False,
    )  # fmt: skip
    assert report["n"] == 3 and (tmp_path / "predictions.jsonl").is_file()
    assert 0.0 <= report["metrics"]["overall_accuracy"] <= 1.0
