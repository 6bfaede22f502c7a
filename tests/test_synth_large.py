"""GeoSynth tiled mode: one large GeoTIFF written window by window, with exact truth."""

from __future__ import annotations

import hashlib
import json
import tracemalloc
from collections import Counter

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from geoassist.synth import generate_scene
from geoassist.synth.large import generate_large_scene, read_large_annotation
from geoassist.synth.palette import SEM
from geoassist.synth.types import SynthError


def _things(annotation):
    return [o for o in annotation["objects"] if not o["is_region"]]


def _read_by_blocks(path):
    """The raster assembled from 512-px windowed reads (small test rasters only)."""
    with rasterio.open(path) as ds:
        out = np.zeros((ds.count, ds.height, ds.width), np.uint8)
        for _, window in ds.block_windows(1):
            out[:, window.row_off : window.row_off + window.height, window.col_off : window.col_off + window.width] = ds.read(window=window)
    return out


@pytest.mark.parametrize("pool", [0, 3])
def test_tiled_scene_truth_matches_its_pixels(tmp_path, pool):
    # 1060 px with 512-px pieces: the last row and column are 36-px crops of larger scenes.
    result = generate_large_scene(tmp_path / "big.tif", 1060, seed=3, piece_px=512, georef=True, compress="deflate", labels=True, pool=pool, progress=False)
    with rasterio.open(result.path) as ds:
        assert (ds.width, ds.height, ds.count) == (1060, 1060, 4)
        assert ds.block_shapes == [(512, 512)] * 4 and ds.compression.name == "deflate"
        assert ds.descriptions == ("red", "green", "blue", "objects") and ds.crs.to_epsg() // 100 == 326
        assert ds.transform.a == 0.5 and ds.transform.e == -0.5
        transform = ds.transform
    pixels = _read_by_blocks(result.path)
    labels = pixels[3]
    annotation = read_large_annotation(result.path)
    things = _things(annotation)
    assert annotation["n_objects"] == len(annotation["objects"]) and len(annotation["pieces"]) == 9
    assert annotation["counts"] == dict(sorted(Counter(o["class"] for o in things).items()))
    assert annotation["counts"] == result.counts and sum(result.counts.values()) == len(things) > 20
    # Every box lies in the raster and holds its class's code; every coded pixel lies in a box of its class.
    covered = {}
    for o in annotation["objects"]:
        x1, y1, x2, y2 = o["box"]
        assert 0 <= x1 < x2 <= 1060 and 0 <= y1 < y2 <= 1060 and o["area_px"] <= (x2 - x1) * (y2 - y1)
        if o["is_region"]:
            continue
        code = SEM[o["class"]]
        inside = labels[int(y1) : int(y2), int(x1) : int(x2)]
        if o["area_px"] >= 40:
            assert (inside == code).any(), o
        covered.setdefault(code, np.zeros_like(labels, bool))[int(y1) : int(y2), int(x1) : int(x2)] = True
    for code in np.unique(labels[labels > 0]):
        assert covered[int(code)][labels == code].all()
    assert annotation["label_codes"][str(SEM["small_vehicle"])] == "small_vehicle"
    # The first piece is its GeoSynth scene, pixel for pixel (lossless compression).
    first = annotation["pieces"][0]
    scene = generate_scene(first["seed"], "hr", scene_class=first["scene_class"], size=512, gsd_m=0.5, with_text=False)
    expected = scene.image[:, :, :3]
    if first.get("flip_lr"):
        expected = expected[:, ::-1]
    if first.get("flip_ud"):
        expected = expected[::-1]
    assert np.array_equal(np.moveaxis(pixels[:3, :512, :512], 0, -1), expected)
    # Map coordinates: box_map from the transform, the GeoJSON box around the lon/lat of the centre.
    geojson = json.loads(result.geojson_path.read_text())
    assert len(geojson["features"]) == annotation["n_objects"]
    from pyproj import Transformer
    from shapely.geometry import Point, shape

    to_lonlat = Transformer.from_crs(annotation["crs"], "EPSG:4326", always_xy=True)
    for o, feature in list(zip(annotation["objects"], geojson["features"], strict=True))[::25]:
        x1, y1, x2, y2 = o["box"]
        assert o["box_map"] == pytest.approx([*(transform @ (x1, y2)), *(transform @ (x2, y1))], abs=1e-3)
        polygon = shape(feature["geometry"])
        assert polygon.exterior.is_ccw and feature["properties"]["class"] == o["class"]
        assert polygon.contains(Point(*to_lonlat.transform(*(transform @ ((x1 + x2) / 2, (y1 + y2) / 2)))))


