"""What a knowledge store holds (:class:`Entry`) and what a search returns (:class:`Hit`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from geoassist.rag.errors import IngestError

# The metadata columns of the sidecar table, in order.
METADATA_FIELDS = ("title", "source", "licence", "url", "tags")


@dataclass
class Entry:
    """One retrievable passage: a text chunk, or an image with its caption.

    ``id`` is unique in a store. ``doc_id`` names the document the chunk came
    from (a file, a JSONL record); deleting or updating a document id touches all
    of its chunks. ``image`` is the path of the picture for image entries (their
    ``text`` is the caption). ``source`` says where the facts come from (a
    publication, a handbook, a file) and ``url`` where to read it.
    """

    id: str
    text: str
    title: str = ""
    source: str = ""
    licence: str = ""
    url: str = ""
    tags: list[str] = field(default_factory=list)
    doc_id: str = ""
    image: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id.strip():
            raise IngestError(f"an entry needs a non-empty string id (got {self.id!r})")
        if not isinstance(self.text, str) or not self.text.strip():
            raise IngestError(
                f"entry {self.id!r} has no text; give it a text (or a caption, for an image)"
            )
        if isinstance(self.tags, str):
            self.tags = [t.strip() for t in self.tags.split(",") if t.strip()]
        self.tags = [str(t) for t in (self.tags or [])]
        if not self.doc_id:
            self.doc_id = self.id

    @property
    def is_image(self) -> bool:
        return self.image is not None

    def embedding_text(self) -> str:
        """What the text embedder reads: the title gives a chunk the context its heading had."""
        return f"{self.title}. {self.text}" if self.title else self.text

    def to_dict(self) -> dict[str, Any]:
        row = asdict(self)
        if row["image"] is None:
            del row["image"]
        if row["doc_id"] == row["id"]:
            del row["doc_id"]
        return row

    @classmethod
    def from_dict(cls, row: Mapping[str, Any]) -> Entry:
        known = {"id", "text", "doc_id", "image", *METADATA_FIELDS}
        kwargs = {k: row[k] for k in known if k in row and row[k] is not None}
        if "license" in row and "licence" not in kwargs:  # accept the US spelling in input files
            kwargs["licence"] = row["license"]
        for key in ("id", "title", "source", "licence", "url", "doc_id"):
            if key in kwargs:
                kwargs[key] = str(kwargs[key])
        return cls(**kwargs)


@dataclass
class Hit:
    """One search result: the entry, its similarity score (higher is better) and its rank (1 = best)."""

    entry: Entry
    score: float
    rank: int

    @property
    def id(self) -> str:
        return self.entry.id

    def to_dict(self) -> dict[str, Any]:
        """The JSON form ``geoassist kb search --json`` prints."""
        e = self.entry
        return {
            "id": e.id,
            "title": e.title,
            "text": e.text,
            "source": e.source,
            "score": round(float(self.score), 6),
        }

    def citation(self) -> dict[str, Any]:
        """The form :attr:`geoassist.assistant.Answer.citations` holds."""
        e = self.entry
        return {
            "id": e.id,
            "title": e.title,
            "source": e.source,
            "url": e.url,
            "score": round(float(self.score), 6),
        }
