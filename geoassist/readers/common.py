"""What every reader shares: the file-level error, the record-level rejection, and careful file loading.

Two kinds of trouble, kept apart on purpose. A file that cannot be read at all (missing,
truncated JSON, not text, not XML) raises :class:`DatasetFormatError` naming the file and what
to do. One record inside a readable file that does not follow the format (a question without
``id``, a label line with seven numbers) is a :class:`Malformed` value in the reader's output,
so a long build can count it with its reason and go on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geoassist.errors import GeoAssistError


class DatasetFormatError(GeoAssistError, ValueError):
    """A dataset folder or file is missing or does not follow its published format."""


@dataclass(frozen=True)
class Malformed:
    """One record of a source file that could not be read: where it is, a short reason, detail.

    ``key`` says where the record is (``file.json#12``, ``file.txt:7``, or the record's own id
    when it has one); ``reason`` is one of the data recipes' shared reasons (``malformed
    annotation``, ``malformed line``…).
    """

    key: str
    reason: str
    detail: str = ""


def need(path: Path, what: str) -> Path:
    """``path`` when it exists; otherwise a :class:`DatasetFormatError` that says what was expected."""
    if not path.exists():
        raise DatasetFormatError(
            f"{what} not found at {path}; point the reader at the dataset's root folder as published"
        )
    return path


def read_text(path: Path, what: str) -> str:
    """The UTF-8 text of ``path``; a binary or mis-encoded file is one clear error."""
    data = need(Path(path), what).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetFormatError(
            f"{path} ({what}) is not UTF-8 text (byte {exc.start}); it is damaged or not the file the format names: copy it again from the release"
        ) from None


def load_json(path: Path, what: str) -> Any:
    """The parsed JSON of ``path``; a truncated or damaged file is one error naming the file and the place."""
    text = read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DatasetFormatError(
            f"{path} ({what}) is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}; "
            "the file is truncated or damaged: download or copy it again, then rerun"
        ) from None


def json_list(data: Any, key: str, path: Path, what: str) -> list[Any]:
    """``data[key]`` when ``data`` is an object whose ``key`` holds a list; else one clear error."""
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, list):
        found = f"keys {sorted(data)[:8]}" if isinstance(data, dict) else type(data).__name__
        raise DatasetFormatError(
            f"{path} ({what}) has no {key!r} list at the top (found {found}); it is not the file the format names"
        )
    return value


def number(value: Any) -> float | None:
    """``value`` as a float, or None when it is not a number (so a record can be rejected, not the file)."""
    if isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None
