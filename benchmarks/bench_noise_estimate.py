"""How well the noise level is read from the image: the run's estimate against the truth.

Every denoising run without a given ``noise_std`` reads the noise std from the image
(``engine.image_noise_variance``: the median absolute deviation of the finest diagonal
differences, read away from clipped ends). On fine texture that reading is too high, and
the run smooths the texture away (benchmarks/RESULTS.md, "A known noise level"). This
script prints, for 256x256 8-bit crops (bench_cpu_target.py's images and noise recipe) at
several noise levels and on the clean crops, in /255:

- ``engine``: the run's estimate;
- ``quantile``: an alternative kept here for comparison, not used by the engine: the mean
  squared diagonal difference in 8x8 blocks, its ``--quantile`` over the blocks (the
  flattest blocks), divided by the same quantile for white noise of unit variance on an
  image of the same shape (simulated, so the ratio is unbiased on pure noise); blocks
  with a pixel at a clipped end, or whose mean lies within two estimated stds of it, are
  left out.

    python benchmarks/bench_noise_estimate.py
    python benchmarks/bench_noise_estimate.py --images coins,grass --sigmas 0,5,15 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

IMAGES = "sample,moon,coins,astronaut,coffee,chelsea,brick,grass,gravel,clock"


def _diagonal(img: np.ndarray) -> np.ndarray:
    """The finest diagonal differences of a 2-D image as the engine's estimate takes them
    (``arrays._diagonal_details``), in their (H - 1, W - 1) layout."""
    from napari_dip.core import arrays

    d, _ = arrays._diagonal_details(img[None], None)
    return d.reshape(img.shape[0] - 1, img.shape[1] - 1)


def _blocks(a: np.ndarray, b: int) -> np.ndarray:
    h, w = a.shape[0] - a.shape[0] % b, a.shape[1] - a.shape[1] % b
    return a[:h, :w].reshape(h // b, b, w // b, b).transpose(0, 2, 1, 3).reshape(-1, b * b)


def quantile_std(img: np.ndarray, rough: float, q: float = 0.25, block: int = 8,
                 seed: int = 0) -> float:
    """The ``quantile`` reading of the module's docstring, for a 2-D image (any units);
    ``rough``: a first estimate of the std, for the margin at clipped ends."""
    from napari_dip.core import arrays

    img = np.asarray(img, np.float64)
    energy = (_blocks(_diagonal(img), block) ** 2).mean(axis=1)
    means = _blocks(img[:-1, :-1], block).mean(axis=1)
    low, high = arrays.clipped_ends(img[None])
    lo, hi = float(img.min()), float(img.max())
    at_end = _blocks(((img <= lo) | (img >= hi))[:-1, :-1].astype(np.float64), block).max(1)
    keep = np.ones(energy.shape, bool)
    if low:
        keep &= (at_end == 0) & (means > lo + 2 * rough)
    if high:
        keep &= (at_end == 0) & (means < hi - 2 * rough)
    if keep.sum() < 16:
        keep[:] = True
    noise = np.random.default_rng(seed).standard_normal(img.shape)
    ref = (_blocks(_diagonal(noise), block) ** 2).mean(axis=1)
    return float(np.sqrt(np.quantile(energy[keep], q) / np.quantile(ref, q)))


def engine_std(img: np.ndarray) -> float:
    """The run's estimate (in the image's units) for an 8-bit image."""
    from napari_dip.core import arrays, engine, make_config

    prep = arrays.prepare(img)
    var, _ = engine.image_noise_variance(prep.data, make_config("dip", "fast"))
    return float(np.sqrt(var)) * (prep.hi - prep.lo)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", default=IMAGES)
    ap.add_argument("--sigmas", default="0,5,15,25,50", help="noise stds in /255; 0: clean")
    ap.add_argument("--quantile", type=float, default=0.25)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    from bench_cpu_target import test_image

    sigmas = [float(s) for s in args.sigmas.split(",")]
    names = args.images.split(",")
    rows = []
    for sigma in sigmas:
        for name in names:
            noisy, clean = test_image(name, sigma=sigma if sigma > 0 else 25.0)
            img = noisy if sigma > 0 else clean
            eng = engine_std(img)
            rows.append(dict(image=name, sigma=sigma, engine=eng,
                             quantile=quantile_std(img, eng, args.quantile)))
    print(f"noise std read from 256x256 8-bit crops, in /255 (sigma 0: the clean crop); "
          f"quantile {args.quantile:g} of 8x8 blocks")
    print(f"{'image':10s} " + " ".join(f"{f's{s:g} eng':>8s} {'quant':>6s}" for s in sigmas))
    for name in names:
        cells = []
        for sigma in sigmas:
            r = next(r for r in rows if r["image"] == name and r["sigma"] == sigma)
            cells.append(f"{r['engine']:8.1f} {r['quantile']:6.1f}")
        print(f"{name:10s} " + " ".join(cells))
    print("\nmean reading / the truth (sigma 0: mean reading), and the largest")
    for sigma in sigmas:
        sel = [r for r in rows if r["sigma"] == sigma]
        for key in ("engine", "quantile"):
            vals = np.array([r[key] for r in sel]) / (sigma if sigma > 0 else 1.0)
            worst = sel[int(np.argmax(vals))]["image"]
            print(f"sigma {sigma:4g} {key:9s} mean {vals.mean():6.3f}  max {vals.max():6.3f} "
                  f"({worst})  min {vals.min():6.3f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(args=vars(args), rows=rows), fh, indent=1)


if __name__ == "__main__":
    sys.exit(main())
