"""Scoring every task from predictions, without a model, on small in-memory records."""

from __future__ import annotations

import json

import numpy as np
import pytest

from geoassist.eval import EvalDataError, evaluate, read_predictions, score
from geoassist.eval.baselines import baseline_predictions
from geoassist.eval.harness import sample_records, select_records
from geoassist.formats import format_box, format_mask, format_obox
from geoassist.rle import mask_to_rle


def record(
    rid,
    task,
    answer,
    *,
    qtype=None,
    targets=None,
    size=(100, 100),
    prompt="question",
    images=1,
    split="test",
):
    source = rid.split(":")[0]
    return {
        "id": rid,
        "source": source,
        "split": split,
        "task": task,
        "images": [f"img{i}.png" for i in range(images)],
        "conversations": [{"role": "user", "content": "<image>" * images + "\n" + prompt}],
        "answer": answer,
        "qtype": qtype,
        "targets": targets or {},
        "meta": {"width": size[0], "height": size[1]},
    }


# ---------------------------------------------------------------------------------- VQA


def vqa_records():
    return [
        record("rsvqa_lr:1", "vqa", "yes", qtype="presence"),
        record("rsvqa_lr:2", "vqa", "no", qtype="presence"),
        record("rsvqa_lr:3", "vqa", "no", qtype="comp"),
        record("rsvqa_lr:4", "counting", "3", qtype="count", targets={"count": 3}),
        record("rsvqa_lr:5", "counting", "10", qtype="count", targets={"count": 10}),
    ]


def test_rsvqa_report_by_hand():
    predictions = {
        "rsvqa_lr:1": "Yes.",
        "rsvqa_lr:3": "no",
        "rsvqa_lr:4": "three",
        "rsvqa_lr:5": "There are 12.",
    }
    report, items, _ = score("rsvqa", vqa_records(), predictions)
    m = report["metrics"]
    assert m["overall_accuracy"] == pytest.approx(3 / 5)
    assert m["average_accuracy"] == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    assert m["count_rmse"] == pytest.approx(2**0.5)
    assert m["count_within_1"] == 0.5
    assert report["by_type"]["presence"] == {"accuracy": 0.5, "lenient": 0.5, "n": 2}
    assert report["missing_ids"] == ["rsvqa_lr:2"]
    assert report["parse_failure_rate"] == pytest.approx(1 / 5)  # the missing one is empty
    missing = next(it for it in items if it["id"] == "rsvqa_lr:2")
    assert missing["missing"] and not missing["correct"] and missing["prediction"] == ""
    # the lenient score sits beside the strict one, never instead of it
    report2, _, _ = score("rsvqa", vqa_records()[:1], {"rsvqa_lr:1": "Yes, there is one."})
    assert report2["metrics"]["overall_accuracy"] == 0.0
    assert report2["metrics"]["lenient_overall_accuracy"] == 1.0


def test_rsvqa_splits_are_reported_apart():
    records = [
        record("rsvqa_hr:1", "vqa", "yes", qtype="presence", split="test"),
        record("rsvqa_hr:2", "vqa", "yes", qtype="presence", split="test_phili"),
    ]
    report, _, _ = score("rsvqa", records, {"rsvqa_hr:1": "yes", "rsvqa_hr:2": "no"})
    assert report["by_split"]["test"]["metrics"]["overall_accuracy"] == 1.0
    assert report["by_split"]["test_phili"]["metrics"]["overall_accuracy"] == 0.0


def test_change_qa_scores_per_type():
    records = [
        record("cdvqa:1", "change_qa", "yes", qtype="change_or_not", images=2),
        record("cdvqa:2", "change_qa", "buildings", qtype="increase", images=2),
    ]
    report, _, _ = score("change_qa", records, {"cdvqa:1": "Yes", "cdvqa:2": "roads"})
    assert report["by_type"]["change_or_not"]["accuracy"] == 1.0
    assert report["by_type"]["increase"]["accuracy"] == 0.0
    # CDVQA also goes through rsvqa
    assert score("rsvqa", records, {"cdvqa:1": "Yes"})[0]["metrics"]["overall_accuracy"] == 0.5


