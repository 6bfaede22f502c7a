"""Latency of the app's ``ask`` endpoint under concurrent users, against the same requests one at a time.

Starts ``geoassist serve`` in a child process on a free loopback port (or uses ``--url``),
then sends N ``/ask`` requests through gradio_client, each from its own client:

- baseline ``serial``: one request at a time, so each latency is the model's answer time
  plus the app's own overhead (upload, queue, streaming);
- contender ``concurrent``: all N at once, as N analysts pressing Send together; the queue
  runs ``--concurrency`` of them at a time and the rest wait.

It prints p50/p95 latency and throughput of both, and their ratio, and fails if any request
errs. Both runs ask the same question about the same image with the same answer-length limit.

    python bench/bench_app_load.py                          # tiny model, 8 users, concurrency 2
    python bench/bench_app_load.py --model mini --n 16 --concurrency 4
    python bench/bench_app_load.py --url http://127.0.0.1:7860/   # an app already running
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0–100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, round(q / 100 * len(ordered) + 0.5 - 1e-9))
    return ordered[min(rank, len(ordered)) - 1]


def run(url: str, n: int, image: Path, prompt: str, task: str, concurrent: bool) -> dict:
    from gradio_client import Client, handle_file

    clients = [Client(url, verbose=False) for _ in range(n)]
    start_gate = threading.Barrier(n if concurrent else 1)

    def one(client) -> float:
        start_gate.wait()
        start = time.perf_counter()
        text = client.predict(handle_file(str(image)), prompt, task, api_name="/ask")
        if not isinstance(text, str):
            raise RuntimeError(f"/ask returned {type(text).__name__}, not text")
        return time.perf_counter() - start

    wall_start = time.perf_counter()
    if concurrent:
        with ThreadPoolExecutor(n) as pool:
            latencies = list(pool.map(one, clients))
    else:
        latencies = [one(c) for c in clients]
    wall = time.perf_counter() - wall_start
    return {
        "n": n,
        "p50_s": statistics.median(latencies),
        "p95_s": percentile(latencies, 95),
        "max_s": max(latencies),
        "wall_s": wall,
        "req_per_s": n / wall,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--url", help="an app already running (then --model etc. are its own)")
    parser.add_argument("--n", type=int, default=8, help="simultaneous users (default 8)")
    parser.add_argument("--concurrency", type=int, default=2, help="the app's --concurrency")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--image", type=Path, default=REPO / "examples" / "residential.png")
    parser.add_argument("--prompt", default="buildings")
    parser.add_argument("--task", default="detect")
    args = parser.parse_args(argv)

    from geoassist.app.server import AppProcess

    serve_args = (
        "--model", args.model, "--concurrency", str(args.concurrency),
        "--max-new-tokens", str(args.max_new_tokens), "--max-queue", str(max(32, 2 * args.n)),
    )  # fmt: skip
    app = nullcontext() if args.url else AppProcess(*serve_args)
    with app as process:
        url = args.url or process.url
        if process is not None:
            print(f"app: {args.model} at {url}, started in {process.startup_s:.1f} s")
        run(url, 1, args.image, args.prompt, args.task, concurrent=False)  # warm-up
        serial = run(url, args.n, args.image, args.prompt, args.task, concurrent=False)
        together = run(url, args.n, args.image, args.prompt, args.task, concurrent=True)

    print(
        f"\n{args.n} × /ask ({args.task}: {args.prompt!r}, max {args.max_new_tokens} new tokens, "
        f"concurrency {args.concurrency})"
    )
    print(f"{'run':<12} {'p50 s':>8} {'p95 s':>8} {'max s':>8} {'wall s':>8} {'req/s':>8}")
    for name, r in (("serial", serial), ("concurrent", together)):
        print(
            f"{name:<12} {r['p50_s']:>8.2f} {r['p95_s']:>8.2f} {r['max_s']:>8.2f} "
            f"{r['wall_s']:>8.2f} {r['req_per_s']:>8.2f}"
        )
    print(
        f"\nconcurrent vs serial: throughput ×{together['req_per_s'] / serial['req_per_s']:.2f}, "
        f"p50 latency ×{together['p50_s'] / serial['p50_s']:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
