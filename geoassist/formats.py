"""The answer grammar: how boxes, oriented boxes, polygons and masks are written in model text.

:func:`parse` reads model output back into pixel geometry and never raises on any string;
what it could not read (or had to repair) is listed in :attr:`ParseResult.errors`. Its work is
linear in the answer's length, answers longer than :data:`MAX_ANSWER_CHARS` are read up to
that length, and a mask is kept as its grid until :attr:`ParseResult.mask` is asked for.
The ``format_*`` functions write the same grammar and build training targets. The grammar,
with examples, is written down in ``docs/FORMATS.md``.

This module is the public import path for the whole grammar. The pieces live in sibling
modules that import nothing from here: :mod:`geoassist.format_grammar` (geometry types, the
grid, the writers), :mod:`geoassist.format_masks` (the mask codec) and
:mod:`geoassist.format_converters` (other systems' grammars).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from geoassist.format_converters import (
    convert,
    from_florence,
    from_geochat,
    from_plain_list,
    from_qwen,
)
from geoassist.format_grammar import (
    GRID_MAX,
    MAX_OBOX_SIDE,
    Box,
    OBox,
    Polygon,
    _wrap_angle,
    box_iou,
    check_image_size,
    corners_to_obbox,
    format_box,
    format_objects,
    format_obox,
    format_polygon,
    from_grid,
    obbox_to_corners,
    obox_iou,
    to_grid,
)
from geoassist.format_masks import (
    DEFAULT_MASK_GRID,
    MAX_MASK_SIDE,
    decode_mask_body,
    format_mask,
    grid_area_px,
    grid_to_mask,
    mask_to_grid,
)

__all__ = [
    "GRID_MAX",
    "MAX_ANSWER_CHARS",
    "MAX_MASK_SIDE",
    "MAX_OBOX_SIDE",
    "DEFAULT_MASK_GRID",
    "Box",
    "OBox",
    "Polygon",
    "ParseResult",
    "parse",
    "format_box",
    "format_obox",
    "format_polygon",
    "format_mask",
    "format_objects",
    "to_grid",
    "from_grid",
    "box_iou",
    "obox_iou",
    "obbox_to_corners",
    "corners_to_obbox",
    "mask_to_grid",
    "grid_to_mask",
    "grid_area_px",
    "check_image_size",
    "from_geochat",
    "from_qwen",
    "from_florence",
    "from_plain_list",
    "convert",
]

MAX_ANSWER_CHARS = 2_000_000
"""Longest answer :func:`parse` reads; the rest is dropped and reported.

Almost four times the longest mask the formatter writes (a 512 x 512 checkerboard, 524,308
characters with its tag) and room for some 50,000 scored boxes, while bounding what a hostile
answer can cost (the parser is linear in the characters it reads)."""


@dataclass
class ParseResult:
    """Everything :func:`parse` read from one answer.

    ``errors`` holds one message per problem; each starts with ``dropped`` (the item or tag was
    not used) or ``repaired`` (the item was used after a fix, such as clamping or swapping).
    A mask is held as ``mask_grid`` (rows x cols, uint8); :attr:`mask` upsamples it to the
    image size ``image_size`` on first use, so reading an answer never allocates a
    full-resolution mask that nobody asked for.
    """

    text: str
    boxes: list[Box] = field(default_factory=list)
    obboxes: list[OBox] = field(default_factory=list)
    polygons: list[Polygon] = field(default_factory=list)
    mask_grid: np.ndarray | None = None
    errors: list[str] = field(default_factory=list)
    is_none: bool = False
    image_size: tuple[int, int] | None = None
    _mask: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def mask(self) -> np.ndarray | None:
        """The mask as a boolean (H, W) array at the image's size (decoded once, then kept)."""
        if self.mask_grid is None or self.image_size is None:
            return None
        if self._mask is None:
            self._mask = grid_to_mask(self.mask_grid, self.image_size)
        return self._mask

    @property
    def mask_area_px(self) -> int | None:
        """Pixels in the mask, from the grid (no full-resolution mask is built)."""
        if self.mask_grid is None or self.image_size is None:
            return None
        return grid_area_px(self.mask_grid, self.image_size)


# ---------------------------------------------------------------------------------------------
# Parsing

