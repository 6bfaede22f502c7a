"""`geoassist data inspect`: counts, a few records as text, and a preview sheet with the targets drawn."""

from __future__ import annotations

import json
import os
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .schema import Record
from .store import image_root, load_target_mask, read_manifest, read_records

TILE = 256


def describe(manifest: dict[str, Any]) -> str:
    lines = [
        f"{manifest['recipe']} ({manifest.get('title', '')}): read {manifest['read']}, written {manifest['written']}, rejected {manifest['rejected_total']}",
    ]
    for key in ("by_split", "by_task", "by_qtype", "rejected", "dropped"):
        if manifest.get(key):
            lines.append(f"  {key}: " + ", ".join(f"{k} {v}" for k, v in manifest[key].items()))
    lines.append(f"  image root: {manifest['image_root']}   sha256: {manifest['sha256'][:16]}…")
    return "\n".join(lines)


def render_record(record: Record) -> str:
    lines = [
        f"— {record['id']}  [{record['split']} / {record['task']}{' / ' + record['qtype'] if record.get('qtype') else ''}]"
    ]
    lines.append(f"  images: {', '.join(record['images']) or '(none)'}")
    for turn in record["conversations"]:
        text = turn["content"] if len(turn["content"]) <= 300 else turn["content"][:300] + "…"
        lines.append(f"  {turn['role']:>9}: " + text.replace("\n", "\n" + " " * 13))
    if isinstance(record["answer"], list) and len(record["answer"]) > 1:
        lines.append(f"  references: {len(record['answer'])}")
    targets = record.get("targets") or {}
    if targets:
        summary = {
            k: (len(v) if isinstance(v, list) else v) for k, v in targets.items() if k != "mask_rle"
        }
        lines.append(f"  targets: {json.dumps(summary)[:200]}")
    return "\n".join(lines)


def _pick(records: list[Record], n: int) -> list[Record]:
    """Up to ``n`` records, one per task first so the sample shows the variety."""
    chosen, tasks = [], set()
    for record in records:
        if record["task"] not in tasks:
            chosen.append(record)
            tasks.add(record["task"])
    for record in records:
        if len(chosen) >= n:
            break
        if record not in chosen:
            chosen.append(record)
    return chosen[:n]


def draw_record(record: Record, root: Path) -> Any:
    """One preview tile: the first image (RGB), the targets drawn on it, and the task and answer below."""
    from PIL import Image, ImageDraw

    from geoassist.io import load_image

    canvas = Image.new("RGB", (TILE, TILE + 48), (24, 24, 24))
    draw = ImageDraw.Draw(canvas)
    scale = (1.0, 1.0)
    if record["images"]:
        try:
            image = load_image(root / record["images"][0], max_pixels=None)
            rgb = image.to_rgb_uint8()
            picture = Image.fromarray(rgb)
            width, height = picture.size
            factor = TILE / max(width, height)
            picture = picture.resize(
                (max(1, round(width * factor)), max(1, round(height * factor)))
            )
            scale = (factor, factor)
            targets = record.get("targets") or {}
            try:
                mask = load_target_mask(record, root)
            except (OSError, ValueError):
                mask = None
            if mask is not None and mask.shape == (height, width):
                overlay = Image.fromarray((mask * 255).astype(np.uint8)).resize(picture.size)
                tint = Image.new("RGB", picture.size, (255, 60, 60))
                picture = Image.composite(Image.blend(picture, tint, 0.5), picture, overlay)
            canvas.paste(picture, (0, 0))
            for box in targets.get("boxes", []):
                x1, y1, x2, y2 = box["box"]
                draw.rectangle(
                    [x1 * scale[0], y1 * scale[1], x2 * scale[0], y2 * scale[1]],
                    outline=(255, 220, 0),
                )
            for key, colour in (("obboxes", (0, 220, 255)), ("polygons", (120, 255, 120))):
                for item in targets.get(key, []):
                    points = [(x * scale[0], y * scale[1]) for x, y in item["points"]]
                    draw.polygon(points, outline=colour)
        except Exception as exc:  # a preview must not fail on one bad image
            draw.text((6, 6), f"cannot draw: {type(exc).__name__}", fill=(255, 80, 80))
    answer = record["answer"][0] if isinstance(record["answer"], list) else record["answer"]
    text = f"{record['task']}: {answer}"
    for n, line in enumerate(textwrap.wrap(text, 42)[:3]):
        draw.text((4, TILE + 2 + 14 * n), line, fill=(230, 230, 230))
    return canvas


def preview_sheet(
    records: Sequence[Record], root: Path, path: str | os.PathLike, columns: int = 4
) -> Path:
    from PIL import Image

    tiles = [draw_record(r, root) for r in records]
    rows = max(1, -(-len(tiles) // columns))
    sheet = Image.new("RGB", (columns * TILE, rows * (TILE + 48)), (0, 0, 0))
    for i, tile in enumerate(tiles):
        sheet.paste(tile, ((i % columns) * TILE, (i // columns) * (TILE + 48)))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def inspect(
    folder: str | os.PathLike,
    *,
    n: int = 3,
    split: str | None = None,
    task: str | None = None,
    preview: str | os.PathLike | None = None,
    preview_records: int = 8,
) -> str:
    """A text report of a recipe output; with ``preview``, also a PNG sheet of records with their targets drawn."""
    manifest = read_manifest(folder)
    root = image_root(folder)
    records: list[Record] = []
    for record in read_records(folder, split=split, task=task):
        records.append(record)
        if len(records) >= 2000:  # enough to pick a varied sample without reading everything
            break
    lines = [describe(manifest)]
    for record in _pick(records, n):
        lines.append(render_record(record))
    if preview is not None and records:
        path = preview_sheet(_pick(records, preview_records), root, preview)
        lines.append(f"preview: {path}")
    return "\n".join(lines)
