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


def _xml_object(name: str, box=None, quad=None, description=None) -> str:
    parts = [f"<object><name>{name}</name><pose>Unspecified</pose>"]
    if box is not None:
        parts.append(
            "<bndbox>"
            + "".join(
                f"<{k}>{v}</{k}>"
                for k, v in zip(("xmin", "ymin", "xmax", "ymax"), box, strict=True)
            )
            + "</bndbox>"
        )
    if quad is not None:
        keys = ("left_top", "right_top", "right_bottom", "left_bottom")
        parts.append(
            "<robndbox>"
            + "".join(
                f"<x_{k}>{x}</x_{k}><y_{k}>{y}</y_{k}>"
                for k, (x, y) in zip(keys, quad, strict=True)
            )
            + "<angle>0</angle></robndbox>"
        )
    if description is not None:
        parts.append(f"<description>{description}</description>")
    return "".join(parts) + "</object>"


def _voc(filename: str, objects: list[str], size=(200, 100)) -> str:
    return f"<annotation><filename>{filename}</filename><source><database>DIOR</database></source><size><width>{size[0]}</width><height>{size[1]}</height><depth>3</depth></size>{''.join(objects)}</annotation>"


def make_dior(root: Path) -> None:
    """DIOR / DIOR-R: JPEGImages-{trainval,test}/, Annotations/{Horizontal,Oriented} Bounding Boxes/, ImageSets/Main/."""
    hbb, obb = (
        root / "Annotations" / "Horizontal Bounding Boxes",
        root / "Annotations" / "Oriented Bounding Boxes",
    )
    hbb.mkdir(parents=True)
    obb.mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for split, ids, folder in (
        ("train", ["00001"], "JPEGImages-trainval"),
        ("val", ["00002"], "JPEGImages-trainval"),
        ("test", ["11726", "11727"], "JPEGImages-test"),
    ):
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
        for image_id in ids:
            if image_id != "11727":
                _image(root / folder / f"{image_id}.jpg")
            objects = [
                _xml_object("Expressway-Service-area", box=(10, 10, 60, 40)),
                _xml_object("vehicle", box=(100, 50, 110, 60)),
                _xml_object("unicorn", box=(1, 1, 5, 5)),
            ]
            (hbb / f"{image_id}.xml").write_text(_voc(f"{image_id}.jpg", objects))
            quads = [_xml_object("vehicle", quad=[(100, 50), (110, 50), (110, 60), (100, 60)])]
            (obb / f"{image_id}.xml").write_text(_voc(f"{image_id}.jpg", quads))


def test_dior_horizontal_and_oriented(tmp_path):
    make_dior(tmp_path / "src")
    manifest = build("dior", tmp_path / "src", tmp_path / "out")
    assert manifest["rejected"] == {"missing image": 1} and manifest["dropped"] == {
        "unknown class": 3
    }
    records = {r["id"]: r for r in read_records(tmp_path / "out")}
    det = records["dior:00001:detection"]
    assert [b["label"] for b in det["targets"]["boxes"]] == ["expressway service area", "vehicle"]
    assert det["images"] == ["JPEGImages-trainval/00001.jpg"] and det["split"] == "train"
    obb = records["dior:11726:detection_obb"]
    assert obb["conversations"][0]["content"].endswith("[detect_obb] all objects")
    assert obb["targets"]["obboxes"][0]["points"] == [[100, 50], [110, 50], [110, 60], [100, 60]]
    assert records["dior:00002:counting:vehicle"]["answer"] == "1"


def test_dior_from_geosynth_export(tmp_path):
    from geoassist.synth.pipeline import generate_dataset

    generate_dataset(tmp_path / "syn", 3, 4, "hr", ["dior"], "train", 128, False, 1, False, False)
    manifest = build("dior", tmp_path / "syn" / "dior", tmp_path / "out")
    assert manifest["rejected"] == {} and manifest["by_split"]["train"] > 0


