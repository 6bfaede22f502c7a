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


def _referring(n, box, cues):
    record = {
        "id": f"r:{n}", "source": "r", "split": "test", "task": "referring", "images": ["a.png"],
        "conversations": [{"role": "user", "content": "<image>\n[refer] the thing"}],
        "answer": "", "targets": {"boxes": [{"label": "thing", "box": box}] if box else []},
        "meta": {"width": 100, "height": 100},
    }  # fmt: skip
    if cues is not None:
        record["meta"]["expression_cues"] = cues
    return record


def test_referring_accuracy_by_what_the_expression_needs():
    from geoassist.eval.harness import score
    from geoassist.eval.targets import EvalDataError
    from geoassist.formats import format_box

    box = [10, 10, 50, 50]
    hit, miss = format_box(box, (100, 100)), format_box((60, 60, 90, 90), (100, 100))
    cases = [  # (cues, prediction)
        ([], hit), ([], hit), ([], miss),
        (["attribute"], miss), (["attribute", "position"], hit), (["relation"], miss),
        (["extreme"], hit), (None, miss),  # a record that does not say: acc@0.5 only
    ]  # fmt: skip
    records = [_referring(n, box, cues) for n, (cues, _) in enumerate(cases)]
    records.append(_referring(len(cases), None, []))  # absent target: scored apart
    predictions = {r["id"]: p for r, (_, p) in zip(records, cases, strict=False)}
    predictions[records[-1]["id"]] = "none"
    m = score("referring", records, predictions)[0]["metrics"]
    assert m["acc@0.5"] == pytest.approx(4 / 8)
    assert (m["acc@0.5_class_only"], m["n_class_only"]) == (pytest.approx(2 / 3), 3)
    assert (m["acc@0.5_beyond_class"], m["n_beyond_class"]) == (pytest.approx(2 / 4), 4)
    assert (m["acc@0.5_needs_attribute"], m["n_needs_attribute"]) == (0.5, 2)
    assert m["acc@0.5_needs_position"] == 1.0 and m["acc@0.5_needs_relation"] == 0.0
    assert m["acc@0.5_needs_extreme"] == 1.0 and m["absent_accuracy"] == 1.0
    # data that never says what its expressions need reports no groups
    plain = [_referring(0, box, None)]
    metrics = score("referring", plain, {"r:0": hit})[0]["metrics"]
    assert metrics["acc@0.5"] == 1.0 and not any(k.startswith("acc@0.5_") for k in metrics)
    with pytest.raises(EvalDataError, match="expression_cues must be a list"):
        score("referring", [_referring(0, box, "attribute")], {"r:0": hit})
