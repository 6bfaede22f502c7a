"""Packed multi-turn samples (train/packing.py): grouping by image and split, the token budget,
supervision of every answer, turn order by epoch, and the trainer's packed path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import watch_batches
from PIL import Image

from geoassist.chat import IGNORE_INDEX, show_supervision
from geoassist.splits import record_split
from geoassist.train.data import ResumableBatchSampler, Sample, collate_conversations
from geoassist.train.packing import (
    PackedConversationDataset,
    conversation_messages,
    group_key,
    plan_conversations,
    record_token_counts,
)

IMAGE_ID = "<image>"


def _record(rid: str, images: list[str], question: str, answer: str, *, source="toy", split="train", task="vqa"):
    slots = IMAGE_ID * len(images)
    return {
        "id": rid,
        "source": source,
        "split": split,
        "task": task,
        "images": images,
        "conversations": [
            {"role": "user", "content": f"{slots}\n[vqa] {question}" if images else question},
            {"role": "assistant", "content": answer},
        ],
        "answer": answer,
        "qtype": None,
        "targets": {},
        "meta": {},
    }


@pytest.fixture
def image_root(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png", "c.png"):
        Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(tmp_path / name)
    return tmp_path


def _questions(root: Path) -> list[Sample]:
    records = []
    for image in ("a.png", "b.png"):
        for k in range(5):
            records.append(_record(f"toy:{image}:{k}", [image], f"Is there object {k}?", f"yes {k}"))
    records.append(_record("toy:pair:0", ["a.png", "b.png"], "What changed?", "a new road"))
    records.append(_record("toy:pair:1", ["a.png", "b.png"], "Where?", "on the left"))
    records.append(_record("kb:0", [], "What is NDVI?", "a vegetation index"))
    records.append(_record("kb:1", [], "What is SAR?", "radar imaging"))
    return [Sample(r, root) for r in records]


def test_records_of_one_image_or_pair_become_one_conversation(tiny_model, image_root):
    samples = _questions(image_root)
    data = PackedConversationDataset(samples, tiny_model.config, tiny_model.tokenizer, max_length=512, seed=0)
    by_images = sorted((conv.images, len(conv.samples)) for conv in data.conversations)
    # two single images of 5 questions, the pair of 2, and the text-only records one by one
    assert by_images == [((), 1), ((), 1), (("a.png",), 5), (("a.png", "b.png"), 2), (("b.png",), 5)]
    image_id = tiny_model.tokenizer.convert_tokens_to_ids(IMAGE_ID)
    n_img = tiny_model.config.num_image_tokens
    for index, conv in enumerate(data.conversations):
        item = data[index]
        rendered = item["rendered"]
        shown = show_supervision(rendered, tiny_model.tokenizer, color=False)
        # image slots once, in the first user turn; as many pixel tensors as images
        assert rendered.input_ids.count(image_id) == n_img * len(conv.images), shown
        assert item["pixel_values"].shape[0] == len(conv.images)
        first_user_end = shown.index("<|im_end|>", shown.index("user"))
        assert shown.count("<image×") == len(conv.images) and (
            not conv.images or shown.index("<image×") < first_user_end
        ), shown
        # every answer supervised, nothing else: answers + their <|im_end|>
        supervised = tiny_model.tokenizer.decode(
            [t for t, lab in zip(rendered.input_ids, rendered.labels, strict=True) if lab != IGNORE_INDEX]
        )
        answers = [s.record["conversations"][1]["content"] for s in conv.samples]
        assert sorted(supervised.split("<|im_end|>")[:-1]) == sorted(answers), shown
        assert sorted(item["tasks"]) == ["vqa"] * len(conv.samples)
        # the rest of the sequence is the system prompt and the questions, never supervised
        assert shown.startswith("<|im_start|>system\n" + tiny_model.config.system_prompt)


def test_grouping_never_merges_images_of_different_splits(tiny_model, image_root):
    # the same image file under two recipe splits, and RSVQA-LR images on every side of the
    # committed real-data split (0 val, 6 test, 1 train)
    records = [
        _record("toy:t:0", ["a.png"], "q0", "a0", split="train"),
        _record("toy:t:1", ["a.png"], "q1", "a1", split="train"),
        _record("toy:v:0", ["a.png"], "q2", "a2", split="val"),
    ]
    for image in ("0", "6", "1"):
        for k in range(3):
            records.append(
                _record(f"rsvqa_lr:{image}:{k}", [f"Images_LR/{image}.tif"], f"q{k}", "yes", source="rsvqa_lr")
            )
    samples = [Sample(r, image_root) for r in records]
    tokens = record_token_counts(samples, tiny_model.tokenizer)
    conversations = plan_conversations(
        samples, tokens=tokens, budget_tokens=4096, num_image_tokens=16, system_tokens=10, seed=0
    )
    for conv in conversations:
        splits = {s.record["split"] for s in conv.samples}
        real = {record_split(s.record) for s in conv.samples}
        assert len(splits) == 1 and len(real) == 1, [s.record["id"] for s in conv.samples]
        assert {tuple(s.record["images"]) for s in conv.samples} == {conv.images}
    sides = {record_split(r) for r in records if r["source"] == "rsvqa_lr"}
    assert sides == {"train", "val", "test"}  # the fixture really spans the split
    assert len(conversations) == 5  # a.png train, a.png val, and the three RSVQA images
    assert group_key(samples[0]) != group_key(samples[2])


def test_weighted_copies_go_to_separate_conversations(tiny_model, image_root):
    samples = _questions(image_root)[:5] * 2  # weight 2.0 repeats every record
    tokens = record_token_counts(samples, tiny_model.tokenizer)
    conversations = plan_conversations(
        samples, tokens=tokens, budget_tokens=4096, num_image_tokens=16, system_tokens=10, seed=0
    )
    assert len(conversations) == 2
    for conv in conversations:
        assert sorted(conv.ids) == sorted({s.record["id"] for s in samples})


def test_the_token_budget_cuts_whole_turns_and_never_image_tokens(tiny_model, image_root):
    long = [
        _record(f"toy:a:{k}", ["a.png"], f"Describe part {k} of the scene.", "word " * 6)
        for k in range(12)
    ]
    samples = [Sample(r, image_root) for r in long]
    budget = 400
    data = PackedConversationDataset(samples, tiny_model.config, tiny_model.tokenizer, max_length=budget, seed=1)
    assert len(data.conversations) > 1
    assert sorted(rid for conv in data.conversations for rid in conv.ids) == sorted(r["id"] for r in long)
    for index in range(len(data)):
        rendered, records = data.render(index, epoch=0)
        assert len(rendered) <= budget
        assert len(records) == len(data.conversations[index].samples)  # the plan fitted: no turn left out
        assert data.estimated_length(index) >= len(rendered) - 2
        # the answers are whole: each supervised span ends with <|im_end|>
        supervised = [t for t, lab in zip(rendered.input_ids, rendered.labels, strict=True) if lab != IGNORE_INDEX]
        assert tiny_model.tokenizer.decode(supervised).count("<|im_end|>") == len(records)


def test_one_record_too_long_for_the_image_raises_as_render_does(tiny_model, image_root):
    from geoassist.errors import ContextTooLongError

    samples = [Sample(_record("toy:a:0", ["a.png"], "q", "a"), image_root)]
    data = PackedConversationDataset(samples, tiny_model.config, tiny_model.tokenizer, max_length=32, seed=0)
    with pytest.raises(ContextTooLongError, match="toy:a:0.*image tokens"):
        data[0]


def test_turn_order_changes_with_the_epoch_and_is_reproducible(tiny_model, image_root):
    samples = _questions(image_root)[:5]
    data = PackedConversationDataset(samples, tiny_model.config, tiny_model.tokenizer, max_length=512, seed=0)
    assert len(data) == 1
    orders = [tuple(r["id"] for r in data.render(0, epoch)[1]) for epoch in range(6)]
    assert len(set(orders)) > 1
    again = PackedConversationDataset(samples, tiny_model.config, tiny_model.tokenizer, max_length=512, seed=0)
    assert [tuple(r["id"] for r in again.render(0, e)[1]) for e in range(6)] == orders
    # the sampler's index of epoch e is e * len + i, and the item is that epoch's order
    assert data[3 * len(data)]["rendered"].input_ids == data.render(0, 3)[0].input_ids


def test_epoch_indices_of_the_sampler():
    sampler = ResumableBatchSampler([5, 5, 5], 3, seed=0, group_by_length=False, epoch_indices=True)
    stream = iter(sampler)
    first, second = next(stream), next(stream)
    assert sorted(first) == [0, 1, 2] and sorted(second) == [3, 4, 5]
    sampler.resume_at(1)
    assert sorted(next(iter(sampler))) == [3, 4, 5]


def test_messages_put_the_slots_in_the_first_user_turn_only():
    records = [
        _record("p:0", ["x", "y"], "What changed?", "roads"),
        _record("p:1", ["x", "y"], "Where?", "left"),
    ]
    messages = conversation_messages(records, "sys", 2)
    users = [m.content for m in messages if m.role == "user"]
    assert users == ["<image><image>\n[vqa] What changed?", "[vqa] Where?"]


def test_packed_stage2_trains_through_the_real_entry_point(tmp_path, image_root, monkeypatch):
    import geoassist.train.trainer as trainer
    from geoassist.train.config import config_from_dict

    samples = _questions(image_root)
    monkeypatch.setattr(trainer, "load_samples", lambda *a, **k: samples)
    seen: list[list[str]] = []
    watch_batches(monkeypatch, trainer, lambda batch: seen.append(batch["tasks"]))
    config = config_from_dict(
        {
            "stage": 2, "model": "tiny", "out_dir": str(tmp_path / "run"),
            "data": {"train": ["toy"], "max_length": 256},
            "optim": {"max_steps": 4, "batch_size": 2, "lr": 3e-3},
            "stage2": {"packing": True}, "save_every": 2, "log_every": 1, "seed": 0,
        }
    )  # fmt: skip
    result = trainer.train(config)
    assert result.final is not None and result.step == 4
    # 5 conversations, batches of 2: the turns of every conversation arrive together
    assert sum(len(t) for t in seen) > 8
    import json

    card = json.loads((result.final / "geoassist.json").read_text())["card"]
    assert sum(card["samples_per_task"].values()) == sum(len(t) for t in seen)


def test_collate_carries_tasks_and_pixels(tiny_model, image_root):
    data = PackedConversationDataset(
        _questions(image_root), tiny_model.config, tiny_model.tokenizer, max_length=512, seed=0
    )
    batch = collate_conversations(tiny_model.pad_token_id)([data[i] for i in range(len(data))])
    n_images = sum(len(c.images) for c in data.conversations)
    assert batch["pixel_values"].shape[0] == n_images
    assert len(batch["tasks"]) == len(_questions(image_root))


def test_a_batch_with_nothing_supervised_has_a_zero_loss_not_nan(tiny_model):
    import torch

    from geoassist.train.stages import StageModule, stage_loss

    ids = torch.tensor([[1, 2, 3, 4]])
    batch = {
        "input_ids": ids, "attention_mask": torch.ones_like(ids), "pixel_values": None,
        "labels": torch.full_like(ids, IGNORE_INDEX),
    }  # fmt: skip
    loss, n = stage_loss(2, StageModule(tiny_model), batch)
    assert n == 1 and float(loss) == 0.0
    loss.backward()
