"""RSVQA's JSON schema (RSVQA-LR, RSVQA-HR, and CDVQA, which reuses it).

A split is three files: ``questions`` (``id``, ``img_id``, ``type``, ``question``,
``answers_ids``, ``active``), ``answers`` (``id``, ``answer``, ``active``) and ``images``
(``id``, ``active``, ``original_name``, ``res_x``…). The Zenodo releases name them
``LR_split_<split>_questions.json`` / ``USGS_split_<split>_questions.json``; the authors' web
excerpts ``..._reduced.json`` and ``questionsS2_reduced.json`` (no split: ``all``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geoassist.readers.common import DatasetFormatError, Malformed, json_list, load_json, need

LR_NAMES = (
    r"LR_split_(?P<split>.+?)_questions(?P<reduced>_reduced)?\.json",
    r"questionsS2(?P<reduced>_reduced)?\.json",
)
HR_NAMES = (r"USGS_split_(?P<split>.+?)_questions(?P<reduced>_reduced)?\.json",)
LR_IMAGE_DIRS = ("Images_LR", "images")
HR_IMAGE_DIRS = ("Data", "images")


def rsvqa_question_files(
    root: str | Path, patterns: Sequence[str] = LR_NAMES + HR_NAMES
) -> dict[str, Path]:
    """``{split: questions JSON}`` in ``root`` or its direct subfolders; names without a split give ``all``."""
    root = Path(root)
    found: dict[str, Path] = {}
    for folder in (root, *sorted(p for p in root.iterdir() if p.is_dir())) if root.is_dir() else ():
        for path in sorted(folder.glob("*.json")):
            for pattern in patterns:
                match = re.fullmatch(pattern, path.name)
                if match:
                    found.setdefault(match.groupdict().get("split") or "all", path)
    return found


def rsvqa_files(root: str | Path, split: str | None = None) -> dict[str, Path]:
    """The ``questions`` / ``answers`` / ``images`` JSON of one split (the first present when ``split`` is None)."""
    root = need(Path(root), "RSVQA folder")
    found = rsvqa_question_files(root)
    for name, questions in found.items():
        if split is None or name == split:
            files = {
                w: questions.with_name(questions.name.replace("questions", w))
                for w in ("questions", "answers", "images")
            }
            missing = [p.name for p in files.values() if not p.is_file()]
            if missing:
                raise DatasetFormatError(
                    f"{', '.join(missing)} missing beside {questions.name} in {questions.parent}; an RSVQA split needs its questions, answers and images JSON"
                )
            return files
    raise DatasetFormatError(
        f"no RSVQA questions/answers/images JSON for split {split!r} in {root} (found splits: {sorted(found) or 'none'})"
    )


def rsvqa_image(
    root: Path, image_id: Any, folders: Sequence[str] = LR_IMAGE_DIRS + HR_IMAGE_DIRS
) -> str | None:
    """The image of ``image_id`` relative to ``root`` (``<folder>/<id>.tif`` or ``.png``), or None."""
    for folder in folders:
        for ext in (".tif", ".png"):
            rel = f"{folder}/{image_id}{ext}"
            if (root / rel).is_file():
                return rel
    return None


@dataclass
class RSVQAQuestion:
    """One question as released, inactive ones included (a recipe rejects those with their reason)."""

    id: str
    image_id: Any
    question: str | None
    type: str | None
    question_active: bool
    image: dict[str, Any] | None  # the images-JSON entry, None when ``img_id`` names none
    answers: list[
        tuple[str, bool]
    ]  # (answer, active) of each ``answers_ids`` entry found, in order

    @property
    def active(self) -> bool:
        """The question and its image are both active."""
        return self.question_active and (self.image is None or bool(self.image.get("active", True)))

    @property
    def answer(self) -> str | None:
        """The first active answer, else the first given one."""
        active = [a for a, on in self.answers if on]
        return (active or [a for a, _ in self.answers] or [None])[0]

    @property
    def answer_active(self) -> bool:
        return any(on for _, on in self.answers)


def _by_id(path: Path, key: str, what: str) -> tuple[dict[Any, dict[str, Any]], list[Malformed]]:
    entries: dict[Any, dict[str, Any]] = {}
    bad: list[Malformed] = []
    for n, entry in enumerate(json_list(load_json(path, what), key, path, what)):
        if not isinstance(entry, dict) or entry.get("id") is None:
            bad.append(
                Malformed(
                    f"{path.name}#{n}", "malformed annotation", f"{key} entry {n} has no 'id'"
                )
            )
        else:
            entries[entry["id"]] = entry
    return entries, bad


def read_rsvqa_split(
    questions: Path, answers: Path | None, images: Path
) -> Iterator[RSVQAQuestion | Malformed]:
    """Every question of one split, in file order; a question that cannot be read is a :class:`Malformed`.

    A file that is not JSON, or lacks its top-level list, raises :class:`DatasetFormatError`.
    ``answers`` may be None (CDVQA test files without answers): every answer is then None.
    """
    rows = json_list(
        load_json(questions, "RSVQA questions JSON"), "questions", questions, "RSVQA questions JSON"
    )
    answer_of, bad_answers = (
        _by_id(answers, "answers", "RSVQA answers JSON") if answers is not None else ({}, [])
    )
    image_of, bad_images = _by_id(images, "images", "RSVQA images JSON")
    yield from bad_answers
    yield from bad_images
    for n, q in enumerate(rows):
        if not isinstance(q, dict):
            yield Malformed(
                f"{questions.name}#{n}",
                "malformed annotation",
                f"question {n} is a {type(q).__name__}, not an object",
            )
            continue
        if q.get("id") is None:
            yield Malformed(
                f"{questions.name}#{n}",
                "malformed annotation",
                f"question {n} has no 'id' ({str(q)[:120]})",
            )
            continue
        ids = q.get("answers_ids", [])
        if not isinstance(ids, list):
            yield Malformed(
                str(q["id"]),
                "malformed annotation",
                f"answers_ids is {type(ids).__name__}, not a list",
            )
            continue
        img_id = q.get("img_id")
        yield RSVQAQuestion(
            id=str(q["id"]),
            image_id=img_id,
            question=q.get("question"),
            type=q.get("type"),
            question_active=bool(q.get("active", True)),
            image=image_of.get(img_id) if isinstance(img_id, (int, str)) else None,
            answers=[
                (str(answer_of[i].get("answer")), bool(answer_of[i].get("active", True)))
                for i in ids
                if isinstance(i, (int, str))
                and i in answer_of
                and answer_of[i].get("answer") is not None
            ],
        )


@dataclass
class RSVQAItem:
    question_id: int | str
    image_id: int
    image_path: Path | None
    question: str
    answer: str
    type: str


def read_rsvqa(
    root: str | Path,
    split: str | None = None,
    active_only: bool = True,
    malformed: list[Malformed] | None = None,
) -> list[RSVQAItem]:
    """Answerable question–answer items of an RSVQA (LR or HR) folder; ``image_path`` is None where the image is absent.

    A malformed question raises :class:`DatasetFormatError`, unless a ``malformed`` list is
    given: it is then appended there and reading goes on.
    """
    root = Path(root)
    files = rsvqa_files(root, split)
    out = []
    for q in read_rsvqa_split(files["questions"], files["answers"], files["images"]):
        if isinstance(q, Malformed):
            if malformed is None:
                raise DatasetFormatError(
                    f"{files['questions'].parent}: {q.key}: {q.detail}; fix the record or read with malformed=[] to skip it"
                )
            malformed.append(q)
            continue
        if (
            q.image is None
            or q.answer is None
            or not q.question
            or (active_only and not (q.active and q.answer_active))
        ):
            continue
        rel = rsvqa_image(root, q.image_id)
        out.append(
            RSVQAItem(
                int(q.id) if q.id.isdigit() else q.id,
                q.image_id,
                root / rel if rel else None,
                q.question,
                q.answer,
                q.type or "",
            )
        )
    return out


def rsvqa_answers_by_question(path: str | Path, active_only: bool = True) -> dict[str, str]:
    """``{question id: answer}`` from an RSVQA answers JSON, through each answer's ``question_id``.

    Answers without ``question_id`` or ``answer`` cannot be matched to a question and are left
    out; the first (active) answer of a question wins.
    """
    path = Path(path)
    out: dict[str, str] = {}
    for a in json_list(
        load_json(path, "RSVQA answers JSON"), "answers", path, "RSVQA answers JSON"
    ):
        if not isinstance(a, dict) or a.get("question_id") is None or a.get("answer") is None:
            continue
        if active_only and not a.get("active", True):
            continue
        out.setdefault(str(a["question_id"]), str(a["answer"]))
    return out
