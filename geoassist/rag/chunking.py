"""Cutting documents into retrievable chunks: by headings, then paragraphs, with overlap.

A chunk never crosses a Markdown heading, so each chunk carries the heading path
it sits under (it becomes part of the chunk's title and of what is embedded).
Inside a section, paragraphs are packed up to ``max_chars``; a paragraph that is
longer is split at sentence ends (and, failing that, at spaces). Each chunk after
the first in a section starts with the last ``overlap_chars`` or so of the
previous one (whole sentences where possible), so a fact that straddles a cut
is still found.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

DEFAULT_MAX_CHARS = 1000
DEFAULT_OVERLAP_CHARS = 150

_HEADING_START = re.compile(r"(#{1,6})\s")
_FENCE = re.compile(r"^\s*(```|~~~)")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[]?[A-Z0-9])")


@dataclass
class Section:
    headings: list[str] = field(default_factory=list)
    paragraphs: list[str] = field(default_factory=list)


def split_paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs, inner whitespace runs kept as single spaces per line."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        lines = [line.rstrip() for line in block.split("\n") if line.strip()]
        if lines:
            paragraphs.append("\n".join(lines).strip())
    return paragraphs


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]


def _hard_split(text: str, max_chars: int) -> list[str]:
    """``text`` cut at spaces (else anywhere) into pieces of at most ``max_chars``.

    Walks an offset through the text instead of re-slicing the rest after each cut, which
    copied the remainder every time (quadratic: 14 s for one 18 MB line).
    """
    pieces = []
    start, end = 0, len(text)
    while start < end and text[start].isspace():
        start += 1
    while end - start > max_chars:
        cut = text.rfind(" ", start, start + max_chars)
        cut = cut if cut > start + max_chars // 2 else start + max_chars
        piece = text[start:cut].strip()
        if piece:
            pieces.append(piece)
        start = cut
        while start < end and text[start].isspace():
            start += 1
    rest = text[start:end].strip()
    if rest:
        pieces.append(rest)
    return pieces


def _units(paragraph: str, max_chars: int) -> list[str]:
    """A paragraph as pieces no longer than ``max_chars``."""
    if len(paragraph) <= max_chars:
        return [paragraph]
    units: list[str] = []
    for sentence in split_sentences(paragraph):
        units.extend(_hard_split(sentence, max_chars))
    return units


def _tail(text: str, overlap_chars: int) -> str:
    """The end of ``text``: whole sentences up to ``overlap_chars``, else the last words."""
    if overlap_chars <= 0:
        return ""
    tail = ""
    for sentence in reversed(split_sentences(text.replace("\n", " "))):
        candidate = f"{sentence} {tail}".strip()
        if len(candidate) > overlap_chars:
            break
        tail = candidate
    if not tail:
        cut = text[-overlap_chars:]
        space = cut.find(" ")
        tail = cut[space + 1 :] if 0 <= space < len(cut) - 1 else cut
    return tail.strip()


def pack(
    paragraphs: list[str],
    max_chars: int = DEFAULT_MAX_CHARS,
    overlap_chars: int = DEFAULT_OVERLAP_CHARS,
) -> list[str]:
    """Pack paragraphs into chunks of at most about ``max_chars`` (plus the overlap carried over)."""
    if overlap_chars >= max_chars:
        raise ValueError("overlap_chars must be smaller than max_chars")
    units = [u for p in paragraphs for u in _units(p, max_chars - overlap_chars)]
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for unit in units:
        if current and size + len(unit) + 2 > max_chars:
            chunk = "\n\n".join(current)
            chunks.append(chunk)
            tail = _tail(chunk, overlap_chars)
            current, size = ([tail], len(tail)) if tail else ([], 0)
        current.append(unit)
        size += len(unit) + 2
    if current:
        chunks.append("\n\n".join(current))
    return chunks


def _heading(line: str) -> tuple[int, str] | None:
    """``(level, text)`` of an ATX heading line (``## Title ##``), or None.

    String methods rather than one pattern: ``^(#{1,6})\\s+(.*?)\\s*#*\\s*$`` backtracks
    cubically on a heading line that ends in a long run of spaces.
    """
    match = _HEADING_START.match(line)
    if match is None:
        return None
    text = line[match.end() :].rstrip().rstrip("#").rstrip()
    return len(match[1]), text.strip()


def markdown_sections(text: str) -> tuple[str | None, list[Section]]:
    """The first level-1 heading (the document title, if any) and the sections under each heading path."""
    title = None
    sections: list[Section] = [Section()]
    stack: list[tuple[int, str]] = []
    buffer: list[str] = []
    in_fence = False

    def flush() -> None:
        if buffer:
            sections[-1].paragraphs.extend(split_paragraphs("\n".join(buffer)))
            buffer.clear()

    for line in text.replace("\r\n", "\n").split("\n"):
        if _FENCE.match(line):
            in_fence = not in_fence
            buffer.append(line)
            continue
        found = None if in_fence else _heading(line)
        if found is None:
            buffer.append(line)
            continue
        flush()
        level, heading = found
        if level == 1 and title is None:
            title = heading
            stack = []
        else:
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, heading))
        sections.append(Section([h for _, h in stack]))
    flush()
    return title, [s for s in sections if s.paragraphs]


def chunk_markdown(
    text: str, max_chars: int = DEFAULT_MAX_CHARS, overlap_chars: int = DEFAULT_OVERLAP_CHARS
) -> tuple[str | None, list[tuple[list[str], str]]]:
    """The document title and ``(heading path, chunk text)`` pairs."""
    title, sections = markdown_sections(text)
    return title, [
        (s.headings, chunk)
        for s in sections
        for chunk in pack(s.paragraphs, max_chars, overlap_chars)
    ]


def chunk_text(
    text: str, max_chars: int = DEFAULT_MAX_CHARS, overlap_chars: int = DEFAULT_OVERLAP_CHARS
) -> list[str]:
    """Plain text: paragraphs packed into chunks."""
    return pack(split_paragraphs(text), max_chars, overlap_chars)
