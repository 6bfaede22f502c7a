"""GeoSynth tiled mode: one very large GeoTIFF, mosaicked from independent scenes, with exact truth.

:func:`generate_large_scene` writes a tiled, compressed GeoTIFF (512-pixel blocks,
JPEG or DEFLATE, optional internal overviews) of any size — 40 000² pixels and
more — one *piece* (a GeoSynth scene of ``piece_px``, 1024 by default) at a time,
so that neither the raster nor its truth is ever held whole: each piece is
generated, written into its window and forgotten. Beside the raster go

- ``<name>.json``: the mosaic's ground truth — size, GSD, CRS and geotransform,
  the pieces (window, scene class, seed), per-class counts, and every object
  (class, box ``[x1, y1, x2, y2]`` in pixels of the whole raster with no +1 term,
  oriented-box corners, visible area; ``box_map`` in the CRS when georeferenced);
- ``<name>.geojson`` (georeferenced only): one RFC 7946 feature per object, its
  box in WGS84 lon/lat.

Pieces are independent scenes of varied classes at one GSD; with ``pool=K`` they
are drawn (with random flips) from K scenes instead, which is much faster for very
large rasters and keeps the truth exact. ``labels=True`` adds a fourth band,
``objects``: the semantic code of each object's pixels (``label_codes`` in the JSON),
each instance shrunk by one pixel so that touching instances stay apart (lossless
compression only). The same seed gives the same pixels and the same files.
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geoassist.synth.types import SynthError

log = logging.getLogger(__name__)

BLOCK_PX = 512
COMPRESSIONS = ("jpeg", "deflate")
GDAL_CACHE_MB = 256
MIN_VISIBLE_PX = 4  # as GeoSynth's own annotation: fewer visible pixels are not an object


@dataclass
class LargeScene:
    """What :func:`generate_large_scene` wrote."""

    path: Path
    annotation_path: Path
    geojson_path: Path | None
    width: int
    height: int
    n_pieces: int
    counts: dict[str, int] = field(default_factory=dict)
    region_counts: dict[str, int] = field(default_factory=dict)

    @property
    def n_objects(self) -> int:
        return sum(self.counts.values())


@dataclass
class _Piece:
    index: int
    window: tuple[int, int, int, int]  # col, row, width, height in the mosaic
    seed: int
    scene_class: str
    flip: tuple[bool, bool] = (False, False)  # (left-right, up-down), pool mode only
    pool_index: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"index": self.index, "window": list(self.window), "scene_class": self.scene_class, "seed": self.seed}
        if self.pool_index is not None:
            out |= {"pool_index": self.pool_index, "flip_lr": self.flip[0], "flip_ud": self.flip[1]}
        return out


def _plan(width: int, height: int, piece_px: int, seed: int, classes: Sequence[str], pool: int) -> list[_Piece]:
    from geoassist.synth.pipeline import sample_seed

    rng = np.random.default_rng([seed, 7])
    pieces = []
    for row in range(0, height, piece_px):
        for col in range(0, width, piece_px):
            window = (col, row, min(piece_px, width - col), min(piece_px, height - row))
            k = len(pieces)
            if pool:
                j = int(rng.integers(pool))
                flip = (bool(rng.random() < 0.5), bool(rng.random() < 0.5))
                pieces.append(_Piece(k, window, sample_seed(seed, j), classes[j % len(classes)], flip, j))
            else:
                pieces.append(_Piece(k, window, sample_seed(seed, k), classes[int(rng.integers(len(classes)))]))
    return pieces


def _render(seed: int, scene_class: str, size: tuple[int, int], gsd_m: float) -> Any:
    """A square GeoSynth HR scene that ``size`` (w, h) is cut from: edge pieces are crops of one.

    Scenes are square and at least 256 px so that every layout fits (a stadium or a
    river needs room at a fine GSD).
    """
    from geoassist.synth.hr import generate_hr

    return generate_hr(seed, scene_class, max(*size, 256), gsd_m=gsd_m, with_text=False)[0]


def _cut(scene: Any, size: tuple[int, int], labels: bool) -> tuple[np.ndarray, list[dict], np.ndarray | None]:
    """The top-left ``size`` (w, h) of a scene: pixels, objects in its pixels, and its label band.

    Objects keep the part of their mask inside the cut: their box is the tight box of
    that part (an object cut by the edge gets its box as oriented box and ``truncated``).
    """
    from geoassist.synth.palette import SEM

    w, h = size
    image = np.ascontiguousarray(scene.image[:h, :w, :3])
    band = np.zeros((h, w), np.uint8) if labels else None
    objects = []
    for o in scene.annotation.objects:
        if o.mask is None:
            continue
        mx, my = o.mask_origin
        visible = o.mask[: max(0, h - my), : max(0, w - mx)]
        area = int(visible.sum())
        if area < MIN_VISIBLE_PX:
            continue
        ys, xs = np.nonzero(visible)
        x1, y1, x2, y2 = mx + int(xs.min()), my + int(ys.min()), mx + int(xs.max()) + 1, my + int(ys.max()) + 1
        truncated = area < int(o.mask.sum())
        corners = [[x1, y1], [x2, y1], [x2, y2], [x1, y2]] if truncated else [list(c) for c in o.obox.corners()]
        objects.append({"class": o.cls, "is_region": o.is_region, "box": [float(x1), float(y1), float(x2), float(y2)], "obox_corners": corners, "area_px": area, "truncated": truncated})
        if band is not None and not o.is_region:
            from scipy import ndimage

            inner = ndimage.binary_erosion(visible)
            vh, vw = inner.shape
            band[my : my + vh, mx : mx + vw][inner] = SEM.get(o.cls, 0)
    return image, objects, band


def _flip(image: np.ndarray, band: np.ndarray | None, objects: list[dict], flip: tuple[bool, bool]) -> tuple[np.ndarray, np.ndarray | None]:
    h, w = image.shape[:2]
    lr, ud = flip
    if lr:
        image, band = image[:, ::-1], None if band is None else band[:, ::-1]
        for o in objects:
            x1, y1, x2, y2 = o["box"]
            o["box"] = [w - x2, y1, w - x1, y2]
            o["obox_corners"] = [[w - x, y] for x, y in o["obox_corners"]]
    if ud:
        image, band = image[::-1], None if band is None else band[::-1]
        for o in objects:
            x1, y1, x2, y2 = o["box"]
            o["box"] = [x1, h - y2, x2, h - y1]
            o["obox_corners"] = [[x, h - y] for x, y in o["obox_corners"]]
    return np.ascontiguousarray(image), None if band is None else np.ascontiguousarray(band)


def _piece_job(job: tuple[int, str, tuple[int, int], float, bool]) -> tuple[np.ndarray, list[dict], np.ndarray | None]:
    seed, scene_class, size, gsd_m, labels = job
    return _cut(_render(seed, scene_class, size, gsd_m), size, labels)


def _rendered(pieces: list[_Piece], piece_px: int, gsd_m: float, labels: bool, pool: int, workers: int) -> Iterator[tuple[np.ndarray, list[dict], np.ndarray | None]]:
    """Each piece's pixels, objects and label band, in order, one at a time (pool scenes are kept)."""
    if pool:
        cache: dict[int, Any] = {}
        for p in pieces:
            if p.pool_index not in cache:
                cache[p.pool_index] = _render(p.seed, p.scene_class, (piece_px, piece_px), gsd_m)  # type: ignore[index]
            image, objects, band = _cut(cache[p.pool_index], (p.window[2], p.window[3]), labels)  # type: ignore[index]
            image, band = _flip(image, band, objects, p.flip)
            yield image, objects, band
        return
    from geoassist.synth.pipeline import ordered_map

    jobs = [(p.seed, p.scene_class, (p.window[2], p.window[3]), gsd_m, labels) for p in pieces]
    yield from ordered_map(_piece_job, jobs, workers)


