"""GeoAssist against transformers' LLaVA on the same weights: one image + question, batches, follow-ups.

    python bench/inference.py                       # the default model, 5 runs per setting
    python bench/inference.py --quick               # a reduced run, under a minute
    python bench/inference.py --json out.json --runs 7 --new-tokens 16

Baseline, measured in the same process on the same inputs: the model exported with
``geoassist.export.build_hf_llava`` (the HF LLaVA layout ``geoassist export`` writes) and run
the way a transformers user runs it — ``LlavaProcessor`` (image processor, chat template,
tokenizer), ``LlavaForConditionalGeneration.generate``, ``decode``. GeoAssist runs through its
public API, ``Assistant.ask`` / ``Assistant.ask_batch``, from the same image arrays and
questions. Both sides decode greedily and ignore the end token, so both generate exactly
``--new-tokens`` tokens per answer (as vLLM's ``ignore_eos``), and the script checks that they
generate the same tokens.

Settings: ``single`` (one request), ``batch8`` and ``batch32`` (different images and
questions, left-padded), and ``followup``: a second question on the same image after a first
answer — HF runs the whole conversation again (what its generate does); GeoAssist reuses the
first turn's keys and values and the image features. Per setting: median total latency over
``--runs`` runs (the two sides alternate), time to first token (a 1-token run), tokens/s, and
peak memory: on CPU the peak RSS of a fresh process that loads one side (GeoAssist from its
checkpoint, HF from the folder ``geoassist export`` writes) and answers once, for ``single``
and the largest batch; on CUDA the allocator peak a run adds. ``ratio`` is GeoAssist time / HF
time.

Stock LLaVA has no token pooling, so a model with ``token_pool > 1`` (the default
``geoassist-mini`` pools 2×2) is compared as its unpooled variant — the same weights with one
visual token per patch on both sides; the pooled model's own GeoAssist time is printed too.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

QUESTIONS = [
    "How many buildings are in the image?",
    "Is there a road in the image?",
    "Describe the image.",
    "What is the main land cover?",
    "Are there more trees than buildings?",
    "Is there any water in the scene?",
    "What kind of area is this: urban or rural?",
    "Where is the largest building?",
]
FOLLOW_UP = "Where are they located?"


def default_model() -> str:
    from geoassist.checkpoint import PRETRAINED, weights_dir

    folder = weights_dir() / PRETRAINED["geoassist-mini"]["folder"]
    return "geoassist-mini" if (folder / "config.json").is_file() else "mini"


def make_images(n: int, size: int, seed: int = 0):
    """GeoSynth scenes (uint8 RGB arrays) — realistic content, no files needed."""
    import numpy as np

    try:
        from geoassist.synth import generate_scene

        return [
            np.asarray(generate_scene(seed=seed + i, size=size).image)[..., :3] for i in range(n)
        ]
    except Exception:  # the generator's API is not this script's subject; noise will do
        rng = np.random.default_rng(seed)
        return [rng.integers(0, 255, (size, size, 3), dtype=np.uint8) for _ in range(n)]


# ------------------------------------------------------------------ memory
class PeakMemory:
    """Peak memory added while the block runs: allocator peak on CUDA, sampled RSS on CPU."""

    def __init__(self, device: str):
        self.device = device
        self.peak_mb = 0.0

    @staticmethod
    def _rss_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    def __enter__(self):
        import torch

        gc.collect()
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._base = torch.cuda.memory_allocated() / 2**20
            return self
        self._base = self._rss_mb()
        self._peak = self._base
        self._stop = threading.Event()

        def sample():
            while not self._stop.wait(0.002):
                self._peak = max(self._peak, self._rss_mb())

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        import torch

        if self.device.startswith("cuda"):
            torch.cuda.synchronize()
            self.peak_mb = torch.cuda.max_memory_allocated() / 2**20 - self._base
        else:
            self._stop.set()
            self._thread.join()
            self.peak_mb = max(self._peak, self._rss_mb()) - self._base
        return False


# ------------------------------------------------------------------- sides
class HFSide:
    """transformers' LLaVA, used as documented: processor → generate → decode."""

    name = "HF LLaVA"

    def __init__(self, llava, processor):
        self.llava, self.processor = llava, processor
        llava.generation_config.eos_token_id = None  # ignore the end token: fixed answer length
        self.eos = None

    def _prompt(self, question: str, history: list[tuple[str, str]] = ()) -> str:
        messages = []
        for i, (q, a) in enumerate(history):
            content = [{"type": "image"}, {"type": "text", "text": q}] if i == 0 else q
            messages += [{"role": "user", "content": content}, {"role": "assistant", "content": a}]
        content = [{"type": "text", "text": question}]
        if not history:
            content.insert(0, {"type": "image"})
        messages.append({"role": "user", "content": content})
        return self.processor.apply_chat_template(messages, add_generation_prompt=True)

    def answer(self, images, questions, new_tokens: int, history=()) -> list[list[int]]:
        import torch

        prompts = [self._prompt(q, history) for q in questions]
        inputs = self.processor(
            images=list(images), text=prompts, return_tensors="pt", padding=True
        )
        inputs = {k: v.to(self.llava.device) for k, v in inputs.items()}
        with torch.inference_mode():
            out = self.llava.generate(
                **inputs, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False
            )
        new = out[:, inputs["input_ids"].shape[1] :]
        self.texts = self.processor.batch_decode(new, skip_special_tokens=True)
        return new.tolist()


