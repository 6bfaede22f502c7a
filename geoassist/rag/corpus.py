"""The bundled knowledge corpus and the ``default`` store built from it.

The corpus (``geoassist/rag/corpus/*.jsonl``) is written by the project from
public facts; every entry names the publication or page its facts come from
(``source``, ``url``). It covers EO sensors (bands, wavelengths, resolutions,
revisit), spectral indices, land-cover and LCZ classes, SAR basics, the public
datasets the recipes read, disaster signatures and how to read GeoAssist's own
outputs.

The ``default`` store is the corpus embedded with all-MiniLM-L6-v2. It is built
the first time it is asked for (``geoassist kb build --default`` builds it ahead
of time) and cached under ``$GEOASSIST_CACHE/kb/default``; it is rebuilt when the
installed corpus changes. Wherever a store is expected, the name ``default``
stands for it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from pathlib import Path

from geoassist.rag.embedders import Embedder, default_text_embedder
from geoassist.rag.entries import Entry
from geoassist.rag.errors import CorruptStoreError, IngestError, KnowledgeStoreError
from geoassist.rag.store import KnowledgeStore, is_store

logger = logging.getLogger(__name__)

CORPUS_DIR = Path(__file__).resolve().parent / "corpus"
DEFAULT_NAME = "default"
REQUIRED_FIELDS = ("id", "title", "text", "source", "url", "licence")


def cache_dir() -> Path:
    """``$GEOASSIST_CACHE``, else ``$XDG_CACHE_HOME/geoassist`` (as :func:`geoassist.model.lm.cache_dir`)."""
    root = (
        os.environ.get("GEOASSIST_CACHE")
        or Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "geoassist"
    )
    return Path(root)


def default_store_path() -> Path:
    return cache_dir() / "kb" / DEFAULT_NAME


def corpus_files(folder: Path = CORPUS_DIR) -> list[Path]:
    return sorted(folder.glob("*.jsonl"))


def load_corpus(folder: Path = CORPUS_DIR) -> list[Entry]:
    """Every corpus entry; a record without its id, title, text, source, url or licence is an error."""
    entries: list[Entry] = []
    seen: dict[str, str] = {}
    for path in corpus_files(folder):
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"{path.name} line {number}"
                try:
                    record = json.loads(line)
                except ValueError as exc:
                    raise IngestError(f"{where} is not JSON ({exc})") from exc
                missing = [k for k in REQUIRED_FIELDS if not record.get(k)]
                if missing:
                    raise IngestError(
                        f"{where} lacks {', '.join(missing)}; every corpus entry names its source"
                    )
                if record["id"] in seen:
                    raise IngestError(
                        f"{where} repeats the id {record['id']!r} of {seen[record['id']]}"
                    )
                seen[record["id"]] = where
                entries.append(Entry.from_dict(record))
    if not entries:
        raise IngestError(f"no corpus entries found in {folder}")
    return entries


def corpus_fingerprint(folder: Path = CORPUS_DIR) -> str:
    digest = hashlib.sha256()
    for path in corpus_files(folder):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def build_corpus_store(
    out: str | Path | None = None,
    *,
    folder: Path = CORPUS_DIR,
    text_embedder: Embedder | None = None,
    index: str = "auto",
    show_progress: bool = False,
) -> KnowledgeStore:
    """Embed the corpus into a new store (saved to ``out`` when given)."""
    store = KnowledgeStore(text_embedder or default_text_embedder(), index=index)
    store.add(load_corpus(folder), show_progress=show_progress)
    store.info = {
        "name": DEFAULT_NAME,
        "corpus": str(folder),
        "corpus_fingerprint": corpus_fingerprint(folder),
    }
    if out is not None:
        store.save(out)
    return store


def _is_current(path: Path, fingerprint: str) -> bool:
    if not is_store(path):
        return False
    try:
        manifest = json.loads((path / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return manifest.get("info", {}).get("corpus_fingerprint") == fingerprint


def open_default(
    *,
    rebuild: bool = False,
    folder: Path = CORPUS_DIR,
    path: Path | None = None,
    text_embedder: Embedder | None = None,
    show_progress: bool = False,
) -> KnowledgeStore:
    """The default store: opened from the cache, or built there first (when missing, outdated or ``rebuild``)."""
    path = path or default_store_path()
    fingerprint = corpus_fingerprint(folder)
    if not rebuild and _is_current(path, fingerprint):
        try:
            return KnowledgeStore.open(path, text_embedder=text_embedder)
        except CorruptStoreError as exc:
            logger.warning("the cached default store is damaged (%s); rebuilding it", exc)
    logger.info("building the default knowledge store at %s", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Build beside the target and move it into place, so a concurrent reader never sees half a store.
    tmp = path.with_name(f".{path.name}.build-{uuid.uuid4().hex[:8]}")
    try:
        store = build_corpus_store(
            tmp, folder=folder, text_embedder=text_embedder, show_progress=show_progress
        )
        _replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    store.path = path
    return store


def _replace(new: Path, target: Path) -> None:
    if not target.exists():
        try:
            new.rename(target)
            return
        except OSError:
            if not target.exists():
                raise
    old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    target.rename(old)
    new.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def open_store(spec: str | Path | KnowledgeStore, **kwargs) -> KnowledgeStore:
    """A store from what a user wrote: a :class:`KnowledgeStore`, ``default``, or a store folder."""
    if isinstance(spec, KnowledgeStore):
        return spec
    if str(spec) == DEFAULT_NAME and not Path(DEFAULT_NAME).is_dir():
        return open_default(**kwargs)
    if not isinstance(spec, (str, Path)):
        raise KnowledgeStoreError(
            f"a knowledge store is a folder, 'default' or a KnowledgeStore, not {type(spec).__name__}"
        )
    return KnowledgeStore.open(spec, **kwargs)
