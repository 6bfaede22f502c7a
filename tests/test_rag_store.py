"""The knowledge store: add/delete/update, persistence, atomic saves, corrupt files, embedder checks, index plans."""

from __future__ import annotations

import json

import numpy as np
import pytest

from geoassist.rag import (
    CorruptStoreError,
    EmbedderMismatchError,
    Entry,
    HashingEmbedder,
    KnowledgeStore,
    KnowledgeStoreError,
    StoreNotFoundError,
)
from geoassist.rag.embedders import Embedder
from geoassist.rag.index import plan_index

TOPICS = ["water", "forest", "cropland", "urban", "snow", "desert", "wetland", "harbour"]


def entries(n: int = 24, prefix: str = "e") -> list[Entry]:
    return [
        Entry(
            id=f"{prefix}{i}",
            text=f"note {i} about {TOPICS[i % len(TOPICS)]} areas seen in band {i % 5}",
            title=f"{TOPICS[i % len(TOPICS)].title()} note {i}",
            source="test",
            url=f"https://example.org/{i}",
            tags=[TOPICS[i % len(TOPICS)]],
            doc_id=f"doc{i // 3}",
        )
        for i in range(n)
    ]


@pytest.fixture
def store() -> KnowledgeStore:
    s = KnowledgeStore(HashingEmbedder(128))
    s.add(entries())
    return s


class ShuffledHashing(HashingEmbedder):
    """Same kind, name and dimension as HashingEmbedder(128) but different vectors ("other weights")."""

    def _encode(self, items, batch_size, show_progress):
        return super()._encode(items, batch_size, show_progress)[:, ::-1].copy()


class RandomVectors(Embedder):
    """An embedder for synthetic vectors: the benchmark-style store without any model."""

    kind, modality, name, dim = "random", "text", "random-16", 16

    def _encode(self, items, batch_size, show_progress):
        rng = np.random.default_rng(abs(hash(tuple(items))) % 2**32)
        return rng.standard_normal((len(items), self.dim))


def test_add_search_get(store):
    hits = store.search("urban areas", k=3)
    assert [h.rank for h in hits] == [1, 2, 3]
    assert hits[0].entry.tags == ["urban"] and hits[0].score >= hits[1].score >= hits[2].score
    assert store.get("e3").title == "Urban note 3" and "e3" in store and len(store) == 24
    assert set(hits[0].to_dict()) == {"id", "title", "text", "source", "score"}
    with pytest.raises(KnowledgeStoreError, match="already in the store"):
        store.add([Entry(id="e3", text="again")])
    with pytest.raises(KnowledgeStoreError, match="twice"):
        store.add([Entry(id="x", text="a"), Entry(id="x", text="b")])
    with pytest.raises(KnowledgeStoreError, match="nothing to search"):
        store.search("  ")


def test_delete_and_update_by_document_id(store):
    assert store.delete("doc1") == ["e3", "e4", "e5"]
    assert "e4" not in store and len(store) == 21
    assert all(h.entry.doc_id != "doc1" for h in store.search("urban areas band", k=21))
    assert store.delete(["e0"]) == ["e0"] and store.delete("nothing") == []
    store.update([Entry(id="doc2#1", text="a single new chunk about glaciers", doc_id="doc2")])
    assert [e.id for e in store if e.doc_id == "doc2"] == ["doc2#1"]
    assert store.search("glaciers", k=1)[0].id == "doc2#1"
    store.add([Entry(id="e9", text="replaced text about volcanoes")], replace=True)
    assert (
        store.get("e9").text.startswith("replaced") and len([e for e in store if e.id == "e9"]) == 1
    )


def test_save_open_round_trip(store, tmp_path):
    folder = store.save(tmp_path / "kb")
    reopened = KnowledgeStore.open(folder)
    assert reopened.ids() == store.ids()
    assert reopened.get("e5").to_dict() == store.get("e5").to_dict()
    before = [(h.id, round(h.score, 5)) for h in store.search("cropland note", k=5)]
    assert [(h.id, round(h.score, 5)) for h in reopened.search("cropland note", k=5)] == before
    reopened.delete("e1")
    reopened.save()
    again = KnowledgeStore.open(folder)
    assert "e1" not in again and again.generation == 2
    # Only the current generation's files stay.
    names = sorted(p.name for p in folder.iterdir())
    assert [n for n in names if n != "manifest.json"] == sorted(
        json.loads((folder / "manifest.json").read_text())["checksums"]
    )


def test_crash_during_save_leaves_previous_version(store, tmp_path, monkeypatch):
    import geoassist.rag.store as store_module

    folder = store.save(tmp_path / "kb")
    store.delete("doc0")
    store.add([Entry(id="new", text="brand new entry about ice")])

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(store_module.os, "replace", crash)  # dies just before the commit point
    with pytest.raises(OSError):
        store.save()
    monkeypatch.undo()
    survivor = KnowledgeStore.open(folder)
    assert len(survivor) == 24 and "e0" in survivor and "new" not in survivor

    monkeypatch.setattr(np, "save", crash)  # dies while writing the vectors
    with pytest.raises(OSError):
        store.save()
    monkeypatch.undo()
    assert len(KnowledgeStore.open(folder)) == 24
    store.save()  # a later save succeeds and cleans up the debris of the failed ones
    assert "new" in KnowledgeStore.open(folder)
    assert not [p for p in folder.iterdir() if p.name.startswith(".manifest")]


