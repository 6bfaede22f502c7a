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
        if record["task"] in ("refer_seg",) or record.get("qtype") in (
            "change_where",
            "change_mask",
        ):
            mask = load_target_mask(record, root)
            if record["answer"] == "none":
                assert not mask.any()
            elif record["task"] == "refer_seg" or record["qtype"] == "change_mask":
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
