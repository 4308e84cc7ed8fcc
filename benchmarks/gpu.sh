#!/usr/bin/env bash
# Every GPU measurement of the README's performance section, in one run that fits a 600 s call on one GPU (H200):
#   bash benchmarks/gpu_wheels.sh                       # once, here (where pip reaches PyPI): the wheels the image lacks
#   bash benchmarks/gpu.sh [results dir, default benchmarks/results]    # there, with .whl carried
# The steps, their order and their time budget are in benchmarks/gpu.py; its CPU rehearsal is `gpu.py --smoke`.
set -u
cd "$(dirname "$0")/.."
OUT=${1:-benchmarks/results}
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export WANDB_MODE=disabled PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
python3 benchmarks/gpu.py --out "$OUT" "${@:2}" 2>&1 | tee "$OUT/gpu_log.txt"
