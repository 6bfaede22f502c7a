"""The answer grammar: round trips, a parser that never raises, converters, IoU and oriented boxes."""

from __future__ import annotations

import math
import re
import string
from pathlib import Path

import numpy as np
import pytest
import shapely
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geoassist import formats
from geoassist.formats import (
    Box,
    OBox,
    ParseResult,
    box_iou,
    convert,
    corners_to_obbox,
    format_box,
    format_mask,
    format_objects,
    format_obox,
    format_polygon,
    from_florence,
    from_geochat,
    from_grid,
    from_plain_list,
    from_qwen,
    obbox_to_corners,
    obox_iou,
    parse,
    to_grid,
)

DOCS = Path(__file__).resolve().parents[1] / "docs" / "FORMATS.md"
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# An oracle kept apart from the parser's own patterns: anything that looks like one of our tags.
TAG_LIKE = re.compile(r"</?(?:ref|box|obox|poly|mask)\b", re.IGNORECASE | re.ASCII)
GEOMETRY_OPENER = re.compile(r"<(?:box|obox|poly|mask)\b", re.IGNORECASE | re.ASCII)

image_sizes = st.tuples(st.integers(1, 4000), st.integers(1, 4000))
small_image_sizes = st.tuples(st.integers(1, 300), st.integers(1, 300))
labels = st.lists(
    st.text(alphabet=string.ascii_letters + string.digits + "-_'é水", min_size=1, max_size=8),
    min_size=1,
    max_size=3,
).map(" ".join)
scores = st.none() | st.floats(0.0, 1.0)


def angle_difference(a: float, b: float) -> float:
    """Smallest difference between two rectangle angles, which repeat every 180 degrees."""
    return abs((a - b + 90.0) % 180.0 - 90.0)


def check_invariants(result: ParseResult, text: str, size: tuple[int, int]) -> None:
    """What must hold for the parse of any string."""
    width, height = size
    assert isinstance(result, ParseResult)
    assert isinstance(result.text, str)
    assert all(isinstance(e, str) and e.startswith(("dropped", "repaired")) for e in result.errors)
    for box in result.boxes:
        x1, y1, x2, y2 = box.box
        assert 0 <= x1 <= x2 <= width and 0 <= y1 <= y2 <= height
        assert box.score is None or 0 <= box.score <= 1
    for obox in result.obboxes:
        assert 0 <= obox.cx <= width and 0 <= obox.cy <= height
        assert obox.w >= 0 and obox.h >= 0 and -90 <= obox.angle_deg < 90
        assert np.isfinite(obox.corners()).all()
    for polygon in result.polygons:
        assert len(polygon.points) >= 3
        assert all(0 <= x <= width and 0 <= y <= height for x, y in polygon.points)
    if result.mask is not None:
        assert result.mask.shape == (height, width) and result.mask.dtype == bool
        assert result.mask_grid is not None and set(np.unique(result.mask_grid)) <= {0, 1}
    if result.is_none:
        assert not (result.boxes or result.obboxes or result.polygons or result.errors)
    # Nothing tag-like survives into the display text, and every geometry tag in the input
    # became an item or was reported.
    assert not TAG_LIKE.search(result.text)
    kept = (
        len(result.boxes) + len(result.obboxes) + len(result.polygons) + (result.mask is not None)
    )
    assert len(GEOMETRY_OPENER.findall(text)) <= kept + len(result.errors)


# ---------------------------------------------------------------------------------------------
# Grid


def test_grid_rounds_half_up_and_clamps():
    assert to_grid(0.5, 1000) == 1  # half up, not half to even
    assert to_grid(2.5, 1000) == 3
    assert to_grid(640, 640) == 1000
    assert to_grid(-3, 640) == 0 and to_grid(900, 640) == 1000
    assert from_grid(500, 640) == 320.0


@pytest.mark.parametrize("size", [(0, 10), (10, -1), (10,), "ab", (1.5, 2)])
def test_bad_image_size_raises_value_error(size):
    with pytest.raises(ValueError):
        parse("<box>1,2,3,4</box>", size)
    with pytest.raises(ValueError):
        format_box((0, 0, 1, 1), size)