class GeoAssistSide:
    """GeoAssist through its public API."""

    name = "GeoAssist"

    def __init__(self, assistant):
        self.assistant = assistant
        self.tokens: list[list[int]] = []
        model = assistant.model
        original = model.generate_steps

        def record(*args, **kwargs):
            for step in original(*args, **kwargs):
                self.tokens.append(step.tolist())
                yield step

        model.generate_steps = record

    @contextlib.contextmanager
    def ignoring_end_token(self):
        model = self.assistant.model
        end = model.end_token_id
        model.end_token_id = -1
        try:
            yield
        finally:
            model.end_token_id = end

    def _rows(self) -> list[list[int]]:
        return [list(row) for row in zip(*self.tokens, strict=True)] if self.tokens else []

    def answer(
        self, images, questions, new_tokens: int, history=None, fresh: bool = True
    ) -> list[list[int]]:
        """``fresh`` forgets the previous request first (a new request, not a follow-up)."""
        self.tokens = []
        prefix = self.assistant._prefix_cache()
        if fresh and prefix is not None:
            prefix.clear()
        with self.ignoring_end_token():
            if len(images) == 1 and len(questions) == 1:
                self.last = self.assistant.ask(
                    images[0], questions[0], history=history, max_new_tokens=new_tokens
                )
            else:
                requests = [
                    {"image": im, "prompt": q} for im, q in zip(images, questions, strict=True)
                ]
                self.assistant.ask_batch(
                    requests, batch_size=len(requests), max_new_tokens=new_tokens
                )
        return self._rows()


class ModelSide(GeoAssistSide):
    """GeoAssist's model directly (render → ``GeoAssistModel.generate``), for machines that have
    only torch and transformers: the image arrives through the same image processor as HF's."""

    def __init__(self, model, image_processor, device: str):
        self.model, self.image_processor, self.device = model, image_processor, device

    @contextlib.contextmanager
    def ignoring_end_token(self):
        end = self.model.end_token_id
        self.model.end_token_id = -1
        try:
            yield
        finally:
            self.model.end_token_id = end

    def answer(self, images, questions, new_tokens: int, history=None, fresh=True):
        from geoassist.chat import collate, render

        model = self.model
        rendered = [
            render(
                [
                    {"role": "system", "content": model.config.system_prompt},
                    {"role": "user", "content": f"<image>\n{q}"},
                ],
                model.tokenizer,
                num_image_tokens=model.config.num_image_tokens,
                image_token_id=model.image_token_id,
                add_generation_prompt=True,
            )
            for q in questions
        ]
        batch = collate(rendered, model.pad_token_id)
        pixels = self.image_processor(list(images), return_tensors="pt")["pixel_values"]
        with self.ignoring_end_token():
            return model.generate(
                batch["input_ids"].to(self.device),
                batch["attention_mask"].to(self.device),
                pixels.to(self.device, next(model.vision.parameters()).dtype),
                max_new_tokens=new_tokens,
            )


# -------------------------------------------------------------- measuring
def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _timed(fn, device: str) -> tuple[float, Any]:
    _sync(device)
    start = time.perf_counter()
    result = fn()
    _sync(device)
    return time.perf_counter() - start, result