def _profile(width: int, height: int, bands: int, compress: str, block_px: int, crs: str | None, geotransform: tuple | None, workers: int) -> dict[str, Any]:
    from affine import Affine

    profile: dict[str, Any] = {
        "driver": "GTiff", "width": width, "height": height, "count": bands, "dtype": "uint8",
        "tiled": True, "blockxsize": block_px, "blockysize": block_px, "BIGTIFF": "IF_SAFER",
        "NUM_THREADS": max(1, workers),
    }  # fmt: skip
    if compress == "jpeg":
        profile |= {"compress": "jpeg", "photometric": "ycbcr", "jpeg_quality": 90}
    else:
        profile |= {"compress": "deflate", "predictor": 2, "zlevel": 6, "interleave": "pixel"}
    if geotransform is not None:
        x0, dx, rx, y0, ry, dy = geotransform
        profile |= {"crs": crs, "transform": Affine(dx, rx, x0, ry, dy, y0)}
    return profile


def build_overviews(path: str | Path, min_side: int = 256) -> list[int]:
    """Internal overviews (averaged, factors 2, 4, … down to ``min_side`` px), compressed like the raster."""
    import rasterio
    from rasterio.enums import Resampling

    with rasterio.open(path) as ds:
        compress = (ds.compression.name if ds.compression else "NONE").upper()
        width, height = ds.width, ds.height
    factors, f = [], 2
    while max(width, height) / f >= min_side:
        factors.append(f)
        f *= 2
    env: dict[str, Any] = {"GDAL_CACHEMAX": GDAL_CACHE_MB, "COMPRESS_OVERVIEW": compress, "GDAL_TIFF_OVR_BLOCKSIZE": BLOCK_PX}
    if compress == "JPEG":
        env |= {"PHOTOMETRIC_OVERVIEW": "YCBCR", "INTERLEAVE_OVERVIEW": "PIXEL", "JPEG_QUALITY_OVERVIEW": 90}
    if factors:
        with rasterio.Env(**env), rasterio.open(path, "r+") as ds:
            ds.build_overviews(factors, Resampling.average)
    return factors


