"""Object recipes (DOTA family…) on fake files in the published layout and on the real DOTA sample."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geoassist.data_recipes import build, read_records
from geoassist.formats import parse


def _image(path: Path, size=(200, 100)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((size[1], size[0], 3), np.uint8)).save(path)


DOTA_LABEL = """imagesource:GoogleEarth
gsd:0.5
10 10 30 10 30 20 10 20 small-vehicle 0
40 10 60 10 60 20 40 20 small-vehicle 1
150 60 190 60 190 90 150 90 plane 0
10 10 30 10 30 20 small-vehicle
500 500 520 500 520 520 500 520 ship 0
1 1 2 1 2 2 1 2 flying-saucer 0
"""


def make_dota(root: Path, labels_dir: str = "labelTxt") -> None:
    """DOTA: ``<split>/images/P0000.png`` + ``<split>/labelTxt/P0000.txt``, with bad lines mixed in."""
    for split, stem in (("train", "P0001"), ("val", "P0101")):
        _image(root / split / "images" / f"{stem}.png")
        (root / split / labels_dir).mkdir(parents=True)
        (root / split / labels_dir / f"{stem}.txt").write_text(DOTA_LABEL)
    (root / "train" / labels_dir / "P0002.txt").write_text(
        "gsd:null\n"
    )  # an image without objects …
    _image(root / "train" / "images" / "P0002.png")
    (root / "train" / labels_dir / "P0003.txt").write_text(
        DOTA_LABEL
    )  # … and a label without image


def test_dota_published_layout(tmp_path):
    make_dota(tmp_path / "src")
    manifest = build("dota", tmp_path / "src", tmp_path / "out")
    assert manifest["rejected"] == {"missing image": 1}
    assert manifest["dropped"] == {
        "box outside the image": 2,
        "malformed line": 2,
        "unknown class": 2,
    }
    assert manifest["by_split"]["val"] == sum(
        1 for _ in read_records(tmp_path / "out", split="val")
    )
    records = {r["id"]: r for r in read_records(tmp_path / "out", split="train")}
    detection = records["dota:P0001:detection"]
    assert detection["conversations"][0]["content"] == "<image>\n[detect_obb] all objects"
    assert [o["points"] for o in detection["targets"]["obboxes"]] == [
        [[10, 10], [30, 10], [30, 20], [10, 20]],
        [[40, 10], [60, 10], [60, 20], [40, 20]],
        [[150, 60], [190, 60], [190, 90], [150, 90]],
    ]
    assert [b["difficult"] for b in detection["targets"]["boxes"]] == [0, 1, 0]
    parsed = parse(detection["answer"], (200, 100))
    assert [o.label for o in parsed.obboxes] == [
        "small vehicle",
        "small vehicle",
        "plane",
    ] and not parsed.errors
    assert records["dota:P0001:counting:small vehicle"]["answer"] == "2"
    grounding = records["dota:P0001:grounding:plane"]
    assert grounding["conversations"][0]["content"] == "<image>\n[ground] all planes"
    assert parse(grounding["answer"], (200, 100)).boxes[0].box == pytest.approx(
        (150, 60, 190, 90), abs=0.2
    )
    negatives = [
        r
        for r in records.values()
        if r["id"].startswith("dota:P0001") and r["answer"] in ("none", "0", "no")
    ]
    assert {r["task"] for r in negatives} >= {"grounding", "counting", "referring", "vqa"}
    empty = records["dota:P0002:detection"]
    assert empty["answer"] == "none" and empty["targets"]["count"] == 0
    assert records["dota:P0001:b2c"]["answer"] == [
        "There are two small vehicles in the top left. There is one plane in the bottom right."
    ]
    assert records["dota:P0001:detection"]["meta"]["gsd_m"] == 0.5


def test_dota_versions_read_their_label_folders_and_classes(tmp_path):
    make_dota(tmp_path / "src", labels_dir="labelTxt-v1.5/DOTA-v1.5_x")
    manifest = build("dota_v15", tmp_path / "src", tmp_path / "out")
    assert manifest["dropped"]["unknown class"] == 2
    text = DOTA_LABEL.replace("flying-saucer", "helipad")
    for split, stem in (("train", "P0001"), ("val", "P0101")):
        (tmp_path / "src" / split / "labelTxt-v1.5" / "DOTA-v1.5_x" / f"{stem}.txt").write_text(
            text
        )
    assert "unknown class" in build("dota_v15", tmp_path / "src", tmp_path / "out")["dropped"]
    (tmp_path / "src" / "train" / "labelTxt-v1.5").rename(
        tmp_path / "src" / "train" / "labelTxt-v2.0"
    )
    (tmp_path / "src" / "val" / "labelTxt-v1.5").rename(tmp_path / "src" / "val" / "labelTxt-v2.0")
    assert "unknown class" not in build("dota_v2", tmp_path / "src", tmp_path / "out")["dropped"]


@pytest.mark.realdata
def test_dota_real_boxes_per_class_equal_the_label_file(rs_samples, tmp_path):
    src = rs_samples / "dota"
    manifest = build("dota", src, tmp_path / "out")
    assert manifest["rejected"] == {} and manifest["dropped"] == {}
    lines = [
        line.split()
        for line in (src / "labelTxt" / "P1888.txt").read_text().splitlines()[2:]
        if line.strip()
    ]
    per_class = Counter(parts[8] for parts in lines)
    records = {r["id"]: r for r in read_records(tmp_path / "out")}
    detection = records["dota:P1888:detection"]
    assert Counter(b["class"] for b in detection["targets"]["boxes"]) == per_class
    assert [o["points"] for o in detection["targets"]["obboxes"]] == [
        [[float(p[i]), float(p[i + 1])] for i in range(0, 8, 2)] for p in lines
    ]
    for cls, n in per_class.items():
        label = cls.replace("-", " ")
        assert records[f"dota:P1888:counting:{label}"]["answer"] == str(n)
        assert len(parse(records[f"dota:P1888:grounding:{label}"]["answer"], (712, 557)).boxes) == n
    assert len(parse(detection["answer"], (712, 557)).obboxes) == len(lines) == 64
