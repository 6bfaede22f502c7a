"""Linear probes of frozen vision towers: what a tower's features say about a scene, before any LM.

For each model the tower is frozen and its patch tokens (block ``feature_layer``, the tokens
the LM's projector reads) are the features. A checkpoint trained with stage 0's dense heads on a
finer feature path (``conv8``: a stride-8 convolutional branch beside the ViT) adds that path's
map to the per-cell features, since the dense heads and the region decoder read it; the result
names the features it used (``cell_features``). Linear probes are fitted on a GeoSynth train
split and scored on a split of other seeds: ``val`` to choose between towers, ``test`` (the
default) once for the chosen one:

- ``scene_top1``: softmax regression on the mean token → GeoSynth scene class;
- ``presence_map``: one logistic regression per semantic class on the mean token; mean
  average precision over classes with both answers in the test split;
- ``count_mae``: ridge regression of per-class object counts on the mean token; mean absolute
  error over (scene, class) pairs whose true count is 1–20;
- ``semantic_miou``: softmax regression per cell on the tokens resampled to a fixed 32×32
  grid (whatever the tower's stride) → the cell's majority semantic class; mean IoU;
- ``change_iou``: logistic regression per 32×32 cell on both dates' features (a, b, |a−b|)
  → changed (more than half the cell); IoU of the changed class.

Real data: ``rsvqa_lr_presence`` is a leave-one-image-out probe of RSVQA-LR presence questions
(question words, and question words × the image's principal components) next to ``majority``
(the most frequent answer to the same question text on the other images, else the most
frequent presence answer); ``real_scene_top1`` is a linear probe of a folder-per-class scene
dataset on an image-level split (the committed real split where it has train and test images,
else a seeded 80/20 split per class, named in the output).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from geoassist.atomic import replace_file
from geoassist.errors import ConfigError

log = logging.getLogger(__name__)

PROBE_GRID = 32
TRAIN_SEED, TEST_SEED, VAL_SEED = 910_001, 920_002, 930_003  # probe seed sequences, apart from training runs' (0, 1, …)
SPLIT_SEEDS = {"test": TEST_SEED, "val": VAL_SEED}
METRICS = ("scene_top1", "presence_map", "count_mae", "semantic_miou", "change_iou")


@dataclass
class ProbeSettings:
    n_train: int = 1000
    n_test: int = 500
    n_pairs_train: int = 200
    n_pairs_test: int = 200
    size: int = 256
    cache_dir: str = "~/.cache/geoassist/synth"
    workers: int = 2
    batch_size: int = 16
    cells_per_image: int = 96  # training cells sampled per image for the cell probes
    split: str = "test"  # the scored split: "val" (choosing a tower) or "test" (scored once)

    def __post_init__(self) -> None:
        if self.split not in SPLIT_SEEDS:
            raise ConfigError(f"the probe's split is one of {sorted(SPLIT_SEEDS)}, not {self.split!r}")
        if min(self.n_train, self.n_test) < 2 or min(self.n_pairs_train, self.n_pairs_test) < 0:
            raise ConfigError("the probe needs at least 2 train and 2 test scenes")
        if self.size % PROBE_GRID:
            raise ConfigError(f"the probe's scene size must be a multiple of {PROBE_GRID}")


class Tower:
    """A frozen tower and its preprocessing."""

    def __init__(self, name: str, device: str = "cpu"):
        from geoassist.checkpoint import create_model

        model = create_model(name, device=device)
        self.vision = model.vision.eval().requires_grad_(False)
        self.preprocess = model.config.preprocess
        self.device = device
        del model
        self.fine = None  # the dense heads' finer path (conv8), when the checkpoint has one
        if Path(name).is_dir():
            from geoassist.model.dense_heads import has_dense_heads, load_dense_heads

            if has_dense_heads(name):
                heads = load_dense_heads(name)
                if heads.config.feature_path == "conv8":
                    self.fine = heads.fine.to(device).eval().requires_grad_(False)

    @property
    def cell_features(self) -> str:
        return "tokens+conv8" if self.fine is not None else "tokens"

    @torch.no_grad()
    def features(self, images: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S, S, 3) uint8 → mean token (B, W) and tokens on the 32×32 grid (B, W, 32, 32)."""
        from geoassist.train.dense_data import rgb_to_pixel_values

        pixels = torch.stack([rgb_to_pixel_values(im, self.preprocess) for im in images]).to(self.device)
        tokens = self.vision(pixels).float()
        if self.vision.config.use_cls_token:
            tokens = tokens[:, 1:]
        b, n, w = tokens.shape
        side = int(round(n**0.5))
        grid = tokens.transpose(1, 2).reshape(b, w, side, side)
        cells = F.interpolate(grid, size=(PROBE_GRID, PROBE_GRID), mode="bilinear", align_corners=False)
        if self.fine is not None:
            fine = self.fine(self.vision.adapt(pixels).float(), grid)
            fine = F.interpolate(fine, size=(PROBE_GRID, PROBE_GRID), mode="bilinear", align_corners=False)
            cells = torch.cat([cells, fine], dim=1)
        return tokens.mean(dim=1).cpu(), cells.cpu()


