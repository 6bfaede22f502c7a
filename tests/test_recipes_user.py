"""The user's-own-data recipes: LLaVA JSON, COCO JSON, GeoTIFF + GeoJSON/GeoPackage labels."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from PIL import Image
from rasterio.transform import from_origin

from geoassist.data_recipes import build, image_root, load_records, load_target_mask, read_records
from geoassist.data_recipes.recipes.user import gpkg_blob
from geoassist.formats import parse
from geoassist.rle import mask_to_rle


def _png(path: Path, size=(64, 48)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((size[1], size[0], 3), np.uint8)).save(path)


def test_llava_json_conversations(tmp_path):
    src = tmp_path / "src"
    _png(src / "imgs" / "a.png")
    _png(src / "imgs" / "b.png")
    rows = [
        {
            "id": "1",
            "image": "imgs/a.png",
            "conversations": [
                {"from": "human", "value": "<image>\nWhat is this?"},
                {"from": "gpt", "value": "A field."},
                {"from": "human", "value": "Sure?"},
                {"from": "gpt", "value": "Yes."},
            ],
        },
        {
            "id": "2",
            "image": ["imgs/a.png", "imgs/b.png"],
            "conversations": [
                {"from": "system", "value": "Be brief."},
                {"from": "human", "value": "What changed?"},
                {"from": "gpt", "value": "Nothing."},
            ],
        },
        {
            "id": "3",
            "image": "imgs/missing.png",
            "conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}],
        },
        {
            "id": "4",
            "image": "imgs/a.png",
            "conversations": [{"from": "human", "value": "Only a question"}],
        },
        {"id": "5", "image": "imgs/a.png", "conversations": [{"from": "robot", "value": "?"}]},
        {
            "id": "6",
            "image": "imgs/a.png",
            "task": "caption",
            "split": "val",
            "conversations": [
                {"from": "human", "value": "Describe."},
                {"from": "gpt", "value": "A field."},
            ],
        },
    ]
    (src / "mine.json").write_text(json.dumps(rows))
    manifest = build("llava_json", src, tmp_path / "out")
    assert manifest["rejected"] == {
        "malformed annotation": 1,
        "missing answer": 1,
        "missing image": 1,
    }
    assert manifest["by_split"] == {"train": 2, "val": 1}
    records = {r["id"]: r for r in read_records(tmp_path / "out")}
    assert (
        records["llava_json:1"]["answer"] == "Yes."
        and len(records["llava_json:1"]["conversations"]) == 4
    )
    two = records["llava_json:2"]
    assert (
        two["conversations"][0]["content"] == "<image><image>\nWhat changed?"
        and two["meta"]["system"] == "Be brief."
    )
    assert records["llava_json:6"]["task"] == "caption"


def make_coco(root: Path) -> None:
    """COCO 2017 layout: ``annotations/instances_<split>.json`` + ``<split>/`` images."""
    _png(root / "train" / "1.png", (100, 80))
    _png(root / "train" / "2.png", (100, 80))
    mask = np.zeros((80, 100), bool)
    mask[40:60, 50:90] = True
    data = {
        "images": [
            {"id": 1, "file_name": "1.png", "width": 100, "height": 80},
            {"id": 2, "file_name": "2.png", "width": 100, "height": 80},
            {"id": 3, "file_name": "gone.png", "width": 10, "height": 10},
        ],
        "categories": [{"id": 1, "name": "ship"}, {"id": 2, "name": "storage tank"}],
        "annotations": [
            {
                "id": 10,
                "image_id": 1,
                "category_id": 1,
                "bbox": [10, 10, 20, 10],
                "segmentation": [[10, 10, 30, 10, 30, 20, 10, 20]],
                "iscrowd": 0,
            },
            {
                "id": 11,
                "image_id": 1,
                "category_id": 2,
                "bbox": [50, 40, 40, 20],
                "segmentation": mask_to_rle(mask),
                "iscrowd": 0,
            },
            {
                "id": 12,
                "image_id": 1,
                "category_id": 1,
                "bbox": [0, 0, 100, 80],
                "segmentation": mask_to_rle(mask),
                "iscrowd": 1,
            },
            {"id": 13, "image_id": 1, "category_id": 1, "bbox": [500, 500, 10, 10], "iscrowd": 0},
        ],
    }
    (root / "annotations").mkdir(parents=True)
    (root / "annotations" / "instances_train.json").write_text(json.dumps(data))


def test_coco_detection_and_masks(tmp_path):
    make_coco(tmp_path / "src")
    manifest = build("coco", tmp_path / "src", tmp_path / "out")
    assert manifest["rejected"] == {"missing image": 1}
    assert manifest["dropped"] == {"box outside the image": 1, "crowd region": 1}
    records = {r["id"]: r for r in read_records(tmp_path / "out")}
    root = image_root(tmp_path / "out")
    tank = records["coco:1:segment:storage tank"]
    assert (
        load_target_mask(tank, root)[40:60, 50:90].all()
        and load_target_mask(tank, root).sum() == 800
    )
    ship = records["coco:1:segment:ship"]
    assert ship["targets"]["polygons"][0]["points"] == [[10, 10], [30, 10], [30, 20], [10, 20]]
    assert records["coco:2:detection"]["answer"] == "none"
    det = records["coco:1:detection"]
    assert sorted(b["label"] for b in det["targets"]["boxes"]) == ["ship", "storage tank"]


def _write_gpkg(path: Path, geometries: list, classes: list[str], srs: int) -> None:
    """A minimal OGC GeoPackage with one polygon layer, written with sqlite3."""
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE gpkg_spatial_ref_sys (srs_name TEXT, srs_id INTEGER PRIMARY KEY, organization TEXT,
            organization_coordsys_id INTEGER, definition TEXT, description TEXT);
        CREATE TABLE gpkg_contents (table_name TEXT PRIMARY KEY, data_type TEXT, identifier TEXT, description TEXT,
            last_change TEXT, min_x REAL, min_y REAL, max_x REAL, max_y REAL, srs_id INTEGER);
        CREATE TABLE gpkg_geometry_columns (table_name TEXT, column_name TEXT, geometry_type_name TEXT,
            srs_id INTEGER, z TINYINT, m TINYINT);
        CREATE TABLE fields (fid INTEGER PRIMARY KEY, geom BLOB, class TEXT);
        """
    )
    db.execute(
        "INSERT INTO gpkg_spatial_ref_sys VALUES ('WGS 84', 4326, 'EPSG', 4326, 'GEOGCS[\"WGS 84\"]', '')"
    )
    db.execute(
        "INSERT INTO gpkg_contents VALUES ('fields', 'features', 'fields', '', '2024-01-01T00:00:00Z', 0, 0, 0, 0, ?)",
        (srs,),
    )
    db.execute(
        "INSERT INTO gpkg_geometry_columns VALUES ('fields', 'geom', 'POLYGON', ?, 0, 0)", (srs,)
    )
    for n, (geometry, cls) in enumerate(zip(geometries, classes, strict=True), start=1):
        db.execute("INSERT INTO fields VALUES (?, ?, ?)", (n, gpkg_blob(geometry, srs), cls))
    db.commit()
    db.close()


