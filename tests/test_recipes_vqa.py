"""VQA recipes on fake data in the published layouts, and on the real samples (realdata)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from geoassist.data_recipes import build, image_root, load_records, read_records, resolve_image


def _png(path: Path, size=(32, 32), value=0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)


def make_rsvqa(root: Path, kind: str = "hr") -> dict[str, list[dict]]:
    """RSVQA as released on Zenodo: ``USGS_split_<split>_*.json`` + ``Data/`` (HR), ``LR_split_*`` + ``Images_LR/`` (LR).

    Includes the awkward cases: an inactive question, a question whose answer id is missing, a
    question about an image absent from the images JSON, a missing and a corrupt image file.
    """
    prefix, folder = ("USGS_split", "Data") if kind == "hr" else ("LR_split", "Images_LR")
    splits = ["train", "val", "test", "test_phili"] if kind == "hr" else ["train", "val", "test"]
    types = (
        ["presence", "comp", "count", "area"]
        if kind == "hr"
        else ["presence", "comp", "count", "rural_urban"]
    )
    expected: dict[str, list[dict]] = {}
    qid = 0
    for s_index, split in enumerate(splits):
        questions, answers, images = [], [], []
        for i in range(3):
            image_id = s_index * 10 + i
            qids = []
            for t in types:
                answer = {
                    "presence": "yes",
                    "comp": "no",
                    "count": str(i + 1),
                    "area": "between 10m2 and 100m2",
                    "rural_urban": "urban",
                }[t]
                questions.append(
                    {
                        "id": qid,
                        "date_added": 0.0,
                        "img_id": image_id,
                        "people_id": 0,
                        "type": t,
                        "question": f"Q{qid} {t}?",
                        "answers_ids": [qid],
                        "active": True,
                    }
                )
                answers.append(
                    {
                        "id": qid,
                        "date_added": 0.0,
                        "question_id": qid,
                        "people_id": 0,
                        "answer": answer,
                        "active": True,
                    }
                )
                expected.setdefault(split, []).append(
                    {"id": qid, "answer": answer, "type": t, "image": f"{folder}/{image_id}.tif"}
                )
                qids.append(qid)
                qid += 1
            images.append(
                {
                    "id": image_id,
                    "date_added": 0.0,
                    "original_name": f"{image_id}.png",
                    "sensor": "S2" if kind == "lr" else "ULTRACAM",
                    "upperleft_map_x": 1.0,
                    "upperleft_map_y": 2.0,
                    "res_x": "10m" if kind == "lr" else ".1524m",
                    "res_y": "10m",
                    "people_id": 0,
                    "type": "0",
                    "questions_ids": qids,
                    "active": True,
                }
            )
            path = root / folder / f"{image_id}.tif"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((16, 16, 3), image_id, np.uint8)).save(path)
        for name, data in (("questions", questions), ("answers", answers), ("images", images)):
            (root / f"{prefix}_{split}_{name}.json").write_text(json.dumps({name: data}))
    # awkward cases, all in train: they must be rejected with their reasons
    train = {
        n: json.loads((root / f"{prefix}_train_{n}.json").read_text())
        for n in ("questions", "answers", "images")
    }
    train["questions"]["questions"][0]["active"] = False
    train["questions"]["questions"][1]["answers_ids"] = [99999]
    train["questions"]["questions"].append(
        {
            "id": 5000,
            "img_id": 777,
            "type": "presence",
            "question": "Is there a road?",
            "answers_ids": [5000],
            "active": True,
        }
    )
    train["answers"]["answers"].append(
        {"id": 5000, "question_id": 5000, "answer": "yes", "active": True}
    )
    for n, data in train.items():
        (root / f"{prefix}_train_{n}.json").write_text(json.dumps(data))
    (root / folder / "1.tif").unlink()  # image 1 of train is missing
    (root / folder / "2.tif").write_bytes(b"not a tiff at all")  # image 2 is corrupt
    return expected


@pytest.mark.parametrize("kind", ["hr", "lr"])
def test_rsvqa_published_layout(tmp_path, kind):
    expected = make_rsvqa(tmp_path / "src", kind)
    manifest = build(f"rsvqa_{kind}", tmp_path / "src", tmp_path / "out")
    n_types = 4
    assert manifest["rejected"] == {
        "inactive in source": 1,
        "missing answer": 1,
        "missing image": 1 + n_types,
        "unreadable image": n_types,
    }
    assert manifest["read"] == manifest["written"] + manifest["rejected_total"]
    assert set(manifest["by_split"]) == (
        {"train", "val", "test", "test_phili"} if kind == "hr" else {"train", "val", "test"}
    )
    records = {r["id"]: r for r in read_records(tmp_path / "out")}
    root = image_root(tmp_path / "out")
    for split, items in expected.items():
        for item in items:
            rid = f"rsvqa_{kind}:{item['id']}"
            if rid not in records:
                continue
            record = records[rid]
            assert (
                record["split"] == split
                and record["answer"] == item["answer"]
                and record["qtype"] == item["type"]
            )
            assert record["images"] == [item["image"]] and resolve_image(record, root).is_file()
            assert record["task"] == ("counting" if item["type"] == "count" else "vqa")
            assert (
                record["conversations"][0]["content"]
                == f"<image>\n[vqa] Q{item['id']} {item['type']}?"
            )
            assert record["conversations"][1]["content"] == item["answer"]
    # test set 1 and test set 2 stay apart
    if kind == "hr":
        assert manifest["by_split"]["test"] == manifest["by_split"]["test_phili"] == 12
        assert manifest["by_split"]["test_phili"] == sum(
            1 for _ in read_records(tmp_path / "out", split="test_phili")
        )
    log = [
        json.loads(line) for line in (tmp_path / "out" / "rejected.jsonl").read_text().splitlines()
    ]
    assert Counter(e["reason"] for e in log) == Counter(manifest["rejected"])


def test_rsvqa_split_selection(tmp_path):
    make_rsvqa(tmp_path / "src", "hr")
    manifest = build("rsvqa_hr", tmp_path / "src", tmp_path / "out", splits=["test_phili"])
    assert manifest["by_split"] == {"test_phili": 12}
    from geoassist.data_recipes import RecipeError

    with pytest.raises(RecipeError, match="available"):
        build("rsvqa_hr", tmp_path / "src", tmp_path / "out2", splits=["test2"])


def make_rsivqa(root: Path) -> list[str]:
    """RSIVQA: ``<set>/<name>.txt`` with ``image:question?answer`` lines; images in the set folder."""
    lines = [
        "1.tif:what is the theme of this picture?farmland",
        "1.tif:Does this picture contain trees?yes",
        "2.tif:How many trees in the picture?one",
        "2.tif:Where is it? The answer?top left corner",
        "3.tif:Is there a road?yes",  # image 3 absent
        "1.tif:Is there water?",  # no answer
        "garbage without separators",
    ]
    (root / "UCM").mkdir(parents=True)
    (root / "UCM" / "ucm_vqa.txt").write_text("\n".join(lines) + "\n")
    for i in (1, 2):
        _png(root / "UCM" / "images" / f"{i}.tif")
    return lines


def test_rsivqa_published_layout(tmp_path):
    make_rsivqa(tmp_path / "src")
    manifest = build("rsivqa", tmp_path / "src", tmp_path / "out")
    assert manifest["written"] == 4
    assert manifest["rejected"] == {"malformed line": 1, "missing answer": 1, "missing image": 1}
    records = {r["id"]: r for r in read_records(tmp_path / "out")}
    assert records["rsivqa:UCM/ucm_vqa:4"]["answer"] == "top left corner"
    assert records["rsivqa:UCM/ucm_vqa:4"]["conversations"][0]["content"].endswith(
        "Where is it? The answer?"
    )
    assert records["rsivqa:UCM/ucm_vqa:1"]["images"] == ["UCM/images/1.tif"]


@pytest.mark.realdata
def test_rsvqa_lr_real_samples(rs_samples, tmp_path):
    src = rs_samples / "rsvqa" / "LR_reduced"
    manifest = build("rsvqa_lr", src, tmp_path / "out")
    questions = json.loads((src / "questionsS2_reduced.json").read_text())["questions"]
    answers = {
        a["question_id"]: a["answer"]
        for a in json.loads((src / "answersS2_reduced.json").read_text())["answers"]
    }
    assert manifest["written"] == 3003 == len(questions) and manifest["rejected"] == {}
    assert manifest["by_qtype"] == dict(Counter(q["type"] for q in questions))
    records = list(read_records(tmp_path / "out"))
    assert all(r["answer"] == answers[int(r["id"].split(":")[1])] for r in records)
    records_raw, root = load_records(src)  # the raw folder, detected and converted in memory
    assert [r["id"] for r in records_raw] == [r["id"] for r in records] and root == src.resolve()


@pytest.mark.realdata
def test_rsvqa_hr_and_rsivqa_real_samples(rs_samples, tmp_path):
    manifest = build("rsvqa_hr", rs_samples / "rsvqa" / "HR_reduced", tmp_path / "hr")
    assert manifest["written"] == 300 and manifest["by_split"] == {"train": 300}
    assert set(manifest["by_qtype"]) == {"presence", "comp", "count", "area"}
    src = rs_samples / "rsivqa"
    manifest = build("rsivqa", src, tmp_path / "rsivqa")
    n_lines = sum(
        len([line for line in p.read_text().splitlines() if line.strip()])
        for p in src.glob("*/*.txt")
    )
    # the repository ships no images, so every line is read and rejected for its missing image
    assert manifest["read"] == n_lines and manifest["rejected"] == {"missing image": n_lines}
