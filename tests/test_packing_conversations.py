"""Several conversations in one sequence (stage2.pack_conversations): the plan of the sequences,
segment ids and restarting positions, logits and losses equal to each conversation alone, labels
on answers only, the option's validation and the trainer's path."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from conftest import watch_batches
from PIL import Image

from geoassist.chat import IGNORE_INDEX
from geoassist.errors import ConfigError
from geoassist.model.vlm import positions_from_segments
from geoassist.train.data import Sample, collate_conversations
from geoassist.train.packing import PackedConversationDataset, plan_rows, segment_ids


def _record(rid: str, image: str, question: str, answer: str) -> dict:
    return {
        "id": rid, "source": "toy", "split": "train", "task": "vqa", "images": [image],
        "conversations": [{"role": "user", "content": f"<image>\n[vqa] {question}"},
                          {"role": "assistant", "content": answer}],
        "answer": answer, "qtype": None, "targets": {}, "meta": {},
    }  # fmt: skip


@pytest.fixture
def samples(tmp_path) -> list[Sample]:
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png", "c.png"):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(tmp_path / name)
    records = [
        _record("toy:a:0", "a.png", "Is there a road?", "yes"),
        _record("toy:a:1", "a.png", "How many ships?", "3"),
        _record("toy:b:0", "b.png", "What is the scene?", "a harbour with piers"),
        _record("toy:c:0", "c.png", "Is it urban?", "no"),
        _record("toy:c:1", "c.png", "Any water?", "a river"),
    ]
    return [Sample(r, tmp_path) for r in records]


def test_rows_hold_every_conversation_once_within_the_budget():
    rng = random.Random(0)
    lengths = [rng.randint(20, 300) for _ in range(200)] + [700, 1500]
    rows = plan_rows(lengths, budget_tokens=1024, seed=3)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    assert all(sum(lengths[i] for i in row) <= 1024 for row in rows if len(row) > 1)
    assert (len(lengths) - 1,) in rows  # longer than the budget: alone
    # best fit packs tightly: no more than one sequence beyond what the tokens need
    assert len(rows) <= -(-sum(min(n, 1024) for n in lengths) // 1024) + 1
    assert rows == plan_rows(lengths, budget_tokens=1024, seed=3)


def test_segment_ids_and_positions_restart_per_conversation():
    ids = segment_ids([[3, 2], [4]], 6)
    assert ids.tolist() == [[1, 1, 1, 2, 2, 0], [1, 1, 1, 1, 0, 0]]
    assert positions_from_segments(ids).tolist() == [[0, 1, 2, 0, 1, 0], [0, 1, 2, 3, 0, 1]]


def _datasets(model, samples):
    alone = PackedConversationDataset(samples, model.config, model.tokenizer, max_length=512, seed=0)
    packed = PackedConversationDataset(
        samples, model.config, model.tokenizer, max_length=512, seed=0, pack_conversations=True
    )
    # one sequence of the a and b conversations, then the c one alone (a shorter, padded row)
    by_image = {conv.images[0]: i for i, conv in enumerate(packed.conversations)}
    packed.rows = [(by_image["a.png"], by_image["b.png"]), (by_image["c.png"],)]
    return alone, packed, by_image


def _spans_of(item) -> list[tuple[int, int]]:
    starts = np.cumsum([0, *item["segments"]])
    return [(int(s), int(e)) for s, e in zip(starts[:-1], starts[1:], strict=True)]


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_a_conversation_gives_the_same_logits_and_loss_packed_or_alone(make_tiny, samples, attention, one_torch_thread):
    from geoassist.train.stages import StageModule, stage_loss

    model = make_tiny(seed=0, r=4)  # LoRA through peft, as stage 2 runs
    model.lm.get_base_model().set_attn_implementation(attention)
    with torch.no_grad():  # image ordinals must count per conversation: make them matter
        model.projector.temporal.weight.normal_()
    alone, packed, by_image = _datasets(model, samples)
    collate = collate_conversations(model.pad_token_id)
    batch = collate([packed[0], packed[1]])
    assert batch["segment_ids"][0].unique().tolist() == [1, 2] and batch["pixel_values"].shape[0] == 3
    assert (batch["segment_ids"][1] == 0).any()  # the second row is padded
    module = StageModule(model)
    with torch.no_grad():
        out = model(batch["input_ids"], batch["pixel_values"], labels=batch["labels"], segment_ids=batch["segment_ids"])
        mixed = model(batch["input_ids"], batch["pixel_values"], batch["attention_mask"])  # no segments
        packed_loss, _ = stage_loss(2, module, batch)
        places = [(0, *_spans_of(packed[0])[0]), (0, *_spans_of(packed[0])[1]), (1, *_spans_of(packed[1])[0])]
        weighted, supervised = 0.0, 0
        for image, (row, start, end) in zip(("a.png", "b.png", "c.png"), places, strict=True):
            one = collate([alone[by_image[image]]])
            single = model(one["input_ids"], one["pixel_values"], one["attention_mask"], one["labels"])
            assert end - start == one["input_ids"].shape[1]
            torch.testing.assert_close(out.logits[row, start:end], single.logits[0], atol=1e-5, rtol=1e-5)
            n = int((one["labels"][:, 1:] != IGNORE_INDEX).sum())
            weighted, supervised = weighted + float(stage_loss(2, module, one)[0]) * n, supervised + n
            if image == "b.png":  # without the segments, b would read a's tokens: the test can tell
                assert not torch.allclose(mixed.logits[row, start:end], single.logits[0], atol=1e-3)
    assert float(packed_loss) == pytest.approx(weighted / supervised, rel=1e-5)


def test_labels_of_a_packed_sequence_cover_the_answers_only(tiny_model, samples):
    _, packed, _ = _datasets(tiny_model, samples)
    item = packed[0]
    labels = item["rendered"].labels
    runs, run = [], []
    for token in [*labels, IGNORE_INDEX]:
        if token == IGNORE_INDEX:
            if run:
                runs.append(tiny_model.tokenizer.decode(run))
            run = []
        else:
            run.append(token)
    answers = [turn["content"] for r in item_records(packed, 0) for turn in r["conversations"] if turn["role"] == "assistant"]
    assert runs == [f"{a}<|im_end|>" for a in answers]
    # every conversation of the sequence keeps its own system prompt and image tokens
    text = tiny_model.tokenizer.decode(item["rendered"].input_ids)
    assert text.count("<|im_start|>system") == 2
    image_id = tiny_model.tokenizer.convert_tokens_to_ids("<image>")
    counts = [item["rendered"].input_ids[s:e].count(image_id) for s, e in _spans_of(item)]
    assert counts == [tiny_model.config.num_image_tokens] * 2


def item_records(data: PackedConversationDataset, index: int) -> list[dict]:
    return [r for conv in data.rows[index] for r in data.render(conv)[1]]


def test_the_budget_holds_and_every_record_is_in_one_sequence(tiny_model, samples, caplog):
    budget = 500
    data = PackedConversationDataset(
        samples, tiny_model.config, tiny_model.tokenizer, max_length=budget, seed=0, pack_conversations=True
    )
    assert len(data) == 2 < len(data.conversations)
    tasks = 0
    for index in range(len(data)):
        item = data[index]
        assert len(item["rendered"]) <= budget and sum(item["segments"]) == len(item["rendered"])
        assert item["pixel_values"].shape[0] == len(item["segments"])
        tasks += len(item["tasks"])
    assert tasks == len(samples)
    # a conversation whose first turn no longer fits beside the others is left out, never cut
    data.rows = [(0, 1, 2)]
    item = data[0]
    assert len(item["segments"]) == 2 and len(item["rendered"]) <= budget and data.dropped == 1
    assert any("left out of a full sequence" in m for m in caplog.messages)


def test_pack_conversations_is_validated():
    from geoassist.train.config import config_from_dict

    base = {"stage": 2, "model": "tiny", "out_dir": "x", "data": {"train": ["toy"]}}
    with pytest.raises(ConfigError, match="set packing: true"):
        config_from_dict({**base, "stage2": {"pack_conversations": True}})
    with pytest.raises(ConfigError, match="true or false"):
        config_from_dict({**base, "stage2": {"packing": True, "pack_conversations": "yes"}})
    config = config_from_dict({**base, "stage2": {"packing": True, "pack_conversations": True}})
    assert config.stage2.pack_conversations


def test_the_trainer_packs_conversations_and_trains(tmp_path, samples, monkeypatch, one_torch_thread):
    import geoassist.train.trainer as trainer
    from geoassist.train.config import config_from_dict

    monkeypatch.setattr(trainer, "load_samples", lambda *a, **k: samples)
    seen: list[torch.Tensor] = []
    watch_batches(monkeypatch, trainer, lambda batch: seen.append(batch["segment_ids"]))
    config = config_from_dict({
        "stage": 2, "model": "tiny", "out_dir": str(tmp_path / "run"), "data": {"train": ["toy"], "max_length": 768},
        "optim": {"max_steps": 2, "batch_size": 1, "lr": 3e-3},
        "stage2": {"packing": True, "pack_conversations": True}, "save_every": 2, "log_every": 1, "seed": 0,
    })  # fmt: skip
    result = trainer.train(config)
    assert result.step == 2 and all(np.isfinite([loss for _, loss in result.losses]))
    # the 3 conversations (about 240 tokens each) fit one 768-token sequence
    assert seen and int(seen[0].max()) == 3


def test_a_sequence_joins_its_conversations_cached_features_in_order(tiny_model, samples):
    _, packed, _ = _datasets(tiny_model, samples)

    class Cache:  # the tower's output per image: a constant that names the image
        def load(self, digest):
            return torch.full((16, 32), float(ord(digest[0])))

    packed.images.use_cache(Cache(), {s.image_root / s.record["images"][0]: s.record["images"][0] for s in samples})
    item = packed[0]
    assert "pixel_values" not in item
    firsts = item["vision_features"][:, 0, 0].tolist()
    assert firsts == [float(ord("a")), float(ord("b"))]
    batch = collate_conversations(tiny_model.pad_token_id)([item, packed[1]])
    assert batch["vision_features"].shape[0] == 3 and batch["pixel_values"] is None
