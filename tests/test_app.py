"""The app's pieces without a browser: overlays, chat text, uploads, request checks, the Blocks."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from affine import Affine
from rasterio.crs import CRS

from geoassist.app import overlays, render
from geoassist.app.engine import Engine, Limits, timed
from geoassist.app.inputs import (
    BandChoice,
    InputError,
    compose_rgb,
    make_quicklook,
    parse_bands,
    stage_uploads,
)
from geoassist.assistant import Answer
from geoassist.geo import Georef
from geoassist.io import Image, load_image

REPO = Path(__file__).resolve().parents[1]


def _answer(**kw) -> Answer:
    base = dict(text="two buildings and a pool", task="detect", image_size=(200, 100))
    base.update(kw)
    return Answer(**base)


def _known_answer() -> Answer:
    return _answer(
        boxes=[
            {"label": "building", "box": [10, 10, 50, 40], "score": None},
            {"label": "building", "box": [100, 20, 140, 60], "score": None},
        ],
        obboxes=[
            {
                "label": "pool",
                "obox": [160, 70, 20, 10, 0],
                "corners": [[150, 65], [170, 65], [170, 75], [150, 75]],
                "score": None,
            }
        ],
        polygons=[{"label": "field", "points": [[60, 60], [90, 60], [90, 95], [60, 95]]}],
    )


# ----------------------------------------------------------------------------- overlays


def test_overlay_has_one_layer_per_label_with_outline_and_light_fill():
    rgb = np.full((100, 200, 3), 40, np.uint8)
    overlay = overlays.build_overlay(rgb, _known_answer(), tags=False)
    legends = [legend for _, legend in overlay.layers]
    assert legends == ["building (2)", "pool (1)", "field (1)"]
    assert overlay.counts == {"building": 2, "pool": 1, "field": 1}
    assert len(set(overlay.color_map.values())) == 3
    building = overlay.layers[0][0]
    assert building.shape == (100, 200)
    assert building[10, 30] == pytest.approx(overlays.OUTLINE_ALPHA)  # top edge of box 1
    assert building[25, 30] == pytest.approx(overlays.FILL_ALPHA)  # inside box 1
    assert building[40, 120] == pytest.approx(overlays.FILL_ALPHA)  # inside box 2
    assert building[80, 30] == 0  # outside both
    assert overlay.layers[1][0][70, 160] == pytest.approx(overlays.FILL_ALPHA)  # inside the pool
    np.testing.assert_array_equal(overlay.image, rgb)  # no tags asked for


def test_overlay_scales_geometry_to_the_display_image():
    rgb = np.zeros((50, 100, 3), np.uint8)  # the 200×100 original shown at half size
    overlay = overlays.build_overlay(rgb, _known_answer(), scale=0.5, tags=False)
    building = overlay.layers[0][0]
    assert building.shape == (50, 100)
    assert building[12, 15] == pytest.approx(overlays.FILL_ALPHA)  # centre of box 1 (30, 25) / 2
    assert building[35, 15] == 0


def test_mask_and_region_become_their_own_layers():
    mask = np.zeros((100, 200), bool)
    mask[50:, :100] = True
    answer = _answer(
        task="segment", mask=mask, history=[{"role": "user", "content": "<image>\n[segment] water"}]
    )
    overlay = overlays.build_overlay(
        np.zeros((50, 100, 3), np.uint8), answer, scale=0.5, region=[0, 0, 100, 50]
    )
    legends = [legend for _, legend in overlay.layers]
    assert legends == ["water (mask)", "your region"]
    area = overlay.layers[0][0]
    assert area[40, 20] == pytest.approx(overlays.MASK_ALPHA) and area[10, 80] == 0
    assert overlay.color_map["your region"] == overlays.REGION_COLOR


def test_no_answer_or_no_geometry_gives_the_plain_image():
    rgb = np.random.default_rng(0).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    for answer in (None, _answer(text="a farm")):
        overlay = overlays.build_overlay(rgb, answer)
        assert overlay.layers == [] and overlay.color_map == {}
        np.testing.assert_array_equal(overlay.image, rgb)
        assert overlay.annotated_value[1] == []


def test_tags_write_labels_on_the_image_and_flatten_burns_in_the_colours():
    rgb = np.full((100, 200, 3), 40, np.uint8)
    overlay = overlays.build_overlay(rgb, _known_answer())
    assert (overlay.image != rgb).any()  # label tags were drawn
    flat = np.asarray(overlays.flatten(overlay))
    assert flat.shape == (100, 200, 3)
    amber = np.array(overlays._hex_rgb(overlay.color_map["building (2)"]))
    assert np.abs(flat[25, 10].astype(int) - amber).max() <= 2  # left edge of box 1, fully opaque
    np.testing.assert_array_equal(flat[95, 195], rgb[95, 195])  # untouched corner


def test_region_from_clicks_orders_corners_and_refuses_lines():
    assert overlays.region_from_clicks((50, 40), (10, 80)) == [10, 40, 50, 80]
    assert overlays.region_from_clicks((5, 5), (5, 50)) is None


def _georeferenced(answer: Answer) -> Answer:
    # 10 m pixels in UTM 33N, upper-left corner at (500000, 4649800).
    georef = Georef(Affine(10, 0, 500000, 0, -10, 4649800), CRS.from_epsg(32633), 200, 100)
    answer.georef = georef
    return answer


def test_geometry_rows_carry_lonlat_for_georeferenced_answers():
    rows = overlays.geometry_rows(_georeferenced(_known_answer()))
    assert [r[2] for r in rows] == ["box", "box", "oriented box", "polygon"]
    assert rows[0][:4] == [1, "building", "box", "10, 10, 50, 40"]
    georef = Georef(Affine(10, 0, 500000, 0, -10, 4649800), CRS.from_epsg(32633))
    lon, lat = georef.pixel_to_lonlat(30.0, 25.0)
    shown_lon, shown_lat = (float(v) for v in rows[0][4].split(", "))
    assert shown_lon == pytest.approx(float(lon), abs=1e-5)
    assert shown_lat == pytest.approx(float(lat), abs=1e-5)
    assert 14 < shown_lon < 16 and 41 < shown_lat < 43  # UTM 33N, near 42° N
    plain = overlays.geometry_rows(_known_answer())
    assert plain[0][4] == ""


def test_geojson_only_for_georeferenced_answers_with_geometry(tmp_path):
    collection = overlays.answer_geojson(_georeferenced(_known_answer()))
    assert collection["type"] == "FeatureCollection"
    kinds = [f["properties"]["kind"] for f in collection["features"]]
    assert kinds == ["box", "box", "obox", "polygon"]
    lon, lat = collection["features"][0]["geometry"]["coordinates"][0][0]
    assert 14 < lon < 16 and 41 < lat < 43
    json.dumps(collection)  # serialisable as it is
    assert overlays.answer_geojson(_known_answer()) is None  # pixels only
    assert overlays.answer_geojson(_georeferenced(_answer(text="a farm"))) is None  # nothing drawn
    assert "EPSG:32633" in overlays.describe_geo(_georeferenced(_answer()))
    assert "not georeferenced" in overlays.describe_geo(_known_answer())


# ----------------------------------------------------------------------------- chat text


def test_preview_hides_grammar_and_half_written_tags():
    raw = "Found <ref>ship</ref><box>1,2,3,4</box><box>5,6,7,8</box> and <ref>pl"
    assert render.preview_text(raw) == "Found ship▭▭ and pl"
    assert render.preview_text("two <ref>ship</ref><bo") == "two ship"
    assert render.preview_text("<mask>16x16|0*16;") == " [mask] "
    assert render.preview_text("a < b & <script>x</script>") == "a &lt; b &amp; x"


def test_final_text_says_what_was_drawn():
    text = render.final_text(_known_answer())
    assert text.startswith("two buildings and a pool")
    assert "2 × building" in text and "1 × pool (rotated)" in text and "1 × field (outline)" in text
    assert "Nothing found" in render.final_text(_answer(text=""))
    assert "no text" in render.final_text(_answer(text="", task="caption"))
    cut = render.final_text(_answer(text="partial", task="caption"), cut_note=" (cut)")
    assert cut.endswith(" (cut)")


def test_citations_become_collapsible_messages_cited_first():
    answer = _answer(
        citations=[
            {"id": "a", "title": "Landsat", "source": "USGS", "url": "", "cited": False},
            {
                "id": "b",
                "title": "Sentinel-2 bands",
                "source": "ESA",
                "url": "https://x.test/b",
                "cited": True,
            },
        ]
    )
    messages = render.citation_messages(answer, passage_for={"b": "B08 is NIR at 10 m."}.get)
    assert [m["metadata"]["title"] for m in messages] == [
        "📄 [b] Sentinel-2 bands — ESA",
        "📄 [a] Landsat — USGS (retrieved, not cited)",
    ]
    assert messages[0]["content"].startswith("B08 is NIR at 10 m.")
    assert "https://x.test/b" in messages[0]["content"]
    assert "not available" in messages[1]["content"]
    assert render.citation_messages(_answer()) == []


# ----------------------------------------------------------------------------- uploads


def _png(path: Path, size=(64, 48)) -> Path:
    PIL.Image.fromarray(
        np.random.default_rng(1).integers(0, 255, (size[1], size[0], 3), np.uint8)
    ).save(path)
    return path


@pytest.fixture
def upload_dir(tmp_path) -> Path:
    folder = tmp_path / "uploads"
    folder.mkdir()
    return folder


def test_stage_uploads_puts_side_cars_beside_their_image(upload_dir, tmp_path):
    # Gradio keeps each upload in its own folder; staging brings them together.
    (upload_dir / "a").mkdir()
    (upload_dir / "b").mkdir()
    image = _png(upload_dir / "a" / "tile.png")
    world = upload_dir / "b" / "tile.pgw"
    world.write_text("0.5\n0\n0\n-0.5\n1000.25\n2000.25\n")
    staged = stage_uploads(
        [image, world], allowed_roots=[upload_dir], staging_root=tmp_path, max_images=4
    )
    assert [p.name for p in staged.images] == ["tile.png"] and staged.names == ["tile.png"]
    assert load_image(staged.images[0]).transform == Affine(0.5, 0, 1000.0, 0, -0.5, 2000.5)
    staged.cleanup()
    assert not staged.folder.exists()
    assert (
        stage_uploads(None, allowed_roots=[upload_dir], staging_root=tmp_path, max_images=4) is None
    )


def test_stage_uploads_never_reads_paths_outside_the_upload_folder(upload_dir, tmp_path):
    outside = _png(tmp_path / "secret.png")
    with pytest.raises(InputError, match="upload"):
        stage_uploads([outside], allowed_roots=[upload_dir], staging_root=tmp_path, max_images=4)
    with pytest.raises(InputError, match="upload"):
        stage_uploads(
            [upload_dir / ".." / "secret.png"],
            allowed_roots=[upload_dir],
            staging_root=tmp_path,
            max_images=4,
        )
    with pytest.raises(InputError, match="upload"):
        stage_uploads(
            ["/etc/passwd"], allowed_roots=[upload_dir], staging_root=tmp_path, max_images=4
        )


def test_stage_uploads_refuses_wrong_files_and_counts(upload_dir, tmp_path):
    notes = upload_dir / "notes.txt"
    notes.write_text("hi")
    with pytest.raises(InputError, match="not an image"):
        stage_uploads([notes], allowed_roots=[upload_dir], staging_root=tmp_path, max_images=4)
    prj = upload_dir / "x.prj"
    prj.write_text("")
    with pytest.raises(InputError, match="side-car"):
        stage_uploads([prj], allowed_roots=[upload_dir], staging_root=tmp_path, max_images=4)
    pngs = [_png(upload_dir / f"{i}.png") for i in range(3)]
    with pytest.raises(InputError, match="at most 2"):
        stage_uploads(pngs, allowed_roots=[upload_dir], staging_root=tmp_path, max_images=2)


def test_parse_bands():
    assert parse_bands("4,3,2") == [4, 3, 2]
    assert parse_bands(" B08 B04 B03 ") == ["B08", "B04", "B03"]
    assert parse_bands("") is None and parse_bands(None) is None
    with pytest.raises(InputError, match="three bands"):
        parse_bands("1,2")
    assert BandChoice.from_form("", "auto", "auto") == BandChoice()
    assert BandChoice.from_form("", "naip", "false_color").uses_sensor


def _s2_like(h=20, w=30) -> Image:
    names = ["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12"]
    array = np.random.default_rng(2).integers(0, 10000, (h, w, len(names)), dtype=np.uint16)
    return Image(array, names)


def test_compose_rgb_detects_sentinel2_and_follows_choices():
    image = _s2_like()
    rgb, note = compose_rgb(image, BandChoice())
    assert rgb.shape == (20, 30, 3) and rgb.dtype == np.uint8 and "true colour" in note
    rgb_b, note_b = compose_rgb(image, BandChoice(bands=("B08", "B04", "B03")))
    assert note_b == "bands B08, B04, B03" and not np.array_equal(rgb, rgb_b)
    _, note_c = compose_rgb(image, BandChoice(composite="false_color"))
    assert note_c.startswith("false colour")
    unnamed = Image(np.zeros((5, 5, 5), np.uint16), [f"band_{i}" for i in range(1, 6)])
    with pytest.raises(InputError, match="Bands"):
        compose_rgb(unnamed, BandChoice())


def test_quicklook_reads_a_large_geotiff_reduced(tmp_path):
    import rasterio

    path = tmp_path / "scene.tif"
    data = np.random.default_rng(3).integers(0, 4000, (4, 600, 900), dtype=np.uint16)
    profile = dict(driver="GTiff", width=900, height=600, count=4, dtype="uint16",
                   crs="EPSG:32633", transform=Affine(10, 0, 500000, 0, -10, 4649800))  # fmt: skip
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
        ds.descriptions = ("red", "green", "blue", "nir")
    look = make_quicklook(path, max_side=300, min_side=100)
    assert look.rgb.shape == (200, 300, 3) and look.scale == pytest.approx(1 / 3)
    assert look.size == (900, 600) and look.georeferenced
    assert "EPSG:32633" in look.describe and "10 m/px" in look.describe
    false = make_quicklook(path, BandChoice(bands=("nir", "red", "green")), max_side=300)
    assert false.bands_note == "bands nir, red, green"


def test_quicklook_enlarges_small_images_by_whole_factors():
    look = make_quicklook(REPO / "examples" / "residential.png", max_side=1024, min_side=768)
    assert look.rgb.shape == (768, 768, 3) and look.scale == 3
    original = np.asarray(PIL.Image.open(REPO / "examples" / "residential.png").convert("RGB"))
    np.testing.assert_array_equal(look.rgb[::3, ::3], original)
    assert "RGB" in look.describe and "not georeferenced" in look.describe


def test_quicklook_of_a_corrupt_file_is_an_input_error(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(InputError, match="broken.png"):
        make_quicklook(bad)


# ----------------------------------------------------------------------------- engine


@pytest.fixture(scope="module")
def engine():
    from conftest import build_tiny

    from geoassist.assistant import Assistant

    return Engine(
        Assistant(build_tiny()), model_name="tiny", load_s=0.1, limits=Limits(max_new_tokens=4)
    )


def test_checks_give_messages_a_user_can_act_on(engine):
    with pytest.raises(InputError, match="limit is 2,000"):
        engine.check("x" * 2001, "vqa", 1, None)
    with pytest.raises(InputError, match="two images"):
        engine.check("", "change", 1, None)
    with pytest.raises(InputError, match="upload an image"):
        engine.check("ships", "detect", 0, None)
    with pytest.raises(InputError, match="mark a region"):
        engine.check("", "region", 1, None)
    with pytest.raises(InputError, match="needs a prompt"):
        engine.check(" ", "detect", 1, None)
    with pytest.raises(InputError, match="type a question"):
        engine.check("", None, 1, None)
    with pytest.raises(InputError, match="at most"):
        engine.check("hi", None, engine.max_images + 1, None)
    assert engine.check(" ships ", "detect", 1, None) == "ships"
    assert engine.check("", "caption", 1, None) == ""


def test_tasks_and_status(engine):
    labels = [c.label for c in engine.task_choices()]
    assert "Find objects" in labels and "Ask the knowledge store" not in labels  # no store here
    assert engine.task_for("Find objects") == "detect" and engine.task_for("detect") == "detect"
    assert engine.task_for("Chat") is None and engine.task_for("") is None
    with pytest.raises(InputError, match="unknown task"):
        engine.task_for("fly")
    assert "tiny" in engine.status_line() and "cpu" in engine.status_line()


def test_engine_streams_an_answer_for_an_example_image(engine):
    stream = engine.stream([REPO / "examples" / "residential.png"], "buildings", task="detect")
    pieces = list(stream)
    assert stream.answer is not None and stream.answer.task == "detect"
    assert "".join(pieces).strip() == stream.answer.raw
    assert stream.answer.image_size == (256, 256)


def test_timed_stops_and_closes_a_slow_stream():
    closed = []

    def slow():
        try:
            for i in range(100):
                time.sleep(0.01)
                yield str(i)
        finally:
            closed.append(True)

    out = list(timed(slow(), timeout_s=0.03))
    assert out[-1] == ("", True) and len(out) < 20 and closed == [True]


def test_build_app_exposes_only_the_ask_endpoint(engine):
    import gradio as gr

    from geoassist.app.ui import build_app

    demo = build_app(engine)
    assert isinstance(demo, gr.Blocks)
    public = [fn.api_name for fn in demo.fns.values() if fn.api_visibility == "public"]
    assert public == ["ask"]


def test_serve_command_is_registered_with_safe_defaults():
    from geoassist.cli import build_parser

    args = build_parser().parse_args(["serve", "--model", "tiny"])
    assert args.host == "127.0.0.1" and args.share is False and args.port == 7860
    assert args.concurrency >= 1 and args.max_file_size and args.timeout > 0


def test_serve_command_rejects_bad_numbers(capsys):
    from geoassist.cli import main

    assert main(["serve", "--model", "tiny", "--concurrency", "0"]) == 1
    assert "--concurrency must be at least 1" in capsys.readouterr().err
    assert main(["serve", "--model", "tiny", "--port", "70000"]) == 1


def test_knowledge_store_answers_show_their_passages():
    from conftest import build_tiny

    rag = pytest.importorskip("geoassist.rag")
    from geoassist.assistant import Assistant

    store = rag.KnowledgeStore(rag.HashingEmbedder(64))
    store.add(
        [
            rag.Entry(
                id="s2-b8",
                text="B8 is the Sentinel-2 NIR band at 10 m.",
                title="Sentinel-2 B8",
                source="ESA",
            ),
            rag.Entry(
                id="lcz-7",
                text="LCZ 7 is lightweight low-rise.",
                title="LCZ 7",
                source="Stewart and Oke",
            ),
        ]
    )
    engine = Engine(
        Assistant(build_tiny(), kb=store),
        model_name="tiny",
        kb_name="test",
        limits=Limits(max_new_tokens=4),
    )
    assert "Ask the knowledge store" in [c.label for c in engine.task_choices()]
    assert "knowledge store: test" in engine.status_line()
    stream = engine.stream([], "Which Sentinel-2 band is NIR?", task="knowledge")
    list(stream)
    ids = [c["id"] for c in stream.answer.citations]
    assert "s2-b8" in ids
    messages = render.citation_messages(stream.answer, passage_for=lambda i: store.get(i).text)
    shown = {m["metadata"]["title"].split("]")[0].split("[")[1]: m["content"] for m in messages}
    assert shown["s2-b8"].startswith("B8 is the Sentinel-2 NIR band")


# ------------------------------------------------------------ the analyst's issues


def test_finished_answers_hold_no_tags_and_say_trouble_in_words():
    answer = _answer(
        text="Two buildings.</passage> <ref>pool</ref>",
        parse_errors=["dropped <box> #1 '1,2': expected 4 numbers", "another"],
        notes=["the oldest turn was left out to fit the model's context (the images are kept)"],
        stopped=True,
        coverage={"note": "read 4 of 16 tiles"},
    )
    text = render.final_text(answer)
    assert "<" not in text.replace("&lt;", "") and "passage" not in text and "part(s)" not in text
    assert "Two buildings." in text and "pool" in text
    assert "were not in a form GeoAssist can draw" in text
    assert "oldest turn was left out" in text and "read 4 of 16 tiles" in text
    assert text.rstrip().endswith(render.STOPPED_NOTE)
    one = render.final_text(_answer(text="ok", parse_errors=["x"]))
    assert "Part of the model's answer" in one


def test_auto_task_follows_the_prompt_and_the_inputs(engine):
    from geoassist.app.engine import AUTO_TASK, infer_task

    assert infer_task("How many buildings are there?", 1) == (
        "vqa",
        "How many buildings are there?",
    )
    assert infer_task("", 1) == ("caption", "")
    assert infer_task("Describe the harbour", 1) == ("caption", "")
    assert infer_task("find ships", 1) == ("detect", "ships")
    assert infer_task("", 2) == ("change", "")
    assert infer_task("What changed?", 2) == ("change", "")
    assert infer_task("Were new roads built?", 2) == ("change_qa", "Were new roads built?")
    assert infer_task("hello there", 1) == (None, "hello there")
    assert infer_task("Which band is NIR?", 0) == (None, "Which band is NIR?")
    assert infer_task("How many ships?", 1, has_kb=True) == (None, "How many ships?")
    assert engine.task_choices()[0].task == AUTO_TASK and engine.task_for("Auto") == AUTO_TASK
    request = engine.request([REPO / "examples" / "residential.png"], "", task=AUTO_TASK)
    assert request.task == "caption"


def test_index_composites_use_a_diverging_ramp_with_a_scale_bar(tmp_path):
    from geoassist.app.inputs import INDEX_RAMPS, index_ramp, ramp_legend

    values = np.array([[-1.0, 0.0, 1.0, np.nan]], np.float32)
    rgb = index_ramp(values, "ndvi")
    low, mid, high = INDEX_RAMPS["ndvi"]
    assert [tuple(p) for p in rgb[0, :3]] == [low, mid, high] and tuple(rgb[0, 3]) == (0, 0, 0)
    image = _s2_like()
    shown, note = compose_rgb(image, BandChoice(composite="ndvi"))
    assert shown.shape == (20, 30, 3) and "NDVI" in note and "ramp" in note
    assert len({tuple(p) for p in shown.reshape(-1, 3)}) > 20  # colours, not one grey
    legend = ramp_legend("ndwi")
    assert "linear-gradient" in legend and "water" in legend and "−1" in legend
    path = tmp_path / "s2.tif"
    import rasterio

    with rasterio.open(path, "w", driver="GTiff", width=30, height=20, count=12,
                       dtype="uint16") as dst:  # fmt: skip
        dst.write(np.moveaxis(image.array, 2, 0))
        dst.descriptions = tuple(image.band_names)
    look = make_quicklook(path, BandChoice(composite="ndvi"))
    assert "linear-gradient" in look.legend
    assert make_quicklook(path, BandChoice()).legend == ""


def test_an_unnamed_four_band_stack_says_which_bands_are_shown():
    image = Image(np.random.default_rng(0).integers(0, 4000, (8, 8, 4), dtype=np.uint16),
                  [f"band_{i}" for i in range(1, 5)])  # fmt: skip
    _, note = compose_rgb(image, BandChoice())
    assert "bands 1, 2, 3 as red, green, blue" in note and "Bands" in note


def test_messages_name_the_users_file_not_server_paths(tmp_path):
    from geoassist.app.inputs import user_facing

    staged = tmp_path / "geoassist-app-x" / "conv-y" / "scene.tif"
    text = f"{staged} is not a GeoTIFF GeoAssist can read; also see {tmp_path}/other/x.png"
    out = user_facing(text, {str(staged): "my scene.tif"}, [tmp_path])
    assert out == "my scene.tif is not a GeoTIFF GeoAssist can read; also see x.png"


def test_a_bomb_through_the_upload_path_is_refused_quickly_by_name(upload_dir, tmp_path):
    from test_batch import _bomb_png

    bomb = upload_dir / "bomb.png"
    bomb.write_bytes(_bomb_png())
    staged = stage_uploads([bomb], allowed_roots=[upload_dir], staging_root=tmp_path,
                           max_images=4)  # fmt: skip
    started = time.perf_counter()
    with pytest.raises(InputError) as caught:
        make_quicklook(staged.images[0])
    assert time.perf_counter() - started < 5
    message = str(caught.value)
    assert "bomb.png" in message and "100000×100000" in message
    assert str(tmp_path) not in message and str(upload_dir) not in message
    notes = upload_dir / "notes.txt"
    notes.write_text("hello")
    with pytest.raises(InputError, match="notes.txt is not an image GeoAssist reads"):
        stage_uploads([notes], allowed_roots=[upload_dir], staging_root=tmp_path, max_images=4)


def test_geometry_without_georeference_downloads_as_pixel_json(tmp_path):
    from geoassist.app.inputs import Quicklook
    from geoassist.app.ui import Session, StagingArea, _downloads

    session = Session()
    session.answer = _known_answer()
    session.looks = [
        Quicklook(np.zeros((100, 200, 3), np.uint8), 1.0, (200, 100), "x", "", (), False)
    ]
    session.turn = 1
    files, _, rows = _downloads(session, StagingArea())
    names = [Path(f).name for f in files]
    assert names == ["geoassist-answer-1-pixels.json", "geoassist-answer-1.png"] and rows
    record = json.loads(Path(files[0]).read_text())
    assert record["boxes"][0]["box"] == [10, 10, 50, 40] and "pixels" in record["coordinates"]


def test_timed_cancels_the_request_when_time_runs_out():
    from geoassist.request import CancelToken

    token = CancelToken()

    def slow():
        for i in range(100):
            time.sleep(0.01)
            yield str(i)

    out = list(timed(slow(), timeout_s=0.03, cancel=token))
    assert out[-1] == ("", True) and token.cancelled


def test_shorten_history_drops_earlier_passages_then_the_oldest_turns_keeping_images():
    from geoassist.chat import shorten_history
    from geoassist.rag.context import CONTEXT_CLOSE, CONTEXT_NOTE, CONTEXT_OPEN

    block = f'{CONTEXT_NOTE}\n{CONTEXT_OPEN}\n<passage id="a">text</passage>\n{CONTEXT_CLOSE}'
    history = [
        {"role": "user", "content": f"<image><image>\n[knowledge] {block}Question: one?"},
        {"role": "assistant", "content": "first [a]"},
        {"role": "user", "content": "two?"},
        {"role": "assistant", "content": "second"},
    ]
    shorter, kind = shorten_history(history)
    assert kind == "passages" and "<passage" not in shorter[0]["content"]
    assert (
        shorter[0]["content"].startswith("<image><image>")
        and "Question: one?" in shorter[0]["content"]
    )
    shorter, kind = shorten_history(shorter)
    assert kind == "turn" and [m["content"] for m in shorter] == ["<image><image>\ntwo?", "second"]
    shorter, kind = shorten_history(shorter)
    assert kind == "turn" and shorter == []
    assert shorten_history([]) is None


def test_a_long_chat_leaves_out_old_turns_instead_of_failing(png_path, capsys, monkeypatch):
    import io

    import geoassist.checkpoint as checkpoint
    from geoassist.cli import main
    from geoassist.config import load_preset

    # A context with room for one turn of this chat, not for four.
    monkeypatch.setattr(
        checkpoint, "load_preset", lambda name: _short_context(load_preset(name), 330)
    )
    question = "Describe the roads and the buildings near the river in detail please"
    monkeypatch.setattr("sys.stdin", io.StringIO(f"{question}\n" * 4 + "/quit\n"))
    assert main(["chat", str(png_path), "--model", "tiny", "--max-new-tokens", "8"]) == 0
    out = capsys.readouterr().out
    assert out.count("geoassist> ") == 4 and "error" not in out
    assert "left out to fit the model's context" in out


def _short_context(config, tokens: int):
    config.lm.max_context = tokens
    return config


@pytest.fixture
def png_path(tmp_path) -> Path:
    return _png(tmp_path / "scene.png")


def test_a_stray_context_tag_never_ends_an_answer_on_any_face(monkeypatch):
    import torch
    from conftest import build_tiny

    from geoassist.assistant import Assistant

    model = build_tiny()
    text = "The river flows north.</passage> <|im_end|>"
    ids = model.tokenizer(text, add_special_tokens=False, split_special_tokens=True).input_ids

    def steps(input_ids, *args, **kwargs):
        for t in [*ids, model.end_token_id]:
            yield torch.full((input_ids.shape[0],), t)

    monkeypatch.setattr(model, "generate_steps", steps)
    assistant = Assistant(model)
    image = np.full((40, 40, 3), 90, np.uint8)
    for answer in (
        assistant.ask(image, "Which way does the river flow?"),
        assistant.ask(None, "Which way does the river flow?"),
        assistant.ask_batch([{"image": image, "prompt": "Where?"}])[0],
    ):
        assert answer.text == "The river flows north.", answer.text
        assert "</passage>" in answer.raw  # what the model said is kept as it was
