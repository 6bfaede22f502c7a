"""`geoassist eval synth`: every task at once on a GeoSynth test split (exact ground truth)."""

from __future__ import annotations

import json
import shutil

import pytest

from geoassist.cli import main
from geoassist.eval import evaluate
from geoassist.eval.data import load_eval_data

SPEC = "seed=3,size=96,kinds=hr+pair"
CAPTION_TASKS = {"caption", "region_caption", "change_caption"}


def oracle(records):
    return {r["id"]: r["conversations"][1]["content"] for r in records}


@pytest.fixture(scope="module")
def geosynth():
    records, root = load_eval_data(SPEC, task="synth", recipe="geosynth")
    assert {r["split"] for r in records} == {"test"}
    return records, root


def test_reference_answers_score_full_marks(geosynth, tmp_path):
    records, root = geosynth
    records = [
        r for r in records if r["task"] not in CAPTION_TASKS
    ]  # captions need Java: slow test
    report = evaluate("synth", records, oracle(records), root, tmp_path, progress=False)
    scores = {task: entry["score"] for task, entry in report["by_type"].items()}
    assert {
        "vqa",
        "counting",
        "change_qa",
        "grounding",
        "referring",
        "detection",
        "scene_cls",
        "change_seg",
    } <= set(scores)
    for task, value in scores.items():
        if task not in ("refer_seg", "change_seg"):
            assert value == pytest.approx(1.0), task
    # prompts whose target is absent ("none") are scored apart, outside refer_seg.miou
    for task, metric in (("refer_seg", "miou"), ("change_seg", "mean_change_iou")):
        seg = [r for r in records if r["task"] == task and r["answer"] != "none"]
        expected = sum(r["meta"]["mask_text_iou"] for r in seg) / len(seg)
        assert report["metrics"][f"{task}.{metric}"] == pytest.approx(expected, abs=1e-3)
    assert report["by_type"]["refer_seg"]["metric"] == "miou"
    assert report["by_type"]["change_seg"]["metric"] == "change_iou"
    assert 0.5 <= scores["change_seg"] <= 1.0  # the text mask's grid keeps IoU >= 0.5
    assert report["metrics"]["refer_seg.absent_accuracy"] == 1.0
    # referring: the expressions that need more than the class are reported apart
    m = report["metrics"]
    assert m["referring.acc@0.5_beyond_class"] == 1.0 and m["referring.n_beyond_class"] > 0
    assert m["referring.n_beyond_class"] + m.get("referring.n_class_only", 0) == len(
        [r for r in records if r["task"] == "referring" and r["answer"] != "none"]
    )
    assert report["parse_failure_rate"] == 0.0 and not report["missing_ids"]
    assert report["metrics"]["detection.map@0.5"] == pytest.approx(1.0)
    files = {p.name for p in tmp_path.iterdir()}
    assert {"by_type.png", "scene_cls_confusion_matrix.png", "grounding_iou_histogram.png"} <= files
    assert "## grounding" in (tmp_path / "report.md").read_text()


def test_wrong_answers_score_nothing(geosynth):
    records, root = geosynth
    records = [r for r in records if r["task"] not in CAPTION_TASKS]
    report = evaluate(
        "synth", records, {r["id"]: "wrong answer" for r in records}, root, progress=False
    )
    for task, entry in report["by_type"].items():
        assert entry["score"] == 0.0, task


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("java") is None, reason="caption metrics need java")
def test_synth_end_to_end_from_a_model_and_from_its_file(tmp_path, capsys):
    args = ["--data", SPEC, "--recipe", "geosynth", "--no-progress"]
    out = tmp_path / "model"
    assert (
        main(
            ["eval", "synth", "--model", "tiny", *args, "--out", str(out), "--max-new-tokens", "4"]
        )
        == 0
    )
    report = json.loads((out / "report.json").read_text())
    assert {"caption", "change_caption", "vqa", "detection", "refer_seg"} <= set(report["tasks"])
    # the model's predictions file scores the same without the model
    again = tmp_path / "file"
    predictions = str(out / "predictions.jsonl")
    assert main(["eval", "synth", "--predictions", predictions, *args, "--out", str(again)]) == 0
    assert json.loads((again / "report.json").read_text())["metrics"] == report["metrics"]
    # and the reference answers score full marks everywhere but the captions and masks
    records, root = load_eval_data(SPEC, task="synth", recipe="geosynth")
    full = evaluate("synth", records, oracle(records), root, tmp_path / "oracle", progress=False)
    assert full["tasks"]["caption"]["metrics"]["CIDEr"] > 1.0
    assert full["by_type"]["vqa"]["score"] == 1.0
