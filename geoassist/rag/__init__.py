"""RS-RAG: a FAISS knowledge store that grounds answers in retrieved, cited facts.

>>> from geoassist.rag import open_store
>>> store = open_store("default")                     # the bundled corpus, built once and cached
>>> store.search("Which Sentinel-2 band is near-infrared at 10 m?", k=3)[0].id
's2-b8'

- :class:`KnowledgeStore` — entries in a sidecar table, vectors behind FAISS (exact
  flat, IVF or HNSW), add / delete / update by id, atomic saves.
- Embedders — :class:`SentenceTransformerEmbedder` (all-MiniLM-L6-v2 by default),
  :class:`VisionTowerEmbedder` (a GeoAssist model's own vision tower, for images).
- Ingestion — :func:`read_entries` (Markdown, text, JSONL, PDF, captioned images).
- Prompting — :func:`knowledge_prompt` puts hits in a delimited context block;
  :func:`citations` reads the cited ids back.
- Training data — :func:`knowledge_qa_records`.
"""

from __future__ import annotations

from geoassist.rag.context import citations, context_block, knowledge_prompt, neutralise
from geoassist.rag.corpus import build_corpus_store, load_corpus, open_default, open_store
from geoassist.rag.embedders import (
    Embedder,
    HashingEmbedder,
    SentenceTransformerEmbedder,
    VisionTowerEmbedder,
    default_text_embedder,
    text_embedder,
)
from geoassist.rag.entries import Entry, Hit
from geoassist.rag.errors import (
    CorruptStoreError,
    EmbedderMismatchError,
    EmbedderUnavailableError,
    IngestError,
    KnowledgeStoreError,
    StoreNotFoundError,
)
from geoassist.rag.ingest import IngestReport, read_entries
from geoassist.rag.qa import knowledge_qa_records
from geoassist.rag.store import KnowledgeStore

__all__ = [
    "CorruptStoreError",
    "Embedder",
    "EmbedderMismatchError",
    "EmbedderUnavailableError",
    "HashingEmbedder",
    "Entry",
    "Hit",
    "IngestError",
    "IngestReport",
    "KnowledgeStore",
    "KnowledgeStoreError",
    "SentenceTransformerEmbedder",
    "StoreNotFoundError",
    "VisionTowerEmbedder",
    "build_corpus_store",
    "citations",
    "context_block",
    "default_text_embedder",
    "knowledge_prompt",
    "knowledge_qa_records",
    "load_corpus",
    "neutralise",
    "open_default",
    "open_store",
    "read_entries",
    "text_embedder",
]