def _lonlat_polygon(transform, crs, box_px):
    from pyproj import Transformer

    to_ll = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    x1, y1, x2, y2 = box_px
    corners = [transform * (x, y) for x, y in ((x1, y1), (x2, y1), (x2, y2), (x1, y2))]
    return shapely.Polygon([to_ll.transform(x, y) for x, y in corners])


@pytest.mark.parametrize("vector", ["gpkg", "geojson"])
def test_geotiff_with_vector_labels_in_another_crs(tmp_path, vector):
    src = tmp_path / "src"
    src.mkdir()
    transform = from_origin(500000.0, 4600000.0, 2.0, 2.0)
    with rasterio.open(
        src / "scene.tif",
        "w",
        driver="GTiff",
        width=100,
        height=60,
        count=3,
        dtype="uint8",
        crs="EPSG:32633",
        transform=transform,
    ) as dst:
        dst.write(np.random.default_rng(0).integers(0, 255, (3, 60, 100), dtype=np.uint8))
    boxes = {"field": (10, 10, 30, 25), "pond": (60, 5, 90, 20), "road": (40, 40, 60, 55)}
    polygons = [_lonlat_polygon(transform, "EPSG:32633", b) for b in boxes.values()]
    if vector == "gpkg":
        _write_gpkg(src / "scene.gpkg", polygons, list(boxes), 4326)
    else:
        features = [
            {"type": "Feature", "geometry": shapely.geometry.mapping(p), "properties": {"class": c}}
            for p, c in zip(polygons, boxes, strict=True)
        ]
        (src / "scene.geojson").write_text(
            json.dumps({"type": "FeatureCollection", "features": features})
        )
    manifest = build("geotiff_vector", src, tmp_path / "out", options={"tile_size": 50})
    assert manifest["rejected"] == {} and manifest["image_root"] == "."
    root = image_root(tmp_path / "out")
    detections = {r["id"]: r for r in read_records(tmp_path / "out", task="detection")}
    assert sorted(detections) == [
        f"geotiff_vector:scene:{r}_{c}:detection" for r in (0, 50) for c in (0, 50)
    ]
    top_left = detections["geotiff_vector:scene:0_0:detection"]
    got = {b["label"]: b["box"] for b in top_left["targets"]["boxes"]}
    assert got["field"] == pytest.approx([10, 10, 30, 25], abs=1e-3)
    assert got["road"] == pytest.approx([40, 40, 50, 50], abs=1e-3)  # cut at the tile edge
    tile = rasterio.open(root / top_left["images"][0])
    assert tile.crs.to_string() == "EPSG:32633" and tile.transform == transform
    right = detections["geotiff_vector:scene:0_50:detection"]
    assert {b["label"]: b["box"] for b in right["targets"]["boxes"]}["pond"] == pytest.approx(
        [10, 5, 40, 20], abs=1e-3
    )
    seg = next(
        r
        for r in read_records(tmp_path / "out", task="refer_seg")
        if r["id"].endswith("0_0:segment:field")
    )
    mask = load_target_mask(seg, root)
    assert mask.sum() == 20 * 15 and mask[10:25, 10:30].all()
    assert parse(seg["answer"], (50, 50)).mask is not None


