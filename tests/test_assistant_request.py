"""The request object: one AskRequest from every face, cancel between tokens and tiles, progress, the typed Answer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from affine import Affine
from conftest import noise_pngs
from rasterio.crs import CRS
from shapely.geometry import Point, shape

from geoassist.answer import Answer, AnswerBox, AnswerMask, AnswerOBox, AnswerStream
from geoassist.assistant import Assistant
from geoassist.errors import GeoAssistError
from geoassist.geo import Georef
from geoassist.io import Image
from geoassist.request import AskRequest, CancelToken, ImageOptions, TilingOptions


@pytest.fixture
def assistant(make_tiny):
    return Assistant(make_tiny(seed=0))


@pytest.fixture
def png(tmp_path):
    return noise_pngs(tmp_path, ["scene.png"], (60, 90), seed=1)[0]


PIECE = "s"


def _endless(assistant, cancel: CancelToken | None, after: int, log: list):
    """generate_steps that never ends on its own; it cancels ``cancel`` after ``after`` steps."""
    model = assistant.model
    token = model.tokenizer(PIECE, add_special_tokens=False).input_ids[0]
    assert model.tokenizer.decode([token]) == PIECE

    def steps(input_ids, *args, **kwargs):
        rows = input_ids.shape[0]
        try:
            for step in range(kwargs.get("max_new_tokens", 10_000)):
                if cancel is not None and step == after:
                    cancel.cancel()
                log.append(step)
                yield torch.full((rows,), token)
        finally:
            log.append("closed")

    return steps


def _replaying(model, text: str, calls: list | None = None):
    """generate_steps that writes ``text`` and the end token in every row; ``calls`` hears batch sizes."""
    ids = model.tokenizer(text, add_special_tokens=False).input_ids + [model.end_token_id]

    def steps(input_ids, *args, **kwargs):
        if calls is not None:
            calls.append(input_ids.shape[0])
        for t in ids:
            yield torch.full((input_ids.shape[0],), t)

    return steps


# ------------------------------------------------------------------ the request


def test_build_gathers_the_keyword_arguments_into_one_request():
    request = AskRequest.build(
        ["a.tif", "b.tif"], "What changed?", images=["c.tif"], task="change_qa",
        bands="B04", do_sample=True, temperature=0.3, top_p=0.5, seed=7, max_tiles=3,
        tiling={"overlap": 0.25},
    )  # fmt: skip
    assert request.images == ["a.tif", "b.tif", "c.tif"]
    assert request.image_options == ImageOptions(("B04",))
    assert request.sampling.do_sample and request.sampling.temperature == 0.3
    assert request.sampling.top_p == 0.5 and request.seed == 7
    assert request.tiling == TilingOptions(max_tiles=3, overlap=0.25)
    assert AskRequest.build("a.tif", tiling=False).tiling is None
    assert not request.cancelled and request.replace(prompt="x").prompt == "x"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"task": "fly"}, "unknown task"),
        ({"region": [1, 2, 3]}, "four pixel numbers"),
        ({"region": ["a", 1, 2, 3]}, "four pixel numbers"),
        ({"max_new_tokens": 0}, "at least 1"),
        ({"tiling": {"tile_size": 3}}, "unknown tiling option"),
        ({"tiling": "yes"}, "TilingOptions"),
        ({"max_tiles": -1}, "max_tiles"),
    ],
)
def test_bad_requests_say_what_to_do(options, message):
    with pytest.raises(GeoAssistError, match=message):
        AskRequest.build("a.png", "ships", **options)


def test_ask_and_answer_and_batch_agree(assistant, png):
    asked = assistant.ask(png, "ships", task="detect", max_new_tokens=6)
    answered = assistant.answer(AskRequest.build(png, "ships", task="detect", max_new_tokens=6))
    batched = assistant.ask_batch(
        [AskRequest.build(png, "ships", task="detect", max_new_tokens=6)], batch_size=1
    )
    assert asked.raw == answered.raw == batched[0].raw
    assert not asked.stopped and "stopped" not in asked.to_dict()
    with pytest.raises(GeoAssistError, match="does not stream"):
        assistant.ask_batch([AskRequest.build(png, "ships", stream=True)])


# ------------------------------------------------------------------ cancelling


def test_cancel_stops_generation_between_tokens(assistant, png, monkeypatch):
    cancel, log = CancelToken(), []
    monkeypatch.setattr(assistant.model, "generate_steps", _endless(assistant, cancel, 3, log))
    answer = assistant.ask(png, "Describe.", cancel=cancel, max_new_tokens=500)
    assert answer.stopped and answer.to_dict()["stopped"] is True
    assert log == [0, 1, 2, 3, "closed"]  # the token of step 3 is kept, then generation stops
    assert answer.raw == PIECE * 4


def test_cancel_stops_a_stream_and_a_batch(assistant, png, monkeypatch):
    cancel, log = CancelToken(), []
    monkeypatch.setattr(assistant.model, "generate_steps", _endless(assistant, cancel, 2, log))
    stream = assistant.ask(png, "Describe.", cancel=cancel, stream=True, max_new_tokens=500)
    assert isinstance(stream, AnswerStream)
    text = "".join(stream)
    assert stream.answer.stopped and stream.answer.text == text and log[-1] == "closed"

    cancel, log = CancelToken(), []
    monkeypatch.setattr(assistant.model, "generate_steps", _endless(assistant, cancel, 4, log))
    requests = [
        AskRequest.build(png, "Describe.", cancel=cancel, max_new_tokens=40),
        AskRequest.build(png, "Describe.", max_new_tokens=40),  # not cancelled: runs to its budget
    ]
    first, second = assistant.ask_batch(requests, batch_size=2)
    assert first.stopped and not second.stopped
    assert first.raw == PIECE * 5 and second.raw == PIECE * 40


def test_large_scene_cancel_between_tiles_and_progress(assistant, monkeypatch):
    model = assistant.model
    monkeypatch.setattr(model, "generate_steps", _replaying(model, "none"))
    rng = np.random.default_rng(3)
    scene = Image(rng.integers(0, 255, (300, 300, 3), dtype=np.uint8), ["red", "green", "blue"])
    tiling = {"tile_px": 64, "overlap": 0.25, "min_side_px": 256, "batch_size": 2}
    seen: list[tuple[int, int]] = []
    whole = assistant.ask(scene, "cars", task="detect", tiling=tiling, max_tiles=500,
                          progress=lambda done, total: seen.append((done, total)))  # fmt: skip
    total = whole.coverage["tiles_read"]
    assert total > 4 and whole.coverage["complete"] and not whole.stopped
    assert seen == [(min(k + 2, total), total) for k in range(0, total, 2)]

    cancel = CancelToken()

    def stop_after_two(done, total):
        if done >= 4:
            cancel.cancel()

    part = assistant.ask(scene, "cars", task="detect", tiling=tiling, max_tiles=500,
                         cancel=cancel, progress=stop_after_two)  # fmt: skip
    assert part.stopped and part.coverage["tiles_read"] == 4
    assert not part.coverage["complete"] and part.coverage["note"].startswith("stopped on request")


# ------------------------------------------------------------------ the answer


def test_typed_items_read_like_their_dicts():
    answer = Answer(
        text="x",
        boxes=[{"label": "ship", "box": [1.234, 2, 3, 4], "score": 0.5}],
        obboxes=[{"label": "pool", "obox": [10, 10, 4, 2, 0], "score": None}],
        image_size=(20, 20),
    )
    box = answer.boxes[0]
    assert isinstance(box, AnswerBox) and box.box == (1.23, 2.0, 3.0, 4.0)
    assert box["label"] == "ship" and box.get("score") == 0.5 and "tiles" not in box
    assert box == {"label": "ship", "box": [1.23, 2.0, 3.0, 4.0], "score": 0.5}
    assert isinstance(answer.obboxes[0], AnswerOBox)
    assert answer.obboxes[0]["corners"] == [[8.0, 9.0], [12.0, 9.0], [12.0, 11.0], [8.0, 11.0]]
    with pytest.raises(KeyError):
        box["box_map"]


def test_rescaled_moves_every_geometry_and_the_mask_stays_placed():
    georef = Georef(Affine(10, 0, 500_000, 0, -10, 4_650_000), CRS.from_epsg(32633), 400, 200)
    mask = np.zeros((20, 40), bool)
    mask[5:10, 10:20] = True  # image pixels 100..200 × 50..100 once the mask is 10× coarser
    small = Answer(
        text="x",
        boxes=[{"label": "a", "box": [1, 2, 3, 4], "score": None}],
        polygons=[{"label": "p", "points": [[0, 0], [4, 0], [4, 4]]}],
        masks=[AnswerMask(mask)],
        image_size=(40, 20),
    )
    big = small.rescaled(10, 10, (5, 0), image_size=(400, 200), georef=georef)
    assert small.boxes[0].box == (1, 2, 3, 4) and small.georef is None  # a copy
    assert big.boxes[0].box == (15.0, 20.0, 35.0, 40.0)
    assert big.polygons[0].points == [(5.0, 0.0), (45.0, 0.0), (45.0, 40.0)]
    assert big.masks[0].scale == (10, 10) and big.masks[0].offset == (5, 0)
    assert big.geo["mask_transform"] == list(georef.transform @ Affine(10, 0, 5, 0, 10, 0))[:6]
    assert big.to_dict()["boxes"][0]["box_map"] == [500_150.0, 4_649_600.0, 500_350.0, 4_649_800.0]
    mask_feature = big.to_geojson()["features"][-1]
    assert mask_feature["properties"]["kind"] == "mask"
    lon, lat = georef.pixel_to_lonlat(150 + 5, 75)
    assert shape(mask_feature["geometry"]).contains(Point(float(lon), float(lat)))


def test_several_masks_serialise_each():
    answer = Answer(
        text="x",
        masks=[AnswerMask(np.eye(3, dtype=bool), "a"), AnswerMask(np.ones((2, 2), bool), "b")],
        image_size=(3, 3),
    )
    data = answer.to_dict()
    assert data["mask"] == {"size": [3, 3], "counts": [0, 1, 3, 1, 3, 1]}
    assert [m["label"] for m in data["masks"]] == ["a", "b"]
    answer.mask = None
    assert answer.masks == [] and answer.to_dict()["mask"] is None


def test_the_task_registry_chooses_how_tiles_merge(assistant, monkeypatch):
    model = assistant.model
    calls = []
    steps = _replaying(model, "<ref>car</ref><box>100,100,300,300</box>", calls)
    monkeypatch.setattr(model, "generate_steps", steps)
    rng = np.random.default_rng(4)
    scene = Image(rng.integers(0, 255, (300, 300, 3), dtype=np.uint8), ["red", "green", "blue"])
    tiling = {"tile_px": 64, "overlap": 0.25, "min_side_px": 256, "max_tiles": 500}
    detected = assistant.ask(scene, "cars", task="detect", tiling=tiling)  # detections
    # The same answer at the same place of every tile says nothing about the tiles: kept once.
    assert len(detected.boxes) == 1 and detected.coverage["merge"] == "geometry_merged"
    referred = assistant.ask(scene, "the car", task="refer", tiling=tiling)  # single
    assert len(referred.boxes) == 1 and referred.text == "car: 1"
    calls.clear()
    classified = assistant.ask(scene, "", task="classify", tiling=tiling)  # whole
    assert calls == [1] and classified.coverage["tiles_read"] == 0
    assert classified.coverage["merge"] == "overview_only"
    assert "as a whole" in classified.coverage["note"]
