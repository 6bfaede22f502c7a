"""Converters from other systems' answer grammars to ours (see ``docs/FORMATS.md``).

Each converter takes the other system's text and the image size ``(width, height)`` and
returns an answer in our grammar, ready for :func:`geoassist.formats.parse` or for use as a
training target. They build on the grammar's primitives (:mod:`geoassist.format_grammar`)
only; :mod:`geoassist.formats` re-exports them. They never raise on garbage text: pieces
they cannot read are left out (and logged at debug level). An answer left empty becomes
``none``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from typing import Any

from geoassist.format_grammar import (
    check_image_size,
    corners_to_obbox,
    format_box,
    format_objects,
    format_obox,
)

__all__ = ["from_geochat", "from_qwen", "from_florence", "from_plain_list", "convert"]

logger = logging.getLogger(__name__)

_NUM = r"[+-]?\d+(?:\.\d+)?"
_FLOAT = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_FORMAT_ERRORS = (ValueError, OverflowError)


def _safe_label(label: Any) -> str:
    return " ".join(str(label).replace("<", " ").replace(">", " ").split())


class _AnswerWriter:
    """Builds an answer in our grammar while keeping the source's label scopes.

    A ``<ref>`` of ours labels every geometry after it, whereas the source grammars label
    only the boxes right after a phrase; so when words separate a later box from the last
    phrase, an empty ``<ref></ref>`` ends the scope first.
    """

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.scoped = False
        self.text_since_ref = False

    def text(self, text: str) -> None:
        self.parts.append(text)
        # Punctuation between boxes (`{..}, {..}`) keeps them under the same phrase; words do not.
        self.text_since_ref = self.text_since_ref or any(ch.isalnum() for ch in text)

    def ref(self, label: Any) -> None:
        label = _safe_label(label)
        if label:
            self.parts.append(f"<ref>{label}</ref>")
        elif self.scoped:
            self.parts.append("<ref></ref>")
        self.scoped = bool(label)
        self.text_since_ref = False

    def geometry(self, tag: str) -> None:
        if self.scoped and self.text_since_ref:
            self.parts.append("<ref></ref>")
            self.scoped = False
        self.parts.append(tag)

    def answer(self) -> str:
        return "".join(self.parts).strip() or "none"


def _rewrite(
    text: str,
    pattern: re.Pattern[str],
    make_tag: Callable[[re.Match[str]], str],
    *,
    phrase_group: str | None = None,
    label_group: str | None = None,
) -> str:
    """Copy ``text``, turning matches of ``pattern`` into our tags.

    A match whose ``phrase_group`` is set is a phrase and becomes a ``<ref>``; any other match
    is a geometry, preceded by a ``<ref>`` when its own ``label_group`` holds a label.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    writer = _AnswerWriter()
    position = 0
    for match in pattern.finditer(text):
        writer.text(text[position : match.start()])
        position = match.end()
        if phrase_group is not None and match[phrase_group] is not None:
            writer.ref(match[phrase_group])
            continue
        try:
            tag = make_tag(match)
        except _FORMAT_ERRORS as exc:
            logger.debug("left out unreadable geometry %r: %s", match[0][:80], exc)
            continue
        if label_group is not None and _safe_label(match[label_group] or ""):
            writer.ref(match[label_group])
        writer.geometry(tag)
    writer.text(text[position:])
    return writer.answer()


# GeoChat: `<p>phrase</p> {<x1><y1><x2><y2>|θ}` on a 0-100 grid per axis, θ in degrees.
_GEOCHAT_RE = re.compile(
    rf"<p>(?P<phrase>[^<>]*)</p>"
    rf"|\{{\s*<(?P<x1>{_NUM})>\s*<(?P<y1>{_NUM})>\s*<(?P<x2>{_NUM})>\s*<(?P<y2>{_NUM})>"
    # `(?:<\s*)?` and `(?:>\s*)?` rather than `\s*<?\s*`: two adjacent `\s*` backtrack
    # quadratically over a long run of spaces.
    rf"\s*(?:\|\s*(?:<\s*)?(?P<angle>{_NUM})\s*(?:>\s*)?)?\}}",
    re.ASCII,
)


