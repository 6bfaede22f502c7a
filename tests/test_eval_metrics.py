"""The metric functions and the answer normalisation against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from geoassist.eval import metrics
from geoassist.eval.normalize import (
    AnswerPool,
    answer_tokens,
    choice_letter,
    choice_options,
    exact_match,
    lenient_match,
    named_answers,
    normalize_answer,
    normalize_label,
    read_number,
)
from geoassist.formats import OBox, box_iou, obox_iou

# ------------------------------------------------------------------------ normalisation


@pytest.mark.parametrize(
    ("text", "normalised"),
    [
        ("Yes.", "yes"),
        ("  YEAH!  ", "yes"),
        ("True", "yes"),
        ("Nope", "no"),
        ("The answer is: twenty-one", "answer is 21"),
        ("one hundred and five", "105"),
        ("two thousand and five", "2005"),
        ("one two", "1 2"),
        ("6,048 m²", "6048m2"),
        ("6048 square meters", "6048m2"),
        ("2.5 m", "2.5 m"),
        ("An urban area.", "urban area"),
        ("can't judge", "cant judge"),
        ("rural_urban", "rural urban"),
        ("", ""),
        (None, ""),
    ],
)
def test_normalize_answer(text, normalised):
    assert normalize_answer(text) == normalised


def test_empty_prediction_is_never_right():
    # RSEvalKit counts `pred in gt`, so an empty answer is a substring of every reference.
    assert not exact_match("", "")
    assert not exact_match("  ", "yes")
    assert not lenient_match("", "yes")
    assert not lenient_match(".", "yes")


def test_strict_and_lenient():
    assert exact_match("Yes.", "yes") and exact_match("three", "3") and exact_match("0 m2", "0m2")
    assert not exact_match("Yes, there is.", "yes")
    assert lenient_match("Yes, there is.", "yes")
    # whole words only: the reference must be inside the prediction, not the other way round
    assert not lenient_match("yesterday", "yes")
    assert not lenient_match("no", "north")
    assert not lenient_match("rural", "rural area")
    assert lenient_match("It is a rural area.", "rural area")
    assert exact_match("urban", ["rural", "urban"])


def _old_lenient(prediction, reference):
    """The earlier lenient rule, for contrast: the reference appears as whole words."""
    pred, ref = answer_tokens(prediction), answer_tokens(reference)
    return any(pred[i : i + len(ref)] == ref for i in range(len(pred) - len(ref) + 1))


def test_lenient_rejects_an_answer_that_names_both_yes_and_no():
    for reference in ("yes", "no"):
        assert _old_lenient("yes no", reference)  # the old rule gave both
        assert not lenient_match("yes no", reference)
        assert not lenient_match("Yes. No.", reference)
        assert not lenient_match("true or false", reference)  # synonyms count too
    assert lenient_match("No, there is not.", "no")
    assert lenient_match("Yes, there are three.", "yes")  # a number beside yes is fine


def test_lenient_rejects_an_answer_that_names_two_numbers():
    for reference in ("3", "4"):
        assert _old_lenient("3 or 4", reference)
        assert not lenient_match("3 or 4", reference)
        assert not lenient_match("three or four", reference)
    assert lenient_match("There are 3 of them, I counted 3.", "3")  # the same number twice
    assert not lenient_match("3, maybe 3.5", "3")
    assert not lenient_match("between 100 and 1000 m2", "1000m2")
    assert lenient_match("It covers 1000 m2.", "1000 square meters")


def test_lenient_rejects_an_answer_that_names_two_answers_of_the_type():
    land_cover = ["rural", "urban"]
    for reference in land_cover:
        assert _old_lenient("urban or rural", reference)
        assert not lenient_match("urban or rural", reference, land_cover)
        assert lenient_match(f"It is a {reference} area.", reference, land_cover)
    # a shorter answer inside a longer one is not named by it
    classes = ["dense residential", "residential", "medium residential"]
    assert _old_lenient("dense residential", "residential")
    assert not lenient_match("dense residential", "residential", classes)
    assert lenient_match("a dense residential area", "dense residential", classes)
    pool = AnswerPool.of(classes)
    assert named_answers(answer_tokens("dense residential and residential"), pool) == {
        "dense residential",
        "residential",
    }
    # a prepared pool and plain strings give the same result
    assert lenient_match("residential", "residential", pool)
    assert not lenient_match("medium residential", "residential", pool)


def test_read_number_and_labels():
    assert read_number("There are three cars.") == 3.0
    assert read_number("about 12.5 m2") == 12.5
    assert read_number("none") is None
    assert normalize_label("Storage_Tanks") == normalize_label("storage tank") == "storage tank"
    assert normalize_label("glass") == "glass" and normalize_label("bus") == "bus"


def test_choice_letters():
    options = choice_options("Is a plane present?\nA.can't judge\nB.No\nC.Yes")
    assert options == {"A": "can't judge", "B": "No", "C": "Yes"}
    for text in ("C", "C.", "(C)", "c", "C. Yes", "C) yes", "Yes"):
        assert choice_letter(text, options) == "C", text
    assert choice_letter("", options) is None
    assert choice_letter("The answer is C", options) is None
    assert choice_letter("The answer is C", options, lenient=True) == "C"
    assert choice_letter("I think yes.", options, lenient=True) == "C"
    # an article is not an option letter
    assert choice_letter("A dense area", {"A": "x", "B": "y"}) is None


# ----------------------------------------------------------------------------------- QA


def test_qa_summary_by_hand():
    # presence: yes/yes, no/"" ; comp: no/no ; count: 3/"three", 10/"There are 12"
    types = ["presence", "presence", "comp", "count", "count"]
    strict = [True, False, True, True, False]
    lenient = [True, False, True, True, False]
    counts = {3: (3.0, 3.0), 4: (12.0, 10.0)}
    m, by_type = metrics.qa_summary(types, strict, lenient, counts)
    assert m["overall_accuracy"] == pytest.approx(3 / 5)
    assert by_type["presence"]["accuracy"] == 0.5 and by_type["comp"]["accuracy"] == 1.0
    assert by_type["count"]["accuracy"] == 0.5
    assert m["average_accuracy"] == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    assert m["count_rmse"] == pytest.approx(math.sqrt((0 + 4) / 2))
    assert m["count_mae"] == pytest.approx(1.0)
    assert m["count_within_1"] == 0.5
    assert by_type["count"]["n"] == 2 and "count_rmse" not in by_type["presence"]


def test_count_metrics_unreadable():
    m = metrics.count_metrics([(None, 4.0), (5.0, 4.0), (4.0, 4.0), (None, 0.0)])
    assert m["count_rmse"] == pytest.approx(math.sqrt(0.5))
    assert m["count_within_1"] == 0.5  # unreadable counts are not within 1
    assert m["count_unreadable_rate"] == 0.5
    assert metrics.count_metrics([])["count_rmse"] is None
    assert m["count_exact_accuracy"] == 0.25  # only 4/4; unreadable is wrong


@pytest.mark.parametrize(
    ("count", "bin_index"),
    [(0, 0), (1, 1), (10, 1), (11, 2), (100, 2), (101, 3), (1000, 3), (1001, 4), (10**6, 4)],
)
def test_rsvqa_count_bins(count, bin_index):
    # RSVQA (Lobry et al., 2020) scores low-resolution counts in 0, 1-10, 11-100, 101-1000, >1000
    assert metrics.rsvqa_count_bin(count) == bin_index


def test_binned_count_accuracy_beside_exact():
    pairs = [(0.0, 0.0), (7.0, 5.0), (12.0, 50.0), (999.0, 500.0), (10.0, 11.0), (None, 3.0)]
    assert metrics.count_binned_accuracy(pairs) == pytest.approx(4 / 6)
    assert metrics.count_metrics(pairs)["count_exact_accuracy"] == pytest.approx(1 / 6)
    assert metrics.rsvqa_count_bin(None) is None and metrics.rsvqa_count_bin(-2) is None
    types = ["count", "count", "presence"]
    counts = {0: (7.0, 5.0), 1: (3.0, 3.0)}
    m, by_type = metrics.qa_summary(types, [False, True, True], [False, True, True], counts)
    assert "count_binned_accuracy" not in m  # only where asked (RSVQA-LR)
    m, by_type = metrics.qa_summary(
        types, [False, True, True], [False, True, True], counts, binned=[0, 1]
    )
    assert m["count_binned_accuracy"] == 1.0 and m["count_exact_accuracy"] == 0.5
    assert by_type["count"]["count_binned_accuracy"] == 1.0
    with pytest.raises(ValueError, match="no count"):
        metrics.qa_summary(types, [True] * 3, [True] * 3, counts, binned=[2])


# ----------------------------------------------------------------------------- boxes


def test_iou_on_normalised_boxes_has_no_plus_one():
    """The LHRS-Bot trap: on 0–1 boxes a +1 area term turns a 14 % overlap into a hit."""
    a, b = (0.1, 0.1, 0.3, 0.3), (0.2, 0.2, 0.4, 0.4)
    assert box_iou(a, b) == pytest.approx(0.01 / 0.07)

    def iou_plus_one(p, q):  # the buggy formula, for contrast
        inter = (min(p[2], q[2]) - max(p[0], q[0]) + 1) * (min(p[3], q[3]) - max(p[1], q[1]) + 1)
        area = lambda r: (r[2] - r[0] + 1) * (r[3] - r[1] + 1)  # noqa: E731
        return inter / (area(p) + area(q) - inter)

    assert iou_plus_one(a, b) > 0.7  # would count as correct at 0.5
    s = metrics.iou_summary([box_iou(a, b)])
    assert s["acc@0.5"] == 0.0 and s["acc@0.25"] == 0.0
    assert s["mean_iou"] == pytest.approx(1 / 7)
    # the same boxes in pixels of a 1000 px image give the same IoU
    assert box_iou([100, 100, 300, 300], [200, 200, 400, 400]) == pytest.approx(1 / 7)


def test_iou_on_pixel_boxes_has_no_plus_one():
    """IoU is in pixels of the original image: x2 - x1 is the width, with no +1 term."""
    assert box_iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(1 / 3)  # +1 gives 0.375
    assert box_iou([0, 0, 10, 10], [10, 0, 20, 10]) == 0.0  # touching boxes do not overlap
    assert box_iou([3, 3, 4, 4], [3, 3, 4, 4]) == 1.0  # one pixel is a box of area 1
    assert box_iou([5, 5, 5, 9], [5, 5, 5, 9]) == 0.0  # a zero-width box has no area
    # masks count pixels: 2 shared of 6 covered
    a, b = np.zeros((3, 4), bool), np.zeros((3, 4), bool)
    a[0, :3], b[0, 1:] = True, True
    b[1, 0] = True
    assert metrics.mask_intersection_union(a, b) == (2, 5)


def test_iou_summary_thresholds_are_inclusive():
    s = metrics.iou_summary([0.5, 0.25, 0.1, 1.0])
    assert s["acc@0.5"] == 0.5 and s["acc@0.25"] == 0.75
    assert s["mean_iou"] == pytest.approx(1.85 / 4)


def test_match_greedy_uses_only_as_many_predictions_as_targets():
    refs = [(0, 0, 10, 10), (20, 0, 30, 10)]
    preds = [(20, 0, 30, 10), (0, 0, 10, 5), (0, 0, 10, 10)]
    assert metrics.match_greedy(preds, refs, box_iou) == [0.5, 1.0]
    # a single target is scored by the first predicted box
    assert metrics.match_greedy([(50, 50, 60, 60), (0, 0, 10, 10)], refs[:1], box_iou) == [0.0]
    assert metrics.match_greedy([], refs, box_iou) == [0.0, 0.0]


def test_oriented_iou_differs_from_horizontal():
    a = OBox(None, 50, 50, 40, 10, 0.0)
    b = OBox(None, 50, 50, 40, 10, 90.0)
    assert obox_iou(a, a) == pytest.approx(1.0)
    assert obox_iou(a, b) == pytest.approx(100 / 700)


# -------------------------------------------------------------------------------- AP


def test_average_precision_envelope():
    # ranks: TP, FP, FP, TP with 3 ground truths -> 1/3 * 1 + 1/3 * 0.5
    recall = [1 / 3, 1 / 3, 1 / 3, 2 / 3]
    precision = [1.0, 0.5, 1 / 3, 0.5]
    assert metrics.average_precision(recall, precision) == pytest.approx(0.5)
    assert metrics.average_precision([0.5, 1.0], [1.0, 1.0]) == pytest.approx(1.0)


def test_detection_map_by_hand():
    gt = [[("car", (0, 0, 10, 10)), ("car", (20, 20, 30, 30))], [("car", (0, 0, 10, 10))]]
    dets = [
        [("car", (0, 0, 10, 10), 0.9), ("car", (0, 0, 10, 10), 0.8)],  # hit, then a duplicate
        [("car", (50, 50, 60, 60), 0.7), ("car", (0, 0, 10, 10), 0.6)],  # miss, then a hit
    ]
    result = metrics.detection_map(dets, gt, box_iou)
    assert result["map"] == pytest.approx(0.5)
    assert result["per_class"]["car"] == {"ap": pytest.approx(0.5), "n_gt": 3, "n_det": 4}


def test_detection_map_classes_without_ground_truth_are_left_out():
    gt = [[("ship", (0, 0, 10, 10))]]
    dets = [[("ship", (0, 0, 10, 10), 1.0), ("plane", (0, 0, 10, 10), 0.5)]]
    result = metrics.detection_map(dets, gt, box_iou)
    assert result["map"] == pytest.approx(1.0)
    assert result["per_class"]["plane"]["ap"] is None
    missed = metrics.detection_map([[]], gt, box_iou)
    assert missed["map"] == 0.0


# ---------------------------------------------------------------------- classification


def test_classification_summary_by_hand():
    result = metrics.classification_summary(
        ["airport", "beach", "beach", None], ["airport", "airport", "beach", "beach"]
    )
    assert result["top1_accuracy"] == 0.5
    assert result["per_class_accuracy"] == {"airport": 0.5, "beach": 0.5}
    assert result["mean_class_accuracy"] == 0.5
    assert result["confusion"]["labels"] == ["airport", "beach"]
    assert result["confusion"]["matrix"] == [[1, 1, 0], [0, 1, 1]]


# ------------------------------------------------------------------------ segmentation


def test_segmentation_summary_by_hand():
    ref1 = np.zeros((4, 4), bool)
    ref1[0, :4] = True
    pred1 = np.zeros((4, 4), bool)
    pred1[0, 2:] = True
    pred1[1, :2] = True
    i1, u1 = metrics.mask_intersection_union(pred1, ref1)
    assert (i1, u1) == (2, 6)
    ref2 = np.ones((2, 5), bool)
    i2, u2 = metrics.mask_intersection_union(ref2.copy(), ref2)
    i3, u3 = metrics.mask_intersection_union(None, ref2)
    assert (i3, u3) == (0, 10)
    s = metrics.segmentation_summary([i1, i2, i3], [u1, u2, u3])
    assert s["miou"] == pytest.approx((1 / 3 + 1 + 0) / 3)
    assert s["oiou"] == pytest.approx(12 / 26)
    assert s["p@0.5"] == pytest.approx(1 / 3) and s["p@0.9"] == pytest.approx(1 / 3)
    assert set(s) == {"miou", "oiou", "p@0.5", "p@0.6", "p@0.7", "p@0.8", "p@0.9"}


def test_segmentation_summary_takes_only_prompts_with_a_target():
    # An empty target answered with an empty mask used to score IoU 1 and enter miou.
    with pytest.raises(ValueError, match="absent_accuracy"):
        metrics.segmentation_summary([0, 3], [0, 4])
    assert metrics.segmentation_summary([], [])["miou"] is None


# ------------------------------------------------------------------------ optional packages


def test_caption_metrics_and_plots_name_the_eval_extra(monkeypatch, tmp_path, caplog):
    import sys

    from geoassist.eval.report import _plots
    from geoassist.extras import MissingExtraError

    monkeypatch.setitem(sys.modules, "pycocoevalcap", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingExtraError, match=r'pip install "geoassist\[eval\]"'):
        metrics.caption_metrics({"a": "a road"}, {"a": ["a road"]})
    with caplog.at_level("WARNING", logger="geoassist.eval.report"):
        assert _plots(tmp_path, {}, {"by_type": {"x": {"accuracy": 1.0}}}) == []
    assert "plots skipped: report plots needs matplotlib" in caplog.text
    assert 'pip install "geoassist[eval]"' in caplog.text
