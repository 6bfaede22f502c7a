"""The one instruction-record schema every recipe writes (documented in docs/DATA.md).

A record is a plain dict (it is stored as a Parquet row), checked by
:func:`validate_record`. Ids are ``"<source>:<original id>"`` so predictions can
be scored against any split; coordinates in ``targets`` are pixels of the
original image (x right, y down, no +1 convention).
"""

from __future__ import annotations

import json
import math
from typing import Any, TypedDict

from geoassist.tasks import record_kinds, tasks_for_record_kind

TASKS = record_kinds()
"""The record kinds (``Record.task``), from the task registry (:mod:`geoassist.tasks`): each
task's record kinds, then the free ones (``conversation``). Checks read the registry itself."""

TARGET_KEYS = ("boxes", "obboxes", "polygons", "mask", "mask_values", "mask_rle", "count", "labels")
"""``mask`` is a PNG path relative to the image root; ``mask_values`` (optional) lists the pixel
values of that PNG that form the target (ints for one-band PNGs, ``[r, g, b]`` for palette-coloured
RGB PNGs such as iSAID's), else every non-zero pixel does; ``mask_rle`` is a COCO run-length
encoding ``{"size": [h, w], "counts": ...}`` for masks that exist in no file."""


class Record(TypedDict, total=False):
    id: str  # "<source>:<original id>", stable across builds
    source: str  # recipe/source name, e.g. "rsvqa_lr"
    split: str  # the dataset's official split name
    task: str  # a record kind: one of TASKS
    images: list[str]  # paths relative to the dataset root; time order for change tasks
    conversations: list[dict[str, str]]  # [{"role": "user"|"assistant", "content": ...}]
    answer: str | list[str]  # reference answer, or all references for captions
    qtype: str | None  # the source's own question-type name
    targets: dict[str, Any]  # boxes / obboxes / polygons / mask / count / labels, pixels
    meta: dict[str, Any]  # gsd, sensor, crs, image size…


class RecordError(ValueError):
    """A record breaks the schema (a recipe bug, not bad input)."""


def validate_record(record: dict[str, Any]) -> None:
    """Raise :class:`RecordError` naming the first rule ``record`` breaks."""
    for key in ("id", "source", "split", "task", "images", "conversations", "answer"):
        if key not in record:
            raise RecordError(f"record {record.get('id', '?')} lacks {key!r}")
    rid, source = record["id"], record["source"]
    if not isinstance(rid, str) or ":" not in rid or not rid.startswith(f"{source}:"):
        raise RecordError(
            f"record id {rid!r} must be '<source>:<original id>' with source {source!r}"
        )
    if record["task"] not in record_kinds():
        raise RecordError(f"record {rid}: unknown task {record['task']!r}")
    images = record["images"]
    if not isinstance(images, list) or not all(isinstance(p, str) and p for p in images):
        raise RecordError(f"record {rid}: images must be a list of relative paths")
    if len(images) < 2 and any(t.images == "2" for t in tasks_for_record_kind(record["task"])):
        raise RecordError(
            f"record {rid}: {record['task']} records need two or more images in time order"
        )
    turns = record["conversations"]
    if not turns or turns[0].get("role") != "user":
        raise RecordError(f"record {rid}: conversations must start with a user turn")
    for turn in turns:
        if turn.get("role") not in ("user", "assistant") or not isinstance(
            turn.get("content"), str
        ):
            raise RecordError(
                f"record {rid}: each turn is {{'role': 'user'|'assistant', 'content': str}}"
            )
    slots = turns[0]["content"].count("<image>")
    if slots != len(images) or any("<image>" in t["content"] for t in turns[1:]):
        raise RecordError(
            f"record {rid}: the first user turn must hold one <image> per image ({len(images)})"
        )
    answer = record["answer"]
    if not (
        isinstance(answer, str)
        or (isinstance(answer, list) and all(isinstance(a, str) for a in answer))
    ):
        raise RecordError(f"record {rid}: answer must be a string or a list of strings")
    targets = record.get("targets") or {}
    unknown = set(targets) - set(TARGET_KEYS)
    if unknown:
        raise RecordError(f"record {rid}: unknown target keys {sorted(unknown)}")
    _validate_targets(rid, targets)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _validate_targets(rid: str, targets: dict[str, Any]) -> None:
    for item in targets.get("boxes", []):
        box = item.get("box") if isinstance(item, dict) else None
        if not (isinstance(box, list) and len(box) == 4 and all(map(_is_number, box))):
            raise RecordError(
                f"record {rid}: each boxes entry is {{'label', 'box': [x1, y1, x2, y2]}}"
            )
    for key, n_min in (("obboxes", 4), ("polygons", 3)):
        for item in targets.get(key, []):
            points = item.get("points") if isinstance(item, dict) else None
            if not (
                isinstance(points, list)
                and len(points) >= n_min
                and all(
                    isinstance(p, list) and len(p) == 2 and all(map(_is_number, p)) for p in points
                )
            ):
                raise RecordError(
                    f"record {rid}: each {key} entry is {{'label', 'points': [[x, y], ...]}}"
                )
    if "mask" in targets and not (isinstance(targets["mask"], str) and targets["mask"]):
        raise RecordError(f"record {rid}: targets['mask'] is a PNG path relative to the image root")
    if "count" in targets and not (isinstance(targets["count"], int) and targets["count"] >= 0):
        raise RecordError(f"record {rid}: targets['count'] is a non-negative integer")


def to_row(record: dict[str, Any]) -> dict[str, Any]:
    """A Parquet-friendly row: nested free-form parts (targets, meta, list answers) as JSON text."""
    answer = record["answer"]
    return {
        "id": record["id"],
        "source": record["source"],
        "split": record["split"],
        "task": record["task"],
        "images": list(record["images"]),
        "conversations": [
            {"role": t["role"], "content": t["content"]} for t in record["conversations"]
        ],
        "answer": json.dumps(answer, ensure_ascii=False) if isinstance(answer, list) else answer,
        "answer_is_list": isinstance(answer, list),
        "qtype": record.get("qtype"),
        "targets": json.dumps(record.get("targets") or {}, ensure_ascii=False, sort_keys=True),
        "meta": json.dumps(record.get("meta") or {}, ensure_ascii=False, sort_keys=True),
    }


def from_row(row: dict[str, Any]) -> Record:
    """Inverse of :func:`to_row`."""
    answer = json.loads(row["answer"]) if row.get("answer_is_list") else row["answer"]
    return Record(
        id=row["id"],
        source=row["source"],
        split=row["split"],
        task=row["task"],
        images=list(row["images"]),
        conversations=[dict(t) for t in row["conversations"]],
        answer=answer,
        qtype=row.get("qtype"),
        targets=json.loads(row.get("targets") or "{}"),
        meta=json.loads(row.get("meta") or "{}"),
    )