# --------------------------------------------------------------------------- linear probes


class _Standard:
    def __init__(self, x: torch.Tensor):
        self.mean, self.std = x.mean(0), x.std(0).clamp(min=1e-5)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def fit_linear(x: torch.Tensor, y: torch.Tensor, kind: str, n_out: int, l2: float = 1e-3, steps: int = 300) -> torch.nn.Linear:
    """A linear probe by full-batch Adam with a decaying rate: ``kind`` softmax (y: class ids) or
    logistic (y: a 0/1 matrix). Features should be standardised."""
    torch.manual_seed(0)
    layer = torch.nn.Linear(x.shape[1], n_out)
    opt = torch.optim.Adam(layer.parameters(), lr=0.05)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    threads = torch.get_num_threads()
    # small problems: thread hand-offs cost more than the arithmetic (much more on a busy machine)
    if x.numel() * n_out < 5_000_000:
        torch.set_num_threads(1)
    try:
        _adam_steps(layer, opt, sched, x, y, kind, l2, steps)
    finally:
        torch.set_num_threads(threads)
    return layer.requires_grad_(False)


def _adam_steps(layer, opt, sched, x, y, kind: str, l2: float, steps: int) -> None:
    with torch.enable_grad():
        for _ in range(steps):
            out = layer(x)
            loss = F.cross_entropy(out, y) if kind == "softmax" else F.binary_cross_entropy_with_logits(out, y)
            loss = loss + l2 * layer.weight.pow(2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()


def fit_ridge(x: torch.Tensor, y: torch.Tensor, l2: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    xm, ym = x.mean(0), y.mean(0)
    xc = x - xm
    w = torch.linalg.solve(xc.T @ xc + l2 * torch.eye(x.shape[1]), xc.T @ (y - ym))
    return w, ym - xm @ w


def average_precision(scores: np.ndarray, labels: np.ndarray) -> float:
    order = np.argsort(-scores, kind="stable")
    hits = labels[order].astype(bool)
    if not hits.any():
        return float("nan")
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].mean())


def _majority_cells(semantic: np.ndarray, n_classes: int) -> np.ndarray:
    """(B, S, S) codes → (B, 32, 32) majority code per cell (255 kept where a cell is all unknown)."""
    from geoassist.train.dense_targets import _cell_fractions

    out = np.empty((len(semantic), PROBE_GRID, PROBE_GRID), np.int64)
    for i, s in enumerate(semantic):
        fractions = _cell_fractions(np.asarray(s), n_classes, PROBE_GRID)
        out[i] = np.where(fractions[-1] > 0.5, -1, fractions[:-1].argmax(0))
    return out


# --------------------------------------------------------------------------- GeoSynth probes


def _cache(settings: ProbeSettings, kind: str, base_seed: int, count: int):
    from geoassist.train.synth_cache import CacheConfig, SynthCache

    cache = SynthCache(Path(settings.cache_dir).expanduser(), CacheConfig(kind, settings.size, base_seed))
    cache.ensure(0, count, workers=settings.workers, shard_size=min(256, max(8, count)))
    return cache


def _batches(cache, count: int, batch_size: int):
    for start in range(0, count, batch_size):
        yield [cache.truth(i) for i in range(start, min(count, start + batch_size))]


def _scene_targets(truths) -> dict[str, np.ndarray]:
    from geoassist.synth.palette import OBJECT_CLASSES, SEMANTIC_CLASSES
    from geoassist.train.dense_targets import build_targets

    t = [build_targets(x, PROBE_GRID) for x in truths]
    return {
        "scene": np.array([x.scene["geosynth"] for x in truths]),
        "presence": np.stack([x["presence"] for x in t])[:, : len(SEMANTIC_CLASSES)],
        "count": np.stack([x["count"] for x in t])[:, : len(OBJECT_CLASSES)],
        "cells": _majority_cells(np.stack([x.semantic for x in truths]), len(SEMANTIC_CLASSES)),
    }


