"""Large inputs: a 4096 x 4096 image and a 512 x 512 x 64 volume under a memory budget.

The engine estimates what a run needs; when the whole image does not fit the budget it
restores overlapping tiles one after the other and blends them. This script runs both
cases with a budget like a 24 GB card's (default 22 GiB; the papers' net alone would need
about 160 GiB for either), and prints: the tiles chosen, seconds, peak device memory, PSNR
before and after, and a seam measure: the mean jump between neighbouring pixels across the
centre of every tile overlap divided by the mean jump 2-6 pixels beside it (1 means the
seam cannot be told from its surroundings), for the result and for the clean image at the
same places.

    python benchmarks/bench_large.py --device cuda --json benchmarks/results/large_cuda.json
    python benchmarks/bench_large.py --device cpu --size 512 --depth 16 --steps 30 --budget 0.2
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

import napari_dip
from napari_dip.core import tiling
from napari_dip.core.config import make_config
from napari_dip.core.device import device_name, resolve_device
from napari_dip.core.engine import psnr


def large_image(size: int, sigma: float, seed: int = 0):
    from skimage import data, transform

    clean = transform.resize(data.camera().astype(np.float32) / 255, (size, size),
                             anti_aliasing=True).astype(np.float32)
    noisy = clean + np.random.default_rng(seed).normal(0, sigma / 255, clean.shape)
    return noisy.astype(np.float32), clean


def large_volume(depth: int, size: int, sigma: float, seed: int = 0):
    """Smooth blobs like stained nuclei: random impulses blurred in 3-D."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    clean = np.zeros((depth, size, size), np.float32)
    n = depth * size * size // 3000
    idx = tuple(rng.integers(0, s, n) for s in clean.shape)
    clean[idx] = rng.uniform(0.5, 1.0, n)
    clean = ndimage.gaussian_filter(clean, (1.5, 3.0, 3.0))
    clean = (clean / clean.max()).astype(np.float32)
    noisy = clean + rng.normal(0, sigma / 255, clean.shape)
    return noisy.astype(np.float32), clean


def seam_ratios(image: np.ndarray, plan: tiling.TilePlan) -> list[float]:
    out = []
    for axis, starts in enumerate(plan.starts):
        jumps = np.abs(np.diff(image, axis=axis))
        other = tuple(a for a in range(image.ndim) if a != axis)
        profile = jumps.mean(axis=other)
        for a, b in zip(starts, starts[1:]):
            c = (b + a + plan.tile[axis]) // 2 - 1
            near = np.r_[profile[max(c - 6, 0):max(c - 1, 0)], profile[c + 2:c + 7]]
            out.append(float(profile[c] / max(near.mean(), 1e-12)))
    return out


def run_case(name, noisy, clean, dev, cfg, budget):
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    estimate = tiling.estimate_memory(cfg, noisy.shape, 1, dev.type)
    t = time.perf_counter()
    res = napari_dip.restore(noisy, config=cfg, device=dev, seed=0, reference=clean,
                             memory_budget=budget)
    secs = time.perf_counter() - t
    peak = torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else float("nan")
    row = dict(case=name, shape=list(noisy.shape), whole_estimate_gib=estimate / 2**30,
               budget_gib=budget, tiling=res.info.tiles, seconds=secs, steps=res.steps,
               peak_gib=peak, psnr_in=psnr(noisy, clean), psnr_out=res.psnr,
               notes=res.info.notes)
    if res.info.tiles:
        t = res.info.tiles
        plan = tiling.plan_tiles(noisy.shape, t["tile_shape"], t["overlap"])
        r_out = seam_ratios(res.image, plan)
        r_ref = seam_ratios(clean, plan)
        row.update(seams=len(r_out), seam_ratio_mean=float(np.mean(r_out)),
                   seam_ratio_max=float(np.max(r_out)), clean_ratio_mean=float(np.mean(r_ref)),
                   clean_ratio_max=float(np.max(r_ref)))
    print(row, flush=True)
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--size", type=int, default=4096, help="image side (and volume Y, X / 8)")
    ap.add_argument("--depth", type=int, default=64, help="volume planes")
    ap.add_argument("--volume-size", type=int, default=512)
    ap.add_argument("--sigma", type=float, default=25.0)
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--steps", type=int, default=150, help="steps per tile (no stop rule)")
    ap.add_argument("--budget", type=float, default=22.0, help="GiB")
    ap.add_argument("--cases", default="image,volume")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    dev = resolve_device(args.device)
    torch.backends.cudnn.benchmark = True
    cfg = make_config("dip", args.preset, steps=args.steps, auto_stop=False)
    print(f"device: {device_name(dev)}; preset {args.preset}, {args.steps} steps per tile, "
          f"budget {args.budget} GiB; torch {torch.__version__}")
    rows = []
    if "image" in args.cases:
        noisy, clean = large_image(args.size, args.sigma)
        rows.append(run_case(f"image {args.size}x{args.size}", noisy, clean, dev, cfg, args.budget))
    if "volume" in args.cases:
        noisy, clean = large_volume(args.depth, args.volume_size, args.sigma)
        rows.append(run_case(f"volume {args.volume_size}x{args.volume_size}x{args.depth}", noisy,
                             clean, dev, cfg, args.budget))
    print(f"\n{'case':24s} {'whole GiB':>9s} {'tiles':>6s} {'tile':>14s} {'s':>7s} "
          f"{'peak GiB':>9s} {'PSNR in':>8s} {'PSNR out':>9s} {'seam (clean)':>15s}")
    for r in rows:
        t = r["tiling"] or {"tiles": 1, "tile_shape": r["shape"]}
        seam = (f"{r['seam_ratio_mean']:.2f} ({r['clean_ratio_mean']:.2f})"
                if "seam_ratio_mean" in r else "-")
        print(f"{r['case']:24s} {r['whole_estimate_gib']:9.1f} {t['tiles']:6d} "
              f"{'x'.join(map(str, t['tile_shape'])):>14s} {r['seconds']:7.1f} "
              f"{r['peak_gib']:9.2f} {r['psnr_in']:8.2f} {r['psnr_out']:9.2f} {seam:>15s}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(device=device_name(dev), args=vars(args), rows=rows), fh, indent=1)


if __name__ == "__main__":
    sys.exit(main())
