"""Stage 2's supervised answer tokens per CPU-second: one record per sequence, packed multi-turn
conversations, packed conversations over cached tower features, and several conversations per
sequence (``stage2.pack_conversations``) over cached features.

    python bench/bench_packing.py [--model geoassist-mini] [--scenes 12] [--steps 2] [--batch 2]

All three run in this process on the same answers — the records of a seeded choice of packed
conversations, once one record per sequence and once as those conversations — with the same
model and its stage-2 trainable set (LoRA + projector): each step loads and renders its batch (images decoded,
or cached features read), runs forward and backward and an optimizer step, as the trainer does
with ``num_workers: 0``. The CPU time of those steps (all threads, ``time.process_time``) is the
cost; the supervised answer tokens of the batches (labels that are not -100, after the shift)
are the work. The cached run's one-off pass of the tower over each image is timed on its own
line, since the trainer pays it once per image and tower, not per epoch. Ratios are against the
named baseline, ``one-record``, measured in the same run. A model with a region decoder trains
every layout as stage 2 does, its geometry records in the ``<seg>`` form with the decoder's
losses (so the packed conversations are planned by those short answers), and its supervised
tokens are then far fewer than the boxes and masks they stand for: the answers (turns) per
CPU-second are printed beside the tokens for that reason.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import torch

BASELINE = "one-record"


def _in_batches(n: int, size: int) -> list[list[int]]:
    """Indices 0..n-1 in order, ``size`` to a batch."""
    return [list(range(i, min(i + size, n))) for i in range(0, n, size)]


def _run(name: str, dataset, batches: list[list[int]], collate, module, optimizer) -> dict:
    from geoassist.train.stages import stage_loss

    tokens = sequences = padded = answers = 0
    cpu = wall = 0.0
    for step, indices in enumerate([batches[0], *batches]):  # a warm-up step, not counted
        c0, w0 = time.process_time(), time.perf_counter()
        data = collate([dataset[i] for i in indices])
        loss, _ = stage_loss(2, module, data)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        c1, w1 = time.process_time(), time.perf_counter()
        if step == 0:
            continue
        cpu += c1 - c0
        wall += w1 - w0
        tokens += int((data["labels"][:, 1:] != -100).sum())
        answers += len(data.get("tasks") or indices)
        sequences += data["input_ids"].shape[0]
        padded += data["input_ids"].numel()
    return {
        "mode": name,
        "steps": len(batches),
        "supervised_tokens": tokens,
        "sequences": sequences,
        "tokens_per_sequence": padded / max(sequences, 1),
        "cpu_s": cpu,
        "wall_s": wall,
        "tokens_per_cpu_s": tokens / cpu,
        "answers": answers,
        "answers_per_cpu_s": answers / cpu,
        "tokens_per_wall_s": tokens / wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="geoassist-mini", help="published name, preset or folder")
    parser.add_argument("--data", help="a GeoSynth recipe output (default: built here from --scenes)")
    parser.add_argument("--scenes", type=int, default=12)
    parser.add_argument("--steps", type=int, default=2, help="packed steps (after one warm-up); the one-record layout trains on the same answers")
    parser.add_argument("--batch", type=int, default=2, help="sequences per step")
    parser.add_argument("--max-length", type=int, default=576, help="the preset's stage-2 data.max_length")
    parser.add_argument("--json", help="also write the rows here")
    args = parser.parse_args()
    # the recipe output, the run folder and the feature cache live only as long as the run
    with tempfile.TemporaryDirectory(prefix="bench-packing-") as folder:
        _bench(args, Path(folder))


def _bench(args: argparse.Namespace, tmp: Path) -> None:
    from geoassist.checkpoint import create_model
    from geoassist.train.config import config_from_dict
    from geoassist.train.data import (
        ConversationDataset,
        collate_conversations,
        image_files,
        load_samples,
    )
    from geoassist.train.feature_cache import FeatureCache, digests_of
    from geoassist.train.packing import PackedConversationDataset
    from geoassist.train.stages import build_stage, trainable_parameters
    from geoassist.util import quiet_transformers

    quiet_transformers()
    data = Path(args.data) if args.data else tmp / "geosynth"
    if not args.data:
        from geoassist.data_recipes import build

        build("geosynth", f"n={args.scenes},seed=7,size=256,kinds=hr+hr+hr+pair", data)
    samples = load_samples([str(data)], split="train", tasks=None, seed=0)

    torch.manual_seed(0)
    model = create_model(args.model)
    config = config_from_dict({"stage": 2, "model": args.model, "out_dir": str(tmp / "run"), "data": {"train": [str(data)]}})
    module = build_stage(2, model, config)
    module.train()
    optimizer = torch.optim.AdamW(trainable_parameters(module).values(), lr=1e-5)
    collate = collate_conversations(model.pad_token_id)
    common: dict = {"max_length": args.max_length}
    regions = model.region_decoder is not None
    if regions:  # as stage 2 trains a model with a decoder: <seg> answers and the decoder losses
        from geoassist.train.region_data import collate_with_regions
        from geoassist.train.region_stage import decoder_grid, region_dataset

        collate = collate_with_regions(collate)
        common["region_grid"] = decoder_grid(model)

    packed = PackedConversationDataset(samples, model.config, model.tokenizer, seed=0, **common)
    cached = PackedConversationDataset(samples, model.config, model.tokenizer, seed=0, **common)
    # The same answers in both layouts: the records of a seeded choice of conversations, once
    # as those conversations and once one record per sequence.
    chosen = random.Random(1).sample(range(len(packed)), min(len(packed), args.steps * args.batch))
    records = [s for c in chosen for s in packed.conversations[c].samples]
    one = ConversationDataset(
        records, model.config, model.tokenizer, captions_only=False, max_length=args.max_length
    )
    if regions:
        one = region_dataset(one, model)
    packed_batches = [chosen[i : i + args.batch] for i in range(0, len(chosen), args.batch)]
    one_batches = _in_batches(len(one), args.batch)
    cache = FeatureCache(tmp / "features", model.vision, model.config.preprocess)
    digests = digests_of(image_files(samples))
    c0 = time.process_time()
    cache.fill(model, {d: p for p, d in digests.items()})
    fill_cpu = time.process_time() - c0
    cached.images.use_cache(cache, digests)

    # The same records again, their conversations also sharing sequences (stage2.pack_conversations)
    multi = PackedConversationDataset(records, model.config, model.tokenizer, seed=0, pack_conversations=True, **common)
    multi.images.use_cache(cache, digests)
    multi_batches = _in_batches(len(multi), args.batch)

    rows = [
        _run(BASELINE, one, one_batches, collate, module, optimizer),
        _run("packed", packed, packed_batches, collate, module, optimizer),
        _run("packed+cached", cached, packed_batches, collate, module, optimizer),
        _run("multi+cached", multi, multi_batches, collate, module, optimizer),
    ]
    base = rows[0]["tokens_per_cpu_s"]
    print(
        f"model {args.model}, {len(samples)} records of {len(digests)} images "
        f"({len(packed)} packed conversations, {len(samples) / len(packed):.1f} answers each), "
        f"batch {args.batch}, max_length {args.max_length}, {torch.get_num_threads()} threads, "
        f"the {len(records)} answers of {len(chosen)} conversations in each layout"
        + (", geometry as <seg> with the region decoder's losses" if regions else "")
    )
    base_answers = rows[0]["answers_per_cpu_s"]
    print(
        f"{'mode':<15} {'sup. tokens':>11} {'seq len':>8} {'CPU s':>8} {'tokens/CPU-s':>13} {'ratio':>6} "
        f"{'answers/CPU-s':>14} {'ratio':>6} {'tokens/wall-s':>14}"
    )
    for r in rows:
        print(
            f"{r['mode']:<15} {r['supervised_tokens']:>11} {r['tokens_per_sequence']:>8.0f} {r['cpu_s']:>8.1f} "
            f"{r['tokens_per_cpu_s']:>13.2f} {r['tokens_per_cpu_s'] / base:>5.2f}x "
            f"{r['answers_per_cpu_s']:>14.3f} {r['answers_per_cpu_s'] / base_answers:>5.2f}x "
            f"{r['tokens_per_wall_s']:>14.2f}"
        )
        r["ratio"] = r["tokens_per_cpu_s"] / base
        r["answers_ratio"] = r["answers_per_cpu_s"] / base_answers
    print(
        f"feature cache fill (once per image and tower): {fill_cpu:.1f} CPU s for {len(digests)} images "
        f"= {fill_cpu / max(len(digests), 1):.2f} CPU s per image"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"baseline": BASELINE, "rows": rows, "fill_cpu_s": fill_cpu}, indent=2))


if __name__ == "__main__":
    main()