def test_formatter_rejects_misuse():
    with pytest.raises(ValueError):
        format_box((0, 0, 1, 1), (10, 10), score=1.5)
    with pytest.raises(ValueError):
        format_box((0, 0, float("nan"), 1), (10, 10))
    with pytest.raises(ValueError):
        format_polygon([(0, 0), (1, 1)], (10, 10))
    with pytest.raises(ValueError):
        format_obox(5, 5, -1, 2, 0, (10, 10))
    with pytest.raises(ValueError):
        format_objects([{"label": "a<b", "box": (0, 0, 1, 1)}], (10, 10))
    with pytest.raises(ValueError):
        format_objects([{"label": "a", "box": (0, 0, 1, 1), "obox": (1, 1, 1, 1, 0)}], (10, 10))
    with pytest.raises(ValueError):
        format_mask(np.zeros((4, 4), bool), grid=(0, 4))


# ---------------------------------------------------------------------------------------------
# Round trips


@st.composite
def pixel_boxes(draw, size):
    width, height = size
    xs = sorted(draw(st.lists(st.floats(0, width), min_size=2, max_size=2)))
    ys = sorted(draw(st.lists(st.floats(0, height), min_size=2, max_size=2)))
    return (xs[0], ys[0], xs[1], ys[1])


@FAST
@given(data=st.data(), size=image_sizes, label=labels, score=scores)
def test_box_round_trip_within_half_a_cell(data, size, label, score):
    box = data.draw(pixel_boxes(size))
    result = parse(f"<ref>{label}</ref>{format_box(box, size, score)}", size)
    assert result.errors == [] and len(result.boxes) == 1
    parsed = result.boxes[0]
    assert parsed.label == label
    width, height = size
    for got, want, side in zip(parsed.box, box, (width, height, width, height), strict=True):
        assert abs(got - want) <= side / 2000 * (1 + 1e-9)
    if score is None:
        assert parsed.score is None
    else:
        assert abs(parsed.score - score) <= 0.005 + 1e-9


@FAST
@given(data=st.data(), size=image_sizes, label=labels, score=scores)
def test_obox_round_trip_within_half_a_cell(data, size, label, score):
    width, height = size
    longest = max(width, height)
    cx = data.draw(st.floats(0, width))
    cy = data.draw(st.floats(0, height))
    w = data.draw(st.floats(0, longest))
    h = data.draw(st.floats(0, longest))
    angle = data.draw(st.floats(-720, 720))
    text = f"<ref>{label}</ref>{format_obox(cx, cy, w, h, angle, size, score)}"
    result = parse(text, size)
    assert result.errors == [] and len(result.obboxes) == 1
    got = result.obboxes[0]
    assert got.label == label
    assert abs(got.cx - cx) <= width / 2000 * (1 + 1e-9)
    assert abs(got.cy - cy) <= height / 2000 * (1 + 1e-9)
    assert abs(got.w - w) <= longest / 2000 * (1 + 1e-9)
    assert abs(got.h - h) <= longest / 2000 * (1 + 1e-9)
    assert angle_difference(got.angle_deg, angle) <= 0.5 + 1e-9
    assert got.score is None if score is None else abs(got.score - score) <= 0.005 + 1e-9


@FAST
@given(data=st.data(), size=image_sizes, label=labels)
def test_polygon_round_trip_within_half_a_cell(data, size, label):
    width, height = size
    points = data.draw(
        st.lists(st.tuples(st.floats(0, width), st.floats(0, height)), min_size=3, max_size=12)
    )
    result = parse(f"<ref>{label}</ref>{format_polygon(points, size)}", size)
    assert result.errors == [] and len(result.polygons) == 1
    assert result.polygons[0].label == label
    for (gx, gy), (x, y) in zip(result.polygons[0].points, points, strict=True):
        assert abs(gx - x) <= width / 2000 * (1 + 1e-9)
        assert abs(gy - y) <= height / 2000 * (1 + 1e-9)


