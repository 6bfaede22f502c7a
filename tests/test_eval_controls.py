"""Blind controls and bootstrap intervals, with hand-made models whose use of the image is known.

A model that answers from the question alone scores the same with and without the image: the
old report showed its accuracy and nothing else; the new one shows a visual gain of zero.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image as PILImage

from geoassist.assistant import Answer
from geoassist.cli import main
from geoassist.eval import evaluate
from geoassist.eval.controls import blank_control, shuffled_control
from geoassist.eval.intervals import bootstrap, draws
from geoassist.eval.targets import EvalDataError

BRIGHT, DARK = 200, 50


def _image(path, value, size=(24, 16)):
    path.parent.mkdir(parents=True, exist_ok=True)
    PILImage.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)


def make_data(root, n_images=8, questions=3, split="test"):
    """``n_images`` images, bright ones mean "yes", dark ones "no"; several questions each."""
    records = []
    for i in range(n_images):
        bright = i % 4 != 3  # 6 of 8 bright: a "yes" prior is right 75 % of the time
        _image(root / "images" / f"{i}.png", BRIGHT if bright else DARK, (24 + i, 16))
        for q in range(questions):
            records.append(
                {
                    "id": f"rsvqa_lr:{i * 10 + q}",
                    "source": "rsvqa_lr",
                    "split": split,
                    "task": "vqa",
                    "images": [f"images/{i}.png"],
                    "conversations": [
                        {"role": "user", "content": f"<image>\n[vqa] Is it lit? ({q})"}
                    ],
                    "answer": "yes" if bright else "no",
                    "qtype": "presence",
                    "targets": {},
                    "meta": {},
                }  # fmt: skip
            )
    return records


class Looking:
    """Answers from the image: "yes" when it is bright (mean > 128), else "no"."""

    def __init__(self):
        self.seen: list[str] = []

    def ask_batch(self, requests, *, batch_size, max_new_tokens):
        out = []
        for req in requests:
            self.seen.append(str(req["image"]))
            with PILImage.open(req["image"]) as im:
                mean = float(np.asarray(im).mean())
            out.append(Answer(text="", raw="yes" if mean > 128 else "no", image_size=im.size))
        return out


class Blind(Looking):
    """Answers "yes" whatever the image: a language prior."""

    def ask_batch(self, requests, *, batch_size, max_new_tokens):
        super().ask_batch(requests, batch_size=batch_size, max_new_tokens=max_new_tokens)
        return [Answer(text="", raw="yes", image_size=(24, 16)) for _ in requests]


def test_a_blind_model_shows_no_visual_gain_and_a_looking_one_does(tmp_path):
    records = make_data(tmp_path)
    blind = evaluate(
        "rsvqa", records, Blind(), tmp_path, control="both", progress=False, ci_resamples=200
    )
    # the old report: 0.75 accuracy, indistinguishable from a model that looks
    assert blind["by_type"]["presence"]["accuracy"] == pytest.approx(0.75)
    for name in ("blank", "shuffled"):
        assert blind["by_type"]["presence"][f"visual_gain_{name}"] == 0.0
        assert blind[f"control_{name}"]["by_type"]["presence"]["accuracy"] == pytest.approx(0.75)
        lo, hi = blind["by_type"]["presence"][f"visual_gain_{name}_ci95"]
        assert lo == hi == 0.0
    looking = evaluate(
        "rsvqa", records, Looking(), tmp_path, control="both", progress=False, ci_resamples=200
    )
    entry = looking["by_type"]["presence"]
    assert entry["accuracy"] == 1.0
    # blank: the mean colour of 6 bright and 2 dark images is (6*200 + 2*50) / 8 = 162.5,
    # bright, so every answer is "yes": right on the 6 bright images only
    assert looking["control_blank"]["mean_colour"] == {"3 bands uint8": [162.5, 162.5, 162.5]}
    assert looking["control_blank"]["by_type"]["presence"]["accuracy"] == pytest.approx(0.75)
    assert entry["visual_gain_blank"] == pytest.approx(0.25)
    # shuffled: right exactly when the borrowed image has the same brightness as the own one
    control = looking["control_shuffled"]["by_type"]["presence"]["accuracy"]
    assert control < 1.0 and entry["visual_gain_shuffled"] == pytest.approx(1.0 - control)
    lo, hi = entry["visual_gain_shuffled_ci95"]
    assert lo <= entry["visual_gain_shuffled"] <= hi and hi > 0
    assert looking["control_shuffled"]["visual_gain"]["overall_accuracy"] == pytest.approx(
        1.0 - control
    )


def test_the_shuffled_control_is_a_seeded_derangement_within_the_split(tmp_path):
    records = make_data(tmp_path) + make_data(tmp_path / "v", n_images=3, split="val")
    for r in records[-9:]:
        r["images"] = [f"v/{r['images'][0]}"]
        r["id"] += "v"
    cset = shuffled_control(records, tmp_path, seed=3)
    assert cset.records and all(p is not None for p in cset.position)
    for record, position in zip(records, cset.position, strict=True):
        swapped = cset.records[position]
        assert swapped["id"] == record["id"] and swapped["answer"] == record["answer"]
        own = str(tmp_path / record["images"][0])
        assert swapped["images"] != [own]  # nobody keeps their own image
        assert ("/v/" in swapped["images"][0]) == (record["split"] == "val")  # same split
    # all questions of one image get the same borrowed image; the same seed, the same draw
    by_image: dict[str, set] = {}
    for record, position in zip(records, cset.position, strict=True):
        by_image.setdefault(record["images"][0], set()).add(cset.records[position]["images"][0])
    assert all(len(v) == 1 for v in by_image.values())
    again = shuffled_control(records, tmp_path, seed=3)
    assert [r["images"] for r in again.records] == [r["images"] for r in cset.records]
    other = shuffled_control(records, tmp_path, seed=4)
    assert [r["images"] for r in other.records] != [r["images"] for r in cset.records]


def test_pairs_are_swapped_whole_and_a_lone_image_borrows_from_another_split(tmp_path):
    records = []
    for i in range(3):
        for side in "AB":
            _image(tmp_path / side / f"{i}.png", 40 * i + (10 if side == "B" else 0))
        records.append(
            {"id": f"levir_cd:{i}", "source": "levir_cd", "split": "test", "task": "change_qa",
             "images": [f"A/{i}.png", f"B/{i}.png"], "answer": "yes", "qtype": "change",
             "conversations": [{"role": "user", "content": "<image><image>\n[change_qa] Changed?"}]}
        )  # fmt: skip
    records[2]["split"] = "val"  # alone in its split
    cset = shuffled_control(records, tmp_path)
    for record, position in zip(records, cset.position, strict=True):
        a, b = cset.records[position]["images"]
        assert a.endswith(".png") and a.split("/")[-1] == b.split("/")[-1]  # one pair, whole
        assert "/A/" in a and "/B/" in b and a.split("/")[-1] != record["images"][0].split("/")[-1]


def test_the_blank_control_keeps_size_and_bands(tmp_path):
    records = make_data(tmp_path, n_images=4)
    cset = blank_control(records, tmp_path, tmp_path / "blanks")
    for record, position in zip(records, cset.position, strict=True):
        (path,) = cset.records[position]["images"]
        with PILImage.open(path) as blank, PILImage.open(tmp_path / record["images"][0]) as own:
            assert blank.size == own.size and blank.mode == own.mode
            assert len(set(np.asarray(blank).ravel().tolist())) == 1


def test_intervals_are_resampled_by_image_not_by_question():
    # two images, fifty questions each: one image all right, the other all wrong. Resampling
    # questions would give a tight interval around 0.5; by image, the truth is anywhere.
    items = [{"id": f"{i}", "correct": i < 50} for i in range(100)]
    clusters = ["a" if i < 50 else "b" for i in range(100)]

    def accuracy(drawn):
        return {("metrics", "accuracy"): float(np.mean([it["correct"] for it in drawn]))}

    found, _ = bootstrap(accuracy, items, clusters, n=400)
    assert found[("metrics", "accuracy")] == [0.0, 1.0]
    by_question, _ = bootstrap(accuracy, items, [str(i) for i in range(100)], n=400)
    lo, hi = by_question[("metrics", "accuracy")]
    assert 0.35 < lo < 0.5 < hi < 0.65
    # seeded: the same draws every time
    assert [d.tolist() for d in draws(clusters, 5)] == [d.tolist() for d in draws(clusters, 5)]


def test_every_accuracy_in_a_report_carries_an_interval(tmp_path):
    records = make_data(tmp_path)
    report = evaluate("rsvqa", records, Looking(), tmp_path, tmp_path / "out", progress=False)
    m = report["metrics"]
    assert m["overall_accuracy_ci95"] == [1.0, 1.0]
    assert report["by_type"]["presence"]["accuracy_ci95"] == [1.0, 1.0]
    predictions = {r["id"]: ("yes" if int(r["id"].split(":")[1]) < 40 else "no") for r in records}
    small = evaluate("rsvqa", records, predictions, tmp_path, progress=False)
    lo, hi = small["metrics"]["overall_accuracy_ci95"]
    assert lo < small["metrics"]["overall_accuracy"] < hi and hi - lo > 0.3  # 8 images: too few
    md = (tmp_path / "out" / "report.md").read_text()
    assert "| overall_accuracy | 1.0000 [1.0000, 1.0000] |" in md
    assert "overall_accuracy_ci95" not in md  # shown beside its value, not as its own row


def test_controls_need_a_model(tmp_path):
    records = make_data(tmp_path, n_images=2)
    with pytest.raises(EvalDataError, match="needs a model"):
        evaluate("rsvqa", records, {"rsvqa_lr:0": "yes"}, tmp_path, control="shuffled")
    with pytest.raises(EvalDataError, match="blank, shuffled, both"):
        evaluate("rsvqa", records, Looking(), tmp_path, control="grey")


def test_cli_control_both_writes_both_controls(tmp_path, capsys, tiny_model, monkeypatch):
    from geoassist.assistant import Assistant

    records = make_data(tmp_path / "data", n_images=4, questions=2)
    data = tmp_path / "data" / "records.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    monkeypatch.setattr(
        Assistant, "from_pretrained", classmethod(lambda cls, *a, **k: Assistant(tiny_model))
    )
    out = tmp_path / "out"
    args = ["eval", "rsvqa", "--model", "tiny", "--data", str(data), "--out", str(out)]
    args += ["--real-split", "all", "--max-new-tokens", "2", "--no-progress"]
    assert main([*args, "--control", "both"]) == 0
    report = json.loads((out / "report.json").read_text())
    assert {"control_blank", "control_shuffled"} <= set(report)
    for name in ("blank", "shuffled"):
        assert report[f"control_{name}"]["n"] == 8
        assert "visual_gain_" + name in report["by_type"]["presence"]
        lines = (out / f"predictions_control_{name}.jsonl").read_text().splitlines()
        assert len(lines) == 8
    md = (out / "report.md").read_text()
    assert "## Control `shuffled`" in md and "the control that counts" in md
    printed = capsys.readouterr().out
    assert "visual gain over shuffled: overall_accuracy +0.0000 [+0.0000, +0.0000]" in printed, (
        printed
    )


def test_the_pipeline_and_the_card_show_the_visual_gain_beside_each_accuracy(tmp_path):
    from geoassist.train.card import card_scores
    from geoassist.train.pipeline import EvalStep, score_entry

    records = make_data(tmp_path)
    report = evaluate("rsvqa", records, Looking(), tmp_path, control="both", progress=False)
    entry = score_entry(report)
    presence = entry["by_type"]["presence"]
    assert presence["visual_gain_shuffled"] == report["by_type"]["presence"]["visual_gain_shuffled"]
    assert presence["accuracy_ci95"] == [1.0, 1.0] and "visual_gain_blank_ci95" in presence
    assert set(entry["controls"]) == {"shuffled", "blank"}
    rows = card_scores(entry)
    keys = list(rows)
    # each accuracy, then its gains right after it
    at = keys.index("presence.accuracy")
    assert keys[at + 1 : at + 3] == [
        "presence.accuracy: visual gain over shuffled",
        "presence.accuracy: visual gain over blank",
    ]
    assert rows["presence.accuracy"] == "1 (95 % CI 1–1)"
    assert rows["presence.accuracy: visual gain over blank"].startswith("+0.25 (95 % CI +")
    at = keys.index("overall_accuracy")
    assert keys[at + 1] == "overall_accuracy: visual gain over shuffled"
    assert EvalStep("rsvqa", "x").control == "shuffled"  # pipelines ask the control by default
    assert EvalStep("rsvqa", "x", control="none").control is None


def test_rescore_replaces_a_saved_cards_scores_with_the_reports(tmp_path):
    """`python -m geoassist.train.rescore`: a card whose scores came from older scorers gets the
    reports' scores whole (intervals and visual gains beside them), the weights untouched."""
    import torch

    from geoassist.checkpoint import create_model, save_checkpoint
    from geoassist.errors import ConfigError
    from geoassist.train.rescore import main as rescore_main
    from geoassist.train.rescore import rescore

    torch.manual_seed(0)
    folder = save_checkpoint(create_model("tiny"), tmp_path / "ckpt", card={
        "training_data": "Trained on things.", "scores": {"old_eval": {"miou": 0.16}}})
    weights = {p.name: p.read_bytes() for p in folder.glob("*.safetensors")}
    out = tmp_path / "eval"
    evaluate("rsvqa", make_data(tmp_path), Looking(), tmp_path, out=out, control="shuffled", progress=False)

    with pytest.raises(ConfigError, match="does not exist"):
        rescore(folder, {"x": tmp_path / "nowhere"})
    (tmp_path / "bad.json").write_text("{\"n\": 1}")
    with pytest.raises(ConfigError, match="no 'metrics'"):
        rescore(folder, {"x": tmp_path / "bad.json"})
    assert "old_eval" in (folder / "README.md").read_text()  # a refused re-score wrote nothing

    assert rescore_main([str(folder), "--report", f"lit_test={out}", "--note", "fixed scorers."]) == 0
    card = json.loads((folder / "geoassist.json").read_text())["card"]
    assert list(card["scores"]) == ["lit_test"]
    assert card["scores"]["lit_test"]["presence.accuracy"] == "1 (95 % CI 1–1)"
    assert "presence.accuracy: visual gain over shuffled" in card["scores"]["lit_test"]
    readme = (folder / "README.md").read_text()
    assert "old_eval" not in readme and "| lit_test | presence.accuracy | 1 (95 % CI 1–1) |" in readme
    assert "Trained on things.\n\nRe-scored: fixed scorers.\n\n## Scores" in readme
    assert readme.count("## Use") == 1 and readme.count("## Scores") == 1
    # a second re-score replaces the note rather than stacking notes
    assert rescore_main([str(folder), "--report", f"lit_test={out / 'report.json'}", "--note", "again."]) == 0
    readme = (folder / "README.md").read_text()
    assert "Re-scored: again." in readme and "fixed scorers" not in readme
    assert {p.name: p.read_bytes() for p in folder.glob("*.safetensors")} == weights
    with pytest.raises(SystemExit):
        rescore_main([str(folder), "--report", "no-equals-sign"])


def test_the_card_keeps_each_tasks_question_types_of_a_synth_report():
    from geoassist.train.card import card_scores
    from geoassist.train.pipeline import score_entry

    report = {
        "n": 10, "metrics": {"vqa.overall_accuracy": 0.75},
        "by_type": {"vqa": {"metric": "overall_accuracy", "score": 0.75, "score_ci95": [0.6, 0.9]}},
        "tasks": {"vqa": {"n": 10, "metrics": {}, "by_type": {
            "presence": {"accuracy": 0.7, "accuracy_ci95": [0.5, 0.9], "n": 6,
                         "visual_gain_shuffled": 0.1, "visual_gain_shuffled_ci95": [0.0, 0.2]}}}},
        "control_shuffled": {"n": 10, "metrics": {}, "visual_gain": {}},
    }
    entry = score_entry(report)
    assert entry["by_type"]["vqa.presence"]["accuracy"] == 0.7
    rows = card_scores(entry)
    assert rows["vqa.presence.accuracy"] == "0.7 (95 % CI 0.5–0.9)"
    assert rows["vqa.presence.accuracy: visual gain over shuffled"] == "+0.1 (95 % CI +0 to +0.2)"
