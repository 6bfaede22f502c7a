"""Reading a folder of documents into store entries.

What is read, by file type:

- ``.md`` / ``.markdown`` — chunked by headings, then paragraphs, with overlap. An
  optional YAML front matter (``---`` … ``---``) gives ``title``, ``source``,
  ``url``, ``licence`` and ``tags`` for the whole file.
- ``.txt`` — paragraphs, chunked the same way. A ``.txt`` beside an image of the
  same name is that image's caption instead.
- ``.pdf`` — the text of each page (through pypdf), chunked per page.
- ``.jsonl`` — one record per line. A record with ``text`` (and optionally ``id``,
  ``title``, ``source``, ``url``, ``licence``, ``tags``, ``image``) is an entry; a
  record with ``image`` and ``caption`` is an image entry; an instruction record
  (``images`` with one image, plus ``messages`` or LLaVA-style ``conversations``)
  from a recipe becomes an image entry whose text is its first answer (a caption)
  or its first question and answer.
- images (``.png``, ``.jpg``, ``.jpeg``, ``.tif``, ``.tiff``) — entries when they
  have a caption: a ``.txt`` of the same name.

Ids are the file's path relative to the source folder, with ``#n`` for the n-th
chunk (``#p3.1`` for the first chunk of page 3 of a PDF); JSONL records keep their
own ``id`` (``id#n`` when a long text is cut into several chunks). Files that
cannot be read are reported, not fatal: :class:`IngestReport` lists them. A file under a
text extension whose bytes are not text (an image or archive renamed ``.md``) is one of them;
text that is not UTF-8 is read as Latin-1, except in JSONL, where such a line is skipped.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geoassist.rag.chunking import (
    DEFAULT_MAX_CHARS,
    DEFAULT_OVERLAP_CHARS,
    chunk_markdown,
    chunk_text,
    pack,
    split_paragraphs,
)
from geoassist.rag.entries import Entry
from geoassist.rag.errors import IngestError
from geoassist.textio import decode_text, looks_binary

logger = logging.getLogger(__name__)

TEXT_SUFFIXES = (".md", ".markdown", ".txt", ".jsonl", ".pdf")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*(\n|\Z)", re.S)


@dataclass
class IngestReport:
    """What a read produced: how many files and entries, and which files were skipped and why."""

    files: int = 0
    entries: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def skip(self, path: Path | str, reason: str) -> None:
        logger.warning("skipped %s: %s", path, reason)
        self.skipped.append((str(path), reason))


@dataclass
class Reader:
    """Turns files into entries; ``max_chars``/``overlap_chars`` set the chunking."""

    max_chars: int = DEFAULT_MAX_CHARS
    overlap_chars: int = DEFAULT_OVERLAP_CHARS
    report: IngestReport = field(default_factory=IngestReport)

    # --------------------------------------------------------------- folders
    def read(self, src: str | Path) -> Iterator[Entry]:
        """Entries from a file or every readable file under a folder (sorted, hidden files skipped)."""
        src = Path(src).expanduser()
        if not src.exists():
            raise IngestError(f"no such file or folder: {src}")
        if src.is_file():
            yield from self._file(src, src.parent)
            return
        for path in sorted(p for p in src.rglob("*") if p.is_file()):
            if any(part.startswith(".") for part in path.relative_to(src).parts):
                continue
            yield from self._file(path, src)

    def _file(self, path: Path, root: Path) -> Iterator[Entry]:
        suffix = path.suffix.lower()
        rel = path.relative_to(root).as_posix()
        if suffix not in TEXT_SUFFIXES + IMAGE_SUFFIXES:
            return
        if suffix == ".txt" and _sibling_image(path) is not None:
            return  # it is a caption; the image's entry reads it
        self.report.files += 1
        try:
            if suffix in (".md", ".markdown"):
                entries = self.markdown(path, rel)
            elif suffix == ".txt":
                entries = self.text(path, rel)
            elif suffix == ".pdf":
                entries = self.pdf(path, rel)
            elif suffix == ".jsonl":
                entries = self.jsonl(path, rel)
            else:
                entries = self.image(path, rel)
            for entry in entries:
                self.report.entries += 1
                yield entry
        except IngestError as exc:
            self.report.skip(rel, str(exc))

    # ------------------------------------------------------------- formats
    def markdown(self, path: Path, rel: str) -> list[Entry]:
        text = _read_text(path)
        meta: dict[str, Any] = {}
        match = _FRONT_MATTER.match(text)
        if match:
            import yaml

            try:
                meta = yaml.safe_load(match.group(1)) or {}
            except yaml.YAMLError as exc:
                raise IngestError(f"its front matter is not valid YAML ({exc})") from exc
            if not isinstance(meta, dict):
                raise IngestError("its front matter is not a YAML mapping")
            text = text[match.end() :]
        heading_title, chunks = chunk_markdown(text, self.max_chars, self.overlap_chars)
        title = str(meta.get("title") or heading_title or path.stem.replace("_", " "))
        doc_id = str(meta.get("id") or rel)
        entries = []
        for n, (headings, chunk) in enumerate(chunks, 1):
            chunk_title = " › ".join([title, *headings])
            entries.append(
                self._entry(
                    f"{doc_id}#{n}", chunk, chunk_title, meta, doc_id=doc_id, default_source=rel
                )
            )
        return entries

    def text(self, path: Path, rel: str) -> list[Entry]:
        chunks = chunk_text(_read_text(path), self.max_chars, self.overlap_chars)
        title = path.stem.replace("_", " ")
        return [
            self._entry(f"{rel}#{n}", chunk, title, {}, doc_id=rel, default_source=rel)
            for n, chunk in enumerate(chunks, 1)
        ]

    def pdf(self, path: Path, rel: str) -> list[Entry]:
        from geoassist.extras import require

        require("pypdf", "rag", "reading PDF files into a knowledge store")
        from pypdf import PdfReader
        from pypdf.errors import PdfReadError

        try:
            reader = PdfReader(str(path))
            if reader.is_encrypted and not reader.decrypt(""):
                raise IngestError("the PDF is encrypted; decrypt it first")
            title = str((reader.metadata or {}).get("/Title") or path.stem.replace("_", " "))
            pages = [
                (number, page.extract_text() or "") for number, page in enumerate(reader.pages, 1)
            ]
        except (PdfReadError, OSError, ValueError, KeyError) as exc:
            raise IngestError(f"not a readable PDF ({exc.__class__.__name__}: {exc})") from exc
        entries = []
        for number, page_text in pages:
            paragraphs = split_paragraphs(_join_pdf_lines(page_text))
            for n, chunk in enumerate(pack(paragraphs, self.max_chars, self.overlap_chars), 1):
                entries.append(
                    self._entry(
                        f"{rel}#p{number}.{n}",
                        chunk,
                        f"{title} (p. {number})",
                        {},
                        doc_id=rel,
                        default_source=f"{rel}, p. {number}",
                    )
                )
        if not entries:
            raise IngestError("the PDF has no extractable text (a scan needs OCR first)")
        return entries

    def jsonl(self, path: Path, rel: str) -> list[Entry]:
        entries = []
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed by the with below
        except OSError as exc:
            raise IngestError(f"cannot read it ({exc.strerror})") from exc
        with f:
            why = looks_binary(f.read(8192))
            if why is not None:
                raise IngestError(f"not a text file ({why}); remove it or fix its extension")
            f.seek(0)
            for number, raw in enumerate(f, 1):
                try:
                    line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
                except UnicodeDecodeError as exc:
                    self.report.skip(f"{rel} line {number}", f"not UTF-8 text ({exc.reason})")
                    continue
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                    if not isinstance(record, dict):
                        raise ValueError("not a JSON object")
                    entries.extend(self.record(record, path.parent, f"{rel}:{number}"))
                except (ValueError, IngestError) as exc:
                    self.report.skip(f"{rel} line {number}", str(exc))
        return entries

    def record(self, record: dict[str, Any], base: Path, fallback_id: str) -> list[Entry]:
        """Entries from one JSONL record (a text entry, an image–caption pair or an instruction record)."""
        record_id = str(record.get("id") or fallback_id)
        if "images" in record and ("messages" in record or "conversations" in record):
            return [self._instruction_record(record, base, record_id)]
        image = record.get("image")
        text = record.get("text") or record.get("caption")
        if not isinstance(text, str) or not text.strip():
            raise IngestError(f"record {record_id!r} has no 'text' (or 'caption')")
        image_path = _resolve_image(image, base) if image else None
        if image_path is not None or len(text) <= self.max_chars:
            return [
                self._entry(
                    record_id, text.strip(), record.get("title", ""), record, image=image_path
                )
            ]
        chunks = pack(split_paragraphs(text), self.max_chars, self.overlap_chars)
        return [
            self._entry(f"{record_id}#{n}", c, record.get("title", ""), record, doc_id=record_id)
            for n, c in enumerate(chunks, 1)
        ]

    def _instruction_record(self, record: dict[str, Any], base: Path, record_id: str) -> Entry:
        images = record.get("images") or []
        if len(images) != 1:
            raise IngestError(
                f"record {record_id!r} has {len(images)} images; image entries take exactly one"
            )
        turns = _turns(record)
        question = next((t for r, t in turns if r == "user"), "")
        answer = next((t for r, t in turns if r == "assistant"), "")
        if not answer.strip():
            raise IngestError(f"record {record_id!r} has no answer to use as a caption")
        question = question.replace("<image>", "").strip()
        task = str(record.get("task", ""))
        is_caption = task.startswith("caption") or question.startswith("[caption]") or not question
        text = answer.strip() if is_caption else f"Q: {question} A: {answer.strip()}"
        meta = {**record, "tags": record.get("tags") or ([task] if task else [])}
        return self._entry(
            record_id, text, record.get("title", ""), meta, image=_resolve_image(images[0], base)
        )

    def image(self, path: Path, rel: str) -> list[Entry]:
        caption_path = path.with_suffix(".txt")
        if not caption_path.is_file():
            raise IngestError("an image needs a caption: put it in a .txt file of the same name")
        caption = _read_text(caption_path).strip()
        if not caption:
            raise IngestError(f"its caption {caption_path.name} is empty")
        return [
            self._entry(
                rel,
                caption,
                path.stem.replace("_", " "),
                {},
                default_source=rel,
                image=str(path.resolve()),
            )
        ]

    # -------------------------------------------------------------- helpers
    @staticmethod
    def _entry(
        entry_id: str,
        text: str,
        title: str,
        meta: dict[str, Any],
        *,
        doc_id: str = "",
        default_source: str = "",
        image: str | None = None,
    ) -> Entry:
        tags = meta.get("tags") or []
        return Entry(
            id=entry_id,
            text=text,
            title=str(title or ""),
            source=str(meta.get("source") or default_source),
            licence=str(meta.get("licence") or meta.get("license") or ""),
            url=str(meta.get("url") or ""),
            tags=tags if isinstance(tags, str) else list(tags),
            doc_id=doc_id or entry_id,
            image=image,
        )


def _read_text(path: Path) -> str:
    """The file's text: UTF-8, else Latin-1 (older documents); a binary file is refused."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise IngestError(f"cannot read it ({exc.strerror})") from exc
    why = looks_binary(data)
    if why is not None:
        raise IngestError(f"not a text file ({why}); remove it or fix its extension")
    return decode_text(data, str(path), fallback="latin-1")


