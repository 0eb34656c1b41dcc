#!/usr/bin/env bash
# One prepared GPU session for the presets as they now are (about 9 minutes on an
# H100/H200): balanced = four SURE nets averaged, 32 wide for colour images, clipped values
# imputed; fast = one R2R net with its divergence stop.
#  1. the quality benchmark: bench_quality.py, 8 images (4 grey, 4 colour) at sigma 15, 25
#     and 50 against BM3D / CBM3D, denoising (compare with
#     results/quality_h100_balanced_sure_256.*, before the colour width);
#  2. the speed table at 512x512 RGB: the original loop against the fast and balanced
#     presets run to their end;
#  3. R2R against SURE on the GPU (the fast preset's two losses), six 256x256 8-bit grey
#     images at sigma 25 (on two CPU cores: -0.69 and -1.07 dB against BM3D at 60 s).
# Every stage has its own time limit. Usage: OUT=results_dir bash benchmarks/gpu_defaults.sh
TAIL="${TAIL:-30}"
source "$(dirname "$0")/gpu_stages.sh"
stage "${LIMIT_QUALITY:-300}" quality python3 benchmarks/bench_quality.py --device "$DEVICE" \
    --preset "${PRESET:-balanced}" --size "${QUALITY_SIZE:-256}" --images 8 \
    --sigmas "${SIGMAS:-15,25,50}" --tasks denoise --no-sgld --json "$OUT/quality.json"
stage "${LIMIT_SPEED:-100}" speed python3 benchmarks/bench_speed.py --device "$DEVICE" \
    --size "${SPEED_SIZE:-512}" --rgb --steps 30 --full-runs --variants "" --members "" \
    --presets "${SPEED_PRESETS:-fast,balanced}" --methods dip --json "$OUT/speed.json"
stage "${LIMIT_R2R:-120}" r2r python3 benchmarks/bench_cpu_target.py --device "$DEVICE" \
    --sigma "${SIGMA:-25}" --mark 5 --budget 20 --threads 8 --configs "${CONFIGS:-fast,sure}" \
    --images "${IMAGES:-sample,moon,coins,astronaut,coffee,chelsea}" --json "$OUT/r2r.json"