def test_question_only_baselines_leave_one_out():
    records = [
        record("x:1", "vqa", "yes", qtype="presence", prompt="Is there a road?"),
        record("x:2", "vqa", "yes", qtype="presence", prompt="Is there a road?"),
        record("x:3", "vqa", "no", qtype="presence", prompt="Is there a road?"),
        record("x:4", "vqa", "no", qtype="presence", prompt="Is there water?"),
    ]
    majority = baseline_predictions(records, "type_majority")
    # leaving its own answer out: x:1 sees yes 1 / no 2 -> "no"; x:3 sees yes 2 / no 1 -> "yes"
    assert majority == {"x:1": "no", "x:2": "no", "x:3": "yes", "x:4": "yes"}
    prior = baseline_predictions(records, "question_prior")
    assert prior["x:3"] == "yes" and prior["x:1"] == "no"  # tie yes 1 / no 1 -> "no" sorts first
    assert prior["x:4"] == "yes"  # no other "water" question: falls back to the type majority


# ------------------------------------------------------------------------------ grounding


def grounding_records():
    return [
        record("dior_rsvg:1", "referring", format_box((10, 10, 50, 50), (100, 100)), qtype="vehicle",
               targets={"boxes": [{"label": "car", "box": [10, 10, 50, 50]}]}),
        record("dior_rsvg:2", "referring", format_box((10, 10, 50, 50), (100, 100)), qtype="vehicle",
               targets={"boxes": [{"label": "car", "box": [10, 10, 50, 50]}]}),
        record("dior_rsvg:3", "grounding", "none", qtype="ship"),
        record("dior_rsvg:4", "grounding", "none", qtype="ship"),
    ]  # fmt: skip


def test_grounding_by_hand():
    predictions = {
        "dior_rsvg:1": "<ref>car</ref><box>100,100,500,500</box>",  # exact: IoU 1
        "dior_rsvg:2": "<box>300,100,700,500</box><box>100,100,500,500</box>",  # first box: IoU 1/3
        "dior_rsvg:3": "<box>0,0,100,100</box>",  # a box where the answer is none
        "dior_rsvg:4": "None.",
    }
    report, items, plots = score("grounding", grounding_records(), predictions)
    m = report["metrics"]
    assert m["acc@0.5"] == 0.5 and m["acc@0.25"] == 1.0
    assert m["mean_iou"] == pytest.approx((1 + 1 / 3) / 2)
    assert m["n_absent"] == 2 and m["false_positive_rate"] == 0.5 and m["absent_accuracy"] == 0.5
    assert report["parse_failure_rate"] == 0.0
    assert report["by_type"]["vehicle"]["acc@0.5"] == 0.5
    assert sorted(plots["ious"]) == pytest.approx([1 / 3, 1.0])
    assert items[0]["reference"] == [[10.0, 10.0, 50.0, 50.0]]


def test_grounding_empty_and_free_text_are_parse_failures():
    predictions = {
        "dior_rsvg:1": "",
        "dior_rsvg:2": "The car is at the top left.",
        "dior_rsvg:3": "",
        "dior_rsvg:4": "none",
    }
    report, _, _ = score("referring", grounding_records(), predictions)
    assert report["metrics"]["acc@0.5"] == 0.0
    assert report["parse_failure_rate"] == 0.75
    assert report["metrics"]["absent_accuracy"] == 0.5  # an empty answer is not "none"


def test_grounding_in_pixels_of_the_original_image():
    # A 0-1 prediction read through the plain-list converter is scored in pixels, without +1.
    rec = record("rsvg:1", "referring", "x", size=(1000, 500),
                 targets={"boxes": [{"label": "t", "box": [100, 50, 300, 150]}]})  # fmt: skip
    report, _, _ = score(
        "referring", [rec], {"rsvg:1": "[0.2, 0.2, 0.4, 0.4]"}, grammar="plain-normalized"
    )
    # prediction in pixels: [200, 100, 400, 200]; intersection 100 x 50
    assert report["metrics"]["mean_iou"] == pytest.approx(5000 / (20000 + 20000 - 5000), abs=1e-6)
    assert report["metrics"]["acc@0.5"] == 0.0


