"""Eval-only benchmark recipes: CHOICE (fake layout + real subset) and GeoChat-Bench (fake jsonl)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geoassist.data_recipes import build, image_root, load_target_mask, read_records
from geoassist.formats import parse


def _png(path: Path, size=(100, 80)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((size[1], size[0], 3), np.uint8)).save(path)


def make_choice(root: Path) -> None:
    """CHOICE: ``<dimension>/<category>/<task>/<task>.json`` + ``images/`` (+ ``masks/``)."""
    base = root / "perception" / "single_instance_identification"
    mc = [
        {
            "id": "a1",
            "image_path": "perception/single_instance_identification/object_counting/images/1.png",
            "question": "How many ships?\nA.3\nB.5\nC.4",
            "answer": "C",
        },
        {
            "id": "a2",
            "image_path": "perception/single_instance_identification/object_counting/images/2.png",
            "question": "How many cars?\nA.1\nB.2",
            "answer": "A",
        },
        {
            "id": "a3",
            "image_path": "perception/single_instance_identification/object_counting/images/1.png",
            "question": "How many planes?\nA.1\nB.2",
        },
    ]
    grounding = [
        {
            "id": "g1",
            "image_path": "perception/single_instance_identification/visual_grounding/images/1.png",
            "question": "Where is the roundabout?",
            "answer": [[0.5, 0.5], [0.7, 0.5], [0.7, 0.75], [0.5, 0.75]],
        }
    ]
    seg = [
        {
            "id": "s1",
            "image_path": "perception/cross_instance_discerment/referring_expression_segmentation/images/1.png",
            "question": "Give me the mask of the ship.",
            "mask_path": "perception/cross_instance_discerment/referring_expression_segmentation/masks/1.png",
        }
    ]
    for task, entries, folder in (
        ("object_counting", mc, base),
        ("visual_grounding", grounding, base),
        (
            "referring_expression_segmentation",
            seg,
            root / "perception" / "cross_instance_discerment",
        ),
    ):
        (folder / task).mkdir(parents=True, exist_ok=True)
        (folder / task / f"{task}.json").write_text(json.dumps(entries))
    _png(base / "object_counting" / "images" / "1.png")  # image 2 is missing
    _png(base / "visual_grounding" / "images" / "1.png")
    seg_dir = (
        root / "perception" / "cross_instance_discerment" / "referring_expression_segmentation"
    )
    _png(seg_dir / "images" / "1.png")
    mask = np.zeros((80, 100), np.uint8)
    mask[10:50, 20:60] = 255
    (seg_dir / "masks").mkdir(parents=True)
    Image.fromarray(mask).save(seg_dir / "masks" / "1.png")


def test_choice_published_layout(tmp_path):
    make_choice(tmp_path / "src")
    manifest = build("choice", tmp_path / "src", tmp_path / "out")
    assert manifest["eval_only"] and manifest["by_split"] == {"test": 3}
    assert manifest["rejected"] == {"missing answer": 1, "missing image": 1}
    records = {r["id"]: r for r in read_records(tmp_path / "out")}
    mc = records["choice:a1"]
    assert (
        mc["answer"] == "C"
        and mc["meta"]["answer_text"] == "4"
        and mc["qtype"] == "object_counting"
    )
    assert mc["meta"]["options"] == {"A": "3", "B": "5", "C": "4"}
    grounding = records["choice:g1"]
    assert grounding["targets"]["boxes"][0]["box"] == [50.0, 40.0, 70.0, 60.0]
    assert parse(grounding["answer"], (100, 80)).boxes[0].box == pytest.approx((50, 40, 70, 60))
    seg = records["choice:s1"]
    mask = load_target_mask(seg, image_root(tmp_path / "out"))
    assert mask.sum() == 40 * 40 and parse(seg["answer"], (100, 80)).mask[30, 40]


def make_geochat_bench(root: Path) -> None:
    """GeoChat-Bench: ``*.jsonl`` with question_id / image(_id) / text|question / ground_truth."""
    rows = {
        "aid.jsonl": [
            {
                "question_id": "Airport/airport_1.jpg",
                "image": "airport_1.jpg",
                "text": "Classify the image.",
            }
        ],
        "lrben.jsonl": [
            {
                "question_id": 7,
                "image": "7.png",
                "text": "Is there a road? Answer the question using a single word or phrase.",
                "category": "presence",
            }
        ],
        "referring.jsonl": [
            {
                "question_id": 1,
                "image_id": "P1",
                "question": "the ship at the top",
                "ground_truth": "{<10><20><30><40>|0}",
                "type": "ref",
            }
        ],
        "region_captioning.jsonl": [
            {
                "question_id": 2,
                "image_id": "P1",
                "question": "{<10><20><30><40>}",
                "ground_truth": "a white ship",
            }
        ],
    }
    for name, lines in rows.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("".join(json.dumps(r) + "\n" for r in lines) + "not json\n")
    for name in ("airport_1.jpg", "7.png", "P1.png"):
        _png(root / "images" / name, (200, 100))


def test_geochat_bench_jsonl(tmp_path):
    make_geochat_bench(tmp_path / "src")
    manifest = build("geochat_bench", tmp_path / "src", tmp_path / "out")
    assert manifest["rejected"] == {"malformed line": 4, "missing answer": 1}
    records = {r["id"]: r for r in read_records(tmp_path / "out")}
    assert records["geochat_bench:aid:Airport/airport_1.jpg"]["answer"] == "airport"
    referring = records["geochat_bench:referring:1"]
    assert referring["targets"]["boxes"][0]["box"] == pytest.approx([20.0, 20.0, 60.0, 40.0])
    region = records["geochat_bench:region_captioning:2"]
    assert (
        region["answer"] == "a white ship"
        and "[region] <box>100,200,300,400</box>" in region["conversations"][0]["content"]
    )
    answers = tmp_path / "answers.json"
    answers.write_text(
        json.dumps({"answers": [{"id": 7, "question_id": 7, "answer": "yes", "active": True}]})
    )
    manifest = build(
        "geochat_bench",
        tmp_path / "src",
        tmp_path / "out2",
        options={"rsvqa_answers": str(answers)},
    )
    lr = {r["id"]: r for r in read_records(tmp_path / "out2")}["geochat_bench:lrben:7"]
    assert lr["answer"] == "yes" and lr["conversations"][0]["content"].endswith(
        "[vqa] Is there a road?"
    )


@pytest.mark.realdata
def test_choice_real_subset(rs_samples, tmp_path):
    src = rs_samples / "choice" / "CHOICE_subset"
    manifest = build("choice", src, tmp_path / "out")
    entries = [
        e for p in src.rglob("*.json") if p.stem == p.parent.name for e in json.loads(p.read_text())
    ]
    present = [e for e in entries if (src / e["image_path"]).is_file()]
    assert manifest["read"] == len(entries) == 460
    assert manifest["written"] == len(present) and manifest["rejected"] == {
        "missing image": len(entries) - len(present)
    }
    by_id = {e["id"]: e for e in present}
    for record in read_records(tmp_path / "out"):
        entry = by_id[record["id"].split(":", 1)[1]]
        if isinstance(entry.get("answer"), str):
            assert record["answer"] == entry["answer"]
        elif "answer" in entry:
            width, height = record["meta"]["width"], record["meta"]["height"]
            assert record["targets"]["polygons"][0]["points"] == [
                [x * width, y * height] for x, y in entry["answer"]
            ]