def generate_large_scene(
    path: str | Path,
    size: int | tuple[int, int],
    seed: int = 0,
    *,
    gsd_m: float = 0.5,
    georef: bool = False,
    compress: str = "jpeg",
    block_px: int = BLOCK_PX,
    piece_px: int = 1024,
    overviews: bool = False,
    pool: int = 0,
    classes: Sequence[str] | None = None,
    labels: bool = False,
    workers: int = 1,
    progress: bool = True,
) -> LargeScene:
    """Writes one large HR GeoTIFF at ``path`` (``size`` px, or (width, height)) with its truth beside it.

    See the module docstring. ``georef`` gives it a UTM CRS and a ``gsd_m`` transform
    (and a GeoJSON of the objects); ``pool`` > 0 draws pieces from that many scenes;
    ``classes`` limits the scene classes (all HR classes by default); ``workers``
    generates pieces in that many processes (the output does not depend on it).
    """
    from geoassist.synth.layouts import SCENE_CLASSES

    width, height = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    classes = list(classes) if classes else sorted(SCENE_CLASSES)
    _check(width, height, compress, block_px, piece_px, pool, classes, labels, gsd_m)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    crs, geotransform = None, None
    if georef:
        from geoassist.synth.hr import utm_georef

        crs, geotransform = utm_georef(np.random.default_rng([seed, 8]), gsd_m)
    pieces = _plan(width, height, piece_px, seed, classes, pool)
    bands = ["red", "green", "blue"] + (["objects"] if labels else [])
    profile = _profile(width, height, len(bands), compress, block_px, crs, geotransform, workers)
    annotation_path = path.with_suffix(".json")
    geojson_path = path.with_suffix(".geojson") if georef else None
    objects_tmp = path.with_name(f".{path.name}.objects.jsonl")
    features_tmp = path.with_name(f".{path.name}.features.jsonl")
    raster_tmp = path.with_name(f".{path.name}.part")
    counts: dict[str, int] = {}
    region_counts: dict[str, int] = {}
    n_objects = 0
    to_lonlat = _lonlat(crs) if georef else None

    import rasterio
    from rasterio.windows import Window

    rendered = _rendered(pieces, piece_px, gsd_m, labels, pool, workers)
    try:
        from tqdm import tqdm

        rendered = tqdm(rendered, total=len(pieces), unit="piece", disable=not progress or len(pieces) < 16)
    except ImportError:  # pragma: no cover
        pass
    with (
        warnings.catch_warnings(),
        rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB),
        rasterio.open(raster_tmp, "w", **profile) as dst,
        open(objects_tmp, "w", encoding="utf-8") as objects_out,
        open(features_tmp, "w", encoding="utf-8") if georef else _nothing() as features_out,
    ):
        warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
        for piece, (image, objects, band) in zip(pieces, rendered, strict=True):
            col, row, w, h = piece.window
            dst.write(np.moveaxis(image, 2, 0), indexes=[1, 2, 3], window=Window(col, row, w, h))
            if band is not None:
                dst.write(band, 4, window=Window(col, row, w, h))
            records = []
            for o in objects:
                x1, y1, x2, y2 = o["box"]
                record = {
                    "id": n_objects, "class": o["class"], "is_region": o["is_region"],
                    "box": [round(x1 + col, 2), round(y1 + row, 2), round(x2 + col, 2), round(y2 + row, 2)],
                    "obox_corners": [[round(x + col, 2), round(y + row, 2)] for x, y in o["obox_corners"]],
                    "area_px": o["area_px"], "truncated": o["truncated"], "piece": piece.index,
                }  # fmt: skip
                n_objects += 1
                tally = region_counts if o["is_region"] else counts
                tally[o["class"]] = tally.get(o["class"], 0) + 1
                records.append(record)
            if georef and records:
                _add_map_boxes(records, geotransform, to_lonlat, features_out)
            for record in records:
                objects_out.write(json.dumps(record, separators=(",", ":")) + "\n")
        for i, name in enumerate(bands, start=1):
            dst.set_band_description(i, name)
        dst.update_tags(GEOSYNTH_SEED=str(seed), GEOSYNTH_PIECES=str(len(pieces)))
    raster_tmp.replace(path)
    if overviews:
        build_overviews(path)

    header: dict[str, Any] = {
        "format": "geosynth-large", "version": 1, "kind": "hr", "seed": seed, "width": width, "height": height,
        "band_names": bands, "gsd_m": gsd_m, "crs": crs, "geotransform": list(geotransform) if geotransform else None,
        "compress": compress, "block_px": block_px, "piece_px": piece_px, "pool": pool, "overviews": overviews,
        "counts": dict(sorted(counts.items())), "region_counts": dict(sorted(region_counts.items())),
        "n_objects": n_objects, "pieces": [p.to_dict() for p in pieces],
    }  # fmt: skip
    if labels:
        from geoassist.synth.palette import SEMANTIC_CLASSES

        header["label_codes"] = {str(i): c for i, c in enumerate(SEMANTIC_CLASSES) if i}
    _assemble(annotation_path, json.dumps(header, separators=(",", ":"))[:-1] + ',"objects":[', objects_tmp, "]}\n")
    if geojson_path is not None:
        head = {"type": "FeatureCollection", "name": path.stem, "properties": {"source": path.name, "crs_of_boxes": crs}}
        _assemble(geojson_path, json.dumps(head, separators=(",", ":"))[:-1] + ',"features":[', features_tmp, "]}\n")
    return LargeScene(path, annotation_path, geojson_path, width, height, len(pieces), header["counts"], header["region_counts"])