_FLAGS = re.IGNORECASE | re.ASCII
_ITEM_RE = re.compile(r"<(ref|box|obox|poly|mask)>([^<>]*)</\1>", _FLAGS)
_FRAGMENT_RE = re.compile(r"</?(?:ref|box|obox|poly|mask)\b[^<>]*>?", _FLAGS)
_ASCII_SPACE = " \t\n\r\f\v"
_NUMBER_RE = re.compile(r"[+-]?\d+(?:\.\d+)?", re.ASCII)
# One reading per string (no nested optional digits), so a match never backtracks quadratically.
_SCORE_RE = re.compile(r"\d+(?:\.\d+)?|\.\d+", re.ASCII)
_SATURATE = 1e9  # stands in for numbers too large to be meant; clamping then reports them


def _snippet(text: str, limit: int = 40) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


class _ItemReader:
    """Reads the numbers of one tag body and collects what had to be repaired."""

    def __init__(self, name: str, body: str, result: ParseResult) -> None:
        self.name, self.body, self.result = name, body, result
        self.repairs: list[str] = []

    def drop(self, why: str) -> None:
        self.result.errors.append(f"dropped {self.name} {_snippet(self.body)}: {why}")

    def commit(self) -> None:
        for why in dict.fromkeys(self.repairs):
            self.result.errors.append(f"repaired {self.name}: {why}")

    def numbers(self, text: str) -> list[float] | None:
        values = []
        for token in text.split(","):
            token = token.strip()
            if not _NUMBER_RE.fullmatch(token):
                self.drop(f"{_snippet(token, 20)} is not a number")
                return None
            if "." in token:
                self.repairs.append("non-integer number used as is")
            value = float(token)
            values.append(value if math.isfinite(value) else math.copysign(_SATURATE, value))
        return values

    def split_score(self) -> tuple[str, float | None]:
        coords, sep, score_text = self.body.partition(":")
        if not sep:
            return coords, None
        if not _SCORE_RE.fullmatch(score_text.strip()):
            self.repairs.append(f"unreadable score {_snippet(score_text, 20)} ignored")
            return coords, None
        score = float(score_text)
        if score > 1.0:
            self.repairs.append(f"score {score_text.strip()[:20]} clamped to 1")
            score = 1.0
        return coords, score

    def clamp(self, value: float, low: float, high: float, what: str) -> float:
        if value < low or value > high:
            self.repairs.append(f"{what} outside {low:g}..{high:g} clamped")
            return min(high, max(low, value))
        return value


def _parse_box(reader: _ItemReader, label: str | None, size: tuple[int, int]) -> None:
    coords, score = reader.split_score()
    values = reader.numbers(coords)
    if values is None:
        return
    if len(values) != 4:
        return reader.drop(f"expected 4 numbers x1,y1,x2,y2, got {len(values)}")
    x1, y1, x2, y2 = (reader.clamp(v, 0, GRID_MAX, "coordinate") for v in values)
    if x1 > x2 or y1 > y2:
        reader.repairs.append("swapped corners put in order")
        x1, x2 = sorted((x1, x2))
        y1, y2 = sorted((y1, y2))
    width, height = size
    box = (from_grid(x1, width), from_grid(y1, height), from_grid(x2, width), from_grid(y2, height))
    reader.result.boxes.append(Box(label, box, score))
    reader.commit()


def _parse_obox(reader: _ItemReader, label: str | None, size: tuple[int, int]) -> None:
    coords, score = reader.split_score()
    values = reader.numbers(coords)
    if values is None:
        return
    if len(values) != 5:
        return reader.drop(f"expected 5 numbers cx,cy,w,h,angle, got {len(values)}")
    cx, cy = (reader.clamp(v, 0, GRID_MAX, "center") for v in values[:2])
    sides = []
    for side in values[2:4]:
        if side < 0:
            reader.repairs.append("negative side length made positive")
        sides.append(reader.clamp(abs(side), 0, MAX_OBOX_SIDE, "side length"))
    angle = values[4]
    if not -90 <= angle < 90:
        reader.repairs.append("angle brought into [-90, 90)")
        angle = _wrap_angle(angle)
    width, height = size
    side_unit = max(width, height) / GRID_MAX
    reader.result.obboxes.append(
        OBox(
            label,
            from_grid(cx, width),
            from_grid(cy, height),
            sides[0] * side_unit,
            sides[1] * side_unit,
            angle,
            score,
        )
    )
    reader.commit()


