"""The knowledge-store benchmark script runs (on a tiny size) and reports what it promises."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parents[1] / "bench" / "bench_rag.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_rag", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_synthetic_vectors_are_unit_and_clustered():
    bench = load_bench()
    data, queries = bench.synthetic(3000, 20, seed=0)
    assert data.shape == (3000, 384) and queries.shape == (20, 384)
    np.testing.assert_allclose(np.linalg.norm(data, axis=1), 1, atol=1e-5)
    top = np.sort(queries @ data.T, axis=1)[:, -1]
    assert top.mean() > 0.4 > float(np.abs(data[:100] @ data[100:200].T).mean())
    uniform, _ = bench.synthetic(500, 5, seed=0, uniform=True)
    assert float(np.abs(uniform[:100] @ uniform[100:200].T).mean()) < 0.1


def test_latency_table_on_a_small_size(capsys):
    bench = load_bench()
    rows = bench.latency([2000], n_queries=20, n_single=5, hnsw_max=2000, uniform=False)
    kinds = [r["index"].split()[0] for r in rows]
    assert kinds == ["flat", "ivf", "hnsw"]
    assert rows[0]["recall@10"] == 1.0 and all(0 <= r["recall@10"] <= 1 for r in rows)
    assert all(r["p50_ms"] > 0 and r["batch_qps_per_core"] > 0 for r in rows)
    assert "speed-up vs flat" in capsys.readouterr().out