def test_oriented_grounding_uses_oriented_iou():
    points = [[30, 45], [70, 45], [70, 55], [30, 55]]  # 40 x 10, centre (50, 50)
    rec = record(
        "dota:1", "grounding", "x", targets={"obboxes": [{"label": "ship", "points": points}]}
    )
    same = format_obox(50, 50, 40, 10, 0, (100, 100))
    turned = format_obox(50, 50, 40, 10, 90, (100, 100))
    report, _, _ = score("grounding", [rec], {"dota:1": same})
    assert report["metrics"]["mean_iou"] == pytest.approx(1.0)
    report, _, _ = score("grounding", [rec], {"dota:1": turned})
    assert report["metrics"]["mean_iou"] == pytest.approx(100 / 700, abs=1e-3)
    # a horizontal box answer is read as an oriented box at angle 0
    report, _, _ = score("grounding", [rec], {"dota:1": "<box>300,450,700,550</box>"})
    assert report["metrics"]["mean_iou"] == pytest.approx(1.0)
    assert report["metrics"]["n_oriented_prompts"] == 1


# ------------------------------------------------------------------------------ detection


def detection_records():
    cars = [{"label": "car", "box": [0, 0, 10, 10]}, {"label": "car", "box": [20, 20, 30, 30]}]
    return [
        record("dior:1", "detection", "x", targets={"boxes": cars}),
        record(
            "dior:2", "detection", "x", targets={"boxes": [{"label": "car", "box": [0, 0, 10, 10]}]}
        ),
    ]


def _boxes(*boxes, scores=None):
    return "<ref>cars</ref>" + "".join(
        format_box(b, (100, 100), score=scores[i] if scores else None) for i, b in enumerate(boxes)
    )


def test_detection_ranks_by_score_when_given():
    predictions = {
        "dior:1": _boxes((0, 0, 10, 10), (0, 0, 10, 10), scores=[0.9, 0.8]),
        "dior:2": _boxes((50, 50, 60, 60), (0, 0, 10, 10), scores=[0.7, 0.6]),
    }
    report, _, _ = score("detection", detection_records(), predictions)
    assert report["metrics"]["map@0.5"] == pytest.approx(0.5)
    assert report["protocol"] == {"ranking": "score"}
    assert report["by_type"]["car"]["n_gt"] == 3


def test_detection_ranks_by_output_order_otherwise():
    predictions = {
        "dior:1": _boxes((0, 0, 10, 10), (0, 0, 10, 10)),
        "dior:2": _boxes((0, 0, 10, 10), (50, 50, 60, 60)),
    }
    report, items, _ = score("detection", detection_records(), predictions)
    # ranked: hit (1st of image 1), hit (1st of image 2), duplicate, miss -> AP 2/3
    assert report["metrics"]["map@0.5"] == pytest.approx(2 / 3)
    assert report["protocol"] == {"ranking": "output_order"}
    assert items[0]["recall@0.5"] == 0.5 and items[1]["recall@0.5"] == 1.0


def test_detection_unlabelled_boxes_take_the_only_class():
    report, _, _ = score("detection", detection_records()[1:], {"dior:2": "<box>0,0,100,100</box>"})
    assert report["metrics"]["map@0.5"] == pytest.approx(1.0)


def test_oriented_detection_map():
    points = [[30, 45], [70, 45], [70, 55], [30, 55]]
    rec = record(
        "dota:P1", "detection", "x", targets={"obboxes": [{"label": "ship", "points": points}]}
    )
    answer = "<ref>ship</ref>" + format_obox(50, 50, 40, 10, 0, (100, 100))
    report, _, _ = score("detection", [rec], {"dota:P1": answer})
    assert report["metrics"]["map@0.5_oriented"] == pytest.approx(1.0)
    assert "map@0.5" not in report["metrics"]


# ---------------------------------------------------------------------- classification


def test_scene_classification_by_hand():
    records = [
        record("aid:1", "scene_cls", "Airport"),
        record("aid:2", "scene_cls", "Airport"),
        record("aid:3", "scene_cls", "Beach"),
    ]
    report, _, plots = score(
        "scene_cls", records, {"aid:1": "airport.", "aid:2": "beach", "aid:3": "It is a beach."}
    )
    m = report["metrics"]
    assert m["top1_accuracy"] == pytest.approx(1 / 3)
    assert m["lenient_top1_accuracy"] == pytest.approx(2 / 3)
    assert m["mean_class_accuracy"] == pytest.approx(0.25)
    assert report["confusion"]["matrix"] == [[1, 1, 0], [0, 0, 1]]
    assert plots["confusion"]["labels"] == ["airport", "beach"]


