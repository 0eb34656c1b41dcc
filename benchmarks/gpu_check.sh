#!/usr/bin/env bash
# One prepared GPU session: correctness of the CUDA paths, then the speed benchmark.
# Usage: OUT=results_dir bash benchmarks/gpu_check.sh
set -uo pipefail
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT="${OUT:-benchmarks/out}"; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
[ -n "${SKIP_CORRECTNESS:-}" ] || python3 benchmarks/gpu_correctness.py 2>&1 | tee "$OUT/correctness.txt"
python3 benchmarks/bench_speed.py --device cuda --size 512 --rgb --steps 30 --full-runs \
    --json "$OUT/speed_512_rgb.json" 2>&1 | tee "$OUT/speed.txt"
