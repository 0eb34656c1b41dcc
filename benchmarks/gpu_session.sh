#!/usr/bin/env bash
# One prepared GPU session (about 8 minutes on an H100/H200): correctness of the CUDA
# paths (compiled net included), the speed table at the papers' configuration with full
# runs, SGLD within 30 s, and the 512x512x64 volume under a 24 GB-like budget. Every stage
# has its own time limit so that a slow stage cannot eat the others. The quality stage runs
# only with QUALITY=1 (a second session or command); QUALITY_PRESET, QUALITY_SIGMAS and
# QUALITY_OPTIONS change it (e.g. QUALITY_OPTIONS="loss=sure,lr=0.003,lr_final=0.5,steps=600"
# for the SURE loss on the papers' net).
# Usage: OUT=results_dir bash benchmarks/gpu_session.sh   (writes at most 8 files into OUT)
set -uo pipefail
export PYTHONPATH="$PWD/src:$PWD/.gpu_deps${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
OUT="${OUT:-benchmarks/out}"; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee -a "$OUT/stages.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" \
    2>&1 | tee -a "$OUT/stages.txt"
stage() {  # stage SECONDS NAME COMMAND...
    local limit=$1 name=$2; shift 2
    local t0=$SECONDS
    timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
    echo "stage $name: exit $? after $((SECONDS - t0)) s" | tee -a "$OUT/stages.txt"
    tail -n 14 "$OUT/$name.txt"
}
if [ "${QUALITY:-0}" = 1 ]; then
    stage "${QUALITY_LIMIT:-200}" quality python3 benchmarks/bench_quality.py --device cuda \
        --preset "${QUALITY_PRESET:-quality}" --size 256 --images 4 --sigmas "${QUALITY_SIGMAS:-25}" \
        --tasks denoise --no-sgld \
        --options "${QUALITY_OPTIONS:-members=1}" --json "$OUT/quality_cuda.json"
    exit 0
fi
stage 100 correctness python3 benchmarks/gpu_correctness.py --paths compiled,compiled-bf16,sure,sure-eager
stage 300 speed python3 benchmarks/bench_speed.py --device cuda --size 512 --rgb --steps 30 \
    --full-runs --variants graph,bf16,compiled,compiled-bf16 --members "" --presets "" \
    --sgld-seconds 30 --sgld-options "noise_scale=0.5,compile=true" \
    --json "$OUT/speed_512_rgb.json"
stage 110 large python3 benchmarks/bench_large.py --device cuda --cases volume --steps 60 \
    --budget 22 --json "$OUT/large_cuda.json"
