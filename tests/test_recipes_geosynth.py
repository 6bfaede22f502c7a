"""The GeoSynth recipe: every task from the generator, exact targets, byte-identical output."""

from __future__ import annotations

import numpy as np
import pytest

from geoassist.data_recipes import (
    build,
    image_root,
    load_records,
    load_target_mask,
    read_records,
    resolve_image,
)
from geoassist.data_recipes.geometry import mask_iou
from geoassist.data_recipes.schema import TASKS
from geoassist.formats import parse


@pytest.fixture(scope="module")
def geosynth_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("gs") / "out"
    spec = out.parent / "spec.yaml"
    spec.write_text(
        "seed: 3\nsize: 192\nms_size: 32\nsplits: {train: 6, test: 2}\nkinds: [hr, pair, ms]\n"
    )
    return spec, out, build("geosynth", spec, out)


def test_geosynth_covers_the_tasks_with_readable_images(geosynth_out):
    spec, out, manifest = geosynth_out
    assert manifest["rejected"] == {} and manifest["image_root"] == "."
    assert set(manifest["by_split"]) == {"train", "test"}
    expected = {
        "caption",
        "vqa",
        "counting",
        "scene_cls",
        "detection",
        "grounding",
        "referring",
        "region_caption",
        "refer_seg",
        "change_caption",
        "change_qa",
        "change_seg",
    }
    assert expected <= set(manifest["by_task"]) <= set(TASKS)
    root = image_root(out)
    assert root == out.resolve()
    from geoassist.io import read_header

    for record in read_records(out):
        for i in range(len(record["images"])):
            info = read_header(resolve_image(record, root, i))
            assert info.size == (record["meta"]["width"], record["meta"]["height"])
        if record["meta"]["kind"] == "ms":
            assert info.count == 13


def test_geosynth_targets_match_answers(geosynth_out):
    _, out, _ = geosynth_out
    root = image_root(out)
    for record in read_records(out):
        size = (record["meta"]["width"], record["meta"]["height"])
        if record["task"] in ("refer_seg", "change_seg") or record.get("qtype") == "change_where":
            mask = load_target_mask(record, root)
            if record["answer"] == "none":
                assert not mask.any()
            elif record["task"] in ("refer_seg", "change_seg"):
                assert mask_iou(parse(record["answer"], size).mask, mask) == pytest.approx(
                    record["meta"]["mask_text_iou"], abs=1e-3
                )
        if record["task"] in ("grounding", "referring") and record["answer"] != "none":
            parsed = parse(record["answer"], size)
            assert len(parsed.boxes) == len(record["targets"]["boxes"])
            for got, want in zip(parsed.boxes, record["targets"]["boxes"], strict=True):
                assert np.allclose(got.box, want["box"], atol=size[0] / 1000 + 1e-6)
        if record["task"] == "counting":
            assert record["answer"] == str(record["targets"]["count"])


def test_geosynth_is_byte_identical_with_workers(geosynth_out, tmp_path):
    spec, out, manifest = geosynth_out
    again = build("geosynth", spec, tmp_path / "again", workers=2)
    assert again["sha256"] == manifest["sha256"]
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        rel = path.relative_to(out)
        assert (tmp_path / "again" / rel).read_bytes() == path.read_bytes(), rel


def test_geosynth_spec_text_and_in_memory_loading(tmp_path):
    manifest = build("geosynth", "n=2,seed=9,size=128,kinds=hr", tmp_path / "out")
    assert manifest["by_split"] == {"train": manifest["written"]}
    records, root = load_records("n=2,seed=9,size=128,kinds=hr", recipe="geosynth")
    assert [r["id"] for r in records] == [r["id"] for r in read_records(tmp_path / "out")]
    assert resolve_image(records[0], root).is_file()


def test_geosynth_pairs_outline_the_exact_change_mask(geosynth_out):
    from geoassist.prompts import build_prompt
    from geoassist.synth import generate_pair

    _, out, _ = geosynth_out
    root = image_root(out)
    records = list(read_records(out))
    pairs = [r for r in records if r["meta"]["kind"] == "pair"]
    change_seg = {r["id"]: r for r in pairs if r["task"] == "change_seg"}
    # one per pair, asked with the task's own prompt, about both images
    assert len(change_seg) == len({r["id"].split(":")[1] for r in pairs}) > 0
    assert not any(r.get("qtype") == "change_mask" for r in records)
    for record in change_seg.values():
        assert len(record["images"]) == 2
        prompt = record["conversations"][0]["content"]
        assert prompt == "<image><image>\n" + build_prompt("change_seg", "")
        # the target is the generator's change mask, pixel for pixel
        truth = generate_pair(record["meta"]["seed"], size=record["meta"]["width"]).annotation
        assert np.array_equal(load_target_mask(record, root), truth.change_mask)
        assert (record["answer"] == "none") == (not truth.change_mask.any())
        if record["answer"] != "none":
            assert record["targets"]["count"] >= 1


def test_geosynth_referring_records_say_what_their_expression_needs(geosynth_out):
    from geoassist.data_recipes.recipes.geosynth import expression_cues
    from geoassist.synth import generate_scene
    from geoassist.synth.text import match_spec

    _, out, _ = geosynth_out
    referring = [r for r in read_records(out) if r["task"] == "referring"]
    assert referring and all("expression_cues" in r["meta"] for r in referring)
    seen = set()
    for record in referring:
        cues = record["meta"]["expression_cues"]
        if record["answer"] == "none":
            assert cues == []
            continue
        ann = generate_scene(
            record["meta"]["seed"], record["meta"]["kind"], size=record["meta"]["width"]
        ).annotation
        n = int(record["id"].rsplit(":", 1)[1])
        ref = ann.referring[n]
        assert ref.text == record["conversations"][0]["content"].split("] ", 1)[1]
        assert cues == expression_cues(ref.spec)
        assert match_spec(ann, ref.spec) == [ref.object_id]  # the cues pick it out
        seen.add(bool(cues))
    assert True in seen  # some expressions need more than the class


def test_expression_cues_name_what_each_spec_key_asks():
    from geoassist.data_recipes import RecipeError
    from geoassist.data_recipes.recipes.geosynth import expression_cues

    assert expression_cues({"cls": "ship"}) == []
    assert expression_cues({"cls": "ship", "colour": "red", "cell": "top left"}) == [
        "attribute",
        "position",
    ]
    assert expression_cues({"cls": "car", "near": "pool", "inside": "parking"}) == ["relation"]
    assert expression_cues({"cls": "car", "extreme": "largest"}) == ["extreme"]
    with pytest.raises(RecipeError, match="no cue"):
        expression_cues({"cls": "car", "facing": "north"})