def geosynth_probe(tower: Tower, settings: ProbeSettings) -> dict[str, float]:
    from geoassist.synth import scene_classes
    from geoassist.synth.palette import SEMANTIC_CLASSES

    rng = np.random.default_rng(0)
    train = _cache(settings, "scene", TRAIN_SEED, settings.n_train)
    test = _cache(settings, "scene", SPLIT_SEEDS[settings.split], settings.n_test)
    pooled, cell_x, cell_y, targets = [], [], [], []
    for truths in _batches(train, settings.n_train, settings.batch_size):
        p, cells = tower.features(np.stack([t.image for t in truths]))
        tg = _scene_targets(truths)
        pooled.append(p)
        targets.append(tg)
        for i in range(len(truths)):
            flat = tg["cells"][i].reshape(-1)
            pick = rng.choice(np.flatnonzero(flat >= 0), size=min(settings.cells_per_image, int((flat >= 0).sum())), replace=False)
            cell_x.append(cells[i].reshape(cells.shape[1], -1).T[pick])
            cell_y.append(torch.from_numpy(flat[pick]))
    x = torch.cat(pooled)
    norm = _Standard(x)
    xs = norm(x)
    y = {k: np.concatenate([t[k] for t in targets]) for k in ("scene", "presence", "count")}
    n_scene = len(scene_classes("hr"))
    scene_probe = fit_linear(xs, torch.from_numpy(y["scene"]).long(), "softmax", n_scene)
    presence_probe = fit_linear(xs, torch.from_numpy(y["presence"]).float(), "logistic", len(SEMANTIC_CLASSES))
    count_w, count_b = fit_ridge(xs, torch.from_numpy(y["count"]).float(), l2=float(xs.shape[1]) * 0.1)
    cx = torch.cat(cell_x)
    cell_norm = _Standard(cx)
    cell_probe = fit_linear(cell_norm(cx), torch.cat(cell_y).long(), "softmax", len(SEMANTIC_CLASSES))

    correct, scores, labels, abs_err = 0, [], [], []
    inter = np.zeros(len(SEMANTIC_CLASSES))
    union = np.zeros(len(SEMANTIC_CLASSES))
    with torch.no_grad():
        for truths in _batches(test, settings.n_test, settings.batch_size):
            p, cells = tower.features(np.stack([t.image for t in truths]))
            tg = _scene_targets(truths)
            ps = norm(p)
            correct += int((scene_probe(ps).argmax(1).numpy() == tg["scene"]).sum())
            scores.append(torch.sigmoid(presence_probe(ps)).numpy())
            labels.append(tg["presence"])
            pred_count = (ps @ count_w + count_b).clamp(min=0).numpy()
            sel = (tg["count"] >= 1) & (tg["count"] <= 20)
            abs_err.extend(np.abs(pred_count - tg["count"])[sel].tolist())
            flat = cells.permute(0, 2, 3, 1).reshape(-1, cells.shape[1])
            pred = cell_probe(cell_norm(flat)).argmax(1).numpy().reshape(len(truths), PROBE_GRID, PROBE_GRID)
            known = tg["cells"] >= 0
            for c in range(len(SEMANTIC_CLASSES)):
                a, b = (pred == c) & known, (tg["cells"] == c)
                inter[c] += (a & b).sum()
                union[c] += (a | b).sum()
    scores_a, labels_a = np.concatenate(scores), np.concatenate(labels)
    aps = [average_precision(scores_a[:, c], labels_a[:, c]) for c in range(labels_a.shape[1])
           if 0 < labels_a[:, c].sum() < len(labels_a)]
    present = union > 0
    out = {
        "scene_top1": correct / settings.n_test,
        "presence_map": float(np.mean(aps)) if aps else float("nan"),
        "count_mae": float(np.mean(abs_err)) if abs_err else float("nan"),
        "semantic_miou": float((inter[present] / union[present]).mean()) if present.any() else float("nan"),
        "n_test_scenes": settings.n_test,
        "split": settings.split,
        "cell_features": tower.cell_features,
    }
    if settings.n_pairs_train and settings.n_pairs_test:
        out["change_iou"] = change_probe(tower, settings)
        out["n_test_pairs"] = settings.n_pairs_test
    return out


def _pair_cells(tower: Tower, truths) -> tuple[torch.Tensor, np.ndarray]:
    from geoassist.train.dense_targets import _cell_fractions

    _, a = tower.features(np.stack([t.image for t in truths]))
    _, b = tower.features(np.stack([t.image_b for t in truths]))
    x = torch.cat([a, b, (a - b).abs()], dim=1)
    y = np.stack([_cell_fractions(t.change.astype(np.uint8), 2, PROBE_GRID)[1] > 0.5 for t in truths])
    return x, y


