"""Stage-0 training throughput (images/s) of two tower candidates against today's stage 0.

    python bench/bench_stage0.py [--steps 6] [--batch 16] [--threads 2]

- ``baseline``: the current stage 0 — the `mini` tower (patch 16 at 256 px), CLIP loss only;
- ``p32+conv8``: the `mini` tower with patch 32 (64 tokens for the LM) and the dense heads on a
  stride-8 convolutional branch beside it;
- ``p16+tokens``: the `mini` tower (patch 16: 256 tokens) whose tokens are the dense heads' map.

Every candidate trains on the same batch of cached GeoSynth scenes and pairs (256 px, a pair
counts as two images) with the frozen MiniLM text side, in this process, one after another;
a step is a forward and backward pass and an AdamW step. The ratio is against the baseline
measured in the same run.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import torch
from torch import nn

CANDIDATES = {
    "baseline": {"patch_size": 16, "dense": None},
    "p32+conv8": {"patch_size": 32, "dense": "conv8"},
    "p16+tokens": {"patch_size": 16, "dense": "tokens"},
}


class _Model(nn.Module):
    """Only what stage 0 touches: the vision tower and the model config."""

    def __init__(self, config):
        super().__init__()
        from geoassist.model.vision import VisionTower

        self.config = config
        self.vision = VisionTower(config.vision)


def run(name: str, spec: dict, items: list, steps: int) -> float:
    from geoassist.config import load_preset
    from geoassist.model.dense_heads import DenseHeads, DenseHeadsConfig
    from geoassist.train.dense_data import collate_stage0
    from geoassist.train.dense_loss import dense_stage0_loss
    from geoassist.train.stages import (
        ContrastiveHead,
        FrozenSentenceEncoder,
        StageModule,
        dense_grid,
    )

    config = copy.deepcopy(load_preset("mini"))
    config.vision.patch_size = spec["patch_size"]
    torch.manual_seed(0)
    model = _Model(config)
    head = ContrastiveHead(config.vision.embed_dim, FrozenSentenceEncoder("minilm"), "clip", 2.659)
    if spec["dense"] is None:
        module = StageModule(model, head)
        pixels = torch.stack([it["pixel_values"] for it in items])
        texts = [it["text"] or "an aerial image" for it in items]

        def loss_fn():
            return module.head.loss(model.vision.encode_image(pixels), texts)

        n_images = len(items)
    else:
        dense = DenseHeads(DenseHeadsConfig(feature_path=spec["dense"]), model.vision.width)
        module = StageModule(model, head, dense, {"contrastive": 1, "scene": 1, "presence": 1, "count": 0.5,
                                                  "semantic": 1, "centre": 1, "box": 0.1, "change": 1})
        grid = dense_grid(model, dense)
        batch = collate_stage0([items[i]["rebuild"](grid) for i in range(len(items))])

        def loss_fn():
            return dense_stage0_loss(module, batch)[0]

        n_images = len(items) + int(batch.get("pixel_values_b", torch.zeros(0)).shape[0])
    params = [p for p in module.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)

    def step():
        loss = loss_fn()
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = time.perf_counter() - t0
    return n_images * steps / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch", type=int, default=16, help="samples per step (a quarter are pairs)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--cache-dir", default=None, help="GeoSynth cache (default: a temporary folder)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from geoassist.config import load_preset
    from geoassist.train.dense_data import Stage0Dataset
    from geoassist.train.synth_cache import CacheConfig, SynthCache

    cache_dir = Path(args.cache_dir or tempfile.mkdtemp(prefix="bench-stage0-"))
    n_pairs = args.batch // 4
    scenes = SynthCache(cache_dir, CacheConfig("scene", 256, base_seed=77))
    pairs = SynthCache(cache_dir, CacheConfig("pair", 256, base_seed=77))
    t0 = time.perf_counter()
    stats = [scenes.ensure(0, args.batch - n_pairs, workers=args.threads, shard_size=args.batch),
             pairs.ensure(0, n_pairs, workers=args.threads, shard_size=args.batch)]
    generated = sum(s["generated"] for s in stats)
    print(f"GeoSynth: {generated:.0f} samples generated in {time.perf_counter() - t0:.1f} s")
    preset = load_preset("mini")

    def dataset(grid: int) -> Stage0Dataset:
        return Stage0Dataset([(scenes, list(range(args.batch - n_pairs))), (pairs, list(range(n_pairs)))], [],
                             model_config=preset, grid=grid, seed=0)

    base = dataset(8)
    items = []
    for i in range(len(base)):
        item = base[i]
        item["rebuild"] = lambda grid, i=i: dataset(grid)[i]
        items.append(item)
    rates = {}
    for name, spec in CANDIDATES.items():
        rates[name] = run(name, spec, items, args.steps)
        print(f"{name}: {rates[name]:.2f} images/s")
    print(f"\nstage 0 throughput, batch {args.batch} ({n_pairs} pairs), {args.steps} steps, {args.threads} threads")
    print("| tower | images/s | vs baseline |")
    print("|---|---|---|")
    for name, rate in rates.items():
        print(f"| {name} | {rate:.2f} | {rate / rates['baseline']:.2f}x |")


if __name__ == "__main__":
    main()
