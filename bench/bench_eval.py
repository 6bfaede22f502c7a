"""Items/s of `geoassist eval rsvqa` with batching, against a one-item-at-a-time loop.

Baseline (measured in the same process, on the same model and records): a plain loop of
``assistant.ask(image, prompt)``, one request at a time. Contenders: the harness
(``geoassist.eval.evaluate``, which batches requests through ``Assistant.ask_batch`` with
left padding and the KV cache) at batch sizes 1, 8 and 16. All runs decode greedily with the
same answer-length limit, so they do the same work; the script checks that every run gives
the baseline's answers. Settings take turns over ``--repeats`` rounds and the median is
shown, as items/s (wall clock) and as items per CPU-second of the process (steadier on a
shared machine).

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


def differing(answers: dict) -> list:
    """The settings whose answers differ from the one-at-a-time loop's (``answers["loop"]``)."""
    return [key for key in answers if key != "loop" and answers[key] != answers["loop"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="mini")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--n", type=int, default=48, help="questions per run")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 16])
    parser.add_argument(
        "--repeats", type=int, default=3, help="rounds; each setting's median is shown"
    )
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)

    import torch

    from geoassist.assistant import Assistant
    from geoassist.eval import evaluate
    from geoassist.eval.harness import _request

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.threads:
        torch.set_num_threads(args.threads)
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

    def timed(work):
        """Wall seconds, CPU seconds of this process (all threads) and the answers."""
        sync()
        wall, cpu = time.perf_counter(), time.process_time()
        answers = work()
        sync()
        return time.perf_counter() - wall, time.process_time() - cpu, answers

    def loop() -> list[str]:
        return [assistant.ask(**req, max_new_tokens=args.max_new_tokens).raw for req in requests]

    def harness(batch_size: int, out: str) -> list[str]:
        report = evaluate(
            "rsvqa", records, assistant, root, out, batch_size=batch_size,
            max_new_tokens=args.max_new_tokens, progress=False, plots=False,
        )  # fmt: skip
        lines = [
            json.loads(line) for line in (Path(out) / "predictions.jsonl").read_text().splitlines()
        ]
        assert report["n"] == len(records) == len(lines)
        by_id = {line["id"]: line["prediction"] for line in lines}
        return [by_id[r["id"]] for r in records]

    # Settings take turns round by round, so that a busy machine slows them alike. CPU time
    # is reported beside wall time: on a shared machine it varies much less.
    out = tempfile.mkdtemp()
    runs = {"loop": loop, **{b: (lambda b=b: harness(b, out)) for b in args.batch_sizes}}
    walls: dict = {key: [] for key in runs}
    cpus: dict = {key: [] for key in runs}
    answers: dict = {}
    for round_ in range(args.repeats):
        for key, run in runs.items():
            wall, cpu, answers[key] = timed(run)
            walls[key].append(wall)
            cpus[key].append(cpu)
            name = "loop" if key == "loop" else f"batch {key}"
            print(
                f"  round {round_ + 1}: {name}: {len(records) / wall:.2f} items/s, "
                f"{len(records) / cpu:.2f} items per CPU-second",
                file=sys.stderr,
                flush=True,
            )
    n = len(records)
    rate = {key: n / statistics.median(t) for key, t in walls.items()}
    cpu_rate = {key: n / statistics.median(t) for key, t in cpus.items()}
    print(
        f"{'run':<36} {'batch':>5} {'items/s':>9} {'vs loop':>8} {'items/CPU-s':>12} {'vs loop':>8}  same answers"
    )
    for key in runs:
        name = "one-at-a-time loop (assistant.ask)" if key == "loop" else "geoassist eval rsvqa"
        same = "baseline" if key == "loop" else ("yes" if answers[key] == answers["loop"] else "NO")
        print(
            f"{name:<36} {'-' if key == 'loop' else key:>5} {rate[key]:>9.2f} {rate[key] / rate['loop']:>7.2f}x "
            f"{cpu_rate[key]:>12.2f} {cpu_rate[key] / cpu_rate['loop']:>7.2f}x  {same}"
        )
    bad = differing(answers)
    if bad:
        # Batched answers must equal the loop's; a speed-up that changes answers is a bug.
        print(
            f"error: batch size(s) {', '.join(map(str, bad))} gave answers that differ from the "
            "one-at-a-time loop",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
