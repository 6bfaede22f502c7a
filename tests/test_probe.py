"""`geoassist probe` on the tiny tower with tiny splits: every metric, the JSON and table files, and
the real-data probes on fake data in the published layouts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from geoassist.errors import ConfigError
from geoassist.probe import average_precision

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _rsvqa_folder(root):
    """Four images in RSVQA-LR's published layout: water questions answered by what is drawn."""
    (root / "images").mkdir(parents=True)
    questions, answers, images = [], [], []
    for i in range(4):
        water = i % 2 == 0
        colour = (30, 60, 160) if water else (120, 140, 60)
        Image.fromarray(np.full((64, 64, 3), colour, np.uint8)).save(root / "images" / f"{i}.png")
        ids = []
        for text, ans in (("Is there a water area?", "yes" if water else "no"),
                          ("Is a road present?", "no"), ("How many buildings are there?", "0")):
            qid = len(questions)
            questions.append({"id": qid, "img_id": i, "question": text, "type": "presence" if "?" in text and not text.startswith("How") else "count",
                              "answers_ids": [qid], "active": True})
            answers.append({"id": qid, "answer": ans, "active": True, "question_id": qid})
            ids.append(qid)
        images.append({"id": i, "questions_ids": ids, "active": True})
    for what, data in (("questions", questions), ("answers", answers), ("images", images)):
        (root / f"{what}S2_reduced.json").write_text(json.dumps({what: data}))
    return root


def _scene_folder(root):
    rng = np.random.default_rng(0)
    for cls, colour in (("beach", (200, 190, 150)), ("forest", (40, 80, 40))):
        (root / cls).mkdir(parents=True)
        for i in range(6):
            pixels = np.clip(np.array(colour) + rng.normal(0, 10, (48, 48, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / cls / f"{cls}{i:02d}.png")
    return root


def test_probe_command_on_a_tiny_tower(tmp_path, capsys):
    from geoassist.cli import main

    rsvqa = _rsvqa_folder(tmp_path / "rsvqa")
    scenes = _scene_folder(tmp_path / "scenes")
    out = tmp_path / "probe"
    code = main([
        "probe", "--model", "tiny", "--out", str(out), "--n-train", "12", "--n-test", "6",
        "--pairs-train", "4", "--pairs-test", "3", "--size", "96", "--cache-dir", str(tmp_path / "cache"),
        "--workers", "1", "--rsvqa-lr", str(rsvqa), "--scenes", str(scenes),
    ])
    assert code == 0
    results = json.loads((out / "probe.json").read_text())
    r = results["tiny"]
    assert 0 <= r["scene_top1"] <= 1 and r["n_test_scenes"] == 6
    assert 0 <= r["presence_map"] <= 1 and r["count_mae"] >= 0
    assert 0 <= r["semantic_miou"] <= 1
    assert 0 <= r["change_iou"] <= 1  # the test pairs have changes: never NaN
    assert r["rsvqa_lr_questions"] == 8 and r["rsvqa_lr_images"] == 4
    # "Is a road present?" is always "no": the same-text majority gets it right on every image
    assert r["majority"] >= 0.5 and 0 <= r["rsvqa_lr_presence"] <= 1
    assert 0 <= r["real_scene_top1"] <= 1 and r["real_scene_split"] == "seeded 80/20 per image"
    table = (out / "probe.md").read_text()
    assert table.startswith("| model | scene_top1 |") and "| tiny |" in table
    assert "wrote" in capsys.readouterr().out


def test_average_precision():
    assert average_precision(np.array([0.9, 0.8, 0.1]), np.array([1, 1, 0])) == 1.0
    assert average_precision(np.array([0.9, 0.8, 0.1]), np.array([0, 0, 1])) == pytest.approx(1 / 3)


def test_bad_probe_settings():
    from geoassist.probe import ProbeSettings, run_probe

    with pytest.raises(ConfigError, match="at least 2"):
        ProbeSettings(n_train=1)
    with pytest.raises(ConfigError, match="multiple of 32"):
        ProbeSettings(size=100)
    with pytest.raises(ConfigError, match="at least one model"):
        run_probe([], "x")


def test_probe_reads_the_conv8_path_and_scores_the_val_split(tmp_path):
    """A checkpoint trained with conv8 dense heads adds that finer map to the cell features; the
    val split is scored on seeds of its own, apart from the test split's."""
    from geoassist.checkpoint import create_model, save_checkpoint
    from geoassist.model.dense_heads import DenseHeads, DenseHeadsConfig, save_dense_heads
    from geoassist.probe import TEST_SEED, VAL_SEED, ProbeSettings, Tower, run_probe

    model = create_model("tiny")
    folder = save_checkpoint(model, tmp_path / "ckpt")
    save_dense_heads(DenseHeads(DenseHeadsConfig(feature_path="conv8", width=16), model.vision.width), folder)
    tower = Tower(str(folder))
    _, cells = tower.features(np.zeros((2, 96, 96, 3), np.uint8))
    assert tower.cell_features == "tokens+conv8" and cells.shape[1] == model.vision.width + 16
    assert Tower("tiny").cell_features == "tokens"

    settings = ProbeSettings(n_train=8, n_test=4, n_pairs_train=0, n_pairs_test=0, size=96,
                             cache_dir=str(tmp_path / "cache"), workers=1, split="val")
    r = run_probe([str(folder)], tmp_path / "out", settings)[str(folder)]
    assert r["split"] == "val" and r["cell_features"] == "tokens+conv8"
    assert 0 <= r["semantic_miou"] <= 1
    folders = {p.name for p in (tmp_path / "cache").iterdir()}
    assert any(str(VAL_SEED) in f for f in folders) and not any(str(TEST_SEED) in f for f in folders)
    with pytest.raises(ConfigError, match="split"):
        ProbeSettings(split="train")
