"""`geoassist eval` on the real samples in ../shared/rs-samples (skipped when absent)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from geoassist.cli import main
from geoassist.eval import evaluate
from geoassist.eval.baselines import baseline_predictions
from geoassist.eval.data import load_eval_data

pytestmark = pytest.mark.realdata


def test_real_data_is_scored_on_the_test_images_of_the_real_split(rs_samples, tmp_path):
    from geoassist.splits import record_image_id, split_ids

    data = rs_samples / "rsvqa" / "LR_reduced"
    every, _ = load_eval_data(data, task="rsvqa", real_split=None)
    test, _ = load_eval_data(data, task="rsvqa")
    val, _ = load_eval_data(data, task="rsvqa", real_split="val")
    assert {record_image_id(r) for r in test} == split_ids("rsvqa_lr", "test")
    assert {record_image_id(r) for r in val} == split_ids("rsvqa_lr", "val")
    assert len(test) == sum(record_image_id(r) in split_ids("rsvqa_lr", "test") for r in every)
    assert 0 < len(test) < len(every)
    # the command line reads it too
    out = tmp_path / "out"
    args = ["eval", "rsvqa", "--baseline", "type_majority", "--data", str(data), "--no-progress"]
    assert main([*args, "--out", str(out), "--no-plots"]) == 0
    assert json.loads((out / "report.json").read_text())["n"] == len(test)
    args += ["--ci-resamples", "0"]  # intervals are tested elsewhere
    assert main([*args, "--out", str(tmp_path / "all"), "--no-plots", "--real-split", "all"]) == 0
    assert json.loads((tmp_path / "all" / "report.json").read_text())["n"] == len(every)
    # an evaluation-only dataset is all test; a train-only excerpt has nothing to score
    dota, _ = load_eval_data(rs_samples / "dota")
    assert dota and {record_image_id(r) for r in dota} == {"P1888"}
    from geoassist.eval.targets import EvalDataError

    with pytest.raises(EvalDataError, match="--real-split all"):
        load_eval_data(rs_samples / "change_captioning", real_split="test")


def test_rsvqa_lr_question_only_baseline(rs_samples, tmp_path):
    # a reader check: every image of the excerpt, against counts made by hand
    records, root = load_eval_data(
        rs_samples / "rsvqa" / "LR_reduced", task="rsvqa", real_split=None
    )
    predictions = baseline_predictions(records, "type_majority")
    report = evaluate("rsvqa", records, predictions, root, tmp_path, progress=False)
    assert report["n"] == 3003 and not report["missing_ids"]
    assert set(report["by_type"]) == {"presence", "comp", "count", "rural_urban"}
    # By hand from the answer counts of this excerpt (yes 670 / no 227 for presence, no 795 /
    # yes 413 for comp, "0" 206 of 868 counts, rural 17 / urban 13): the majority answer, with
    # each item's own answer left out, is right this often.
    by_type = report["by_type"]
    assert by_type["presence"]["accuracy"] == pytest.approx(670 / 897)
    assert by_type["comp"]["accuracy"] == pytest.approx(795 / 1208)
    assert by_type["count"]["accuracy"] == pytest.approx(206 / 868)
    assert by_type["rural_urban"]["accuracy"] == pytest.approx(17 / 30)
    m = report["metrics"]
    assert m["overall_accuracy"] == pytest.approx((670 + 795 + 206 + 17) / 3003)
    assert m["average_accuracy"] == pytest.approx(
        (670 / 897 + 795 / 1208 + 206 / 868 + 17 / 30) / 4
    )
    assert m["count_rmse"] > 0 and 0 <= m["count_within_1"] <= 1
    for entry in by_type.values():
        assert 0.0 <= entry["accuracy"] <= 1.0 and 0.0 <= entry["lenient"] <= 1.0
    assert {p.name for p in tmp_path.iterdir()} >= {
        "predictions.jsonl",
        "report.json",
        "report.md",
        "by_type.png",
    }


def test_rsvqa_hr_predictions_file_through_the_cli(rs_samples, tmp_path, capsys):
    data = rs_samples / "rsvqa" / "HR_reduced"
    records, _ = load_eval_data(data, task="rsvqa", real_split=None)
    predictions = baseline_predictions(records, "question_prior")
    dropped = sorted(predictions)[:3]
    path = tmp_path / "predictions.jsonl"
    path.write_text(
        "".join(
            json.dumps({"id": k, "prediction": v}) + "\n"
            for k, v in predictions.items()
            if k not in dropped
        )
    )
    out = tmp_path / "out"
    assert (
        main(
            [
                "eval",
                "rsvqa",
                "--predictions",
                str(path),
                "--data",
                str(data),
                "--out",
                str(out),
                "--no-progress",
                "--real-split",
                "all",
            ]
        )
        == 0
    )
    report = json.loads((out / "report.json").read_text())
    assert report["n"] == 300 and report["missing_ids"] == dropped
    assert set(report["by_type"]) == {"presence", "comp", "count", "area"}
    assert all(i.startswith("rsvqa_hr:") for i in report["missing_ids"])
    types = Counter(r["qtype"] for r in records)
    assert {t: e["n"] for t, e in report["by_type"].items()} == dict(types)
    assert "3 record(s) had no prediction" in capsys.readouterr().out
    # the baseline through the CLI scores the same as the file with nothing dropped
    assert (
        main(
            [
                "eval",
                "rsvqa",
                "--baseline",
                "question_prior",
                "--data",
                str(data),
                "--out",
                str(tmp_path / "b"),
                "--no-progress",
                "--real-split",
                "all",
            ]
        )
        == 0
    )
    full = json.loads((tmp_path / "b" / "report.json").read_text())
    assert full["metrics"]["overall_accuracy"] >= report["metrics"]["overall_accuracy"]


def test_rsvqa_lr_model_path_on_real_images(rs_samples, tiny_model, tmp_path):
    from geoassist.assistant import Assistant

    records, root = load_eval_data(rs_samples / "rsvqa" / "LR_reduced", task="rsvqa")
    report = evaluate(
        "rsvqa",
        records,
        Assistant(tiny_model),
        root,
        tmp_path,
        limit=6,
        batch_size=3,
        max_new_tokens=2,
        progress=False,
    )
    assert (
        report["n"] == 6 and report["errors"] == 0 and report["generation"]["items_per_second"] > 0
    )


def test_choice_subset(rs_samples, tmp_path):
    data = rs_samples / "choice" / "CHOICE_subset"
    records, root = load_eval_data(data, task="choice")
    assert 0 < len(records) < 460  # only items whose image is present
    tasks = Counter(r["task"] for r in records)
    assert tasks["grounding"] >= 1 and tasks["refer_seg"] >= 1
    predictions = {}
    for r in records:
        if r["task"] == "grounding":  # the reference quadrilateral, answered as its 0-1 box
            q = r["meta"]["answer_normalised"]
            xs, ys = [p[0] for p in q], [p[1] for p in q]
            predictions[r["id"]] = f"({min(xs)}, {min(ys)}, {max(xs)}, {max(ys)})"
        elif r["task"] == "vqa":
            predictions[r["id"]] = r["answer"] + "."
    report = evaluate("choice", records, predictions, root, tmp_path, progress=False)
    by_type = report["by_type"]
    assert by_type["visual_grounding"]["accuracy"] == 1.0
    assert by_type["referring_expression_segmentation"]["accuracy"] == 0.0
    n_seg = tasks["refer_seg"]
    assert report["metrics"]["overall_accuracy"] == pytest.approx(1 - n_seg / len(records))
    assert {"perception_accuracy", "reasoning_accuracy"} <= set(report["metrics"])


def oracle(records):
    """The recipe's own reference answers (the assistant turn) as predictions."""
    return {r["id"]: r["conversations"][1]["content"] for r in records}


