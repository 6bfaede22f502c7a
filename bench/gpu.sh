#!/usr/bin/env bash
# One prepared GPU check (about 5 minutes, at most 8) for a lent H100/H200, with random weights
# of real-scale shapes: a ViT-L/14-336 tower + mlp2x_gelu projector + a 7B-class Llama LM.
#
#   bench/gpu.sh [OUT]                        # OUT defaults to $OUT, else ./gpu-bench-out
#   GEOASSIST_GPU_SCALE=tiny bench/gpu.sh /tmp/g   # the same steps with tiny shapes, on the CPU
#
# It measures
#   1. stage-2 step time, tokens/s and MFU in bf16 with LoRA (r=64, every linear layer), and
#      with QLoRA (NF4 base) when bitsandbytes is importable — bench/train.py --scale;
#   2. generation tokens/s at batch 1 and 32, GeoAssist vs the HF LLaVA export of the same
#      weights — bench/inference.py --scale;
# and writes train.json, inference.json, gpu.md (the table) and the logs to OUT.
#
# Nothing is downloaded or installed. The machine needs torch, transformers, peft and
# accelerate; GeoAssist itself runs from this checkout (its folders are mapped into the
# `geoassist` package the way pyproject.toml maps them). Wheels the machine lacks — open_clip_torch,
# ftfy and wcwidth for the vision tower, bitsandbytes for QLoRA — are read from
# $GEOASSIST_WHEELS (default bench/wheels) and unpacked onto PYTHONPATH for this run only.
# Prepare them once where there is internet:
#   pip download --no-deps -d bench/wheels open_clip_torch ftfy wcwidth [bitsandbytes]
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT_DIR=${1:-${OUT:-gpu-bench-out}}
SCALE=${GEOASSIST_GPU_SCALE:-real}
PY=${PYTHON:-python}
WHEELS=${GEOASSIST_WHEELS:-$REPO/bench/wheels}
mkdir -p "$OUT_DIR"
OUT_DIR=$(cd "$OUT_DIR" && pwd)
SITE=$(mktemp -d)
trap 'rm -rf "$SITE"' EXIT

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export HF_HUB_DISABLE_PROGRESS_BARS=1 PYTHONUNBUFFERED=1

# geoassist as installed: the library plus train/, eval/, data_recipes/, app/ as subpackages.
mkdir -p "$SITE/geoassist"
for entry in "$REPO"/geoassist/*; do ln -s "$entry" "$SITE/geoassist/$(basename "$entry")"; done
for sub in train eval data_recipes app; do
    [ -d "$REPO/$sub" ] && ln -s "$REPO/$sub" "$SITE/geoassist/$sub"
done
shopt -s nullglob
for wheel in "$WHEELS"/*.whl; do
    "$PY" -m zipfile -e "$wheel" "$SITE" && echo "using $(basename "$wheel")"
done
export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"

if [ "$SCALE" = tiny ]; then
    DEVICE=cpu; TRAIN_ARGS=(--batch 2 --text-tokens 32 --steps 2); GEN_ARGS=(--new-tokens 4 --runs 1)
    LIMIT_TRAIN=300; LIMIT_GEN=300
else
    DEVICE=cuda; TRAIN_ARGS=(--batch 8 --text-tokens 256 --steps 6); GEN_ARGS=(--new-tokens 64 --runs 3)
    LIMIT_TRAIN=240; LIMIT_GEN=180
fi

{
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "scale: $SCALE"
    echo "commit: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    "$PY" - <<'EOF'
import torch, transformers
name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
print(f"device: {name}")
print(f"torch: {torch.__version__}, transformers: {transformers.__version__}")
try:
    import bitsandbytes
    print(f"bitsandbytes: {bitsandbytes.__version__}")
except ImportError:
    print("bitsandbytes: not available (no QLoRA row)")
EOF
} | tee "$OUT_DIR/environment.txt"

status=0
echo "== stage-2 step (train.json)"
timeout "$LIMIT_TRAIN" "$PY" "$REPO/bench/train.py" --scale "$SCALE" "${TRAIN_ARGS[@]}" \
    --json "$OUT_DIR/train.json" 2>&1 | tee "$OUT_DIR/train.log" | grep -vi warn
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "train step failed or ran out of time"; status=1; }

echo "== generation (inference.json)"
timeout "$LIMIT_GEN" "$PY" "$REPO/bench/inference.py" --scale "$SCALE" --device "$DEVICE" \
    --batches 1 32 "${GEN_ARGS[@]}" --json "$OUT_DIR/inference.json" 2>&1 \
    | tee "$OUT_DIR/inference.log" | grep -vi warn
[ "${PIPESTATUS[0]}" -eq 0 ] || { echo "generation failed or ran out of time"; status=1; }

"$PY" - "$OUT_DIR" <<'EOF'
import json, sys
from pathlib import Path

out = Path(sys.argv[1])
env = (out / "environment.txt").read_text().strip().splitlines()
lines = ["# GeoAssist GPU check", "", *[f"- {line}" for line in env], ""]
train = out / "train.json"
if train.is_file():
    t = json.loads(train.read_text())
    lines += [
        f"## Stage-2 step (batch {t['batch']}, {t['text_tokens']} text tokens + image per sample, "
        f"gradient checkpointing {'on' if t['gradient_checkpointing'] else 'off'})",
        "",
        "| mode | step s | samples/s | tokens/s | TFLOP/s | MFU | peak GB | trainable M |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in t["rows"]:
        mfu = f"{r['mfu'] * 100:.1f}%" if r["mfu"] is not None else "n/a"
        mem = f"{r['peak_mem_gb']:.1f}" if r["peak_mem_gb"] is not None else "n/a"
        lines.append(
            f"| {r['mode']} | {r['step_s']:.3f} | {r['samples_per_s']:.2f} | {r['tokens_per_s']:.0f} "
            f"| {r['tflops']:.1f} | {mfu} | {mem} | {r['trainable_m']:.1f} |"
        )
    lines.append("")
gen = out / "inference.json"
if gen.is_file():
    g = json.loads(gen.read_text())
    lines += [
        "## Generation (greedy, fixed answer length)",
        "",
        "| batch | new tokens | HF LLaVA s | GeoAssist s | ratio | HF tok/s | GeoAssist tok/s | same tokens |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, r in g.items():
        if key.startswith("batch"):
            lines.append(
                f"| {r['batch']} | {r['new_tokens']} | {r['hf_s']:.2f} | {r['geoassist_s']:.2f} "
                f"| {r['ratio']:.2f} | {r['hf_tokens_per_s']:.0f} | {r['geoassist_tokens_per_s']:.0f} "
                f"| {'yes' if r['same_tokens'] else 'no'} |"
            )
(out / "gpu.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
exit $status