def test_missing_and_corrupt_stores_give_clear_errors(store, tmp_path):
    with pytest.raises(StoreNotFoundError, match="kb build"):
        KnowledgeStore.open(tmp_path / "nowhere")
    (tmp_path / "plain").mkdir()
    with pytest.raises(StoreNotFoundError, match="not a knowledge store"):
        KnowledgeStore.open(tmp_path / "plain")
    (tmp_path / "plain" / "notes.txt").write_text("mine")
    with pytest.raises(KnowledgeStoreError, match="not empty"):
        store.save(tmp_path / "plain")

    folder = store.save(tmp_path / "kb")
    manifest = json.loads((folder / "manifest.json").read_text())
    docs = folder / manifest["files"]["documents"]
    vectors = folder / manifest["files"]["text"][1]

    original = docs.read_bytes()
    docs.write_bytes(original[: len(original) // 2])
    with pytest.raises(CorruptStoreError, match="damaged"):
        KnowledgeStore.open(folder)
    docs.write_bytes(original)

    data = bytearray(vectors.read_bytes())
    data[-5] ^= 0xFF
    vectors.write_bytes(bytes(data))
    with pytest.raises(CorruptStoreError, match="damaged.*rebuild"):
        KnowledgeStore.open(folder)

    (folder / "manifest.json").write_text("{not json")
    with pytest.raises(CorruptStoreError, match="not valid JSON"):
        KnowledgeStore.open(folder)


def test_store_refuses_another_embedder(store, tmp_path):
    folder = store.save(tmp_path / "kb")
    with pytest.raises(EmbedderMismatchError, match="64-d"):
        KnowledgeStore.open(folder, text_embedder=HashingEmbedder(64))
    with pytest.raises(EmbedderMismatchError, match="embeds differently"):
        KnowledgeStore.open(folder, text_embedder=ShuffledHashing(128))
    with pytest.raises(EmbedderMismatchError):
        store.search("water", text_embedder=ShuffledHashing(128))
    with pytest.raises(EmbedderMismatchError, match="384-d"):
        store.add_embedded([Entry(id="v", text="v")], np.ones((1, 384)))
    # The same embedder, made again, is accepted.
    assert KnowledgeStore.open(folder, text_embedder=HashingEmbedder(128)).search("water", k=1)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_approximate_indexes_add_delete_and_persist(kind, tmp_path):
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((20, 16))
    vectors = centres[rng.integers(0, 20, 600)] + 0.1 * rng.standard_normal((600, 16))
    items = [Entry(id=f"v{i}", text=f"vector {i}") for i in range(600)]
    store = KnowledgeStore(RandomVectors(), index="auto" if kind == "ivf" else kind, flat_max=100)
    store.add_embedded(items, vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    info = store.describe()["spaces"]["text"]["index"]
    assert info["kind"] == kind and info["reason"]
    if kind == "ivf":
        assert (
            info["nlist"] >= 16
            and info["nprobe"] >= 8
            and "600 vectors > flat_max 100" in info["reason"]
        )
    query = store.spaces["text"].vectors[:5]
    first = store.search_vectors(query, k=3)
    assert [hits[0].id for hits in first] == ["v0", "v1", "v2", "v3", "v4"]
    assert store.delete(["v0", "v1"]) == ["v0", "v1"]
    after = store.search_vectors(query[:2], k=10)
    assert all(h.id not in ("v0", "v1") for hits in after for h in hits)
    folder = store.save(tmp_path / kind)
    assert any(p.suffix == ".faiss" for p in folder.iterdir())
    reopened = KnowledgeStore.open(folder, text_embedder=RandomVectors())
    assert [h.id for h in reopened.search_vectors(query[2:3], k=3)[0]] == [h.id for h in first[2]]


def test_index_plan_choices():
    assert plan_index(1000).kind == "flat"
    big = plan_index(1_000_000)
    assert big.kind == "ivf" and big.nlist == 2048 and big.nprobe == 128
    assert plan_index(50, "ivf").kind == "ivf" and plan_index(10, "ivf").kind == "flat"
    assert plan_index(10, "hnsw").kind == "hnsw"
    with pytest.raises(KnowledgeStoreError, match="unknown index kind"):
        plan_index(10, "annoy")


def test_flat_store_grows_into_ivf_when_it_passes_the_threshold():
    store = KnowledgeStore(RandomVectors(), flat_max=200)
    rng = np.random.default_rng(1)
    for start in range(0, 400, 100):
        items = [Entry(id=f"v{i}", text="x") for i in range(start, start + 100)]
        store.add_embedded(items, rng.standard_normal((100, 16)))
        kind = store.describe()["spaces"]["text"]["index"]["kind"]
        assert kind == ("flat" if start + 100 <= 200 else "ivf")


def test_gpu_path_clones_flat_and_ivf_indexes_only(monkeypatch):
    import faiss

    from geoassist.rag import index as index_module

    assert index_module.gpu_available() in (True, False)
    cloned = []

    def fake_clone(resources, device, index):
        cloned.append(type(index).__name__)
        return faiss.clone_index(index)  # stands in for the GPU copy

    monkeypatch.setattr(index_module, "gpu_available", lambda: True)
    monkeypatch.setattr(faiss, "StandardGpuResources", lambda: object(), raising=False)
    monkeypatch.setattr(faiss, "index_cpu_to_gpu", fake_clone, raising=False)
    rng = np.random.default_rng(2)
    vectors = rng.standard_normal((300, 16))
    items = [Entry(id=f"v{i}", text="x") for i in range(300)]
    for kind, expect_gpu in (("flat", True), ("ivf", True), ("hnsw", False)):
        cloned.clear()
        store = KnowledgeStore(RandomVectors(), index=kind)
        store.add_embedded(items, vectors)
        assert store.search_vectors(store.spaces["text"].vectors[:1], k=1)[0][0].id == "v0"
        assert bool(cloned) == expect_gpu
    cloned.clear()
    off = KnowledgeStore(RandomVectors(), use_gpu=False)
    off.add_embedded(items, vectors)
    off.search_vectors(vectors[:1], k=1)
    assert not cloned
