"""SURE on clipped data: what the clipping of noisy 8-bit images does to the SURE loss, and
what the imputation of the clipped values (``sure_clipping="impute"``) does about it.

Each run: one of bench_cpu_target.py's 256x256 grey test images with Gaussian noise of
std ``sigma``/255 (noise seed 0), prepared as one of the variants below, denoised with the
fast preset's SURE settings and no noise limit (seed 0); the table gives the PSNR at the
end, the best snapshot (against the clean image) and the last SURE value.

variants
  keep     clipped to [0, 255] and rounded (uint8), SURE on the data as they are
  truth    as keep, with SURE told the true noise level instead of the one it estimates
  float    clipped, not rounded
  dither   as keep, plus uniform noise of one grey level
  noclip   rounded, not clipped
  impute   as keep, with the clipped values imputed (the engine's default)

    python benchmarks/bench_sure_clipping.py --images sample --sigma 50 \\
        --variants keep,truth,float,dither,noclip,impute
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_cpu_target import test_image  # noqa: E402

import napari_dip  # noqa: E402
from napari_dip.core import arrays, engine  # noqa: E402

VARIANTS = ("keep", "truth", "float", "dither", "noclip", "impute")


def make_data(name: str, sigma: float, variant: str) -> tuple[np.ndarray, np.ndarray]:
    noisy, clean = test_image(name, sigma)  # uint8, clipped and rounded
    if variant in ("float", "noclip", "dither"):
        c = clean.astype(np.float64)
        raw = c + np.random.default_rng(0).normal(0.0, sigma, c.shape)
        if variant == "float":
            noisy = np.clip(raw, 0, 255)
        elif variant == "noclip":
            noisy = np.rint(raw)
        else:
            noisy = noisy.astype(np.float64) + np.random.default_rng(5).uniform(
                -0.5, 0.5, c.shape)
    return noisy, clean


def run(name: str, sigma: float, variant: str, device: str) -> dict:
    noisy, clean = make_data(name, sigma, variant)
    options = dict(sure_max_noise=0.0, sure_max_trend=0.0,
                   sure_clipping="impute" if variant == "impute" else "off")
    estimate = arrays.noise_variance
    if variant == "truth":  # the true level in the engine's units (the data's range)
        prep = arrays.prepare(noisy)
        true_var = (sigma / (prep.hi - prep.lo)) ** 2
        engine.arrays.noise_variance = lambda *a, **k: true_var
    t0 = time.perf_counter()
    best, last = (float("-inf"), 0), None
    try:
        for snap in napari_dip.iterate(noisy, preset="fast", seed=0, reference=clean,
                                       device=device, **options):
            if snap.psnr > best[0]:
                best = (snap.psnr, snap.step)
            last = snap
    finally:
        engine.arrays.noise_variance = estimate
    sure_notes = [n for n in last.info.notes if n.startswith("loss: SURE, noise std")]
    std = float(sure_notes[0].split("noise std ")[1].split()[0]) if sure_notes else float("nan")
    prep = arrays.prepare(noisy)
    return dict(image=name, sigma=sigma, variant=variant, end=round(last.psnr, 2),
                best=round(best[0], 2), best_step=best[1], loss=float(f"{last.loss:.4g}"),
                noise_std=round(std * (prep.hi - prep.lo), 1),
                seconds=round(time.perf_counter() - t0, 1))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", default="sample")
    ap.add_argument("--sigma", type=float, default=50.0, help="noise std in /255 (50)")
    ap.add_argument("--variants", default="keep,impute")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    variants = args.variants.split(",")
    for v in variants:
        if v not in VARIANTS:
            ap.error(f"--variants: expected names from {', '.join(VARIANTS)}, got {v!r}")
    rows = []
    for name in args.images.split(","):
        for v in variants:
            rows.append(run(name, args.sigma, v, args.device))
            print(json.dumps(rows[-1]), flush=True)
    print(f"\n256x256 grey, sigma {args.sigma:g}, {args.device}, torch {torch.__version__}; "
          f"noise std: the level SURE used, in grey levels")
    print(f"{'image':<10} {'variant':<8} {'end dB':>7} {'best dB':>8} {'at':>5} "
          f"{'SURE':>10} {'noise':>6} {'sec':>6}")
    for r in rows:
        print(f"{r['image']:<10} {r['variant']:<8} {r['end']:>7.2f} {r['best']:>8.2f} "
              f"{r['best_step']:>5} {r['loss']:>10.4g} {r['noise_std']:>6.1f} "
              f"{r['seconds']:>6.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
