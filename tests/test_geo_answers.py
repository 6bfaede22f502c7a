"""Answers on georeferenced GeoSynth scenes come with lon/lat geometry and export GeoJSON (API and CLI)."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image as PILImage
from pyproj import Transformer
from shapely.geometry import Point, shape

from geoassist import formats
from geoassist.assistant import Assistant
from geoassist.cli import main
from geoassist.geo import NotGeoreferencedError


@pytest.fixture(scope="module")
def geosynth_tif(tmp_path_factory):
    from geoassist.synth import generate_scene
    from geoassist.synth.encode import geotiff

    scene = generate_scene(4, "hr", scene_class="parking_lot", size=256, with_text=False)
    a = scene.annotation
    path = tmp_path_factory.mktemp("geo") / "parking.tif"
    path.write_bytes(geotiff(scene.image, a.crs, a.geotransform, ["red", "green", "blue"]))
    label, _ = Counter(o.cls for o in a.things()).most_common(1)[0]
    objects = [o for o in a.things() if o.cls == label][:12]
    return path, a, label, objects


def _steps_for(model, text):
    ids = model.tokenizer(text, add_special_tokens=False).input_ids + [model.end_token_id]

    def steps(*args, **kwargs):
        for t in ids:
            yield torch.tensor([t])

    return steps


def _true_centres_lonlat(annotation, objects):
    x0, dx, rx, y0, ry, dy = annotation.geotransform
    to_ll = Transformer.from_crs(annotation.crs, "EPSG:4326", always_xy=True)
    out = []
    for o in objects:
        cx, cy = o.center
        out.append(to_ll.transform(x0 + cx * dx + cy * rx, y0 + cx * ry + cy * dy))
    return out


def test_grounding_geojson_contains_the_true_centres(tiny_model, geosynth_tif, monkeypatch):
    path, annotation, label, objects = geosynth_tif
    assert len(objects) >= 3
    answer_text = formats.format_objects(
        [{"label": label, "box": o.box} for o in objects], (annotation.width, annotation.height)
    )
    assistant = Assistant(tiny_model)
    monkeypatch.setattr(assistant.model, "generate_steps", _steps_for(assistant.model, answer_text))
    answer = assistant.ask(path, label, task="ground")
    assert len(answer.boxes) == len(objects)
    assert answer.geo["crs"] == annotation.crs and answer.geo["gsd_m"] == pytest.approx(
        annotation.gsd_m, rel=1e-6
    )
    collection = answer.to_geojson()
    polygons = [
        shape(f["geometry"]) for f in collection["features"] if f["properties"]["kind"] == "box"
    ]
    for lon, lat in _true_centres_lonlat(annotation, objects):
        assert any(p.contains(Point(lon, lat)) for p in polygons)
    # The map-CRS box of each answer is the pixel box through the geotransform.
    x0, dx, _, y0, _, dy = annotation.geotransform
    bx1, by1, bx2, by2 = answer.boxes[0]["box"]
    assert answer.to_dict()["boxes"][0]["box_map"] == pytest.approx(
        [x0 + bx1 * dx, y0 + by2 * dy, x0 + bx2 * dx, y0 + by1 * dy], abs=1e-3
    )
    native = answer.to_geojson(crs="native")
    assert native["crs"]["properties"]["name"].endswith(annotation.crs.split(":")[1])


def test_cli_writes_geojson_and_refuses_without_georeference(
    geosynth_tif, tmp_path, monkeypatch, capsys
):
    from geoassist.model.vlm import GeoAssistModel

    path, annotation, label, objects = geosynth_tif
    text = formats.format_objects(
        [{"label": label, "box": o.box} for o in objects], (annotation.width, annotation.height)
    )

    def steps(self, *args, **kwargs):
        yield from _steps_for(self, text)()

    monkeypatch.setattr(GeoAssistModel, "generate_steps", steps)
    out = tmp_path / "answer.geojson"
    code = main(
        ["ask", str(path), label, "--task", "ground", "--model", "tiny", "--geojson", str(out)]
    )
    assert code == 0
    collection = json.loads(out.read_text())
    assert collection["type"] == "FeatureCollection" and len(collection["features"]) == len(objects)
    polygons = [shape(f["geometry"]) for f in collection["features"]]
    for lon, lat in _true_centres_lonlat(annotation, objects):
        assert any(p.contains(Point(lon, lat)) for p in polygons)
    assert "wrote" in capsys.readouterr().err

    png = tmp_path / "plain.png"
    PILImage.fromarray(np.zeros((40, 40, 3), np.uint8)).save(png)
    code = main(
        [
            "ask",
            str(png),
            label,
            "--task",
            "ground",
            "--model",
            "tiny",
            "--geojson",
            str(tmp_path / "x.geojson"),
        ]
    )
    assert code == 1 and "not georeferenced" in capsys.readouterr().err
    assert not (tmp_path / "x.geojson").exists()


def test_plain_images_say_they_are_not_georeferenced(tiny_model):
    answer = Assistant(tiny_model).ask(
        np.zeros((40, 40, 3), np.uint8), "Describe.", max_new_tokens=2
    )
    assert answer.geo == {"georeferenced": False, "note": answer.geo["note"]}
    with pytest.raises(NotGeoreferencedError):
        answer.to_geojson()