def test_dota_reference_answers_score_full_marks(rs_samples):
    records, root = load_eval_data(rs_samples / "dota")
    answers = oracle(records)
    detection = evaluate("detection", records, answers, root, progress=False)
    # P1888 has horizontal and oriented targets; its [detect_obb] prompt is scored oriented
    assert detection["metrics"]["map@0.5_oriented"] == pytest.approx(1.0)
    assert "map@0.5" not in detection["metrics"]
    assert detection["protocol"]["ranking"] == "output_order"
    grounding = evaluate("grounding", records, answers, root, progress=False)
    assert grounding["metrics"]["acc@0.5"] == 1.0 and grounding["parse_failure_rate"] == 0.0
    assert grounding["metrics"]["mean_iou"] > 0.9  # the 0-1000 grid rounds small vehicles
    vqa = evaluate("rsvqa", records, answers, root, progress=False)
    assert vqa["metrics"]["overall_accuracy"] == 1.0 and vqa["metrics"]["count_rmse"] == 0.0
    # an empty answer to every detection prompt gets nothing
    empty = evaluate("detection", records, {}, root, progress=False)
    assert empty["metrics"]["map@0.5_oriented"] == 0.0 and empty["parse_failure_rate"] == 1.0


def test_isaid_masks_score_as_the_recipe_measured(rs_samples):
    records, root = load_eval_data(rs_samples / "isaid")
    segmentation = [r for r in records if r["task"] == "refer_seg"]
    report = evaluate("refer_seg", records, oracle(records), root, progress=False)
    # the text mask of each answer covers the instance masks as well as the recipe recorded;
    # a prompt whose class is absent ("none") is scored apart, outside miou
    expected = [r["meta"]["mask_text_iou"] for r in segmentation if r["answer"] != "none"]
    assert report["metrics"]["miou"] == pytest.approx(sum(expected) / len(expected), abs=1e-4)
    assert report["metrics"]["n_absent"] == len(segmentation) - len(expected)
    assert report["n"] == len(segmentation) and report["parse_failure_rate"] == 0.0
    detection = evaluate("detection", records, oracle(records), root, progress=False)
    assert detection["metrics"]["map@0.5"] == pytest.approx(1.0)