def from_geochat(text: str, image_size: Sequence[int]) -> str:
    """GeoChat answers -> ours.

    GeoChat writes ``{<x1><y1><x2><y2>|θ}`` with corners on a 0-100 grid per axis and θ in
    degrees, several boxes as ``{...}{...}``, and phrases as ``<p>phrase</p>``. Its demo turns
    boxes with OpenCV's rotation, whose positive angles are counter-clockwise on screen, as
    ours are; so θ = 0 gives a ``<box>`` and any other θ an ``<obox>`` whose width and height
    are the unrotated box's sides in pixels.
    """
    width, height = check_image_size(image_size)

    def make_tag(match: re.Match[str]) -> str:
        x1, x2 = (float(match[k]) / 100.0 * width for k in ("x1", "x2"))
        y1, y2 = (float(match[k]) / 100.0 * height for k in ("y1", "y2"))
        angle = float(match["angle"] or 0.0)
        if angle == 0.0:
            return format_box((x1, y1, x2, y2), (width, height))
        return format_obox(
            (x1 + x2) / 2, (y1 + y2) / 2, abs(x2 - x1), abs(y2 - y1), angle, (width, height)
        )

    return _rewrite(text, _GEOCHAT_RE, make_tag, phrase_group="phrase")


# Qwen2-VL special tokens, and Qwen-VL's older `<ref>..</ref><box>(x1,y1),(x2,y2)</box>`.
_QWEN_RE = re.compile(
    r"(?:<\|object_ref_start\|>|<ref>)(?P<phrase>[^<>]*)(?:<\|object_ref_end\|>|</ref>)"
    # The body is taken whole and stripped by the reader: spaces around a lazy body backtrack.
    r"|(?:<\|box_start\|>|<box>)(?P<body>[^<>]*)(?:<\|box_end\|>|</box>)",
    re.ASCII,
)
_QWEN_BOX_RE = re.compile(
    rf"\(\s*({_NUM})\s*,\s*({_NUM})\s*\)\s*(?:,\s*)?\(\s*({_NUM})\s*,\s*({_NUM})\s*\)", re.ASCII
)


def from_qwen(text: str, image_size: Sequence[int]) -> str:
    """Qwen-VL / Qwen2-VL answers -> ours.

    Reads ``<|object_ref_start|>label<|object_ref_end|><|box_start|>(x1,y1),(x2,y2)<|box_end|>``
    (and Qwen-VL's ``<ref>``/``<box>`` spelling of the same) with coordinates on a 0-1000 grid.
    Qwen2.5-VL's JSON with absolute pixels is read by :func:`from_plain_list`.
    """
    width, height = check_image_size(image_size)

    def make_tag(match: re.Match[str]) -> str:
        corners = _QWEN_BOX_RE.fullmatch(match["body"].strip())
        if corners is None:
            raise ValueError("expected (x1,y1),(x2,y2)")
        x1, y1, x2, y2 = (float(v) for v in corners.groups())
        box = (x1 / 1000 * width, y1 / 1000 * height, x2 / 1000 * width, y2 / 1000 * height)
        return format_box(box, (width, height))

    return _rewrite(text, _QWEN_RE, make_tag, phrase_group="phrase")


_LOC_RUN_RE = re.compile(r"(?:<loc_(\d{1,6})>\s*)+", re.ASCII)
_FLORENCE_SPECIAL_RE = re.compile(r"</?s>|<pad>|<sep>|</?poly>", re.ASCII)


def from_florence(text: str, image_size: Sequence[int]) -> str:
    """Florence-2 answers -> ours.

    Florence-2 writes a label followed by ``<loc_N>`` tokens, N a bin in 0-999 per axis whose
    centre is ``(N + 0.5) / 1000`` of the image side. Four tokens are a box, eight a
    quadrilateral (fitted with :func:`~geoassist.formats.corners_to_obbox` into an ``<obox>``),
    any other even number of at least six a polygon. A run with no text before it keeps the
    previous run's label (Florence separates parts of one object with ``<sep>``).
    """
    width, height = check_image_size(image_size)
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    objects: list[dict[str, Any]] = []
    label: str | None = None
    position = 0
    for run in _LOC_RUN_RE.finditer(text):
        label = _safe_label(_FLORENCE_SPECIAL_RE.sub(" ", text[position : run.start()])) or label
        position = run.end()
        bins = [min(999, int(b)) for b in re.findall(r"\d+", run[0].replace("loc_", ""))]
        coords = [(b + 0.5) / 1000 * (width if i % 2 == 0 else height) for i, b in enumerate(bins)]
        points = list(zip(coords[::2], coords[1::2], strict=False))
        if len(bins) == 4:
            objects.append({"label": label, "box": coords})
        elif len(bins) == 8:
            objects.append({"label": label, "obox": corners_to_obbox(points)})
        elif len(bins) >= 6 and len(bins) % 2 == 0:
            objects.append({"label": label, "polygon": points})
        else:
            logger.debug("left out a run of %d <loc_> tokens", len(bins))
    return format_objects(objects, (width, height))