def upsample(grid: np.ndarray, height: int, width: int) -> np.ndarray:
    """Reference nearest upsampling: cell (r, c) covers rows floor(r*H/R)..floor((r+1)*H/R)."""
    rows, cols = grid.shape
    mask = np.zeros((height, width), bool)
    for r in range(rows):
        for c in range(cols):
            r0, r1 = r * height // rows, (r + 1) * height // rows
            c0, c1 = c * width // cols, (c + 1) * width // cols
            mask[r0:r1, c0:c1] = bool(grid[r, c])
    return mask


def majority(mask: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Reference cell labels: 1 where at least half of a (non-empty) cell is set."""
    height, width = mask.shape
    grid = np.zeros((rows, cols), np.uint8)
    for r in range(rows):
        for c in range(cols):
            cell = mask[
                r * height // rows : (r + 1) * height // rows,
                c * width // cols : (c + 1) * width // cols,
            ]
            grid[r, c] = cell.size > 0 and 2 * cell.sum() >= cell.size
    return grid


@FAST
@given(data=st.data(), rows=st.integers(1, 24), cols=st.integers(1, 24))
def test_mask_round_trip_is_exact_on_the_cell_grid(data, rows, cols):
    height = data.draw(st.integers(rows, 200))
    width = data.draw(st.integers(cols, 200))
    cells = data.draw(st.lists(st.booleans(), min_size=rows * cols, max_size=rows * cols))
    grid = np.array(cells, np.uint8).reshape(rows, cols)
    mask = upsample(grid, height, width)
    result = parse(f"<ref>field</ref>{format_mask(mask, (rows, cols))}", (width, height))
    assert result.errors == []
    np.testing.assert_array_equal(result.mask_grid, grid)
    np.testing.assert_array_equal(result.mask, mask)


@FAST
@given(data=st.data(), rows=st.integers(1, 20), cols=st.integers(1, 20))
def test_mask_of_any_shape_follows_the_majority_rule(data, rows, cols):
    # Grids finer than the image leave empty cells, which must read as 0.
    height, width = data.draw(st.integers(1, 40)), data.draw(st.integers(1, 40))
    bits = data.draw(st.lists(st.booleans(), min_size=height * width, max_size=height * width))
    mask = np.array(bits, bool).reshape(height, width)
    result = parse(format_mask(mask, (rows, cols)), (width, height))
    assert result.errors == []
    expected = majority(mask, rows, cols)
    np.testing.assert_array_equal(result.mask_grid, expected)
    np.testing.assert_array_equal(result.mask, upsample(expected, height, width))


def test_mask_example_from_the_grammar():
    mask = np.zeros((8, 8), bool)
    mask[2:6, 2:6] = True
    assert format_mask(mask, (4, 4)) == "<mask>4x4|0*4;0,1*2,0;0,1*2,0;0*4</mask>"
    assert format_mask(mask).startswith("<mask>16x16|")


object_kinds = st.sampled_from(["box", "obox", "polygon"])


@FAST
@given(data=st.data(), size=small_image_sizes)
def test_format_objects_groups_by_label_in_first_appearance_order(data, size):
    width, height = size
    objects = []
    for _ in range(data.draw(st.integers(0, 8))):
        label = data.draw(st.none() | st.sampled_from(["plane", "ship", "storage tank"]))
        kind = data.draw(object_kinds)
        if kind == "box":
            geometry = data.draw(pixel_boxes(size))
        elif kind == "obox":
            geometry = (
                width / 2,
                height / 2,
                width / 3,
                height / 4,
                data.draw(st.integers(-90, 89)),
            )
        else:
            geometry = [(0, 0), (width, 0), (width / 2, height)]
        objects.append({"label": label, kind: geometry})
    text = format_objects(objects, size)
    result = parse(text, size)
    assert result.errors == []
    if not objects:
        assert text == "none" and result.is_none
        return
    # Unlabelled objects come first, then one <ref> per label in first-appearance order.
    order = [None] + list(dict.fromkeys(o["label"] for o in objects if o["label"] is not None))
    assert text.count("<ref>") == len(order) - 1
    expected = sorted(objects, key=lambda o: order.index(o["label"]))
    for key, found in (
        ("box", result.boxes),
        ("obox", result.obboxes),
        ("polygon", result.polygons),
    ):
        assert [o["label"] for o in expected if key in o] == [item.label for item in found]


# ---------------------------------------------------------------------------------------------
# The parser on hostile text

NASTY = [
    "<box>",
    "</box>",
    "<box>1,2,3",
    "<box>1,2,3,4",
    "<box>a,b,c,d</box>",
    "<box>99999999999999999999999999,1,2,3</box>",
    "<box>" + "9" * 5000 + ",1,2,3</box>",
    "<box>-50,-1,2000,3</box>",
    "<box>1,2,3,4:1e309</box>",
    "<box>1,2,3,4:-0.5</box>",
    "<box><box>1,2,3,4</box></box>",
    "<obox>1,2,3,4,5,6</obox>",
    "<obox>500,500,-100,99999,1000000</obox>",
    "<poly>1,2,3</poly>",
    "<poly>1,2,3,4,5,6,7</poly>",
    "<mask>3x3|1*9</mask>",
    "<mask>99999x99999|0</mask>",
    "<mask>2x2|0*99999999999999999;1,1,1</mask>",
    "<mask>0x4|</mask>",
    "<mask>2x2|2*2;0*0</mask>",
    "<ref>",
    "</ref>",
    "<ref>飛機</ref>",
    "<REF>a</Ref><BOX>1,2,3,4</box>",
    "<<>>",
    "none",
    "\x00",
    "é\u202e",
    "nan",
    "-",
    ";",
    ",",
    "|",
    ":",
]


@st.composite
def mutated_answers(draw):
    size = draw(small_image_sizes)
    width, height = size
    objects = [
        {"label": draw(labels), "box": (0, 0, width / 2, height / 2), "score": 0.5},
        {"label": draw(labels), "obox": (width / 2, height / 2, width / 4, height / 8, 30)},
        {"label": None, "polygon": [(0, 0), (width, 0), (0, height)]},
    ]
    text = (
        f"Found: {format_objects(objects, size)} and {format_mask(np.eye(8, dtype=bool), (4, 4))}."
    )
    for _ in range(draw(st.integers(1, 4))):
        mutation = draw(
            st.sampled_from(["truncate", "insert", "delete", "digits", "duplicate", "case"])
        )
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, len(text)))
        if mutation == "truncate":
            text = text[:i]
        elif mutation == "insert":
            text = text[:i] + draw(st.sampled_from(NASTY) | st.text(max_size=6)) + text[i:]
        elif mutation == "delete":
            text = text[:i] + text[j:]
        elif mutation == "digits":
            number = draw(st.sampled_from(["-7", "1e9", "10" * 20, "0.5", "", "x", "+3"]))
            text = text[:i] + re.sub(r"\d+", number, text[i:j], count=1) + text[j:]
        elif mutation == "duplicate":
            text = text[:j] + text[i:j] + text[j:]
        else:
            text = text[:i] + text[i:j].upper() + text[j:]
    return text, size


@settings(max_examples=400, deadline=None)
@given(text=st.text(), size=small_image_sizes)
def test_parse_never_raises_on_arbitrary_text(text, size):
    check_invariants(parse(text, size), text, size)


@settings(max_examples=400, deadline=None)
@given(case=mutated_answers())
def test_parse_never_raises_on_mutated_answers(case):
    text, size = case
    check_invariants(parse(text, size), text, size)


@settings(max_examples=200, deadline=None)
@given(
    pieces=st.lists(st.sampled_from(NASTY) | st.text(max_size=5), max_size=12),
    size=small_image_sizes,
)
def test_parse_never_raises_on_nasty_fragments(pieces, size):
    text = "".join(pieces)
    check_invariants(parse(text, size), text, size)


def test_truncated_answer_is_reported_not_guessed():
    result = parse("<ref>plane</ref><box>10,20,30,40</box><box>50,60,7", (1000, 1000))
    assert len(result.boxes) == 1
    assert len(result.errors) == 1 and result.errors[0].startswith("dropped")


def test_out_of_range_numbers_are_clamped_and_reported():
    huge = "9" * 5000
    result = parse(f"<box>-50,{huge},2000,3</box>", (100, 200))
    assert result.boxes[0].box == (0.0, 0.6, 100.0, 200.0)
    assert any("clamped" in e for e in result.errors)
    assert any("swapped" in e for e in result.errors)


def test_swapped_corners_are_normalised_with_a_warning():
    result = parse("<box>300,400,100,200:0.9</box>", (1000, 1000))
    assert result.boxes == [Box(None, (100.0, 200.0, 300.0, 400.0), 0.9)]
    assert result.errors == ["repaired <box> #1: swapped corners put in order"]


def test_nested_tags_keep_the_inner_item_and_report_the_rest():
    result = parse("<box><box>1,2,3,4</box></box>", (1000, 1000))
    assert len(result.boxes) == 1 and len(result.errors) == 2


def test_bad_mask_rows_are_padded_and_reported():
    result = parse("<mask>3x4|1*9;0,x,1;1</mask>", (4, 3))
    np.testing.assert_array_equal(result.mask_grid, [[1, 1, 1, 1], [0, 1, 0, 0], [1, 0, 0, 0]])
    assert len(result.errors) == 1 and "rows 0, 1, 2" in result.errors[0]
    missing = parse("<mask>3x2|1*2</mask>", (2, 3))
    np.testing.assert_array_equal(missing.mask, [[True, True], [False, False], [False, False]])
    assert "1 rows for a 3x2 grid" in missing.errors[0]


def test_only_the_first_mask_is_kept():
    result = parse("<mask>1x1|1</mask><mask>1x1|0</mask>", (5, 5))
    assert result.mask.all() and result.errors[0].startswith("dropped <mask> #2")


def test_oversized_mask_grid_is_dropped():
    result = parse("<mask>99999x2|0*2</mask>", (10, 10))
    assert result.mask is None and result.errors[0].startswith("dropped")


def test_obox_angle_and_sides_are_repaired():
    result = parse("<obox>500,500,-100,99999,200</obox>", (1000, 500))
    (obox,) = result.obboxes
    assert (obox.w, obox.h, obox.angle_deg) == (100.0, 1415.0, 20.0)
    assert len(result.errors) == 3


@pytest.mark.parametrize("answer", ["none", "None.", "  NONE  ", "none."])
def test_none_answer_means_nothing_found(answer):
    result = parse(answer, (64, 64))
    assert result.is_none and result.errors == [] and result.boxes == []


@pytest.mark.parametrize("answer", ["none of them", "None, sorry", "nothing"])
def test_other_negative_words_are_not_the_none_answer(answer):
    assert not parse(answer, (64, 64)).is_none


def test_labels_scope_until_the_next_ref_and_text_is_tidied():
    answer = (
        "I see <box>0,0,10,10</box> <ref>two planes</ref><box>1,1,2,2</box><box>3,3,4,4</box> "
        "near  a <ref>runway</ref><poly>0,0,10,0,10,10</poly> .<ref></ref><box>5,5,6,6</box>"
    )
    result = parse(answer, (1000, 1000))
    assert [b.label for b in result.boxes] == [None, "two planes", "two planes", None]
    assert result.polygons[0].label == "runway"
    assert result.text == "I see two planes near a runway."
    assert result.errors == []


def test_tags_are_case_insensitive_and_unicode_labels_survive():
    result = parse("<REF>飛機</Ref><BOX>1,2,3,4</box>", (1000, 1000))
    assert result.boxes == [Box("飛機", (1.0, 2.0, 3.0, 4.0), None)]


def test_parse_rejects_non_string_text():
    with pytest.raises(TypeError):
        parse(None, (10, 10))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# IoU and oriented boxes


@pytest.mark.parametrize(
    ("a", "b", "expected"),
    [
        ((0, 0, 10, 10), (5, 0, 15, 10), 1 / 3),  # no +1 term: 50 / 150
        ((0, 0, 10, 10), (0, 0, 10, 10), 1.0),
        ((0, 0, 10, 10), (10, 0, 20, 10), 0.0),  # touching edges share no area
        ((0, 0, 4, 4), (1, 1, 3, 3), 0.25),
        ((0, 0, 0, 10), (0, 0, 0, 10), 0.0),  # degenerate
        ((5, 5, 5, 5), (0, 0, 10, 10), 0.0),
        ((10, 10, 0, 0), (0, 0, 10, 10), 0.0),  # swapped corners are not a box
        ((0, 0, float("nan"), 1), (0, 0, 1, 1), 0.0),
    ],
)
def test_box_iou_known_values(a, b, expected):
    assert box_iou(a, b) == pytest.approx(expected)
    assert box_iou(b, a) == pytest.approx(expected)


def test_box_iou_accepts_box_objects():
    assert box_iou(Box("a", (0, 0, 10, 10)), Box("b", (5, 0, 15, 10))) == pytest.approx(1 / 3)


def test_obox_iou():
    a = OBox(None, 50, 50, 20, 10, 0)
    assert obox_iou(a, a) == pytest.approx(1.0)
    assert obox_iou(a, OBox(None, 50, 50, 10, 20, 90)) == pytest.approx(1.0)  # same rectangle
    assert obox_iou(a, OBox(None, 60, 50, 20, 10, 0)) == pytest.approx(1 / 3)
    square = OBox(None, 0, 0, 2, 2, 0)
    diamond = OBox(None, 0, 0, 2, 2, 45)
    # The overlap is a regular octagon of area 8(sqrt(2) - 1).
    octagon = 8 * (math.sqrt(2) - 1)
    assert obox_iou(square, diamond) == pytest.approx(octagon / (8 - octagon))
    assert obox_iou(a, OBox(None, 50, 50, 0, 10, 0)) == 0.0


def test_obox_iou_of_nearly_identical_boxes():
    # Plain floating-point overlay finds no intersection at all for this pair.
    a = OBox(None, 134.0, 90.0, 478.9321290243445, 372.54816917519685, -51.23519649021489)
    b = OBox(
        None,
        133.99999999999997,
        90.00000000000001,
        478.9321290243445,
        372.5481691751968,
        -51.23519649021489,
    )
    assert obox_iou(a, b) == pytest.approx(1.0)


def test_positive_angles_turn_counter_clockwise_on_screen():
    # At 90 degrees the width axis points up the screen, i.e. towards smaller y.
    corners = obbox_to_corners(50, 50, 20, 10, 90)
    top_left, top_right = corners[0], corners[1]
    assert top_right[0] == pytest.approx(top_left[0])
    assert top_right[1] < top_left[1]
    np.testing.assert_allclose(
        obbox_to_corners(50, 50, 20, 10, 0), [[40, 45], [60, 45], [60, 55], [40, 55]]
    )


def test_dota_quadrilateral_fits_and_round_trips():
    # A DOTA-style label: four corners clockwise on screen, slightly off a true rectangle.
    quad = np.array([[100, 50], [186.6, 100], [161.6, 143.3], [75, 93.3]])
    cx, cy, w, h, angle = corners_to_obbox(quad)
    assert (w, h) == (pytest.approx(100, abs=0.5), pytest.approx(50, abs=0.5))
    assert angle == pytest.approx(-30, abs=0.5)  # clockwise on screen
    assert (cx, cy) == (pytest.approx(130.8, abs=0.5), pytest.approx(96.65, abs=0.5))
    fitted = OBox(None, cx, cy, w, h, angle)
    drawn = shapely.Polygon(quad)
    assert drawn.intersection(shapely.Polygon(fitted.corners())).area / drawn.area > 0.99
    # corners -> fit -> corners gives the same rectangle back
    exact = obbox_to_corners(300, 200, 80, 30, 25)
    np.testing.assert_allclose(corners_to_obbox(exact), (300, 200, 80, 30, 25), atol=1e-6)
    np.testing.assert_allclose(corners_to_obbox(exact.ravel()), (300, 200, 80, 30, 25), atol=1e-6)
    # and through the grammar
    size = (1024, 768)
    result = parse(format_obox(*corners_to_obbox(quad), size), size)
    assert obox_iou(result.obboxes[0], fitted) > 0.97


@FAST
@given(
    cx=st.floats(-1000, 1000),
    cy=st.floats(-1000, 1000),
    w=st.floats(1, 500),
    h=st.floats(1, 500),
    angle=st.floats(-360, 360),
)
def test_corner_fit_inverts_corners(cx, cy, w, h, angle):
    fit = corners_to_obbox(obbox_to_corners(cx, cy, w, h, angle))
    assert fit[2] >= fit[3] and -90 <= fit[4] < 90
    assert obox_iou(OBox(None, *fit), OBox(None, cx, cy, w, h, angle)) == pytest.approx(
        1.0, abs=1e-6
    )


def test_corner_fit_of_degenerate_points():
    assert corners_to_obbox([[1, 1], [1, 1], [1, 1], [1, 1]]) == (1.0, 1.0, 0.0, 0.0, 0.0)
    cx, cy, w, h, angle = corners_to_obbox([[0, 0], [10, 0], [5, 0], [0, 0]])
    assert (cx, cy, w, h, angle) == pytest.approx((5, 0, 10, 0, 0))
    with pytest.raises(ValueError):
        corners_to_obbox([1, 2, 3])


# ---------------------------------------------------------------------------------------------
# Converters


def test_geochat_grid_is_per_axis_on_a_non_square_image():
    size = (1000, 500)
    ours = from_geochat("<p>planes</p> {<10><20><30><40>|0}{<50><50><60><70>|45}", size)
    assert ours == "<ref>planes</ref> <box>100,200,300,400</box><obox>550,600,100,100,45</obox>"
    result = parse(ours, size)
    assert result.boxes == [Box("planes", (100.0, 100.0, 300.0, 200.0), None)]
    (obox,) = result.obboxes
    # 10 % of the width by 20 % of the height is 100 x 100 pixels here
    assert (obox.cx, obox.cy, obox.w, obox.h, obox.angle_deg) == (550.0, 300.0, 100.0, 100.0, 45.0)


def test_geochat_boxes_after_words_lose_the_phrase():
    ours = from_geochat("A <p>ship</p> {<1><2><3><4>|0} and then {<5><6><7><8>|0}", (100, 100))
    assert (
        ours
        == "A <ref>ship</ref> <box>10,20,30,40</box> and then <ref></ref><box>50,60,70,80</box>"
    )
    assert [b.label for b in parse(ours, (100, 100)).boxes] == ["ship", None]


def test_geochat_referring_answer_and_garbage():
    assert from_geochat("{<0><0><100><100>}", (64, 32)) == "<box>0,0,1000,1000</box>"
    assert from_geochat("{<a><b>|x} nothing here", (64, 64)) == "{<a><b>|x} nothing here"
    assert from_geochat("", (64, 64)) == "none"


def test_qwen_special_tokens_and_older_spelling():
    size = (640, 480)
    qwen2 = (
        "<|object_ref_start|>the car<|object_ref_end|><|box_start|>(100,200),(300,400)<|box_end|>"
    )
    assert from_qwen(qwen2, size) == "<ref>the car</ref><box>100,200,300,400</box>"
    qwen1 = "Here: <ref>car</ref><box>(100,200),(300,400)</box>"
    assert from_qwen(qwen1, size) == "Here: <ref>car</ref><box>100,200,300,400</box>"
    boxes = parse(from_qwen(qwen2, size), size).boxes
    assert boxes[0].box == pytest.approx((64.0, 96.0, 192.0, 192.0))
    assert from_qwen("<|box_start|>(1,2)<|box_end|> left", size) == "left"


def test_florence_location_bins():
    size = (1000, 500)
    ours = from_florence(
        "</s>car<loc_100><loc_200><loc_300><loc_400>car<loc_0><loc_0><loc_9><loc_9>", size
    )
    # bin centres: (N + 0.5) / 1000 of the side
    assert ours == "<ref>car</ref><box>101,201,301,401</box><box>1,1,10,10</box>"
    quad = "sign<loc_0><loc_0><loc_99><loc_0><loc_99><loc_49><loc_0><loc_49>"
    (obox,) = parse(from_florence(quad, size), size).obboxes
    assert (obox.label, obox.w, obox.h, obox.angle_deg) == ("sign", 99.0, 25.0, 0.0)
    polygon = "lake<loc_0><loc_0><loc_500><loc_0><loc_500><loc_500>"
    assert parse(from_florence(polygon, size), size).polygons[0].label == "lake"
    assert from_florence("odd<loc_1><loc_2><loc_3>", size) == "none"
    assert from_florence("no locations at all", size) == "none"


def test_plain_lists_in_each_unit():
    size = (1000, 500)
    assert from_plain_list("[100, 50, 300, 250]", size) == "<box>100,100,300,500</box>"
    assert (
        from_plain_list("[0.1, 0.1, 0.3, 0.5]", size, units="normalized")
        == "<box>100,100,300,500</box>"
    )
    assert (
        from_plain_list("[100, 100, 300, 500]", size, units="grid1000")
        == "<box>100,100,300,500</box>"
    )
    labelled = from_plain_list("plane: [0, 0, 10, 10], [20, 20, 30, 30] and [1,1,2,2]", size)
    assert [b.label for b in parse(labelled, size).boxes] == ["plane", "plane", None]
    with pytest.raises(ValueError):
        from_plain_list("[1, 2, 3, 4]", size, units="inches")


def test_plain_json_as_qwen25_writes_it():
    answer = '```json\n[{"bbox_2d": [10, 20, 30, 40], "label": "car"}, {"bbox_2d": [1, 2]}]\n```'
    assert from_plain_list(answer, (100, 100)) == "<ref>car</ref><box>100,200,300,400</box>"
    assert from_plain_list("[]", (100, 100)) == "none"


def test_convert_dispatches_by_name():
    assert convert("{<10><10><20><20>|0}", (100, 100), "GeoChat") == "<box>100,100,200,200</box>"
    assert convert("[0.1, 0.1, 0.2, 0.2]", (100, 100), "plain", units="normalized") == (
        "<box>100,100,200,200</box>"
    )
    with pytest.raises(ValueError):
        convert("x", (100, 100), "llava")


CONVERTER_TOKENS = [
    "<p>",
    "</p>",
    "{<1><2><3><4>|",
    "}",
    "<|box_start|>",
    "<|box_end|>",
    "(1,2),(3,",
    "<loc_5>",
    "<loc_99999999>",
    "[1, 2, 3, ",
    "]",
    "9" * 400,
    "-",
    '{"bbox": [1,2,3,4]}',
    "[" * 2000,
]


@settings(max_examples=150, deadline=None)
@given(
    pieces=st.lists(st.sampled_from(CONVERTER_TOKENS) | st.text(max_size=5), max_size=10),
    source=st.sampled_from(["geochat", "qwen", "florence", "plain"]),
)
def test_converters_never_raise_on_garbage(pieces, source):
    size = (123, 45)
    ours = convert("".join(pieces), size, source)
    assert isinstance(ours, str) and ours
    check_invariants(parse(ours, size), ours, size)


def test_converters_are_reexported_from_formats():
    assert formats.from_geochat is from_geochat
    with pytest.raises(AttributeError):
        formats.no_such_name  # noqa: B018


# ---------------------------------------------------------------------------------------------
# The document


def test_every_answer_example_in_the_docs_parses_cleanly():
    blocks = re.findall(r"```answer\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.DOTALL)
    assert len(blocks) >= 5
    for block in blocks:
        result = parse(block, (1000, 1000))
        assert result.errors == [], (block, result.errors)
