"""Large scenes end to end on the tiny model, with a stand-in detector in place of generation.

The stand-in ("blob detector") answers from the pixels the encoder actually receives: it
finds bright connected blobs in each image's pixel tensor and writes their boxes in the
answer grammar. So tiling, windowed reading, resampling, parsing and merging all run for
real; only the network's text is replaced by something whose right answer is known.
"""

from __future__ import annotations

import http.server
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from affine import Affine
from rasterio.crs import CRS
from scipy import ndimage

from geoassist import formats
from geoassist.assistant import Answer, AnswerStream, Assistant
from geoassist.io import Image
from geoassist.large.sources import RasterSource

TRANSFORM = Affine(0.5, 0, 500_000.0, 0, -0.5, 4_100_000.0)  # 0.5 m, UTM 33N
CRS_UTM = CRS.from_epsg(32633)


def _scene(width=448, height=352, seed=0, n=50):
    """Dark noisy ground with bright squares (6–14 px) at least 6 px apart; some straddle tiles."""
    rng = np.random.default_rng(seed)
    array = rng.integers(10, 40, (height, width, 3), dtype=np.uint8)
    taken = np.zeros((height, width), bool)
    squares = []
    while len(squares) < n:
        s = int(rng.integers(6, 15))
        x, y = int(rng.integers(2, width - s - 2)), int(rng.integers(2, height - s - 2))
        if taken[max(0, y - 6) : y + s + 6, max(0, x - 6) : x + s + 6].any():
            continue
        taken[y : y + s, x : x + s] = True
        array[y : y + s, x : x + s] = 230
        squares.append((x, y, x + s, y + s))
    return array, squares, taken


def _write(path: Path, array: np.ndarray, **extra) -> Path:
    h, w, c = array.shape
    with rasterio.open(
        path, "w", driver="GTiff", width=w, height=h, count=c, dtype=array.dtype.name,
        crs=CRS_UTM, transform=TRANSFORM, tiled=True, blockxsize=128, blockysize=128, **extra,
    ) as dst:  # fmt: skip
        dst.write(np.moveaxis(array, 2, 0))
    return path


def blob_answer(pixels: torch.Tensor, config, task: str) -> str:
    """What an ideal detector would say about one encoder input (3, S, S)."""
    mean = torch.tensor(config.preprocess.mean).view(3, 1, 1)
    std = torch.tensor(config.preprocess.std).view(3, 1, 1)
    gray = (pixels.cpu() * std + mean).mean(0).numpy()
    mask = gray > 0.6
    size = (mask.shape[1], mask.shape[0])
    if task == "segment":
        return formats.format_mask(mask, (16, 16)) if mask.any() else "none"
    labels, _ = ndimage.label(mask)
    boxes = [
        (sl[1].start, sl[0].start, sl[1].stop, sl[0].stop)
        for sl in ndimage.find_objects(labels)
        if (sl[0].stop - sl[0].start) * (sl[1].stop - sl[1].start) >= 2
    ]
    if task == "vqa":
        return str(len(boxes))
    if task == "caption":
        return f"{len(boxes)} bright squares."
    if not boxes:
        return "none"
    return formats.format_objects([{"label": "square", "box": b} for b in boxes], size)


@pytest.fixture
def assistant(make_tiny, monkeypatch):
    model = make_tiny(seed=0)
    calls = {"images": 0, "text_only": 0, "tasks": []}

    def fake_generate(input_ids, attention_mask=None, pixel_values=None, **kwargs):
        rows = []
        has_image = (input_ids == model.image_token_id).any(dim=1).tolist()
        k = 0
        for i, with_image in enumerate(has_image):
            prompt = model.tokenizer.decode(input_ids[i][attention_mask[i].bool()].tolist())
            task = next((t for t in ("segment", "vqa", "caption") if f"[{t}]" in prompt), "detect")
            if with_image:
                text = blob_answer(pixel_values[k], model.config, task)
                k += 1
                calls["images"] += 1
            else:
                text = "A summary of the whole scene."
                calls["text_only"] += 1
            calls["tasks"].append(task)
            ids = model.tokenizer(text, add_special_tokens=False).input_ids
            rows.append(ids + [model.end_token_id])
        return rows

    def fake_steps(input_ids, attention_mask=None, pixel_values=None, **kwargs):
        rows = fake_generate(input_ids, attention_mask, pixel_values)
        for step in range(max(len(r) for r in rows)):
            yield torch.tensor([r[step] if step < len(r) else model.pad_token_id for r in rows])

    monkeypatch.setattr(model, "generate", fake_generate)
    monkeypatch.setattr(model, "generate_steps", fake_steps)
    a = Assistant(model)
    a.calls = calls
    return a


# tiny's encoder takes 32 px: tiles are read at 2×; scenes over 256 px are tiled.
OPTIONS = {"tile_px": 64, "overlap": 0.25, "min_side_px": 256}


