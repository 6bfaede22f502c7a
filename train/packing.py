"""Packed multi-turn samples: every question about one image (or pair) in one conversation.

Recipes write one record per question, and a one-record sequence spends most of its tokens on
the system prompt and the image (64 visual tokens for a one-word answer), and one run of the
vision tower per answer. As LLaVA and GeoChat train, the records that share their images here
become one conversation of several turns — the image slots once, in the first user turn, every
answer supervised — up to a token budget (``data.max_length``); a group that does not fit is
cut into several conversations of whole turns.

- Records are grouped by their image root, their images (in order) and their split: the
  committed real-data split (:func:`geoassist.splits.record_split`) for real datasets, the
  recipe's split otherwise, so one conversation never mixes images of different splits.
- A record repeated by a source's ``weight`` goes to a second conversation (its k-th copy joins
  the k-th), never twice into the same one. Records without images stay alone.
- The cut into conversations is fixed by the seed (lengths stay stable for batching and
  resuming); the order of turns inside a conversation is shuffled again every epoch, seeded by
  (seed, epoch, conversation), so the model does not learn that counting follows captioning.

Several conversations are not packed into one sequence: the LM here runs with a padding mask
only, and attention that stays inside each conversation would need block-diagonal masks the
model code does not carry.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from geoassist.chat import Message, Rendered, render, with_image_slots, without_image_slots
from geoassist.config import ModelConfig
from geoassist.errors import ContextTooLongError
from geoassist.train.data import ImageSource, Sample

logger = logging.getLogger(__name__)

SLOT_NEWLINE_TOKENS = 1  # the newline after the image slots of the first user turn


@dataclass(frozen=True)
class PackedConversation:
    """The records of one conversation (all about ``images``), in their planned order."""

    samples: tuple[Sample, ...]
    images: tuple[str, ...]
    image_root: Path

    @property
    def ids(self) -> list[str]:
        return [s.record["id"] for s in self.samples]


def group_key(sample: Sample) -> tuple[Any, ...]:
    """What records must share to be asked in one conversation: images, their root and split."""
    from geoassist.splits import record_split

    record = sample.record
    images = tuple(record.get("images") or ())
    if not images:
        return ("alone", record["id"])
    real = record_split(record)
    split = f"real:{real}" if real is not None else f"recipe:{record.get('split')}"
    return (str(sample.image_root), images, split)


def turn_overhead(tokenizer) -> int:
    """Tokens one turn adds beyond its text (role header, ``<|im_end|>``, newlines)."""
    probe = [Message("user", "x"), Message("assistant", "y")]
    text = len(_tokens(tokenizer, ["x"])[0]) + len(_tokens(tokenizer, ["y"])[0])
    return -(-(len(render(probe, tokenizer, num_image_tokens=0)) - text) // 2)


def _tokens(tokenizer, texts: list[str]) -> list[list[int]]:
    return tokenizer(texts, add_special_tokens=False, split_special_tokens=True).input_ids


def record_token_counts(samples: Sequence[Sample], tokenizer, batch_size: int = 2048) -> dict[str, int]:
    """Tokens of each record's turns as :func:`geoassist.chat.render` writes them (each turn's
    text tokenised once per record id, plus its header); the image slots are left out — a
    conversation counts its images once."""
    overhead = turn_overhead(tokenizer)
    owners: list[str] = []
    texts: list[str] = []
    seen: set[str] = set()
    for sample in samples:
        record = sample.record
        if record["id"] in seen:
            continue
        seen.add(record["id"])
        for turn in record["conversations"]:
            owners.append(record["id"])
            texts.append(without_image_slots(turn["content"]))
    counts: dict[str, int] = {}
    for start in range(0, len(texts), batch_size):
        encoded = _tokens(tokenizer, [t or " " for t in texts[start : start + batch_size]])
        for rid, ids in zip(owners[start : start + batch_size], encoded, strict=True):
            counts[rid] = counts.get(rid, 0) + len(ids) + overhead
    return counts


def plan_conversations(
    samples: Sequence[Sample],
    *,
    tokens: dict[str, int],
    budget_tokens: int,
    num_image_tokens: int,
    system_tokens: int,
    seed: int,
) -> list[PackedConversation]:
    """Group ``samples`` into conversations of whole records within ``budget_tokens``.

    ``tokens`` gives each record id's token count (:func:`record_token_counts`)."""
    groups: dict[tuple[Any, ...], list[Sample]] = {}
    copies: dict[str, int] = {}
    for sample in samples:
        rid = sample.record["id"]
        copy = copies.get(rid, 0)
        copies[rid] = copy + 1
        groups.setdefault((*group_key(sample), copy), []).append(sample)
    rng = random.Random(f"packing:{seed}")
    out: list[PackedConversation] = []
    for members in groups.values():
        members = list(members)
        rng.shuffle(members)
        images = tuple(members[0].record.get("images") or ())
        fixed = system_tokens + len(images) * num_image_tokens + SLOT_NEWLINE_TOKENS
        chunk: list[Sample] = []
        used = fixed
        for sample in members:
            cost = tokens[sample.record["id"]]
            if chunk and used + cost > budget_tokens:
                out.append(PackedConversation(tuple(chunk), images, chunk[0].image_root))
                chunk, used = [], fixed
            chunk.append(sample)
            used += cost
        if chunk:
            out.append(PackedConversation(tuple(chunk), images, chunk[0].image_root))
    logger.info(
        "packing: %d records of %d image groups into %d conversations (%.1f turns each)",
        len(samples), len(groups), len(out), len(samples) / max(1, len(out)),
    )  # fmt: skip
    return out


