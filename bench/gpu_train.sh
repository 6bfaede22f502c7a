#!/usr/bin/env bash
# geoassist-mini's language stage on one H100/H200-class GPU, in bf16, within 8 minutes of wall time.
#
#   bench/gpu_train.sh OUT_DIR                          # on the GPU machine
#   GEOASSIST_GPU_SCALE=tiny bench/gpu_train.sh OUT_DIR # the same steps with tiny shapes, on the CPU
#
# It runs the shipped pipeline train/configs/geoassist-mini-gpu.yaml: GeoSynth data on a new seed
# range (+ the knowledge corpus, + RSVQA-LR train images where ../shared/rs-samples exists), then
# stage 2 continued from the committed geoassist-mini weights with packed multi-turn samples, the
# frozen tower's features cached once, and the best step by validation loss; then the GeoSynth
# test evaluation. It writes to OUT_DIR only:
#   OUT_DIR/model/        the checkpoint and its model card (README.md, geoassist.json)
#   OUT_DIR/work/         the pipeline's data, runs, logs, feature cache and summary.json
#   OUT_DIR/cache/        converted LM weights and the knowledge store ($GEOASSIST_CACHE)
#   OUT_DIR/gpu_train.md  the figures: samples, time, rate, validation loss, scores
#   OUT_DIR/environment.txt, OUT_DIR/train.log
# Nothing is downloaded: the machine needs this checkout and its virtual environment (.venv, or
# $PYTHON). At full scale it fails (exit 1) when stage 2 saw fewer than 10x the CPU run's samples.
set -uo pipefail

if [ $# -lt 1 ]; then
    echo "usage: bench/gpu_train.sh OUT_DIR   (GEOASSIST_GPU_SCALE=tiny for a CPU check)" >&2
    exit 2
fi
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$1"
OUT_DIR=$(cd "$1" && pwd)
SCALE=${GEOASSIST_GPU_SCALE:-real}
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x "$REPO/.venv/bin/python" ]; then PY=$REPO/.venv/bin/python
else PY=python; fi

# The shipped geoassist-mini's stage 2: 360 optimizer steps of batch 4 x 2 accumulation (its card).
CPU_STAGE2_SAMPLES=2880
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export HF_HUB_DISABLE_PROGRESS_BARS=1 PYTHONUNBUFFERED=1
export GEOASSIST_CACHE="$OUT_DIR/cache" HF_HOME="$OUT_DIR/cache/hf" MPLCONFIGDIR="$OUT_DIR/cache/mpl"

ARGS=(--preset geoassist-mini-gpu --out "$OUT_DIR/work" --set "ship_to=$OUT_DIR/model")
if [ "$SCALE" = tiny ]; then
    # tiny random model, a handful of scenes, a few steps, fp32 on the CPU
    ARGS+=(--set init_from=tiny --set ship_half=false
           --set data.0.options.splits.train=4 --set data.0.workers=1
           --set data.1.options.splits.val=2 --set data.2.options.splits.test=2
           --set stages.0.optim.max_steps=4 --set stages.0.optim.batch_size=2
           --set stages.0.optim.warmup_steps=1 --set stages.0.val_every=2 --set stages.0.save_every=2
           --set stages.0.log_every=1 --set stages.0.data.val_limit=4 --set stages.0.data.num_workers=0
           --set stages.0.data.max_length=512 --set 'stages.0.mixed_precision="no"'
           --set evaluation.0.limit=2)
    LIMIT=900; MIN_RATIO=0
else
    LIMIT=480; MIN_RATIO=10
fi

"$PY" - "$SCALE" <<'EOF' | tee "$OUT_DIR/environment.txt"
import sys
import torch, transformers
print(f"scale: {sys.argv[1]}")
name = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
print(f"device: {name}")
bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
print(f"bf16: {'yes' if bf16 else 'no'}")
print(f"torch: {torch.__version__}, transformers: {transformers.__version__}")
if sys.argv[1] != "tiny" and not bf16:
    sys.exit("this script needs a CUDA GPU with bf16 (GEOASSIST_GPU_SCALE=tiny runs it on the CPU)")
EOF
[ "${PIPESTATUS[0]}" -eq 0 ] || exit 1
echo "commit: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown)" >> "$OUT_DIR/environment.txt"

START=$(date +%s)
cd "$REPO" || exit 1
timeout "$LIMIT" "$PY" -m geoassist train "${ARGS[@]}" > "$OUT_DIR/train.log" 2>&1
status=$?
WALL=$(( $(date +%s) - START ))
tail -n 20 "$OUT_DIR/train.log"
if [ $status -ne 0 ]; then
    echo "the pipeline failed or ran past ${LIMIT} s (exit $status); the log is $OUT_DIR/train.log" >&2
    exit 1
fi

"$PY" - "$OUT_DIR" "$WALL" "$CPU_STAGE2_SAMPLES" "$MIN_RATIO" <<'EOF'
import json, sys
from pathlib import Path

out, wall, cpu_samples, min_ratio = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
card = json.loads((out / "model" / "geoassist.json").read_text())["card"]
summary = json.loads((out / "work" / "summary.json").read_text())
stage = next(iter(summary["stages"].values()))
final = json.loads((out / "work" / "stage0" / "final" / "geoassist.json").read_text())["card"]
per_task = final.get("samples_per_task") or {}
samples = sum(per_task.values())
ratio = samples / cpu_samples
best = final.get("validation") or {}
lines = [
    "# geoassist-mini, stage 2 on one GPU (bench/gpu_train.sh)", "",
    *[f"- {line}" for line in (out / "environment.txt").read_text().strip().splitlines()],
    f"- wall time: {wall} s (data, stage 2, evaluation, shipping)",
    f"- stage 2: {stage['steps']} steps, {stage['minutes']} min, {stage['samples_per_s']} conversations/s",
    f"- supervised answers seen: {samples} = {ratio:.1f}x the CPU run's {cpu_samples} stage-2 samples",
    "- per task: " + ", ".join(f"{t} {n}" for t, n in sorted(per_task.items())),
    f"- weights of step {best.get('step')} (validation loss {best.get('val_loss')}); "
    f"history {[(h['step'], h['val_loss']) for h in best.get('history', [])]}",
    f"- cumulative training behind the weights: {card.get('cumulative_minutes')} min",
    "", "| evaluation | metric | value |", "|---|---|---|",
]
for name, metrics in (card.get("scores") or {}).items():
    for metric, value in metrics.items():
        lines.append(f"| {name} | {metric} | {value:.4g} |" if isinstance(value, float) else f"| {name} | {metric} | {value} |")
(out / "gpu_train.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
if ratio < min_ratio:
    sys.exit(f"stage 2 saw {ratio:.1f}x the CPU run's samples, below the {min_ratio:.0f}x this script promises")
EOF