def _centres_in(boxes, squares):
    found = 0
    for x1, y1, x2, y2 in squares:
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        found += any(b[0] <= cx <= b[2] and b[1] <= cy <= b[3] for b in boxes)
    return found


def test_tiled_detection_counts_every_object_once(assistant, tmp_path):
    array, squares, _ = _scene()
    path = _write(tmp_path / "scene.tif", array)
    answer = assistant.ask(path, "squares", task="detect", max_tiles=500, tiling=OPTIONS)
    cov = answer.coverage
    assert cov["mode"] == "tiled" and cov["complete"] and "note" not in cov
    assert cov["tiles_read"] == cov["tiles_total"] == 9 * 7
    boxes = [b["box"] for b in answer.boxes]
    assert len(boxes) == len(squares), f"{len(boxes)} merged boxes for {len(squares)} squares"
    assert _centres_in(boxes, squares) == len(squares)
    assert cov["counts"] == {"square": len(squares)} and answer.text == f"square: {len(squares)}"
    # Boxes are in pixels of the whole scene, within a 2 px read resolution of the truth.
    got = np.array(boxes)
    for square in squares:
        nearest = got[np.abs(got - np.array(square)).max(axis=1).argmin()]
        assert np.abs(nearest - np.array(square)).max() <= 2.5
    assert answer.image_size == (448, 352) and answer.geo["crs"] == "EPSG:32633"
    assert answer.to_dict()["boxes"][0]["polygon_lonlat"] and answer.boxes[0]["tiles"]
    # Exported as GeoJSON, the lon/lat boxes contain the true centres (through pyproj directly).
    from pyproj import Transformer
    from shapely.geometry import Point, shape

    to_ll = Transformer.from_crs(32633, 4326, always_xy=True)
    polygons = [shape(f["geometry"]) for f in answer.to_geojson()["features"]]
    for x1, y1, x2, y2 in squares:
        lon, lat = to_ll.transform(*(TRANSFORM * ((x1 + x2) / 2, (y1 + y2) / 2)))
        assert any(p.contains(Point(lon, lat)) for p in polygons)
    # The same scene shrunk to the encoder's 32 px loses nearly everything.
    downscaled = assistant.ask(path, "squares", task="detect", max_tiles=0, tiling=OPTIONS)
    assert downscaled.coverage["mode"] == "overview" and not downscaled.coverage["complete"]
    assert "overview" in downscaled.coverage["note"]
    assert _centres_in([b["box"] for b in downscaled.boxes], squares) < len(squares) // 4


def test_tile_budget_reads_the_best_tiles_and_says_so(assistant, tmp_path):
    array, squares, taken = _scene(n=12, seed=3)
    path = _write(tmp_path / "scene.tif", array)
    # Without a trained model the question's text relevance is noise: choose on detail alone.
    options = {**OPTIONS, "relevance_weight": 0.0}
    answer = assistant.ask(path, "squares", task="detect", max_tiles=10, tiling=options)
    cov = answer.coverage
    assert cov["tiles_read"] == 10 and cov["tiles_total"] == 63 and not cov["complete"]
    assert "read 10 of 63 tiles" in cov["note"] and "max_tiles" in cov["note"]
    assert assistant.calls["images"] == 11  # the overview and ten tiles
    # The overview chose tiles that hold squares (busy) over empty ground.
    chosen = [t["window"] for t in cov["tiles"]]
    with_squares = sum(taken[r : r + h, c : c + w].any() for c, r, w, h in chosen)
    assert with_squares >= 8
    tiled = [b["box"] for b in answer.boxes if "tiles" in b]
    assert tiled and _centres_in(tiled, squares) == len(tiled)  # every tile box is a real square


def test_whole_raster_is_never_read_at_full_resolution(assistant, tmp_path, monkeypatch):
    array, _, _ = _scene(width=1500, height=1200, n=40)
    path = _write(tmp_path / "big.tif", array, compress="deflate")
    reads = []
    original = RasterSource._read

    def spy(self, window, out_size):
        reads.append((window, out_size))
        return original(self, window, out_size)

    monkeypatch.setattr(RasterSource, "_read", spy)
    answer = assistant.ask(path, "squares", task="detect", max_tiles=16, tiling=OPTIONS)
    assert answer.coverage["tiles_read"] == 16
    assert max(w * h for _, (w, h) in reads) <= 1024 * 1024  # the overview is the largest read
    full_res = [win for win, out in reads if (win[2], win[3]) == out]
    assert all(w * h <= 64 * 64 for _, _, w, h in full_res)


