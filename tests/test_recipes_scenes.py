"""Scene-classification recipes on fake files in their published layouts (and EuroSAT-MS's real format)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import rasterio
from PIL import Image
from rasterio.transform import from_origin

from geoassist.data_recipes import (
    MissingDependencyError,
    build,
    image_root,
    read_records,
    resolve_image,
)


def _image(path: Path, size=(32, 32)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((size[1], size[0], 3), np.uint8)).save(path)


@pytest.mark.parametrize(
    ("recipe", "folder", "ext"),
    [
        ("ucm", "Images", ".tif"),
        ("aid", "", ".jpg"),
        ("resisc45", "NWPU-RESISC45", ".jpg"),
        ("whu_rs19", "", ".jpg"),
        ("eurosat_rgb", "2750", ".jpg"),
    ],
)
def test_folder_per_class_sets(tmp_path, recipe, folder, ext):
    base = tmp_path / "src" / folder if folder else tmp_path / "src"
    for cls in ("Beach", "denseresidential", "SeaLake"):
        for i in range(2):
            _image(base / cls / f"{cls}_{i}{ext}")
    (base / "Beach" / f"Beach_9{ext}").write_bytes(b"broken")
    manifest = build(recipe, tmp_path / "src", tmp_path / "out")
    assert manifest["rejected"] == {"unreadable image": 1}
    assert manifest["by_task"] == {"scene_cls": 6, "vqa": 12} and manifest["by_qtype"] == {
        "presence": 12
    }
    records = {r["id"]: r for r in read_records(tmp_path / "out")}
    scene = records[f"{recipe}:SeaLake/SeaLake_0:scene"]
    assert scene["answer"] == ("sea or lake" if recipe == "eurosat_rgb" else "sea lake") and scene[
        "targets"
    ]["labels"] == ["SeaLake"]
    prompt = scene["conversations"][0]["content"]
    assert prompt.startswith("<image>\n[classify] What kind of scene is this? One of: ")
    listed = prompt.split("One of: ", 1)[1].rstrip(".").split(", ")
    assert scene["answer"] in listed and len(listed) == len(set(listed)) >= 2
    answers = {
        r["answer"]
        for r in records.values()
        if r["id"].startswith(f"{recipe}:SeaLake/SeaLake_0:is:")
    }
    assert answers == {"yes", "no"}


def test_split_lists_select_and_assign_splits(tmp_path):
    base = tmp_path / "src" / "NWPU-RESISC45"
    for cls in ("airport", "beach"):
        for i in range(3):
            _image(base / cls / f"{cls}_{i:03d}.jpg")
    (tmp_path / "src" / "resisc45-train.txt").write_text(
        "airport_000.jpg\nbeach_000.jpg\nbeach_001.jpg\n"
    )
    (tmp_path / "src" / "resisc45-test.txt").write_text("airport_001.jpg\n")
    manifest = build("resisc45", tmp_path / "src", tmp_path / "out", splits=["test"])
    assert manifest["by_split"] == {"test": 3}


def test_eurosat_ms_torchgeo_layout(tmp_path):
    base = tmp_path / "src" / "ds/images/remote_sensing/otherDatasets/sentinel_2/tif"
    for cls in ("Forest", "River"):
        path = base / cls / f"{cls}_1.tif"
        path.parent.mkdir(parents=True)
        with rasterio.open(
            path,
            "w",
            driver="GTiff",
            width=64,
            height=64,
            count=13,
            dtype="uint16",
            crs="EPSG:32632",
            transform=from_origin(500000, 5000000, 10, 10),
        ) as dst:
            dst.write(np.ones((13, 64, 64), np.uint16))
    (tmp_path / "src" / "eurosat-train.txt").write_text("Forest_1.jpg\n")
    (tmp_path / "src" / "eurosat-val.txt").write_text("River_1.jpg\n")
    manifest = build("eurosat_ms", tmp_path / "src", tmp_path / "out")
    assert manifest["by_split"] == {"train": 3, "val": 3}
    scene = next(read_records(tmp_path / "out", task="scene_cls", split="val"))
    assert (
        scene["answer"] == "river"
        and scene["meta"]["band_names"][8] == "B08A"
        and scene["meta"]["gsd_m"] == 10
    )


def test_firerisk_split_folders(tmp_path):
    for split in ("train", "val"):
        for cls in ("High", "Non-burnable"):
            _image(tmp_path / "src" / split / cls / f"{cls}_{split}.png")
    manifest = build("firerisk", tmp_path / "src", tmp_path / "out")
    assert manifest["by_split"] == {"train": 6, "val": 6}
    scene = {r["id"]: r for r in read_records(tmp_path / "out")}["firerisk:val/High/High_val:scene"]
    assert scene["answer"] == "high fire risk"


def test_so2sat_needs_h5py_or_reads_the_hdf5(tmp_path):
    (tmp_path / "src").mkdir()
    try:
        import h5py
    except ImportError:
        (tmp_path / "src" / "validation.h5").write_bytes(b"\x89HDF\r\n\x1a\n")
        with pytest.raises(MissingDependencyError, match="pip install h5py"):
            build("so2sat", tmp_path / "src", tmp_path / "out")
        return
    with h5py.File(tmp_path / "src" / "validation.h5", "w") as f:
        f["sen1"] = np.zeros((2, 32, 32, 8), np.float64)
        f["sen2"] = np.ones((2, 32, 32, 10), np.float64)
        f["label"] = np.eye(17)[[16, 0]]
    manifest = build("so2sat", tmp_path / "src", tmp_path / "out")
    scenes = {r["id"]: r for r in read_records(tmp_path / "out", task="scene_cls")}
    assert (
        scenes["so2sat:val/0:scene"]["answer"] == "water"
        and scenes["so2sat:val/1:scene"]["answer"] == "compact high-rise"
    )
    assert manifest["written"] == 6


def _ben_patch(folder: Path, name: str) -> None:
    folder.mkdir(parents=True)
    for band in ("B02", "B03", "B04", "B08"):
        with rasterio.open(
            folder / f"{name}_{band}.tif",
            "w",
            driver="GTiff",
            width=120,
            height=120,
            count=1,
            dtype="uint16",
            crs="EPSG:32634",
            transform=from_origin(600000, 5000000, 10, 10),
        ) as dst:
            dst.write(np.full((1, 120, 120), int(band[1:]), np.uint16))


def test_bigearthnet_v1_multi_label(tmp_path):
    src = tmp_path / "src"
    labels = {
        "S2A_patch_1": ["Pastures", "Coniferous forest"],
        "S2A_patch_2": [],
        "S2A_patch_3": ["Not a CORINE class"],
    }
    for name, labs in labels.items():
        _ben_patch(src / name, name)
        (src / name / f"{name}_labels_metadata.json").write_text(
            json.dumps({"labels": labs, "acquisition_date": "2017-06-13 10:10:31"})
        )
    manifest = build("bigearthnet", src, tmp_path / "out")
    assert manifest["rejected"] == {"no labels": 1, "unknown class": 1}
    scene = next(read_records(tmp_path / "out", task="scene_cls"))
    assert (
        scene["answer"] == "pastures, coniferous forest"
        and scene["targets"]["labels"] == labels["S2A_patch_1"]
    )
    with rasterio.open(resolve_image(scene, image_root(tmp_path / "out"))) as ds:
        assert (
            ds.count == 4 and ds.crs.to_string() == "EPSG:32634" and ds.read(3).max() == 4
        )  # red = B04


def test_reben_metadata_parquet(tmp_path):
    src = tmp_path / "src"
    _ben_patch(src / "BigEarthNet-S2" / "S2B_tile" / "S2B_tile_10_20", "S2B_tile_10_20")
    table = pa.table(
        {
            "patch_id": ["S2B_tile_10_20", "S2B_missing"],
            "labels": [["Marine waters"], ["Urban fabric"]],
            "split": ["test", "train"],
            "country": ["Portugal", "Austria"],
        }
    )
    pq.write_table(table, src / "metadata.parquet")
    manifest = build("reben", src, tmp_path / "out")
    assert manifest["by_split"] == {"test": 3} and manifest["rejected"] == {"missing image": 1}


@pytest.mark.realdata
def test_eurosat_ms_real_format(rs_samples, tmp_path):
    manifest = build(
        "eurosat_ms", rs_samples / "format_only_synthetic" / "eurosat_ms", tmp_path / "out"
    )
    assert manifest["by_split"] == {"test": 6} and manifest["rejected"] == {}
    scenes = sorted(r["answer"] for r in read_records(tmp_path / "out", task="scene_cls"))
    assert scenes == ["annual crop", "forest"]
    assert all(
        r["meta"]["crs"].startswith("EPSG:326") and len(r["meta"]["band_names"]) == 13
        for r in read_records(tmp_path / "out")
    )


def test_rsscn7_letter_folders_give_plain_class_words(tmp_path):
    for cls in ("aGrass", "dRiverLake", "fResident"):
        for i in range(2):
            _image(tmp_path / "src" / cls / f"{cls[0]}{i:03d}.jpg")
    build("rsscn7", tmp_path / "src", tmp_path / "out")
    records = {r["id"]: r for r in read_records(tmp_path / "out")}
    scene = records["rsscn7:dRiverLake/d000:scene"]
    assert scene["answer"] == "river or lake" and scene["targets"]["labels"] == ["dRiverLake"]
    assert scene["conversations"][0]["content"].endswith(
        "One of: grass, river or lake, residential."
    )


def test_rsscn7_real_sample_is_all_test_in_the_real_split(rs_samples, tmp_path):
    from geoassist.splits import real_split

    src = rs_samples / "scenes" / "rsscn7"
    if not src.is_dir():
        pytest.skip("no RSSCN7 sample")
    manifest = build("rsscn7", src, tmp_path / "out")
    assert manifest["by_task"]["scene_cls"] == 700
    scenes = [r for r in read_records(tmp_path / "out") if r["task"] == "scene_cls"]
    assert {r["answer"] for r in scenes} == {
        "grass", "field", "industry", "river or lake", "forest", "residential", "parking"
    }  # fmt: skip
    assert {real_split("rsscn7", Path(r["images"][0]).stem) for r in scenes} == {"test"}
