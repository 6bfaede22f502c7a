"""The benchmark scripts run end to end with tiny models (the real runs are documented in
docs/PERFORMANCE.md), and bench/gpu.sh does its whole job on the CPU with tiny shapes."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_inference_bench_compares_both_sides_on_the_same_tokens(tmp_path, capsys):
    bench = _load("inference")
    out = tmp_path / "r.json"
    args = ["--model", "tiny", "--runs", "1", "--new-tokens", "3", "--batches", "3"]
    assert bench.main([*args, "--no-memory", "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    assert set(results) >= {"meta", "single", "batch3", "followup"}
    for key in ("single", "batch3", "followup"):
        row = results[key]
        assert row["ratio"] == pytest.approx(row["geoassist_s"] / row["hf_s"])
        assert row["same_tokens"], key  # same weights, greedy: the same answers on both sides
    assert results["single"]["hf_ttft_s"] > 0
    assert "followup" in capsys.readouterr().out


def test_inference_bench_exits_non_zero_when_the_sides_differ(tmp_path, monkeypatch, capsys):
    bench = _load("inference")
    answer = bench.GeoAssistSide.answer

    def off_by_one(self, *args, **kwargs):  # a broken export or generation path, simulated
        return [[t + 1 for t in row] for row in answer(self, *args, **kwargs)]

    monkeypatch.setattr(bench.GeoAssistSide, "answer", off_by_one)
    out = tmp_path / "r.json"
    args = ["--model", "tiny", "--runs", "1", "--new-tokens", "2", "--batches", "2"]
    assert bench.main([*args, "--no-memory", "--json", str(out)]) == 1
    captured = capsys.readouterr()
    assert "TOKENS DIFFER" in captured.out and "single, batch2, followup" in captured.err
    # the figures are still written, for whoever investigates
    assert json.loads(out.read_text())["single"]["same_tokens"] is False


def test_archive_bench_exits_non_zero_when_batched_answers_differ(tmp_path, monkeypatch):
    import geoassist.batch

    bench = _load("inference")
    run_archive = geoassist.batch.run_archive

    def garbled(assistant, requests, out, **kwargs):
        run_archive(assistant, requests, out, **kwargs)
        lines = [json.loads(line) for line in out.read_text().splitlines()]
        lines[0]["raw"] += " extra"
        out.write_text("".join(json.dumps(line) + "\n" for line in lines))

    monkeypatch.setattr(geoassist.batch, "run_archive", garbled)
    args = ["--model", "tiny", "--archive", "3", "--archive-batch", "2", "--new-tokens", "2"]
    assert bench.main(args) == 1


def test_eval_bench_agrees_with_the_loop_and_fails_when_it_does_not(monkeypatch, capsys):
    bench = _load("bench_eval")
    args = ["--model", "tiny", "--n", "4", "--max-new-tokens", "2", "--batch-sizes", "1", "3"]
    assert bench.main([*args, "--repeats", "1"]) == 0
    assert " NO" not in capsys.readouterr().out
    assert bench.differing({"loop": ["a", "b"], 1: ["a", "b"], 8: ["a", "c"]}) == [8]

    import geoassist.eval

    evaluate = geoassist.eval.evaluate

    def batch_bug(*a, **k):  # the harness answers the first item of a batch of 3 wrongly
        report = evaluate(*a, **k)
        if k.get("batch_size") == 3:
            path = Path(a[4]) / "predictions.jsonl"
            lines = [json.loads(line) for line in path.read_text().splitlines()]
            lines[0]["prediction"] = "not what the loop said"
            path.write_text("".join(json.dumps(line) + "\n" for line in lines))
        return report

    monkeypatch.setattr(geoassist.eval, "evaluate", batch_bug)
    assert bench.main([*args, "--repeats", "1"]) == 1
    assert "batch size(s) 3 gave answers that differ" in capsys.readouterr().err


def test_memory_worker_loads_each_side_and_answers(tmp_path, capsys, tiny_model):
    import numpy as np

    from geoassist.export import export_hf_llava

    bench = _load("inference")
    folder = export_hf_llava(tiny_model, tmp_path / "hf")
    images = tmp_path / "images.npy"
    np.save(images, np.zeros((2, 32, 32, 3), dtype=np.uint8))
    for side in ("hf", "geoassist"):
        bench.memory_worker(side, "tiny", str(folder), str(images), 2, 2)
        assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["peak_rss_mb"] > 50


@pytest.mark.slow
def test_inference_bench_measures_peak_memory_in_fresh_processes(tmp_path):
    bench = _load("inference")
    out = tmp_path / "r.json"
    args = ["--model", "tiny", "--runs", "1", "--new-tokens", "2", "--batches", "2", "--memory"]
    assert bench.main([*args, "--json", str(out)]) == 0
    results = json.loads(out.read_text())
    for key in ("single", "batch2"):
        assert results[key]["hf_peak_rss_mb"] > 100 and results[key]["geoassist_peak_rss_mb"] > 100


def test_train_bench_reads_the_default_preset_stage2():
    bench = _load("train")
    settings = bench.preset_stage2()
    assert settings["batch_size"] >= 1 and settings["max_length"] >= 64
    assert settings["lora"]["r"] >= 1


def test_scale_step_flops_and_model_shapes():
    bench = _load("train")
    config = bench.scale_config("real")
    vision = config.vision.resolved()
    assert (vision.image_size, vision.patch_size, vision.width) == (336, 14, 1024)
    assert config.lm.arch["hidden_size"] == 4096 and config.num_image_tokens == 576
    model = bench.build_scale_model("tiny", "cpu")
    batch = bench.synthetic_batch(model, 2, 32, "cpu")
    assert bench.model_flops_per_step(model, batch, True) > bench.model_flops_per_step(
        model, batch, False
    )


@pytest.mark.slow  # about half a minute: three fresh Python processes
def test_gpu_script_runs_with_tiny_shapes_on_cpu(tmp_path):
    env = {**os.environ, "GEOASSIST_GPU_SCALE": "tiny", "PYTHON": sys.executable}
    env["GEOASSIST_WHEELS"] = str(tmp_path / "no-wheels")
    done = subprocess.run(
        ["bash", str(BENCH / "gpu.sh"), str(tmp_path / "out")],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = tmp_path / "out"
    table = (out / "gpu.md").read_text()
    assert "| lora |" in table and "| 32 |" in table and "| 1 |" in table
    train = json.loads((out / "train.json").read_text())
    assert train["rows"][0]["mode"] == "lora" and train["rows"][0]["step_s"] > 0
    gen = json.loads((out / "inference.json").read_text())
    assert gen["batch1"]["same_tokens"] and gen["batch32"]["same_tokens"]
    assert "scale: tiny" in (out / "environment.txt").read_text()


def test_archive_bench_batched_equals_the_ask_loop(tmp_path):
    bench = _load("inference")
    out = tmp_path / "a.json"
    args = ["--model", "tiny", "--archive", "5", "--archive-batch", "2", "--new-tokens", "3"]
    assert bench.main([*args, "--json", str(out)]) == 0
    row = json.loads(out.read_text())["archive"]
    assert row["images"] == 5 and row["same_answers"] and row["batch_images_per_s"] > 0
