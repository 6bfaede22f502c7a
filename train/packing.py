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

With ``pack_conversations``, short conversations also share one sequence up to the same budget
(:func:`plan_rows`, best fit by length): each keeps its own system prompt and image tokens, its
positions restart at 0, and no token attends to another conversation's (the batch's
``segment_ids``, read by :meth:`geoassist.model.vlm.GeoAssistModel.forward`), so a conversation
gives the same logits alone or beside others. A model with a region decoder gets each turn's
targets in the ``<seg>`` form (:mod:`geoassist.train.region_data`), in the order of the tokens.
"""

from __future__ import annotations

import bisect
import dataclasses
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
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


def seg_planned(samples: Sequence[Sample]) -> list[Sample]:
    """``samples`` with each geometry record's answer in its ``<seg>`` form
    (:func:`geoassist.train.region_data.seg_answer_estimate`), for planning lengths only."""
    from geoassist.train.region_data import seg_answer_estimate, with_seg_answer

    out = []
    for sample in samples:
        answer = seg_answer_estimate(sample.record)
        out.append(
            sample
            if answer is None
            else dataclasses.replace(sample, record=with_seg_answer(sample.record, answer))
        )
    return out


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


def plan_rows(lengths: Sequence[int], *, budget_tokens: int, seed: int) -> list[tuple[int, ...]]:
    """Conversations (by index, with their token ``lengths``) packed into sequences of at most
    ``budget_tokens``: longest first, each into the fullest sequence it still fits (best fit
    decreasing; ties broken by the seed). A conversation longer than the budget is alone."""
    order = list(range(len(lengths)))
    random.Random(f"rows:{seed}").shuffle(order)
    order.sort(key=lambda i: -lengths[i])  # stable: the shuffle decides among equal lengths
    rows: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (tokens left, row), sorted
    for index in order:
        need = lengths[index]
        at = bisect.bisect_left(free, (need, -1))
        if at < len(free):
            left, row = free.pop(at)
        else:
            left, row = budget_tokens, len(rows)
            rows.append([])
        rows[row].append(index)
        if left - need > 0:
            bisect.insort(free, (left - need, row))
    logger.info("packing: %d conversations into %d sequences", len(lengths), len(rows))
    return [tuple(r) for r in rows]


def segment_ids(segments: Sequence[Sequence[int]], width: int) -> torch.Tensor:
    """(rows, width) ids of the conversations each row packs, from their lengths: 1, 2, … in
    order, 0 for the padding after them (rows are padded on the right)."""
    out = torch.zeros((len(segments), width), dtype=torch.long)
    for row, lengths in enumerate(segments):
        start = 0
        for k, n in enumerate(lengths, start=1):
            out[row, start : start + n] = k
            start += n
    return out


def concatenated(parts: Sequence[Rendered]) -> Rendered:
    """Rendered conversations one after the other in one sequence."""
    ids: list[int] = []
    labels: list[int] = []
    spans: list[tuple[int, int, bool]] = []
    for part in parts:
        spans += [(len(ids) + s, len(ids) + e, sup) for s, e, sup in part.spans]
        ids += part.input_ids
        labels += part.labels
    return Rendered(ids, labels, sum(p.num_images for p in parts), spans)


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
    with ``epoch_indices=True``) is ``epoch * len(self) + item``: the epoch decides the order of
    the turns. An item is one conversation, or with ``pack_conversations`` one sequence of
    several (its ``segments`` give their lengths). ``region_grid`` (the region decoder's cells
    per side) puts the geometry records in the ``<seg>`` form and adds their ``regions``.
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
        pack_conversations: bool = False,
        region_grid: int | None = None,
    ):
        self.config = config
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.seed = seed
        self.region_grid = region_grid
        self._forms: dict[str, Any] = {}
        self.system_tokens = len(
            render([Message("system", config.system_prompt)], tokenizer, num_image_tokens=0)
        )
        # Token counts of the records as they are trained: with a region decoder, a geometry
        # record's answer is its <seg> form (a few tokens, not the hundreds of its written boxes
        # or mask), so conversations are planned by that length and fill their budget.
        self.tokens = record_token_counts(
            samples if region_grid is None else seg_planned(samples), tokenizer
        )
        self.conversations = plan_conversations(
            samples,
            tokens=self.tokens,
            budget_tokens=max_length,
            num_image_tokens=config.num_image_tokens,
            system_tokens=self.system_tokens,
            seed=seed,
        )
        self.rows: list[tuple[int, ...]] | None = None
        if pack_conversations:
            lengths = [self._conversation_length(i) for i in range(len(self.conversations))]
            self.rows = plan_rows(lengths, budget_tokens=max_length, seed=seed)
        self.images = ImageSource(config)
        self.dropped = 0  # conversations left out of a full sequence (their estimate fell short)

    def __len__(self) -> int:
        return len(self.conversations) if self.rows is None else len(self.rows)

    def _conversation_length(self, index: int) -> int:
        conv = self.conversations[index]
        return (
            len(conv.images) * self.config.num_image_tokens
            + self.system_tokens
            + SLOT_NEWLINE_TOKENS
            + sum(self.tokens[s.record["id"]] for s in conv.samples)
        )

    def _row(self, index: int) -> tuple[int, ...]:
        return (index,) if self.rows is None else self.rows[index]

    def estimated_length(self, index: int) -> int:
        return sum(self._conversation_length(i) for i in self._row(index))

    def unpacked(self):
        """The same records one per sequence (:class:`~geoassist.train.data.ConversationDataset`),
        e.g. for the region decoder's own pretraining."""
        from geoassist.train.data import ConversationDataset

        samples = [s for conv in self.conversations for s in conv.samples]
        return ConversationDataset(
            samples, self.config, self.tokenizer, max_length=self.max_length, captions_only=False
        )

    def _seg_form(self, sample: Sample):
        """The record's ``<seg>`` answer and region targets (None: no geometry), computed once."""
        from geoassist.train.region_data import seg_form

        rid = sample.record["id"]
        if rid not in self._forms:
            self._forms[rid] = seg_form(sample.record, sample.image_root, self.config.preprocess.image_size)
        return self._forms[rid]

    def _records(self, index: int, epoch: int) -> tuple[list[dict[str, Any]], list[list[Any]]]:
        """The conversation's records in this epoch's order (``<seg>`` forms with a decoder) and
        each record's region targets."""
        from geoassist.train.region_data import with_seg_answer

        conv = self.conversations[index]
        order = turn_order(len(conv.samples), seed=self.seed, epoch=epoch, index=index)
        records, targets = [], []
        for i in order:
            sample = conv.samples[i]
            form = self._seg_form(sample) if self.region_grid is not None else None
            records.append(sample.record if form is None else with_seg_answer(sample.record, form[0]))
            targets.append([] if form is None else form[1])
        return records, targets

    def render(
        self, index: int, epoch: int = 0, max_length: int | None = None
    ) -> tuple[Rendered, list[dict[str, Any]]]:
        """The rendered conversation ``index`` of one epoch, and the records it holds (turns that
        do not fit ``max_length``, by default the dataset's, are left out whole; the one-record
        case truncates as ``render`` does)."""
        rendered, records, _ = self._render(index, epoch, max_length or self.max_length)
        return rendered, records

    def _render(self, index: int, epoch: int, max_length: int):
        conv = self.conversations[index]
        records, targets = self._records(index, epoch)
        while True:
            messages = conversation_messages(records, self.config.system_prompt, len(conv.images))
            rendered = render(
                messages,
                self.tokenizer,
                num_image_tokens=self.config.num_image_tokens,
                num_images=len(conv.images),
            )
            if len(rendered) <= max_length:
                return rendered, records, targets
            if len(records) == 1:
                try:
                    return render(
                        messages,
                        self.tokenizer,
                        num_image_tokens=self.config.num_image_tokens,
                        num_images=len(conv.images),
                        max_length=max_length,
                    ), records, targets
                except ContextTooLongError as exc:
                    raise ContextTooLongError(f"record {records[0]['id']}: {exc}") from None
            records, targets = records[:-1], targets[:-1]

    def __getitem__(self, index: int) -> dict[str, Any]:
        epoch, item = divmod(index, len(self))
        parts, images, kept_records, regions = [], [], [], []
        for conv_index in self._row(item):
            budget = self.max_length - sum(len(p) for p in parts)
            try:
                rendered, records, targets = self._render(conv_index, epoch, budget)
            except ContextTooLongError:
                if not parts:
                    raise
                # The planned lengths are estimates (upper bounds but for rare tokeniser merges):
                # a conversation whose first turn no longer fits beside the others is left out of
                # this sequence rather than cut.
                if not self.dropped:
                    logger.warning("packing: conversation %d left out of a full sequence", conv_index)
                self.dropped += 1
                continue
            conv = self.conversations[conv_index]
            parts.append(rendered)
            images.append(self.images(conv.image_root, conv.images))
            kept_records += records
            regions += [t for per_record in targets for t in per_record]
        out = {
            "rendered": concatenated(parts),
            **_joined_images(images),
            "id": kept_records[0]["id"],
            "tasks": [r["task"] for r in kept_records],
        }
        if self.rows is not None:
            out["segments"] = [len(p) for p in parts]
        if self.region_grid is not None:
            from geoassist.train.region_loss import target_maps

            size = self.config.preprocess.image_size
            out["regions"] = [target_maps(t, self.region_grid, size) for t in regions]
        return out


def _joined_images(per_conversation: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The images of a sequence's conversations, in order, as one tensor (pixels or cached
    features; a text-only conversation has no pixels)."""
    if len(per_conversation) == 1:
        return per_conversation[0]
    kinds: dict[str, list[torch.Tensor]] = {}
    for part in per_conversation:
        for key, value in part.items():
            if value.shape[0]:
                kinds.setdefault(key, []).append(value)
    if not kinds:
        return per_conversation[0]
    return {key: torch.cat(values) for key, values in kinds.items()}


def packed_dataset(config, model, samples: Sequence[Sample]) -> PackedConversationDataset:
    """Stage 2's packed dataset for the run ``config`` (a :class:`~geoassist.train.config.TrainConfig`)
    and ``model``: with the region decoder's targets when the model has one."""
    grid = None
    if model.region_decoder is not None:
        from geoassist.train.region_stage import decoder_grid

        grid = decoder_grid(model)
    return PackedConversationDataset(
        samples,
        model.config,
        model.tokenizer,
        max_length=config.data.max_length,
        seed=config.seed,
        pack_conversations=config.stage2.pack_conversations,
        region_grid=grid,
    )