def change_probe(tower: Tower, settings: ProbeSettings) -> float:
    rng = np.random.default_rng(1)
    train = _cache(settings, "pair", TRAIN_SEED, settings.n_pairs_train)
    test = _cache(settings, "pair", SPLIT_SEEDS[settings.split], settings.n_pairs_test)
    xs, ys = [], []
    n_changed = n_cells = 0
    for truths in _batches(train, settings.n_pairs_train, settings.batch_size):
        x, y = _pair_cells(tower, truths)
        flat_x = x.permute(0, 2, 3, 1).reshape(-1, x.shape[1])
        flat_y = y.reshape(-1)
        changed = np.flatnonzero(flat_y)
        n_changed, n_cells = n_changed + len(changed), n_cells + len(flat_y)
        unchanged = rng.choice(np.flatnonzero(~flat_y), size=min(len(flat_y) - len(changed), settings.cells_per_image * len(truths)), replace=False)
        pick = np.concatenate([changed, unchanged])
        xs.append(flat_x[pick])
        ys.append(torch.from_numpy(flat_y[pick].astype(np.float32)))
    x = torch.cat(xs)
    norm = _Standard(x)
    y = torch.cat(ys)[:, None]
    probe = fit_linear(norm(x), y, "logistic", 1)
    # the training cells over-sample changes: move the decision back to the true prior
    def logit(p: float) -> float:
        p = min(max(p, 1e-6), 1 - 1e-6)
        return float(np.log(p / (1 - p)))

    shift = logit(n_changed / max(n_cells, 1)) - logit(float(y.mean()))
    inter = union = 0
    with torch.no_grad():
        for truths in _batches(test, settings.n_pairs_test, settings.batch_size):
            x, yt = _pair_cells(tower, truths)
            flat = norm(x.permute(0, 2, 3, 1).reshape(-1, x.shape[1]))
            pred = probe(flat)[:, 0].numpy() + shift > 0
            yt = yt.reshape(-1)
            inter += int((pred & yt).sum())
            union += int((pred | yt).sum())
    return inter / union if union else float("nan")


# --------------------------------------------------------------------------- real data


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def rsvqa_presence_probe(tower: Tower, folder: str | Path, batch_size: int = 16) -> dict[str, float]:
    """Leave-one-image-out probe of RSVQA-LR presence questions, and the per-question majority."""
    from geoassist.readers import read_rsvqa
    from geoassist.train.dense_data import load_rgb_square

    items = [q for q in read_rsvqa(folder) if q.type == "presence" and q.image_path is not None
             and q.answer.lower() in ("yes", "no")]
    images = sorted({q.image_id for q in items})
    if len(images) < 3:
        raise ConfigError(f"{folder}: the presence probe needs presence questions on at least 3 images")
    paths = {q.image_id: q.image_path for q in items}
    feats = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        p, _ = tower.features(np.stack([load_rgb_square(paths[i], 256) for i in chunk]))
        feats.append(p)
    image_x = dict(zip(images, torch.cat(feats), strict=True))
    correct = majority_correct = 0
    for held in images:
        train_q = [q for q in items if q.image_id != held]
        test_q = [q for q in items if q.image_id == held]
        vocab = sorted({w for q in train_q for w in _words(q.question)})
        index = {w: i for i, w in enumerate(vocab)}
        train_images = sorted({q.image_id for q in train_q})
        mat = torch.stack([image_x[i] for i in train_images])
        mean = mat.mean(0)
        k = min(8, len(train_images) - 1)
        _, _, v = torch.pca_lowrank(mat - mean, q=k, center=False)
        scale = ((mat - mean) @ v).std(0).clamp(min=1e-6)

        def encode(q, index=index, v=v, mean=mean, scale=scale):
            bow = torch.zeros(len(index))
            for w in _words(q.question):
                if w in index:
                    bow[index[w]] = 1.0
            img = ((image_x[q.image_id] - mean) @ v) / scale
            return torch.cat([bow, torch.outer(img, bow).reshape(-1), img])

        x = torch.stack([encode(q) for q in train_q])
        y = torch.tensor([[float(q.answer.lower() == "yes")] for q in train_q])
        probe = fit_linear(x, y, "logistic", 1, l2=1e-2)
        with torch.no_grad():
            pred = probe(torch.stack([encode(q) for q in test_q]))[:, 0] > 0
        type_majority = Counter(q.answer.lower() for q in train_q).most_common(1)[0][0]
        by_text: dict[str, Counter] = {}
        for q in train_q:
            by_text.setdefault(q.question, Counter())[q.answer.lower()] += 1
        for q, p in zip(test_q, pred.tolist(), strict=True):
            truth = q.answer.lower() == "yes"
            correct += int(p == truth)
            guess = by_text[q.question].most_common(1)[0][0] if q.question in by_text else type_majority
            majority_correct += int(guess == q.answer.lower())
    return {"rsvqa_lr_presence": correct / len(items), "majority": majority_correct / len(items),
            "rsvqa_lr_questions": len(items), "rsvqa_lr_images": len(images)}


