"""Stage 0's samples with dense targets: GeoSynth shard caches plus real samples with usable labels.

Real sources (``stage0.real`` entries ``{source, path, name?}``), training images only by the
committed real-data split (:mod:`geoassist.splits`):

- ``scenes``: a folder-per-class scene dataset (UC Merced ``Images/<class>/…``, RSSCN7
  ``<class>/…``) → the scene head of its own label space (``name``, default the split's
  source name ``ucm``/``rsscn7`` or the folder name);
- ``rsvqa_lr`` / ``rsvqa_hr``: an RSVQA folder → per-image presence labels from the
  unqualified presence questions ("Is there a building?", "Is a water area present?") and
  building counts from "How many buildings are there?";
- ``levir_cd``: a LEVIR-CD folder (``A/``, ``B/``, ``label/``, ``list/``) → change maps.

DOTA, iSAID and RSSCN7 are evaluation-only in the committed split, so they never reach a
training batch from here (a reader that asks for them gets no images and says so).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from geoassist.errors import ConfigError
from geoassist.train.dense_targets import (
    OBJECT_INDEX,
    SEMANTIC_INDEX,
    Truth,
    augment,
    build_targets,
)

log = logging.getLogger(__name__)

REAL_SOURCES = ("scenes", "rsvqa_lr", "rsvqa_hr", "levir_cd")
# RSVQA object words → the heads' semantic classes (presence) and object classes (counts).
RSVQA_PRESENCE = {
    "building": "building",
    "road": "road",
    "water area": "water",
    "grass area": "grassland",
    "farmland": "farmland",
    "forest": "forest",
}
RSVQA_COUNT = {"buildings": "building"}
_PRESENCE_Q = re.compile(r"^(?:is there an? (?P<a>[a-z ]+)|is an? (?P<b>[a-z ]+) present)\?$")
_COUNT_Q = re.compile(r"^(?:how many (?P<a>[a-z ]+) are there|what is the number of (?P<b>[a-z ]+))\?$")


def load_rgb_square(path: str | Path, size: int) -> np.ndarray:
    """An image file as (size, size, 3) uint8: centre square crop, then resize."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        side = min(w, h)
        im = im.crop(((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side))
        if side != size:
            im = im.resize((size, size), Image.Resampling.BICUBIC)
        return np.asarray(im, dtype=np.uint8).copy()


def _train_only(source: str, image_id: str) -> bool:
    from geoassist.splits import has_real_split, real_split

    return not has_real_split(source) or real_split(source, image_id) == "train"


def rsvqa_labels(question: str, answer: str) -> tuple[str, int, float] | None:
    """``("presence", semantic index, 0/1)`` or ``("count", object index, n)`` for a question that
    states a whole-image label; None for qualified or other questions."""
    q = question.strip().lower()
    m = _PRESENCE_Q.match(q)
    a = answer.strip().lower()
    if m and a in ("yes", "no"):
        cls = RSVQA_PRESENCE.get(m.group("a") or m.group("b"))
        return None if cls is None else ("presence", SEMANTIC_INDEX[cls], float(a == "yes"))
    m = _COUNT_Q.match(q)
    if m and a.isdigit():
        cls = RSVQA_COUNT.get(m.group("a") or m.group("b"))
        return None if cls is None else ("count", OBJECT_INDEX[cls], float(a))
    return None


@dataclass
class RealItem:
    """One real training sample, loaded lazily."""

    source: str
    path: Path
    scene: dict[str, int]
    presence: dict[int, bool]
    counts: dict[int, float]
    path_b: Path | None = None
    label: Path | None = None
    caption: str | None = None

    def truth(self, size: int) -> Truth:
        t = Truth(
            image=load_rgb_square(self.path, size),
            scene=dict(self.scene),
            presence=dict(self.presence),
            counts=dict(self.counts),
            caption=self.caption,
        )
        if self.path_b is not None:
            t.image_b = load_rgb_square(self.path_b, size)
        if self.label is not None:
            t.change = load_rgb_square(self.label, size)[..., 0] > 127
        return t


def _scene_root(path: Path) -> Path:
    return path / "Images" if (path / "Images").is_dir() else path


def scene_space_name(path: Path, name: str | None) -> str:
    if name:
        return name
    lowered = str(path).lower()
    for known in ("ucmerced", "ucm"):
        if known in lowered:
            return "ucm"
    if "rsscn7" in lowered:
        return "rsscn7"
    return path.name


def read_real_source(entry: dict[str, Any]) -> tuple[list[RealItem], dict[str, list[str]]]:
    """Training items of one ``stage0.real`` entry and the scene label spaces it adds."""
    from geoassist.readers import read_folders, read_levir_cd, read_rsvqa

    source, path = entry.get("source"), Path(str(entry.get("path", ""))).expanduser()
    if source not in REAL_SOURCES:
        raise ConfigError(f"stage0.real source {source!r} is unknown; use one of {', '.join(REAL_SOURCES)}")
    items: list[RealItem] = []
    spaces: dict[str, list[str]] = {}
    if source == "scenes":
        space = scene_space_name(path, entry.get("name"))
        pairs = read_folders(_scene_root(path))
        classes = sorted({c for _, c in pairs})
        spaces[space] = classes
        for p, c in pairs:
            if _train_only(space, p.stem):
                items.append(RealItem("scenes", p, {space: classes.index(c)}, {}, {}, caption=f"an aerial image of {c}"))
    elif source in ("rsvqa_lr", "rsvqa_hr"):
        by_image: dict[int, RealItem] = {}
        for q in read_rsvqa(path):
            if q.image_path is None or not _train_only(source, str(q.image_id)):
                continue
            label = rsvqa_labels(q.question, q.answer)
            if label is None:
                continue
            item = by_image.setdefault(q.image_id, RealItem(source, q.image_path, {}, {}, {}))
            kind, index, value = label
            if kind == "presence":
                item.presence[index] = bool(value)
            else:
                item.counts[index] = value
        items = list(by_image.values())
    else:
        for a, b, label in read_levir_cd(path):
            if _train_only("levir_cd", a.stem) and a.is_file() and b.is_file() and label.is_file():
                items.append(RealItem("levir_cd", a, {}, {}, {}, path_b=b, label=label))
    if not items:
        log.warning("stage0.real %s at %s: no training images (all held out by the real split, or none found)", source, path)
    return items, spaces


class Stage0Dataset(torch.utils.data.Dataset):
    """Views of cached GeoSynth samples and real samples, each with the dense heads' targets.

    ``synth`` holds ``(cache, sample numbers)``; every sample is seen ``views`` times per epoch
    under different augmentations. Real items make about ``real_weight`` of the samples (0
    leaves them out): repeated when there are fewer, a seeded subset when there are more.
    """

    def __init__(self, synth: list[tuple[Any, list[int]]], real: list[RealItem], *, model_config, grid: int,
                 views: int = 1, real_weight: float = 0.0, seed: int = 0, augment_views: bool = True,
                 min_zoom: float = 0.7):
        self.synth = synth
        self.real = real
        self.config = model_config
        self.grid = grid
        self.seed = seed
        self.augment_views = augment_views
        self.min_zoom = min_zoom
        self.entries: list[tuple[int, int]] = []  # (cache number or -1 for real, sample/item)
        for c, (_, samples) in enumerate(synth):
            for _ in range(views):
                self.entries.extend((c, s) for s in samples)
        n_synth = len(self.entries)
        if real and real_weight > 0:
            # real entries: a seeded sequence over the items, as many as make `real_weight` of all
            want = max(1, int(round(real_weight / (1 - real_weight) * n_synth))) if n_synth else len(real)
            order = np.random.default_rng([seed, 17]).permutation(len(real))
            self.entries.extend((-1, int(order[k % len(real)])) for k in range(want))
        log.info("stage 0 samples: %d GeoSynth views, %d real", n_synth, len(self.entries) - n_synth)
        if not self.entries:
            raise ConfigError("stage 0 has no samples: fill stage0.synth (scenes or pairs) or give stage0.real")
        self.size = self.config.preprocess.image_size

    def __len__(self) -> int:
        return len(self.entries)

    def estimated_length(self, index: int) -> int:
        return 1

    def truth(self, index: int) -> Truth:
        c, s = self.entries[index]
        if c < 0:
            return self.real[s].truth(self._source_size())
        return self.synth[c][0].truth(s)

    def _source_size(self) -> int:
        if self.synth:
            return self.synth[0][0].config.size
        return max(self.size, 8 * self.grid)

    def __getitem__(self, index: int) -> dict[str, Any]:
        truth = self.truth(index)
        if self.augment_views:
            truth = augment(truth, np.random.default_rng([self.seed, index]), self.min_zoom)
        targets = build_targets(truth, self.grid)
        item = {"pixel_values": self.pixels(truth.image), "text": truth.caption, "scene": truth.scene,
                "kind": self.kind(index)}
        if truth.image_b is not None:
            item["pixel_values_b"] = self.pixels(truth.image_b)
        item["targets"] = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in targets.items()}
        return item

    def pixels(self, image: np.ndarray) -> torch.Tensor:
        return rgb_to_pixel_values(image, self.config.preprocess)

    def kind(self, index: int) -> str:
        """What the sample is, for the card's samples per task: ``geosynth_scene``,
        ``geosynth_pair`` or ``real_<source>`` (``real_scenes``, ``real_rsvqa_lr``…)."""
        c, s = self.entries[index]
        if c < 0:
            return f"real_{self.real[s].source}"
        return f"geosynth_{self.synth[c][0].config.kind}"


