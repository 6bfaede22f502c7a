"""Knowledge-store benchmark: retrieval quality, search latency and build throughput.

1. Quality — the question set shipped with the corpus (``geoassist/rag/corpus/questions/
   retrieval.jsonl``: each question names the entry that answers it) against the default
   store: recall@1, recall@5 and MRR of all-MiniLM-L6-v2, against a BM25 baseline
   (rank-bm25's BM25Okapi over the same title + text, lower-cased word tokens) measured in
   the same run. A MiniLM + BM25 reciprocal-rank fusion is shown for reference.
2. Latency — synthetic 384-d vectors (the dimension of MiniLM) at 10k, 100k and 1M entries,
   searched through ``KnowledgeStore.search_vectors`` with k = 10 on one thread: p50/p95 time
   of one query, single-query QPS and batched QPS per core, for the exact flat index (the
   baseline) and the approximate IVF (the ``auto`` choice above 20k vectors) and HNSW (up to
   ``--hnsw-max``, 100k by default: its build is the slow part on 2 cores) indexes, with their
   recall@10 against the exact result. Times are the CPU time of the searching thread, so
   other processes on a shared machine do not inflate them; wall-clock p50 is printed too.
   Vectors come from a two-level mixture of random topic centres, as sentence embeddings
   cluster by topic; queries are fresh draws from the same mixture. ``--uniform`` adds
   isotropic noise vectors, the worst case for any approximate index.
3. Build throughput — the stages of ``kb build`` on Markdown made from the corpus: read and
   chunk, MiniLM embedding plus indexing (model loading excluded), and pre-computed vectors
   into an IVF index.

    python bench/bench_rag.py                       # everything, 1M included (a few minutes on 2 cores)
    python bench/bench_rag.py --sizes 10000 100000  # quicker
    python bench/bench_rag.py --skip-quality --uniform --hnsw-max 1000000
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import time

import numpy as np

from geoassist.rag import Entry, KnowledgeStore
from geoassist.rag.corpus import CORPUS_DIR, load_corpus, open_default
from geoassist.rag.embedders import Embedder, default_text_embedder

DIM = 384
K = 10


class Precomputed(Embedder):
    """Stands in for the text embedder of a store filled with synthetic vectors."""

    kind, modality, name, dim = "synthetic", "text", "synthetic-384", DIM

    def _encode(self, items, batch_size, show_progress):
        raise NotImplementedError("synthetic stores are searched with search_vectors")

    @property
    def probe(self):
        return np.ones(DIM, dtype=np.float32) / np.sqrt(DIM)


# --------------------------------------------------------------------------- quality
def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def quality() -> dict:
    from rank_bm25 import BM25Okapi

    questions = [
        json.loads(line)
        for line in (CORPUS_DIR / "questions" / "retrieval.jsonl").read_text().splitlines()
    ]
    store = open_default()
    corpus = list(store)
    ids = [e.id for e in corpus]
    gold = np.array([ids.index(q["answer_id"]) for q in questions])

    vectors = store.text_embedder.encode([q["question"] for q in questions])
    dense = np.full((len(questions), len(corpus)), -np.inf, dtype=np.float32)
    row_of = {e.id: i for i, e in enumerate(corpus)}
    for qi, hits in enumerate(store.search_vectors(vectors, k=len(corpus))):
        for h in hits:
            dense[qi, row_of[h.id]] = h.score
    bm25 = BM25Okapi([_tokens(e.embedding_text()) for e in corpus])
    lexical = np.array([bm25.get_scores(_tokens(q["question"])) for q in questions])

    def ranks(scores: np.ndarray) -> np.ndarray:
        order = np.argsort(-scores, axis=1, kind="stable")
        return np.argmax(order == gold[:, None], axis=1) + 1

    def metrics(r: np.ndarray) -> dict:
        return {
            "recall@1": float(np.mean(r <= 1)),
            "recall@5": float(np.mean(r <= 5)),
            "mrr": float(np.mean(1 / r)),
        }

    def rank_matrix(scores: np.ndarray) -> np.ndarray:
        return np.argsort(np.argsort(-scores, axis=1, kind="stable"), axis=1) + 1

    fused = 1 / (60 + rank_matrix(dense)) + 1 / (60 + rank_matrix(lexical))
    result = {
        "questions": len(questions),
        "entries": len(corpus),
        "bm25": metrics(ranks(lexical)),
        "minilm": metrics(ranks(dense)),
        "minilm+bm25 (RRF)": metrics(ranks(fused)),
    }
    print(f"\n## Retrieval quality ({len(questions)} questions, {len(corpus)} corpus entries)\n")
    print("| retriever | recall@1 | recall@5 | MRR |\n|---|---|---|---|")
    for name in ("bm25", "minilm", "minilm+bm25 (RRF)"):
        m = result[name]
        print(f"| {name} | {m['recall@1']:.3f} | {m['recall@5']:.3f} | {m['mrr']:.3f} |")
    b, d = result["bm25"], result["minilm"]
    print(
        f"\nMiniLM / BM25: recall@1 x{d['recall@1'] / b['recall@1']:.2f}, recall@5 x{d['recall@5'] / b['recall@5']:.2f}"
    )
    return result


# --------------------------------------------------------------------------- build
def _timed(fn):
    start, start_cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - start, time.process_time() - start_cpu


def build_throughput() -> dict:
    """``kb build``'s stages on Markdown made from the corpus: read + chunk, embed + index, index only."""
    import tempfile
    from pathlib import Path

    from geoassist.rag.ingest import read_entries

    corpus = load_corpus()
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(0, len(corpus), 4):  # 4 entries per document, one section each
            sections = [f"## {e.title}\n\n{e.text}\n\n{e.text}" for e in corpus[i : i + 4]]
            Path(tmp, f"doc{i:04d}.md").write_text(f"# Document {i}\n\n" + "\n\n".join(sections))
        (chunks, _), read_wall, read_cpu = _timed(lambda: read_entries(tmp))
    embedder = default_text_embedder()
    embedder.encode(["warm-up"])
    store = KnowledgeStore(embedder)
    _, embed_wall, embed_cpu = _timed(lambda: (store.add(chunks), store.search("warm", k=1)))

    rng = np.random.default_rng(0)
    vectors = _normalise(rng.standard_normal((100_000, DIM)).astype(np.float32))
    entries = [Entry(id=f"v{i}", text="synthetic") for i in range(len(vectors))]
    fast = KnowledgeStore(Precomputed(), index="ivf")
    _, index_wall, index_cpu = _timed(
        lambda: (fast.add_embedded(entries, vectors), fast.search_vectors(vectors[:1], k=1))
    )
    n = len(chunks)
    result = {
        "chunks": n,
        "read_and_chunk_chunks_per_s": n / read_wall,
        "embed_and_index_chunks_per_s": n / embed_wall,
        "embed_and_index_chunks_per_cpu_s": n / embed_cpu,
        "ivf_index_vectors_per_s": len(vectors) / index_wall,
        "ivf_index_vectors_per_cpu_s": len(vectors) / index_cpu,
    }
    print("\n## Build throughput (kb build stages; CPU seconds count all threads)\n")
    print(f"- read + chunk {n} Markdown chunks: {read_wall:.2f} s = {n / read_wall:.0f} chunks/s")
    print(
        f"- MiniLM embed + flat index: {embed_wall:.1f} s wall, {embed_cpu:.1f} s CPU = "
        f"{n / embed_wall:.1f} chunks/s ({n / embed_cpu:.1f} chunks per CPU-second)"
    )
    print(
        f"- pre-computed vectors into IVF (train + add), 100k: {index_wall:.1f} s wall, {index_cpu:.1f} s CPU = "
        f"{len(vectors) / index_wall:.0f} vectors/s ({len(vectors) / index_cpu:.0f} per CPU-second)"
    )
    return result


