"""Time of the second stage (``refine="wiener"``, core/refine.py) by image size, and what it
does to a plain pilot.

The stage runs once per restoration, after the net. This times it alone on scikit-image's
camera (grey) and astronaut (colour), resized, with Gaussian noise of sigma 25/255, and a
5x5 box blur of the noisy image as the pilot (a weak one: the net's estimate is better and
gains less). It prints the seconds (median of ``--repeats``), the peak memory on CUDA,
and the PSNR of the noisy image, the pilot and the filtered image.

    python benchmarks/bench_refine.py                       # CPU, 2 threads
    python benchmarks/bench_refine.py --device cuda --sizes 256,512,1024,2048
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from napari_dip.core.device import device_name, resolve_device
from napari_dip.core.refine import wiener_refine


def test_case(size: int, colour: bool, sigma: float, seed: int = 0):
    from skimage import data, transform

    img = data.astronaut() if colour else data.camera()
    img = transform.resize(img.astype(np.float64) / 255.0, (size, size), anti_aliasing=True)
    clean = np.moveaxis(img, -1, 0) if colour else img[None]
    noisy = clean + np.random.default_rng(seed).normal(0.0, sigma, clean.shape)
    return clean.astype(np.float32), noisy.astype(np.float32)


def psnr(a, b):
    return float(10 * np.log10(1.0 / np.mean((np.clip(a, 0, 1) - b) ** 2)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="128,256,512")
    ap.add_argument("--sigma", type=float, default=25.0, help="noise std in /255 (25)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    dev = resolve_device(args.device)
    sigma = args.sigma / 255.0
    rows = []
    for size in map(int, args.sizes.split(",")):
        for colour in (False, True):
            clean, noisy = test_case(size, colour, sigma)
            y = torch.from_numpy(noisy).to(dev)
            pilot = F.avg_pool2d(F.pad(y[:, None], (2, 2, 2, 2), mode="reflect"), 5,
                                 stride=1)[:, 0]
            times = []
            if dev.type == "cuda":
                torch.cuda.reset_peak_memory_stats(dev)
            for _ in range(args.repeats):
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                t = time.perf_counter()
                out = wiener_refine(y, pilot, sigma)
                if dev.type == "cuda":
                    torch.cuda.synchronize(dev)
                times.append(time.perf_counter() - t)
            peak = (torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda"
                    else None)
            row = dict(size=size, channels=3 if colour else 1,
                       seconds=float(np.median(times)), peak_gib=peak,
                       noisy=psnr(noisy, clean), pilot=psnr(pilot.cpu().numpy(), clean),
                       refined=psnr(out.cpu().numpy(), clean))
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(f"\nsecond stage (Wiener filter), {device_name(dev)}, {args.threads} CPU threads, "
          f"torch {torch.__version__}; sigma {args.sigma:g}; pilot: 5x5 box blur")
    print(f"{'size':>6} {'ch':>3} {'seconds':>8} {'peak GiB':>9} {'noisy':>7} {'pilot':>7} "
          f"{'refined':>8}")
    for r in rows:
        peak = "-" if r["peak_gib"] is None else f"{r['peak_gib']:.2f}"
        print(f"{r['size']:>6} {r['channels']:>3} {r['seconds']:>8.2f} {peak:>9} "
              f"{r['noisy']:>7.2f} {r['pilot']:>7.2f} {r['refined']:>8.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(args=vars(args), torch=torch.__version__, rows=rows), fh, indent=1)


if __name__ == "__main__":
    sys.exit(main())