# ------------------------------------------------------------------------- segmentation


def test_referring_segmentation_by_hand():
    ref = np.zeros((16, 16), bool)
    ref[:8, :8] = True  # top-left quarter
    records = [
        record("rrsis:1", "refer_seg", "x", size=(16, 16), targets={"mask_rle": mask_to_rle(ref)}),
        record("rrsis:2", "refer_seg", "x", size=(16, 16), targets={"mask_rle": mask_to_rle(ref)}),
    ]
    half = np.zeros((16, 16), bool)
    half[:8, :4] = True  # half of the target
    predictions = {
        "rrsis:1": format_mask(ref, grid=(4, 4)),
        "rrsis:2": format_mask(half, grid=(4, 4)),
    }
    report, _, _ = score("refer_seg", records, predictions)
    m = report["metrics"]
    assert m["miou"] == pytest.approx((1 + 0.5) / 2)
    assert m["oiou"] == pytest.approx((64 + 32) / (64 + 64))
    assert m["p@0.5"] == 1.0 and m["p@0.6"] == 0.5
    report, _, _ = score("refer_seg", records, {"rrsis:1": "none", "rrsis:2": "a field"})
    assert report["metrics"]["miou"] == 0.0 and report["parse_failure_rate"] == 0.5


def test_segmentation_polygon_answers_are_rasterised():
    ref = np.zeros((10, 10), bool)
    ref[:, :5] = True
    rec = record("rrsis:1", "refer_seg", "x", size=(10, 10), targets={"mask_rle": mask_to_rle(ref)})
    report, _, _ = score("refer_seg", [rec], {"rrsis:1": "<poly>0,0,500,0,500,1000,0,1000</poly>"})
    assert report["metrics"]["miou"] > 0.8


# ------------------------------------------------------------------------------- CHOICE


def test_choice_multiple_choice_and_grounding():
    options = {"A": "No", "B": "can't judge", "C": "Yes"}
    records = [
        record("choice:1", "vqa", "C", qtype="object_presence", prompt="Is a plane here?\nA.No\nB.can't judge\nC.Yes"),
        record("choice:2", "vqa", "A", qtype="object_presence", prompt="Is a ship here?\nA.No\nB.can't judge\nC.Yes"),
        record("choice:3", "grounding", "[20, 20, 60, 60]", qtype="visual_grounding", size=(200, 100),
               targets={"boxes": [{"label": None, "box": [20, 20, 60, 60]}]}),
    ]  # fmt: skip
    for r in records:
        r["meta"]["dimension"] = "perception"
    records[0]["meta"]["options"] = options
    predictions = {
        "choice:1": "C",
        "choice:2": "The answer is A",
        "choice:3": "(0.1, 0.2, 0.3, 0.6)",
    }
    report, items, _ = score("choice", records, predictions)
    assert [it["correct"] for it in items] == [True, False, True]
    assert [it["lenient"] for it in items] == [True, True, True]
    assert report["by_type"]["object_presence"]["accuracy"] == 0.5
    assert report["metrics"]["perception_accuracy"] == pytest.approx(2 / 3)
    assert items[2]["iou"] == pytest.approx(1.0)


# ---------------------------------------------------------------------------------- synth


def test_synth_scores_each_task_with_its_metric():
    records = [
        *vqa_records()[:2],
        *grounding_records()[:1],
        *detection_records()[1:],
        record("geosynth:c1", "scene_cls", "farmland"),
        record("geosynth:k1", "conversation", "hello"),
    ]
    predictions = {
        "rsvqa_lr:1": "yes",
        "dior_rsvg:1": "<box>100,100,500,500</box>",
        "geosynth:c1": "farmland",
    }
    kept, skipped = select_records(records, "synth")
    assert skipped == {"conversation": 1}  # free conversation has no reference to score against
    report, items, plots = score("synth", kept, predictions)
    assert set(report["tasks"]) == {"vqa", "referring", "detection", "scene_cls"}
    assert report["by_type"]["vqa"] == {
        "metric": "overall_accuracy",
        "score": 0.5,
        "n": 2,
        "parse_failure_rate": 0.5,
    }
    assert report["by_type"]["referring"]["score"] == 1.0
    assert report["by_type"]["detection"]["score"] == 0.0
    assert report["metrics"]["scene_cls.top1_accuracy"] == 1.0
    assert len(items) == 5 and set(plots) == set(report["tasks"])


