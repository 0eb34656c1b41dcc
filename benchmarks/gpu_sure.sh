#!/usr/bin/env bash
# One prepared GPU session for the SURE loss (about 9 minutes on an H100/H200):
#  1. correctness of SURE in the captured CUDA graph against eager and the CPU;
#  2. the time-budget sweep against BM3D (6 grey 256x256 images, sigma 25): the fast preset
#     (SURE, width 16) and SURE on the wider nets (widths 32, 64 and the papers' 128);
#  3. the speed table at 512x512 RGB: the original loop against the fast (SURE) and balanced
#     presets run to their end;
#  4. the quality benchmark (bench_quality.py, 4 images incl. RGB against CBM3D) with the
#     sweep's best configuration.
# Every stage has its own time limit. Usage: OUT=results_dir bash benchmarks/gpu_sure.sh
source "$(dirname "$0")/gpu_stages.sh"
stage "${LIMIT_CORRECTNESS:-75}" correctness python3 benchmarks/gpu_correctness.py \
    --paths sure,sure-eager
stage "${LIMIT_SWEEP:-230}" sweep python3 benchmarks/bench_cpu_target.py --device "$DEVICE" \
    --mark "${MARK:-5}" --budget "${BUDGET:-40}" --threads 8 \
    --configs "${CONFIGS:-fast,sure-w32,sure-w64,sure-w64-lr1e-3,sure-w128}" \
    --images "${IMAGES:-sample,astronaut,coins,chelsea,moon,coffee}" --json "$OUT/sweep.json"
stage "${LIMIT_SPEED:-100}" speed python3 benchmarks/bench_speed.py --device "$DEVICE" \
    --size "${SPEED_SIZE:-512}" --rgb --steps 30 --full-runs --variants "" --members "" \
    --presets "${SPEED_PRESETS:-fast,balanced}" --preset-options "${SPEED_OPTIONS:-}" \
    --methods dip --json "$OUT/speed.json"
read -r PRESET OPTIONS < <(python3 benchmarks/best_config.py "$OUT/sweep.json" 2>>"$OUT/stages.txt")
echo "quality stage: preset ${PRESET:-fast}, options ${OPTIONS:-}" | tee -a "$OUT/stages.txt"
stage "${LIMIT_QUALITY:-130}" quality python3 benchmarks/bench_quality.py --device "$DEVICE" \
    --preset "${PRESET:-fast}" --size "${QUALITY_SIZE:-256}" --images 4 --sigmas 25 \
    --tasks denoise --no-sgld --options "${OPTIONS:-}" --json "$OUT/quality.json"
