"""Reading recipe outputs back: records, their image root, images and target masks."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from .build import FORMAT, MANIFEST, iter_outcomes
from .core import Context, RecipeError, detect_recipe, get_recipe, split_filter
from .schema import Record, from_row

logger = logging.getLogger(__name__)


def read_manifest(out_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``manifest.json`` of a recipe output; raises when the folder is not a finished output."""
    path = Path(out_dir) / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecipeError(
            f"{Path(out_dir)} has no {MANIFEST}: it is not a finished recipe output (build it with `geoassist data build`)"
        ) from None
    if manifest.get("format") != FORMAT:
        raise RecipeError(
            f"{path} is not a GeoAssist recipe manifest (format {manifest.get('format')!r})"
        )
    return manifest


def image_root(out_dir: str | os.PathLike) -> Path:
    """The folder that ``record["images"]`` (and mask paths in targets) are relative to."""
    manifest = read_manifest(out_dir)
    root = Path(manifest["image_root"])
    return root if root.is_absolute() else (Path(out_dir) / root).resolve()


def read_records(
    out_dir: str | os.PathLike, *, split: str | None = None, task: str | None = None
) -> Iterator[Record]:
    """Stream the records of a recipe output, shard by shard, in the order they were written."""
    out_dir = Path(out_dir)
    manifest = read_manifest(out_dir)
    for shard in manifest["shards"]:
        if split is not None and shard["split"] != split:
            continue
        parquet = pq.ParquetFile(out_dir / shard["path"])
        for batch in parquet.iter_batches(batch_size=1000):
            for row in batch.to_pylist():
                if task is None or row["task"] == task:
                    yield from_row(row)


def as_dataset(out_dir: str | os.PathLike, *, split: str | None = None):
    """The Parquet rows as a ``datasets.Dataset`` (memory-mapped), for ``map``/``filter`` at scale.

    Rows are in the stored form (:func:`schema.to_row`); use :func:`schema.from_row` on each.
    """
    import datasets

    out_dir = Path(out_dir)
    manifest = read_manifest(out_dir)
    files = [
        str(out_dir / s["path"]) for s in manifest["shards"] if split is None or s["split"] == split
    ]
    if not files:
        raise RecipeError(
            f"{out_dir} has no records for split {split!r}; splits: {sorted(manifest['by_split'])}"
        )
    return datasets.load_dataset("parquet", data_files={"records": files}, split="records")


def resolve_image(record: Record, root: str | os.PathLike, i: int = 0) -> Path:
    """The path of the ``i``-th image of ``record`` under ``root`` (from :func:`image_root`)."""
    images = record["images"]
    if not -len(images) <= i < len(images):
        raise IndexError(f"record {record['id']} has {len(images)} image(s); no image {i}")
    return Path(root) / images[i]


def load_records(
    path: str | os.PathLike,
    *,
    recipe: str | None = None,
    split: str | None = None,
    options: dict[str, Any] | None = None,
) -> tuple[list[Record], Path]:
    """Records and their image root from a recipe output folder, or from a raw dataset folder.

    A raw folder is converted in memory by ``recipe`` (detected from the layout when None);
    recipes that write new files (GeoSynth, GeoTIFF tiling) write them into a temporary folder
    that is returned as the image root. Rejected records are counted in the log, not returned.
    """
    path = Path(path).expanduser()
    if (path / MANIFEST).is_file():
        manifest = read_manifest(path)
        if recipe is not None and manifest["recipe"] != get_recipe(recipe).info.name:
            raise RecipeError(f"{path} holds {manifest['recipe']!r} records, not {recipe!r}")
        return list(read_records(path, split=split)), image_root(path)
    name = get_recipe(recipe).info.name if recipe else detect_recipe(path)
    r = get_recipe(name)
    src = path.resolve() if path.exists() else path
    r.check(src)
    out = Path(tempfile.mkdtemp(prefix=f"geoassist-{name}-")) if r.info.writes_files else None
    ctx = Context(src, out, dict(options or {}))
    splits = split_filter([split], r.available_splits(src), name) if split is not None else None
    records: list[Record] = []
    rejected = 0
    for outcome in iter_outcomes(name, src, ctx, splits):
        if isinstance(outcome, dict):
            records.append(outcome)
        else:
            rejected += outcome.__class__.__name__ == "Reject"
    if rejected:
        logger.warning(
            "%s: %d record(s) rejected while reading %s (build it to see why)", name, rejected, path
        )
    return records, (out if out is not None else src)


def load_target_mask(record: Record, root: str | os.PathLike) -> np.ndarray | None:
    """The boolean target mask of a record (H, W), from ``mask`` (+ ``mask_values``) or ``mask_rle``."""
    from PIL import Image

    targets = record.get("targets") or {}
    if "mask_rle" in targets:
        from geoassist.rle import rle_to_mask

        return rle_to_mask(targets["mask_rle"])
    if "mask" not in targets:
        return None
    with Image.open(Path(root) / targets["mask"]) as im:
        array = np.asarray(im.convert("RGB") if im.mode in ("P", "PA", "RGBA") else im)
    values = targets.get("mask_values")
    if values is None:
        return array.any(axis=-1) if array.ndim == 3 else array > 0
    mask = np.zeros(array.shape[:2], bool)
    for value in values:
        if isinstance(value, list):
            rgb = array if array.ndim == 3 else np.repeat(array[..., None], 3, axis=-1)
            mask |= np.all(rgb[..., :3] == np.asarray(value, dtype=rgb.dtype), axis=-1)
        else:
            mask |= (array if array.ndim == 2 else array[..., 0]) == value
    return mask
