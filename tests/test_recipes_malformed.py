"""A malformed source record is rejected with its reason and the build goes on; an unreadable file is one error.

Each recipe reads through :mod:`geoassist.readers`; these cases are the ones a careless or hostile
copy of a dataset produces: a truncated JSON, a record without its id, a damaged XML.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_recipes_captions import make_karpathy
from test_recipes_objects import make_dior, make_dior_rsvg
from test_recipes_user import make_coco
from test_recipes_vqa import make_rsvqa

from geoassist.cli import main
from geoassist.data_recipes import build
from geoassist.errors import GeoAssistError
from geoassist.readers import DatasetFormatError


def _rejected_log(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "rejected.jsonl").read_text().splitlines()]


def _truncate(path: Path) -> None:
    text = path.read_text()
    path.write_text(text[: len(text) // 2])


# --------------------------------------------------------------------------- RSVQA


def test_rsvqa_truncated_questions_json_is_one_clear_error(tmp_path, capsys):
    make_rsvqa(tmp_path / "src", "hr")
    bad = tmp_path / "src" / "USGS_split_val_questions.json"
    _truncate(bad)
    with pytest.raises(DatasetFormatError) as caught:
        build("rsvqa_hr", tmp_path / "src", tmp_path / "out")
    message = str(caught.value)
    assert str(bad) in message and "not valid JSON" in message and "copy it again" in message
    assert not (tmp_path / "out").exists()
    # the command line: exit status 1, the message, no traceback
    code = main(
        ["data", "build", "rsvqa_hr", "--src", str(tmp_path / "src"), "--out", str(tmp_path / "o2")]
    )
    err = capsys.readouterr().err
    assert code == 1 and bad.name in err and "Traceback" not in err


def test_rsvqa_question_without_id_is_rejected_and_the_build_goes_on(tmp_path):
    make_rsvqa(tmp_path / "src", "hr")
    clean = build("rsvqa_hr", tmp_path / "src", tmp_path / "clean")
    path = tmp_path / "src" / "USGS_split_val_questions.json"
    data = json.loads(path.read_text())
    del data["questions"][2]["id"]
    path.write_text(json.dumps(data))
    manifest = build("rsvqa_hr", tmp_path / "src", tmp_path / "out")
    assert manifest["written"] == clean["written"] - 1
    assert manifest["rejected"] == {**clean["rejected"], "malformed annotation": 1}
    assert manifest["read"] == clean["read"]
    (entry,) = [e for e in _rejected_log(tmp_path / "out") if e["reason"] == "malformed annotation"]
    assert entry["id"] == "rsvqa_hr:val:USGS_split_val_questions.json#2"
    assert "has no 'id'" in entry["detail"] and path.name in entry["detail"]


def test_parallel_build_reports_the_same_rejections_and_errors(tmp_path):
    make_rsvqa(tmp_path / "src", "lr")
    path = tmp_path / "src" / "LR_split_test_questions.json"
    data = json.loads(path.read_text())
    data["questions"][0].pop("id")
    path.write_text(json.dumps(data))
    one = build("rsvqa_lr", tmp_path / "src", tmp_path / "one")
    two = build("rsvqa_lr", tmp_path / "src", tmp_path / "two", workers=2)
    assert one["rejected"]["malformed annotation"] == 1
    assert two["sha256"] == one["sha256"] and two["rejected"] == one["rejected"]
    assert _rejected_log(tmp_path / "two") == _rejected_log(tmp_path / "one")
    _truncate(tmp_path / "src" / "LR_split_val_answers.json")
    with pytest.raises(DatasetFormatError, match="LR_split_val_answers.json"):
        build("rsvqa_lr", tmp_path / "src", tmp_path / "three", workers=2)


def test_cdvqa_question_without_id_is_rejected(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    questions = [
        {"id": 0, "img_id": 0, "type": "change_or_not", "question": "Changed?", "answers_ids": [0]},
        {"img_id": 0, "type": "change_or_not", "question": "No id?", "answers_ids": [0]},
    ]
    files = {
        "questions": questions,
        "answers": [{"id": 0, "answer": "yes"}],
        "images": [{"id": 0, "file_name": "1.png"}],
    }
    for what, rows in files.items():
        (src / f"Train_{what}.json").write_text(json.dumps({what: rows}))
    from PIL import Image

    for d in ("im1", "im2"):
        (src / "Train" / d).mkdir(parents=True)
        Image.new("RGB", (16, 16)).save(src / "Train" / d / "1.png")
    manifest = build("cdvqa", src, tmp_path / "out")
    assert manifest["written"] == 1 and manifest["rejected"] == {"malformed annotation": 1}
    (src / "Train_images.json").write_text('{"images": [{"id": 0, "file_na')
    with pytest.raises(DatasetFormatError, match="Train_images.json"):
        build("cdvqa", src, tmp_path / "out2")


# --------------------------------------------------------------------------- COCO, captions, VOC


def test_coco_annotation_without_image_id_is_rejected(tmp_path):
    make_coco(tmp_path / "src")
    clean = build("coco", tmp_path / "src", tmp_path / "clean")
    path = tmp_path / "src" / "annotations" / "instances_train.json"
    data = json.loads(path.read_text())
    data["annotations"].append({"id": 99, "category_id": 1, "bbox": [1, 1, 5, 5]})
    path.write_text(json.dumps(data))
    manifest = build("coco", tmp_path / "src", tmp_path / "out")
    assert manifest["written"] == clean["written"]
    assert manifest["rejected"] == {**clean["rejected"], "malformed annotation": 1}
    _truncate(path)
    with pytest.raises(GeoAssistError, match="instances_train.json.*not valid JSON"):
        build("coco", tmp_path / "src", tmp_path / "out2")


def test_caption_image_without_filename_is_rejected(tmp_path):
    make_karpathy(tmp_path / "src", "dataset_rsicd.json", "RSICD_images")
    clean = build("rsicd", tmp_path / "src", tmp_path / "clean")
    path = tmp_path / "src" / "dataset_rsicd.json"
    data = json.loads(path.read_text())
    data["images"].append({"split": "train", "sentences": [{"raw": "a field ."}]})
    path.write_text(json.dumps(data))
    manifest = build("rsicd", tmp_path / "src", tmp_path / "out")
    assert manifest["written"] == clean["written"]
    assert manifest["rejected"] == {**clean["rejected"], "malformed annotation": 1}
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DatasetFormatError, match="not UTF-8"):
        build("rsicd", tmp_path / "src", tmp_path / "out2")


def test_dior_damaged_xml_costs_one_image_but_dior_rsvg_refuses_it(tmp_path):
    """DIOR reads one XML per image; DIOR-RSVG numbers objects across all files, so a damaged one is fatal."""
    make_dior(tmp_path / "dior")
    clean = build("dior", tmp_path / "dior", tmp_path / "clean")
    xml = sorted((tmp_path / "dior" / "Annotations" / "Horizontal Bounding Boxes").glob("*.xml"))[0]
    _truncate(xml)
    manifest = build("dior", tmp_path / "dior", tmp_path / "out")
    assert manifest["rejected"].get("malformed annotation", 0) == (
        clean["rejected"].get("malformed annotation", 0) + 1
    )
    (entry,) = [e for e in _rejected_log(tmp_path / "out") if xml.name in e["detail"]]
    assert "not well-formed XML" in entry["detail"]

    make_dior_rsvg(tmp_path / "rsvg")
    _truncate(tmp_path / "rsvg" / "Annotations" / "00002.xml")
    with pytest.raises(DatasetFormatError, match=r"00002\.xml.*not well-formed XML.*later index"):
        build("rsvg", tmp_path / "rsvg", tmp_path / "out2")
