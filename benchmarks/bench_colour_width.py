"""Net width and loss for colour images: single nets of the fast preset at several widths
and with its SURE and R2R settings, on bench_quality.py's colour images (same preparation:
centre square, resized, unclipped Gaussian noise with seed 0), against CBM3D from PyPI's
``bm3d``.

    python benchmarks/bench_colour_width.py --size 256 --sigma 25 \\
        --images astronaut,coffee,chelsea,rocket --widths 16,32
    python benchmarks/bench_colour_width.py --widths 16 --losses sure,r2r
    python benchmarks/bench_colour_width.py --widths 16 --losses r2r --refines off,wiener
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
from bench_quality import add_noise, load_image, psnr  # noqa: E402

import napari_dip  # noqa: E402


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", default="astronaut,coffee,chelsea,rocket")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--sigma", type=float, default=25.0, help="noise std in /255 (25)")
    ap.add_argument("--widths", default="16,32")
    ap.add_argument("--losses", default="sure", help="comma list of sure, r2r (sure)")
    ap.add_argument("--refines", default=None,
                    help="comma list of off, wiener: a column per second stage (default: "
                         "the preset's)")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    sigma = args.sigma / 255.0
    rows = []
    losses = args.losses.split(",")
    # a column per loss and width: "w16" for SURE alone (as before), "r2r-w16", ...
    columns = [(f"w{w}" if losses == ["sure"] else f"{loss}-w{w}", loss, w, None)
               for loss in losses for w in args.widths.split(",")]
    if args.refines:  # "r2r-w16-wiener", ...
        columns = [(f"{key}-{r}", loss, w, r) for key, loss, w, _ in columns
                   for r in args.refines.split(",")]
    for name in args.images.split(","):
        clean = load_image(name, args.size)
        noisy = add_noise(clean, sigma)
        row = dict(image=name)
        try:
            import bm3d

            t = time.perf_counter()
            est = bm3d.bm3d_rgb(noisy, sigma) if clean.ndim == 3 else bm3d.bm3d(noisy, sigma)
            row["peer"] = round(psnr(clean, np.clip(est, 0, 1)), 2)
            row["peer_seconds"] = round(time.perf_counter() - t, 1)
        except ImportError:
            row["peer"] = None
        for key, loss, w, refine in columns:
            t = time.perf_counter()
            extra = {} if refine is None else dict(refine=refine)
            res = napari_dip.restore(noisy, preset=args.preset, seed=0, device=args.device,
                                     channel_axis=-1 if clean.ndim == 3 else None,
                                     width=int(w), loss=loss, **extra)
            row[key] = round(psnr(clean, np.clip(res.image, 0, 1)), 2)
            row[f"{key}_seconds"] = round(time.perf_counter() - t, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    keys = [key for key, *_ in columns]
    print(f"\n{args.size}x{args.size}, sigma {args.sigma:g}, preset {args.preset}, "
          f"{args.device}, torch {torch.__version__}; PSNR in dB (seconds)")
    print(f"{'image':<10} {'peer':>6} " + " ".join(f"{k:>14}" for k in keys))
    for r in rows:
        peer = "-" if r["peer"] is None else f"{r['peer']:.2f}"
        cells = " ".join(f"{r[k]:>7.2f} ({r[f'{k}_seconds']:>4.0f})" for k in keys)
        print(f"{r['image']:<10} {peer:>6} {cells}")
    means = " ".join(f"{np.mean([r[k] for r in rows]):>14.2f}" for k in keys)
    peers = [r["peer"] for r in rows if r["peer"] is not None]
    print(f"{'mean':<10} {np.mean(peers) if peers else float('nan'):>6.2f} {means}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
