"""Inpainting benchmark: grey images with 50 % and 80 % of their pixels lost at random and
with a text/scribble mask, filled by

- ``biharmonic``: scikit-image's ``inpaint_biharmonic`` (the classical peer);
- ``fill``: the push-pull fill the hold-out fit starts from (``core/fill.py``);
- the preset's default for images with a mask, named by its loss: ``holdout`` (the
  hold-out fit) with the fast and balanced presets, ``mse`` (the papers' DIP) with
  quality;
- ``holdout:net`` where the run blends its gaps with a biharmonic interpolation
  (``gap_blend``): the same run's estimate before that blend;
- ``mse`` (with ``--mse``): the papers' DIP (``loss="mse"``) with the preset's settings
  for it, the fast and balanced presets' default for masked images before the hold-out
  fit.

Every method keeps the known pixels (``keep_known=True``), so the PSNR differences come
from the gaps; PSNR is given on the whole image (the DIP paper's measure) and on the gaps.
With ``--sigma S`` the known pixels carry Gaussian noise of std S/255 (seed 0, not
clipped) and the DIP runs return their own estimate there (denoising and filling at
once); biharmonic and the fill then keep the noisy known pixels.
Images come from scikit-image and are prepared as in ``bench_quality.py`` (centre square,
resized); the masks are ``bench_quality.make_masks`` (seed 0).

    python benchmarks/bench_inpaint.py                       # 2 CPU cores: ~15 minutes
    python benchmarks/bench_inpaint.py --images camera --mse # the earlier default too
    python benchmarks/bench_inpaint.py --images camera --masks random50 --sigma 25 --mse
    python benchmarks/bench_inpaint.py --device cuda --size 512 --preset balanced
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_quality import load_image, make_masks, psnr, psnr_on  # noqa: E402

IMAGES = ("camera", "moon", "brick", "clock", "coins", "retina", "grass", "text")
MASKS = ("random50", "random80", "text")


def grey(name: str, size: int) -> np.ndarray:
    img = load_image(name, size)
    if img.ndim == 3:  # retina and other colour images: their luminance
        img = img @ np.array([0.2125, 0.7154, 0.0721])
    return np.clip(img, 0.0, 1.0)


def run_dip(observed, mask, args, **options):
    """The run's result, its seconds, and where the run blends its gaps with an
    interpolation (``gap_blend``) the net's own estimate before that blend (the snapshot
    before the final one), with the known pixels kept as the result keeps them."""
    import napari_dip
    from napari_dip.core.api import Result

    t = time.perf_counter()
    snaps = []
    for snap in napari_dip.iterate(observed.astype(np.float32), mask=mask, preset=args.preset,
                                   device=args.device, seed=args.seed,
                                   keep_known=args.sigma == 0, steps=args.steps, **options):
        snaps = [*snaps[-1:], snap]
    sec = time.perf_counter() - t
    res = Result.from_snapshot(snaps[-1])
    net = None
    if res.info.config.gap_blend != "off" and len(snaps) == 2:
        net = snaps[0].image
        if args.sigma == 0:
            net = np.where(mask, net, observed)
    return res, sec, net


def push_pull_fill(observed, mask):
    import torch

    from napari_dip.core.fill import push_pull

    v = torch.from_numpy(observed.astype(np.float32))[None, None]
    w = torch.from_numpy((~mask).astype(np.float32))[None, None]
    return push_pull(v, w)[0, 0].numpy().astype(np.float64)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", default=",".join(IMAGES), help="comma list of skimage.data names")
    p.add_argument("--masks", default=",".join(MASKS), help="comma list of " + ", ".join(MASKS))
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--preset", default="fast", choices=("fast", "balanced", "quality"))
    p.add_argument("--steps", type=int, default=None, help="engine steps (default: preset's)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--sigma", type=float, default=0.0,
                   help="Gaussian noise on the known pixels, in /255 (default 0)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--mse", action="store_true",
                   help="also run the papers' loss with the preset's settings for it")
    p.add_argument("--options", default="",
                   help="config options for the hold-out runs, e.g. 'lr_final=0.3'")
    p.add_argument("--json", default=None, help="write the rows here")
    a = p.parse_args(argv)
    a.images = [s for s in a.images.split(",") if s]
    a.masks = [s for s in a.masks.split(",") if s]
    bad = set(a.masks) - set(MASKS)
    if bad:
        p.error(f"--masks: expected names from {', '.join(MASKS)}, got {', '.join(sorted(bad))}")
    opts = {}
    for item in filter(None, a.options.split(",")):
        key, _, value = item.partition("=")
        for conv in (int, float):
            try:
                value = conv(value)
                break
            except ValueError:
                continue
        else:
            value = {"true": True, "false": False}.get(value.lower(), value)
        opts[key.strip()] = value
    a.options = opts
    return a


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch
    from skimage.restoration import inpaint_biharmonic

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    name = torch.cuda.get_device_name(0) if device.startswith("cuda") else platform.processor()
    print(f"# inpainting, {args.size}x{args.size} grey, noise sigma {args.sigma:g}/255, "
          f"preset {args.preset}, device {device} "
          f"({name or 'cpu'}, {torch.get_num_threads()} threads), torch {torch.__version__}, "
          f"options {args.options or '-'}")
    head = f"{'image':<8} {'mask':<14} {'method':<10} {'PSNR':>6} {'gaps':>6} {'steps':>5} {'s':>6}"
    print(head)
    print("-" * len(head))
    rows = []

    def add(row):
        rows.append(row)
        print(f"{row['image']:<8} {row['mask']:<14} {row['method']:<10} {row['psnr']:6.2f} "
              f"{row['psnr_gaps']:6.2f} {row.get('steps', ''):>5} {row['seconds']:6.1f}",
              flush=True)

    for image in args.images:
        clean = grey(image, args.size)
        masks = make_masks(clean.shape)
        for mname in args.masks:
            mask = masks[mname]
            noisy = clean
            if args.sigma > 0:
                rng = np.random.default_rng(0)
                noisy = clean + rng.normal(0.0, args.sigma / 255.0, clean.shape)
            observed = np.where(mask, 0.0, noisy)
            base = dict(image=image, mask=f"{mname}({mask.mean() * 100:.0f}%)")
            t = time.perf_counter()
            bh = inpaint_biharmonic(observed, mask)
            add({**base, "method": "biharmonic", "psnr": psnr(clean, bh),
                 "psnr_gaps": psnr_on(clean, bh, mask), "seconds": time.perf_counter() - t})
            t = time.perf_counter()
            pp = push_pull_fill(observed, mask)
            add({**base, "method": "fill", "psnr": psnr(clean, pp),
                 "psnr_gaps": psnr_on(clean, pp, mask), "seconds": time.perf_counter() - t})
            res, sec, net = run_dip(observed, mask, args, **args.options)
            default = res.info.config.loss
            if net is not None:  # the same run before its gaps' blend
                add({**base, "method": default + ":net", "psnr": psnr(clean, net),
                     "psnr_gaps": psnr_on(clean, net, mask), "steps": res.steps,
                     "seconds": sec})
            add({**base, "method": default, "psnr": psnr(clean, res.image),
                 "psnr_gaps": psnr_on(clean, res.image, mask), "steps": res.steps,
                 "seconds": sec, "stop": res.stop_reason,
                 "notes": [n for n in res.info.notes if n.startswith("gap blend")]})
            if args.mse and default != "mse":
                res, sec, _ = run_dip(observed, mask, args, loss="mse")
                add({**base, "method": "mse", "psnr": psnr(clean, res.image),
                     "psnr_gaps": psnr_on(clean, res.image, mask), "steps": res.steps,
                     "seconds": sec, "stop": res.stop_reason})

    print("\nmean PSNR (whole image) per mask; 'vs biharmonic' is the mean difference")
    methods = [m for m in ("biharmonic", "fill", "holdout", "holdout:net", "mse")
               if any(r["method"] == m for r in rows)]
    first = methods[2]  # the preset's default
    print(f"{'mask':<14} " + " ".join(f"{m:>10}" for m in methods)
          + f" {first + '-bh':>10} {first + ' s':>9}")
    for mname in args.masks:
        sel = [r for r in rows if r["mask"].startswith(mname + "(")]
        means = {m: np.mean([r["psnr"] for r in sel if r["method"] == m]) for m in methods}
        secs = np.mean([r["seconds"] for r in sel if r["method"] == first])
        print(f"{mname:<14} " + " ".join(f"{means[m]:10.2f}" for m in methods)
              + f" {means[first] - means['biharmonic']:+10.2f} {secs:9.1f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(
            {"device": device, "device_name": name, "size": args.size, "sigma": args.sigma,
             "preset": args.preset,
             "options": args.options, "torch": torch.__version__, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