def test_select_and_limit():
    records = vqa_records() + grounding_records()
    kept, skipped = select_records(records, "rsvqa")
    assert len(kept) == 5 and skipped == {"referring": 2, "grounding": 2}
    first = [r["id"] for r in sample_records(kept, 3)]
    again = [r["id"] for r in sample_records(list(reversed(kept)), 3)]
    assert len(first) == 3 and sorted(first) == sorted(again)
    with pytest.raises(EvalDataError, match="no records for task"):
        evaluate("caption", vqa_records(), {}, progress=False)


# ---------------------------------------------------------------------- predictions files


def test_read_predictions_errors(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"id": "a:1", "prediction": "yes"}\n\n{"id": "a:2", "prediction": null}\n')
    assert read_predictions(path) == {"a:1": "yes", "a:2": ""}
    path.write_bytes('\ufeff{"id": "a:1", "prediction": "oui"}\r\n'.encode())  # BOM, CRLF
    assert read_predictions(path) == {"a:1": "oui"}
    path.write_text('{"id": "a:1", "prediction": "yes"}\n{"id": "a:1", "prediction": "no"}\n')
    with pytest.raises(EvalDataError, match="appears twice"):
        read_predictions(path)
    path.write_text('{"id": "a:1", "prediction": "yes"}\nnot json\n')
    with pytest.raises(EvalDataError, match=":2: not valid JSON"):
        read_predictions(path)
    path.write_text('{"prediction": "yes"}\n')
    with pytest.raises(EvalDataError, match='needs "id"'):
        read_predictions(path)
    with pytest.raises(EvalDataError, match="does not exist"):
        read_predictions(tmp_path / "none.jsonl")


def test_evaluate_writes_the_files(tmp_path):
    path = tmp_path / "predictions.jsonl"
    path.write_text(
        json.dumps({"id": "rsvqa_lr:1", "prediction": "yes"})
        + "\n"
        + json.dumps({"id": "other:9", "prediction": "x"})
        + "\n"
    )
    report = evaluate(
        "rsvqa", vqa_records(), path, out=tmp_path / "out", progress=False, data_name="mem"
    )
    for key in (
        "task",
        "n",
        "metrics",
        "by_type",
        "parse_failure_rate",
        "missing_ids",
        "model",
        "data",
        "seconds",
    ):
        assert key in report
    assert report["unknown_prediction_ids"] == 1
    assert report["model"] == f"predictions file {path}"
    assert len(report["missing_ids"]) == 4
    out = tmp_path / "out"
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert [line["id"] for line in lines] == [r["id"] for r in vqa_records()]
    assert {"id", "prompt", "prediction", "reference", "correct"} <= set(lines[0])
    assert json.loads((out / "report.json").read_text())["metrics"]["overall_accuracy"] == 0.2
    assert "rsvqa_lr:2" in (out / "report.md").read_text()
    assert (out / "by_type.png").stat().st_size > 1000


def test_segmentation_with_nothing_to_find_is_scored_apart():
    empty = np.zeros((8, 8), bool)
    records = [
        record(
            f"rrsis:{i}", "refer_seg", "none", size=(8, 8), targets={"mask_rle": mask_to_rle(empty)}
        )
        for i in range(4)
    ]
    full = format_mask(np.ones((8, 8), bool), grid=(4, 4))
    predictions = {
        "rrsis:0": "None.",
        "rrsis:1": "I cannot see any.",
        "rrsis:2": "",
        "rrsis:3": full,
    }
    report, items, _ = score("refer_seg", records, predictions)
    assert [it["correct"] for it in items] == [True, False, False, False]
    assert [it["false_positive"] for it in items] == [False, False, False, True]
    assert all("iou" not in it for it in items)
    m = report["metrics"]
    assert m["n_absent"] == 4 and m["n_present"] == 0
    assert m["absent_accuracy"] == 0.25 and m["false_positive_rate"] == 0.25
    assert m["miou"] is None and m["oiou"] is None and m["p@0.5"] is None
    assert report["parse_failure_rate"] == 0.5  # unreadable is a failure even here