def rgb_to_pixel_values(image: np.ndarray, preprocess) -> torch.Tensor:
    """(S, S, 3) uint8 → the tower's normalised (3, size, size) input (bicubic resize, mean/std)."""
    size = preprocess.image_size
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(255.0)
    if x.shape[-1] != size:
        x = torch.nn.functional.interpolate(x[None], size=(size, size), mode="bilinear", antialias=True, align_corners=False)[0]
    mean = torch.tensor(preprocess.mean[:3]).view(-1, 1, 1)
    std = torch.tensor(preprocess.std[:3]).view(-1, 1, 1)
    return (x - mean) / std


def collate_stage0(items: list[dict[str, Any]]) -> dict[str, Any]:
    """A batch whose targets carry the indices of the items that have them (``<key>_index``)."""
    batch: dict[str, Any] = {
        "pixel_values": torch.stack([it["pixel_values"] for it in items]),
        "text": [it["text"] for it in items],
        "scene": [it["scene"] for it in items],
        # the trainer counts samples per task from these
        "tasks": [it["kind"] for it in items if "kind" in it],
    }
    pairs = [i for i, it in enumerate(items) if "pixel_values_b" in it]
    if pairs:
        batch["pixel_values_b"] = torch.stack([items[i]["pixel_values_b"] for i in pairs])
        batch["pair_index"] = torch.tensor(pairs)
    keys = sorted({k for it in items for k in it["targets"]})
    for key in keys:
        have = [i for i, it in enumerate(items) if key in it["targets"]]
        batch[f"t_{key}"] = torch.stack([items[i]["targets"][key] for i in have])
        batch[f"t_{key}_index"] = torch.tensor(have)
    return batch