def _parse_polygon(reader: _ItemReader, label: str | None, size: tuple[int, int]) -> None:
    values = reader.numbers(reader.body)
    if values is None:
        return
    if len(values) % 2:
        reader.repairs.append("odd number of coordinates, last one ignored")
        values = values[:-1]
    if len(values) < 6:
        return reader.drop(f"a polygon needs at least 3 points, got {len(values) // 2}")
    width, height = size
    values = [reader.clamp(v, 0, GRID_MAX, "coordinate") for v in values]
    points = [
        (from_grid(x, width), from_grid(y, height))
        for x, y in zip(values[::2], values[1::2], strict=True)
    ]
    reader.result.polygons.append(Polygon(label, points))
    reader.commit()


def _parse_mask(reader: _ItemReader, label: str | None, size: tuple[int, int]) -> None:
    result = reader.result
    if result.mask_grid is not None:
        return reader.drop("only one <mask> per answer is read; the first one is kept")
    decoding = decode_mask_body(reader.body)
    if decoding.grid is None:
        return reader.drop(decoding.dropped or "unreadable mask")
    reader.repairs.extend(decoding.repairs)
    result.mask_grid = decoding.grid
    reader.commit()


_ITEM_PARSERS: dict[str, Callable[[_ItemReader, str | None, tuple[int, int]], None]] = {
    "box": _parse_box,
    "obox": _parse_obox,
    "poly": _parse_polygon,
    "mask": _parse_mask,
}


def _drop_fragments(text: str, errors: list[str]) -> str:
    def replace(match: re.Match[str]) -> str:
        errors.append(f"dropped stray or malformed tag {_snippet(match[0])}")
        return " "

    return _FRAGMENT_RE.sub(replace, text)


def _tidy(text: str) -> str:
    text = re.sub(r"[ \t\f\v]+", " ", text)
    text = re.sub(r" *\n *", "\n", text)
    text = re.sub(r"\n{3,}", "\n\n", text)
    text = re.sub(r" ([.,;:!?])", r"\1", text)
    return text.strip()


def _is_none(text: str) -> bool:
    """``none`` in any case, with an optional full stop and whitespace around it."""
    core = text.strip(_ASCII_SPACE)
    if core.endswith("."):
        core = core[:-1].rstrip(_ASCII_SPACE)
    # str methods, not a regex: `\s*none\s*\.?\s*` backtracks quadratically on long whitespace.
    return len(core) == 4 and core.isascii() and core.lower() == "none"


def parse(text: str, image_size: Sequence[int]) -> ParseResult:
    """Read an answer into pixel geometry; never raises on any string.

    ``image_size`` is ``(width, height)`` of the original image. Geometry takes the label of the
    closest ``<ref>`` before it (``None`` if there is none, or after an empty ``<ref></ref>``).
    Anything tag-like that could not be read is dropped and reported in ``errors``. Work is
    linear in ``len(text)``; only the first :data:`MAX_ANSWER_CHARS` characters are read.
    """
    size = check_image_size(image_size)
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if _is_none(text):
        return ParseResult(text=text.strip(), is_none=True, image_size=size)
    result = ParseResult(text="", image_size=size)
    if len(text) > MAX_ANSWER_CHARS:
        result.errors.append(
            f"dropped {len(text) - MAX_ANSWER_CHARS} characters past the parser's limit of "
            f"{MAX_ANSWER_CHARS}"
        )
        text = text[:MAX_ANSWER_CHARS]
    pieces: list[str] = []
    counts = dict.fromkeys(_ITEM_PARSERS, 0)
    label: str | None = None
    position = 0
    for match in _ITEM_RE.finditer(text):
        pieces.append(_drop_fragments(text[position : match.start()], result.errors))
        tag, body = match[1].lower(), match[2]
        if tag == "ref":
            label = " ".join(body.split()) or None
            # Spaces keep the label from gluing onto neighbouring text (and from forming a tag).
            pieces.append(f" {label} " if label else " ")
        else:
            counts[tag] += 1
            pieces.append(" ")
            _ITEM_PARSERS[tag](_ItemReader(f"<{tag}> #{counts[tag]}", body, result), label, size)
        position = match.end()
    pieces.append(_drop_fragments(text[position:], result.errors))
    result.text = _tidy("".join(pieces))
    return result
