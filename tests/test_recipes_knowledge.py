"""The knowledge_qa recipe: grounded QA records from the corpus, split by entry, ready for training."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from geoassist.data_recipes import RecipeError, build, get_recipe, read_records
from geoassist.data_recipes.schema import validate_record
from geoassist.rag import Entry, HashingEmbedder, KnowledgeStore, load_corpus
from geoassist.rag.context import NO_ANSWER

OPTIONS = {"k": 3, "unanswerable_every": 4, "planted_every": 5, "seed": 2}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("kqa") / "out"
    return out, build("knowledge_qa", "default", out, options=OPTIONS)


def _passage_ids(record):
    user = record["conversations"][0]["content"]
    return [
        part.split('"', 1)[0] for part in user.split('<passage id="')[1:]
    ]  # the ids the prompt shows


def test_default_src_is_the_bundled_corpus_and_every_record_validates(built):
    out, manifest = built
    records = list(read_records(out))
    corpus = [e for e in load_corpus() if not e.is_image]
    assert manifest["rejected"] == {} and manifest["written"] == len(records) == len(corpus)
    assert manifest["src"].endswith("corpus") and manifest["options"] == OPTIONS
    assert set(manifest["by_split"]) == {"train", "val", "test"}
    assert manifest["by_split"]["train"] > manifest["by_split"]["test"] > 0
    assert (
        manifest["licence"].startswith("the corpus's own") and "Apache-2.0" in manifest["licence"]
    )
    assert {e.licence for e in corpus} == {"Apache-2.0"}  # what the recipe's licence line says
    for record in records:
        validate_record(record)
        assert record["task"] == "knowledge_qa" and record["images"] == []
        assert record["id"].startswith("knowledge_qa:") and record["source"] == "knowledge_qa"
        assert record["meta"]["licences"] == ["Apache-2.0"]


def test_splits_are_disjoint_by_entry_and_no_other_split_leaks_into_train(built):
    out, _ = built
    asked: dict[str, set[str]] = {"train": set(), "val": set(), "test": set()}
    shown: dict[str, set[str]] = {"train": set(), "val": set(), "test": set()}
    for record in read_records(out):
        asked[record["split"]].add(record["meta"]["entry_id"])
        shown[record["split"]] |= set(_passage_ids(record))
    assert not asked["train"] & asked["val"] and not asked["train"] & asked["test"]
    assert not asked["val"] & asked["test"]
    held_out = asked["val"] | asked["test"]
    assert not shown["train"] & held_out  # no val/test passage is ever shown in a train prompt
    assert not shown["test"] & asked["val"]


def test_answerable_records_show_and_cite_the_answering_entry(built):
    out, _ = built
    kinds = Counter()
    for record in read_records(out):
        kinds[record["qtype"]] += 1
        user, reply = (t["content"] for t in record["conversations"])
        ids = _passage_ids(record)
        gold = record["meta"]["entry_id"]
        if record["qtype"] == "unanswerable":
            assert reply == NO_ANSWER and gold not in ids and len(ids) == OPTIONS["k"]
        else:
            assert record["meta"]["answer_ids"] == [gold] and gold in ids
            assert reply.endswith(f"[{gold}]") and len(ids) == OPTIONS["k"]
        if record["qtype"] == "planted":
            assert any(p in user for p in ("Ignore all", "SYSTEM OVERRIDE", "Disregard", "admin"))
    assert set(kinds) == {"answerable", "unanswerable", "planted"}
    assert kinds["unanswerable"] >= 0.15 * sum(kinds.values())


def test_same_options_same_bytes_and_splits_do_not_move_with_the_seed(built, tmp_path):
    out, manifest = built
    again = build("knowledge_qa", "default", tmp_path / "again", options=OPTIONS)
    assert again["sha256"] == manifest["sha256"]
    other = build("knowledge_qa", "default", tmp_path / "other", options={**OPTIONS, "seed": 9})
    assert other["sha256"] != manifest["sha256"]

    def split_of(folder):
        return {r["meta"]["entry_id"]: r["split"] for r in read_records(folder)}

    assert split_of(tmp_path / "other") == split_of(out)


def test_a_store_gives_neighbour_distractors_and_keeps_test_passages_out_of_train(tmp_path):
    entries = [e for e in load_corpus() if not e.is_image][:60]
    store = KnowledgeStore(HashingEmbedder(64))
    store.add(entries)
    store.save(tmp_path / "kb")
    out = tmp_path / "out"
    manifest = build("knowledge_qa", tmp_path / "kb", out, splits=["train"], options={"k": 4})
    assert manifest["by_split"] == {"train": manifest["written"]} and manifest["written"] > 30
    train_ids = {r["meta"]["entry_id"] for r in read_records(out)}
    for record in read_records(out):
        ids = _passage_ids(record)
        assert len(ids) == 4
        assert {i for i in ids if not i.startswith("note-")} <= train_ids  # note-… is a planted one


def test_a_corpus_folder_and_its_licence_travel_into_the_records(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    lines = [
        {
            "id": f"plot-{i}",
            "title": f"Field note {i}",
            "text": f"Field note {i} describes plot {i}. It was surveyed in spring.",
            "source": "our survey",
            "url": "https://example.org",
            "licence": "CC-BY-4.0",
        }
        for i in range(40)
    ]
    (folder / "notes.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    manifest = build("knowledge_qa", folder, tmp_path / "out", options={"k": 2})
    assert manifest["written"] == 40
    assert {tuple(r["meta"]["licences"]) for r in read_records(tmp_path / "out")} == {
        ("CC-BY-4.0",)
    }


def test_bad_src_and_bad_options_say_what_to_do(tmp_path):
    with pytest.raises(RecipeError, match="kb build"):
        build("knowledge_qa", tmp_path, tmp_path / "out")
    with pytest.raises(RecipeError, match="--src is 'default'"):
        build("knowledge_qa", tmp_path / "missing", tmp_path / "out")
    with pytest.raises(RecipeError, match="its options are"):
        build("knowledge_qa", "default", tmp_path / "out", options={"planted_evry": 3})
    with pytest.raises(RecipeError, match="k .* must be >= 1"):
        build("knowledge_qa", "default", tmp_path / "out", options={"k": 0})
    with pytest.raises(RecipeError, match="below 1"):
        build(
            "knowledge_qa",
            "default",
            tmp_path / "out",
            options={"test_fraction": 0.6, "val_fraction": 0.5},
        )
    assert not (tmp_path / "out").exists()


def test_data_list_shows_the_recipe_with_licence_and_citation():
    info = get_recipe("knowledge-qa").info
    assert info.tasks == ("knowledge_qa",) and info.splits == ("train", "val", "test")
    assert "Apache-2.0" in info.licence and "corpus" in info.citation


def test_training_reads_the_records_without_images(built, tiny_config):
    from geoassist.model.lm import load_tokenizer
    from geoassist.train.data import ConversationDataset, load_samples

    out, _ = built
    samples = load_samples([{"path": str(out), "weight": 1.0}], split="train", tasks=None, seed=0)
    assert samples and {s.record["split"] for s in samples} == {"train"}
    dataset = ConversationDataset(
        samples[:2],
        tiny_config,
        load_tokenizer(tiny_config.lm),
        max_length=4096,
        captions_only=False,
    )
    item = dataset[0]
    assert item["pixel_values"].shape[0] == 0 and item["rendered"].num_images == 0
    assert any(label != -100 for label in item["rendered"].labels)


def test_entry_objects_are_accepted_as_a_corpus():
    # the function the recipe calls still takes plain entries (used by the Python API)
    from geoassist.rag import knowledge_qa_records

    pool = [Entry(id=f"e{i}", text=f"Entry {i} text.", title=f"Thing {i}") for i in range(6)]
    records = knowledge_qa_records(pool, k=2, ask_ids={"e1"}, distractor_ids={"e2", "e3"})
    assert [r["meta"]["answer_ids"] for r in records] == [["e1"]]
    assert set(records[0]["meta"]["context_ids"]) <= {"e1", "e2", "e3"}