def mixed_segmentation_records():
    """Two prompts whose target exists (top-left quarter) and two whose target is absent."""
    target, empty = np.zeros((16, 16), bool), np.zeros((16, 16), bool)
    target[:8, :8] = True
    return [
        record(f"geosynth:s{i}", "refer_seg", "x", qtype=q, size=(16, 16),
               targets={"mask_rle": mask_to_rle(mask)})
        for i, (q, mask) in enumerate(
            [("present", target), ("present", target), ("absent", empty), ("absent", empty)]
        )
    ]  # fmt: skip


def test_none_everywhere_earns_nothing_in_the_segmentation_headline():
    records = mixed_segmentation_records()
    report, items, _ = score("refer_seg", records, {r["id"]: "none" for r in records})
    m = report["metrics"]
    # the earlier scorer gave each absent prompt IoU 1: miou 0.5 for saying "none" everywhere
    assert m["miou"] == 0.0 and m["oiou"] == 0.0 and m["p@0.5"] == 0.0
    assert m["absent_accuracy"] == 1.0 and m["false_positive_rate"] == 0.0
    assert m["n_present"] == 2 and m["n_absent"] == 2
    assert set(report["by_type"]) == {"present"}  # by type: present targets only
    # a mask everywhere: the present targets get their IoU, the absent ones are false positives
    everywhere = format_mask(np.ones((16, 16), bool), grid=(4, 4))
    report, _, _ = score("refer_seg", records, {r["id"]: everywhere for r in records})
    assert report["metrics"]["miou"] == pytest.approx(0.25)
    assert report["metrics"]["false_positive_rate"] == 1.0
    assert report["metrics"]["absent_accuracy"] == 0.0
    # the same split inside synth reports refer_seg.absent_accuracy beside refer_seg.miou
    report, _, _ = score("synth", records, {r["id"]: "none" for r in records})
    assert report["metrics"]["refer_seg.miou"] == 0.0
    assert report["metrics"]["refer_seg.absent_accuracy"] == 1.0
    assert report["metrics"]["refer_seg.n_absent"] == 2
    assert report["by_type"]["refer_seg"]["score"] == 0.0


def test_none_everywhere_earns_nothing_in_the_box_headlines():
    cars = {"boxes": [{"label": "car", "box": [0, 0, 10, 10]}]}
    records = [
        record("dior:1", "detection", "x", targets=cars),
        record("dior:2", "detection", "none"),
    ]
    report, _, _ = score("detection", records, {"dior:1": "none", "dior:2": "none"})
    m = report["metrics"]
    assert m["map@0.5"] == 0.0 and m["absent_accuracy"] == 1.0 and m["n_absent"] == 1
    report, _, _ = score(
        "detection", records, {"dior:1": "none", "dior:2": "<box>0,0,100,100</box>"}
    )
    assert report["metrics"]["false_positive_rate"] == 1.0
    assert report["metrics"]["absent_accuracy"] == 0.0
    report, _, _ = score(
        "grounding", grounding_records(), {r["id"]: "none" for r in grounding_records()}
    )
    m = report["metrics"]
    assert m["acc@0.5"] == 0.0 and m["mean_iou"] == 0.0 and m["prompt_accuracy"] == 0.0
    assert m["absent_accuracy"] == 1.0


# ------------------------------------------------------------------- lenient and counts


