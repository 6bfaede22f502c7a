"""Reading the CHOICE benchmark (ShawnAn-WHU/CHOICE) in its published layout into records.

CHOICE is an evaluation-only benchmark of 23 remote-sensing tasks under ``perception/`` and
``reasoning/``, one JSON list per task (``{id, image_path, question, answer}``, paths relative
to the benchmark root). Multiple-choice answers are option letters; ``visual_grounding``
answers are a quadrilateral of four ``[x, y]`` points as fractions of the image; and
``referring_expression_segmentation`` items carry ``mask_path`` instead of an answer. Data
licence: academic use (see the benchmark's repository).

Records get ids ``choice:<item id>``, ``qtype`` = the CHOICE task name and
``meta.choice_group`` = its folder (``perception/single_instance_identification``…).
Items whose image is missing are skipped, with a count in the log.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from geoassist.data_recipes.schema import RecordError, validate_record
from geoassist.eval.normalize import choice_options
from geoassist.eval.targets import EvalDataError

logger = logging.getLogger(__name__)

__all__ = ["read_choice", "looks_like_choice"]

GROUPS = ("perception", "reasoning")


def looks_like_choice(root: str | Path) -> bool:
    root = Path(root)
    return any((root / g).is_dir() and any((root / g).rglob("*.json")) for g in GROUPS)


def _image_size(path: Path) -> tuple[int, int]:
    from geoassist.io import read_header

    return read_header(path).size


def _record(item: dict[str, Any], task: str, group: str, root: Path) -> dict[str, Any] | None:
    image = str(item["image_path"])
    image_path = root / image
    if not image_path.is_file():
        return None
    question = str(item["question"])
    record: dict[str, Any] = {
        "id": f"choice:{item['id']}",
        "source": "choice",
        "split": "test",
        "images": [image],
        "conversations": [{"role": "user", "content": f"<image>\n{question}"}],
        "qtype": task,
        "meta": {"choice_group": group, "benchmark": "CHOICE"},
    }
    if "mask_path" in item:
        mask = root / str(item["mask_path"])
        if not mask.is_file():
            return None
        record.update(task="refer_seg", answer="(mask)", targets={"mask": str(item["mask_path"])})
        record["meta"]["image_size"] = list(_image_size(image_path))
        return record
    answer = item.get("answer")
    if isinstance(answer, list):
        # A quadrilateral in fractions of the image; it is scored by the IoU of its box.
        width, height = _image_size(image_path)
        xs = [float(p[0]) * width for p in answer]
        ys = [float(p[1]) * height for p in answer]
        box = [min(xs), min(ys), max(xs), max(ys)]
        record.update(
            task="grounding",
            answer=json.dumps(box),
            targets={"boxes": [{"label": None, "box": box}]},
        )
        record["meta"].update(image_size=[width, height], quad_normalized=answer)
        return record
    options = choice_options(question)
    if not options or str(answer).strip().upper() not in options:
        raise EvalDataError(
            f"CHOICE item {item['id']} ({task}): answer {answer!r} is not one of its options"
        )
    record.update(task="vqa", answer=str(answer).strip().upper(), targets={})
    record["meta"]["options"] = options
    return record


def read_choice(root: str | Path) -> tuple[list[dict[str, Any]], Path]:
    """All CHOICE items under ``root`` whose files are present, as records; and the image root."""
    root = Path(root)
    if not looks_like_choice(root):
        raise EvalDataError(
            f"{root} does not look like the CHOICE benchmark: expected perception/ and reasoning/ "
            "folders with one JSON file per task"
        )
    records: list[dict[str, Any]] = []
    skipped = 0
    for path in sorted(root.rglob("*.json")):
        relative = path.relative_to(root)
        if relative.parts[0] not in GROUPS:
            continue
        try:
            items = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise EvalDataError(f"cannot read CHOICE task file {path}: {exc}") from exc
        group = "/".join(relative.parts[:-2])
        for item in items:
            record = _record(item, path.stem, group, root)
            if record is None:
                skipped += 1
                continue
            try:
                validate_record(record)
            except RecordError as exc:
                raise EvalDataError(f"CHOICE item in {path}: {exc}") from None
            records.append(record)
    if skipped:
        logger.info("CHOICE: %d items skipped because their image or mask is missing", skipped)
    return records, root