def test_levir_cd_change_qa(rs_samples):
    records, root = load_eval_data(
        rs_samples / "change_detection" / "samples_LEVIR", real_split=None
    )
    report = evaluate("change_qa", records, oracle(records), root, progress=False)
    assert report["metrics"]["overall_accuracy"] == 1.0
    assert set(report["by_type"]) == {r["qtype"] for r in records if r["task"] == "change_qa"}
    flipped = {k: ("no" if v == "yes" else "yes") for k, v in oracle(records).items()}
    report = evaluate("change_qa", records, flipped, root, progress=False)
    assert report["by_type"]["change_presence"]["accuracy"] == 0.0


def test_levir_cd_change_masks_score_as_the_recipe_measured(rs_samples):
    records, root = load_eval_data(
        rs_samples / "change_detection" / "samples_LEVIR", real_split=None
    )
    pairs = [r for r in records if r["task"] == "change_seg"]
    assert len(pairs) == 6  # one per pair of the excerpt
    report = evaluate("change_seg", records, oracle(records), root, progress=False)
    changed = [r for r in pairs if r["answer"] != "none"]
    expected = sum(r["meta"]["mask_text_iou"] for r in changed) / len(changed)
    m = report["metrics"]
    assert m["mean_change_iou"] == pytest.approx(expected, abs=1e-4)
    assert m["n_present"] == len(changed) and m.get("n_absent", 0) == len(pairs) - len(changed)
    assert 0.5 <= m["change_iou"] <= 1.0 and report["parse_failure_rate"] == 0.0
    nothing = evaluate(
        "change_seg", records, {r["id"]: "none" for r in pairs}, root, progress=False
    )
    assert nothing["metrics"]["change_iou"] == 0.0


@pytest.mark.parametrize(
    ("task", "folder", "headline"),
    [
        ("detection", "dota", "map@0.5_oriented 1.0000"),
        ("detection", "isaid", "map@0.5 1.0000"),
        ("refer_seg", "isaid", "miou 0."),
        ("change_seg", "change_detection/samples_LEVIR", "change_iou "),
    ],
)
def test_geometry_tasks_from_the_command_line_on_published_layouts(
    rs_samples, tmp_path, capsys, task, folder, headline
):
    data = rs_samples / folder
    records, _ = load_eval_data(data, task=task, real_split=None)
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text(
        "".join(json.dumps({"id": r["id"], "prediction": a}) + "\n" for r, a in
                zip(records, oracle(records).values(), strict=True))
    )  # fmt: skip
    out = tmp_path / "out"
    args = ["eval", task, "--predictions", str(predictions), "--data", str(data)]
    args += ["--out", str(out), "--no-plots", "--no-progress", "--ci-resamples", "0"]
    assert main([*args, "--real-split", "all"]) == 0
    report = json.loads((out / "report.json").read_text())
    scored = [r for r in records if r["task"] == task]
    assert report["n"] == len(scored) > 0 and not report["missing_ids"]
    assert report["parse_failure_rate"] == 0.0
    assert headline in capsys.readouterr().out
