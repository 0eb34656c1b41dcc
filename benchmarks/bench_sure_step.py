"""How the SURE loss's perturbation length affects a run: best step, last step, overfitting.

The SURE loss estimates the net's divergence from one random perturbation of its input per
step (``engine.SURE_STEP`` in units of the data range). For each length, the fast preset's
SURE run is traced snapshot by snapshot against the ground truth; the table gives the best
PSNR and its step, the PSNR of the returned (last) estimate, the gap between them, and the
mean SURE value of the last snapshot interval over the estimated noise variance (an
estimate of MSE / sigma^2; a value near or below zero while the PSNR falls means the net
has learnt to game the divergence estimate).

    python benchmarks/bench_sure_step.py                      # 64x64 camera, sigma 25
    python benchmarks/bench_sure_step.py --steps 600 --lengths 0.003,0.01 --size 128
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

import napari_dip
from napari_dip.core import arrays, engine


def case(size: int, sigma: float, seed: int):
    from skimage import data, transform

    clean = data.camera().astype(np.float64) / 255.0
    if size != clean.shape[0]:
        clean = transform.resize(clean, (size, size), anti_aliasing=True)
    noisy = clean + np.random.default_rng(seed).normal(0.0, sigma / 255.0, clean.shape)
    return noisy.astype(np.float32), clean.astype(np.float32)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lengths", default="0.001,0.003,0.01,0.05")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--sigma", type=float, default=25.0)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    noisy, clean = case(args.size, args.sigma, 0)
    lo, hi = float(noisy.min()), float(noisy.max())
    var = arrays.noise_variance(((noisy - lo) / (hi - lo))[None])
    default = engine.SURE_STEP
    rows = []
    try:
        for length in [float(v) for v in args.lengths.split(",")]:
            engine.SURE_STEP = length
            trace = []
            # SURE itself at every noise level (no fallback to the squared error)
            for snap in napari_dip.iterate(noisy, preset="fast", steps=args.steps, seed=0,
                                           device="cpu", reference=clean, sure_max_noise=0.0):
                trace.append((snap.step, snap.psnr, float(np.mean(snap.losses)) / var))
            best = max(trace, key=lambda t: t[1])
            rows.append(dict(length=length, best=best[1], best_step=best[0], last=trace[-1][1],
                             gap=best[1] - trace[-1][1], sure_last=trace[-1][2], trace=trace))
            print({k: v for k, v in rows[-1].items() if k != "trace"}, flush=True)
    finally:
        engine.SURE_STEP = default
    print(f"\ncamera {args.size}x{args.size}, sigma {args.sigma:g}, fast preset (SURE), "
          f"{args.steps} steps, CPU, torch {torch.__version__}; engine default {default}")
    print(f"{'length':>8s} {'best dB':>8s} {'at step':>8s} {'last dB':>8s} {'gap':>6s} "
          f"{'SURE/s2 at end':>15s}")
    for r in rows:
        print(f"{r['length']:8g} {r['best']:8.2f} {r['best_step']:8d} {r['last']:8.2f} "
              f"{r['gap']:6.2f} {r['sure_last']:15.3f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(args=vars(args), rows=rows), fh, indent=1)


if __name__ == "__main__":
    sys.exit(main())
