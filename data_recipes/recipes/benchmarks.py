"""Benchmarks kept as eval-only recipes: CHOICE and GeoChat-Bench.

Their records carry the split ``test`` and ``eval_only`` in the manifest; ``geoassist data mix``
refuses to put their images into a training mixture.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from geoassist.formats import format_box, parse
from geoassist.readers.rsvqa import rsvqa_answers_by_question

from ..core import (
    Context,
    DatasetNotFoundError,
    Dropped,
    Outcome,
    Recipe,
    RecipeInfo,
    Reject,
    make_record,
    register,
    split_filter,
)
from ..geometry import box_of_points, label_name, text_mask

_OPTION = re.compile(r"^\s*([A-Z])\s*[.)．:]\s*(.+?)\s*$")


def split_options(question: str) -> tuple[str, dict[str, str]]:
    """A multiple-choice question → (stem, ``{"A": "…", …}``) from its ``A.…`` lines."""
    stem, options = [], {}
    for line in question.splitlines():
        match = _OPTION.match(line)
        if match and (options or stem):
            options[match[1]] = match[2]
        elif not options:
            stem.append(line)
        else:
            options[list(options)[-1]] += " " + line.strip()
    return "\n".join(stem).strip(), options


@register
class CHOICE(Recipe):
    """CHOICE: a benchmark of 23 remote-sensing VLM tasks (multiple choice, grounding, segmentation); eval only.

    Layout (ShawnAn-WHU/CHOICE): ``<dimension>/<category>/<task>/<task>.json``, each a list of
    ``{id, image_path, question, answer}`` with ``image_path`` relative to the root. Multiple-
    choice items answer a letter (records keep it as the answer, the options in
    ``meta.options`` and the option text in ``meta.answer_text``; ``qtype`` = the CHOICE task).
    Visual-grounding answers are quadrilaterals in 0–1 image coordinates: they become pixel
    ``polygons`` plus their enclosing ``boxes`` (answer ``<box>``). Referring-segmentation items
    carry ``mask_path`` (targets ``mask``, answer = text mask). Items whose image is absent
    are rejected as ``missing image``. Checked against ``rs-samples/choice/CHOICE_subset``.
    """

    info = RecipeInfo(
        name="choice",
        title="CHOICE benchmark",
        tasks=("vqa", "grounding", "refer_seg"),
        licence="MIT (repository); data academic use",
        citation="X. An, J. Sun, Z. Gui, W. He. CHOICE: Benchmarking the Remote Sensing Capabilities of Large Vision-Language Models. 2024.",
        layout="<dimension>/<category>/<task>/<task>.json ([{id, image_path, question, answer|mask_path}]) + the images they name",
        splits=("test",),
        eval_only=True,
        checked_against="real files: rs-samples/choice/CHOICE_subset (all 23 task files)",
        url="https://github.com/ShawnAn-WHU/CHOICE",
    )

    def _files(self, src: Path) -> list[Path]:
        return (
            sorted(p for p in src.rglob("*.json") if p.stem == p.parent.name)
            if src.is_dir()
            else []
        )

    def check(self, src: Path) -> None:
        super().check(src)
        if not self._files(src):
            raise DatasetNotFoundError(
                f"no <task>/<task>.json files under {src}; expected {self.info.layout}"
            )

    def detect(self, src: Path) -> bool:
        files = self._files(src)
        if not files:
            return False
        try:
            first = json.loads(files[0].read_text(encoding="utf-8"))
        except ValueError:
            return False
        return (
            isinstance(first, list)
            and bool(first)
            and {"id", "image_path", "question"} <= set(first[0])
        )

    def items(
        self, src: Path, splits: Sequence[str] | None, options: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        split_filter(splits, ["test"], self.info.name)
        for path in self._files(src):
            rel = path.relative_to(src)
            parts = rel.parts
            for n, entry in enumerate(json.loads(path.read_text(encoding="utf-8"))):
                yield {
                    "id": str(entry.get("id", f"{path.stem}-{n}")),
                    "task_name": path.stem,
                    "dimension": parts[0] if len(parts) > 3 else None,
                    "category": parts[-3] if len(parts) >= 3 else None,
                    "entry": entry,
                }

    def convert(self, item: dict[str, Any], ctx: Context) -> Iterable[Outcome]:
        entry, name = item["entry"], item["task_name"]
        rid = f"{self.info.name}:{item['id']}"
        image = str(entry.get("image_path") or "")
        if not image:
            return [Reject(rid, "missing image", "no image_path")]
        problem = ctx.reject_for(rid, image)
        if problem:
            return [problem]
        size = ctx.image_size(image)
        width, height = size  # type: ignore[misc]
        question = str(entry.get("question") or "").strip()
        if not question:
            return [Reject(rid, "missing question")]
        meta = {
            "width": width,
            "height": height,
            "benchmark_task": name,
            "dimension": item["dimension"],
            "category": item["category"],
        }
        common = {
            "source": self.info.name,
            "oid": item["id"],
            "split": "test",
            "images": [image],
            "qtype": name,
        }
        if "mask_path" in entry:
            mask_rel = str(entry["mask_path"])
            if not (ctx.src / mask_rel).is_file():
                return [Reject(rid, "missing mask", mask_rel)]
            from PIL import Image

            with Image.open(ctx.src / mask_rel) as im:
                array = np.asarray(im)
            mask = (array.max(axis=-1) if array.ndim == 3 else array) > 0
            if mask.shape != (height, width):
                return [
                    Reject(
                        rid,
                        "size mismatch",
                        f"mask {mask.shape[1]}x{mask.shape[0]}, image {width}x{height}",
                    )
                ]
            answer, grid, iou = text_mask(mask)
            return [
                make_record(
                    task="refer_seg",
                    argument=question,
                    answer=answer,
                    targets={"mask": mask_rel},
                    meta={**meta, "mask_grid": grid, "mask_text_iou": iou},
                    **common,
                )
            ]
        answer = entry.get("answer")
        if answer is None or answer == "":
            return [Reject(rid, "missing answer")]
        if isinstance(answer, list):
            try:
                points = [[float(x) * width, float(y) * height] for x, y in answer]
            except (TypeError, ValueError):
                return [Reject(rid, "malformed annotation", f"grounding answer {answer!r}")]
            if len(points) < 3:
                return [Reject(rid, "degenerate geometry", f"{len(points)} points")]
            box = box_of_points(points)
            return [
                make_record(
                    task="grounding",
                    argument=question,
                    answer=format_box(box, size),
                    targets={
                        "boxes": [{"label": "target", "box": box}],
                        "polygons": [{"label": "target", "points": points}],
                        "count": 1,
                    },
                    meta={**meta, "answer_normalised": answer},
                    **common,
                )
            ]
        letter = str(answer).strip()
        stem, options = split_options(question)
        meta.update({"options": options, "answer_text": options.get(letter)})
        return [make_record(task="vqa", argument=question, answer=letter, meta=meta, **common)]


# --------------------------------------------------------------------------- GeoChat-Bench

_GEOCHAT_FILES = {
    "aid.jsonl": "scene_cls",
    "UCmerced.jsonl": "scene_cls",
    "hrben.jsonl": "vqa",
    "lrben.jsonl": "vqa",
    "region_captioning.jsonl": "region_caption",
    "referring.jsonl": "referring",
    "grounding_description.jsonl": "grounding",
}
_VQA_SUFFIX = re.compile(r"\s*Answer the question using a single word or phrase\.?\s*$", re.I)


@register
class GeoChatBench(Recipe):
    """GeoChat-Bench: GeoChat's evaluation files (``MBZUAI/GeoChat-Bench``); eval only.

    Layout: the ``*.jsonl`` files at the root (``aid``, ``UCmerced``, ``hrben``, ``lrben``,
    ``region_captioning``, ``referring``, ``grounding_description``), one JSON object a line
    with ``question_id``, ``image`` or ``image_id``, ``text``/``question`` and, where released,
    ``ground_truth``; images under ``images/`` (or the option ``image_dir``), found by name
    with or without ``.png``. Scene files take the class from ``question_id``'s first path
    part; ``hrben``/``lrben`` ship no answers, so they are rejected as ``missing answer`` unless
    the option ``rsvqa_answers`` names the RSVQA answers JSON to join on ``question_id``.
    GeoChat's boxes (``{<x1><y1><x2><y2>|θ}`` on a 0–100 grid) are converted to our grammar and
    to pixel targets. Checked against GeoChat's and third-party evaluation scripts that read
    these files; tested on fake files in that format.
    """

    info = RecipeInfo(
        name="geochat_bench",
        title="GeoChat-Bench",
        tasks=("scene_cls", "vqa", "region_caption", "referring", "grounding"),
        licence="see MBZUAI/GeoChat-Bench (benchmark annotations over AID, UCM, RSVQA, SAMRS images)",
        citation="K. Kuckreja, M. S. Danish, M. Naseer et al. GeoChat: Grounded Large Vision-Language Model for Remote Sensing. CVPR 2024.",
        layout="<name>.jsonl (question_id, image|image_id, text|question, ground_truth) + images/",
        splits=("test",),
        eval_only=True,
        checked_against="evaluation scripts reading GeoChat-Bench (field names); fake files",
        url="https://huggingface.co/datasets/MBZUAI/GeoChat-Bench",
    )

    def _files(self, src: Path) -> list[Path]:
        return (
            [src / name for name in _GEOCHAT_FILES if (src / name).is_file()]
            if src.is_dir()
            else []
        )

    def check(self, src: Path) -> None:
        super().check(src)
        if not self._files(src):
            raise DatasetNotFoundError(f"none of {', '.join(_GEOCHAT_FILES)} in {src}")

    def detect(self, src: Path) -> bool:
        return bool(self._files(src))

    def items(
        self, src: Path, splits: Sequence[str] | None, options: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        split_filter(splits, ["test"], self.info.name)
        for path in self._files(src):
            with open(path, encoding="utf-8") as f:
                for number, line in enumerate(f, start=1):
                    if line.strip():
                        yield {"file": path.name, "line": number, "text": line}

    def _image(self, ctx: Context, row: dict[str, Any]) -> str | None:
        name = str(row.get("image") or row.get("image_id") or "")
        if not name:
            return None
        folders = [ctx.options.get("image_dir"), "images", ""]
        for folder in [f for f in folders if f is not None]:
            for candidate in (name, f"{name}.png", f"{name}.jpg", f"{name}.tif"):
                rel = f"{folder}/{candidate}" if folder else candidate
                if (ctx.src / rel).is_file():
                    return rel
        return f"images/{name}"

    def convert(self, item: dict[str, Any], ctx: Context) -> Iterable[Outcome]:
        file, task = item["file"], _GEOCHAT_FILES[item["file"]]
        stem = Path(file).stem
        try:
            row = json.loads(item["text"])
        except ValueError:
            return [
                Reject(
                    f"{self.info.name}:{stem}:{item['line']}", "malformed line", item["text"][:200]
                )
            ]
        qid = str(row.get("question_id", item["line"]))
        rid = f"{self.info.name}:{stem}:{qid}"
        image = self._image(ctx, row)
        if image is None:
            return [Reject(rid, "missing image", "no image or image_id")]
        problem = ctx.reject_for(rid, image)
        if problem:
            return [problem]
        size = ctx.image_size(image)
        width, height = size  # type: ignore[misc]
        text = str(row.get("text") or row.get("question") or "").strip()
        meta = {
            "width": width,
            "height": height,
            "benchmark_file": file,
            **{k: row[k] for k in ("category", "type", "size_group", "dataset") if k in row},
        }
        common = {
            "source": self.info.name,
            "oid": f"{stem}:{qid}",
            "split": "test",
            "images": [image],
            "meta": meta,
        }
        if task == "scene_cls":
            label = qid.split("/")[0] if "/" in qid else row.get("ground_truth")
            if not label:
                return [Reject(rid, "missing answer", "no class in question_id")]
            return [
                make_record(
                    task="scene_cls",
                    answer=label_name(str(label)),
                    targets={"labels": [str(label)]},
                    qtype=stem,
                    **common,
                )
            ]
        if task == "vqa":
            answer = row.get("ground_truth") or row.get("answer")
            if answer is None and ctx.options.get("rsvqa_answers"):
                answer = _rsvqa_answers(ctx.options["rsvqa_answers"]).get(qid)
            if answer is None:
                return [
                    Reject(
                        rid,
                        "missing answer",
                        "GeoChat-Bench ships no VQA answers; pass --option rsvqa_answers=<RSVQA answers JSON>",
                    )
                ]
            question = _VQA_SUFFIX.sub("", text)
            return [
                make_record(
                    task="vqa",
                    argument=question,
                    answer=str(answer),
                    qtype=row.get("category") or stem,
                    **common,
                )
            ]
        truth = str(row.get("ground_truth") or "")
        if task == "region_caption":
            if not truth:
                return [Reject(rid, "missing answer")]
            region = parse(_geochat(text, size), size)
            if not region.boxes and not region.obboxes:
                return [Reject(rid, "malformed annotation", f"no region box in {text[:120]!r}")]
            box = list(region.boxes[0].box) if region.boxes else _obox_box(region.obboxes[0])
            return [
                make_record(
                    task="region_caption",
                    region=format_box(box, size),
                    answer=truth,
                    targets={"boxes": [{"label": truth, "box": box}], "count": 1},
                    **common,
                )
            ]
        if not truth:
            return [Reject(rid, "missing answer")]
        converted = _geochat(truth, size)
        parsed = parse(converted, size)
        outcomes: list[Outcome] = [Dropped(rid, "malformed annotation", e) for e in parsed.errors]
        boxes = [{"label": text, "box": list(b.box)} for b in parsed.boxes]
        obboxes = [
            {"label": text, "points": [[float(x), float(y)] for x, y in o.corners()]}
            for o in parsed.obboxes
        ]
        if not boxes and not obboxes:
            return [
                *outcomes,
                Reject(rid, "malformed annotation", f"no box in ground truth {truth[:120]!r}"),
            ]
        answer = " ".join(re.findall(r"<(?:box|obox)>[^<>]*</(?:box|obox)>", converted))
        targets: dict[str, Any] = {
            "boxes": boxes + [{"label": text, "box": box_of_points(o["points"])} for o in obboxes],
            "count": len(boxes) + len(obboxes),
        }
        if obboxes:
            targets["obboxes"] = obboxes
        outcomes.append(
            make_record(task=task, argument=text, answer=answer, targets=targets, **common)
        )
        return outcomes


_ANSWER_CACHE: dict[str, dict[str, str]] = {}


def _rsvqa_answers(path: str) -> dict[str, str]:
    if path not in _ANSWER_CACHE:
        _ANSWER_CACHE[path] = rsvqa_answers_by_question(path)
    return _ANSWER_CACHE[path]


def _geochat(text: str, size: Sequence[int]) -> str:
    from geoassist.formats import from_geochat

    return from_geochat(text, size)


def _obox_box(obox: Any) -> list[float]:
    return box_of_points(obox.corners().tolist())
