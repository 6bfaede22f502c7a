"""The ``change_seg`` task and its scorer (``change_iou``)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from geoassist.formats import format_mask


@pytest.fixture
def change_records(tmp_path):
    records = []
    for n, box in enumerate([(0, 0, 8, 8), (8, 8, 16, 16), None]):
        mask = np.zeros((16, 16), np.uint8)
        if box:
            x1, y1, x2, y2 = box
            mask[y1:y2, x1:x2] = 255
        Image.fromarray(mask).save(tmp_path / f"change{n}.png")
        records.append({
            "id": f"t:{n}", "source": "t", "split": "test", "task": "change_seg",
            "images": ["a.png", "b.png"],
            "conversations": [{"role": "user", "content": "<image><image>\n[change_seg] Outline what changed between the two images."}],
            "answer": "", "targets": {"mask": f"change{n}.png"}, "meta": {"width": 16, "height": 16},
        })  # fmt: skip
    return tmp_path, records


def test_change_iou_over_pairs_with_a_change_and_absent_apart(change_records):
    from geoassist.eval.harness import PRIMARY_METRIC, score
    from geoassist.prompts import build_prompt

    root, records = change_records
    assert build_prompt("change_seg", "") == records[0]["conversations"][0]["content"].split("\n", 1)[1]
    exact = np.zeros((16, 16), bool)
    exact[0:8, 0:8] = True
    half = np.zeros((16, 16), bool)
    half[8:16, 8:12] = True  # half of the second change
    predictions = {"t:0": format_mask(exact, (16, 16)), "t:1": format_mask(half, (16, 16)), "t:2": "none"}
    report, items, _ = score("change_seg", records, predictions, root)
    m = report["metrics"]
    assert PRIMARY_METRIC["change_seg"] == "change_iou"
    assert m["change_iou"] == pytest.approx((64 + 32) / (64 + 64))
    assert m["mean_change_iou"] == pytest.approx(0.75)
    assert m["p@0.5"] == 1.0 and m["n_present"] == 2
    assert m["n_absent"] == 1 and m["absent_accuracy"] == 1.0
    wrong = {**predictions, "t:2": format_mask(exact, (16, 16))}
    assert score("change_seg", records, wrong, root)[0]["metrics"]["false_positive_rate"] == 1.0