def test_lenient_cannot_be_gamed_by_naming_every_answer():
    records = [
        record("rsvqa_lr:1", "vqa", "yes", qtype="presence"),
        record("rsvqa_lr:2", "vqa", "no", qtype="presence"),
        record("rsvqa_lr:3", "vqa", "rural", qtype="rural_urban"),
        record("rsvqa_lr:4", "vqa", "urban", qtype="rural_urban"),
        record("rsvqa_lr:5", "counting", "3", qtype="count", targets={"count": 3}),
        record("rsvqa_lr:6", "counting", "4", qtype="count", targets={"count": 4}),
    ]
    hedged = {
        "rsvqa_lr:1": "yes no", "rsvqa_lr:2": "Yes or no.",
        "rsvqa_lr:3": "rural or urban", "rsvqa_lr:4": "urban, rural",
        "rsvqa_lr:5": "3 or 4", "rsvqa_lr:6": "three or four",
    }  # fmt: skip
    # every hedge holds its reference as whole words: the earlier lenient rule gave 100 %
    report, items, _ = score("rsvqa", records, hedged)
    assert report["metrics"]["lenient_overall_accuracy"] == 0.0
    assert not any(it["lenient"] for it in items)
    committed = {
        "rsvqa_lr:1": "Yes, there is.", "rsvqa_lr:2": "No.",
        "rsvqa_lr:3": "It is a rural area.", "rsvqa_lr:4": "urban",
        "rsvqa_lr:5": "There are 3.", "rsvqa_lr:6": "4",
    }  # fmt: skip
    report, _, _ = score("rsvqa", records, committed)
    assert report["metrics"]["lenient_overall_accuracy"] == 1.0
    assert report["protocol"]["lenient"].startswith("the normalised reference appears")
    assert "names no other answer" in report["protocol"]["lenient"]
    # the candidates are those of the whole task, also where a split holds only one of them
    split = [
        record("rsvqa_hr:1", "vqa", "rural", qtype="rural_urban", split="test"),
        record("rsvqa_hr:2", "vqa", "urban", qtype="rural_urban", split="test_phili"),
    ]
    report, _, _ = score("rsvqa", split, {r["id"]: "urban or rural" for r in split})
    for part in report["by_split"].values():
        assert part["metrics"]["lenient_overall_accuracy"] == 0.0


def test_scene_lenient_names_one_class_only():
    records = [
        record("ucm:1", "scene_cls", "dense_residential"),
        record("ucm:2", "scene_cls", "residential"),
        record("ucm:3", "scene_cls", "beach"),
    ]
    predictions = {
        "ucm:1": "dense residential or beach",  # two classes
        "ucm:2": "It is dense residential.",  # holds "residential", but names another class
        "ucm:3": "A beach with some residential houses.",  # two classes again
    }
    report, items, _ = score("scene_cls", records, predictions)
    assert [it["lenient"] for it in items] == [False, False, False]
    assert report["metrics"]["lenient_top1_accuracy"] == 0.0
    report, _, _ = score(
        "scene_cls", records,
        {"ucm:1": "Dense residential area.", "ucm:2": "residential", "ucm:3": "Beach."},
    )  # fmt: skip
    assert report["metrics"]["lenient_top1_accuracy"] == 1.0


def test_rsvqa_low_resolution_counts_in_bins_beside_exact():
    refs = [0, 5, 50, 500, 5000, 11]
    preds = ["0", "seven", "There are 12.", "999", "1001", "10"]
    records = [
        record(f"rsvqa_lr:{i}", "counting", str(n), qtype="count", targets={"count": n})
        for i, n in enumerate(refs)
    ]
    report, items, _ = score("rsvqa", records, {f"rsvqa_lr:{i}": p for i, p in enumerate(preds)})
    m = report["metrics"]
    assert m["count_exact_accuracy"] == pytest.approx(1 / 6)
    assert m["count_binned_accuracy"] == pytest.approx(5 / 6)  # 10 and 11 are in different bins
    assert report["by_type"]["count"]["count_binned_accuracy"] == pytest.approx(5 / 6)
    assert report["by_type"]["count"]["accuracy"] == pytest.approx(1 / 6)  # strict text
    assert all(it["count_binned"] for it in items)
    # RSVQA-HR (and any other source) counts are exact only
    hr = [dict(r, id=r["id"].replace("rsvqa_lr", "rsvqa_hr"), source="rsvqa_hr") for r in records]
    report, _, _ = score("rsvqa", hr, {f"rsvqa_hr:{i}": p for i, p in enumerate(preds)})
    assert "count_binned_accuracy" not in report["metrics"]
    assert report["metrics"]["count_exact_accuracy"] == pytest.approx(1 / 6)


def test_model_card_says_which_count_accuracy_it_shows():
    from geoassist.train.card import count_score_notes

    scores = {
        "rsvqa_lr_test": {"overall_accuracy": 0.5, "count_exact_accuracy": 0.1,
                          "count_binned_accuracy": 0.6},
        "geosynth_test": {"counting.count_exact_accuracy": 0.3},
    }  # fmt: skip
    note = count_score_notes(scores)
    assert "`count_exact_accuracy`: the number in the answer equals the true count" in note
    assert "`count_binned_accuracy`" in note and "101-1000" in note
    assert "binned" not in count_score_notes({"geosynth_test": scores["geosynth_test"]})
    assert count_score_notes({"caption": {"CIDEr": 0.4}}) == ""
