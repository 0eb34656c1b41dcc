#!/usr/bin/env bash
# One prepared GPU session (about 9 minutes on an H100/H200): correctness of the CUDA
# paths, the speed table, large inputs under a 24 GB-like budget, and a reduced quality
# run. Every stage has its own time limit so that a slow stage cannot eat the others.
# Usage: OUT=results_dir bash benchmarks/gpu_session.sh   (writes 8 files into OUT)
set -uo pipefail
export PYTHONPATH="$PWD/src:$PWD/.gpu_deps${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT="${OUT:-benchmarks/out}"; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee -a "$OUT/stages.txt"
stage() {  # stage SECONDS NAME COMMAND...
    local limit=$1 name=$2; shift 2
    local t0=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
    echo "stage $name: exit $? after $((SECONDS - t0)) s" | tee -a "$OUT/stages.txt"
    tail -n 25 "$OUT/$name.txt"
}
stage 50 correctness python3 benchmarks/gpu_correctness.py
stage 270 speed python3 benchmarks/bench_speed.py --device cuda --size 512 --rgb --steps 30 \
    --full-runs --presets fast,balanced --members 2,4 --memory-model \
    --preset-options precision=bfloat16,channels_last=true --json "$OUT/speed_512_rgb.json"
stage 130 large python3 benchmarks/bench_large.py --device cuda --steps 100 --budget 22 \
    --json "$OUT/large_cuda.json"
stage 95 quality python3 benchmarks/bench_quality.py --device cuda --preset fast --size 256 \
    --images 4 --sigmas 25 --tasks denoise --json "$OUT/quality_cuda_fast.json"
