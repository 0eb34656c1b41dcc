#!/usr/bin/env bash
# One prepared GPU session for SGLD within 30 s (about 9 minutes on an H100/H200): the
# papers' schedule run to its end (20000 steps, burn-in 7000, a sample every 50; about
# 250 s at 512x512 RGB in float32 with the CUDA graph) as the reference posterior mean,
# then SGLD rows that fit 30 s each (bench_speed.py --sgld-seconds 30, 40 % burn-in, 100
# samples) with the options in SGLD_SETS (';' between rows): the papers' net compiled in
# bfloat16 (27.88 dB on an H100 before), four chains of a 64-wide net, and four chains of
# the fast preset's 32-wide SGLD net. The table compares each posterior mean, its
# Spearman correlation and its calibration with the reference in the same run.
# Usage: OUT=results_dir bash benchmarks/gpu_sgld.sh   (DEVICE=cpu SIZE=64
# REFERENCE=steps=300 SECONDS_BUDGET=4 for a small dry run without a GPU)
TAIL="${TAIL:-12}"
source "$(dirname "$0")/gpu_stages.sh"
SETS="${SGLD_SETS:-compile=true,precision=bfloat16,noise_scale=0.5;width=64,members=4,noise_scale=0.5;width=32,scales=4,members=4,noise_scale=0.5}"
stage "${LIMIT_SGLD:-560}" sgld python3 benchmarks/bench_speed.py --device "$DEVICE" \
    --size "${SIZE:-512}" --rgb --steps 30 --variants "" --members "" --presets "" \
    --sgld-reference --sgld-reference-options "${REFERENCE:-}" \
    --sgld-seconds "${SECONDS_BUDGET:-30}" --sgld-options "$SETS" --json "$OUT/sgld.json"