# --------------------------------------------------------------------------- latency
def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def synthetic(
    n: int, n_queries: int, seed: int, uniform: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors in a two-level mixture, and queries from the same mixture.

    Topics (one per 10,000 vectors) hold sub-topics (one per 100 vectors); a vector is its
    sub-topic's centre plus noise, with cosine about 0.7 to its sub-topic and about 0.5 to its
    topic, so neighbourhoods overlap the way topical text embeddings do. ``uniform`` gives
    isotropic noise instead: no structure at all, the worst case for an approximate index.
    """
    rng = np.random.default_rng(seed)
    if uniform:
        return (
            _normalise(rng.standard_normal((n, DIM), dtype=np.float32)),
            _normalise(rng.standard_normal((n_queries, DIM), dtype=np.float32)),
        )

    def around(centres: np.ndarray, spread: float) -> np.ndarray:
        noise = rng.standard_normal(centres.shape, dtype=np.float32) * (spread / np.sqrt(DIM))
        return _normalise(centres + noise)

    topics = _normalise(rng.standard_normal((max(n // 10_000, 4), DIM), dtype=np.float32))
    subtopics = around(topics[rng.integers(0, len(topics), max(n // 100, 10))], 0.9)
    data = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        data[start:stop] = around(subtopics[rng.integers(0, len(subtopics), stop - start)], 1.0)
    queries = around(subtopics[rng.integers(0, len(subtopics), n_queries)], 1.0)
    return data, queries


def measure(store: KnowledgeStore, queries: np.ndarray, n_single: int) -> tuple[dict, np.ndarray]:
    import faiss

    store.search_vectors(queries[:1], k=K)  # builds / trains the index
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)  # one query at a time runs on one thread, as a server worker would
    cpu, wall = [], []
    for q in queries[:n_single]:
        start, start_cpu = time.perf_counter(), time.thread_time()
        store.search_vectors(q[None], k=K)
        cpu.append(time.thread_time() - start_cpu)
        wall.append(time.perf_counter() - start)
    # The batch also runs on one thread: throughput per core, free of thread spin and contention.
    start, start_cpu = time.perf_counter(), time.thread_time()
    results = store.search_vectors(queries, k=K)
    batch_cpu, batch_wall = time.thread_time() - start_cpu, time.perf_counter() - start
    faiss.omp_set_num_threads(threads)
    rows = np.array([[int(h.id[1:]) for h in hits] + [-1] * (K - len(hits)) for hits in results])
    cpu_ms, wall_ms = np.array(cpu) * 1000, np.array(wall) * 1000
    return {
        "p50_ms": float(np.percentile(cpu_ms, 50)),
        "p95_ms": float(np.percentile(cpu_ms, 95)),
        "single_qps": float(1000 / statistics.mean(cpu_ms)),
        "batch_qps_per_core": float(len(queries) / max(batch_cpu, 1e-9)),
        "wall_p50_ms": float(np.percentile(wall_ms, 50)),
        "wall_batch_qps": float(len(queries) / batch_wall),
    }, rows


def latency(
    sizes: list[int], n_queries: int, n_single: int, hnsw_max: int, uniform: bool
) -> list[dict]:
    rows_out = []
    print("\n## Search latency (384-d, k = 10; exact flat is the baseline)\n")
    print(
        "Times are CPU time of the searching thread(s), which other processes on a shared machine"
    )
    print("do not inflate; the wall-clock p50 is shown for comparison. Build includes training.\n")
    print(
        "| entries | data | index | build CPU s | p50 ms | p95 ms | QPS (1 query, 1 core) | QPS (batch, per core)"
        " | recall@10 | speed-up vs flat (p50) | wall p50 ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    cases = [(n, False) for n in sizes] + ([(min(sizes[-1], 100_000), True)] if uniform else [])
    for n, is_uniform in cases:
        data, queries = synthetic(n, n_queries, seed=n, uniform=is_uniform)
        entries = [Entry(id=f"v{i}", text="synthetic") for i in range(n)]
        exact = None
        flat_p50 = None
        for kind in ("flat", "ivf", "hnsw"):
            if kind == "hnsw" and n > hnsw_max:
                continue
            store = KnowledgeStore(Precomputed(), index=kind)
            start, start_cpu = time.perf_counter(), time.process_time()
            store.add_embedded(entries, data)
            store.search_vectors(queries[:1], k=K)
            build, build_wall = time.process_time() - start_cpu, time.perf_counter() - start
            stats, found = measure(store, queries, n_single)
            plan = store.describe()["spaces"]["text"]["index"]
            if kind == "flat":
                exact, flat_p50 = found, stats["p50_ms"]
            recall = float(
                np.mean([len(set(a) & set(b)) / K for a, b in zip(found, exact, strict=True)])
            )
            label = plan["kind"] + (
                f" nlist={plan['nlist']} nprobe={plan['nprobe']}" if plan["kind"] == "ivf" else ""
            )
            label += f" M={plan['m']} ef={plan['ef_search']}" if plan["kind"] == "hnsw" else ""
            row = {
                "entries": n,
                "data": "uniform" if is_uniform else "clustered",
                "index": label,
                "build_cpu_s": build,
                "build_wall_s": build_wall,
                "recall@10": recall,
                "speedup_vs_flat": flat_p50 / stats["p50_ms"],
                **stats,
            }
            rows_out.append(row)
            print(
                f"| {n:,} | {row['data']} | {label} | {build:.1f} | {stats['p50_ms']:.2f} | {stats['p95_ms']:.2f} | "
                f"{stats['single_qps']:.0f} | {stats['batch_qps_per_core']:.0f} | {recall:.3f} | "
                f"x{row['speedup_vs_flat']:.1f} | {stats['wall_p50_ms']:.2f} |",
                flush=True,
            )
            del store
        del data, entries
    return rows_out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument(
        "--queries", type=int, default=300, help="queries for recall and batched QPS"
    )
    parser.add_argument("--single", type=int, default=200, help="one-at-a-time queries for p50/p95")
    parser.add_argument(
        "--hnsw-max",
        type=int,
        default=100_000,
        help="skip HNSW above this size (its build is slow on 2 cores)",
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="FAISS threads for builds (0: all cores)"
    )
    parser.add_argument(
        "--uniform", action="store_true", help="also run isotropic noise (worst case)"
    )
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)

    import faiss

    if args.threads:
        faiss.omp_set_num_threads(args.threads)
    print(
        f"faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads for builds, 1 for searches"
    )
    results: dict = {}
    if not args.skip_quality:
        results["quality"] = quality()
        results["build"] = build_throughput()
    results["latency"] = latency(
        sorted(args.sizes), args.queries, args.single, args.hnsw_max, args.uniform
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
