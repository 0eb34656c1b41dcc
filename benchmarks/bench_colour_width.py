"""Net width for colour images: single SURE nets of the fast preset at several widths on
bench_quality.py's colour images (same preparation: centre square, resized, unclipped
Gaussian noise with seed 0), against CBM3D from PyPI's ``bm3d``.

    python benchmarks/bench_colour_width.py --size 256 --sigma 25 \\
        --images astronaut,coffee,chelsea,rocket --widths 16,32
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
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    sigma = args.sigma / 255.0
    rows = []
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
        for w in args.widths.split(","):
            t = time.perf_counter()
            res = napari_dip.restore(noisy, preset=args.preset, seed=0, device=args.device,
                                     channel_axis=-1 if clean.ndim == 3 else None,
                                     width=int(w))
            row[f"w{w}"] = round(psnr(clean, np.clip(res.image, 0, 1)), 2)
            row[f"w{w}_seconds"] = round(time.perf_counter() - t, 1)
        rows.append(row)
        print(json.dumps(row), flush=True)
    widths = args.widths.split(",")
    print(f"\n{args.size}x{args.size}, sigma {args.sigma:g}, preset {args.preset}, "
          f"{args.device}, torch {torch.__version__}; PSNR in dB (seconds)")
    print(f"{'image':<10} {'peer':>6} " + " ".join(f"{'w' + w:>14}" for w in widths))
    for r in rows:
        peer = "-" if r["peer"] is None else f"{r['peer']:.2f}"
        cells = " ".join(f"{r[f'w{w}']:>7.2f} ({r[f'w{w}_seconds']:>4.0f})" for w in widths)
        print(f"{r['image']:<10} {peer:>6} {cells}")
    means = " ".join(f"{np.mean([r[f'w{w}'] for r in rows]):>14.2f}" for w in widths)
    peers = [r["peer"] for r in rows if r["peer"] is not None]
    print(f"{'mean':<10} {np.mean(peers) if peers else float('nan'):>6.2f} {means}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
