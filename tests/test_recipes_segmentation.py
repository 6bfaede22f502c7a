"""Pixel-grounding recipes (iSAID…) on GeoSynth's iSAID layout and on the real iSAID sample."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from geoassist.data_recipes import build, image_root, load_target_mask, read_records
from geoassist.data_recipes.geometry import mask_iou
from geoassist.data_recipes.recipes.segmentation import ISAID_PALETTE
from geoassist.formats import parse


@pytest.fixture(scope="module")
def isaid_fake(tmp_path_factory):
    from geoassist.synth.pipeline import generate_dataset

    root = tmp_path_factory.mktemp("isaid")
    generate_dataset(root, 3, 11, "hr", ["coco"], "val", 192, False, 1, False, False)
    return root / "coco"


@pytest.mark.parametrize("instances", ["masks", "coco"])
def test_isaid_published_layout(isaid_fake, tmp_path, instances):
    manifest = build("isaid", isaid_fake, tmp_path / "out", options={"instances": instances})
    assert manifest["rejected"] == {} and manifest["by_split"]
    root = image_root(tmp_path / "out")
    segs = list(read_records(tmp_path / "out", task="refer_seg"))
    assert segs and any(r["answer"] == "none" for r in segs)
    for record in segs:
        mask = load_target_mask(record, root)
        assert mask is not None
        if record["answer"] == "none":
            assert not mask.any() and record["targets"]["count"] == 0
            continue
        width, height = record["meta"]["width"], record["meta"]["height"]
        parsed = parse(record["answer"], (width, height))
        assert parsed.mask is not None and not parsed.errors
        assert mask_iou(parsed.mask, mask) == pytest.approx(
            record["meta"]["mask_text_iou"], abs=1e-3
        )
        if instances == "masks":
            color = np.asarray(Image.open(root / record["targets"]["mask"]).convert("RGB"))
            assert np.array_equal(
                mask, np.all(color == record["targets"]["mask_values"][0], axis=-1)
            )


@pytest.mark.realdata
def test_isaid_real_masks_equal_the_palette_pixels_of_each_class(rs_samples, tmp_path):
    src = rs_samples / "isaid"
    manifest = build("isaid", src, tmp_path / "out")
    assert manifest["rejected"] == {} and manifest["dropped"] == {}
    root = image_root(tmp_path / "out")
    color = np.asarray(Image.open(src / "val/images/P0003_instance_color_RGB.png").convert("RGB"))
    ids = np.asarray(Image.open(src / "val/images/P0003_instance_id_RGB.png").convert("RGB"))
    for record in read_records(tmp_path / "out", task="refer_seg"):
        label = record["id"].split(":")[-1]
        name = next(n for n in ISAID_PALETTE if n.replace("_", " ").lower() == label)
        expected = np.all(color == ISAID_PALETTE[name], axis=-1)
        assert np.array_equal(load_target_mask(record, root), expected)
        # one instance per distinct id colour over that class
        n_instances = len({tuple(c) for c in ids[expected].tolist()} - {(0, 0, 0)})
        assert record["targets"]["count"] == n_instances
    detection = next(read_records(tmp_path / "out", task="detection"))
    assert (
        detection["targets"]["count"]
        == len({tuple(c) for c in ids.reshape(-1, 3).tolist()}) - 1
        == 59
    )
