"""The recipe machinery: accounting, determinism, workers, atomic output, reading back, geometry helpers."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_recipes_vqa import make_rsvqa

from geoassist.data_recipes import (
    RecipeError,
    build,
    get_recipe,
    list_recipes,
    load_records,
    read_manifest,
    read_records,
)
from geoassist.data_recipes.geometry import (
    box_to_caption,
    label_name,
    mask_to_boxes,
    plural,
    text_mask,
)
from geoassist.data_recipes.schema import TASKS
from geoassist.formats import parse
from geoassist.rle import mask_to_rle, rle_to_mask


def test_list_recipes_describe_themselves():
    infos = list_recipes()
    names = [i.name for i in infos]
    assert names == sorted(names) and len(set(names)) == len(names)
    for info in infos:
        assert info.tasks and set(info.tasks) <= set(TASKS), info.name
        assert info.licence and info.citation and info.layout, info.name
        doc = type(get_recipe(info.name)).__doc__ or ""
        assert len(doc) > 80, (
            f"{info.name} needs a docstring saying what its layout was checked against"
        )


def test_same_input_gives_byte_identical_output_with_any_worker_count(tmp_path):
    make_rsvqa(tmp_path / "src", "hr")
    first = build("rsvqa_hr", tmp_path / "src", tmp_path / "a")
    again = build("rsvqa_hr", tmp_path / "src", tmp_path / "b")
    parallel = build("rsvqa_hr", tmp_path / "src", tmp_path / "c", workers=2)
    assert first["sha256"] == again["sha256"] == parallel["sha256"]
    for name in ("manifest.json", "rejected.jsonl", *(s["path"] for s in first["shards"])):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "c" / name).read_bytes(), name


def test_shards_roll_over_and_read_back_in_order(tmp_path):
    make_rsvqa(tmp_path / "src", "lr")
    manifest = build("rsvqa_lr", tmp_path / "src", tmp_path / "out", shard_rows=5)
    val = [s for s in manifest["shards"] if s["split"] == "val"]
    assert len(val) == 3 and all(s["rows"] <= 5 for s in val)
    assert sum(s["rows"] for s in manifest["shards"]) == manifest["written"]
    ids = [r["id"] for r in read_records(tmp_path / "out", split="val")]
    assert len(ids) == manifest["by_split"]["val"] and len(set(ids)) == len(ids)
    counting = list(read_records(tmp_path / "out", task="counting"))
    assert counting and all(
        r["task"] == "counting" and r["targets"]["count"] >= 1 for r in counting
    )


def test_failed_build_leaves_no_output_and_keeps_the_old_one(tmp_path, monkeypatch):
    make_rsvqa(tmp_path / "src", "hr")
    build("rsvqa_hr", tmp_path / "src", tmp_path / "out")
    before = read_manifest(tmp_path / "out")["sha256"]
    recipe = get_recipe("rsvqa_hr")
    original = type(recipe).convert
    calls = {"n": 0}

    def flaky(self, item, ctx):
        calls["n"] += 1
        if calls["n"] == 20:
            raise KeyboardInterrupt  # an interruption half-way
        return original(self, item, ctx)

    monkeypatch.setattr(type(recipe), "convert", flaky)
    with pytest.raises(KeyboardInterrupt):
        build("rsvqa_hr", tmp_path / "src", tmp_path / "out")
    assert read_manifest(tmp_path / "out")["sha256"] == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "out",
        "src",
    ]  # no temporary folder left behind
    calls["n"] = 0
    with pytest.raises(KeyboardInterrupt):
        build("rsvqa_hr", tmp_path / "src", tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_refuses_to_replace_a_folder_that_is_not_an_output(tmp_path):
    make_rsvqa(tmp_path / "src", "hr")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(RecipeError, match="not a recipe output"):
        build("rsvqa_hr", tmp_path / "src", tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"
    with pytest.raises(RecipeError, match="not a finished recipe output"):
        list(read_records(tmp_path / "mine"))


def test_unknown_recipe_and_missing_source_say_what_to_do(tmp_path):
    with pytest.raises(RecipeError, match="geoassist data list"):
        build("rsvqa_xl", tmp_path, tmp_path / "out")
    with pytest.raises(RecipeError, match="RSVQA"):
        build("rsvqa_hr", tmp_path, tmp_path / "out")


def test_load_records_reads_outputs_and_raw_folders(tmp_path):
    make_rsvqa(tmp_path / "src", "lr")
    build("rsvqa_lr", tmp_path / "src", tmp_path / "out")
    built, root = load_records(tmp_path / "out", split="test")
    raw, raw_root = load_records(tmp_path / "src", recipe="rsvqa_lr", split="test")
    assert built == raw and root == raw_root == (tmp_path / "src").resolve()
    detected, _ = load_records(tmp_path / "src")
    assert len(detected) == read_manifest(tmp_path / "out")["written"]


# --------------------------------------------------------------------------- geometry helpers


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 12), st.integers(1, 12), st.randoms(use_true_random=False))
def test_rle_round_trip(h, w, rnd):
    mask = np.array([[rnd.random() < 0.4 for _ in range(w)] for _ in range(h)])
    assert np.array_equal(rle_to_mask(mask_to_rle(mask)), mask)


def test_rle_compressed_string_matches_pycocotools():
    mask_utils = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(0)
    for _ in range(5):
        mask = rng.random((23, 17)) < 0.3
        mask[5:15, 3:12] = True
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        decoded = rle_to_mask({"size": rle["size"], "counts": rle["counts"].decode()})
        assert np.array_equal(decoded, mask)


def test_mask_to_boxes_finds_connected_components():
    mask = np.zeros((20, 30), bool)
    mask[2:5, 3:8] = True
    mask[10:18, 20:29] = True
    mask[19, 0] = True
    boxes = mask_to_boxes(mask, min_area=2)
    assert [b["box"] for b in boxes] == [[3.0, 2.0, 8.0, 5.0], [20.0, 10.0, 29.0, 18.0]]
    assert [b["area"] for b in boxes] == [15, 72]
    assert len(mask_to_boxes(mask)) == 3


def test_box_to_caption_counts_and_places():
    objects = [
        {"label": "ship", "box": [0, 0, 10, 10]},
        {"label": "ship", "box": [5, 5, 20, 20]},
        {"label": "harbor", "box": [250, 250, 290, 290]},
    ]
    assert (
        box_to_caption(objects, (300, 300))
        == "There are two ships in the top left. There is one harbor in the bottom right."
    )
    assert box_to_caption([], (10, 10)) == "There are no annotated objects in the image."


def test_label_words_and_plurals():
    assert label_name("small-vehicle") == "small vehicle"
    assert label_name("Ground_Track_Field") == "ground track field"
    assert label_name("AnnualCrop") == "annual crop"
    assert (
        plural("storage tank") == "storage tanks"
        and plural("harbor") == "harbors"
        and plural("baseball field") == "baseball fields"
    )


def test_text_mask_picks_a_grid_that_keeps_the_shape():
    mask = np.zeros((256, 256), bool)
    mask[100:110, 100:120] = True  # too small for a 16x16 grid
    answer, side, iou = text_mask(mask)
    assert side > 16 and iou >= 0.5
    parsed = parse(answer, (256, 256))
    assert parsed.mask is not None and parsed.mask[105, 110] and not parsed.errors
    assert text_mask(np.zeros((8, 8), bool))[0] == "none"


def test_records_render_with_the_prompt_templates(tmp_path):
    make_rsvqa(tmp_path / "src", "hr")
    build("rsvqa_hr", tmp_path / "src", tmp_path / "out")
    record = next(read_records(tmp_path / "out"))
    from geoassist.chat import with_image_slots
    from geoassist.prompts import build_prompt

    assert record["conversations"][0]["content"] == with_image_slots(
        build_prompt("vqa", record["conversations"][0]["content"].split("[vqa] ")[1]), 1
    )
    assert json.loads(json.dumps(record)) == record


class _ManyRecords:
    """A test-only recipe: ``n`` tiny VQA records about one image, to measure the builder itself."""

    def __init__(self, n: int):
        from geoassist.data_recipes.core import Recipe, RecipeInfo, make_record

        class Many(Recipe):
            """Test-only recipe writing many tiny records about one image, to measure the builder's memory use."""

            info = RecipeInfo(
                name="test_many",
                title="many",
                tasks=("vqa",),
                licence="-",
                citation="-",
                layout="-",
                splits=("train",),
            )

            def items(self, src, splits, options):
                for i in range(n):
                    yield {"i": i}

            def convert(self, item, ctx):
                return [
                    make_record(
                        source="test_many",
                        oid=str(item["i"]),
                        split="train",
                        task="vqa",
                        images=["a.png"],
                        argument=f"Question {item['i']}?",
                        answer="yes",
                    )
                ]

        self.cls = Many

    def __enter__(self):
        from geoassist.data_recipes import core

        core.all_recipes()
        core._REGISTRY["test_many"] = self.cls()
        return self

    def __exit__(self, *exc):
        from geoassist.data_recipes import core

        core._REGISTRY.pop("test_many", None)


@pytest.mark.slow
def test_a_100k_record_build_streams_in_bounded_memory(tmp_path):
    import tracemalloc

    with _ManyRecords(100_000):
        tracemalloc.start()
        manifest = build("test_many", tmp_path, tmp_path / "out", shard_rows=25_000)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert manifest["written"] == 100_000 and len(manifest["shards"]) == 4
    # one row group (1,000 rows) in flight plus the set of ids: far below the records' size
    assert peak < 40 * 2**20, f"peak traced memory {peak / 2**20:.1f} MiB"
    assert sum(1 for _ in read_records(tmp_path / "out")) == 100_000
