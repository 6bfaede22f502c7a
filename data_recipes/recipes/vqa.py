"""Visual question answering: RSVQA-LR, RSVQA-HR, RSIVQA, RSVLM-QA and CDVQA."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from geoassist.readers import Malformed, read_rsvqa_split
from geoassist.readers.rsvqa import (
    HR_IMAGE_DIRS,
    HR_NAMES,
    LR_IMAGE_DIRS,
    LR_NAMES,
    rsvqa_image,
    rsvqa_question_files,
)

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


def _gsd_m(text: Any) -> float | None:
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*m\s*", str(text))
    return float(match[1]) if match else None


class _RSVQA(Recipe):
    """Shared reader of the RSVQA JSON schema (questions / answers / images with ids)."""

    patterns: tuple[str, ...] = ()
    image_dirs: tuple[str, ...] = ()

    def check(self, src: Path) -> None:
        super().check(src)
        if not rsvqa_question_files(src, self.patterns):
            raise DatasetNotFoundError(
                f"no RSVQA questions JSON in {src}; expected {self.info.layout}"
            )

    def detect(self, src: Path) -> bool:
        return src.is_dir() and bool(rsvqa_question_files(src, self.patterns))

    def available_splits(self, src: Path) -> list[str]:
        return list(rsvqa_question_files(src, self.patterns))

    def items(
        self, src: Path, splits: Sequence[str] | None, options: dict[str, Any]
    ) -> Iterator[dict[str, Any] | Reject]:
        files = rsvqa_question_files(src, self.patterns)
        for split in split_filter(splits, list(files), self.info.name):
            qpath = files[split]
            apath = qpath.with_name(qpath.name.replace("questions", "answers"))
            ipath = qpath.with_name(qpath.name.replace("questions", "images"))
            for p in (apath, ipath):
                if not p.is_file():
                    raise DatasetNotFoundError(
                        f"{p.name} is missing beside {qpath.name} in {qpath.parent}"
                    )
            for q in read_rsvqa_split(qpath, apath, ipath):
                if isinstance(q, Malformed):
                    yield Reject(
                        f"{self.info.name}:{split}:{q.key}", q.reason, f"{qpath.name}: {q.detail}"
                    )
                    continue
                image = q.image
                yield {
                    "id": q.id,
                    "split": split,
                    "question": q.question,
                    "type": q.type,
                    "active": q.active,
                    "answer": q.answer,
                    "answer_active": q.answer_active,
                    "image_id": q.image_id,
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
        found = rsvqa_image(ctx.src, image_id, self.image_dirs)
        return found or f"{self.image_dirs[0]}/{image_id}.tif"

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
    patterns = LR_NAMES
    image_dirs = LR_IMAGE_DIRS


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
    patterns = HR_NAMES
    image_dirs = HR_IMAGE_DIRS


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


# --------------------------------------------------------------------------- RSVLM-QA


@register
class RSVLMQA(Recipe):
    """RSVLM-QA: 162,373 QA pairs (and captions) over 13,820 WHU, LoveDA, INRIA and iSAID images.

    Layout (StarZi0213/RSVLM-QA): the annotation ``*.jsonl`` files (one image a line, with
    ``image_path`` or ``image``, an ``id``, QA lists such as ``vqa_pairs``, ``count_vqa_pairs`` and
    ``gpt4_refined_vqa_pairs`` whose items carry ``question``, ``answer``, ``question_type`` and
    ``question_id``, and a ``caption`` when present) and the images they name, relative to the
    folder (or the option ``image_dir``). Every QA list is read; ``qtype`` is the item's
    ``question_type``; counting items become ``counting`` records. The split is the file name's
    ``train``/``val``/``test`` part, else ``all``. Checked against the field names of the authors'
    generation script (``generate_count_vqa_pairs.py``); tested on fake files.
    """

    info = RecipeInfo(
        name="rsvlm_qa",
        title="RSVLM-QA",
        tasks=("vqa", "counting", "caption"),
        licence="see the RSVLM-QA repository (source datasets keep their licences)",
        citation="X. Zi, J. Xiao, Y. Shi et al. RSVLM-QA: A Benchmark Dataset for Remote Sensing Vision Language Model-based Question Answering. 2025.",
        layout="*.jsonl (image_path, *vqa_pairs: [{question, answer, question_type, question_id}], caption) + images",
        splits=("train", "test"),
        checked_against="field names in the authors' generate_count_vqa_pairs.py; fake files",
        url="https://github.com/StarZi0213/RSVLM-QA",
    )

    def _files(self, src: Path) -> list[Path]:
        return (
            sorted(src.rglob("*.jsonl"))
            if src.is_dir()
            else ([src] if src.suffix == ".jsonl" else [])
        )

    @staticmethod
    def _split(path: Path) -> str:
        name = path.stem.lower()
        for split in ("train", "val", "test"):
            if split in name:
                return split
        return "all"

    def check(self, src: Path) -> None:
        super().check(src)
        if not self._files(src):
            raise DatasetNotFoundError(
                f"no .jsonl annotation files under {src}; expected {self.info.layout}"
            )

    def detect(self, src: Path) -> bool:
        for path in self._files(src)[:2]:
            with open(path, encoding="utf-8") as f:
                line = f.readline()
            if "vqa_pairs" in line and "image" in line:
                return True
        return False

    def available_splits(self, src: Path) -> list[str]:
        return sorted({self._split(p) for p in self._files(src)})

    def items(
        self, src: Path, splits: Sequence[str] | None, options: dict[str, Any]
    ) -> Iterator[dict[str, Any]]:
        wanted = split_filter(splits, self.available_splits(src), self.info.name)
        base = src if src.is_dir() else src.parent
        for path in self._files(src):
            split = self._split(path)
            if split not in wanted:
                continue
            with open(path, encoding="utf-8") as f:
                for number, line in enumerate(f, start=1):
                    if line.strip():
                        yield {
                            "file": path.relative_to(base).as_posix(),
                            "line": number,
                            "split": split,
                            "text": line,
                        }

    def convert(self, item: dict[str, Any], ctx: Context) -> Iterable[Outcome]:
        stem = Path(item["file"]).stem
        try:
            row = json.loads(item["text"])
        except ValueError:
            return [
                Reject(
                    f"{self.info.name}:{stem}:{item['line']}", "malformed line", item["text"][:200]
                )
            ]
        image_name = str(row.get("image_path") or row.get("image") or "")
        oid = str(row.get("id") or Path(image_name).stem or item["line"])
        rid = f"{self.info.name}:{oid}"
        if not image_name:
            return [Reject(rid, "missing image", "no image_path")]
        candidates = [
            image_name,
            f"{ctx.options['image_dir']}/{image_name}" if ctx.options.get("image_dir") else None,
            f"images/{Path(image_name).name}",
            Path(image_name).name,
        ]
        rel = next((c for c in candidates if c and (ctx.src / c).is_file()), image_name)
        problem = ctx.reject_for(rid, rel)
        if problem:
            return [problem]
        width, height = ctx.image_size(rel)  # type: ignore[misc]
        common = {
            "source": self.info.name,
            "split": item["split"],
            "images": [rel],
            "meta": {"width": width, "height": height},
        }
        outcomes: list[Outcome] = []
        caption = row.get("caption")
        if isinstance(caption, str) and caption.strip():
            outcomes.append(
                make_record(
                    oid=f"{oid}:caption", task="caption", answer=[caption.strip()], **common
                )
            )
        for key in sorted(k for k in row if k.endswith("vqa_pairs") and isinstance(row[k], list)):
            for n, qa in enumerate(row[key]):
                qid = f"{oid}:{key}:{qa.get('question_id', n) if isinstance(qa, dict) else n}"
                if not isinstance(qa, dict) or not str(qa.get("question", "")).strip():
                    outcomes.append(Reject(f"{self.info.name}:{qid}", "missing question"))
                    continue
                answer = qa.get("answer")
                if answer is None or not str(answer).strip():
                    outcomes.append(Reject(f"{self.info.name}:{qid}", "missing answer"))
                    continue
                qtype = qa.get("question_type") or qa.get("type")
                task = "counting" if qtype and "count" in str(qtype).lower() else "vqa"
                outcomes.append(
                    make_record(
                        oid=qid,
                        task=task,
                        argument=str(qa["question"]).strip(),
                        answer=str(answer).strip(),
                        qtype=str(qtype) if qtype else None,
                        **common,
                    )
                )
        if not outcomes:
            return [Reject(rid, "missing question", "no caption and no QA pairs")]
        return outcomes


# --------------------------------------------------------------------------- CDVQA

_CDVQA_SPLITS = {"Train": "train", "Val": "val", "Test": "test", "Test2": "test2"}


@register
class CDVQA(Recipe):
    """CDVQA: change-detection VQA on SECOND pairs, in the RSVQA JSON schema.

    Layout (YZHJessica/CDVQA): ``{Train,Val,Test,Test2}_{questions,answers,images}.json``
    (RSVQA's ``questions`` with ``img_id``/``type``/``answers_ids``, ``answers``, and ``images``
    whose ``file_name`` names a SECOND pair) and the pair images in ``<split>/im1/`` and
    ``<split>/im2/`` (or ``im1/``, ``im2/`` at the root; the option ``image_dir`` names another
    base). Answers are kept as released (``NVG_surface``, ``30_to_40``…); ``qtype`` is CDVQA's
    question type (``change_or_not``, ``increase_or_not``, ``change_ratio``…). Test set 2 keeps
    its own split (``test2``). Checked against the released JSON files; tested on fake files.
    """

    info = RecipeInfo(
        name="cdvqa",
        title="CDVQA",
        tasks=("change_qa",),
        licence="academic use (SECOND imagery)",
        citation="Z. Yuan, L. Mou, Z. Xiong, X. X. Zhu. Change Detection Meets Visual Question Answering. IEEE TGRS 60, 2022.",
        layout="{Train,Val,Test,Test2}_{questions,answers,images}.json + <split>/{im1,im2}/<file_name>",
        splits=("train", "val", "test", "test2"),
        checked_against="the released CDVQA JSON files (YZHJessica/CDVQA); fake files",
        url="https://github.com/YZHJessica/CDVQA",
    )

    def _files(self, src: Path) -> dict[str, str]:
        return (
            {
                split: prefix
                for prefix, split in _CDVQA_SPLITS.items()
                if (src / f"{prefix}_questions.json").is_file()
            }
            if src.is_dir()
            else {}
        )

    def check(self, src: Path) -> None:
        super().check(src)
        if not self._files(src):
            raise DatasetNotFoundError(
                f"no <Split>_questions.json in {src}; expected {self.info.layout}"
            )

    def detect(self, src: Path) -> bool:
        return bool(self._files(src))

    def available_splits(self, src: Path) -> list[str]:
        return list(self._files(src))

    def items(
        self, src: Path, splits: Sequence[str] | None, options: dict[str, Any]
    ) -> Iterator[dict[str, Any] | Reject]:
        files = self._files(src)
        for split in split_filter(splits, list(files), self.info.name):
            prefix = files[split]
            answers = src / f"{prefix}_answers.json"
            questions = src / f"{prefix}_questions.json"
            for q in read_rsvqa_split(
                questions, answers if answers.is_file() else None, src / f"{prefix}_images.json"
            ):
                if isinstance(q, Malformed):
                    yield Reject(
                        f"{self.info.name}:{split}:{q.key}",
                        q.reason,
                        f"{questions.name}: {q.detail}",
                    )
                    continue
                yield {
                    "id": f"{split}:{q.id}",
                    "split": split,
                    "prefix": prefix,
                    "question": q.question,
                    "type": q.type,
                    "active": q.question_active,
                    "answer": q.answers[0][0] if q.answers else None,
                    "file_name": q.image.get("file_name") if q.image else None,
                    "gsd": q.image.get("res_x") if q.image else None,
                }

    def convert(self, item: dict[str, Any], ctx: Context) -> Iterable[Outcome]:
        rid = f"{self.info.name}:{item['id']}"
        if not item["active"]:
            return [Reject(rid, "inactive in source")]
        if not item["file_name"]:
            return [Reject(rid, "missing image", "image id not in the images JSON")]
        if item["answer"] is None:
            return [Reject(rid, "missing answer")]
        bases = [
            b
            for b in (
                ctx.options.get("image_dir"),
                item["prefix"],
                item["split"],
                item["prefix"].lower(),
                "",
            )
            if b is not None
        ]
        pair = None
        for base in bases:
            first, second = (
                f"{base}/{d}/{item['file_name']}" if base else f"{d}/{item['file_name']}"
                for d in ("im1", "im2")
            )
            if (ctx.src / first).is_file():
                pair = [first, second]
                break
        if pair is None:
            return [Reject(rid, "missing image", f"im1/{item['file_name']} under {bases}")]
        for rel_path in pair:
            problem = ctx.reject_for(rid, rel_path)
            if problem:
                return [problem]
        width, height = ctx.image_size(pair[0])  # type: ignore[misc]
        return [
            make_record(
                source=self.info.name,
                oid=item["id"],
                split=item["split"],
                task="change_qa",
                images=pair,
                argument=str(item["question"]).strip(),
                answer=str(item["answer"]),
                qtype=item["type"],
                meta={
                    "width": width,
                    "height": height,
                    "gsd_m": _gsd_m(item["gsd"]),
                    "pair": item["file_name"],
                },
            )
        ]