def _scene_split(source: str, path: Path, cls: str) -> str:
    from geoassist.splits import has_real_split, real_split

    if has_real_split(source):
        split = real_split(source, path.stem)
        if split in ("train", "test"):
            return split
        if split == "val":
            return "val"
    u = int.from_bytes(hashlib.sha256(f"probe:{cls}:{path.name}".encode()).digest()[:8], "big") / 2**64
    return "test" if u < 0.2 else "train"


def real_scene_probe(tower: Tower, folder: str | Path, batch_size: int = 16, limit_per_class: int | None = None) -> dict[str, Any]:
    """Linear probe of scene class on a folder-per-class dataset, image-level split."""
    from geoassist.readers import read_folders
    from geoassist.splits import has_real_split, real_split
    from geoassist.train.dense_data import _scene_root, load_rgb_square, scene_space_name

    folder = Path(folder)
    pairs = read_folders(_scene_root(folder))
    if limit_per_class:
        seen: Counter = Counter()
        kept = []
        for p, c in pairs:
            if seen[c] < limit_per_class:
                kept.append((p, c))
                seen[c] += 1
        pairs = kept
    classes = sorted({c for _, c in pairs})
    if len(classes) < 2:
        raise ConfigError(f"{folder} needs at least two class folders for a scene probe")
    source = scene_space_name(folder, None)
    committed = has_real_split(source) and {real_split(source, p.stem) for p, _ in pairs} >= {"train", "test"}
    split_name = f"committed real split ({source})" if committed else "seeded 80/20 per image"
    splits = [(real_split(source, p.stem) if committed else _scene_split("", p, c)) for p, c in pairs]
    feats = []
    for start in range(0, len(pairs), batch_size):
        chunk = pairs[start : start + batch_size]
        p, _ = tower.features(np.stack([load_rgb_square(path, 256) for path, _ in chunk]))
        feats.append(p)
    x = torch.cat(feats)
    y = torch.tensor([classes.index(c) for _, c in pairs])
    train = torch.tensor([s == "train" for s in splits])
    test = torch.tensor([s == "test" for s in splits])
    if train.sum() < 2 or test.sum() < 1:
        raise ConfigError(f"{folder}: the split leaves no train or no test images")
    norm = _Standard(x[train])
    probe = fit_linear(norm(x[train]), y[train], "softmax", len(classes), l2=1e-2)
    with torch.no_grad():
        top1 = float((probe(norm(x[test])).argmax(1) == y[test]).float().mean())
    return {"real_scene_top1": top1, "real_scene_split": split_name, "real_scene_test_images": int(test.sum())}


# --------------------------------------------------------------------------- the command's core


def run_probe(models: list[str], out: str | Path, settings: ProbeSettings | None = None,
              rsvqa_lr: str | Path | None = None, scenes: str | Path | None = None,
              scenes_limit: int | None = None) -> dict[str, dict[str, Any]]:
    """Probe every model; write ``out/probe.json`` and ``out/probe.md``; return the results."""
    if not models:
        raise ConfigError("name at least one model to probe (--model)")
    settings = settings or ProbeSettings()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    for name in models:
        tower = Tower(name)
        log.info("probing %s", name)
        result = geosynth_probe(tower, settings)
        if rsvqa_lr:
            result.update(rsvqa_presence_probe(tower, rsvqa_lr, settings.batch_size))
        if scenes:
            result.update(real_scene_probe(tower, scenes, settings.batch_size, scenes_limit))
        results[name] = result
    replace_file(out / "probe.json", json.dumps(results, indent=2) + "\n")
    replace_file(out / "probe.md", probe_table(results))
    return results


def probe_table(results: dict[str, dict[str, Any]]) -> str:
    keys = [k for k in (*METRICS, "rsvqa_lr_presence", "majority", "real_scene_top1")
            if any(k in r for r in results.values())]
    lines = ["| model | " + " | ".join(keys) + " |", "|---|" + "---|" * len(keys)]
    for name, r in results.items():
        cells = [f"{r[k]:.3f}" if isinstance(r.get(k), float) else str(r.get(k, "")) for k in keys]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
