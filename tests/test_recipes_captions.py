"""Caption recipes: Karpathy JSON, the precomp text form, NWPU's per-class JSON; real RSICD test text."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geoassist.data_recipes import build, read_records


def _image(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(path)


def make_karpathy(root: Path, json_name: str, image_dir: str, ext: str = ".tif") -> None:
    """Karpathy-style ``dataset*.json`` + images, with an empty caption and a missing image."""
    images = []
    for i, split in enumerate(["train", "train", "val", "test"], start=1):
        sentences = [
            {"raw": f"there is a field number {i} .", "tokens": []},
            {"raw": "  many   green trees are near the road .", "tokens": []},
        ]
        if i == 2:
            sentences.append({"raw": " ", "tokens": []})
        images.append(
            {
                "filename": f"{i}{ext}",
                "imgid": i - 1,
                "split": split,
                "sentences": sentences,
                "sentids": [],
            }
        )
        if i != 4:
            _image(root / image_dir / f"{i}{ext}")
    (root / json_name).write_text(json.dumps({"images": images, "dataset": "fake"}))


@pytest.mark.parametrize(
    ("recipe", "json_name", "image_dir"),
    [
        ("ucm_captions", "dataset.json", "imgs"),
        ("sydney_captions", "dataset.json", "imgs"),
        ("rsicd", "dataset_rsicd.json", "RSICD_images"),
        ("rsitmd", "dataset_RSITMD.json", "images"),
    ],
)
def test_karpathy_caption_sets(tmp_path, recipe, json_name, image_dir):
    make_karpathy(tmp_path / "src", json_name, image_dir)
    manifest = build(recipe, tmp_path / "src", tmp_path / "out")
    assert manifest["by_split"] == {"train": 2, "val": 1} and manifest["rejected"] == {
        "missing image": 1
    }
    assert manifest["dropped"] == {"empty caption": 1}
    record = {r["id"]: r for r in read_records(tmp_path / "out")}[f"{recipe}:1"]
    assert record["answer"] == ["There is a field number 1.", "Many green trees are near the road."]
    assert record["conversations"] == [
        {"role": "user", "content": "<image>\n[caption] Describe the image."},
        {"role": "assistant", "content": "There is a field number 1."},
    ]
    assert record["images"] == [f"{image_dir}/1.tif"]


def test_caption_recipes_read_geosynth_karpathy_export(tmp_path):
    from geoassist.synth.pipeline import generate_dataset

    generate_dataset(tmp_path / "syn", 3, 2, "hr", ["karpathy"], "test", 96, False, 1, False, False)
    src = tmp_path / "syn" / "karpathy"
    (src / "dataset_geosynth.json").rename(src / "dataset_rsicd.json")
    manifest = build("rsicd", src, tmp_path / "out")
    assert manifest["written"] == 3 and manifest["rejected"] == {}


def test_nwpu_captions_per_class_json(tmp_path):
    src = tmp_path / "src"
    data = {
        "airport": [
            {
                "filename": "airport_001.jpg",
                "split": "train",
                "raw": "An airport.",
                "raw_1": "Planes on an apron.",
                "raw_2": "b",
                "raw_3": "c",
                "raw_4": "d",
            }
        ],
        "beach": [
            {
                "filename": "beach_001.jpg",
                "split": "test",
                "raw": "A beach.",
                "raw_1": "x",
                "raw_2": "y",
                "raw_3": "z",
                "raw_4": "w",
            }
        ],
    }
    (src).mkdir()
    (src / "dataset_nwpu.json").write_text(json.dumps(data))
    _image(src / "NWPU-RESISC45" / "airport" / "airport_001.jpg")
    _image(src / "NWPU-RESISC45" / "beach" / "beach_001.jpg")
    manifest = build("nwpu_captions", src, tmp_path / "out")
    assert manifest["by_split"] == {"test": 1, "train": 1}
    record = {r["id"]: r for r in read_records(tmp_path / "out")}["nwpu_captions:airport_001"]
    assert len(record["answer"]) == 5 and record["meta"]["scene_class"] == "airport"


@pytest.mark.realdata
def test_rsicd_real_precomp_text(rs_samples, tmp_path):
    src_text = rs_samples / "captions" / "rsicd_test_text"
    captions = (src_text / "test_caps.txt").read_text().splitlines()
    names = (src_text / "test_filename.txt").read_text().splitlines()
    manifest = build("rsicd", src_text, tmp_path / "bare")
    assert manifest["read"] == len(set(names)) == 1093 and manifest["rejected"] == {
        "missing image": 1093
    }
    # with images beside the text (blank stand-ins), every image gets its five lines as references
    src = tmp_path / "src"
    src.mkdir()
    for name in ("test_caps.txt", "test_filename.txt"):
        (src / name).symlink_to(src_text / name)
    for name in sorted(set(names))[:20]:
        _image(src / "images" / name)
    manifest = build("rsicd", src, tmp_path / "out")
    assert manifest["written"] == 20
    for record in read_records(tmp_path / "out"):
        name = record["images"][0].split("/")[-1]
        expected = [c for c, n in zip(captions, names, strict=True) if n == name]
        assert len(record["answer"]) == len(expected) == 5
        assert [a.rstrip(".").lower() for a in record["answer"]] == [
            " ".join(e.split()).rstrip(" .") for e in expected
        ]
