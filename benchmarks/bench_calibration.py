"""SGLD inpainting: the std in the gaps as the chain gives it, and calibrated on held-out
known pixels (``calibration_share``), side by side.

For each image (a 64x64 grey crop: camera as in ``bench_uncertainty.py``, the others as
``bench_quality.py`` prepares them, made grey) and each seed, the masks of ``bench_uncertainty.py`` (50 %
of the pixels at random plus text strokes and a block) are filled twice with the SGLD
fast preset: with ``calibration_share=0`` and with the preset's share. Per run it prints
the posterior mean's PSNR, the factor the calibration applied, and for the gaps, the
text and block holes and the whole image the RMSE over the RMS std (1: calibrated) and
the share of errors within 1.96 std (95 % for a calibrated Gaussian posterior), then the
means over the runs.

    python benchmarks/bench_calibration.py --images camera,astronaut --seeds 1,2,3
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_quality import load_image  # noqa: E402
from bench_uncertainty import inpainting_masks, load_clean  # noqa: E402


def grey_crop(name: str, size: int) -> np.ndarray:
    """A size x size grey crop in [0, 1]: camera as bench_uncertainty.py takes it, any other
    scikit-image picture as bench_quality.py prepares it, made grey."""
    if name == "camera":
        return load_clean(size)
    from skimage import color

    img = load_image(name, size)
    return color.rgb2gray(img) if img.ndim == 3 else img


def scores(err: np.ndarray, std: np.ndarray, where: np.ndarray) -> tuple[float, float]:
    """(RMSE / RMS std, share of |error| within 1.96 std) over the pixels ``where``."""
    e, s = err[where], std[where]
    return (float(np.sqrt(np.mean(e ** 2)) / np.sqrt(np.mean(s ** 2))),
            float(np.mean(np.abs(e) <= 1.96 * s)))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", default="camera,astronaut")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--preset", default="fast", choices=["fast", "balanced"])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    import torch

    import napari_dip

    torch.set_num_threads(args.threads)
    share = napari_dip.make_config("sgld", args.preset, masked=True).calibration_share
    rows = []
    for name in args.images.split(","):
        clean = grey_crop(name, args.size)
        rand, text = inpainting_masks(clean.shape)
        missing = rand | text
        observed = np.where(missing, 0.0, clean)
        for seed in (int(s) for s in args.seeds.split(",")):
            for calib in (0.0, share):
                t = time.perf_counter()
                res = napari_dip.restore(observed, mask=missing, method="sgld",
                                         preset=args.preset, steps=args.steps, seed=seed,
                                         device=args.device, calibration_share=calib)
                err = np.asarray(res.image, np.float64) - clean
                std = np.asarray(res.std, np.float64)
                note = " ".join(n for n in res.info.notes if n.startswith("uncertainty:"))
                found = re.search(r"multiplied by ([0-9.e+-]+)", note)
                row = dict(image=name, seed=seed, share=calib,
                           psnr=float(10 * np.log10(1.0 / np.mean(err ** 2))),
                           factor=float(found.group(1)) if found else 1.0,
                           gaps=scores(err, std, missing), text=scores(err, std, text),
                           all=scores(err, std, np.ones_like(missing)),
                           seconds=time.perf_counter() - t)
                rows.append(row)
                print(json.dumps(row), flush=True)
    print(f"\nSGLD {args.preset}, {args.steps} steps, {args.size}x{args.size} grey crops, "
          f"{missing.mean():.0%} missing; torch {torch.__version__}, {args.device}. "
          f"'x': the variance factor applied; RMSE/std (1: calibrated) and the share of "
          f"errors within 1.96 std (95 %: calibrated)")
    print(f"{'image':>10} {'seed':>4} {'share':>5} {'PSNR':>6} {'x':>5} "
          f"{'gaps':>13} {'text/block':>13} {'all':>13}")
    for r in rows:
        cells = " ".join(f"{r[k][0]:5.2f} {r[k][1] * 100:5.1f}%" for k in ("gaps", "text", "all"))
        print(f"{r['image']:>10} {r['seed']:>4} {r['share']:>5.2f} {r['psnr']:6.2f} "
              f"{r['factor']:5.2f} {cells}")
    for calib in (0.0, share):
        part = [r for r in rows if r["share"] == calib]
        mean = {k: np.mean([r[k] for r in part], axis=0) for k in ("gaps", "text", "all")}
        cells = " ".join(f"{mean[k][0]:5.2f} {mean[k][1] * 100:5.1f}%"
                         for k in ("gaps", "text", "all"))
        print(f"{'mean':>10} {'':>4} {calib:>5.2f} {np.mean([r['psnr'] for r in part]):6.2f} "
              f"{np.mean([r['factor'] for r in part]):5.2f} {cells}")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