def test_mask_mosaic_and_counts_and_captions(assistant, tmp_path):
    array, squares, taken = _scene(n=30, seed=5)
    path = _write(tmp_path / "scene.tif", array)
    seg = assistant.ask(path, "squares", task="segment", max_tiles=500, tiling=OPTIONS)
    assert seg.mask.shape == (352, 448)
    inter = (seg.mask & taken).sum()
    union = (seg.mask | taken).sum()
    assert inter / union > 0.5  # 16×16 text-as-mask cells per 64 px tile: 4 px cells
    feature = seg.to_geojson()["features"][-1]
    assert feature["properties"]["kind"] == "mask"

    # "How many" is answered by detecting in every tile and counting merged detections.
    count = assistant.ask(
        path, "How many squares are there?", task="vqa", max_tiles=500, tiling=OPTIONS
    )
    assert count.coverage["merge"] == "count_of_merged_detections"
    assert count.text == str(len(squares)) and len(count.boxes) == len(squares)
    assert count.history[-2]["content"] == "<image>\n[vqa] How many squares are there?"
    # Other numeric questions sum the tiles' numbers, each weighted by the share it owns.
    area = assistant.ask(path, "What is the total area?", task="vqa", max_tiles=500, tiling=OPTIONS)
    assert area.coverage["merge"] == "sum_over_tiles"

    caption = assistant.ask(path, "", task="caption", max_tiles=500, tiling=OPTIONS)
    assert caption.text == "A summary of the whole scene."
    assert caption.coverage["merge"] == "summary_of_overview_and_tiles"
    assert assistant.calls["text_only"] == 1

    stream = assistant.ask(path, "", task="caption", max_tiles=4, tiling=OPTIONS, stream=True)
    assert isinstance(stream, AnswerStream) and "".join(stream) == stream.answer.text


def test_large_arrays_batches_and_pairs(assistant, tmp_path):
    array, squares, _ = _scene(n=20, seed=7)
    image = Image(array, ["red", "green", "blue"], transform=TRANSFORM, crs=CRS_UTM)
    answer = assistant.ask(image, "squares", task="detect", max_tiles=500, tiling=OPTIONS)
    assert len(answer.boxes) == len(squares) and answer.geo["georeferenced"]
    small = np.full((40, 50, 3), 200, np.uint8)
    batch = assistant.ask_batch(
        [
            {"image": small, "prompt": "squares", "task": "detect"},
            {
                "image": image,
                "prompt": "squares",
                "task": "detect",
                "tiling": OPTIONS,
                "max_tiles": 500,
            },
            {"image": None, "prompt": "What is NDVI?"},
        ]
    )
    assert [a.image_size for a in batch] == [(50, 40), (448, 352), None]
    assert len(batch[1].boxes) == len(squares) and batch[0].coverage is None
    # A pair with a large image is answered from overviews, geometry in the last image's pixels.
    pair = assistant.ask([image, image], "", task="change", tiling=OPTIONS)
    assert pair.image_size == (448, 352) and pair.coverage["mode"] == "overview"


def test_region_on_a_large_scene_reads_one_window(assistant, tmp_path):
    array, squares, _ = _scene(n=20, seed=9)
    path = _write(tmp_path / "scene.tif", array)
    x1, y1, x2, y2 = squares[0]
    answer = assistant.ask(path, "", task="region", region=[x1, y1, x2, y2], tiling=OPTIONS)
    assert answer.coverage["mode"] == "region_window" and answer.image_size == (448, 352)
    col, row, w, h = answer.coverage["window"]
    assert col <= x1 and x2 <= col + w and row <= y1 and y2 <= row + h


def test_sixteen_bit_multiband_scene_uses_one_stretch(assistant, tmp_path):
    from geoassist.preprocess import EncoderInput
    from geoassist.sensors import compute_stretch, make_composite

    array, _, _ = _scene(n=20, seed=11)
    ms = np.concatenate([array, array[:, :, :1]], axis=2).astype(np.uint16) * 40
    path = _write(tmp_path / "ms.tif", ms)
    with rasterio.open(path, "r+") as ds:
        ds.descriptions = ("B04", "B03", "B02", "B08")
    answer = assistant.ask(
        path, "squares", task="detect", max_tiles=4, tiling=OPTIONS, sensor="s2-l2a"
    )
    assert answer.coverage["tiles_read"] == 4 and answer.image_size == (448, 352)
    with RasterSource.open(path) as source:
        overview = source.overview(1024)
        encode = EncoderInput(assistant.config.preprocess, overview, sensor="s2-l2a")
        whole = Image(ms, ["B04", "B03", "B02", "B08"])
        limits = compute_stretch(whole, [0, 1, 2])
        expected = make_composite(whole, "s2-l2a", stretch=limits)
        for window in ((0, 0, 64, 64), (300, 200, 64, 64)):
            c, r, w, h = window
            tile = encode(source.read(window))
            assert tile.band_names == ["red", "green", "blue"] and tile.transform is None
            np.testing.assert_array_equal(tile.array, expected[r : r + h, c : c + w])


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """A static file server that honours HTTP Range requests (as object stores do)."""

    def log_message(self, *args):
        pass

    def send_head(self):
        path = Path(self.translate_path(self.path))
        if not path.is_file():
            return super().send_head()
        data = path.read_bytes()
        start, end = 0, len(data) - 1
        header = self.headers.get("Range")
        if header and header.startswith("bytes="):
            a, _, b = header[6:].partition("-")
            start = int(a) if a else len(data) - int(b)
            end = int(b) if a and b else len(data) - 1
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Type", "image/tiff")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        import io

        self.requests_served = getattr(self, "requests_served", 0) + 1
        return io.BytesIO(data[start : end + 1])