_CODE_FENCE_RE = re.compile(r"```(?:json)?(.*?)```", re.DOTALL)  # json.loads strips spaces
_PLAIN_RE = re.compile(
    rf"(?:(?P<label>[A-Za-z][\w \-]{{0,40}}?)\s*[:=]\s*)?"
    rf"\[\s*(?P<a>{_FLOAT})\s*,\s*(?P<b>{_FLOAT})\s*,\s*(?P<c>{_FLOAT})\s*,\s*(?P<d>{_FLOAT})\s*\]",
    re.ASCII,
)
_BOX_KEYS = ("bbox_2d", "bbox", "box")
_LABEL_KEYS = ("label", "name", "category", "class")
_UNITS = ("pixels", "normalized", "grid1000")


def _json_objects(text: str) -> list[dict[str, Any]] | None:
    """Boxes from a JSON list of objects (as Qwen2.5-VL writes), or None if the text is not one."""
    fenced = _CODE_FENCE_RE.search(text)
    try:
        data = json.loads(fenced[1] if fenced else text)
    except (ValueError, RecursionError):
        return None
    items = data if isinstance(data, list) else [data]
    # A bare list of numbers is a plain box, not a list of objects.
    if not all(isinstance(item, dict) for item in items):
        return None
    found = []
    for item in items:
        box = next((item[k] for k in _BOX_KEYS if k in item), None)
        if not (isinstance(box, list) and len(box) == 4):
            continue
        if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in box):
            continue
        label = next((item[k] for k in _LABEL_KEYS if k in item), None)
        found.append({"label": _safe_label(label) if label is not None else None, "box": box})
    return found


def from_plain_list(text: str, image_size: Sequence[int], units: str = "pixels") -> str:
    """Plain ``[x1, y1, x2, y2]`` lists -> ours.

    ``units`` says what the numbers are: ``"pixels"``, ``"normalized"`` (0-1) or
    ``"grid1000"`` (0-1000). A JSON answer (a list of objects with ``bbox_2d``, ``bbox`` or
    ``box`` and ``label``, optionally in a code fence) becomes a grouped detection answer;
    otherwise lists are replaced in place, and ``label: [..]`` becomes a ``<ref>``.
    """
    width, height = check_image_size(image_size)
    if units not in _UNITS:
        raise ValueError(f"units must be one of {', '.join(_UNITS)}, got {units!r}")
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    scale = {"pixels": 1.0, "normalized": 1.0, "grid1000": 1.0 / 1000}[units]
    per_axis = units != "pixels"

    def to_pixels(values: Sequence[float]) -> tuple[float, ...]:
        x1, y1, x2, y2 = (float(v) * scale for v in values)
        if per_axis:
            return (x1 * width, y1 * height, x2 * width, y2 * height)
        return (x1, y1, x2, y2)

    objects = _json_objects(text)
    if objects is not None:
        kept = []
        for obj in objects:
            try:
                box_px = to_pixels(obj["box"])
                format_box(box_px, (width, height))
            except _FORMAT_ERRORS:
                continue
            kept.append({"label": obj["label"], "box": box_px})
        return format_objects(kept, (width, height))

    def make_tag(match: re.Match[str]) -> str:
        return format_box(to_pixels([match[k] for k in "abcd"]), (width, height))

    return _rewrite(text, _PLAIN_RE, make_tag, label_group="label")


_SOURCES: dict[str, Callable[..., str]] = {
    "geochat": from_geochat,
    "qwen": from_qwen,
    "florence": from_florence,
    "plain": from_plain_list,
}


def convert(text: str, image_size: Sequence[int], source: str, **options: Any) -> str:
    """Convert ``text`` from the grammar named by ``source`` (geochat, qwen, florence, plain).

    ``options`` go to the converter, e.g. ``units="normalized"`` for ``plain``.
    """
    converter = _SOURCES.get(str(source).lower())
    if converter is None:
        raise ValueError(f"unknown source grammar {source!r}; choose one of {', '.join(_SOURCES)}")
    return converter(text, image_size, **options)
