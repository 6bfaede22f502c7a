"""geoassist.readers on hand-made files: what a malformed record and an unreadable file each become."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from geoassist import readers as R


def test_readers_stand_apart_from_geosynth_and_the_recipes():
    code = (
        "import sys, geoassist.readers; "
        "print(sorted(m for m in sys.modules if m.startswith(('geoassist.synth', 'geoassist.data_recipes'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_load_json_names_the_file_and_the_place(tmp_path):
    path = tmp_path / "x.json"
    path.write_text('{"questions": [{"id": 1},')
    with pytest.raises(
        R.DatasetFormatError, match=r"x\.json .*not valid JSON: .* line 1, column 26"
    ):
        R.load_json(path, "RSVQA questions JSON")
    path.write_bytes(b"\x89PNG\r\n\x1a\n")
    with pytest.raises(R.DatasetFormatError, match="not UTF-8 text"):
        R.load_json(path, "RSVQA questions JSON")
    with pytest.raises(R.DatasetFormatError, match="not found"):
        R.load_json(tmp_path / "absent.json", "RSVQA questions JSON")


def _rsvqa(root, questions):
    root.mkdir()
    files = {
        "questions": questions,
        "answers": [{"id": 0, "answer": "yes"}, {"id": 1, "answer": "no", "active": False}],
        "images": [{"id": 7}],
    }
    for what, rows in files.items():
        (root / f"USGS_split_val_{what}.json").write_text(json.dumps({what: rows}))


def test_rsvqa_malformed_question_raises_or_is_collected(tmp_path):
    _rsvqa(
        tmp_path / "r",
        [
            {"id": 0, "img_id": 7, "type": "presence", "question": "Q?", "answers_ids": [0]},
            {"img_id": 7, "type": "presence", "question": "no id?", "answers_ids": [0]},
            {"id": 2, "img_id": 7, "type": "comp", "question": "Q2?", "answers_ids": "1"},
            {"id": 3, "img_id": 7, "type": "comp", "question": "Q3?", "answers_ids": [1]},
        ],
    )
    with pytest.raises(R.DatasetFormatError, match="question 1 has no 'id'"):
        R.read_rsvqa(tmp_path / "r", "val")
    bad: list[R.Malformed] = []
    items = R.read_rsvqa(tmp_path / "r", "val", malformed=bad)
    assert [i.question_id for i in items] == [0]  # question 3's only answer is inactive
    assert [(m.key, m.reason) for m in bad] == [
        ("USGS_split_val_questions.json#1", "malformed annotation"),
        ("2", "malformed annotation"),
    ]
    assert [
        i.question_id for i in R.read_rsvqa(tmp_path / "r", "val", active_only=False, malformed=[])
    ] == [0, 3]
    stream = list(R.read_rsvqa_split(*R.rsvqa_files(tmp_path / "r", "val").values()))
    assert [type(x).__name__ for x in stream] == [
        "RSVQAQuestion",
        "Malformed",
        "Malformed",
        "RSVQAQuestion",
    ]
    assert stream[3].answer == "no" and not stream[3].answer_active


def test_dota_label_lines(tmp_path):
    header, objects, bad = R.parse_dota_label(
        [
            "imagesource:GoogleEarth",
            "gsd:0.5",
            "1 1 9 1 9 5 1 5 plane 0",
            "1 1 9 1 9 5 plane 0",
            "",
            "1 1 9 1 9 5 1 5 ship",
        ],
        "P1.txt",
    )
    assert header == {"imagesource": "GoogleEarth", "gsd": "0.5"}
    assert [(o.cls, o.difficult, o.line, o.box) for o in objects] == [
        ("plane", 0, 3, [1, 1, 9, 5]),
        ("ship", 0, 6, [1, 1, 9, 5]),
    ]
    assert [(b.key, b.reason) for b in bad] == [("P1.txt:4", "malformed line")]
    path = tmp_path / "P1.txt"
    path.write_text("1 1 9 1 9 5 plane 0\n")
    with pytest.raises(R.DatasetFormatError, match="P1.txt"):
        R.read_dota_label(path)
    collected: list[R.Malformed] = []
    assert R.read_dota_label(path, malformed=collected) == ({}, []) and len(collected) == 1


def test_voc_keeps_the_file_and_names_the_bad_object(tmp_path):
    path = tmp_path / "a.xml"
    path.write_text(
        "<annotation><filename>a.jpg</filename><size><width>80</width><height>x</height></size>"
        "<object><name>ship</name><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>9</xmax><ymax>8</ymax></bndbox></object>"
        "<object><name>tank</name><bndbox><xmin>1</xmin><ymin>?</ymin><xmax>9</xmax></bndbox></object>"
        "</annotation>"
    )
    voc = R.read_voc(path)
    assert (voc["width"], voc["height"]) == (80, None)
    ship, tank = voc["objects"]
    assert (
        ship["box"] == [1, 2, 9, 8] and "box" not in tank and "no four numbers" in tank["malformed"]
    )
    path.write_text("<annotation><object>")
    with pytest.raises(R.DatasetFormatError, match=r"a\.xml .*not well-formed XML"):
        R.read_voc(path)


def test_fair1m_objects_and_malformed_ones(tmp_path):
    path = tmp_path / "1.xml"
    point = "<point>{}</point>"
    good = "".join(point.format(p) for p in ("0,0", "10,0", "10,5", "0,5", "0,0"))
    path.write_text(
        f"<annotation><objects><object><possibleresult><name>Boeing737</name></possibleresult><points>{good}</points></object>"
        f"<object><possibleresult><name>Tennis Court</name></possibleresult><points>{point.format('1,x')}</points></object>"
        "</objects></annotation>"
    )
    objects, bad = R.read_fair1m_xml(path)
    assert objects == [{"name": "Boeing737", "points": [[0, 0], [10, 0], [10, 5], [0, 5]]}]
    assert [(b.key, b.reason) for b in bad] == [("1.xml#1", "malformed annotation")]


def test_coco_and_captions_collect_or_raise(tmp_path):
    coco = tmp_path / "c.json"
    coco.write_text(
        json.dumps(
            {
                "images": [{"id": 1, "file_name": "1.png"}, {"id": 2}],
                "annotations": [{"image_id": 1, "bbox": [0, 0, 1, 1]}, {"bbox": []}],
                "categories": [],
            }
        )
    )
    with pytest.raises(R.DatasetFormatError, match="image 1 has no id or file_name"):
        R.read_coco(coco)
    bad: list[R.Malformed] = []
    data = R.read_coco(coco, malformed=bad)
    assert len(data["images"]) == 1 and list(data["annotations"]) == [1] and len(bad) == 2
    caps = tmp_path / "dataset.json"
    caps.write_text(
        json.dumps(
            {
                "images": [
                    {
                        "filename": "1.tif",
                        "split": "val",
                        "sentences": [{"raw": "a field ."}, {"tokens": ["a", "road"]}],
                    },
                    {"split": "val"},
                ]
            }
        )
    )
    first, second = R.read_caption_images(caps)
    assert first.captions == ["a field .", "a road"] and isinstance(second, R.Malformed)
    with pytest.raises(R.DatasetFormatError, match="no filename"):
        R.read_karpathy(caps)