FAIR1M_XML = """<?xml version="1.0" encoding="utf-8"?>
<annotation><source><filename>{name}.tif</filename><origin>GF2/GF3</origin></source>
<size><width>200</width><height>100</height><depth>3</depth></size>
<objects>
<object><coordinate>pixel</coordinate><type>rectangle</type><description>None</description>
<possibleresult><name>Boeing737</name><probability>1.0</probability></possibleresult>
<points><point>10.0,10.0</point><point>50.0,10.0</point><point>50.0,30.0</point><point>10.0,30.0</point><point>10.0,10.0</point></points></object>
<object><coordinate>pixel</coordinate><type>rectangle</type><description>None</description>
<possibleresult><name>Small Car</name><probability>1.0</probability></possibleresult>
<points><point>100.0,50.0</point><point>110.0,50.0</point><point>110.0,55.0</point><point>100.0,55.0</point><point>100.0,50.0</point></points></object>
<object><possibleresult><name>Dry Cargo Ship</name></possibleresult><points><point>1,1</point></points></object>
</objects></annotation>"""


def test_fair1m_published_layout(tmp_path):
    for split, part in (("train", "part1/"), ("validation", "")):
        folder = tmp_path / "src" / split / part
        _image(folder / "images" / "0.tif")
        (folder / "labelXml").mkdir(parents=True)
        (folder / "labelXml" / "0.xml").write_text(FAIR1M_XML.format(name="0"))
    manifest = build("fair1m", tmp_path / "src", tmp_path / "out")
    assert manifest["by_split"].keys() == {"train", "validation"} and manifest["dropped"] == {
        "malformed annotation": 2
    }
    records = {r["id"]: r for r in read_records(tmp_path / "out")}
    det = records["fair1m:train/part1/0:detection"]
    assert [b["label"] for b in det["targets"]["boxes"]] == ["boeing737", "small car"]
    assert det["targets"]["obboxes"][0]["points"] == [[10, 10], [50, 10], [50, 30], [10, 30]]


def make_dior_rsvg(root: Path) -> None:
    """DIOR-RSVG: Annotations/, JPEGImages/, {train,val,test}.txt of global object indices (in file order)."""
    (root / "Annotations").mkdir(parents=True)
    objects = {
        "00001": [
            _xml_object("golffield", box=(10, 10, 100, 60), description="A green golf field"),
            _xml_object("vehicle", box=(150, 70, 160, 80), description="the vehicle on the right"),
        ],
        "00002": [_xml_object("ship", box=(20, 20, 40, 30), description="a white ship")],
        "00003": [_xml_object("ship", box=(20, 20, 40, 30), description="")],
    }
    for stem, objs in objects.items():
        (root / "Annotations" / f"{stem}.xml").write_text(_voc(f"{stem}.jpg", objs))
        _image(root / "JPEGImages" / f"{stem}.jpg")
    (root / "train.txt").write_text("0\n2\n3\n")
    (root / "test.txt").write_text("1\n")


@pytest.mark.parametrize("recipe", ["dior_rsvg", "rsvg"])
def test_dior_rsvg_object_index_splits(tmp_path, recipe):
    make_dior_rsvg(tmp_path / "src")
    manifest = build(recipe, tmp_path / "src", tmp_path / "out")
    assert manifest["rejected"] == {"missing question": 1}
    records = {r["id"]: r for r in read_records(tmp_path / "out")}
    golf = records[f"{recipe}:0"]
    assert (
        golf["split"] == "train"
        and golf["conversations"][0]["content"] == "<image>\n[refer] A green golf field"
    )
    assert parse(golf["answer"], (200, 100)).boxes[0].box == pytest.approx(
        (10, 10, 100, 60), abs=0.2
    )
    assert records[f"{recipe}:1"]["split"] == "test" and records[f"{recipe}:2"]["images"] == [
        "JPEGImages/00002.jpg"
    ]
    assert records[f"{recipe}:0:region"]["answer"] == "A green golf field"
    negative = records[f"{recipe}:0:none"]
    assert (
        negative["answer"] == "none" and "golf field" not in negative["conversations"][0]["content"]
    )
