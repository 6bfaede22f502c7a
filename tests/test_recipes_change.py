"""Change recipes: LEVIR-CD family, S2Looking, SECOND, LEVIR-CC — fake layouts and real samples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from geoassist.data_recipes import build, image_root, load_target_mask, read_records
from geoassist.formats import parse


def _save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def _pair(rng, size=64):
    return rng.integers(0, 255, (size, size, 3), dtype=np.uint8), rng.integers(
        0, 255, (size, size, 3), dtype=np.uint8
    )


def make_levir_cd_release(root: Path) -> dict[str, np.ndarray]:
    """LEVIR-CD as released: ``{train,val,test}/{A,B,label}/<name>.png`` (labels 0/255)."""
    rng = np.random.default_rng(0)
    labels = {}
    for split in ("train", "val", "test"):
        for i in range(2):
            name = f"{split}_{i + 1}.png"
            a, b = _pair(rng)
            label = np.zeros((64, 64), np.uint8)
            if i == 0:
                label[5:15, 5:20] = 255
                label[40:60, 30:34] = 255
            _save(root / split / "A" / name, a)
            _save(root / split / "B" / name, b)
            _save(root / split / "label" / name, label)
            labels[f"{split}_{i + 1}"] = label
    # bad inputs in train: a missing label, a label of the wrong size
    a, b = _pair(rng)
    _save(root / "train" / "A" / "train_9.png", a)
    _save(root / "train" / "B" / "train_9.png", b)
    _save(root / "train" / "A" / "train_8.png", a)
    _save(root / "train" / "B" / "train_8.png", b)
    _save(root / "train" / "label" / "train_8.png", np.zeros((32, 32), np.uint8))
    return labels


def test_levir_cd_release_layout_answers_from_the_label(tmp_path):
    labels = make_levir_cd_release(tmp_path / "src")
    manifest = build("levir_cd", tmp_path / "src", tmp_path / "out")
    assert manifest["rejected"] == {"missing mask": 1, "size mismatch": 1}
    assert manifest["by_split"] == {"test": 10, "train": 10, "val": 10}
    records = {r["id"]: r for r in read_records(tmp_path / "out")}
    changed, unchanged = "levir_cd:train_1", "levir_cd:train_2"
    assert records[f"{changed}:change_presence"]["answer"] == "yes"
    assert records[f"{unchanged}:change_presence"]["answer"] == "no"
    assert records[f"{changed}:change_count"]["answer"] == "2"
    assert records[f"{unchanged}:change_where"]["answer"] == "none"
    where = records[f"{changed}:change_where"]
    assert [b["box"] for b in where["targets"]["boxes"]] == [
        [5.0, 5.0, 20.0, 15.0],
        [30.0, 40.0, 34.0, 60.0],
    ]
    assert parse(where["answer"], (64, 64)).boxes[0].box == pytest.approx(
        (5.0, 5.0, 20.0, 15.0), abs=0.1
    )
    assert where["images"] == ["train/A/train_1.png", "train/B/train_1.png"]
    root = image_root(tmp_path / "out")
    assert np.array_equal(load_target_mask(where, root), labels["train_1"] > 0)
    mask_record = records[f"{changed}:change_seg"]
    assert mask_record["task"] == "change_seg" and mask_record["targets"]["count"] == 2
    assert parse(mask_record["answer"], (64, 64)).mask is not None
    assert np.array_equal(load_target_mask(mask_record, root), labels["train_1"] > 0)
    assert records[f"{unchanged}:change_seg"]["answer"] == "none"
    assert (
        records[f"{changed}:change_ratio"]["answer"]
        == f"{round(100 * (labels['train_1'] > 0).mean())}%"
    )


def test_levir_cd_crop_layout_from_geosynth(tmp_path):
    from geoassist.synth.pipeline import generate_dataset

    generate_dataset(
        tmp_path / "syn", 4, 3, "pair", ["levir-cd"], "train", 96, False, 1, False, False
    )
    src = tmp_path / "syn" / "levir-cd"
    assert (src / "list" / "train.txt").is_file()
    manifest = build("levir_cd", src, tmp_path / "out")
    assert manifest["written"] == 4 * 5 and manifest["rejected"] == {}
    for record in read_records(tmp_path / "out", task="change_qa"):
        if record["qtype"] == "change_count":
            label = np.asarray(Image.open(src / record["targets"]["mask"])) > 0
            assert int(record["answer"]) == ndimage.label(label, structure=np.ones((3, 3)))[1]


def test_whu_cd_and_s2looking_layouts(tmp_path):
    rng = np.random.default_rng(1)
    # WHU-CD as cut for CD models: A/ B/ label/ + list/<split>.txt
    for split in ("train", "test"):
        a, b = _pair(rng)
        label = np.zeros((64, 64), np.uint8)
        label[:10, :10] = 255
        for folder, array in (("A", a), ("B", b), ("label", label)):
            _save(tmp_path / "whu" / folder / f"{split}_0.png", array)
        (tmp_path / "whu" / "list").mkdir(exist_ok=True)
        (tmp_path / "whu" / "list" / f"{split}.txt").write_text(f"{split}_0.png\n")
    manifest = build("whu_cd", tmp_path / "whu", tmp_path / "whu_out")
    assert manifest["by_split"] == {"test": 5, "train": 5}
    # S2Looking: {split}/Image1, Image2, label, label1 (built), label2 (demolished)
    a, b = _pair(rng)
    built = np.zeros((64, 64), np.uint8)
    built[20:30, 20:30] = 255
    for folder, array in (
        ("Image1", a),
        ("Image2", b),
        ("label", built),
        ("label1", built),
        ("label2", np.zeros_like(built)),
    ):
        _save(tmp_path / "s2l" / "val" / folder / "1.png", array)
    manifest = build("s2looking", tmp_path / "s2l", tmp_path / "s2l_out")
    records = {r["id"]: r for r in read_records(tmp_path / "s2l_out")}
    assert records["s2looking:1:change_type"]["answer"] == "new buildings"
    assert records["s2looking:1:change_count"]["answer"] == "1"


def test_second_semantic_change(tmp_path):
    rng = np.random.default_rng(2)
    a, b = _pair(rng)
    label1 = np.full((64, 64, 3), 255, np.uint8)
    label2 = label1.copy()
    label1[:32, :32] = (0, 128, 0)  # low vegetation …
    label2[:32, :32] = (128, 0, 0)  # … became building
    label1[40:44, 40:44] = (0, 0, 255)  # water …
    label2[40:44, 40:44] = (128, 128, 128)  # … became ground
    for folder, array in (("im1", a), ("im2", b), ("label1", label1), ("label2", label2)):
        _save(tmp_path / "src" / "train" / folder / "00001.png", array)
    manifest = build("second", tmp_path / "src", tmp_path / "out")
    assert manifest["rejected"] == {} and manifest["by_split"] == {"train": 6}
    records = {r["id"]: r for r in read_records(tmp_path / "out")}
    assert (
        records["second:00001:change_type"]["answer"]
        == "low vegetation to building (25%); water to ground (less than 1%)"
    )
    mask = load_target_mask(records["second:00001:change_where"], image_root(tmp_path / "out"))
    assert mask.sum() == 32 * 32 + 16


def test_levir_cc_json_layout_from_geosynth(tmp_path):
    from geoassist.synth.pipeline import generate_dataset

    generate_dataset(
        tmp_path / "syn", 3, 5, "pair", ["levir-cc"], "val", 64, False, 1, False, False
    )
    src = tmp_path / "syn" / "levir-cc"
    data = json.loads((src / "LevirCCcaptions.json").read_text())
    manifest = build("levir_cc", src, tmp_path / "out")
    assert manifest["rejected"] == {} and manifest["by_split"] == {"val": 6}
    records = {r["id"]: r for r in read_records(tmp_path / "out")}
    for image in data["images"]:
        stem = Path(image["filename"]).stem
        caption = records[f"levir_cc:{stem}:caption"]
        assert len(caption["answer"]) == len(image["sentences"])
        assert caption["images"] == [
            f"images/val/A/{image['filename']}",
            f"images/val/B/{image['filename']}",
        ]
        presence = records[f"levir_cc:{stem}:change_presence"]
        assert presence["answer"] == ("yes" if image["changeflag"] else "no")


@pytest.mark.realdata
def test_levir_cd_real_targets_agree_with_the_label_masks(rs_samples, tmp_path):
    src = rs_samples / "change_detection" / "samples_LEVIR"
    manifest = build("levir_cd", src, tmp_path / "out")
    names = (src / "list" / "all.txt").read_text().split()
    assert manifest["written"] == 5 * len(names) and manifest["rejected"] == {}
    root = image_root(tmp_path / "out")
    for record in read_records(tmp_path / "out"):
        label = np.asarray(Image.open(root / record["targets"]["mask"])) > 0
        assert np.array_equal(load_target_mask(record, root), label)
        components, n = ndimage.label(label, structure=np.ones((3, 3)))
        if record["qtype"] == "change_where":
            boxes = [b["box"] for b in record["targets"]["boxes"]]
            expected = sorted(
                [
                    [float(s[1].start), float(s[0].start), float(s[1].stop), float(s[0].stop)]
                    for s in ndimage.find_objects(components)
                ],
                key=lambda b: (b[1], b[0]),
            )
            assert boxes == expected
        if record["qtype"] == "change_presence":
            assert record["answer"] == ("yes" if label.any() else "no")
        if record["qtype"] == "change_count":
            assert record["answer"] == str(n)
    manifest = build(
        "dsifn_cd", rs_samples / "change_detection" / "samples_DSIFN", tmp_path / "dsifn"
    )
    assert manifest["written"] == 25 and manifest["rejected"] == {}


@pytest.mark.realdata
def test_levir_cc_real_token_captions(rs_samples, tmp_path):
    src = rs_samples / "change_captioning"
    manifest = build("levir_cc", src, tmp_path / "out")
    assert manifest["written"] == 2 and manifest["rejected"] == {}
    record = next(read_records(tmp_path / "out", task="change_caption"))
    tokens = json.loads((src / "tokens" / "train_000016.txt").read_text())
    assert [c.rstrip(".").lower() for c in record["answer"]] == [" ".join(t[1:-1]) for t in tokens]
    assert record["split"] == "train" and record["images"] == [
        "A/train_000016.png",
        "B/train_000016.png",
    ]
