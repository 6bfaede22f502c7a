"""The bundled corpus, the default store built from it, retrieval quality, and knowledge_qa records."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from geoassist.rag import Entry, HashingEmbedder, KnowledgeStore, knowledge_qa_records, load_corpus
from geoassist.rag.context import NO_ANSWER
from geoassist.rag.corpus import CORPUS_DIR, corpus_fingerprint, open_default, open_store
from geoassist.rag.errors import IngestError

QUESTIONS = CORPUS_DIR / "questions" / "retrieval.jsonl"
B8_QUESTION = "Which Sentinel-2 band is near-infrared at 10 m?"


@pytest.fixture(scope="session")
def corpus() -> list[Entry]:
    return load_corpus()


@pytest.fixture(scope="session")
def default_store():
    """The real default store (all-MiniLM-L6-v2), built once into the user cache and reused."""
    return open_store("default")


def test_corpus_covers_the_required_topics(corpus):
    assert len(corpus) >= 300
    ids = {e.id for e in corpus}
    for prefix in (
        "s2-",
        "s1-",
        "s3-",
        "landsat-",
        "l89-",
        "modis-",
        "planetscope",
        "naip",
        "spot-",
        "worldview-",
        "gaofen-",
        "idx-",
        "lcz-",
        "worldcover-",
        "sar-",
        "ds-",
        "dis-",
        "ga-",
    ):
        assert any(i.startswith(prefix) for i in ids), prefix
    for index in ("ndvi", "ndwi", "mndwi", "ndbi", "nbr", "evi", "savi"):
        assert f"idx-{index}" in ids
    for e in corpus:
        assert e.source and e.url.startswith("http") and e.licence and e.title, e.id
        assert re.fullmatch(r"[a-z0-9][a-z0-9.-]*", e.id), e.id


def test_question_set_names_existing_entries(corpus):
    questions = [json.loads(line) for line in QUESTIONS.read_text().splitlines()]
    ids = {e.id for e in corpus}
    assert len(questions) >= 100 and all(q["answer_id"] in ids for q in questions)


def test_corpus_errors_are_reported(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps({"id": "x", "title": "t", "text": "x"}) + "\n")
    with pytest.raises(IngestError, match="lacks source, url, licence"):
        load_corpus(tmp_path)
    record = {"id": "x", "title": "t", "text": "x", "source": "s", "url": "u", "licence": "l"}
    (tmp_path / "a.jsonl").write_text(json.dumps(record) + "\n" + json.dumps(record) + "\n")
    with pytest.raises(IngestError, match="repeats the id"):
        load_corpus(tmp_path)


def test_default_store_is_built_once_and_rebuilt_when_the_corpus_changes(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    record = {
        "id": "a",
        "title": "A",
        "text": "alpha fact",
        "source": "s",
        "url": "https://x",
        "licence": "l",
    }
    (folder / "one.jsonl").write_text(json.dumps(record) + "\n")
    path = tmp_path / "cache" / "default"
    store = open_default(folder=folder, path=path, text_embedder=HashingEmbedder(32))
    assert len(store) == 1 and store.info["corpus_fingerprint"] == corpus_fingerprint(folder)
    generation = json.loads((path / "manifest.json").read_text())["generation"]
    again = open_default(folder=folder, path=path, text_embedder=HashingEmbedder(32))
    assert (
        len(again) == 1
        and json.loads((path / "manifest.json").read_text())["generation"] == generation
    )
    (folder / "two.jsonl").write_text(json.dumps({**record, "id": "b", "text": "beta fact"}) + "\n")
    assert len(open_default(folder=folder, path=path, text_embedder=HashingEmbedder(32))) == 2
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".")]  # no build debris left


def test_default_store_answers_the_b8_question_first(default_store):
    hits = default_store.search(B8_QUESTION, k=5)
    assert hits[0].id == "s2-b8" and "B8" in hits[0].entry.title
    assert default_store.specs["text"]["name"] == "sentence-transformers/all-MiniLM-L6-v2"


def test_recall_at_5_on_the_question_set(default_store):
    questions = [json.loads(line) for line in QUESTIONS.read_text().splitlines()]
    vectors = default_store.text_embedder.encode([q["question"] for q in questions])
    results = default_store.search_vectors(vectors, k=5)
    found = [
        q["answer_id"] in [h.id for h in hits] for q, hits in zip(questions, results, strict=True)
    ]
    assert sum(found) / len(found) >= 0.9


def test_knowledge_qa_records_follow_the_record_schema(corpus):
    pool = corpus[:40]
    records = knowledge_qa_records(pool, k=3, unanswerable_every=4, planted_every=5, seed=1)
    again = knowledge_qa_records(pool, k=3, unanswerable_every=4, planted_every=5, seed=1)
    assert records == again and len(records) == 40
    try:
        from geoassist.data_recipes.schema import validate_record
    except ImportError:  # the recipes package is optional for this test
        validate_record = None
    kinds = {r["qtype"] for r in records}
    assert kinds == {"answerable", "unanswerable", "planted"}
    for r in records:
        if validate_record is not None:
            validate_record(r)
        user, reply = r["conversations"][0]["content"], r["conversations"][1]["content"]
        assert (
            r["task"] == "knowledge_qa"
            and r["images"] == []
            and r["id"].startswith("geoassist_kb:")
        )
        assert (
            user.startswith("[knowledge] ")
            and "<context>" in user
            and r["meta"]["question"] in user
        )
        if r["qtype"] == "unanswerable":
            assert reply == NO_ANSWER and r["meta"]["answer_ids"] == []
        else:
            gold = r["meta"]["answer_ids"][0]
            assert reply.endswith(f"[{gold}]") and gold in r["meta"]["context_ids"]
            assert f'<passage id="{gold}"' in user
        if r["qtype"] == "planted":
            assert any(
                p in user
                for p in ("Ignore all", "SYSTEM OVERRIDE", "Disregard", "New instructions")
            )


def test_knowledge_qa_records_use_store_neighbours_as_distractors(corpus):
    store = KnowledgeStore(HashingEmbedder(128))
    store.add(corpus[:30])
    records = knowledge_qa_records(store, k=4, unanswerable_every=0, planted_every=0, limit=5)
    assert len(records) == 5 and all(len(r["meta"]["context_ids"]) == 4 for r in records)


def test_corpus_folder_is_package_data():
    text = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text()
    assert '"rag/corpus/*"' in text and '"rag/corpus/**/*"' in text
