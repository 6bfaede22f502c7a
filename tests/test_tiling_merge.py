"""The tile grid, tile choice and the merges (boxes across tile borders, masks, numbers) in isolation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import box

from geoassist.large.merge import _Piece, merge_geometries, merge_text, mosaic_masks
from geoassist.large.plan import plan_tiles, score_tiles, select_tiles
from geoassist.request import AskRequest


@settings(max_examples=40, deadline=None)
@given(
    st.integers(1, 3000),
    st.integers(1, 3000),
    st.integers(16, 512),
    st.floats(0, 0.45),
)
def test_grid_covers_overlaps_and_cores_partition(width, height, tile_px, overlap_frac):
    overlap = int(tile_px * overlap_frac)
    grid = plan_tiles(width, height, tile_px, overlap)
    assert len(grid.tiles) == grid.n_cols * grid.n_rows
    core_area = 0
    for t in grid.tiles:
        c, r, w, h = t.window
        assert 0 <= c and 0 <= r and c + w <= width and r + h <= height
        assert w == min(tile_px, width) and h == min(tile_px, height)  # never a sliver
        x0, y0, x1, y1 = t.core
        assert c <= x0 < x1 <= c + w and r <= y0 < y1 <= r + h
        core_area += (x1 - x0) * (y1 - y0)
    assert core_area == width * height  # cores partition the scene…
    row0 = [t for t in grid.tiles if t.row == 0]
    for a, b in zip(row0, row0[1:], strict=False):
        assert a.bounds[2] - b.bounds[0] >= overlap  # …and neighbours overlap enough
        assert a.core[2] == b.core[0]
    rng = np.random.default_rng(width * 7 + height)
    for x, y in rng.uniform(0, 1, (20, 2)) * (width, height):
        t = grid.tiles[grid.owner(x, y)]
        assert t.core[0] <= x <= t.core[2] and t.core[1] <= y <= t.core[3]


def test_grid_examples():
    grid = plan_tiles(1000, 256, 256, 32)
    assert [t.window[0] for t in grid.tiles] == [0, 186, 372, 558, 744]
    assert grid.n_rows == 1 and grid.tiles[0].core == (0, 0, 221, 256)
    assert len(plan_tiles(40_000, 40_000, 256, 32).tiles) == 179 * 179
    with pytest.raises(Exception, match="smaller than the tile"):
        plan_tiles(100, 100, 32, 32)


def _piece(x1, y1, x2, y2, tile, cut=False, label="car"):
    return _Piece("box", box(x1, y1, x2, y2), label, None, tile, cut)


def test_object_seen_whole_and_cut_counts_once():
    # Tile 0 sees the car whole in the overlap; tile 1 sees only its right part, cut at its edge.
    merged = merge_geometries([_piece(100, 10, 120, 20, 0), _piece(108, 10, 120, 20, 1, cut=True)])
    assert len(merged) == 1 and merged[0].shape.bounds == (100, 10, 120, 20)
    assert merged[0].tiles == {0, 1}


def test_object_larger_than_the_overlap_is_joined_from_its_pieces():
    # Tile 0 ends at x=130, tile 1 starts at x=110: a 40 px object spans both cuts.
    merged = merge_geometries(
        [_piece(95, 5, 130, 25, 0, cut=True), _piece(110, 5, 135, 25, 1, cut=True)]
    )
    assert len(merged) == 1 and merged[0].shape.bounds == (95, 5, 135, 25)


def test_neighbours_in_one_tile_and_other_labels_stay_apart():
    pieces = [
        _piece(0, 0, 10, 10, 0),
        _piece(9, 0, 19, 10, 0),  # touching neighbour, same tile: the model told them apart
        _piece(0, 0, 10, 10, 1, label="truck"),  # another label at the same place
        _piece(0.5, 0, 10, 10, 2),  # the first car again, seen by tile 2
        _piece(50, 50, 60, 60, 1),
    ]
    merged = merge_geometries(pieces)
    assert sorted((p.label, p.shape.bounds[0]) for p in merged) == [
        ("car", 0.0),
        ("car", 9.0),
        ("car", 50.0),
        ("truck", 0.0),
    ]


def test_four_tiles_at_a_corner_give_one_object():
    pieces = [_piece(200 + d, 200, 210 + d, 210, t) for t, d in enumerate((0, 0.3, -0.2, 0.1))]
    assert len(merge_geometries(pieces)) == 1


def test_mask_mosaic_uses_each_tile_core():
    truth = np.zeros((300, 400), bool)
    truth[50:120, 30:380] = True
    truth[200:290, 150:160] = True
    grid = plan_tiles(400, 300, 128, 32)
    # Each tile reports its window of the truth at half resolution, and is wrong outside its core
    # where it sees a spurious blob in its overlap (which the neighbour's core overrides).
    tile_masks = {}
    for t in grid.tiles:
        c, r, w, h = t.window
        m = truth[r : r + h, c : c + w][::2, ::2].copy()
        tile_masks[t.index] = m
    out = mosaic_masks(grid, tile_masks, (300, 400))
    assert (out == truth).mean() > 0.995
    half = mosaic_masks(grid, tile_masks, (150, 200))
    assert (half == truth[::2, ::2]).mean() > 0.99
    # Unread tiles keep the base (e.g. the overview's mask).
    base = np.ones((30, 40), bool)
    partial = mosaic_masks(grid, {0: tile_masks[0]}, (300, 400), base)
    x0, y0, x1, y1 = grid.tiles[0].core
    assert (partial[y0:y1, x0:x1] == truth[y0:y1, x0:x1]).all() and partial[y1:, x1:].all()


def test_numbers_are_summed_by_owned_share_and_presence_is_any():
    grid = plan_tiles(200, 100, 100, 20)  # 3 tiles across
    shares = [(t.core[2] - t.core[0]) / 100 for t in grid.tiles]
    texts = {0: "10", 1: "4", 2: "6"}
    text, how = merge_text("vqa", "How many cars are there?", "3", texts, grid)
    assert how == "sum_over_tiles" and text == str(
        round(10 * shares[0] + 4 * shares[1] + 6 * shares[2])
    )
    assert merge_text("vqa", "Is there a ship?", "no", {0: "no", 1: "yes", 2: "no"}, grid) == (
        "yes",
        "any_tile",
    )
    assert merge_text("vqa", "Are there more ships than cars?", "no", {0: "yes"}, grid)[0] == "no"
    assert merge_text("vqa", "What is the main land cover?", "forest", {0: "water"}, grid) == (
        "forest",
        "overview",
    )
    assert (
        merge_text("vqa", "What is the area of the buildings?", "0", {0: "20.5", 2: "10"}, grid)[0]
        == f"{20.5 * shares[0] + 10 * shares[2]:.1f}"
    )


def test_tile_choice_prefers_detail_and_relevance_and_skips_nodata():
    grid = plan_tiles(400, 100, 100, 0)  # 4 tiles in a row
    valid = np.ones((10, 40), bool)
    valid[:, :10] = False  # tile 0 is nodata
    detail = np.zeros((10, 40))
    detail[:, 10:20] = 5  # tile 1 is busy
    scores, frac = score_tiles(grid, valid, detail)
    assert frac[0] == 0 and scores[0] == 0
    assert select_tiles(scores, frac, 1) == [1]
    relevance = np.zeros((4, 16))
    relevance[:, 12:16] = 1  # the question is about tile 3
    scores, frac = score_tiles(grid, valid, detail, relevance)
    assert select_tiles(scores, frac, 2) == [1, 3]
    assert select_tiles(scores, frac, 10) == [1, 2, 3]  # all tiles with data fit the budget


def test_a_piece_joins_its_best_match_not_the_first():
    # Tile 0 told two overlapping cars apart (X, and the larger Y). Tile 1 sees both again,
    # each a little shifted and near its edge. X's second view overlaps Y by half of X, but
    # X itself far more: it must join X, or Y's second view is left over and counted twice.
    x, y = _piece(0, 0, 10, 10, 0), _piece(7, 0, 18, 10, 0)
    x1, y1 = _piece(2, 0, 12, 10, 1, cut=True), _piece(8, 0, 17, 10, 1, cut=True)
    merged = merge_geometries([x, y, x1, y1])
    assert len(merged) == 2
    assert sorted(p.tiles == {0, 1} for p in merged) == [True, True]


def test_an_object_centred_on_the_cut_between_two_tiles_counts_once():
    from geoassist.assistant import Answer
    from geoassist.large.merge import _tile_geometry

    grid = plan_tiles(200, 100, 100, 20)  # tiles at x = 0, 50, 100; cores cut at x = 75 and 125
    assert grid.tiles[0].core[2] == grid.tiles[1].core[0] == 75
    # One 12-px car centred on the cut; each tile's box is 2 px off, on opposite sides, so
    # each view's centre lies in its own tile's core and the two boxes' IoU is below 0.5.
    views = {0: [67, 38, 79, 50], 1: [71, 42, 83, 54]}  # in scene pixels
    pieces = []
    for index, (x1, y1, x2, y2) in views.items():
        col = grid.tiles[index].window[0]
        answer = Answer(text="", boxes=[{"label": "car", "box": [x1 - col, y1, x2 - col, y2]}])
        pieces += _tile_geometry(answer, grid.tiles[index], grid, (100, 100))
    assert all(not p.cut for p in pieces)
    assert len(merge_geometries(pieces)) == 1
    # Far from the cut, a tile's own objects stay its own to judge.
    answer = Answer(text="", boxes=[{"label": "car", "box": [30, 40, 42, 52]}])
    assert not _tile_geometry(answer, grid.tiles[0], grid, (100, 100))[0].foreign


@pytest.mark.parametrize(
    ("prompt", "target"),
    [
        ("How many cars are there?", "cars"),
        ("how many small vehicles can be seen?", "small vehicles"),
        ("What is the number of ships in this image?", "ships"),
        ("Number of buildings?", "buildings"),
        ("Count the storage tanks.", "storage tanks"),
        ("How many more cars than trucks are there?", None),
        ("What is the number of cars compared to trucks?", None),
        ("What is the total area?", None),
        ("Is there a ship?", None),
    ],
)
def test_count_questions_are_recognised(prompt, target):
    from geoassist.large.merge import _count_target

    assert _count_target(prompt) == target


# ------------------------------------------------------- repeats and one best match


def test_a_piece_at_the_same_place_of_every_tile_is_kept_once():
    from geoassist.large.merge import drop_repeats

    grid = plan_tiles(256, 256, 64, 0)  # 4 × 4 tiles
    same = [
        _piece(t.window[0] + 8, t.window[1] + 8, t.window[0] + 20, t.window[1] + 20, t.index)
        for t in grid.tiles
    ]
    real = [_piece(3, 40, 9, 50, 0), _piece(70, 5, 80, 12, 1), _piece(150, 150, 160, 170, 10)]
    kept, dropped = drop_repeats(same + real, grid, len(grid.tiles), rank={5: 0})
    assert dropped == 15 and len(kept) == 1 + len(real)
    assert [p.tile for p in kept if p in same] == [5]  # the best-ranked tile's copy
    # Real objects at different places of their tiles, and one repeat in 2 of 16 tiles, stay.
    two = [_piece(8, 8, 20, 20, 0), _piece(72, 8, 84, 20, 1)]
    kept, dropped = drop_repeats(two + real, grid, len(grid.tiles))
    assert dropped == 0 and len(kept) == 5
    # With two tiles answered, the same answer in both is a repeat too; the overview is not.
    overview = _Piece("box", box(8, 8, 20, 20), "car", None, None, False)
    kept, dropped = drop_repeats([*two, overview], grid, 2)
    assert dropped == 1 and overview in kept


def test_one_best_match_by_score_then_by_log_probability():
    from geoassist.large.merge import best_single

    a, b, c = _piece(0, 0, 10, 10, 0), _piece(50, 50, 90, 90, 1), _piece(20, 20, 30, 30, None)
    assert best_single([a, b, c], {0: -3.0, 1: -9.0, None: -5.0}) == [a]
    assert best_single([a, b, c], {0: -3.0, 1: -1.0, None: -5.0}) == [b]
    b.score = 0.2
    assert best_single([a, b, c], {0: -1.0}) == [b]  # an instance score wins over log-probs
    assert best_single([a]) == [a] and best_single([]) == []


@pytest.fixture
def constant_model(make_tiny, monkeypatch):
    """A tiny model whose answer never depends on the image: one unlabelled box, always at the
    same place of its input; with an earlier answer in the prompt it repeats that instead."""
    import torch

    from geoassist import formats

    model = make_tiny(seed=0)
    prompts: list[str] = []

    def steps(input_ids, attention_mask=None, pixel_values=None, **kwargs):
        rows = []
        for i in range(input_ids.shape[0]):
            prompt = model.tokenizer.decode(input_ids[i][attention_mask[i].bool()].tolist())
            prompts.append(prompt)
            if "EARLIER-BOX" in prompt:
                text = formats.format_box((0, 0, 4, 4), (32, 32))
            else:
                text = formats.format_box(model.box, (32, 32))
            rows.append(model.tokenizer(text, add_special_tokens=False).input_ids)
            rows[-1].append(model.end_token_id)
        for step in range(max(len(r) for r in rows)):
            yield torch.tensor([r[step] if step < len(r) else model.pad_token_id for r in rows])

    monkeypatch.setattr(model, "generate_steps", steps)
    model.prompts, model.box = prompts, (8, 8, 20, 20)
    return model


TILED = {"tile_px": 64, "overlap": 0.25, "min_side_px": 128}


def _noise(tmp_path, side=320):
    from PIL import Image

    rng = np.random.default_rng(1)
    path = tmp_path / "scene.png"
    Image.fromarray(rng.integers(0, 255, (side, side, 3), dtype=np.uint8)).save(path)
    return path


def test_an_answer_the_same_in_every_tile_gives_one_box_named_as_asked(constant_model, tmp_path):
    from geoassist.assistant import Assistant

    assistant = Assistant(constant_model)
    seen = []
    answer = assistant.ask(
        _noise(tmp_path), "buildings", task="detect", tiling=TILED, max_tiles=500,
        progress=lambda done, total: seen.append((done, total)),
    )  # fmt: skip
    tiles = answer.coverage["tiles_read"]
    assert tiles >= 16 and answer.coverage["mode"] == "tiled"
    assert len(answer.boxes) == 1, [b["box"] for b in answer.boxes]
    assert answer.boxes[0]["label"] == "buildings" and answer.text == "buildings: 1"
    assert any("same answer" in note for note in answer.notes)
    assert seen[0][0] > 0 and seen[-1] == (tiles, tiles)
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_one_thing_asked_gives_at_most_one_match_by_log_probability(
    constant_model, tmp_path, monkeypatch
):
    from geoassist.assistant import Assistant

    assistant = Assistant(constant_model)
    scored = []

    def logprobs(requests, answers):
        scored.append(len(requests))
        return [float(i) for i in range(len(requests))]  # the last candidate is the likeliest

    monkeypatch.setattr(assistant, "sequence_logprobs", logprobs)
    # Two tiles read: their (repeated) match and the overview's elsewhere are the candidates.
    constant_model.box = (1, 1, 5, 5)
    answer = assistant.ask(
        _noise(tmp_path), "the river mouth", task="refer", tiling=TILED, max_tiles=2
    )
    assert len(answer.boxes) == 1 and answer.boxes[0]["label"] == "the river mouth"
    assert scored and scored[0] >= 2  # the overview's match against the tile's
    # The real log-probabilities are finite and one per answer.
    real = Assistant(constant_model)
    request = AskRequest.build(_noise(tmp_path, 32), "x", task="refer", tiling=False)
    first = real.answer(request)
    values = real.sequence_logprobs([request, request], [first, first])
    assert len(values) == 2 and values[0] == values[1] and np.isfinite(values[0]) and values[0] < 0


def test_a_follow_up_does_not_repeat_the_earlier_turns_box(constant_model, tmp_path):
    from geoassist.assistant import Assistant

    assistant = Assistant(constant_model)
    history = [
        {"role": "user", "content": "<image>\n[detect] cars"},
        {"role": "assistant", "content": "EARLIER-BOX"},
    ]
    answer = assistant.ask(
        _noise(tmp_path), "cars", task="detect", tiling=TILED, max_tiles=500, history=history
    )
    assert len(answer.boxes) == 1 and answer.boxes[0]["box"][0] > 4  # not the copied (0, 0, 4, 4)
    assert answer.history[:2] == history and answer.history[-1]["content"] == "cars: 1"