def turn_order(n: int, *, seed: int, epoch: int, index: int) -> list[int]:
    """The order of a conversation's records in one epoch (a pure function of its arguments)."""
    order = list(range(n))
    random.Random(f"turns:{seed}:{epoch}:{index}").shuffle(order)
    return order


def conversation_messages(
    records: Sequence[dict[str, Any]], system_prompt: str, num_images: int
) -> list[Message]:
    """One conversation from several records: the system prompt, then each record's turns; the
    image slots once, before the first user turn's text."""
    messages = [Message("system", system_prompt)]
    placed = False
    for record in records:
        for turn in record["conversations"]:
            content = turn["content"]
            if turn["role"] == "user":
                content = without_image_slots(content)
                if not placed:
                    content = with_image_slots(content, num_images)
                    placed = True
            messages.append(Message(turn["role"], content))
    return messages


class PackedConversationDataset(Dataset):
    """Stage-2 samples of several turns each (see the module docstring).

    Index ``i`` of an epoch-aware sampler (:class:`geoassist.train.data.ResumableBatchSampler`
    with ``epoch_indices=True``) is ``epoch * len(self) + conversation``: the epoch decides the
    order of the turns.
    """

    epoch_aware = True  # items change with the epoch: the trainer's sampler says which

    def __init__(
        self,
        samples: Sequence[Sample],
        config: ModelConfig,
        tokenizer,
        *,
        max_length: int,
        seed: int,
    ):
        self.config = config
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.seed = seed
        self.system_tokens = len(
            render([Message("system", config.system_prompt)], tokenizer, num_image_tokens=0)
        )
        self.tokens = record_token_counts(samples, tokenizer)
        self.conversations = plan_conversations(
            samples,
            tokens=self.tokens,
            budget_tokens=max_length,
            num_image_tokens=config.num_image_tokens,
            system_tokens=self.system_tokens,
            seed=seed,
        )
        self.images = ImageSource(config)

    def __len__(self) -> int:
        return len(self.conversations)

    def estimated_length(self, index: int) -> int:
        conv = self.conversations[index]
        return (
            len(conv.images) * self.config.num_image_tokens
            + self.system_tokens
            + SLOT_NEWLINE_TOKENS
            + sum(self.tokens[s.record["id"]] for s in conv.samples)
        )

    def render(self, index: int, epoch: int = 0) -> tuple[Rendered, list[dict[str, Any]]]:
        """The rendered conversation of one epoch, and the records it holds (turns that do not
        fit ``max_length`` are left out whole; the one-record case truncates as ``render`` does)."""
        conv = self.conversations[index]
        order = turn_order(len(conv.samples), seed=self.seed, epoch=epoch, index=index)
        records = [conv.samples[i].record for i in order]
        while True:
            messages = conversation_messages(records, self.config.system_prompt, len(conv.images))
            rendered = render(
                messages,
                self.tokenizer,
                num_image_tokens=self.config.num_image_tokens,
                num_images=len(conv.images),
            )
            if len(rendered) <= self.max_length:
                return rendered, records
            if len(records) == 1:
                try:
                    return render(
                        messages,
                        self.tokenizer,
                        num_image_tokens=self.config.num_image_tokens,
                        num_images=len(conv.images),
                        max_length=self.max_length,
                    ), records
                except ContextTooLongError as exc:
                    raise ContextTooLongError(f"record {records[0]['id']}: {exc}") from None
            records = records[:-1]

    def __getitem__(self, index: int) -> dict[str, Any]:
        epoch, conv_index = divmod(index, len(self.conversations))
        rendered, records = self.render(conv_index, epoch)
        conv = self.conversations[conv_index]
        return {
            "rendered": rendered,
            **self.images(conv.image_root, conv.images),
            "id": records[0]["id"],
            "tasks": [r["task"] for r in records],
        }
