"""Training data: recipe records → rendered samples, decoded lazily, batched by length.

Images are opened in ``__getitem__``, i.e. inside data-loader workers, so a
large training set never sits in memory. The order of samples depends only on
the seed and the epoch, which is what makes resuming exact.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from geoassist.chat import Message, collate, render, with_image_slots
from geoassist.config import ModelConfig
from geoassist.errors import GeoAssistError
from geoassist.prompts import build_prompt

logger = logging.getLogger(__name__)

CAPTION_TASKS = ("caption",)


class TrainDataError(GeoAssistError):
    """Training data is missing or unusable."""


@dataclass
class Sample:
    record: dict[str, Any]
    image_root: Path


def _entries(train: Sequence[Any]) -> list[dict[str, Any]]:
    out = []
    for entry in train:
        if isinstance(entry, (str, Path)):
            entry = {"path": str(entry)}
        if not isinstance(entry, dict) or "path" not in entry:
            raise TrainDataError(
                f"data.train entries are folders or {{path, weight, max_records}}, got {entry!r}"
            )
        unknown = set(entry) - {"path", "weight", "max_records", "holdout"}
        if unknown:
            raise TrainDataError(
                f"unknown keys {sorted(unknown)} in data.train entry {entry['path']}"
            )
        out.append(entry)
    return out


def is_held_out(images: Sequence[str], fraction: float) -> bool:
    """Whether a record's first image falls in the held-out ``fraction`` of images.

    A stable hash of the image path decides, so the same images are held out by
    training (which skips them) and by evaluation (which keeps only them).
    """
    if fraction <= 0 or not images:
        return False
    digest = hashlib.sha256(images[0].encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def _training_records(
    records: list[dict[str, Any]], holdout: float, folder: Path
) -> list[dict[str, Any]]:
    """The records training may see: real-split ``train`` images, and outside the held-out fraction."""
    from geoassist.splits import record_split

    kept, held = [], {"val": 0, "test": 0, "holdout": 0}
    for record in records:
        real = record_split(record)
        if real is not None and real != "train":
            held[real] += 1
        elif real is None and is_held_out(record["images"], holdout):
            held["holdout"] += 1
        else:
            kept.append(record)
    if any(held.values()):
        logger.info(
            "data: %s held out of training: %d val and %d test records (real-data split), "
            "%d by holdout",
            folder,
            held["val"],
            held["test"],
            held["holdout"],
        )
    return kept


def _entry_records(
    entry: dict[str, Any], role: str, *, split: str | None, tasks: Sequence[str] | None
) -> tuple[Path, Path, list[dict[str, Any]]]:
    """An entry's folder, image root and records of ``split`` and ``tasks``."""
    from geoassist.data_recipes import image_root, read_records

    folder = Path(entry["path"]).expanduser()
    if not folder.is_dir():
        raise TrainDataError(
            f"{role} data folder {folder} does not exist; build it with `geoassist data build`"
        )
    records = [r for r in read_records(folder, split=split) if tasks is None or r["task"] in tasks]
    return folder, image_root(folder), records


def load_samples(
    train: Sequence[Any], *, split: str | None, tasks: Sequence[str] | None, seed: int
) -> list[Sample]:
    """Records from recipe output folders, mixed by weight and capped per source.

    ``weight`` repeats a source (2.0 = every record twice; 0.5 = a seeded half).

    Records of real datasets (:func:`geoassist.splits.has_real_split`) are kept only when their
    image is ``train`` in the committed real-data split, whatever the folder: val and test
    images, and evaluation-only datasets, never reach a training batch. ``holdout`` applies to
    the other sources only (your own data): it skips that fraction of images (see
    :func:`is_held_out`).
    """
    samples: list[Sample] = []
    for entry in _entries(train):
        folder, root, records = _entry_records(entry, "training", split=split, tasks=tasks)
        records = _training_records(records, float(entry.get("holdout") or 0.0), folder)
        if entry.get("max_records") is not None:
            records = records[: int(entry["max_records"])]
        weight = float(entry.get("weight", 1.0))
        whole, fraction = int(weight), weight - int(weight)
        chosen = records * whole
        if fraction > 0:
            rng = random.Random(f"{seed}:{folder}")
            chosen += rng.sample(records, round(fraction * len(records)))
        samples += [Sample(r, root) for r in chosen]
        logger.info("data: %d records from %s (weight %.2f)", len(chosen), folder, weight)
    if not samples:
        raise TrainDataError(
            f"no training records found in {[e['path'] for e in _entries(train)]} "
            f"(split={split!r}, tasks={list(tasks) if tasks else 'all'})"
        )
    return samples


