"""PSNR gain of the "fast" preset on 128x128 crops of scikit-image's camera (CPU).

Gaussian noise sigma = 25/255 (seed 0), at most 1000 steps with the stop rule; compares the
returned estimate with the noisy input and with the best Gaussian blur (a baseline that
needs the ground truth to pick its width). Prints a table.

    python benchmarks/bench_cpu_gain.py [--steps 1000] [--crops 3]
"""

import argparse
import time

import numpy as np
import torch
from scipy import ndimage
from skimage import data

import napari_dip
from napari_dip.core import psnr

CROPS = [(200, 200), (192, 192), (64, 300), (300, 64)]


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--crops", type=int, default=3)
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cam = data.camera().astype(np.float32) / 255
    print(f"{'crop':>10s} {'noisy':>6s} {'blur*':>6s} {'DIP':>6s} {'gain':>6s} {'steps':>6s} "
          f"{'best':>5s} {'s':>6s}")
    for r, c in CROPS[: args.crops]:
        clean = cam[r:r + 128, c:c + 128]
        noisy = clean + np.random.default_rng(0).normal(0, 25 / 255, clean.shape)
        p0 = psnr(noisy, clean)
        blur = max(psnr(ndimage.gaussian_filter(noisy, s), clean) for s in np.linspace(0.3, 3, 28))
        t = time.perf_counter()
        res = napari_dip.restore(noisy, preset=args.preset, steps=args.steps, seed=0,
                                 device="cpu", reference=clean)
        secs = time.perf_counter() - t
        print(f"{r:4d},{c:<5d} {p0:6.2f} {blur:6.2f} {res.psnr:6.2f} {res.psnr - p0:6.2f} "
              f"{res.steps:6d} {res.best_step or 0:5d} {secs:6.1f}", flush=True)


if __name__ == "__main__":
    main()
