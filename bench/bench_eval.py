"""Items/s of `geoassist eval rsvqa` with batching, against a one-item-at-a-time loop.

Baseline (measured in the same process, on the same model and records): a plain loop of
``assistant.ask(image, prompt)``, one request at a time. Contenders: the harness
(``geoassist.eval.evaluate``, which batches requests through ``Assistant.ask_batch`` with
left padding and the KV cache) at batch sizes 1, 8 and 16. All runs decode greedily with the
same answer-length limit, so they do the same work; the script checks that every run gives
the baseline's answers.

    python bench/bench_eval.py                      # mini on CPU, 48 RSVQA-LR questions
    python bench/bench_eval.py --n 96 --device cuda --batch-sizes 1 8 16 32

Records are the real RSVQA-LR excerpt in ../shared/rs-samples when it is there (set
GEOASSIST_RS_SAMPLES), otherwise GeoSynth scenes with RSVQA-style questions.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RS_SAMPLES = Path(os.environ.get("GEOASSIST_RS_SAMPLES", REPO.parent / "shared" / "rs-samples"))


def load_records(n: int):
    from geoassist.eval.harness import sample_records, select_records

    lr = RS_SAMPLES / "rsvqa" / "LR_reduced"
    if lr.is_dir():
        from geoassist.eval.data import load_eval_data

        records, root = load_eval_data(lr, task="rsvqa")
        source = f"RSVQA-LR excerpt ({lr})"
    else:
        from geoassist.data_recipes import load_records as recipe_records

        records, root = recipe_records("seed=0,size=256,kinds=hr", recipe="geosynth", split="test")
        source = "GeoSynth test scenes (real samples not found)"
    records, _ = select_records(records, "rsvqa")
    return sample_records(records, n), root, source


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="mini")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n", type=int, default=48, help="questions per run")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument(
        "--repeats", type=int, default=1, help="runs per setting; the median is shown"
    )
    args = parser.parse_args(argv)

    import torch

    from geoassist.assistant import Assistant
    from geoassist.eval import evaluate
    from geoassist.eval.harness import _request

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    records, root, source = load_records(args.n)
    t0 = time.perf_counter()
    assistant = Assistant.from_pretrained(args.model, device=args.device)
    load_s = time.perf_counter() - t0
    device = (
        torch.cuda.get_device_name(0)
        if args.device.startswith("cuda")
        else f"cpu ({torch.get_num_threads()} threads)"
    )
    print(
        f"model {args.model} on {device}, loaded in {load_s:.1f} s; {len(records)} questions from {source}"
    )
    print(f"greedy decoding, at most {args.max_new_tokens} new tokens per answer\n")

    requests = [_request(r, root) for r in records]
    assistant.ask(**requests[0], max_new_tokens=args.max_new_tokens)  # warm-up

    def sync() -> None:
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    def loop() -> tuple[float, list[str]]:
        sync()
        start = time.perf_counter()
        answers = [assistant.ask(**req, max_new_tokens=args.max_new_tokens).raw for req in requests]
        sync()
        return time.perf_counter() - start, answers

    def harness(batch_size: int) -> tuple[float, list[str]]:
        with tempfile.TemporaryDirectory() as out:
            sync()
            start = time.perf_counter()
            report = evaluate(
                "rsvqa", records, assistant, root, out, batch_size=batch_size,
                max_new_tokens=args.max_new_tokens, progress=False, plots=False,
            )  # fmt: skip
            sync()
            seconds = time.perf_counter() - start
            lines = [
                json.loads(line)
                for line in (Path(out) / "predictions.jsonl").read_text().splitlines()
            ]
        assert report["n"] == len(records) == len(lines)
        by_id = {line["id"]: line["prediction"] for line in lines}
        return seconds, [by_id[r["id"]] for r in records]

    # Settings take turns round by round, so a busy machine slows them alike.
    runs = {"loop": loop, **{b: (lambda b=b: harness(b)) for b in args.batch_sizes}}
    times: dict = {key: [] for key in runs}
    answers: dict = {}
    for round_ in range(args.repeats):
        for key, run in runs.items():
            seconds, answers[key] = run()
            times[key].append(seconds)
            name = "loop" if key == "loop" else f"batch {key}"
            print(
                f"  round {round_ + 1}: {name}: {len(records) / seconds:.2f} items/s",
                file=sys.stderr,
                flush=True,
            )
    rate = {key: len(records) / statistics.median(t) for key, t in times.items()}
    rows = [("one-at-a-time loop (assistant.ask)", "-", rate["loop"], 1.0, "baseline")]
    for b in args.batch_sizes:
        same = "yes" if answers[b] == answers["loop"] else "NO"
        rows.append(("geoassist eval rsvqa", str(b), rate[b], rate[b] / rate["loop"], same))

    print(f"{'run':<36} {'batch':>5} {'items/s':>9} {'vs loop':>8}  same answers")
    for name, batch, rate, ratio, same in rows:
        print(f"{name:<36} {batch:>5} {rate:>9.2f} {ratio:>7.2f}x  {same}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
