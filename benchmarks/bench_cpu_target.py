"""Where the CPU lands against BM3D within a time budget (256x256 grey, sigma 25).

The target: a restoration within 0.5 dB of BM3D in 60 s on two cores, or at least within
1.5 dB in 120 s. Each configuration runs on the noisy camera sample of the README's quick
start (uint8, clipped noise) until the budget is spent; the table gives the PSNR of the estimate at 60 s and at the budget, the
steps done, and BM3D (PyPI ``bm3d``) on the same input in the same run.

    python benchmarks/bench_cpu_target.py                       # fast preset, 2 threads
    python benchmarks/bench_cpu_target.py --configs fast,w16 --budget 120 --json out.json

Add a configuration to CONFIGS to try an idea; it is compared with the rest in one run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

import napari_dip
from napari_dip.core.engine import psnr
from napari_dip.samples import noisy_camera

# name -> (preset, options)
CONFIGS = {
    "fast": ("fast", {}),
    "w16": ("fast", dict(width=16, lr=0.02)),
    "fast-2-members": ("fast", dict(members=2)),
    "balanced": ("balanced", {}),
}


def run_config(noisy, clean, preset, options, budget, seed):
    at = {}
    snap = None
    for snap in napari_dip.iterate(noisy, preset=preset, seed=seed, reference=clean,
                                   device="cpu", **options):
        for mark in (60, budget):
            if mark not in at and snap.elapsed >= mark:
                at[mark] = (snap.psnr, snap.step)
        if snap.elapsed >= budget:
            break
    for mark in (60, budget):
        at.setdefault(mark, (snap.psnr, snap.step))
    return at, snap


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", default="fast,w16")
    ap.add_argument("--budget", type=float, default=120.0, help="seconds per configuration")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    noisy, clean = noisy_camera(size=256, sigma=25, seed=0)
    rows = []
    try:
        import bm3d

        t = time.perf_counter()
        ref = np.asarray(bm3d.bm3d(noisy / 255.0, sigma_psd=25 / 255), np.float64)
        ref = np.clip(np.rint(ref * 255), 0, 255).astype(np.uint8)  # like the restorations
        rows.append(dict(name="BM3D (peer)", psnr_60=psnr(ref, clean),
                         psnr_budget=psnr(ref, clean), seconds=time.perf_counter() - t))
        print(rows[-1], flush=True)
    except ImportError:
        print("bm3d is not installed (pip install bm3d): no peer row", flush=True)
    for name in args.configs.split(","):
        preset, options = CONFIGS[name]
        at, snap = run_config(noisy, clean, preset, options, args.budget, args.seed)
        rows.append(dict(name=name, preset=preset, options=options, psnr_60=at[60][0],
                         steps_60=at[60][1], psnr_budget=at[args.budget][0],
                         steps_budget=at[args.budget][1], seconds=snap.elapsed,
                         stop_reason=snap.stop_reason))
        print(rows[-1], flush=True)
    peer = rows[0]["psnr_60"] if rows and rows[0]["name"].startswith("BM3D") else float("nan")
    print(f"\n256x256 camera, sigma 25 (noisy {psnr(noisy, clean):.2f} dB), CPU, "
          f"{args.threads} threads, torch {torch.__version__}")
    print(f"{'run':18s} {'PSNR@60s':>9s} {'steps':>6s} {f'PSNR@{args.budget:.0f}s':>10s} "
          f"{'steps':>6s} {'vs BM3D':>8s}")
    for r in rows:
        print(f"{r['name']:18s} {r['psnr_60']:9.2f} {r.get('steps_60', 0):6d} "
              f"{r['psnr_budget']:10.2f} {r.get('steps_budget', 0):6d} "
              f"{r['psnr_budget'] - peer:+8.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(args=vars(args), torch=torch.__version__, rows=rows), fh, indent=1,
                      default=str)


if __name__ == "__main__":
    sys.exit(main())