def test_cog_over_http_range_reads(assistant, tmp_path):
    array, squares, _ = _scene(n=20, seed=13)
    _write(tmp_path / "cog.tif", array, compress="deflate")
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(_RangeHandler, directory=str(tmp_path))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/cog.tif"
        with rasterio.Env(GDAL_DISABLE_READDIR_ON_OPEN="EMPTY_DIR"):
            answer = assistant.ask(url, "squares", task="detect", max_tiles=500, tiling=OPTIONS)
    finally:
        server.shutdown()
    assert answer.image_size == (448, 352) and len(answer.boxes) == len(squares)
    assert answer.geo["crs"] == "EPSG:32633"


def test_small_band_folder_and_url_are_read_whole(assistant, tmp_path):
    array, _, _ = _scene(width=120, height=100, n=5)
    folder = tmp_path / "product"
    folder.mkdir()
    for band, k in (("B02", 2), ("B03", 1), ("B04", 0)):
        _write(folder / f"T33_{band}.jp2.tif".replace(".jp2.tif", ".tif"), array[:, :, k : k + 1])
    answer = assistant.ask(folder, "squares", task="detect")
    assert isinstance(answer, Answer) and answer.image_size == (120, 100)
    assert answer.coverage is None and answer.geo["crs"] == "EPSG:32633"


def test_envi_and_netcdf_through_rasterio(assistant, tmp_path):
    import rasterio.shutil

    array, squares, _ = _scene(n=20, seed=17)
    envi = tmp_path / "scene.img"
    h, w, _ = array.shape
    with rasterio.open(
        envi, "w", driver="ENVI", width=w, height=h, count=3, dtype="uint8",
        crs=CRS_UTM, transform=TRANSFORM,
    ) as dst:  # fmt: skip
        dst.write(np.moveaxis(array, 2, 0))
    answer = assistant.ask(envi, "squares", task="detect", max_tiles=500, tiling=OPTIONS)
    assert len(answer.boxes) == len(squares) and answer.geo["crs"] == "EPSG:32633"
    # NetCDF variables are GDAL subdatasets: pass their GDAL name.
    nc = tmp_path / "scene.nc"
    rasterio.shutil.copy(envi, nc, driver="netCDF")
    name = f"NETCDF:{nc}:Band1"
    with RasterSource.open(name) as source:
        assert source.size == (w, h) and source.georef.crs.to_epsg() == 32633
        np.testing.assert_array_equal(
            source.read((5, 6, 30, 20)).array[:, :, 0], array[6:26, 5:35, 0]
        )
    small = assistant.ask(name, "squares", task="detect", tiling={"min_side_px": 1000})
    assert small.image_size == (w, h) and small.coverage is None


def test_counts_say_what_they_were_counted_from(assistant, tmp_path):
    array, squares, _ = _scene(n=30, seed=11)
    path = _write(tmp_path / "scene.tif", array)
    # "The number of …" and "Count …" are counts too: exact over the whole scene.
    for prompt in ("What is the number of squares?", "Count the squares."):
        whole = assistant.ask(path, prompt, task="vqa", max_tiles=500, tiling=OPTIONS)
        assert whole.coverage["merge"] == "count_of_merged_detections", prompt
        assert whole.text == str(len(squares)) and whole.coverage["complete"]
        assert whole.coverage["counted_from"] == {"tiles": len(squares), "overview": 0}
    # Under a tile budget the count is the tiles' objects plus the overview's elsewhere, and says so.
    options = {**OPTIONS, "relevance_weight": 0.0}
    part = assistant.ask(
        path, "How many squares are there?", task="vqa", max_tiles=8, tiling=options
    )
    cov = part.coverage
    assert not cov["complete"] and cov["tiles_read"] == 8
    assert int(part.text) == cov["counted_from"]["tiles"] + cov["counted_from"]["overview"]
    assert int(part.text) <= len(squares)
    assert "read 8 of 63 tiles" in cov["note"] and "lower bound" in cov["note"]
    assert f"the count ({part.text})" in cov["note"]
