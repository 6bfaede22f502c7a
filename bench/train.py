"""Stage-2 training throughput: samples/s and peak memory, length grouping and gradient checkpointing.

    python bench/train.py                   # CPU, the default preset's stage 2, 8 steps per run
    python bench/train.py --steps 4 --scenes 16
    python bench/train.py --scale real      # one GPU: ViT-L/14-336 + a 7B-class LM, random weights
    python bench/train.py --scale tiny      # the same code path with tiny shapes (runs on CPU)

Default mode: stage 2 (LoRA on every LM linear layer + the projector) of the default preset
(``geoassist train --preset geoassist-mini``: the ``mini`` architecture, its micro-batch,
gradient accumulation, maximum length and LoRA settings), through the real trainer
(``geoassist.train.trainer.train``) on a GeoSynth recipe output. Each configuration runs in its
own process, so its peak RSS is its own. Baseline, measured in the same run: length-grouped
batches without gradient checkpointing (the preset's setting); the other rows are random
batches and gradient checkpointing on. A thin layer over ``bench/bench_train.py``'s approach,
for stage 2 only.

``--scale`` mode times the stage-2 step itself (``build_stage`` + ``stage_loss``, AdamW on the
trainable parameters) on synthetic batches of real-scale shapes, in bf16 with LoRA, and with
QLoRA when bitsandbytes is importable; it reports step time, tokens/s and MFU (model FLOPs:
forward 2·N·T plus backward 2·N·T through the frozen base — only LoRA weights get weight
gradients — plus 2·N·T more with gradient checkpointing, plus the vision tower's forward,
attention included; over the GPU's dense bf16 peak).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PRESET = "geoassist-mini"
# Dense bf16 peak of the cards this script is meant for (FLOP/s), by a substring of the name.
PEAK_BF16 = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}


# --------------------------------------------------------------- CPU mode
def preset_stage2() -> dict:
    """The stage-2 settings of the shipped default pipeline."""
    import yaml

    from geoassist.train.config import shipped_configs

    pipeline = yaml.safe_load(shipped_configs()[PRESET].read_text())
    # the first stage-2 entry is the instruction tuning; later ones continue it
    stage = next(s for s in pipeline["stages"] if s["stage"] == 2)
    return {
        "batch_size": stage["optim"]["batch_size"],
        "grad_accum": stage["optim"].get("grad_accum", 1),
        "max_length": stage["data"].get("max_length", 1024),
        "lora": stage.get("lora"),
    }


def worker(data: str, group: bool, ckpt: bool, steps: int, out: str, model: str) -> dict:
    from geoassist.sysinfo import peak_rss_mb
    from geoassist.train.config import config_from_dict
    from geoassist.train.trainer import train

    preset = preset_stage2()
    config = config_from_dict(
        {
            "stage": 2, "model": model, "out_dir": out,
            "data": {"train": [data], "group_by_length": group, "max_length": preset["max_length"]},
            "optim": {"max_steps": steps, "batch_size": preset["batch_size"],
                      "grad_accum": preset["grad_accum"], "lr": 1e-4},
            "lora": preset["lora"], "gradient_checkpointing": ckpt,
            "save_every": 10_000, "log_every": 10_000, "mixed_precision": "no",
        }
    )  # fmt: skip
    result = train(config)
    return {
        "samples_per_s": result.samples / result.loop_seconds,
        "peak_rss_mb": peak_rss_mb(),
    }


def cpu_main(args) -> dict:
    from geoassist.data_recipes import build

    tmp = Path(tempfile.mkdtemp(prefix="bench-train2-"))
    data = tmp / "geosynth"
    build("geosynth", f"n={args.scenes},seed=5,size=256,kinds=hr+hr+hr+pair", data)
    runs = [(True, False), (False, False), (True, True), (False, True)]
    results = {}
    for group, ckpt in runs:
        out = tmp / f"g{int(group)}c{int(ckpt)}"
        cmd = [sys.executable, __file__, "--steps", str(args.steps), "--model", args.model,
               "--worker", str(data), str(int(group)), str(int(ckpt)), str(out)]  # fmt: skip
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)
        results[(group, ckpt)] = json.loads(done.stdout.strip().splitlines()[-1])
    preset = preset_stage2()
    print(
        f"stage 2 of {PRESET} ({args.model} architecture): micro-batch {preset['batch_size']} × "
        f"accumulation {preset['grad_accum']}, max length {preset['max_length']}, "
        f"{args.steps} optimizer steps per run, CPU"
    )
    print(
        f"{'batches':>14} {'grad_ckpt':>10} {'samples/s':>10} {'peak RSS MB':>12} {'vs baseline':>12}"
    )
    base = results[(True, False)]
    table = []
    for (group, ckpt), r in results.items():
        ratio = r["samples_per_s"] / base["samples_per_s"]
        batches = "length-grouped" if group else "random"
        print(
            f"{batches:>14} {str(ckpt):>10} {r['samples_per_s']:>10.2f} {r['peak_rss_mb']:>12.0f} {ratio:>11.2f}x"
        )
        table.append(
            {"group_by_length": group, "gradient_checkpointing": ckpt, **r, "vs_baseline": ratio}
        )
    print("baseline: length-grouped batches, gradient checkpointing off (the preset's setting)")
    return {"preset": PRESET, "steps": args.steps, "settings": preset, "runs": table}


# ------------------------------------------------------------- scale mode
def scale_config(scale: str):
    """Random-weight configs: ``real`` (ViT-L/14-336 + a 7B-class Llama) or ``tiny`` (for CPU tests)."""
    from geoassist.config import ModelConfig

    if scale == "real":
        vision = {"open_clip_arch": "ViT-L-14-336", "feature_layer": -2}
        arch = {"hidden_size": 4096, "intermediate_size": 14336, "num_hidden_layers": 32,
                "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 32064,
                "tie_word_embeddings": False}  # fmt: skip
        image_size, lora, dtype = 336, {"enabled": True, "r": 64, "alpha": 128}, "bfloat16"
    elif scale == "tiny":
        vision = {"image_size": 32, "patch_size": 8, "width": 32, "layers": 2, "head_width": 16,
                  "embed_dim": 32, "feature_layer": -1}  # fmt: skip
        arch = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                "num_attention_heads": 4, "num_key_value_heads": 2, "tie_word_embeddings": True}  # fmt: skip
        image_size, lora, dtype = 32, {"enabled": True, "r": 8, "alpha": 16}, "float32"
    else:
        raise ValueError(f"unknown scale {scale!r}")
    return ModelConfig.from_dict(
        {
            "name": f"scale-{scale}",
            "vision": vision,
            "projector": {"type": "mlp2x_gelu", "token_pool": 1},
            "lm": {"source": "random", "arch": arch, "max_context": 4096, "dtype": dtype},
            "lora": {**lora, "dropout": 0.05, "target_modules": "all-linear"},
            "preprocess": {"image_size": image_size},
        }
    )


def build_scale_model(scale: str, device: str, qlora: bool = False):
    """The random model, built directly on ``device`` (a 7B LM is never materialised on the CPU)."""
    import torch

    from geoassist.model.lm import load_tokenizer
    from geoassist.model.vlm import GeoAssistModel

    config = scale_config(scale)
    tokenizer = load_tokenizer(config.lm)
    dtype = getattr(torch, config.lm.dtype)
    with torch.device(device):
        previous = torch.get_default_dtype()
        torch.set_default_dtype(dtype)
        try:
            config.lora.enabled = False  # added after quantisation / freezing below
            model = GeoAssistModel(config, tokenizer)
        finally:
            torch.set_default_dtype(previous)
    model.vision.float().to(device)
    model.projector.float().to(device)
    if qlora:
        quantize_lm_4bit(model)
    return model


def quantize_lm_4bit(model) -> None:
    """Swap the LM's linear layers (not the head) for bitsandbytes NF4 layers, as QLoRA loads them."""
    import bitsandbytes as bnb
    import torch

    for module in list(model.lm.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, torch.nn.Linear) and child_name != "lm_head":
                q = bnb.nn.Linear4bit(
                    child.in_features, child.out_features, bias=child.bias is not None,
                    compute_dtype=torch.bfloat16, quant_type="nf4",
                )  # fmt: skip
                q.weight = bnb.nn.Params4bit(
                    child.weight.data.cpu(), requires_grad=False, quant_type="nf4"
                )
                if child.bias is not None:
                    q.bias = child.bias
                setattr(module, child_name, q.to(child.weight.device))