@dataclass
class Stage0Sources:
    """What a dense stage 0 reads: filled GeoSynth caches, real items and their scene label spaces."""

    synth: list[tuple[Any, list[int]]]
    real: list[RealItem]
    scene_spaces: dict[str, list[str]]
    cache_stats: dict[str, dict[str, float]]


def prepare_stage0(config, fill: bool = True) -> Stage0Sources:
    """Fill the run's GeoSynth caches (``fill``: this process generates what is missing) and read
    its real sources. The log reports each cache's size and generation rate."""
    from geoassist.train.synth_cache import CacheConfig, SynthCache

    args = config.stage0
    synth, stats = [], {}
    if args.synth is not None:
        s = args.synth
        root = Path(s.cache_dir).expanduser()
        for kind, count in (("scene", s.scenes), ("pair", s.pairs)):
            if not count:
                continue
            cache = SynthCache(root, CacheConfig(kind, s.size, s.base_seed), on_mismatch=s.on_mismatch)
            if fill:
                stats[kind] = cache.ensure(s.start, count, workers=s.workers, shard_size=s.shard_size)
            samples = cache.indices(s.start, count)
            if len(samples) < count:
                raise ConfigError(
                    f"the GeoSynth cache {cache.folder} holds {len(samples)} of the {count} {kind} samples "
                    f"from {s.start}; let the main process fill it first"
                )
            synth.append((cache, samples))
    real, spaces = [], {}
    for entry in args.real:
        items, found = read_real_source(entry)
        real.extend(items)
        spaces.update(found)
    if real:
        log.info("stage 0: %d real training samples (%s)", len(real), ", ".join(sorted({r.source for r in real})))
    return Stage0Sources(synth, real, spaces, stats)


def stage0_dataset(config, model, dense, sources: Stage0Sources) -> Stage0Dataset:
    from geoassist.train.stages import dense_grid

    s = config.stage0.synth
    return Stage0Dataset(
        sources.synth,
        sources.real,
        model_config=model.config,
        grid=dense_grid(model, dense),
        views=s.views if s else 1,
        real_weight=config.stage0.real_weight if sources.real else 0.0,
        seed=config.seed,
        augment_views=s.augment if s else True,
        min_zoom=s.min_zoom if s else 0.7,
    )
