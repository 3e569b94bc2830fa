#!/usr/bin/env bash
# One GPU, at most ~8 minutes: per-stage training throughput with bf16 (auto on a bf16 GPU),
# the projected epoch time of a 40,000-pair set, and the time to score 4,000 x 4,000 pairs.
#   bash benchmarks/gpu_check.sh [OUT_DIR]
# Run from the repository root with the project's environment (make setup) on a CUDA machine.
set -euo pipefail
OUT=${1:-benchmark-results/gpu_check}
PY=${PYTHON:-.venv/bin/python}
mkdir -p "$OUT"
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; \
print(torch.cuda.get_device_name(0), 'bf16:', torch.cuda.is_bf16_supported())" | tee "$OUT/device.txt"
# training: 1,024 pairs of long texts and 224 px images, batch 64, every stage
timeout 360 "$PY" benchmarks/train_speed.py --device cuda --pairs 1024 --batch 64 \
    --project 40000 --out "$OUT/train_speed" | tee "$OUT/train_speed.txt"
# scoring: 4,000 texts x 4,000 images through the relation head, fp32 and bf16
timeout 120 "$PY" benchmarks/throughput.py --scoring-only --pairs 4000 --bf16-scoring auto \
    | tee "$OUT/scoring.txt"