def _check(width: int, height: int, compress: str, block_px: int, piece_px: int, pool: int, classes: list[str], labels: bool, gsd_m: float) -> None:
    from geoassist.synth.layouts import SCENE_CLASSES

    if min(width, height) < 64:
        raise SynthError(f"a large scene needs a side of at least 64 px, got {width}×{height}")
    if compress not in COMPRESSIONS:
        raise SynthError(f"compression {compress!r} is not offered; choose one of {', '.join(COMPRESSIONS)}")
    if block_px < 16 or block_px % 16:
        raise SynthError(f"the block size must be a multiple of 16 px, got {block_px}")
    if piece_px < 64 or piece_px % block_px:
        raise SynthError(f"the piece size ({piece_px} px) must be at least 64 px and a multiple of the block size ({block_px} px)")
    if pool < 0:
        raise SynthError(f"pool must be 0 (every piece its own scene) or more, got {pool}")
    if labels and compress == "jpeg":
        raise SynthError("the objects band holds class codes, which JPEG would blur: use compress='deflate' (--compress deflate) with labels")
    if gsd_m <= 0:
        raise SynthError(f"gsd_m must be positive, got {gsd_m}")
    unknown = [c for c in classes if c not in SCENE_CLASSES]
    if unknown:
        raise SynthError(f"unknown scene class(es) {', '.join(unknown)}; choose from {', '.join(sorted(SCENE_CLASSES))}")


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