def test_jpeg_scene_with_overviews_objects_stand_out(tmp_path):
    result = generate_large_scene(tmp_path / "s.tif", 2048, seed=1, piece_px=1024, overviews=True, classes=["parking_lot"], progress=False)
    with rasterio.open(result.path) as ds:
        assert ds.compression.name == "jpeg" and ds.overviews(1) == [2, 4, 8]
        assert ds.block_shapes == [(512, 512)] * 3 and ds.crs is None
        cars = [o for o in _things(read_large_annotation(result.path)) if o["class"] == "small_vehicle"]
        assert len(cars) == result.counts["small_vehicle"] > 100
        # A car differs from the ground around it: compare each box with a ring around it.
        differs = 0
        for o in cars[:60]:
            x1, y1, x2, y2 = (int(round(v)) for v in o["box"])
            pad = 4
            win = Window(max(0, x1 - pad), max(0, y1 - pad), min(2048, x2 + pad) - max(0, x1 - pad), min(2048, y2 + pad) - max(0, y1 - pad))
            patch = ds.read(window=win).astype(float).mean(0)
            inner = np.zeros(patch.shape, bool)
            inner[y1 - win.row_off : y2 - win.row_off, x1 - win.col_off : x2 - win.col_off] = True
            differs += abs(patch[inner].mean() - patch[~inner].mean()) > 8
        assert differs >= 0.8 * min(60, len(cars))


def _digest(*paths):
    return [hashlib.sha256(p.read_bytes()).hexdigest() for p in paths]


def test_same_seed_same_files_with_any_workers(tmp_path):
    runs = []
    for name, seed, workers in (("a", 7, 1), ("b", 7, 2), ("c", 8, 1)):
        r = generate_large_scene(tmp_path / name / "s.tif", 1024, seed=seed, piece_px=512, georef=True, workers=workers, progress=False)
        runs.append(_digest(r.path, r.annotation_path, r.geojson_path))
    assert runs[0] == runs[1]
    assert all(x != y for x, y in zip(runs[0], runs[2], strict=True))


def test_memory_stays_far_below_the_raster(tmp_path, monkeypatch):
    """Peak traced memory is one piece's generation, not the raster (113 MB of pixels here)."""
    from geoassist.synth.large import _cut, _plan, _render

    side, piece = 6144, 512
    pool = [p for p in _plan(side, side, piece, 0, ["airport", "bare_land"], 2) if p.index < 40]
    generate_scene(0, "hr", size=piece, with_text=False)  # warm GeoSynth's noise caches first
    tracemalloc.start()
    baseline = 0
    for p in {p.pool_index: p for p in pool}.values():  # what generating each pool scene alone takes
        tracemalloc.reset_peak()
        _cut(_render(p.seed, p.scene_class, (piece, piece), 0.5), (piece, piece), False)
        baseline = max(baseline, tracemalloc.get_traced_memory()[1])
    tracemalloc.stop()
    written = []
    original = rasterio.io.DatasetWriter.write

    def spy(self, arr, indexes=None, window=None, **kw):
        written.append(arr.nbytes)
        return original(self, arr, indexes=indexes, window=window, **kw)

    monkeypatch.setattr(rasterio.io.DatasetWriter, "write", spy)
    tracemalloc.start()
    try:
        result = generate_large_scene(tmp_path / "m.tif", side, seed=0, piece_px=piece, pool=2, classes=["airport", "bare_land"], progress=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    raster_bytes = side * side * 3
    assert len(written) == result.n_pieces == 144 and max(written) == piece * piece * 3
    assert peak <= baseline + 8 * piece * piece * 3, f"peak {peak / 1e6:.0f} MB, one scene {baseline / 1e6:.0f} MB"
    assert peak < raster_bytes / 3, f"peak {peak / 1e6:.0f} MB for a {raster_bytes / 1e6:.0f} MB raster"


def test_api_refuses_what_it_cannot_write(tmp_path):
    with pytest.raises(SynthError, match="deflate"):
        generate_large_scene(tmp_path / "x.tif", 1024, labels=True)
    with pytest.raises(SynthError, match="multiple of the block"):
        generate_large_scene(tmp_path / "x.tif", 1024, piece_px=600)
    with pytest.raises(SynthError, match="unknown scene class"):
        generate_large_scene(tmp_path / "x.tif", 1024, classes=["moon_base"])
    with pytest.raises(SynthError, match="compression"):
        generate_large_scene(tmp_path / "x.tif", 1024, compress="lzw")


def test_cli_tiled_mode_and_its_refusals(tmp_path, capsys):
    from geoassist.cli import main

    out = tmp_path / "out"
    assert main(["synth", "--tiled", "--size", "700", "--piece-px", "512", "--out", str(out), "--georef", "--seed", "2"]) == 0
    assert "large_scene.tif" in capsys.readouterr().out
    assert {p.name for p in out.iterdir()} == {"large_scene.tif", "large_scene.json", "large_scene.geojson"}
    assert read_large_annotation(out / "large_scene.tif")["width"] == 700
    refused = {
        ("--tiled", "--out", str(tmp_path)): "--size",
        ("--tiled", "--size", "900", "--kind", "ms", "--out", str(tmp_path)): "--kind hr",
        ("--tiled", "--size", "900", "--formats", "dota", "--out", str(tmp_path)): "--formats",
        ("--tiled", "--size", "900", "--n", "3", "--out", str(tmp_path)): "--n",
        ("--tiled", "--size", "900", "--labels", "--out", str(tmp_path)): "--compress deflate",
        ("--overviews", "--out", str(tmp_path)): "only apply with --tiled",
    }
    for argv, message in refused.items():
        assert main(["synth", *argv]) == 1, argv
        assert message in capsys.readouterr().err, argv
