#!/usr/bin/env bash
# One prepared GPU session for R2R (about 7 minutes on an H100/H200):
#  1. the time-budget table (bench_cpu_target.py, six 256x256 8-bit grey images, sigma 25):
#     the fast preset (R2R) against its SURE settings, four R2R nets averaged, and R2R on
#     wider nets (32, 64 and the papers' 128 channels), whose SURE fits broke down;
#  2. the balanced preset with R2R against the balanced preset as it is (SURE), the quality
#     benchmark's 8 images (4 grey, 4 colour) at sigma 25 and 50 against BM3D / CBM3D; the
#     two run side by side (their PSNRs do not depend on time; their seconds do);
#  3. the speed table at 512x512 RGB: the original loop against the fast and balanced presets
#     run to their end.
# Usage: OUT=results_dir bash benchmarks/gpu_r2r.sh
TAIL="${TAIL:-16}"
source "$(dirname "$0")/gpu_stages.sh"
stage "${LIMIT_TABLE:-170}" r2r_table python3 benchmarks/bench_cpu_target.py --device "$DEVICE" \
    --sigma 25 --mark 5 --budget 20 --threads 8 \
    --configs "${CONFIGS:-fast,sure,r2r-m4,r2r-w32,r2r-w64,r2r-w128,r2r-w64-m4}" \
    --images "${IMAGES:-sample,moon,coins,astronaut,coffee,chelsea}" --json "$OUT/r2r_table.json"
for loss in r2r sure; do
    stage "${LIMIT_QUALITY:-150}" "quality_balanced_$loss" python3 benchmarks/bench_quality.py \
        --device "$DEVICE" --preset balanced --options "loss=$loss" --size 256 --images 8 \
        --sigmas "${SIGMAS:-25,50}" --tasks denoise --no-sgld --threads 4 \
        --json "$OUT/quality_balanced_$loss.json" &
done
wait
stage "${LIMIT_SPEED:-80}" speed python3 benchmarks/bench_speed.py --device "$DEVICE" \
    --size 512 --rgb --steps 30 --full-runs --variants "" --members "" \
    --presets "${SPEED_PRESETS:-fast,balanced}" --methods dip --json "$OUT/speed.json"
