#!/usr/bin/env bash
# Follow-up to gpu_r2r.sh (about 4 minutes on an H100/H200): the balanced preset with four
# R2R nets of width 64 (5 scales, lr 0.002) on the quality benchmark's 8 images at sigma 25
# and 50, beside the time-budget table at sigma 15 for the wide and four-net R2R configs.
# Usage: OUT=results_dir bash benchmarks/gpu_r2r_wide.sh
TAIL="${TAIL:-14}"
source "$(dirname "$0")/gpu_stages.sh"
stage "${LIMIT_QUALITY:-220}" quality_balanced_r2r_w64 python3 benchmarks/bench_quality.py \
    --device "$DEVICE" --preset balanced \
    --options "loss=r2r,width=64,colour_width=64,scales=5,lr=0.002" --size 256 --images 8 \
    --sigmas "${SIGMAS:-25,50}" --tasks denoise --no-sgld --threads 4 \
    --json "$OUT/quality_balanced_r2r_w64.json" &
stage "${LIMIT_TABLE:-220}" r2r_table_s15 python3 benchmarks/bench_cpu_target.py \
    --device "$DEVICE" --sigma 15 --mark 5 --budget 20 --threads 4 \
    --configs "${CONFIGS:-fast,r2r-w32,r2r-w32-m4,r2r-w64-m4}" \
    --images "${IMAGES:-sample,moon,coins,astronaut,coffee,chelsea}" --json "$OUT/r2r_table_s15.json"
wait