def _lonlat(crs: str | None):
    from rasterio.warp import transform

    def convert(xs: list[float], ys: list[float]) -> tuple[list[float], list[float]]:
        return transform(crs, "EPSG:4326", xs, ys)

    return convert


def _add_map_boxes(records: list[dict], geotransform: tuple, to_lonlat, features_out) -> None:
    """``box_map`` on each record, and one GeoJSON feature per record (its box in lon/lat)."""
    x0, dx, _, y0, _, dy = geotransform
    xs, ys = [], []
    for r in records:
        x1, y1, x2, y2 = r["box"]
        mx1, mx2, my1, my2 = x0 + x1 * dx, x0 + x2 * dx, y0 + y2 * dy, y0 + y1 * dy  # north-up: dy < 0
        r["box_map"] = [round(mx1, 3), round(my1, 3), round(mx2, 3), round(my2, 3)]
        # Counter-clockwise in lon/lat: south-west, south-east, north-east, north-west.
        xs += [mx1, mx2, mx2, mx1]
        ys += [my1, my1, my2, my2]
    lon, lat = to_lonlat(xs, ys)
    for k, r in enumerate(records):
        ring = [[round(lon[4 * k + i], 7), round(lat[4 * k + i], 7)] for i in range(4)]
        feature = {
            "type": "Feature", "id": r["id"],
            "geometry": {"type": "Polygon", "coordinates": [ring + [ring[0]]]},
            "properties": {"id": r["id"], "class": r["class"], "is_region": r["is_region"], "box_px": r["box"], "box_map": r["box_map"]},
        }  # fmt: skip
        features_out.write(json.dumps(feature, separators=(",", ":")) + "\n")


def _assemble(out: Path, head: str, lines_path: Path, tail: str) -> None:
    """``head`` + the lines of ``lines_path`` joined by commas + ``tail``, streamed; the lines file is removed."""
    tmp = out.with_name(f".{out.name}.part")
    with open(tmp, "w", encoding="utf-8") as f, open(lines_path, encoding="utf-8") as lines:
        f.write(head)
        for i, line in enumerate(lines):
            f.write(("," if i else "") + line.rstrip("\n"))
        f.write(tail)
    lines_path.unlink()
    tmp.replace(out)


def read_large_annotation(path: str | Path) -> dict[str, Any]:
    """The JSON written beside a large scene (give the ``.tif`` or the ``.json``)."""
    path = Path(path)
    return json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))


__all__ = ["generate_large_scene", "build_overviews", "read_large_annotation", "LargeScene"]
