"""The user's own data, for fine-tuning: LLaVA-style conversations, COCO JSON, GeoTIFF scenes with vector labels."""

from __future__ import annotations

import json
import sqlite3
import struct
from collections.abc import Iterable, Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from geoassist.chat import IMAGE_SLOT
from geoassist.readers import Malformed, read_coco
from geoassist.rle import mask_to_rle, rle_to_mask

from ..core import (
    Context,
    DatasetNotFoundError,
    Dropped,
    Outcome,
    Recipe,
    RecipeError,
    RecipeInfo,
    Reject,
    make_record,
    register,
    split_filter,
    stable_pick,
)
from ..geometry import label_name, plural, polygon_mask, text_mask
from ..schema import TASKS, Record, validate_record
from ..tasks import check_objects, object_records

# --------------------------------------------------------------------------- LLaVA JSON


def _json_files(src: Path) -> list[Path]:
    if src.is_file():
        return [src]
    return (
        sorted(p for p in src.glob("*.json*") if p.suffix in (".json", ".jsonl"))
        if src.is_dir()
        else []
    )


def _read_rows(path: Path) -> list[Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        return [json.loads(line) if line.strip() else None for line in text.splitlines()]
    data = json.loads(text)
    return data if isinstance(data, list) else [data]


@register
class LLaVAJSON(Recipe):
    """Your own conversations in the LLaVA instruction format, for fine-tuning.

    Layout: ``--src`` is a ``.json`` (a list) or ``.jsonl`` file, or a folder of them, each entry
    ``{"id", "image": "rel/path.png" | [paths…], "conversations": [{"from": "human"|"gpt"|"system",
    "value": "…"}, …]}`` with images relative to the file's folder (or the option
    ``image_dir``). The first human turn gets one ``<image>`` per image when it has none; a
    ``system`` turn is kept in ``meta.system``. An entry may name a ``task`` of the schema (else
    ``conversation``) and a ``split`` (else the option ``split``, default ``train``). Checked
    against LLaVA-1.5's published ``llava_v1_5_mix665k.json`` schema; tested on fake files.
    """

    info = RecipeInfo(
        name="llava_json",
        title="LLaVA-style conversations (your data)",
        tasks=("conversation",),
        licence="yours",
        citation="H. Liu, C. Li, Q. Wu, Y. J. Lee. Visual Instruction Tuning. NeurIPS 2023 (the format).",
        layout="<file>.json / .jsonl: [{id, image, conversations: [{from: human|gpt, value}]}] + images relative to it",
        splits=("train",),
        checked_against="LLaVA-1.5 instruction JSON schema; fake files",
    )

    def check(self, src: Path) -> None:
        super().check(src)
        if not _json_files(src):
            raise DatasetNotFoundError(f"no .json/.jsonl conversation file at {src}")

    def detect(self, src: Path) -> bool:
        for path in _json_files(src)[:3]:
            try:
                rows = _read_rows(path)
            except (ValueError, OSError):
                continue
            if rows and isinstance(rows[0], dict) and "conversations" in rows[0]:
                return True
        return False

    def available_splits(self, src: Path) -> list[str]:
        splits = set()
        for path in _json_files(src):
            for row in _read_rows(path):
                if isinstance(row, dict):
                    splits.add(str(row.get("split", "train")))
        return sorted(splits) or ["train"]

    def items(
        self, src: Path, splits: Sequence[str] | None, options: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        wanted = set(split_filter(splits, self.available_splits(src), self.info.name))
        default_split = str(options.get("split", "train"))
        base = src if src.is_dir() else src.parent
        for path in _json_files(src):
            for n, row in enumerate(_read_rows(path)):
                split = (
                    str(row.get("split", default_split)) if isinstance(row, dict) else default_split
                )
                if split not in wanted and not (split == default_split and splits is None):
                    continue
                folder = path.parent.relative_to(base).as_posix() if path.parent != base else ""
                yield {
                    "id": str(row.get("id", f"{path.stem}-{n}"))
                    if isinstance(row, dict)
                    else f"{path.stem}-{n}",
                    "row": row,
                    "split": split,
                    "folder": folder,
                }

    def convert(self, item: dict[str, Any], ctx: Context) -> Iterable[Outcome]:
        rid = f"{self.info.name}:{item['id']}"
        row = item["row"]
        if not isinstance(row, dict) or not isinstance(row.get("conversations"), list):
            return [Reject(rid, "malformed annotation", "an entry needs a 'conversations' list")]
        images = row.get("image", [])
        images = [images] if isinstance(images, str) else list(images or [])
        prefix = "/".join(p for p in (item["folder"], ctx.options.get("image_dir", "")) if p)
        rels = [f"{prefix}/{p}" if prefix else str(p) for p in images]
        for rel_path in rels:
            problem = ctx.reject_for(rid, rel_path)
            if problem:
                return [problem]
        turns, system = [], None
        for turn in row["conversations"]:
            who = str(turn.get("from", turn.get("role", ""))).lower()
            text = str(turn.get("value", turn.get("content", "")))
            if who == "system":
                system = text
                continue
            role = {
                "human": "user",
                "user": "user",
                "gpt": "assistant",
                "assistant": "assistant",
            }.get(who)
            if role is None:
                return [Reject(rid, "malformed annotation", f"unknown speaker {who!r}")]
            turns.append({"role": role, "content": text})
        if (
            not turns
            or turns[0]["role"] != "user"
            or not any(t["role"] == "assistant" for t in turns)
        ):
            return [
                Reject(
                    rid,
                    "missing answer",
                    "a conversation needs a human turn first and at least one gpt turn",
                )
            ]
        if IMAGE_SLOT not in turns[0]["content"] and not any(
            IMAGE_SLOT in t["content"] for t in turns[1:]
        ):
            turns[0]["content"] = (
                IMAGE_SLOT * len(rels) + ("\n" if rels else "") + turns[0]["content"]
            )
        task = str(row.get("task", "conversation"))
        if task not in TASKS:
            return [Reject(rid, "invalid record", f"unknown task {task!r}")]
        meta: dict[str, Any] = {}
        if system:
            meta["system"] = system
        if rels:
            size = ctx.image_size(rels[0])
            meta.update({"width": size[0], "height": size[1]})  # type: ignore[index]
        record = Record(
            id=rid,
            source=self.info.name,
            split=item["split"],
            task=task,
            images=rels,
            conversations=turns,
            answer=[t["content"] for t in turns if t["role"] == "assistant"][-1],
            qtype=row.get("qtype"),
            targets=row.get("targets") or {},
            meta=meta,
        )
        validate_record(record)
        return [record]


# --------------------------------------------------------------------------- COCO


def _coco_files(src: Path) -> dict[str, Path]:
    """``{split: annotations JSON}`` from ``annotations/instances_<split>.json`` (or any ``*.json`` with images+annotations)."""
    if src.is_file():
        return {src.stem.replace("instances_", ""): src}
    found = {}
    for folder in (src / "annotations", src / "Annotations", src):
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            split = path.stem.replace("instances_", "")
            found.setdefault(split, path)
    return found


@register
class COCOInstances(Recipe):
    """Your own COCO detection / instance-segmentation JSON, for fine-tuning.

    Layout (COCO 2017): ``annotations/instances_<split>.json`` with ``images`` (``file_name``,
    ``width``, ``height``), ``categories`` and ``annotations`` (``bbox`` as ``[x, y, w, h]``,
    ``segmentation`` as polygons or RLE, ``iscrowd``), and the images in ``<split>/`` (or
    ``images/``, or the option ``image_dir``); ``--src`` may also be one JSON file. Records: the
    object records (detection, grounding, counting, presence, referring, region captions, B2C
    caption) and, where masks exist, ``refer_seg`` per class with ``mask_rle`` and ``polygons``
    targets. Crowd regions are left out and counted. Checked against the COCO data-format
    description; tested on fake files.
    """

    info = RecipeInfo(
        name="coco",
        title="COCO instances JSON (your data)",
        tasks=(
            "detection",
            "grounding",
            "counting",
            "vqa",
            "referring",
            "region_caption",
            "caption",
            "refer_seg",
        ),
        licence="yours",
        citation="T.-Y. Lin, M. Maire, S. Belongie et al. Microsoft COCO: Common Objects in Context. ECCV 2014 (the format).",
        layout="annotations/instances_<split>.json + <split>/<file_name> (or images/)",
        splits=("train", "val"),
        checked_against="COCO data format (cocodataset.org/#format-data); fake files",
    )

    def check(self, src: Path) -> None:
        super().check(src)
        if not _coco_files(src):
            raise DatasetNotFoundError(
                f"no COCO annotations JSON at {src}; expected {self.info.layout}"
            )

    def detect(self, src: Path) -> bool:
        return (src / "annotations").is_dir() and any(
            (src / "annotations").glob("instances_*.json")
        )

    def available_splits(self, src: Path) -> list[str]:
        return list(_coco_files(src))

    def items(
        self, src: Path, splits: Sequence[str] | None, options: dict[str, Any]
    ) -> Iterator[dict[str, Any] | Reject]:
        files = _coco_files(src)
        base = src if src.is_dir() else src.parent
        for split in split_filter(splits, list(files), self.info.name):
            malformed: list[Malformed] = []
            data = read_coco(files[split], malformed=malformed)
            for bad in malformed:
                yield Reject(
                    f"{self.info.name}:{split}:{bad.key}",
                    bad.reason,
                    f"{files[split].name}: {bad.detail}",
                )
            categories = data["categories"]
            by_image = data["annotations"]
            folder = options.get("image_dir") or next(
                (d for d in (split, "images", f"{split}2017") if (base / d).is_dir()), ""
            )
            for image in data["images"]:
                anns = by_image.get(image["id"], [])
                yield {
                    "id": str(image.get("id")),
                    "split": split,
                    "image": f"{folder}/{image['file_name']}"
                    if folder
                    else str(image["file_name"]),
                    "width": image.get("width"),
                    "height": image.get("height"),
                    "annotations": [
                        {
                            **a,
                            "class": categories.get(
                                a.get("category_id"), str(a.get("category_id"))
                            ),
                        }
                        for a in anns
                    ],
                    "classes": sorted(set(categories.values())),
                }

    def convert(self, item: dict[str, Any], ctx: Context) -> Iterable[Outcome]:
        rid = f"{self.info.name}:{item['id']}"
        problem = ctx.reject_for(rid, item["image"])
        if problem:
            return [problem]
        size = ctx.image_size(item["image"])
        width, height = size  # type: ignore[misc]
        outcomes: list[Outcome] = []
        if item["width"] and item["height"] and (item["width"], item["height"]) != (width, height):
            outcomes.append(
                Dropped(
                    rid,
                    "size mismatch",
                    f"JSON says {item['width']}x{item['height']}, file is {width}x{height}; the file wins",
                )
            )
        objects, masks = [], {}
        for n, a in enumerate(item["annotations"]):
            if a.get("iscrowd"):
                outcomes.append(Dropped(rid, "crowd region", f"annotation {a.get('id', n)}"))
                continue
            bbox = a.get("bbox")
            if not (isinstance(bbox, list) and len(bbox) == 4):
                outcomes.append(
                    Dropped(rid, "malformed annotation", f"annotation {a.get('id', n)} has no bbox")
                )
                continue
            x, y, w, h = (float(v) for v in bbox)
            obj: dict[str, Any] = {
                "class": a["class"],
                "label": label_name(a["class"]),
                "box": [x, y, x + w, y + h],
                "id": a.get("id", n),
            }
            seg = a.get("segmentation")
            try:
                if isinstance(seg, list) and seg:
                    polys = [p for p in seg if isinstance(p, list) and len(p) >= 6]
                    if polys:
                        obj["points"] = [
                            [polys[0][i], polys[0][i + 1]] for i in range(0, len(polys[0]) - 1, 2)
                        ]
                        obj["_mask"] = polygon_mask(polys, size)
                elif isinstance(seg, dict) and "counts" in seg:
                    obj["_mask"] = rle_to_mask(seg)
            except (ValueError, TypeError) as exc:
                outcomes.append(
                    Dropped(
                        rid,
                        "malformed annotation",
                        f"annotation {a.get('id', n)} segmentation: {exc}",
                    )
                )
            objects.append(obj)
        kept, dropped = check_objects(rid, objects, size)
        outcomes += dropped
        for obj in kept:
            m = obj.pop("_mask", None)
            if m is not None and m.shape == (height, width):
                masks[obj["label"]] = masks.get(obj["label"], np.zeros((height, width), bool)) | m
        labels = [label_name(c) for c in item["classes"]]
        common = {"source": self.info.name, "split": item["split"], "images": [item["image"]]}
        if masks:
            for label in [
                *sorted(masks),
                *stable_pick(f"{rid}:segment-negative", [c for c in labels if c not in masks], 1),
            ]:
                mask = masks.get(label)
                answer, grid, iou = text_mask(mask) if mask is not None else ("none", 0, 1.0)
                objs = [o for o in kept if o["label"] == label]
                outcomes.append(
                    make_record(
                        oid=f"{item['id']}:segment:{label}",
                        task="refer_seg",
                        argument=f"all {plural(label)}",
                        answer=answer,
                        targets={
                            "mask_rle": mask_to_rle(mask)
                            if mask is not None
                            else {"size": [height, width], "counts": [height * width]},
                            "boxes": [{"label": label, "box": o["box"]} for o in objs],
                            "polygons": [
                                {"label": label, "points": o["points"]}
                                for o in objs
                                if "points" in o
                            ],
                            "count": len(objs),
                        },
                        meta={
                            "width": width,
                            "height": height,
                            "mask_grid": grid,
                            "mask_text_iou": iou,
                        },
                        **common,
                    )
                )
        outcomes += object_records(
            source=self.info.name,
            oid=item["id"],
            split=item["split"],
            image=item["image"],
            size=size,
            objects=kept,
            class_labels=labels,
            polygons=True,
        )
        return outcomes


# --------------------------------------------------------------------------- GeoTIFF + vector labels

RASTER_EXTS = (".tif", ".tiff")
VECTOR_EXTS = (".geojson", ".json", ".gpkg")
_LABEL_FIELDS = ("class", "label", "category", "class_name", "classname", "type")
_OSM_KEYS = ("building", "landuse", "natural", "highway", "amenity", "waterway", "leisure")


def feature_label(properties: dict[str, Any], field: str | None, default: str) -> str | None:
    """A feature's class: ``field`` when given, else a usual class property, else an OSM tag, else ``default``."""
    if field:
        value = properties.get(field)
        return None if value in (None, "") else str(value)
    for key in _LABEL_FIELDS:
        value = properties.get(key)
        if value not in (None, ""):
            return str(value)
    for key in _OSM_KEYS:
        value = properties.get(key)
        if value not in (None, "", "no"):
            return key if value == "yes" else str(value)
    return default


def read_geojson(path: Path) -> tuple[list[tuple[Any, dict[str, Any]]], str]:
    """Features ``(shapely geometry, properties)`` and the CRS (legacy ``crs`` member, else WGS84 per RFC 7946)."""
    import shapely

    data = json.loads(path.read_text(encoding="utf-8"))
    crs = "EPSG:4326"
    member = data.get("crs") or {}
    if isinstance(member, dict) and member.get("properties", {}).get("name"):
        crs = str(member["properties"]["name"])
    features = data.get("features", []) if data.get("type") == "FeatureCollection" else [data]
    out = []
    for feature in features:
        geometry = feature.get("geometry")
        out.append(
            (
                shapely.geometry.shape(geometry) if geometry else None,
                dict(feature.get("properties") or {}),
            )
        )
    return out, crs


def read_geopackage(
    path: Path, layer: str | None = None
) -> tuple[list[tuple[Any, dict[str, Any]]], str]:
    """Features of one GeoPackage layer, read with sqlite3 (OGC GeoPackage: GP header + WKB), and its CRS."""
    import shapely

    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
        layers = db.execute(
            "SELECT table_name, column_name, srs_id FROM gpkg_geometry_columns ORDER BY table_name"
        ).fetchall()
        if not layers:
            raise RecipeError(f"{path} has no feature layer (gpkg_geometry_columns is empty)")
        chosen = next((row for row in layers if row[0] == layer), None) if layer else layers[0]
        if chosen is None:
            raise RecipeError(f"{path} has no layer {layer!r}; layers: {[r[0] for r in layers]}")
        table, column, srs_id = chosen
        srs = db.execute(
            "SELECT organization, organization_coordsys_id, definition FROM gpkg_spatial_ref_sys WHERE srs_id = ?",
            (srs_id,),
        ).fetchone()
        crs = (
            f"{srs[0]}:{srs[1]}"
            if srs and srs[0] and srs[0].upper() != "NONE" and srs[1] and srs[1] > 0
            else (srs[2] if srs else "EPSG:4326")
        )
        cursor = db.execute(f'SELECT * FROM "{table}"')  # noqa: S608 - table name comes from the file's own catalogue
        names = [d[0] for d in cursor.description]
        out = []
        for row in cursor:
            values = dict(zip(names, row, strict=True))
            blob = values.pop(column)
            out.append(
                (
                    _gpkg_geometry(blob, shapely),
                    {k: v for k, v in values.items() if not isinstance(v, bytes)},
                )
            )
    return out, crs


def _gpkg_geometry(blob: bytes | None, shapely: Any) -> Any:
    if not blob:
        return None
    if blob[:2] != b"GP":
        raise ValueError("not a GeoPackage geometry blob (no 'GP' magic)")
    flags = blob[3]
    envelope = {0: 0, 1: 32, 2: 48, 3: 48, 4: 64}.get((flags >> 1) & 0x07)
    if envelope is None:
        raise ValueError("bad GeoPackage envelope code")
    if flags & 0x10:  # empty geometry flag
        return None
    return shapely.from_wkb(blob[8 + envelope :])


def gpkg_blob(geometry: Any, srs_id: int) -> bytes:
    """A GeoPackage geometry blob (little-endian header, no envelope) for ``geometry``; used to write test files."""
    import shapely

    return (
        b"GP"
        + bytes([0, 0x01])
        + struct.pack("<i", srs_id)
        + shapely.to_wkb(geometry, byte_order=1)
    )


@lru_cache(maxsize=8)
def _vector_in_raster_crs(
    vector: str, mtime: float, raster_crs: str, layer: str | None
) -> tuple[list[Any], list[dict[str, Any]], int]:
    """Features reprojected to the raster's CRS (cached per worker): geometries, properties, count without geometry."""
    import shapely
    from pyproj import CRS, Transformer

    path = Path(vector)
    features, crs = (
        read_geopackage(path, layer) if path.suffix.lower() == ".gpkg" else read_geojson(path)
    )
    source, target = CRS.from_user_input(crs), CRS.from_user_input(raster_crs)
    transformer = None if source == target else Transformer.from_crs(source, target, always_xy=True)
    geometries, properties, empty = [], [], 0
    for geometry, props in features:
        if geometry is None or geometry.is_empty:
            empty += 1
            continue
        if transformer is not None:
            geometry = shapely.transform(
                geometry, lambda xy, t=transformer: np.column_stack(t.transform(xy[:, 0], xy[:, 1]))
            )
        geometries.append(geometry)
        properties.append(props)
    return geometries, properties, empty


def _pairs(src: Path, options: dict[str, Any]) -> list[tuple[Path, Path | None]]:
    """``(raster, vector)`` pairs: same stem, else the folder's only vector file (or the option ``labels``)."""
    rasters = (
        sorted(p for p in src.rglob("*") if p.suffix.lower() in RASTER_EXTS and p.is_file())
        if src.is_dir()
        else []
    )
    vectors = (
        sorted(
            p
            for p in src.rglob("*")
            if p.suffix.lower() in VECTOR_EXTS and p.is_file() and not p.name.startswith(".")
        )
        if src.is_dir()
        else []
    )
    if options.get("labels"):
        only = src / str(options["labels"])
        return [(r, only) for r in rasters]
    by_stem = {v.with_suffix(""): v for v in vectors}
    out = []
    for raster in rasters:
        vector = by_stem.get(raster.with_suffix(""))
        if vector is None:
            siblings = [v for v in vectors if v.parent == raster.parent]
            vector = siblings[0] if len(siblings) == 1 else None
        out.append((raster, vector))
    return out


@register
class GeoTIFFVector(Recipe):
    """Your GeoTIFF scenes with vector labels, cut into tiles with boxes, masks and text, for fine-tuning.

    Layout: a folder of GeoTIFFs and vector label files — GeoJSON (its ``crs`` member, else
    WGS84 as RFC 7946 says) or GeoPackage (read with sqlite3, any CRS). A raster takes the
    label file with its own name, else the only label file beside it (option ``labels`` names
    one for all). Labels are reprojected onto each raster's CRS and cut into tiles
    (``tile_size``, default 512; ``overlap`` pixels, default 0); each polygon piece inside a
    tile gives a box (its bounds in tile pixels), a polygon and pixels of the tile's instance
    mask. The class comes from ``label_field`` or a usual property (``class``, ``label``…, an
    OSM tag such as ``building=yes``), else ``default_label`` (``object``). Pieces under
    ``min_area_px`` (default 4) are left out and counted. Tiles are written as GeoTIFFs with
    their own transform under ``images/``, instance masks as 16-bit PNGs under ``masks/``.
    Records per tile: the object records (detection, grounding, counting, presence, referring,
    region captions, B2C caption) and ``refer_seg`` per class; tiles without labels answer
    ``none``. Checked against the SpaceNet sample in ``rs-samples/geotiff/spacenet_solaris``
    (its rasterised footprint mask) and reprojection round trips on ``RGB.byte.tif``.
    """

    info = RecipeInfo(
        name="geotiff_vector",
        title="GeoTIFF + vector labels (your data)",
        tasks=(
            "detection",
            "grounding",
            "counting",
            "vqa",
            "referring",
            "region_caption",
            "caption",
            "refer_seg",
        ),
        licence="yours",
        citation="GeoAssist contributors (tiling of user rasters and vector labels).",
        layout="<scene>.tif + <scene>.geojson|.gpkg (or one label file per folder)",
        splits=("train",),
        checked_against="real files: rs-samples/geotiff/spacenet_solaris (GeoTIFF + GeoJSON + footprint mask)",
        writes_files=True,
    )

    def check(self, src: Path) -> None:
        super().check(src)
        if not _pairs(src, {}):
            raise DatasetNotFoundError(f"no GeoTIFF under {src}; expected {self.info.layout}")

    def detect(self, src: Path) -> bool:
        return any(v is not None for _, v in _pairs(src, {})) if src.is_dir() else False

    def available_splits(self, src: Path) -> list[str]:
        return ["train"]

    def items(
        self, src: Path, splits: Sequence[str] | None, options: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        import rasterio

        split = str(options.get("split", "train"))
        split_filter(splits, [split], self.info.name)
        tile = int(options.get("tile_size", 512))
        overlap = int(options.get("overlap", 0))
        if tile <= 0 or not 0 <= overlap < tile:
            raise RecipeError(
                f"tile_size must be > 0 and 0 <= overlap < tile_size, got {tile}, {overlap}"
            )
        step = tile - overlap
        for raster, vector in _pairs(src, options):
            rel = raster.relative_to(src).as_posix()
            try:
                with rasterio.open(raster) as ds:
                    width, height, crs = ds.width, ds.height, ds.crs
            except Exception as exc:
                yield {
                    "id": rel,
                    "split": split,
                    "raster": rel,
                    "error": f"{type(exc).__name__}: {exc}",
                }
                continue
            for row in range(0, max(1, height - overlap), step) if height > tile else [0]:
                for col in range(0, max(1, width - overlap), step) if width > tile else [0]:
                    yield {
                        "id": f"{Path(rel).with_suffix('').as_posix()}:{row}_{col}",
                        "split": split,
                        "raster": rel,
                        "vector": vector.relative_to(src).as_posix() if vector else None,
                        "window": [col, row, min(tile, width - col), min(tile, height - row)],
                        "crs": crs.to_string() if crs else None,
                    }

    def convert(self, item: dict[str, Any], ctx: Context) -> Iterable[Outcome]:
        import rasterio
        import shapely
        from rasterio import features
        from rasterio.windows import Window
        from rasterio.windows import transform as window_transform

        rid = f"{self.info.name}:{item['id']}"
        if "error" in item:
            return [Reject(rid, "unreadable image", item["error"])]
        if ctx.out is None:
            raise RecipeError("geotiff_vector writes tiles; give it an output folder")
        if item["crs"] is None:
            return [
                Reject(
                    rid,
                    "malformed annotation",
                    f"{item['raster']} has no CRS, so its labels cannot be placed",
                )
            ]
        col, row, w, h = item["window"]
        stem = f"{Path(item['raster']).with_suffix('').as_posix()}_{row}_{col}"
        image_rel, mask_rel = f"images/{stem}.tif", f"masks/{stem}_instances.png"
        with rasterio.open(ctx.src / item["raster"]) as ds:
            window = Window(col, row, w, h)
            data = ds.read(window=window)
            transform = window_transform(window, ds.transform)
            profile = {
                "driver": "GTiff",
                "width": w,
                "height": h,
                "count": ds.count,
                "dtype": data.dtype.name,
                "crs": ds.crs,
                "transform": transform,
                "nodata": ds.nodata,
            }
            descriptions = ds.descriptions
            gsd = float(abs(ds.transform.a))
        out_path = ctx.out / image_rel
        out_path.parent.mkdir(parents=True, exist_ok=True)
        with rasterio.open(out_path, "w", **profile) as dst:
            dst.write(data)
            for i, d in enumerate(descriptions, start=1):
                if d:
                    dst.set_band_description(i, d)
        outcomes: list[Outcome] = []
        objects: list[dict[str, Any]] = []
        properties: list[dict[str, Any]] = []
        instances = np.zeros((h, w), np.uint16)
        classes: dict[str, list[int]] = {}
        if item["vector"]:
            vector = ctx.src / item["vector"]
            geometries, properties, empty = _vector_in_raster_crs(
                str(vector), vector.stat().st_mtime, item["crs"], ctx.options.get("layer")
            )
            if empty and row == 0 and col == 0:
                outcomes.append(
                    Dropped(
                        rid,
                        "degenerate geometry",
                        f"{empty} feature(s) of {item['vector']} have no geometry",
                    )
                )
            inverse = ~transform
            tile_box = shapely.box(0, 0, w, h)
            min_area = float(ctx.options.get("min_area_px", 4))
            field, default = (
                ctx.options.get("label_field"),
                str(ctx.options.get("default_label", "object")),
            )
            a, b, c, d, e, f = inverse.a, inverse.b, inverse.c, inverse.d, inverse.e, inverse.f
            for number, (geometry, props) in enumerate(zip(geometries, properties, strict=True)):
                pixel = shapely.affinity.affine_transform(geometry, [a, b, d, e, c, f])
                if not pixel.intersects(tile_box):
                    continue
                piece = pixel.intersection(tile_box)
                if piece.is_empty or piece.area <= 0:
                    continue
                label = feature_label(props, field, default)
                if label is None:
                    outcomes.append(
                        Dropped(rid, "unknown class", f"feature {number} has no {field!r}")
                    )
                    continue
                if piece.area < min_area:
                    outcomes.append(
                        Dropped(
                            rid,
                            "degenerate geometry",
                            f"feature {number}: {piece.area:.1f} px² in this tile < min_area_px",
                        )
                    )
                    continue
                index = len(objects) + 1
                burned = features.rasterize([(piece, index)], out_shape=(h, w), dtype="uint16")
                instances = np.where(burned > 0, burned, instances)
                x1, y1, x2, y2 = piece.bounds
                outline = max(getattr(piece, "geoms", [piece]), key=lambda g: g.area)
                points = (
                    [
                        [round(float(x), 3), round(float(y), 3)]
                        for x, y in list(outline.exterior.coords)[:-1]
                    ]
                    if hasattr(outline, "exterior")
                    else []
                )
                obj = {
                    "class": label,
                    "label": label_name(label),
                    "box": [float(x1), float(y1), float(x2), float(y2)],
                    "id": number,
                }
                if len(points) >= 3:
                    obj["points"] = points
                objects.append(obj)
                classes.setdefault(obj["label"], []).append(index)
        _png16(ctx.out / mask_rel, instances)
        kept, dropped = check_objects(rid, objects, (w, h))
        outcomes += dropped
        meta = {
            "crs": item["crs"],
            "transform": list(transform)[:6],
            "gsd_m": gsd,
            "raster": item["raster"],
            "window": item["window"],
            "labels": item["vector"],
        }
        field, default = (
            ctx.options.get("label_field"),
            str(ctx.options.get("default_label", "object")),
        )
        file_labels = {
            label_name(lab)
            for p in (properties if item["vector"] else [])
            if (lab := feature_label(p, field, default))
        }
        all_labels = sorted(set(classes) | file_labels) or [label_name(default)]
        common = {"source": self.info.name, "split": item["split"], "images": [image_rel]}
        for label in sorted(classes) or stable_pick(f"{rid}:segment-negative", all_labels, 1):
            values = classes.get(label, [])
            mask = np.isin(instances, values) if values else np.zeros((h, w), bool)
            answer, grid, iou = text_mask(mask)
            objs = [o for o in kept if o["label"] == label]
            outcomes.append(
                make_record(
                    oid=f"{item['id']}:segment:{label}",
                    task="refer_seg",
                    argument=f"all {plural(label)}",
                    answer=answer,
                    targets={
                        "mask": mask_rel,
                        "mask_values": values,
                        "boxes": [{"label": label, "box": o["box"]} for o in objs],
                        "count": len(objs),
                    },
                    meta={"width": w, "height": h, **meta, "mask_grid": grid, "mask_text_iou": iou},
                    **common,
                )
            )
        outcomes += object_records(
            source=self.info.name,
            oid=item["id"],
            split=item["split"],
            image=image_rel,
            size=(w, h),
            objects=kept,
            class_labels=all_labels,
            meta=meta,
            polygons=True,
        )
        return outcomes


def _png16(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG")
