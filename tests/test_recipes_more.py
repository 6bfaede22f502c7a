"""The later recipes: RSVLM-QA, CDVQA, SECOND-CC, LoveDA, RRSIS-D — fake files in their published layouts."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geoassist.data_recipes import build, image_root, load_target_mask, read_records
from geoassist.formats import parse
from geoassist.rle import mask_to_rle


def _image(path: Path, size=(40, 30)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((size[1], size[0], 3), np.uint8)).save(path)


def test_rsvlm_qa_jsonl(tmp_path):
    src = tmp_path / "src"
    _image(src / "images" / "whu_1.png")
    rows = [
        {
            "id": "whu_1",
            "image_path": "images/whu_1.png",
            "caption": "Rows of houses.",
            "count_vqa_pairs": [
                {
                    "question_id": "q1",
                    "question_type": "count",
                    "question": "How many buildings are there?",
                    "answer": "12",
                },
                {
                    "question_id": "q2",
                    "question_type": "presence",
                    "question": "Are there roads?",
                    "answer": "",
                },
            ],
            "vqa_pairs": [
                {
                    "question_id": "v1",
                    "question_type": "spatial",
                    "question": "Where is the road?",
                    "answer": "In the middle.",
                }
            ],
        },
        {"id": "gone", "image_path": "images/gone.png", "vqa_pairs": []},
    ]
    (src / "RSVLM-QA_test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    manifest = build("rsvlm_qa", src, tmp_path / "out")
    assert manifest["by_split"] == {"test": 3} and manifest["rejected"] == {
        "missing answer": 1,
        "missing image": 1,
    }
    records = {r["id"]: r for r in read_records(tmp_path / "out")}
    assert records["rsvlm_qa:whu_1:count_vqa_pairs:q1"]["task"] == "counting"
    assert records["rsvlm_qa:whu_1:vqa_pairs:v1"]["qtype"] == "spatial"


def test_cdvqa_rsvqa_schema_on_pairs(tmp_path):
    src = tmp_path / "src"
    for prefix in ("Train", "Test2"):
        questions = [
            {
                "id": 0,
                "img_id": 0,
                "type": "change_or_not",
                "question": "Have the areas of trees changed?",
                "answers_ids": [0],
                "active": True,
            },
            {
                "id": 1,
                "img_id": 0,
                "type": "change_ratio",
                "question": "What is the percentage of changed areas?",
                "answers_ids": [1],
                "active": True,
            },
        ]
        answers = [
            {"id": 0, "question_id": 0, "answer": "yes", "active": True},
            {"id": 1, "question_id": 1, "answer": "30_to_40", "active": True},
        ]
        images = [
            {
                "id": 0,
                "res_x": ".5m",
                "questions_ids": [0, 1],
                "file_name": "00003.png",
                "active": True,
            }
        ]
        for what, data in (("questions", questions), ("answers", answers), ("images", images)):
            src.mkdir(exist_ok=True)
            (src / f"{prefix}_{what}.json").write_text(json.dumps({what: data}))
        _image(src / prefix / "im1" / "00003.png")
        _image(src / prefix / "im2" / "00003.png")
    manifest = build("cdvqa", src, tmp_path / "out")
    assert manifest["by_split"] == {"test2": 2, "train": 2} and manifest["by_qtype"] == {
        "change_or_not": 2,
        "change_ratio": 2,
    }
    record = {r["id"]: r for r in read_records(tmp_path / "out")}["cdvqa:test2:1"]
    assert record["answer"] == "30_to_40" and record["images"] == [
        "Test2/im1/00003.png",
        "Test2/im2/00003.png",
    ]
    assert record["conversations"][0]["content"].startswith("<image><image>\n[change_qa] ")


def test_second_cc_json_and_rgb_folders(tmp_path):
    src = tmp_path / "src"
    images = []
    for split in ("train", "test"):
        for folder in ("rgb/A", "rgb/B", "sem/A", "sem/B"):
            _image(src / split / folder / "00001.png")
        images.append(
            {
                "filename": "00001.png",
                "filepath": split,
                "split": split,
                "changeflag": 1,
                "sentences": [
                    {"raw": " a building is built on the bare land .", "tokens": []},
                    {"raw": "new buildings appear", "tokens": []},
                ],
            }
        )
    (src / "SECOND-CC-AUG.json").write_text(json.dumps({"images": images}))
    manifest = build("second_cc", src, tmp_path / "out")
    assert manifest["by_split"] == {"test": 2, "train": 2}
    record = {r["id"]: r for r in read_records(tmp_path / "out")}["second_cc:test/00001:caption"]
    assert record["answer"] == ["A building is built on the bare land.", "New buildings appear."]
    assert (
        record["images"] == ["test/rgb/A/00001.png", "test/rgb/B/00001.png"]
        and record["meta"]["semantic_maps"][0] == "test/sem/A/00001.png"
    )


def test_loveda_release_layout(tmp_path):
    src = tmp_path / "src"
    mask = np.ones((30, 40), np.uint8)
    mask[:15, :20] = 2  # building
    mask[20:, :] = 7  # agriculture
    for domain in ("Urban", "Rural"):
        _image(src / "Train" / domain / "images_png" / "1.png")
        (src / "Train" / domain / "masks_png").mkdir(parents=True)
        Image.fromarray(mask).save(src / "Train" / domain / "masks_png" / "1.png")
    _image(src / "Val" / "Urban" / "images_png" / "9.png")  # no mask: rejected
    manifest = build("loveda", src, tmp_path / "out")
    assert manifest["rejected"] == {"missing mask": 1} and manifest["by_split"] == {"train": 12}
    records = {r["id"]: r for r in read_records(tmp_path / "out")}
    building = records["loveda:urban/1:segment:building"]
    assert np.array_equal(load_target_mask(building, image_root(tmp_path / "out")), mask == 2)
    assert records["loveda:rural/1:area:agricultural land"]["answer"] == "33%"
    assert records["loveda:rural/1:domain"]["answer"] == "rural"
    assert sum(r["answer"] == "none" for r in records.values()) == 2


@pytest.mark.parametrize("refs_format", ["pickle", "json"])
def test_rrsis_d_refer_layout(tmp_path, refs_format):
    src = tmp_path / "src"
    _image(src / "images" / "rrsisd" / "JPEGImages" / "00001.jpg")
    mask = np.zeros((30, 40), bool)
    mask[5:20, 10:30] = True
    instances = {
        "images": [{"id": 1, "file_name": "00001.jpg", "width": 40, "height": 30}],
        "annotations": [
            {
                "id": 7,
                "image_id": 1,
                "category_id": 3,
                "bbox": [10, 5, 20, 15],
                "segmentation": mask_to_rle(mask),
            }
        ],
        "categories": [{"id": 3, "name": "vehicle"}],
    }
    refs = [
        {
            "ref_id": 0,
            "ann_id": 7,
            "image_id": 1,
            "category_id": 3,
            "split": "val",
            "sentences": [
                {"sent": "the grey vehicle", "sent_id": 0, "tokens": []},
                {"sent": " ", "sent_id": 1, "tokens": []},
            ],
        }
    ]
    (src / "rrsisd").mkdir()
    (src / "rrsisd" / "instances.json").write_text(json.dumps(instances))
    if refs_format == "pickle":
        (src / "rrsisd" / "refs(unc).p").write_bytes(pickle.dumps(refs, protocol=2))
    else:
        (src / "rrsisd" / "refs(unc).json").write_text(json.dumps(refs))
    manifest = build("rrsis_d", src, tmp_path / "out")
    assert manifest["by_split"] == {"val": 2} and manifest["rejected"] == {"missing question": 1}
    records = {r["id"]: r for r in read_records(tmp_path / "out")}
    seg = records["rrsis_d:0:0"]
    assert np.array_equal(load_target_mask(seg, image_root(tmp_path / "out")), mask)
    assert parse(records["rrsis_d:0:0:box"]["answer"], (40, 30)).boxes[0].box == pytest.approx(
        (10, 5, 30, 20), abs=0.05
    )


def test_rrsis_d_refuses_pickles_with_code(tmp_path):
    from geoassist.data_recipes import RecipeError

    src = tmp_path / "src" / "rrsisd"
    src.mkdir(parents=True)
    (src / "instances.json").write_text(
        json.dumps({"images": [], "annotations": [], "categories": []})
    )
    (src / "refs(unc).p").write_bytes(pickle.dumps([{"split": "train", "x": Path("/etc")}]))
    with pytest.raises((RecipeError, pickle.UnpicklingError), match="only plain"):
        build("rrsis_d", tmp_path / "src", tmp_path / "out")
