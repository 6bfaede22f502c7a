"""GeoSynth exporters: every format is read back by the matching reader, and the CLI refuses misfits."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from PIL import Image

from geoassist import readers as R
from geoassist.synth.pipeline import generate_dataset
from geoassist.synth.types import FormatKindError


@pytest.fixture(scope="module")
def hr_out(tmp_path_factory):
    out = tmp_path_factory.mktemp("hr")
    generate_dataset(out, 4, seed=3, kind="hr", formats=["rsvqa", "dota", "dior", "dior-rsvg", "karpathy", "coco", "folders", "geosynth"], split="val", size=256, georef=True, preview=True)
    return out


def _digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def test_rsvqa_roundtrip_hr(hr_out):
    items = R.read_rsvqa(hr_out / "rsvqa", "val")
    assert items and {i.type for i in items} <= {"presence", "comp", "count", "area"}
    assert all(i.image_path is not None and i.image_path.name.endswith(".tif") for i in items)
    import rasterio

    with rasterio.open(items[0].image_path) as ds:  # --georef: a UTM CRS and the GSD as pixel size
        assert ds.crs.to_epsg() // 100 == 326 and ds.count == 3
        assert ds.transform.a == pytest.approx(-ds.transform.e)


def test_dota_roundtrip(hr_out):
    rows = R.read_dota(hr_out / "dota" / "val")
    assert len(rows) == 4 and all(p.exists() for p, _, _ in rows)
    meta, objs = rows[0][1], [o for r in rows for o in r[2]]
    assert meta["imagesource"] == "GeoSynth" and float(meta["gsd"]) > 0
    for o in objs:  # every corner inside the 256 px image, as in DOTA's own labels
        x1, y1, x2, y2 = o.box
        assert 0 <= x1 < x2 <= 256 and 0 <= y1 < y2 <= 256
        assert o.difficult in (0, 2)


def _cut_scene():
    """A 128 px scene whose planes are cut by the border by hand: one whole, one with one
    corner outside (a five-corner part), one half outside and one mostly outside."""
    from geoassist.synth.encode import Encoded
    from geoassist.synth.pipeline import make_sample
    from geoassist.synth.types import OrientedBox, SynthObject

    scene = make_sample("hr", 3, 128)
    a = scene.annotation
    boxes = {
        "whole": OrientedBox(64, 64, 20, 10, 0),
        "corner": OrientedBox(4, 60, 20, 10, 30),  # the plane at x < 0 of the issue
        "half": OrientedBox(128, 30, 20, 10, 0),
        "mostly": OrientedBox(60, -3, 16, 12, 0),
    }
    objects = []
    for n, (name, obox) in enumerate(boxes.items()):
        corners = obox.corners()
        xs, ys = [x for x, _ in corners], [y for _, y in corners]
        box = [min(xs), min(ys), max(xs), max(ys)]
        objects.append(SynthObject(n, "airplane", corners, box, obox, {"name": name}))
    a.objects = objects
    return scene, Encoded(scene), boxes


def test_dota_and_dior_keep_cut_objects_inside_the_image(tmp_path):
    from geoassist.synth.exporters import DIORExporter, DOTAExporter, clip_quad

    scene, enc, boxes = _cut_scene()
    w = h = 128
    assert any(x < 0 for x, _ in boxes["corner"].corners())  # the old export wrote these as is
    for exporter in (DOTAExporter(tmp_path, "val", "hr"), DIORExporter(tmp_path, "val", "hr")):
        exporter.add(0, scene, enc)
        exporter.close()
    ((_, meta, objects),) = R.read_dota(tmp_path / "dota" / "val")
    assert len(objects) == 4 and {o.cls for o in objects} == {"plane"}
    for o in objects:
        assert len(o.polygon) == 4
        assert all(0 <= x <= w and 0 <= y <= h for x, y in o.polygon), o.polygon
    whole, corner, half, mostly = objects
    expected_whole = [54.0, 59.0, 74.0, 59.0, 74.0, 69.0, 54.0, 69.0]
    assert [v for p in whole.polygon for v in p] == pytest.approx(expected_whole)
    assert whole.difficult == 0
    # a corner cut off keeps most of the plane: still an ordinary object, four corners
    assert corner.difficult == 0 and min(x for x, _ in corner.polygon) == 0.0
    # half of the plane inside (50 %, under DOTA_devkit's 70 %): difficult 2, clipped at x = 128
    assert half.difficult == 2
    assert sorted({round(x, 1) for x, _ in half.polygon}) == [118.0, 128.0]
    # mostly outside: 3 of 12 rows inside
    assert mostly.difficult == 2 and mostly.box == pytest.approx([52.0, 0.0, 68.0, 3.0])
    quad, kept = clip_quad(boxes["half"].corners(), w, h)
    assert kept == pytest.approx(0.5) and len(quad) == 4
    assert clip_quad([(-9, -9), (-1, -9), (-1, -1), (-9, -1)], w, h) == (None, 0.0)
    # DIOR: boxes and rotated boxes inside the image, cut objects marked truncated
    import xml.etree.ElementTree as ET

    for folder in ("Horizontal Bounding Boxes", "Oriented Bounding Boxes"):
        root = ET.parse(tmp_path / "dior" / "Annotations" / folder / "00001.xml").getroot()
        flags = [int(o.findtext("truncated")) for o in root.iter("object")]
        assert flags == [0, 1, 1, 1]
        values = [int(v.text) for o in root.iter("object") for v in o.iter() if v.tag[:2] in ("x_", "y_") or v.tag in ("xmin", "ymin", "xmax", "ymax")]
        assert values and all(0 <= v <= 128 for v in values)
    dior = R.read_dior(tmp_path / "dior", "val", oriented=True)
    assert all(len(ob["polygon"]) == 4 for _, x in dior for ob in x["objects"])


def test_dior_and_rsvg_roundtrip(hr_out):
    h = R.read_dior(hr_out / "dior", "val")
    o = R.read_dior(hr_out / "dior", "val", oriented=True)
    assert len(h) == len(o) == 4 and all(p.exists() for p, _ in h)
    assert all(len(a["objects"]) == len(b["objects"]) for (_, a), (_, b) in zip(h, o, strict=True))
    assert all(len(ob["polygon"]) == 4 for _, x in o for ob in x["objects"])
    rs = R.read_dior_rsvg(hr_out / "dior-rsvg", "val")
    assert rs and all(r["description"].startswith("the ") for r in rs)


def test_karpathy_coco_folders_native(hr_out):
    caps = R.read_karpathy(hr_out / "karpathy" / "dataset_geosynth.json", "val")
    assert len(caps) == 4 and all(len(c["captions"]) == 5 for c in caps)
    coco = R.read_coco(hr_out / "coco" / "val" / "Annotations" / "iSAID_val.json")
    assert len(coco["images"]) == 4
    for img in coco["images"]:
        stem = Path(img["file_name"]).stem
        d = hr_out / "coco" / "val" / "images"
        inst = R.read_isaid_masks(d / f"{stem}_instance_color_RGB.png", d / f"{stem}_instance_id_RGB.png")
        anns = coco["annotations"].get(img["id"], [])
        assert len(inst) == len(anns)
        for mi, a in zip(inst, anns, strict=True):  # ids follow annotation order
            x, y, w, h = a["bbox"]
            assert mi.box == [x, y, x + w, y + h]
            assert coco["categories"][a["category_id"]] == mi.cls
    assert len(R.read_folders(hr_out / "folders")) == 4
    assert len(list((hr_out / "geosynth" / "val").glob("*.json"))) == 4
    assert (hr_out / "preview.png").exists()


def test_ms_formats_roundtrip(tmp_path):
    generate_dataset(tmp_path, 3, seed=1, kind="ms", formats=["rsvqa", "eurosat", "folders"], split="test", size=64)
    items = R.read_rsvqa(tmp_path / "rsvqa", "test")
    assert any(i.type == "rural_urban" for i in items)
    assert all(i.image_path.parent.name == "Images_LR" for i in items)
    rows = R.read_eurosat(tmp_path / "eurosat", "test")
    assert len(rows) == 3
    import rasterio

    with rasterio.open(rows[0][0]) as ds:
        assert ds.count == 13 and ds.dtypes[0] == "uint16" and ds.crs is not None and ds.res == (10.0, 10.0)


def test_pair_formats_roundtrip(tmp_path):
    generate_dataset(tmp_path, 3, seed=2, kind="pair", formats=["levir-cd", "levir-cc"], split="train", size=128)
    rows = R.read_levir_cd(tmp_path / "levir-cd", "train")
    cc = R.read_levir_cc(tmp_path / "levir-cc")
    assert len(rows) == len(cc) == 3
    for (a, b, lab), item in zip(rows, cc, strict=True):
        assert Image.open(a).size == Image.open(b).size == (128, 128)
        mask = R.load_change_label(lab)
        assert item["changeflag"] == int(mask.any())
        assert len(item["captions"]) == 5


def test_same_seed_byte_identical(tmp_path):
    for d in ("a", "b"):
        generate_dataset(tmp_path / d, 2, seed=5, kind="hr", formats=["dota", "rsvqa", "coco"], size=128)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")


def test_workers_give_the_same_bytes(tmp_path):
    generate_dataset(tmp_path / "one", 4, seed=9, kind="hr", formats=["dota"], size=96, workers=1)
    generate_dataset(tmp_path / "two", 4, seed=9, kind="hr", formats=["dota"], size=96, workers=2)
    assert _digest(tmp_path / "one") == _digest(tmp_path / "two")


def test_cli_refuses_format_that_does_not_fit(tmp_path, capsys):
    from geoassist.cli import main

    assert main(["synth", "--out", str(tmp_path), "--n", "1", "--kind", "hr", "--formats", "levir-cd"]) == 1
    assert "levir-cd" in capsys.readouterr().err
    with pytest.raises(FormatKindError):
        generate_dataset(tmp_path, 1, kind="pair", formats=["dota"])
    assert main(["synth", "--out", str(tmp_path / "ok"), "--n", "2", "--kind", "ms", "--size", "32", "--formats", "eurosat"]) == 0


# --------------------------------------------------------------------------- the same readers on real data


@pytest.mark.realdata
def test_readers_on_real_rsvqa(rs_samples):
    lr = R.read_rsvqa(rs_samples / "rsvqa" / "LR_reduced")
    hr = R.read_rsvqa(rs_samples / "rsvqa" / "HR_reduced", "train")
    assert {i.type for i in lr} == {"presence", "comp", "count", "rural_urban"}
    assert {i.type for i in hr} == {"presence", "comp", "count", "area"}
    assert sum(i.image_path is not None for i in lr) > 100


@pytest.mark.realdata
def test_readers_on_real_dota_levir_isaid(rs_samples):
    rows = R.read_dota(rs_samples / "dota")
    meta, objs = rows[0][1], rows[0][2]
    assert float(meta["gsd"]) == pytest.approx(0.266, abs=1e-3) and len(objs) == 64
    cd = R.read_levir_cd(rs_samples / "change_detection" / "samples_LEVIR")
    assert len(cd) == 6 and all(R.load_change_label(lab).dtype == bool for _, _, lab in cd)
    base = rs_samples / "isaid" / "val" / "images"
    inst = R.read_isaid_masks(base / "P0003_instance_color_RGB.png", base / "P0003_instance_id_RGB.png")
    assert inst and {"Small_Vehicle", "Large_Vehicle", "storage_tank"} >= {i.cls for i in inst} - {"unknown"}
    caps = R.read_change_tokens(rs_samples / "change_captioning" / "tokens" / "train_000016.txt")
    assert len(caps) == 5 and "houses" in caps[0]
    eu = R.read_eurosat(rs_samples / "format_only_synthetic" / "eurosat_ms", "test")
    assert {c for _, c in eu} == {"AnnualCrop", "Forest"}


def test_dior_rsvg_lists_object_indices_that_name_each_expression(hr_out):
    import json

    scenes = [json.loads(p.read_text()) for p in sorted((hr_out / "geosynth" / "val").glob("*.json"))]
    expected = [(r["text"], [round(v) for v in next(o for o in s["objects"] if o["id"] == r["object_id"])["box"]]) for s in scenes for r in s["referring"]]
    listed = [int(t) for t in (hr_out / "dior-rsvg" / "val.txt").read_text().split()]
    assert listed == list(range(len(expected)))  # object indices, not image numbers
    got = [(r["description"], [round(v) for v in r["box"]]) for r in R.read_dior_rsvg(hr_out / "dior-rsvg", "val")]
    assert got == expected


def test_dior_rsvg_roundtrip_with_ids_out_of_order(tmp_path):
    """The referred object is found by its id, not its list position, and the index file names it."""
    from geoassist.data_recipes import build, read_records
    from geoassist.formats import parse
    from geoassist.synth import generate_scene
    from geoassist.synth.encode import Encoded
    from geoassist.synth.exporters import DIORRSVGExporter
    from geoassist.synth.types import ReferringExpression

    exporter = DIORRSVGExporter(tmp_path, "val", "hr")
    truth = []
    for index, seed in enumerate((5, 6)):
        scene = generate_scene(seed, "hr", scene_class="parking_lot", size=256)
        a = scene.annotation
        things = a.things()
        assert len(things) >= 3
        renumber = {o.id: 40 - 3 * n for n, o in enumerate(a.objects)}  # ids 40, 37, 34…: descending, gaps
        for o in a.objects:
            o.id = renumber[o.id]
        a.objects.reverse()
        target = things[2]  # not the first object in the list, and its id is not its position
        assert a.objects.index(target) != target.id and a.objects[0] is not target
        decoy = a.objects[0]
        a.referring = [
            ReferringExpression(f"the decoy {index}", decoy.id, list(decoy.box)),
            ReferringExpression(f"the target {index}", target.id, list(target.box)),
        ]
        exporter.add(index, scene, Encoded(scene))
        truth += [(r.text, [round(v) for v in a.object(r.object_id).box]) for r in a.referring]
    exporter.close()
    root = tmp_path / "dior-rsvg"
    assert (root / "val.txt").read_text().split() == ["0", "1", "2", "3"]
    back = R.read_dior_rsvg(root, "val")
    assert [(r["description"], [round(v) for v in r["box"]]) for r in back] == truth
    assert [r["index"] for r in back] == [0, 1, 2, 3]
    # the data recipe, which follows the published layout, reads the same expressions and boxes
    manifest = build("dior_rsvg", root, tmp_path / "records")
    assert set(manifest["by_split"]) == {"val"} and manifest["rejected"] == {}
    referring = {r["conversations"][0]["content"].split("] ", 1)[1]: r for r in read_records(tmp_path / "records") if r["task"] == "referring" and r["answer"] != "none"}
    for text, box in truth:
        assert referring[text]["targets"]["boxes"][0]["box"] == pytest.approx(box)
        assert parse(referring[text]["answer"], (256, 256)).boxes[0].box == pytest.approx(box, abs=0.3)


def test_dior_rsvg_reader_explains_a_bad_split_file(tmp_path):
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "val.txt").write_text("00001.jpg\n")
    with pytest.raises(R.DatasetFormatError, match="object indices"):
        R.read_dior_rsvg(tmp_path, "val")
    (tmp_path / "val.txt").write_text("3\n")
    with pytest.raises(R.DatasetFormatError, match="do not belong together"):
        R.read_dior_rsvg(tmp_path, "val")
