"""Stage 0's dense targets on hand-made scenes: centre cell, class, count; augmentation moves targets
with the pixels; bad input (no objects, unknown class, another GeoSynth version's cache)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from geoassist.synth.palette import OBJECT_CLASSES, SEMANTIC_CLASSES
from geoassist.synth.types import OrientedBox, SceneAnnotation, SynthObject
from geoassist.train.dense_targets import (
    IGNORE,
    Truth,
    UnknownClassError,
    _flip_x,
    _flip_y,
    _rot90,
    augment,
    build_targets,
    centre_cell,
    crop_zoom,
    truth_from_annotation,
)

SIZE = 128
TANK = OBJECT_CLASSES.index("storage_tank")
SEM_TANK = SEMANTIC_CLASSES.index("storage_tank")
GRASS = SEMANTIC_CLASSES.index("grassland")


def _scene(objects: list[tuple[str, float, float, float, float, float]], scene_class: str = "industrial"):
    """A grass image with red rectangles at the given (class, cx, cy, w, h, angle°)."""
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    image[..., 1] = 90
    semantic = np.full((SIZE, SIZE), GRASS, np.uint8)
    objs = []
    for i, (cls, cx, cy, w, h, angle) in enumerate(objects):
        x1, y1, x2, y2 = int(cx - w / 2), int(cy - h / 2), int(cx + w / 2), int(cy + h / 2)
        image[y1:y2, x1:x2] = (230, 30, 30)
        if cls in SEMANTIC_CLASSES:
            semantic[y1:y2, x1:x2] = SEMANTIC_CLASSES.index(cls)
        obox = OrientedBox(cx, cy, w, h, angle)
        objs.append(SynthObject(i, cls, obox.corners(), [x1, y1, x2, y2], obox))
    ann = SceneAnnotation(
        scene_id="hand", seed=0, kind="hr", scene_class=scene_class, rural_urban="urban", gsd_m=0.5,
        sensor="aerial", width=SIZE, height=SIZE, band_names=["red", "green", "blue"], crs="",
        geotransform=(0, 1, 0, 0, 0, -1), sun_azimuth_deg=0, sun_elevation_deg=45, season="summer",
        objects=objs, semantic_mask=semantic, semantic_classes=list(SEMANTIC_CLASSES),
        captions=["a storage tank on grass"],
    )
    return image, ann


def test_a_known_object_lands_in_its_centre_cell_with_class_count_and_box():
    image, ann = _scene([("storage_tank", 40.0, 72.0, 16.0, 12.0, 30.0)])
    truth = truth_from_annotation(image, ann)
    t = build_targets(truth, grid=16)  # cells of 8 px: centre (40, 72) → row 9, col 5
    assert centre_cell(truth, 0, 16) == (9, 5)
    assert t["centre"][TANK, 9, 5] == pytest.approx(1.0)
    assert np.unravel_index(t["centre"][TANK].argmax(), (16, 16)) == (9, 5)
    assert t["centre"][np.arange(len(OBJECT_CLASSES)) != TANK].max() == 0.0
    assert t["count"][TANK] == 1 and t["count"].sum() == 1 and t["count_mask"].all()
    assert t["presence"][SEM_TANK] == 1 and t["presence"][SEMANTIC_CLASSES.index("building")] == 0
    assert t["presence"][GRASS] == 1 and t["presence"][SEMANTIC_CLASSES.index("water")] == 0
    assert t["box_mask"].sum() == 1 and t["box_mask"][9, 5]
    assert np.exp(t["box_size"][:, 9, 5]) * 8 == pytest.approx([16.0, 12.0], rel=1e-5)
    assert t["box_angle"][:, 9, 5] == pytest.approx([math.sin(math.radians(60)), math.cos(math.radians(60))])
    # the semantic cell map is the pixel fraction of each class
    # (the tank covers rows 66-78, columns 32-48: 6 of the 8 rows of cell (9, 5))
    assert t["semantic"][SEM_TANK, 9, 5] == pytest.approx(0.75)
    assert t["semantic"][GRASS, 9, 5] == pytest.approx(0.25)
    assert t["semantic"][GRASS, 0, 0] == pytest.approx(1.0)
    assert t["semantic_mask"].all()
    assert truth.scene == {"geosynth": sorted(__import__("geoassist.synth", fromlist=["x"]).scene_classes("hr")).index("industrial")}


def test_counts_per_class_and_several_objects():
    image, ann = _scene(
        [("storage_tank", 20, 20, 8, 8, 0), ("storage_tank", 100, 20, 8, 8, 0), ("small_vehicle", 60, 100, 6, 3, 90)]
    )
    t = build_targets(truth_from_annotation(image, ann), grid=8)
    assert t["count"][TANK] == 2 and t["count"][OBJECT_CLASSES.index("small_vehicle")] == 1
    assert t["box_mask"].sum() == 3


def test_a_scene_without_objects_has_zero_counts_and_no_centres():
    image, ann = _scene([], scene_class="meadow")
    t = build_targets(truth_from_annotation(image, ann), grid=16)
    assert t["count"].sum() == 0 and t["count_mask"].all()
    assert t["centre"].max() == 0 and not t["box_mask"].any()
    assert t["presence"][: len(SEMANTIC_CLASSES)].sum() == 1  # grass only


def test_an_unknown_object_class_is_named_in_the_error():
    image, ann = _scene([("helicopter", 40, 40, 10, 10, 0)])
    with pytest.raises(UnknownClassError, match="helicopter"):
        truth_from_annotation(image, ann)
    image, ann = _scene([], scene_class="volcano")
    with pytest.raises(UnknownClassError, match="volcano"):
        truth_from_annotation(image, ann)


def _red_centroid(image: np.ndarray) -> np.ndarray:
    red = (image[..., 0].astype(int) - image[..., 1].astype(int)) > 60
    ys, xs = np.nonzero(red)
    return np.array([xs.mean() + 0.5, ys.mean() + 0.5])


def _semantic_centroid(semantic: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(semantic == SEM_TANK)
    return np.array([xs.mean() + 0.5, ys.mean() + 0.5])


@pytest.mark.parametrize("op", [_flip_x, _flip_y, _rot90])
def test_geometric_ops_move_centres_boxes_and_maps_with_the_pixels(op):
    image, ann = _scene([("storage_tank", 40.0, 72.0, 24.0, 8.0, 0.0)])
    truth = truth_from_annotation(image, ann)
    moved = op(truth)
    assert moved.centres[0] == pytest.approx(_red_centroid(moved.image), abs=0.6)
    assert moved.centres[0] == pytest.approx(_semantic_centroid(moved.semantic), abs=0.6)
    # the oriented box's corners are the moved corners of the original box (as a set)
    before = np.array(OrientedBox(*truth.centres[0], *truth.boxes[0]).corners())
    after = np.array(OrientedBox(*moved.centres[0], *moved.boxes[0]).corners())
    ys, xs = np.nonzero(moved.semantic == SEM_TANK)
    assert after[:, 0].min() == pytest.approx(xs.min(), abs=1.0) and after[:, 0].max() == pytest.approx(xs.max() + 1, abs=1.0)
    assert after[:, 1].min() == pytest.approx(ys.min(), abs=1.0) and after[:, 1].max() == pytest.approx(ys.max() + 1, abs=1.0)
    assert before.shape == after.shape


def test_random_augmentation_keeps_targets_on_the_object():
    image, ann = _scene([("storage_tank", 40.0, 72.0, 20.0, 14.0, 0.0)])
    truth = truth_from_annotation(image, ann)
    rng = np.random.default_rng(0)
    zoomed = 0
    for _ in range(24):
        view = augment(truth, rng, min_zoom=0.7)
        assert view.image.shape == image.shape and view.image.dtype == np.uint8
        if len(view.centres) == 0:  # the zoom cut the object's centre out: no centre, count 0
            assert build_targets(view, 16)["count"][TANK] == 0
            continue
        zoomed += view.boxes[0, 0] > 20.5
        assert view.centres[0] == pytest.approx(_semantic_centroid(view.semantic), abs=1.5)
        assert view.centres[0] == pytest.approx(_red_centroid(view.image), abs=2.5)
        t = build_targets(view, 16)
        row, col = centre_cell(view, 0, 16)
        assert t["centre"][TANK, row, col] == pytest.approx(1.0) and t["count"][TANK] == 1
    assert zoomed > 0  # the scale jitter ran and scaled the box with the pixels


def test_crop_zoom_drops_objects_whose_centre_leaves():
    image, ann = _scene([("storage_tank", 20, 20, 8, 8, 0), ("storage_tank", 100, 100, 8, 8, 0)])
    truth = truth_from_annotation(image, ann)
    view = crop_zoom(truth, 64, 64, 64)  # the bottom-right quarter, doubled
    assert len(view.centres) == 1 and view.centres[0] == pytest.approx([72, 72])
    assert view.boxes[0, :2] == pytest.approx([16, 16])
    assert build_targets(view, 16)["count"][TANK] == 1


def test_unknown_semantic_pixels_are_masked_out():
    image, ann = _scene([])
    truth = truth_from_annotation(image, ann)
    truth.semantic[:64] = IGNORE
    t = build_targets(truth, 8)
    assert not t["semantic_mask"][:4].any() and t["semantic_mask"][4:].all()


def test_real_labels_only_mark_what_they_know():
    truth = Truth(image=np.zeros((SIZE, SIZE, 3), np.uint8), presence={SEMANTIC_CLASSES.index("water"): True},
                  counts={OBJECT_CLASSES.index("building"): 7.0})
    t = build_targets(truth, 8)
    assert t["presence_mask"].sum() == 1 and t["presence"][SEMANTIC_CLASSES.index("water")] == 1
    assert t["count_mask"].sum() == 1 and t["count"][OBJECT_CLASSES.index("building")] == 7
    assert "centre" not in t and "semantic" not in t


def test_shard_cache_round_trip_and_another_version_is_refused(tmp_path, monkeypatch):
    from geoassist.synth.pipeline import make_sample, sample_seed
    from geoassist.train import synth_cache
    from geoassist.train.dense_targets import truth_from_scene
    from geoassist.train.synth_cache import CacheConfig, SynthCache, SynthCacheError

    cache = SynthCache(tmp_path, CacheConfig("scene", 96, base_seed=5))
    stats = cache.ensure(0, 3, workers=1, shard_size=2)
    assert stats["generated"] == 4 and stats["bytes"] > 0 and stats["scenes_per_s"] > 0
    assert cache.indices(0, 3) == [0, 1, 2] and cache.covered(0, 4)
    again = SynthCache(tmp_path, CacheConfig("scene", 96, base_seed=5)).ensure(0, 4, shard_size=2)
    assert again["generated"] == 0  # a later run reuses the shards
    direct = truth_from_scene(make_sample("hr", sample_seed(5, 2), 96))
    cached = SynthCache(tmp_path, CacheConfig("scene", 96, base_seed=5)).truth(2)
    assert np.array_equal(cached.image, direct.image) and np.array_equal(cached.semantic, direct.semantic)
    assert np.allclose(cached.centres, direct.centres) and np.array_equal(cached.classes, direct.classes)

    manifest = Path(cache.folder) / "manifest.json"
    data = json.loads(manifest.read_text())
    data["geosynth"] = "0.0.1+oldgenerator"
    manifest.write_text(json.dumps(data))
    with pytest.raises(SynthCacheError, match="0.0.1\\+oldgenerator"):
        SynthCache(tmp_path, CacheConfig("scene", 96, base_seed=5))
    renewed = SynthCache(tmp_path, CacheConfig("scene", 96, base_seed=5), on_mismatch="regenerate")
    assert renewed.shards() == [] and json.loads(manifest.read_text())["geosynth"] == renewed.version

    # a shard that another version slipped into a current cache is refused, not mixed
    renewed.ensure(0, 2, shard_size=2)
    meta = next(Path(renewed.folder).glob("shard-*")) / "meta.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "geosynth": "other"}))
    with pytest.raises(SynthCacheError, match="other"):
        renewed.shards()
    monkeypatch.setattr(synth_cache, "_GENERATOR_MODULES", ("types",))
    assert synth_cache.geosynth_version() != renewed.version  # the version follows the generator's source
