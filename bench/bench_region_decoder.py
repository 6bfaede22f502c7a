"""The region decoder's share of a grounded request's time, and its size.

    python bench/bench_region_decoder.py [--model geoassist-mini] [--scenes 8] [--threads 2]

Each GeoSynth scene (unseen seeds, 256 px) is asked to ``detect`` buildings and to ``segment``
the trees through ``Assistant.ask``, one request at a time, as a user would. The baseline is
the whole request (``whole-request``: preprocessing, the tower, generation, the decoder and
the answer's parsing), measured in the same run; the decoder's part is the time spent in
``region_answer`` (scene map, the decoder's forward pass over the ``<seg>`` states, and the
geometry read from its maps). Times are CPU seconds of this process (``time.process_time``,
all threads) with wall seconds beside them; the first request of each task is a warm-up and
is not counted. A model that wrote no ``<seg>`` for a prompt spends nothing in the decoder:
the count of answers that carried geometry is printed with the times.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

BASELINE = "whole-request"
PROMPTS = (("detect", "buildings"), ("segment", "the trees"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="geoassist-mini", help="published name or checkpoint folder")
    parser.add_argument("--scenes", type=int, default=8)
    parser.add_argument("--seed", type=int, default=970_001, help="first GeoSynth seed (not a training seed)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import geoassist.model.region_answer as region_module
    from geoassist.assistant import Assistant
    from geoassist.synth.pipeline import make_sample

    assistant = Assistant.from_pretrained(args.model, device="cpu")
    model = assistant.model
    if model.region_decoder is None:
        raise SystemExit(f"{args.model} has no region decoder: nothing to measure")
    decoder_params = sum(p.numel() for p in model.region_decoder.parameters())
    total_params = sum(p.numel() for p in model.parameters())

    spent = {"cpu": 0.0, "wall": 0.0}
    original = region_module.region_answer

    def timed(*a, **k):
        c0, w0 = time.process_time(), time.perf_counter()
        try:
            return original(*a, **k)
        finally:
            spent["cpu"] += time.process_time() - c0
            spent["wall"] += time.perf_counter() - w0

    region_module.region_answer = timed
    images = [make_sample("hr", args.seed + i, 256).rgb for i in range(args.scenes + 1)]
    rows = []
    try:
        for task, prompt in PROMPTS:
            assistant.ask(images[0], prompt, task=task)  # warm-up
            spent.update(cpu=0.0, wall=0.0)
            cpu = wall = 0.0
            with_geometry = 0
            for image in images[1:]:
                c0, w0 = time.process_time(), time.perf_counter()
                answer = assistant.ask(image, prompt, task=task)
                cpu += time.process_time() - c0
                wall += time.perf_counter() - w0
                with_geometry += bool(answer.boxes or answer.masks or answer.polygons)
            n = len(images) - 1
            rows.append({
                "task": task, "requests": n, "answers_with_geometry": with_geometry,
                BASELINE + "_cpu_s": cpu / n, "decoder_cpu_s": spent["cpu"] / n,
                BASELINE + "_wall_s": wall / n, "decoder_wall_s": spent["wall"] / n,
                "decoder_share_cpu": spent["cpu"] / max(cpu, 1e-9),
            })  # fmt: skip
    finally:
        region_module.region_answer = original

    print(
        f"model {args.model}: region decoder {decoder_params:,} parameters "
        f"({100 * decoder_params / total_params:.2f} % of {total_params:,}); {args.scenes} GeoSynth scenes "
        f"(seeds {args.seed + 1}..{args.seed + args.scenes}), {args.threads} threads, one request at a time"
    )
    print(f"{'task':<8} {'geometry':>8} {BASELINE + ' CPU s':>18} {'decoder CPU s':>14} {'share':>7} {'whole wall s':>13}")
    for r in rows:
        print(
            f"{r['task']:<8} {r['answers_with_geometry']:>4}/{r['requests']:<3} {r[BASELINE + '_cpu_s']:>18.3f} "
            f"{r['decoder_cpu_s']:>14.4f} {100 * r['decoder_share_cpu']:>6.2f}% {r[BASELINE + '_wall_s']:>13.3f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"baseline": BASELINE, "decoder_parameters": decoder_params, "parameters": total_params, "rows": rows},
            indent=2,
        ))  # fmt: skip


if __name__ == "__main__":
    main()