def synthetic_batch(model, batch: int, text_tokens: int, device: str) -> dict:
    """Rendered conversations of a fixed length: one image, a prompt and a supervised answer."""
    import torch

    from geoassist.chat import collate, render

    gen = torch.Generator().manual_seed(0)
    words = "the a ship road field river building harbour forest urban".split()
    rendered = []
    for i in range(batch):
        answer = " ".join(words[(i + k) % len(words)] for k in range(text_tokens // 2))
        rendered.append(
            render(
                [
                    {"role": "user", "content": "<image>\n" + " ".join(words[: text_tokens // 8])},
                    {"role": "assistant", "content": answer},
                ],
                model.tokenizer,
                num_image_tokens=model.config.num_image_tokens,
                image_token_id=model.image_token_id,
            )
        )
    out = collate(rendered, model.pad_token_id, padding_side="right")
    size = model.config.preprocess.image_size
    out["pixel_values"] = torch.randn(batch, 3, size, size, generator=gen)
    return {k: v.to(device) for k, v in out.items()}


def model_flops_per_step(model, batch: dict, checkpointing: bool) -> float:
    """Model FLOPs of one stage-2 step (see the module docstring)."""
    lm = model.lm.get_base_model() if model.has_lora else model.lm
    cfg = lm.config
    n_lm = sum(
        p.numel() for n, p in lm.named_parameters() if "lora_" not in n and "embed_tokens" not in n
    )
    tokens = int(batch["attention_mask"].sum())
    seq = batch["input_ids"].shape[1]
    attn = 2 * 2 * cfg.num_hidden_layers * seq * cfg.hidden_size * tokens  # QK^T and AV
    forward = 2 * n_lm * tokens + attn
    passes = 3 if checkpointing else 2  # forward, activation-gradient backward (+ recompute)
    vision = model.vision
    patches = (vision.config.image_size // vision.patch_size) ** 2 + 1
    n_vision = sum(
        p.numel()
        for p in vision.visual.transformer.resblocks[: vision.num_blocks_used].parameters()
    )
    vision_forward = batch["pixel_values"].shape[0] * (2 * n_vision * patches)
    return passes * forward + vision_forward


def scale_main(args) -> dict:
    import torch

    from geoassist.train.stages import build_stage, stage_loss, trainable_parameters

    device = "cuda" if torch.cuda.is_available() else "cpu"
    name = torch.cuda.get_device_name(0) if device == "cuda" else "CPU"
    peak = next((v for k, v in PEAK_BF16.items() if k in name), None)
    modes = ["lora"]
    try:
        import bitsandbytes  # noqa: F401

        if device == "cuda":
            modes.append("qlora")
    except ImportError:
        pass
    rows = []
    for mode in modes:
        model = build_scale_model(args.scale, device, qlora=mode == "qlora")
        if args.gradient_checkpointing:
            model.lm.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
            model.lm.enable_input_require_grads()
        stage_args = argparse.Namespace(lora=None, stage2=argparse.Namespace(train_vision_blocks=0))
        module = build_stage(2, model, stage_args)
        module.train()
        params = list(trainable_parameters(module).values())
        optimizer = torch.optim.AdamW(params, lr=1e-5)
        batch = synthetic_batch(model, args.batch, args.text_tokens, device)
        times = []
        autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda")
        for step in range(args.steps + 2):
            if device == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            with autocast:
                loss, _ = stage_loss(2, module, batch)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if device == "cuda":
                torch.cuda.synchronize()
            if step >= 2:  # the first steps allocate and warm kernels up
                times.append(time.perf_counter() - start)
        step_s = statistics.median(times)
        flops = model_flops_per_step(model, batch, args.gradient_checkpointing)
        row = {
            "mode": mode,
            "step_s": step_s,
            "samples_per_s": args.batch / step_s,
            "tokens_per_s": int(batch["attention_mask"].sum()) / step_s,
            "tflops": flops / step_s / 1e12,
            "mfu": (flops / step_s / peak) if peak and device == "cuda" else None,
            "peak_mem_gb": torch.cuda.max_memory_allocated() / 2**30 if device == "cuda" else None,
            "trainable_m": sum(p.numel() for p in params) / 1e6,
            "loss": float(loss.detach()),
        }
        rows.append(row)
        mfu = f"{row['mfu'] * 100:.1f}%" if row["mfu"] is not None else "n/a"
        print(
            f"{mode:<6} step {step_s:.3f} s | {row['samples_per_s']:.2f} samples/s | "
            f"{row['tokens_per_s']:.0f} tokens/s | {row['tflops']:.1f} TFLOP/s | MFU {mfu}",
            flush=True,
        )
        del model, module, optimizer, batch
        if device == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
    return {
        "scale": args.scale,
        "device": name,
        "batch": args.batch,
        "text_tokens": args.text_tokens,
        "gradient_checkpointing": args.gradient_checkpointing,
        "rows": rows,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per run")
    parser.add_argument("--scenes", type=int, default=24, help="GeoSynth scenes to train on")
    parser.add_argument("--model", default="mini", help="architecture or checkpoint (CPU mode)")
    parser.add_argument("--scale", choices=("real", "tiny"), help="time the step at this scale")
    parser.add_argument("--batch", type=int, default=8, help="samples per step (--scale)")
    parser.add_argument(
        "--text-tokens", type=int, default=256, help="text tokens per sample (--scale)"
    )
    parser.add_argument("--gradient-checkpointing", action="store_true", help="(--scale)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="write the results as JSON")
    parser.add_argument(
        "--worker", nargs=4, metavar=("DATA", "GROUP", "CKPT", "OUT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.worker:
        data, group, ckpt, out = args.worker
        print(json.dumps(worker(data, group == "1", ckpt == "1", args.steps, out, args.model)))
        return 0
    results = scale_main(args) if args.scale else cpu_main(args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
