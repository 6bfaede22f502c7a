"""The knowledge store: entries in a sidecar table, their vectors behind FAISS, saved atomically.

On disk a store is one folder::

    manifest.json                  the commit point: format, embedders, index plans, file names, checksums
    documents-<gen>.jsonl          the sidecar table: one entry per line (text, title, source, licence, url, tags…)
    text-<gen>.ids.npy             row ids of the text vectors
    text-<gen>.vectors.npy         the text vectors (float32, L2-normalised)
    text-<gen>.faiss               the IVF / HNSW index (flat indexes are rebuilt from the vectors)
    image-<gen>.*                  the same for image entries, when the store has any

A save writes a new generation of files next to the old ones, then replaces
``manifest.json`` in one rename; only then are the previous generation's files
removed. A crash at any point leaves a manifest that names complete files, so the
previous version stays readable. Every file's size and SHA-256 are in the
manifest, so a damaged file is reported as such instead of being half-read.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import os
import re
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from geoassist.rag.embedders import Embedder, check_compatible, embedder_from_spec, text_embedder
from geoassist.rag.entries import Entry, Hit
from geoassist.rag.errors import (
    CorruptStoreError,
    EmbedderMismatchError,
    KnowledgeStoreError,
    StoreNotFoundError,
)
from geoassist.rag.index import FLAT_MAX, VectorSpace

logger = logging.getLogger(__name__)

FORMAT = "geoassist-kb"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SPACES = ("text", "image")
RRF_K = 60  # reciprocal-rank-fusion constant for joint text + image queries
_GENERATION_FILE = re.compile(r"^(documents|text|image)-(\d{6})-[0-9a-f]{6}\.")
_ANY_GENERATION = re.compile(
    r"^(?:documents-|text-|image-|\.manifest\.json\.)(\d{6})-[0-9a-f]{6}\."
)


class StoreExistsError(KnowledgeStoreError, FileExistsError):
    """A folder already holds a knowledge store that a save would replace."""


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class KnowledgeStore:
    """Entries (text chunks and captioned images) searchable by text, by image, or both.

    ``text_embedder`` is any :class:`~geoassist.rag.embedders.Embedder` of text
    (default: the bundled all-MiniLM-L6-v2, loaded when first needed);
    ``image_embedder`` a :class:`~geoassist.rag.embedders.VisionTowerEmbedder`
    for image entries and image queries. ``index`` is ``auto`` (exact flat search
    up to ``flat_max`` vectors, IVF above), ``flat``, ``ivf`` or ``hnsw``.
    """

    def __init__(
        self,
        text_embedder: Embedder | str | None = None,
        *,
        image_embedder: Embedder | None = None,
        index: str = "auto",
        flat_max: int = FLAT_MAX,
        use_gpu: bool | None = None,
    ):
        self._text_embedder = text_embedder if isinstance(text_embedder, Embedder) else None
        self._text_embedder_name = None if isinstance(text_embedder, Embedder) else text_embedder
        self._image_embedder = image_embedder
        self.index_kind = index
        self.flat_max = flat_max
        self.use_gpu = use_gpu
        self.specs: dict[str, dict[str, Any]] = {}
        self.spaces: dict[str, VectorSpace] = {}
        self.entries: dict[int, Entry] = {}
        self.rows: dict[str, int] = {}
        self.next_row = 0
        self.info: dict[str, Any] = {}
        self.path: Path | None = None
        self.generation = 0
        self.created = _now()
        self.updated = self.created
        if image_embedder is not None and image_embedder.modality != "image":
            raise EmbedderMismatchError(f"{image_embedder!r} does not embed images")

    # ------------------------------------------------------------- embedders
    @property
    def text_embedder(self) -> Embedder:
        if self._text_embedder is None:
            if "text" in self.specs:
                self._text_embedder = embedder_from_spec(self.specs["text"])
            else:
                self._text_embedder = text_embedder(self._text_embedder_name)
        return self._text_embedder

    @property
    def image_embedder(self) -> Embedder | None:
        if (
            self._image_embedder is None
            and "image" in self.specs
            and self.specs["image"].get("load")
        ):
            self._image_embedder = embedder_from_spec(self.specs["image"])
        return self._image_embedder

    def use_embedder(self, embedder: Embedder) -> None:
        """Query (and extend) this store with ``embedder``; raises if it is not the one the store was built with."""
        space = embedder.modality
        if space in self.specs:
            check_compatible(self.specs[space], embedder, what=f"this store's {space} index")
        if space == "text":
            self._text_embedder = embedder
        else:
            self._image_embedder = embedder

    def can_search_images_with(self, embedder: Embedder) -> bool:
        """Whether the store has image vectors made by ``embedder`` (so image queries mean something)."""
        if "image" not in self.specs or not len(self.spaces.get("image", ())):
            return False
        try:
            check_compatible(self.specs["image"], embedder)
        except EmbedderMismatchError:
            return False
        return True

    def _space(self, name: str, embedder: Embedder) -> VectorSpace:
        if name not in self.specs:
            self.specs[name] = embedder.spec()
        else:
            check_compatible(self.specs[name], embedder, what=f"this store's {name} index")
        if name not in self.spaces:
            self.spaces[name] = VectorSpace(
                embedder.dim,
                requested=self.index_kind,
                flat_max=self.flat_max,
                use_gpu=self.use_gpu,
            )
        return self.spaces[name]

    # ------------------------------------------------------------- contents
    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, entry_id: str) -> bool:
        return entry_id in self.rows

    def __iter__(self):
        return iter(self.entries.values())

    def get(self, entry_id: str) -> Entry:
        try:
            return self.entries[self.rows[entry_id]]
        except KeyError:
            raise KnowledgeStoreError(
                f"no entry {entry_id!r} in this store; `geoassist kb search` finds ids"
            ) from None

    def ids(self) -> list[str]:
        return [e.id for e in self.entries.values()]

    def document_ids(self) -> list[str]:
        return list(dict.fromkeys(e.doc_id for e in self.entries.values()))

    def add(
        self,
        entries: Iterable[Entry],
        *,
        replace: bool = False,
        batch_size: int = 64,
        show_progress: bool = False,
    ) -> int:
        """Embed and add ``entries``; returns how many were added.

        An id that is already there raises unless ``replace`` (then the old entry goes).
        Image entries also get an image vector when the store has an image embedder;
        without one they are found through their caption only.
        """
        entries = list(entries)
        if not entries:
            return 0
        seen: set[str] = set()
        for e in entries:
            if e.id in seen:
                raise KnowledgeStoreError(
                    f"entry id {e.id!r} appears twice in one batch; ids must be unique"
                )
            seen.add(e.id)
            if e.id in self.rows and not replace:
                raise KnowledgeStoreError(
                    f"entry {e.id!r} is already in the store; use update (`geoassist kb add --replace`) to change it"
                )
        text_vectors = self.text_embedder.encode(
            [e.embedding_text() for e in entries],
            batch_size=batch_size,
            show_progress=show_progress,
        )
        images = [i for i, e in enumerate(entries) if e.is_image]
        image_vectors = None
        if images:
            if self.image_embedder is None:
                logger.warning(
                    "%d image entries are indexed by their captions only: give the store an image embedder "
                    "(`--image-model`) to search them by image too",
                    len(images),
                )
                images = []
            else:
                image_vectors = self.image_embedder.encode(
                    [entries[i].image for i in images],
                    batch_size=min(batch_size, 32),
                    show_progress=show_progress,
                )
        return self.add_embedded(entries, text_vectors, image_vectors, images, replace=replace)

    def add_embedded(
        self,
        entries: Sequence[Entry],
        text_vectors: np.ndarray,
        image_vectors: np.ndarray | None = None,
        image_positions: Sequence[int] = (),
        *,
        replace: bool = False,
    ) -> int:
        """Add entries whose vectors were computed elsewhere (a GPU job, a benchmark).

        ``text_vectors[i]`` belongs to ``entries[i]``; ``image_vectors[j]`` to
        ``entries[image_positions[j]]``. The vectors must come from this store's
        embedders (they are checked by dimension only).
        """
        text_vectors = np.asarray(text_vectors, dtype=np.float32)
        if image_vectors is not None and len(image_positions) and self.image_embedder is None:
            raise KnowledgeStoreError(
                "image vectors given but the store has no image embedder; pass image_embedder="
            )
        if len(text_vectors) != len(entries):
            raise KnowledgeStoreError(
                f"{len(entries)} entries but {len(text_vectors)} text vectors"
            )
        text_space = self._space("text", self.text_embedder)
        if text_vectors.ndim != 2 or text_vectors.shape[1] != text_space.dim:
            raise EmbedderMismatchError(
                f"these vectors are {text_vectors.shape[-1]}-d; this store's text index is {text_space.dim}-d"
            )
        if replace:
            self._remove_rows([self.rows[e.id] for e in entries if e.id in self.rows])
        rows = np.arange(self.next_row, self.next_row + len(entries), dtype=np.int64)
        self.next_row += len(entries)
        for row, entry in zip(rows.tolist(), entries, strict=True):
            self.entries[row] = entry
            self.rows[entry.id] = row
        text_space.add(rows, text_vectors)
        if image_vectors is not None and len(image_positions):
            image_space = self._space("image", self.image_embedder)
            image_space.add(rows[np.asarray(image_positions, dtype=np.int64)], image_vectors)
        self.updated = _now()
        return len(entries)

    def _remove_rows(self, rows: Sequence[int]) -> None:
        if not rows:
            return
        rows_arr = np.asarray(sorted(set(rows)), dtype=np.int64)
        for space in self.spaces.values():
            space.remove(rows_arr)
        for row in rows_arr.tolist():
            entry = self.entries.pop(row)
            del self.rows[entry.id]
        self.updated = _now()

    def delete(self, ids: str | Iterable[str]) -> list[str]:
        """Remove entries by entry id or document id (all chunks of a document); returns the ids removed."""
        wanted = {ids} if isinstance(ids, str) else set(ids)
        rows = [row for row, e in self.entries.items() if e.id in wanted or e.doc_id in wanted]
        removed = [self.entries[r].id for r in rows]
        self._remove_rows(rows)
        return removed

    def update(self, entries: Iterable[Entry], **kwargs: Any) -> int:
        """Replace whole documents: every chunk of each given document id goes, then ``entries`` are added."""
        entries = list(entries)
        self.delete({e.doc_id for e in entries} | {e.id for e in entries})
        return self.add(entries, **kwargs)

    # ------------------------------------------------------------- searching
    def search(
        self,
        query: str | None = None,
        *,
        image: Any = None,
        k: int = 5,
        text_embedder: Embedder | None = None,
        image_embedder: Embedder | None = None,
        image_weight: float = 0.5,
    ) -> list[Hit]:
        """The ``k`` best entries for a text query, an image, or both (best first).

        Text-only and image-only scores are cosine similarities. A joint query
        fuses the two rankings by weighted reciprocal rank (``image_weight`` for
        the image ranking), so its scores are fusion scores. Passing an embedder
        other than the store's raises :class:`EmbedderMismatchError`.
        """
        if text_embedder is not None:
            check_compatible(
                self.specs.get("text", text_embedder.spec()),
                text_embedder,
                what="this store's text index",
            )
        if image_embedder is not None:
            self.use_embedder(image_embedder)
        has_text = query is not None and str(query).strip() != ""
        if not has_text and image is None:
            raise KnowledgeStoreError("nothing to search for: give a text query, an image, or both")
        if k <= 0 or not self.entries:
            return []
        rankings: list[tuple[float, list[tuple[int, float]]]] = []
        depth = k if (has_text != (image is not None)) else max(4 * k, 20)
        if has_text:
            embedder = text_embedder or self.text_embedder
            vector = embedder.encode([str(query)])
            rankings.append(
                (
                    1.0 - image_weight if image is not None else 1.0,
                    self._ranked("text", vector, depth),
                )
            )
        if image is not None:
            embedder = image_embedder or self.image_embedder
            if embedder is None or "image" not in self.spaces:
                raise KnowledgeStoreError(
                    "this store has no image index: build it with image entries and `--image-model` to search by image"
                )
            vector = embedder.encode([image])
            rankings.append(
                (image_weight if has_text else 1.0, self._ranked("image", vector, depth))
            )
        if len(rankings) == 1:
            return [
                Hit(self.entries[row], score, rank)
                for rank, (row, score) in enumerate(rankings[0][1][:k], 1)
            ]
        fused: dict[int, float] = {}
        for weight, ranking in rankings:
            for rank, (row, _) in enumerate(ranking, 1):
                fused[row] = fused.get(row, 0.0) + weight / (RRF_K + rank)
        best = sorted(fused.items(), key=lambda item: -item[1])[:k]
        return [Hit(self.entries[row], score, rank) for rank, (row, score) in enumerate(best, 1)]

    def _ranked(self, space_name: str, vector: np.ndarray, k: int) -> list[tuple[int, float]]:
        scores, rows = self.spaces[space_name].search(vector, k)
        return [
            (int(r), float(s))
            for r, s in zip(rows[0], scores[0], strict=True)
            if r >= 0 and int(r) in self.entries
        ]

    def search_vectors(
        self, vectors: np.ndarray, k: int = 5, *, space: str = "text"
    ) -> list[list[Hit]]:
        """Search with query vectors already embedded by this store's embedder (many at once)."""
        if space not in self.spaces:
            raise KnowledgeStoreError(f"this store has no {space} index")
        scores, rows = self.spaces[space].search(np.atleast_2d(vectors), k)
        return [
            [
                Hit(self.entries[int(r)], float(s), rank)
                for rank, (r, s) in enumerate(zip(rr, ss, strict=True), 1)
                if r >= 0
            ]
            for rr, ss in zip(rows, scores, strict=True)
        ]

    # ---------------------------------------------------------------- summary
    def describe(self) -> dict[str, Any]:
        """What ``geoassist kb info`` shows."""
        kinds = {"text": 0, "image": 0}
        for e in self.entries.values():
            kinds["image" if e.is_image else "text"] += 1
        spaces = {}
        for name, space in self.spaces.items():
            spec = self.specs.get(name, {})
            if space._stale:
                space._build()
            spaces[name] = {
                "embedder": spec.get("name"),
                "embedder_kind": spec.get("kind"),
                "dim": space.dim,
                "vectors": len(space),
                "index": space.plan.to_dict(),
            }
        return {
            "path": str(self.path) if self.path else None,
            "entries": len(self),
            "documents": len(self.document_ids()),
            "text_entries": kinds["text"],
            "image_entries": kinds["image"],
            "spaces": spaces,
            "generation": self.generation,
            "created": self.created,
            "updated": self.updated,
            "info": self.info,
        }

    # ------------------------------------------------------------ persistence
    def save(self, path: str | Path | None = None, *, overwrite: bool = False) -> Path:
        """Write the store to ``path`` (default: where it was opened) atomically; returns the folder.

        A folder that already holds another store (one this object was not opened from or
        saved to) is refused with :class:`StoreExistsError` unless ``overwrite``: replacing
        it would silently drop its entries. The store's own folder is always updated in place.
        """
        folder = Path(path).expanduser() if path is not None else self.path
        if folder is None:
            raise KnowledgeStoreError("this store has never been saved: give save() a folder")
        if folder.exists() and not folder.is_dir():
            raise KnowledgeStoreError(f"{folder} is a file; give a folder for the store")
        manifest_path = folder / MANIFEST
        own = self.path is not None and _same_folder(self.path, folder)
        if manifest_path.is_file() and not own and not overwrite:
            raise StoreExistsError(
                f"{folder} already holds a knowledge store ({_count_phrase(folder)}); "
                f"saving this one ({len(self)} {'entry' if len(self) == 1 else 'entries'}) there would replace it. Add to it with "
                "`geoassist kb add`, pick a new folder, or replace it on purpose "
                "(`kb build --force`, save(..., overwrite=True))"
            )
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:  # a file where a parent folder should be, no permission...
            raise KnowledgeStoreError(
                f"cannot create the store folder {folder} ({exc.strerror or exc}); pick another path"
            ) from exc
        previous = 0
        if manifest_path.is_file():
            try:
                previous = int(json.loads(manifest_path.read_text()).get("generation", 0))
            except (OSError, ValueError, AttributeError):
                previous = 0
        elif any(folder.iterdir()):
            raise KnowledgeStoreError(
                f"{folder} is not empty and holds no knowledge store; pick an empty or new folder"
            )
        # Number past anything in the folder, including the debris of saves that crashed, so the
        # clean-up after this commit removes it.
        found = [
            int(m.group(1))
            for m in map(_ANY_GENERATION.search, (p.name for p in folder.iterdir()))
            if m
        ]
        generation = max([previous, self.generation, *found]) + 1
        tag = f"{generation:06d}-{uuid.uuid4().hex[:6]}"
        files: dict[str, Any] = {"documents": f"documents-{tag}.jsonl"}
        with open(folder / files["documents"], "w", encoding="utf-8") as f:
            for row, entry in self.entries.items():
                f.write(json.dumps({"row": row, **entry.to_dict()}, ensure_ascii=False) + "\n")
        for name, space in self.spaces.items():
            files[name] = space.save(folder, f"{name}-{tag}")
        written = [files["documents"]] + [n for name in self.spaces for n in files[name]]
        checksums = {}
        for name in written:
            _fsync(folder / name)
            checksums[name] = {
                "size": (folder / name).stat().st_size,
                "sha256": _sha256(folder / name),
            }
        manifest = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "generation": generation,
            "library": _library_version(),
            "created": self.created,
            "updated": self.updated,
            "count": len(self),
            "next_row": self.next_row,
            "embedders": self.specs,
            "spaces": {name: space.state() for name, space in self.spaces.items()},
            "files": files,
            "checksums": checksums,
            "info": self.info,
        }
        tmp = folder / f".{MANIFEST}.{tag}.tmp"
        tmp.write_text(json.dumps(manifest, indent=1, ensure_ascii=False))
        _fsync(tmp)
        os.replace(tmp, manifest_path)  # the commit point
        _fsync(folder)
        self._remove_old_generations(folder, generation, set(written))
        self.path = folder
        self.generation = generation
        return folder

    @staticmethod
    def _remove_old_generations(folder: Path, generation: int, keep: set[str]) -> None:
        for item in folder.iterdir():
            match = _GENERATION_FILE.match(item.name)
            if match and item.name not in keep and int(match.group(2)) < generation:
                item.unlink(missing_ok=True)
            elif item.name.startswith(f".{MANIFEST}.") and item.name.endswith(".tmp"):
                stale_gen = item.name[len(MANIFEST) + 2 :][:6]
                if stale_gen.isdigit() and int(stale_gen) < generation:
                    item.unlink(missing_ok=True)

    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        text_embedder: Embedder | None = None,
        image_embedder: Embedder | None = None,
        use_gpu: bool | None = None,
        verify: bool = True,
    ) -> KnowledgeStore:
        """Open the store in folder ``path``. Given embedders must match the ones it was built with.

        ``verify`` checks every file against the SHA-256 in the manifest.
        """
        folder = Path(path).expanduser()
        for attempt in range(2):
            try:
                store = cls._read(folder, use_gpu=use_gpu, verify=verify)
                break
            except FileNotFoundError:
                # A concurrent save may have replaced the manifest and removed the files we were reading.
                if attempt == 1 or not (folder / MANIFEST).is_file():
                    raise
        if text_embedder is not None:
            store.use_embedder(text_embedder)
        if image_embedder is not None:
            store.use_embedder(image_embedder)
        return store

    @classmethod
    def _read(cls, folder: Path, *, use_gpu: bool | None, verify: bool) -> KnowledgeStore:
        if not folder.exists():
            raise StoreNotFoundError(
                f"no knowledge store at {folder}: build one with `geoassist kb build --src DIR --out {folder}`, "
                "or use the bundled one, `default`"
            )
        manifest_path = folder / MANIFEST
        if not manifest_path.is_file():
            raise StoreNotFoundError(
                f"{folder} is not a knowledge store (it has no {MANIFEST}); build one with `geoassist kb build`"
            )
        rebuild = f"rebuild it with `geoassist kb build` (or delete {folder} if it is the cached default store)"
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            if not isinstance(manifest, dict):
                raise ValueError("not a JSON object")
        except (ValueError, UnicodeDecodeError) as exc:
            raise CorruptStoreError(
                f"the manifest of {folder} is not valid JSON ({exc}); {rebuild}"
            ) from exc
        if manifest.get("format") != FORMAT:
            raise CorruptStoreError(
                f"{manifest_path} is not a GeoAssist knowledge-store manifest; {rebuild}"
            )
        if int(manifest.get("version", 0)) > FORMAT_VERSION:
            raise KnowledgeStoreError(
                f"{folder} was written by a newer GeoAssist (store format {manifest.get('version')}); upgrade geoassist"
            )
        try:
            files = manifest["files"]
            checksums = manifest["checksums"]
            for name, expected in checksums.items():
                item = folder / name
                if not item.is_file():
                    raise CorruptStoreError(f"{folder} is missing {name}; {rebuild}")
                if item.stat().st_size != expected["size"] or (
                    verify and _sha256(item) != expected["sha256"]
                ):
                    raise CorruptStoreError(
                        f"{item} is damaged (its size or checksum differs from the manifest); {rebuild}"
                    )
            store = cls(use_gpu=use_gpu)
            store.path = folder
            store.generation = int(manifest["generation"])
            store.created = manifest.get("created", store.created)
            store.updated = manifest.get("updated", store.updated)
            store.specs = dict(manifest.get("embedders", {}))
            store.info = dict(manifest.get("info", {}))
            store.next_row = int(manifest["next_row"])
            store._read_documents(folder / files["documents"], rebuild)
            if len(store) != int(manifest["count"]):
                raise CorruptStoreError(
                    f"{folder} records {manifest['count']} entries but holds {len(store)}; {rebuild}"
                )
            for name, state in manifest.get("spaces", {}).items():
                if name not in SPACES:
                    raise CorruptStoreError(
                        f"{folder} has an unknown vector space {name!r}; {rebuild}"
                    )
                store.spaces[name] = VectorSpace.load(folder, files[name], state, use_gpu=use_gpu)
                store.index_kind = state.get("requested", store.index_kind)
                store.flat_max = int(state.get("flat_max", store.flat_max))
                if not set(store.spaces[name].ids.tolist()) <= set(store.entries):
                    raise CorruptStoreError(
                        f"the {name} vectors of {folder} name entries it does not hold; {rebuild}"
                    )
        except (KeyError, TypeError, ValueError) as exc:
            raise CorruptStoreError(
                f"the manifest of {folder} is incomplete ({exc!r}); {rebuild}"
            ) from exc
        except CorruptStoreError as exc:
            if "rebuild" not in str(exc):
                raise CorruptStoreError(f"{exc}; {rebuild}") from exc
            raise
        return store

    def _read_documents(self, path: Path, rebuild: str) -> None:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                try:
                    row_data = json.loads(line)
                    row = int(row_data.pop("row"))
                    entry = Entry.from_dict(row_data)
                except (ValueError, KeyError, TypeError, KnowledgeStoreError) as exc:
                    raise CorruptStoreError(
                        f"{path} line {number} is not a valid entry ({exc}); {rebuild}"
                    ) from exc
                if entry.id in self.rows:
                    raise CorruptStoreError(f"{path} holds entry {entry.id!r} twice; {rebuild}")
                self.entries[row] = entry
                self.rows[entry.id] = row


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.expanduser().resolve() == b.expanduser().resolve()
    except OSError:
        return False


def stored_count(path: str | Path) -> int | None:
    """How many entries the store in ``path`` holds, by its manifest (None: no readable store)."""
    try:
        count = json.loads((Path(path).expanduser() / MANIFEST).read_text(encoding="utf-8"))
        count = count.get("count")
    except (OSError, ValueError, AttributeError):
        return None
    return count if isinstance(count, int) else None


def _count_phrase(folder: Path) -> str:
    count = stored_count(folder)
    if count is None:
        return "its manifest is unreadable"
    return f"{count} {'entry' if count == 1 else 'entries'}"


def _library_version() -> str:
    from geoassist import __version__

    return __version__


def is_store(path: str | Path) -> bool:
    return (Path(path).expanduser() / MANIFEST).is_file()