def validation_samples(
    entries: Sequence[Any], *, tasks: Sequence[str] | None, seed: int, limit: int
) -> list[Sample]:
    """Validation records: the ``val`` images of the committed real-data split for real
    datasets, the recipe's ``val`` split for other sources (GeoSynth's val seeds); a seeded
    choice of ``limit`` of them, the same in every run with this seed."""
    from geoassist.splits import record_split

    samples: list[Sample] = []
    for entry in _entries(entries):
        _folder, root, records = _entry_records(entry, "validation", split=None, tasks=tasks)
        for record in records:
            real = record_split(record)
            if (real if real is not None else record.get("split")) == "val":
                samples.append(Sample(record, root))
    if not samples:
        raise TrainDataError(
            f"no validation records in {[e['path'] for e in _entries(entries)]}: real datasets "
            "give their val images of the committed split, other recipes need a val split"
        )
    random.Random(f"val:{seed}").shuffle(samples)
    return samples[:limit]


def _load_pixels(sample: Sample, config: ModelConfig) -> torch.Tensor:
    return load_pixels(sample.image_root, sample.record["images"], config)


def load_pixels(image_root: Path, rels: Sequence[str], config: ModelConfig) -> torch.Tensor:
    """The preprocessed images ``image_root / rel`` as one (n, bands, H, W) tensor."""
    from geoassist.io import load_image
    from geoassist.preprocess import to_pixel_values

    images = []
    for rel in rels:
        path = image_root / rel
        images.append(to_pixel_values(load_image(path), config.preprocess))
    if not images:
        return torch.zeros(0, 3, config.preprocess.image_size, config.preprocess.image_size)
    return torch.stack(images)


class ImageSource:
    """A sample's images as model input: pixels, or the tower's cached features.

    Without a cache, ``{"pixel_values": (n, bands, H, W)}``. With one
    (:meth:`use_cache`, for a stage whose tower is frozen), ``{"vision_features":
    (n, tokens, width)}`` read from :class:`geoassist.train.feature_cache.FeatureCache`, and
    with ``keep_pixels`` the pixels beside them (a region decoder whose fine path reads pixels).
    """

    def __init__(self, config: ModelConfig):
        self.config = config
        self.cache = None
        self.digests: dict[Path, str] = {}
        self.keep_pixels = False

    def use_cache(self, cache, digests: dict[Path, str], *, keep_pixels: bool = False) -> None:
        self.cache, self.digests, self.keep_pixels = cache, dict(digests), keep_pixels

    def __call__(self, image_root: Path, images: Sequence[str]) -> dict[str, torch.Tensor]:
        if self.cache is None or not images:
            return {"pixel_values": load_pixels(image_root, images, self.config)}
        out = {"pixel_values": load_pixels(image_root, images, self.config)} if self.keep_pixels else {}
        features = []
        for rel in images:
            path = image_root / rel
            digest = self.digests.get(path)
            if digest is None:
                from geoassist.train.feature_cache import image_digest

                digest = self.digests[path] = image_digest(path)
            features.append(self.cache.load(digest))
        return {**out, "vision_features": torch.stack(features)}


def image_files(samples: Sequence[Sample]) -> list[Path]:
    """Every image file the samples show, each once."""
    return list(
        dict.fromkeys(s.image_root / rel for s in samples for rel in s.record.get("images") or ())
    )


def pick_caption(record: dict[str, Any], index: int) -> str:
    """One reference caption, chosen by the sample index so epochs see different ones deterministically."""
    answer = record["answer"]
    if isinstance(answer, list):
        return answer[index % len(answer)] if answer else ""
    return answer


class ConversationDataset(Dataset):
    """Stage 1 (captions as conversations) and stage 2 (any records) samples."""

    def __init__(
        self,
        samples: Sequence[Sample],
        config: ModelConfig,
        tokenizer,
        *,
        max_length: int,
        captions_only: bool,
    ):
        self.samples = list(samples)
        self.config = config
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.captions_only = captions_only
        self.images = ImageSource(config)

    def __len__(self) -> int:
        return len(self.samples)

    def conversation(self, index: int) -> list[Message]:
        record = self.samples[index].record
        messages = [Message("system", self.config.system_prompt)]
        if self.captions_only:
            text = with_image_slots(build_prompt("caption", ""), len(record["images"]))
            return messages + [
                Message("user", text),
                Message("assistant", pick_caption(record, index)),
            ]
        return messages + [Message(t["role"], t["content"]) for t in record["conversations"]]

    def estimated_length(self, index: int) -> int:
        """Cheap length estimate for grouping (characters / 3 + visual tokens); no tokenising or decoding."""
        record = self.samples[index].record
        chars = (
            sum(len(t["content"]) for t in record["conversations"])
            if not self.captions_only
            else 80
        )
        return chars // 3 + len(record["images"]) * self.config.num_image_tokens

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        rendered = render(
            self.conversation(index),
            self.tokenizer,
            num_image_tokens=self.config.num_image_tokens,
            num_images=len(sample.record["images"]),
            max_length=self.max_length,
        )
        return {
            "rendered": rendered,
            **self.images(sample.image_root, sample.record["images"]),
            "id": sample.record["id"],
            "tasks": [sample.record.get("task")],
        }


