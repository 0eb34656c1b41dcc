#!/usr/bin/env bash
# One prepared GPU session for R2R's drift stop and the defaults as they now are (about 10
# minutes on an H100/H200; PART=1 runs the traces alone, PART=2 the rest, for two calls of
# at most 10 minutes each):
#  1. traces (bench_r2r_trace.py) of the balanced preset's four grey nets with the stop off,
#     on the images where the stops differed on two CPU cores (moon, clock, brick, retina,
#     hubble_deep_field at sigma 25, and at sigma 50), then of the fast preset's one net:
#     where the drift stop fires on a GPU and with four nets, and what it costs against
#     the best snapshot; and of the balanced preset's colour nets (32 wide) on colour images,
#     where a nearly blank first output once set the drift's reference (DRIFT_GATE);
#  2. the time-budget table (bench_cpu_target.py) of the fast and balanced presets on the
#     ten grey images of the CPU tables at sigma 25, with the stop on, with and without
#     their second stage (refine="wiener"; the ":net" rows: the same runs before it),
#     and the second stage's time by image size (bench_refine.py);
#  3. the quality benchmark of the balanced preset (the default) on its 8 images at sigma
#     15, 25 and 50, DIP with the stop rule against its oracle and BM3D / CBM3D.
#  4. (PART=3, a call of its own) inpainting (bench_inpaint.py) at 512x512: the balanced
#     preset's four hold-out nets on six grey images with 50 % and 80 % of their pixels
#     lost and a text mask, against biharmonic inpainting, and on camera at 50 % the
#     papers' DIP (the quality preset, 3000 steps) for the DIP paper's level; first the
#     biharmonic solver on the GPU against scikit-image's (bench_biharmonic.py; about 50 s
#     of CPU sparse solves, the largest left out).
# Usage: OUT=results_dir bash benchmarks/gpu_stop.sh
TAIL="${TAIL:-34}"
source "$(dirname "$0")/gpu_stages.sh"
PART="${PART:-all}"
if [ "$PART" = 3 ]; then
TAIL=16 stage "${LIMIT_BIHARMONIC:-150}" biharmonic python3 benchmarks/bench_biharmonic.py \
    --device "$DEVICE" --sizes 512,1024,2048 --volumes "16,64,64;64,256,256;64,512,512" \
    --skip-scikit-above 600000 --json "$OUT/biharmonic.json"
stage "${LIMIT_INPAINT:-300}" inpaint_balanced python3 benchmarks/bench_inpaint.py \
    --device "$DEVICE" --size 512 --preset balanced --threads 4 \
    --images "${INPAINT_IMAGES:-camera,moon,brick,clock,coins,grass}" \
    --json "$OUT/inpaint_balanced_512.json"
stage "${LIMIT_INPAINT_MSE:-200}" inpaint_quality python3 benchmarks/bench_inpaint.py \
    --device "$DEVICE" --size 512 --preset quality --threads 4 --images camera \
    --masks random50 --json "$OUT/inpaint_quality_512.json"
exit 0
fi
if [ "$PART" != 2 ]; then
RUNS="${RUNS:-moon:25,clock:25,brick:25,retina:25,hubble_deep_field:25,moon:50,clock:50,retina:50,hubble_deep_field:50}"
stage "${LIMIT_TRACE:-150}" trace_balanced python3 benchmarks/bench_r2r_trace.py \
    --device "$DEVICE" --config balanced --runs "$RUNS" --json "$OUT/trace_balanced.json"
stage "${LIMIT_TRACE:-150}" trace_fast python3 benchmarks/bench_r2r_trace.py \
    --device "$DEVICE" --config fast --runs "$RUNS" --json "$OUT/trace_fast.json"
stage "${LIMIT_TRACE:-150}" trace_balanced_colour python3 benchmarks/bench_r2r_trace.py \
    --device "$DEVICE" --config balanced --colour \
    --runs "${COLOUR_RUNS:-astronaut:25,chelsea:25,coffee:25,rocket:25,astronaut:50,coffee:50}" \
    --json "$OUT/trace_balanced_colour.json"
fi
[ "$PART" = 1 ] && exit 0
TAIL=16 stage "${LIMIT_TABLE:-200}" table python3 benchmarks/bench_cpu_target.py \
    --device "$DEVICE" --sigma 25 --mark 5 --budget 20 --threads 8 \
    --configs "${CONFIGS:-fast,balanced}" \
    --images "${IMAGES:-sample,moon,coins,astronaut,coffee,chelsea,brick,grass,gravel,clock}" \
    --json "$OUT/table.json"
TAIL=12 stage "${LIMIT_REFINE:-60}" refine python3 benchmarks/bench_refine.py \
    --device "$DEVICE" --sizes 256,512,1024,2048 --json "$OUT/refine.json"
TAIL=30 stage "${LIMIT_QUALITY:-300}" quality_balanced python3 benchmarks/bench_quality.py \
    --device "$DEVICE" --preset balanced --size 256 --images 8 --sigmas "${SIGMAS:-15,25,50}" \
    --tasks denoise --no-sgld --threads 4 --json "$OUT/quality_balanced.json"