def measure(
    name: str,
    hf_run,
    ga_run,
    *,
    runs: int,
    batch: int,
    new_tokens: int,
    device: str,
    ttft: tuple | None = None,
    memory: bool = True,
    ga_prepare=None,
    warmup: bool = True,
) -> dict[str, Any]:
    """Medians over ``runs`` alternating runs of both sides; ``ttft`` holds the 1-token runs.

    ``ga_prepare`` runs, untimed, before every GeoAssist run (the first turn of a follow-up).
    Without ``warmup`` the first timed runs also give the tokens to compare. ``memory`` measures
    the allocator peak on CUDA here; CPU peaks are measured in fresh processes (``--memory``).
    """
    prepare = ga_prepare or (lambda: None)
    tokens: dict[str, Any] = {}
    if warmup:
        tokens["hf"] = hf_run()
        prepare()
        tokens["ga"] = ga_run()
    hf_times, ga_times = [], []
    for i in range(runs):
        for side in ("hf", "ga") if i % 2 == 0 else ("ga", "hf"):
            if side == "hf":
                elapsed, out = _timed(hf_run, device)
                hf_times.append(elapsed)
            else:
                prepare()
                elapsed, out = _timed(ga_run, device)
                ga_times.append(elapsed)
            tokens.setdefault(side, out)
    hf_tokens, ga_tokens = tokens["hf"], tokens["ga"]
    row: dict[str, Any] = {
        "hf_s": statistics.median(hf_times),
        "geoassist_s": statistics.median(ga_times),
        "runs": runs,
        "batch": batch,
        "new_tokens": new_tokens,
        "same_tokens": hf_tokens == ga_tokens,
    }
    row["ratio"] = row["geoassist_s"] / row["hf_s"]
    row["hf_tokens_per_s"] = batch * new_tokens / row["hf_s"]
    row["geoassist_tokens_per_s"] = batch * new_tokens / row["geoassist_s"]
    if ttft is not None:
        hf_first, ga_first = ttft
        hf_first(), ga_first()
        firsts: dict[str, list[float]] = {"hf": [], "ga": []}
        for _ in range(max(1, runs // 2)):
            firsts["hf"].append(_timed(hf_first, device)[0])
            firsts["ga"].append(_timed(ga_first, device)[0])
        row["hf_ttft_s"] = statistics.median(firsts["hf"])
        row["geoassist_ttft_s"] = statistics.median(firsts["ga"])
    if memory and device.startswith("cuda"):
        for key, run in (("hf", hf_run), ("geoassist", ga_run)):
            if key == "geoassist":
                prepare()
            with PeakMemory(device) as peak:
                run()
            row[f"{key}_peak_mb"] = round(peak.peak_mb, 1)
    print(_line(name, row), flush=True)
    return row


def _line(name: str, row: dict[str, Any]) -> str:
    parts = [
        f"{name:<9}",
        f"HF {row['hf_s']:7.2f} s",
        f"GeoAssist {row['geoassist_s']:7.2f} s",
        f"ratio {row['ratio']:5.2f}",
        f"tok/s {row['hf_tokens_per_s']:6.1f} vs {row['geoassist_tokens_per_s']:6.1f}",
    ]
    if "hf_ttft_s" in row:
        parts.append(f"TTFT {row['hf_ttft_s']:.2f} vs {row['geoassist_ttft_s']:.2f} s")
    if "hf_peak_mb" in row:
        parts.append(f"peak +{row['hf_peak_mb']:.0f} vs +{row['geoassist_peak_mb']:.0f} MB")
    if "hf_peak_rss_mb" in row:
        parts.append(
            f"peak RSS {row['hf_peak_rss_mb']:.0f} vs {row['geoassist_peak_rss_mb']:.0f} MB"
        )
    parts.append("same tokens" if row["same_tokens"] else "TOKENS DIFFER")
    return " | ".join(parts)


# -------------------------------------------------------------------- main
def build_sides(model_name: str, device: str):
    """Both sides on the same weights: GeoAssist as ``Assistant.from_pretrained`` gives it, and
    its HF LLaVA export (built in memory; ``geoassist export`` writes the same thing to disk)."""
    import copy

    from geoassist.assistant import Assistant
    from geoassist.export import build_hf_llava, build_processor

    assistant = Assistant.from_pretrained(model_name, device="cpu")
    model = assistant.model
    pooled = None
    if model.config.projector.token_pool > 1:
        pooled = Assistant(copy.deepcopy(model), device=device)
        model.config.projector.token_pool = 1  # same weights, one visual token per patch
    llava = build_hf_llava(model).to(device)
    processor = build_processor(model)
    assistant = Assistant(model, device=device)
    return HFSide(llava, processor), GeoAssistSide(assistant), pooled, model


def run(args) -> dict[str, Any]:
    import torch

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from geoassist.util import quiet_transformers

    quiet_transformers()
    model_name = args.model or default_model()
    t0 = time.perf_counter()
    hf, ga, pooled, model = build_sides(model_name, args.device)
    device_name = (
        torch.cuda.get_device_name(0)
        if args.device.startswith("cuda")
        else f"CPU, {torch.get_num_threads()} threads"
    )
    size = model.config.preprocess.image_size
    n_tokens = model.config.num_image_tokens
    print(
        f"model {model_name} ({n_tokens} visual tokens/image at {size} px"
        f"{', unpooled variant' if pooled is not None else ''}) on {device_name}; "
        f"ready in {time.perf_counter() - t0:.1f} s; {args.new_tokens} new tokens per answer, "
        f"median of {args.runs} runs\n",
        flush=True,
    )
    images = make_images(max(args.batches + [1]), size)
    new = args.new_tokens
    common = dict(runs=args.runs, new_tokens=new, device=args.device, memory=args.memory)
    results: dict[str, Any] = {
        "meta": {
            "model": model_name,
            "device": device_name,
            "visual_tokens": n_tokens,
            "unpooled_variant": pooled is not None,
            "date": time.strftime("%Y-%m-%d %H:%M"),
            "torch": torch.__version__,
        }
    }
    one = ([images[0]], [QUESTIONS[0]])
    results["single"] = measure(
        "single",
        lambda: hf.answer(*one, new),
        lambda: ga.answer(*one, new),
        batch=1,
        ttft=(lambda: hf.answer(*one, 1), lambda: ga.answer(*one, 1)),
        **common,
    )
    for b in args.batches:
        many = (images[:b], [QUESTIONS[i % len(QUESTIONS)] for i in range(b)])
        results[f"batch{b}"] = measure(
            f"batch{b}",
            lambda many=many: hf.answer(*many, new),
            lambda many=many: ga.answer(*many, new),
            batch=b,
            warmup=not args.quick,
            **{**common, "runs": 1 if args.quick else args.runs},
        )
    # Follow-up: a second question on the same image, after a first answer. HF runs the whole
    # conversation; GeoAssist's first turn runs (untimed) on the same assistant just before.
    hf.answer(*one, new)
    first_text = hf.texts[0].strip()
    ga.answer(*one, new)
    history = ga.last.history
    follow = ([images[0]], [FOLLOW_UP])
    results["followup"] = measure(
        "followup",
        lambda: hf.answer(*follow, new, history=[(QUESTIONS[0], first_text)]),
        lambda: ga.answer(*follow, new, history=history, fresh=False),
        batch=1,
        ga_prepare=lambda: ga.answer(*one, new),
        **common,
    )
    if args.memory and not args.device.startswith("cuda"):
        cpu_memory(results, model, model_name, images, new)
    if pooled is not None and not args.quick:
        pooled_side = GeoAssistSide(pooled)
        t = [
            _timed(lambda: pooled_side.answer(*one, new), args.device)[0]
            for _ in range(args.runs + 1)
        ][1:]
        results["single_pooled_geoassist_s"] = statistics.median(t)
        print(
            f"the pooled model itself ({pooled.config.num_image_tokens} visual tokens), "
            f"GeoAssist single: {statistics.median(t):.2f} s"
        )
    return results


def cpu_memory(results: dict[str, Any], model, model_name: str, images, new_tokens: int) -> None:
    """Peak RSS of a fresh process that loads each side and answers once (single and the
    largest batch): GeoAssist from its checkpoint, HF from the exported folder."""
    import subprocess
    import tempfile

    import numpy as np

    from geoassist.export import export_hf_llava

    settings = [k for k in results if k == "single" or k.startswith("batch")]
    settings = ["single", max((k for k in settings if k != "single"), key=lambda k: int(k[5:]))]
    with tempfile.TemporaryDirectory() as tmp:
        folder = export_hf_llava(model, Path(tmp) / "hf")
        np.save(Path(tmp) / "images.npy", np.stack(images))
        for key in settings:
            batch = results[key]["batch"]
            for side in ("hf", "geoassist"):
                cmd = [sys.executable, __file__, "--memory-worker", side, model_name, str(folder),
                       str(Path(tmp) / "images.npy"), str(batch), str(new_tokens)]  # fmt: skip
                done = subprocess.run(cmd, capture_output=True, text=True, check=True)
                peak = json.loads(done.stdout.strip().splitlines()[-1])["peak_rss_mb"]
                results[key][f"{side}_peak_rss_mb"] = round(peak)
            row = results[key]
            print(
                f"{key:<9} peak RSS of a process that loads and answers: HF {row['hf_peak_rss_mb']} MB, "
                f"GeoAssist {row['geoassist_peak_rss_mb']} MB",
                flush=True,
            )


def memory_worker(side: str, model_name: str, folder: str, images: str, batch: int, new: int):

    import numpy as np

    arrays = list(np.load(images))[:batch]
    questions = [QUESTIONS[i % len(QUESTIONS)] for i in range(batch)]
    if side == "hf":
        from transformers import AutoProcessor, LlavaForConditionalGeneration

        runner = HFSide(
            LlavaForConditionalGeneration.from_pretrained(folder).eval(),
            AutoProcessor.from_pretrained(folder),
        )
    else:
        from geoassist.assistant import Assistant

        assistant = Assistant.from_pretrained(model_name, device="cpu")
        assistant.model.config.projector.token_pool = 1  # as in the timed runs
        runner = GeoAssistSide(assistant)
    runner.answer(arrays, questions, new)
    from geoassist.sysinfo import peak_rss_mb  # not ru_maxrss: see there

    print(json.dumps({"peak_rss_mb": peak_rss_mb()}))


def scale_main(args) -> dict[str, Any]:
    """Generation tokens/s at batch 1 and 32 with real-scale random weights (``bench/train.py``'s
    ``--scale`` models: ViT-L/14-336 + a 7B-class LM), GeoAssist vs the HF LLaVA export."""
    import importlib.util

    import torch

    from geoassist.export import build_hf_llava, build_processor

    spec = importlib.util.spec_from_file_location(
        "bench_train", Path(__file__).with_name("train.py")
    )
    bench_train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench_train)
    model = bench_train.build_scale_model(args.scale, args.device).eval()
    llava = build_hf_llava(model, dtype=model.lm.dtype).to(args.device)
    processor = build_processor(model)
    hf = HFSide(llava, processor)
    ga = ModelSide(model, processor.image_processor, args.device)
    size = model.config.preprocess.image_size
    device_name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "CPU"
    print(
        f"scale {args.scale}: {model.config.num_image_tokens} visual tokens at {size} px, "
        f"LM {sum(p.numel() for p in model.lm.parameters()) / 1e9:.2f} B parameters "
        f"({model.lm.dtype}), on {device_name}; {args.new_tokens} new tokens per answer",
        flush=True,
    )
    batches = args.batches or [1, 32]
    images = make_images(max(batches), size)
    results: dict[str, Any] = {"meta": {"scale": args.scale, "device": device_name}}
    for b in batches:
        many = (images[:b], [QUESTIONS[i % len(QUESTIONS)] for i in range(b)])
        results[f"batch{b}"] = measure(
            f"batch{b}",
            lambda many=many: hf.answer(*many, args.new_tokens),
            lambda many=many: ga.answer(*many, args.new_tokens),
            runs=args.runs,
            batch=b,
            new_tokens=args.new_tokens,
            device=args.device,
            memory=args.memory,
        )
    return results


def archive_main(args) -> dict[str, Any]:
    """``geoassist batch`` (``run_archive``: files → JSONL, batched) against a loop of
    ``Assistant.ask`` over the same files, as an analyst would write it; images/s."""
    import tempfile

    from PIL import Image

    from geoassist.assistant import Assistant
    from geoassist.batch import build_requests, collect_images, run_archive
    from geoassist.util import quiet_transformers

    quiet_transformers()
    model_name = args.model or default_model()
    assistant = Assistant.from_pretrained(model_name, device=args.device)
    assistant.reuse_prefix = False  # every image is new: nothing to reuse
    size = assistant.config.preprocess.image_size
    prompt = "Describe the image."
    gen = {"max_new_tokens": args.new_tokens}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "archive"
        folder.mkdir()
        for i, array in enumerate(make_images(args.archive, size, seed=100)):
            Image.fromarray(array).save(folder / f"scene_{i:04d}.png")
        requests = build_requests(collect_images([folder]), [prompt])
        assistant.ask(requests[0].image, prompt, **gen)  # warm-up
        start = time.perf_counter()
        loop = [assistant.ask(r.image, prompt, **gen).raw for r in requests]
        loop_s = time.perf_counter() - start
        out = Path(tmp) / "answers.jsonl"
        start = time.perf_counter()
        run_archive(assistant, requests, out, batch_size=args.archive_batch, progress=False,
                    generate_options=gen)  # fmt: skip
        batch_s = time.perf_counter() - start
        batched = [json.loads(line)["raw"] for line in out.read_text().splitlines()]
    row = {
        "images": len(requests),
        "max_new_tokens": args.new_tokens,
        "batch_size": args.archive_batch,
        "loop_images_per_s": len(requests) / loop_s,
        "batch_images_per_s": len(requests) / batch_s,
        "speedup": loop_s / batch_s,
        "same_answers": loop == batched,
    }
    print(
        f"{model_name}: {row['images']} images, up to {args.new_tokens} new tokens | ask loop "
        f"{row['loop_images_per_s']:.2f} img/s | geoassist batch (batch {args.archive_batch}) "
        f"{row['batch_images_per_s']:.2f} img/s | {row['speedup']:.2f}x | "
        f"{'same answers' if row['same_answers'] else 'ANSWERS DIFFER'}"
    )
    return {"archive": row}


def differing(results: dict[str, Any]) -> list[str]:
    """The settings whose two sides gave different tokens (or answers): a void comparison."""
    return [
        key
        for key, row in results.items()
        if isinstance(row, dict)
        and (row.get("same_tokens") is False or row.get("same_answers") is False)
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", help="model to compare (default: geoassist-mini, else mini)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--runs", type=int, default=5, help="timed runs per setting (median)")
    parser.add_argument("--new-tokens", type=int, default=16, help="tokens per answer")
    parser.add_argument("--batches", type=int, nargs="*", default=[8, 32])
    parser.add_argument("--quick", action="store_true", help="a reduced run (about a minute)")
    parser.add_argument(
        "--memory",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="measure peak memory (default: on, off with --quick); on CPU in fresh processes",
    )
    parser.add_argument("--memory-worker", nargs=6, help=argparse.SUPPRESS)
    parser.add_argument(
        "--archive",
        type=int,
        metavar="N",
        help="instead: geoassist batch over N image files vs a loop of Assistant.ask",
    )
    parser.add_argument("--archive-batch", type=int, default=8, help="batch size for --archive")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the results as JSON")
    parser.add_argument(
        "--scale",
        choices=("real", "tiny"),
        help="random weights at this scale (real: ViT-L/14-336 + 7B-class LM, for a GPU)",
    )
    args = parser.parse_args(argv)
    import torch

    if args.memory_worker:
        side, model_name, folder, images, batch, new = args.memory_worker
        with torch.no_grad():
            memory_worker(side, model_name, folder, images, int(batch), int(new))
        return 0
    if args.quick:
        args.runs, args.new_tokens, args.batches = 3, 8, [8]
    if args.memory is None:
        args.memory = not args.quick
    if args.threads:
        torch.set_num_threads(args.threads)
    # inference only; a context (not the global switch) so callers in the same process,
    # such as the test suite, keep autograd
    with torch.no_grad():
        if args.archive:
            results = archive_main(args)
        else:
            results = scale_main(args) if args.scale else run(args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"wrote {args.json}")
    bad = differing(results)
    if bad:
        # Timings of two computations that disagree compare nothing: fail, so CI notices.
        print(
            f"error: the two sides produced different tokens or answers in {', '.join(bad)}; "
            "the timings compare different work (check the export and the generation settings)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