def _join_pdf_lines(text: str) -> str:
    """PDF text has a line break per printed line: rejoin lines, undo end-of-line hyphens."""
    text = re.sub(r"(\w)-\n(\w)", r"\1\2", text)
    text = re.sub(r"(?<![.:!?\n])\n(?!\n)", " ", text)
    return text


def _sibling_image(path: Path) -> Path | None:
    for suffix in IMAGE_SUFFIXES:
        for candidate in (path.with_suffix(suffix), path.with_suffix(suffix.upper())):
            if candidate.is_file():
                return candidate
    return None


def _resolve_image(image: Any, base: Path) -> str:
    if not isinstance(image, str) or not image:
        raise IngestError(f"an image must be given as a path, not {image!r}")
    path = Path(image).expanduser()
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        raise IngestError(f"image {image} not found (paths are relative to the JSONL file)")
    return str(path.resolve())


def _turns(record: dict[str, Any]) -> list[tuple[str, str]]:
    """(role, text) turns of an instruction record: the project's ``{"role", "content"}`` turns
    (under ``conversations`` or ``messages``) or LLaVA-style ``{"from", "value"}`` ones."""
    roles = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant"}
    turns = record.get("conversations") or record.get("messages") or []
    out = []
    for m in turns:
        if not isinstance(m, dict):
            continue
        role = m.get("role", m.get("from", ""))
        out.append((roles.get(str(role), str(role)), str(m.get("content", m.get("value", "")))))
    return out


def read_entries(
    src: str | Path,
    *,
    max_chars: int = DEFAULT_MAX_CHARS,
    overlap_chars: int = DEFAULT_OVERLAP_CHARS,
) -> tuple[list[Entry], IngestReport]:
    """All entries under ``src`` and the report of what was read and skipped."""
    reader = Reader(max_chars, overlap_chars)
    return list(reader.read(src)), reader.report
