"""Reading what a record's ``targets`` hold into pixel geometry, and finding image sizes.

Records keep geometry in pixels of the original image (``data_recipes/schema.py``): boxes as
``{"label", "box": [x1, y1, x2, y2]}``, oriented boxes and polygons as ``{"label", "points":
[[x, y], …]}``, masks as a PNG path (``mask``, with optional ``mask_values``) or a COCO RLE
(``mask_rle``). The readers also take the bare forms other tools write: ``[x1, y1, x2, y2]``,
``[cx, cy, w, h, angle_deg]`` or corner numbers for oriented boxes, an RLE or nested list in
``mask``; without a mask, the record's polygons are rasterised.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from geoassist.errors import GeoAssistError
from geoassist.formats import OBox, corners_to_obbox

__all__ = [
    "EvalDataError",
    "reference_boxes",
    "reference_oboxes",
    "reference_mask",
    "reference_labels",
    "record_image_size",
    "resolve_image",
    "rasterize_polygons",
]


class EvalDataError(GeoAssistError, ValueError):
    """Records or files given to the evaluation harness cannot be used as they are."""


def resolve_image(record: dict[str, Any], root: str | Path | None, i: int = 0) -> Path:
    """Path of the record's ``i``-th image under ``root`` (relative to the working folder without one)."""
    from geoassist.data_recipes import resolve_image as recipe_resolve

    return Path(recipe_resolve(record, root if root is not None else ".", i))


def _size_from_meta(meta: dict[str, Any]) -> tuple[int, int] | None:
    for key in ("image_size", "size"):
        value = meta.get(key)
        if isinstance(value, (list, tuple)) and len(value) == 2:
            return int(value[0]), int(value[1])
    if "width" in meta and "height" in meta:
        return int(meta["width"]), int(meta["height"])
    return None


def record_image_size(record: dict[str, Any], root: str | Path | None) -> tuple[int, int]:
    """``(width, height)`` of the image answers refer to: the last image of a pair or series.

    Taken from ``meta`` (``image_size`` / ``size`` as ``[W, H]``, or ``width`` and ``height``)
    when the recipe recorded it, otherwise read from the image header.
    """
    size = _size_from_meta(record.get("meta") or {})
    if size is not None:
        return size
    if not record.get("images"):
        raise EvalDataError(f"record {record['id']} has no image, so its geometry cannot be scored")
    path = resolve_image(record, root, len(record["images"]) - 1)
    from geoassist.io import read_header

    try:
        return read_header(path).size
    except GeoAssistError as exc:
        raise EvalDataError(
            f"record {record['id']}: cannot read the image size from {path} ({exc}); "
            "pass --data with the images, or records whose meta holds image_size"
        ) from exc


def _numbers(value: Any) -> list[float] | None:
    try:
        flat = np.asarray(value, dtype=float).ravel()
    except (TypeError, ValueError):
        return None
    return flat.tolist()


def reference_labels(record: dict[str, Any]) -> list[str | None]:
    labels = (record.get("targets") or {}).get("labels")
    return list(labels) if isinstance(labels, list) else []


def _labelled(record: dict[str, Any], key: str) -> list[tuple[str | None, Any]]:
    items = (record.get("targets") or {}).get(key) or []
    labels = reference_labels(record)
    out = []
    for n, item in enumerate(items):
        label = labels[n] if n < len(labels) else None
        if isinstance(item, dict):
            label = item.get("label", label)
        out.append((label, item))
    return out


def reference_boxes(
    record: dict[str, Any],
) -> list[tuple[str | None, tuple[float, float, float, float]]]:
    """``(label, (x1, y1, x2, y2))`` for each target box, in pixels."""
    out = []
    for label, item in _labelled(record, "boxes"):
        value = item.get("box", item.get("bbox")) if isinstance(item, dict) else item
        numbers = _numbers(value)
        if numbers is None or len(numbers) != 4:
            raise EvalDataError(
                f"record {record['id']}: a target box must be 4 numbers x1,y1,x2,y2, got {value!r}"
            )
        x1, y1, x2, y2 = numbers
        out.append((label, (min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2))))
    return out


def reference_oboxes(record: dict[str, Any]) -> list[tuple[str | None, OBox]]:
    """``(label, OBox)`` for each target oriented box, in pixels."""
    out = []
    for label, item in _labelled(record, "obboxes"):
        if isinstance(item, dict):
            value = next(
                (item[k] for k in ("points", "obox", "corners", "quad") if k in item), None
            )
        else:
            value = item
        numbers = _numbers(value)
        if numbers is not None and len(numbers) == 5:
            cx, cy, w, h, angle = numbers
        elif numbers is not None and len(numbers) >= 6 and len(numbers) % 2 == 0:
            cx, cy, w, h, angle = corners_to_obbox(np.reshape(numbers, (-1, 2)))
        else:
            raise EvalDataError(
                f"record {record['id']}: a target oriented box must be cx,cy,w,h,angle or corner points, got {value!r}"
            )
        out.append((label, OBox(label, cx, cy, w, h, angle)))
    return out


def rasterize_polygons(
    polygons: Sequence[Sequence[Sequence[float]]], size: tuple[int, int]
) -> np.ndarray:
    """Boolean (H, W) mask of the union of polygons given as pixel points."""
    from PIL import Image, ImageDraw

    width, height = size
    canvas = Image.new("1", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    for points in polygons:
        xy = [(float(x), float(y)) for x, y in points]
        if len(xy) >= 3:
            draw.polygon(xy, fill=1)
    return np.array(canvas, dtype=bool)


def reference_mask(
    record: dict[str, Any], size: tuple[int, int], root: str | Path | None
) -> np.ndarray:
    """The target mask as a boolean (H, W) array of the image answers refer to."""
    targets = record.get("targets") or {}
    value = targets.get("mask")
    width, height = size
    if "mask_rle" in targets or isinstance(value, str):
        from geoassist.data_recipes import load_target_mask

        if isinstance(value, str) and not (Path(root or ".") / value).is_file():
            raise EvalDataError(
                f"record {record['id']}: reference mask {Path(root or '.') / value} does not exist; check --data"
            )
        mask = load_target_mask(record, root or ".")
    elif isinstance(value, dict):
        from geoassist.rle import rle_to_mask

        mask = rle_to_mask(value)
    elif value is not None:
        mask = np.asarray(value, dtype=bool)
    else:
        polygons = targets.get("polygons")
        if not polygons:
            raise EvalDataError(f"record {record['id']} has neither a target mask nor polygons")
        points = [p.get("points") if isinstance(p, dict) else p for p in polygons]
        return rasterize_polygons(
            [np.reshape(np.asarray(p, dtype=float), (-1, 2)) for p in points], size
        )
    if mask.shape != (height, width):
        raise EvalDataError(
            f"record {record['id']}: target mask is {mask.shape[1]}x{mask.shape[0]}, image is {width}x{height}"
        )
    return mask