@pytest.mark.realdata
def test_geotiff_real_spacenet_labels(rs_samples, tmp_path):
    from rasterio import features

    folder = rs_samples / "geotiff" / "spacenet_solaris"
    # the recipe reads a folder: link the sample scene and its labels into one
    src = tmp_path / "src"
    src.mkdir()
    (src / "sample_geotiff.tif").symlink_to(folder / "sample_geotiff.tif")
    (src / "sample_geotiff.geojson").symlink_to(folder / "geotiff_labels.geojson")
    manifest = build("geotiff_vector", src, tmp_path / "out", options={"tile_size": 900})
    assert manifest["rejected"] == {} and manifest["dropped"] == {}
    labels = json.loads((folder / "geotiff_labels.geojson").read_text())["features"]
    records, root = load_records(tmp_path / "out", split="train")
    seg = next(r for r in records if r["task"] == "refer_seg")
    assert (
        seg["id"] == "geotiff_vector:sample_geotiff:0_0:segment:building"
        and seg["targets"]["count"] == len(labels) == 43
    )
    with rasterio.open(folder / "sample_geotiff.tif") as ds:
        expected = (
            features.rasterize(
                [(shapely.geometry.shape(f["geometry"]), 1) for f in labels],
                out_shape=(ds.height, ds.width),
                transform=ds.transform,
            )
            > 0
        )
    assert np.array_equal(load_target_mask(seg, root), expected)
