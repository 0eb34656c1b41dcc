#!/usr/bin/env bash
# One prepared GPU session for the presets as they now are (about 9 minutes on an
# H100/H200): fast = one R2R net with its drift stop and the second stage; balanced (the
# default) = four R2R nets averaged (32 wide on colour images) and the second stage with
# the thresholding estimate's share.
#  1. alone on the machine, for its timings: the speed table at 512x512 RGB, the original
#     loop against the papers' configuration (float32, CUDA graph) and the fast and
#     balanced presets run to their end (bench_speed.py);
#  2. then two processes side by side (their seconds are those of a shared GPU and CPU):
#     the quality benchmark of the balanced preset on its 8 images at sigma 15, 25 and 50
#     against BM3D / CBM3D (bench_quality.py), and the ten-image table of the CPU target at
#     sigma 25 with both presets, ":net" rows before their second stage
#     (bench_cpu_target.py).
# Every stage has its own time limit. Usage: OUT=results_dir bash benchmarks/gpu_defaults.sh
# (DEVICE=cpu and the size variables below give a small dry run on a machine without a GPU).
TAIL="${TAIL:-30}"
source "$(dirname "$0")/gpu_stages.sh"
stage "${LIMIT_SPEED:-150}" speed python3 benchmarks/bench_speed.py --device "$DEVICE" \
    --size "${SPEED_SIZE:-512}" --rgb --steps 30 --full-runs --variants "${VARIANTS:-graph}" \
    --members "" --presets "${SPEED_PRESETS:-fast,balanced}" --methods dip \
    --json "$OUT/speed.json"
stage "${LIMIT_QUALITY:-380}" quality python3 benchmarks/bench_quality.py --device "$DEVICE" \
    --preset "${PRESET:-balanced}" --size "${QUALITY_SIZE:-256}" \
    --images "${QUALITY_IMAGES:-8}" --sigmas "${SIGMAS:-15,25,50}" --tasks denoise --no-sgld \
    --threads 4 --json "$OUT/quality.json" &
TAIL=16 stage "${LIMIT_TABLE:-380}" table python3 benchmarks/bench_cpu_target.py \
    --device "$DEVICE" --sigma 25 --mark 5 --budget "${BUDGET:-20}" --threads 4 \
    --configs "${CONFIGS:-fast,balanced}" \
    --images "${IMAGES:-sample,moon,coins,astronaut,coffee,chelsea,brick,grass,gravel,clock}" \
    --json "$OUT/table.json"
wait
