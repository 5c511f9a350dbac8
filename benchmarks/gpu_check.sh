#!/usr/bin/env bash
# The GPU check of issue 16 (benchmarks/gpu_check.py): at most 8 minutes, run from the repository root on a
# machine with one CUDA GPU; without CUDA it runs a CPU-sized version that checks the script (and says so).
# Not part of CI. Output: stdout, and a copy in $OUT/gpu_check.txt when OUT is set (the device tool's folder).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
LOG=${OUT:+$OUT/gpu_check.txt}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo "no nvidia-smi"
timeout --signal=INT --kill-after=20 480 "$PY" benchmarks/gpu_check.py "$@" 2>&1 | tee ${LOG:-/dev/null}
