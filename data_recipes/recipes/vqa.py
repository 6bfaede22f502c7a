"""Visual question answering: RSVQA-LR, RSVQA-HR, RSIVQA, RSVLM-QA and CDVQA."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ..core import (
    Context,
    DatasetNotFoundError,
    Outcome,
    Recipe,
    RecipeInfo,
    Reject,
    make_record,
    register,
    split_filter,
)

# --------------------------------------------------------------------------- RSVQA

_RSVQA_CITATION = (
    "S. Lobry, D. Marcos, J. Murray, D. Tuia. RSVQA: Visual Question Answering for Remote Sensing Data. "
    "IEEE TGRS 58(12), 2020."
)

# (regex on the questions file name, image folders tried in order)
_LR_NAMES = (
    r"LR_split_(?P<split>.+?)_questions(?P<reduced>_reduced)?\.json",
    r"questionsS2(?P<reduced>_reduced)?\.json",
)
_HR_NAMES = (r"USGS_split_(?P<split>.+?)_questions(?P<reduced>_reduced)?\.json",)
_LR_IMAGES = ("Images_LR", "images")
_HR_IMAGES = ("Data", "images")


def _rsvqa_question_files(root: Path, patterns: Sequence[str]) -> dict[str, Path]:
    """``{split: questions JSON}``; files without a split in their name (author-site excerpts) give split ``all``."""
    found: dict[str, Path] = {}
    for folder in (root, *sorted(p for p in root.iterdir() if p.is_dir())) if root.is_dir() else ():
        for path in sorted(folder.glob("*.json")):
            for pattern in patterns:
                match = re.fullmatch(pattern, path.name)
                if match:
                    split = match.groupdict().get("split") or "all"
                    found.setdefault(split, path)
    return found


def _gsd_m(text: Any) -> float | None:
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*m\s*", str(text))
    return float(match[1]) if match else None


class _RSVQA(Recipe):
    """Shared reader of the RSVQA JSON schema (questions / answers / images with ids)."""

    patterns: tuple[str, ...] = ()
    image_dirs: tuple[str, ...] = ()

    def check(self, src: Path) -> None:
        super().check(src)
        if not _rsvqa_question_files(src, self.patterns):
            raise DatasetNotFoundError(
                f"no RSVQA questions JSON in {src}; expected {self.info.layout}"
            )

    def detect(self, src: Path) -> bool:
        return src.is_dir() and bool(_rsvqa_question_files(src, self.patterns))

    def available_splits(self, src: Path) -> list[str]:
        return list(_rsvqa_question_files(src, self.patterns))

    def items(
        self, src: Path, splits: Sequence[str] | None, options: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        files = _rsvqa_question_files(src, self.patterns)
        for split in split_filter(splits, list(files), self.info.name):
            qpath = files[split]
            apath = qpath.with_name(qpath.name.replace("questions", "answers"))
            ipath = qpath.with_name(qpath.name.replace("questions", "images"))
            for p in (apath, ipath):
                if not p.is_file():
                    raise DatasetNotFoundError(
                        f"{p.name} is missing beside {qpath.name} in {qpath.parent}"
                    )
            questions = json.loads(qpath.read_text(encoding="utf-8"))["questions"]
            answers = {a["id"]: a for a in json.loads(apath.read_text(encoding="utf-8"))["answers"]}
            images = {i["id"]: i for i in json.loads(ipath.read_text(encoding="utf-8"))["images"]}
            for q in questions:
                image = images.get(q.get("img_id"))
                given = [answers[i] for i in q.get("answers_ids", []) if i in answers]
                active = [a for a in given if a.get("active", True)]
                yield {
                    "id": str(q["id"]),
                    "split": split,
                    "question": q.get("question"),
                    "type": q.get("type"),
                    "active": bool(q.get("active", True))
                    and (image is None or bool(image.get("active", True))),
                    "answer": (active or given)[0]["answer"] if (active or given) else None,
                    "answer_active": bool(active),
                    "image_id": q.get("img_id"),
                    "image": {
                        k: image.get(k)
                        for k in (
                            "original_name",
                            "sensor",
                            "res_x",
                            "upperleft_map_x",
                            "upperleft_map_y",
                        )
                    }
                    if image
                    else None,
                }

    def _image_path(self, ctx: Context, image_id: Any) -> str:
        for folder in self.image_dirs:
            for ext in (".tif", ".png"):
                rel = f"{folder}/{image_id}{ext}"
                if (ctx.src / rel).is_file():
                    return rel
        return f"{self.image_dirs[0]}/{image_id}.tif"

    def convert(self, item: dict[str, Any], ctx: Context) -> Iterable[Outcome]:
        rid = f"{self.info.name}:{item['id']}"
        if item["image"] is None:
            return [
                Reject(
                    rid, "missing image", f"image id {item['image_id']} is not in the images JSON"
                )
            ]
        if not item["active"]:
            return [
                Reject(
                    rid,
                    "inactive in source",
                    "the question or its image is marked inactive by the authors",
                )
            ]
        if not (item["question"] or "").strip():
            return [Reject(rid, "missing question")]
        if item["answer"] is None or not str(item["answer"]).strip():
            return [Reject(rid, "missing answer")]
        rel = self._image_path(ctx, item["image_id"])
        problem = ctx.reject_for(rid, rel)
        if problem:
            return [problem]
        width, height = ctx.image_size(rel)  # type: ignore[misc]
        meta_in = item["image"]
        meta = {
            "image_id": item["image_id"],
            "width": width,
            "height": height,
            "gsd_m": _gsd_m(meta_in.get("res_x")),
            "sensor": meta_in.get("sensor"),
            "original_name": meta_in.get("original_name"),
            "map_upper_left": [meta_in.get("upperleft_map_x"), meta_in.get("upperleft_map_y")],
        }
        if not item["answer_active"]:
            meta["answer_inactive_in_source"] = True
        qtype = item["type"]
        task = "counting" if qtype == "count" else "vqa"
        answer = str(item["answer"])
        targets = {"count": int(answer)} if task == "counting" and answer.isdigit() else {}
        return [
            make_record(
                source=self.info.name,
                oid=item["id"],
                split=item["split"],
                task=task,
                images=[rel],
                argument=item["question"].strip(),
                answer=answer,
                qtype=qtype,
                targets=targets,
                meta=meta,
            )
        ]


@register
class RSVQALR(_RSVQA):
    """RSVQA-LR: Sentinel-2 RGB tiles (10 m) over the Netherlands with generated questions.

    Layout (Zenodo release): ``LR_split_{train,val,test}_{questions,answers,images}.json`` and
    ``Images_LR/<image id>.tif``. The author's web browser publishes the same JSON schema as
    ``{questions,answers,images}S2_reduced.json`` with ``images/<id>.png`` (split ``all``);
    both are read. Checked against the real excerpt in ``rs-samples/rsvqa/LR_reduced``.
    Count questions become ``counting`` records, the others ``vqa``; ``qtype`` keeps RSVQA's
    ``presence`` / ``comp`` / ``count`` / ``rural_urban``.
    """

    info = RecipeInfo(
        name="rsvqa_lr",
        title="RSVQA low resolution",
        tasks=("vqa", "counting"),
        licence="CC BY 4.0 (Zenodo record 6344334)",
        citation=_RSVQA_CITATION,
        layout="LR_split_<split>_{questions,answers,images}.json + Images_LR/<id>.tif (or questionsS2_reduced.json… + images/<id>.png)",
        splits=("train", "val", "test"),
        checked_against="real files: rs-samples/rsvqa/LR_reduced",
        url="https://rsvqa.sylvainlobry.com/",
    )
    patterns = _LR_NAMES
    image_dirs = _LR_IMAGES


@register
class RSVQAHR(_RSVQA):
    """RSVQA-HR: USGS aerial orthophotos (15 cm) with generated questions.

    Layout (Zenodo release): ``USGS_split_{train,val,test,test_phili}_{questions,answers,images}.json``
    and ``Data/<image id>.tif``. The two test sets stay apart: ``test`` (test set 1, same area
    as training) and ``test_phili`` (test set 2, Philadelphia). Excerpts named
    ``USGS_split_<split>_*_reduced.json`` with ``images/<id>.png`` are read too (checked against
    ``rs-samples/rsvqa/HR_reduced``). ``qtype``: ``presence`` / ``comp`` / ``count`` / ``area``.
    """

    info = RecipeInfo(
        name="rsvqa_hr",
        title="RSVQA high resolution",
        tasks=("vqa", "counting"),
        licence="CC BY 4.0 (Zenodo record 6344367)",
        citation=_RSVQA_CITATION,
        layout="USGS_split_<split>_{questions,answers,images}.json + Data/<id>.tif; splits train, val, test (test 1), test_phili (test 2)",
        splits=("train", "val", "test", "test_phili"),
        checked_against="real files: rs-samples/rsvqa/HR_reduced",
        url="https://rsvqa.sylvainlobry.com/",
    )
    patterns = _HR_NAMES
    image_dirs = _HR_IMAGES


# --------------------------------------------------------------------------- RSIVQA

_RSIVQA_LINE = re.compile(r"(?P<image>[^:]+):(?P<question>.*\?)(?P<answer>[^?]*)")


def _image_in(folder: Path, name: str, subdirs: Sequence[str]) -> Path | None:
    for sub in subdirs:
        path = folder / sub / name if sub else folder / name
        if path.is_file():
            return path
    return None


@register
class RSIVQA(Recipe):
    """RSIVQA: questions generated from UCM, Sydney, RSICD/AID and other sets, one ``image:question?answer`` a line.

    Layout (spectralpublic/RSIVQA): one folder per source set (``UCM/``, ``Sydney/``, ``AID/``…)
    holding ``*.txt`` files of ``<image file>:<question>?<answer>`` lines. The repository ships
    no images: put each set's images in its folder, directly or under ``images/`` or ``imgs/``
    (option ``image_dir`` names another subfolder). A line's answer is what follows the last
    ``?``. The source gives no question types and no splits, so ``qtype`` is None and the split
    is ``all``. Ids are ``rsivqa:<folder>/<file stem>:<line number>``. Checked against the real
    text files in ``rs-samples/rsivqa``.
    """

    info = RecipeInfo(
        name="rsivqa",
        title="RSIVQA",
        tasks=("vqa",),
        licence="no licence stated (academic use)",
        citation="X. Zheng, B. Wang, X. Du, X. Lu. Mutual Attention Inception Network for Remote Sensing Visual Question Answering. IEEE TGRS 60, 2022.",
        layout="<set>/<name>.txt with 'image:question?answer' lines; images in <set>/, <set>/images/ or <set>/imgs/",
        splits=("all",),
        checked_against="real files: rs-samples/rsivqa (UCM, Sydney, AID text files)",
        url="https://github.com/spectralpublic/RSIVQA",
    )

    def _files(self, src: Path) -> list[Path]:
        return sorted(p for p in src.glob("*/*.txt") if p.is_file())

    def check(self, src: Path) -> None:
        super().check(src)
        if not self._files(src):
            raise DatasetNotFoundError(
                f"no <set>/*.txt question files in {src}; expected {self.info.layout}"
            )

    def detect(self, src: Path) -> bool:
        files = self._files(src) if src.is_dir() else []
        if not files:
            return False
        with open(files[0], encoding="utf-8", errors="replace") as f:
            first = f.readline()
        return bool(_RSIVQA_LINE.fullmatch(first.strip()))

    def items(
        self, src: Path, splits: Sequence[str] | None, options: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        split_filter(splits, ["all"], self.info.name)
        for path in self._files(src):
            key = f"{path.parent.name}/{path.stem}"
            with open(path, encoding="utf-8", errors="replace") as f:
                for number, line in enumerate(f, start=1):
                    if line.strip():
                        yield {
                            "id": f"{key}:{number}",
                            "file": path.relative_to(src).as_posix(),
                            "line": line.rstrip("\r\n"),
                        }

    def convert(self, item: dict[str, Any], ctx: Context) -> Iterable[Outcome]:
        rid = f"{self.info.name}:{item['id']}"
        match = _RSIVQA_LINE.fullmatch(item["line"].strip())
        if not match:
            return [Reject(rid, "malformed line", item["line"][:200])]
        question, answer = match["question"].strip(), match["answer"].strip()
        if not question.rstrip("?").strip():
            return [Reject(rid, "missing question", item["line"][:200])]
        if not answer:
            return [Reject(rid, "missing answer", item["line"][:200])]
        folder = ctx.src / Path(item["file"]).parent
        subdirs = (
            "",
            "images",
            "imgs",
            *([ctx.options["image_dir"]] if ctx.options.get("image_dir") else []),
        )
        image = _image_in(folder, match["image"].strip(), subdirs)
        if image is None:
            return [
                Reject(
                    rid,
                    "missing image",
                    f"{match['image']} not found in {Path(item['file']).parent}/{{,images/,imgs/}}",
                )
            ]
        rel = image.relative_to(ctx.src).as_posix()
        problem = ctx.reject_for(rid, rel)
        if problem:
            return [problem]
        width, height = ctx.image_size(rel)  # type: ignore[misc]
        return [
            make_record(
                source=self.info.name,
                oid=item["id"],
                split="all",
                task="vqa",
                images=[rel],
                argument=question,
                answer=answer,
                meta={"width": width, "height": height, "set": Path(item["file"]).parent.name},
            )
        ]