class ImageTextDataset(Dataset):
    """Stage 0: (image, caption) pairs for contrastive training."""

    def __init__(self, samples: Sequence[Sample], config: ModelConfig):
        self.samples = [s for s in samples if len(s.record["images"]) == 1]
        self.config = config

    def __len__(self) -> int:
        return len(self.samples)

    def estimated_length(self, index: int) -> int:
        return 1

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.samples[index]
        return {
            "pixel_values": _load_pixels(sample, self.config)[0],
            "text": pick_caption(sample.record, index),
        }


def collate_conversations(pad_token_id: int):
    def fn(items: list[dict[str, Any]]) -> dict[str, Any]:
        batch = collate([it["rendered"] for it in items], pad_token_id, padding_side="right")
        # Pixels or cached tower features, whichever the dataset gives (a text-only sample
        # gives empty pixels whatever the dataset).
        pixels = [it["pixel_values"] for it in items if "pixel_values" in it and it["pixel_values"].shape[0]]
        features = [it["vision_features"] for it in items if "vision_features" in it]
        if pixels and features and len(pixels) != len(features):
            # (with keep_pixels every image-bearing item has both, for the region decoder)
            raise TrainDataError("a batch mixes pixels and cached features; use one image source")
        batch["pixel_values"] = torch.cat(pixels) if pixels else None
        if features:
            batch["vision_features"] = torch.cat(features)
        batch["ids"] = [it["id"] for it in items]
        batch["tasks"] = [task for it in items for task in it.get("tasks", [])]
        if any("segments" in it for it in items):  # rows that pack several conversations
            from geoassist.train.packing import segment_ids

            lengths = [it.get("segments") or [len(it["rendered"])] for it in items]
            batch["segment_ids"] = segment_ids(lengths, batch["input_ids"].shape[1])
        return batch

    return fn


def collate_image_text(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "pixel_values": torch.stack([it["pixel_values"] for it in items]),
        "text": [it["text"] for it in items],
    }


def epoch_batches(
    lengths: Sequence[int], batch_size: int, *, seed: int, epoch: int, group_by_length: bool
) -> list[list[int]]:
    """The batches of one epoch, a pure function of (seed, epoch). Every batch is full: the
    last one is topped up with the epoch's first items.

    With ``group_by_length``, a seeded shuffle is cut into mega-batches of 50
    batches, each sorted by length, so a batch pads little while the order stays
    random between mega-batches.
    """
    rng = random.Random(seed * 1_000_003 + epoch)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if group_by_length:
        mega = batch_size * 50
        grouped = []
        for start in range(0, len(order), mega):
            chunk = sorted(order[start : start + mega], key=lambda i: -lengths[i])
            grouped.extend(chunk)
        order = grouped
    short = len(order) % batch_size
    if short and len(order) > batch_size:
        # Fill the last batch from the start of the epoch: every step sees a full batch (a
        # contrastive loss on a batch of one is zero and teaches nothing).
        order += order[: batch_size - short]
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if group_by_length:
        rng.shuffle(batches)
    return batches


class ResumableBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Yields :func:`epoch_batches` forever, epoch after epoch, starting at any (epoch, batch)."""

    def __init__(
        self,
        lengths: Sequence[int],
        batch_size: int,
        *,
        seed: int,
        group_by_length: bool,
        epoch_indices: bool = False,
    ):
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.seed = seed
        self.group_by_length = group_by_length
        # Yield ``epoch * len(lengths) + i`` instead of ``i``, for datasets whose items change
        # with the epoch (the turn order of packed conversations).
        self.epoch_indices = epoch_indices
        self.start_epoch = 0
        self.start_batch = 0

    @property
    def batches_per_epoch(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def resume_at(self, batches_done: int) -> None:
        self.start_epoch, self.start_batch = divmod(batches_done, self.batches_per_epoch)

    def __iter__(self) -> Iterator[list[int]]:
        epoch, skip = self.start_epoch, self.start_batch
        while True:
            batches = epoch_batches(
                self.lengths,
                self.batch_size,
                seed=self.seed,
                epoch=epoch,
                group_by_length=self.group_by_length,
            )
            offset = epoch * len(self.lengths) if self.epoch_indices else 0
            for batch in batches[skip:]:
                yield [offset + i for i in batch]
            epoch, skip = epoch + 1, 0

    def __len__(self) -> int:  # one epoch; the trainer counts steps, not epochs
        return self.batches_per_epoch
