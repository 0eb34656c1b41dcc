"""The second stage's gains from two pilots: the net's estimate and a hard-thresholding one.

The second stage (``refine="wiener"``, core/refine.py) filters the noisy image with Wiener
gains read from a pilot. ``refine_hard_share = h`` takes ``1 - h`` of the image filtered
with gains from the net's estimate and ``h`` of the image filtered with gains from
``refine.hard_threshold`` (BM3D's first step on the noisy image). This benchmark runs a
preset once per image with the stage on, keeps what the stage was given (the data as the
engine prepared them, the net's estimate and the noise std estimated from the image; by
wrapping ``engine.wiener_refine`` for the run), and scores the stage for every share in
``--shares`` on those same inputs, against BM3D / CBM3D (PyPI ``bm3d``) on the same noisy
image. The result for a share is what a run with ``refine_hard_share`` set to it returns
(the net does not depend on the share).

Images: ``--set grey`` the 256x256 8-bit grey images of bench_cpu_target.py (clipped,
rounded noise; "sample" is the quick start's camera); ``--set colour`` bench_quality.py's
colour images at 256x256 (unclipped float noise), denoised with ``channel_axis=-1``.

    python benchmarks/bench_stage_mix.py --preset fast --set grey
    python benchmarks/bench_stage_mix.py --preset balanced --set colour --images astronaut
    python benchmarks/bench_stage_mix.py --load results_dir   # score saved inputs again

``--save DIR`` keeps each image's stage inputs (``<preset>_<image>.npz``) so that
``--load DIR`` can score other shares without running the nets again.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

GREY = "sample,moon,coins,astronaut,coffee,chelsea,brick,grass,gravel,clock"
COLOUR = "astronaut,coffee,chelsea,rocket"


def run_and_keep(preset: str, name: str, colour: bool, sigma: float, device: str) -> dict:
    """Run the preset on one image; the stage's inputs, the images and the peer's PSNR."""
    import napari_dip
    import napari_dip.core.engine as engine

    if colour:
        from bench_quality import add_noise, load_image

        clean = load_image(name, 256)
        noisy = add_noise(clean, sigma / 255.0).astype(np.float32)
        kw = dict(channel_axis=-1)
    else:
        from bench_cpu_target import test_image

        noisy, clean = test_image(name, sigma=sigma)
        kw = {}
    kept = {}
    original = engine.wiener_refine

    def keep(data, pilot, std, **opts):
        if not kept:  # the first call: gains from the net's estimate
            kept.update(data=data.detach().cpu().numpy(), pilot=pilot.detach().cpu().numpy(),
                        std=float(std))
        return original(data, pilot, std, **opts)

    engine.wiener_refine = keep
    try:
        t = time.perf_counter()
        res = napari_dip.restore(noisy, preset=preset, seed=0, device=device,
                                 refine_hard_share=0.0, **kw)
        seconds = time.perf_counter() - t
    finally:
        engine.wiener_refine = original
    if not kept:
        raise RuntimeError(f"{name}: the {preset} preset ran no second stage")
    import bm3d

    scale = 1.0 if colour else 255.0
    y = noisy.astype(np.float64) / scale
    den = bm3d.bm3d_rgb(y, sigma / 255.0) if colour else bm3d.bm3d(y, sigma_psd=sigma / 255.0)
    return dict(kept, clean=clean, noisy=noisy, out=np.asarray(res.image),
                peer=np.asarray(den, np.float64) * scale, seconds=seconds)


def to_engine_units(case: dict):
    """The clean image in the units of the stage's data, and its peak value there: the
    engine maps the noisy input's value range to [0, 1] (``arrays.prepare``)."""
    from napari_dip.core import arrays

    noisy = np.asarray(case["noisy"])
    prep = arrays.prepare(noisy, channel_axis=-1 if noisy.ndim == 3 else None)
    clean = np.asarray(case["clean"], np.float64)
    clean = np.moveaxis(clean, -1, 0) if clean.ndim == 3 else clean[None]
    span = prep.hi - prep.lo
    peak = 255.0 if noisy.dtype == np.uint8 else 1.0
    return ((clean - prep.lo) / span).reshape(case["data"].shape), peak / span


def score(case: dict, shares: list[float], threads: int) -> dict:
    from napari_dip.core.config import refine_share
    from napari_dip.core.refine import hard_threshold, wiener_refine

    torch.set_num_threads(threads)
    clean, peak = to_engine_units(case)
    y = torch.from_numpy(np.ascontiguousarray(case["data"]))
    pilot = torch.from_numpy(np.ascontiguousarray(case["pilot"]))
    std = float(case["std"])
    blend = refine_share(std)
    t = time.perf_counter()
    from_net = wiener_refine(y, pilot, std).double().numpy()
    t_net = time.perf_counter() - t
    t = time.perf_counter()
    from_hard = wiener_refine(y, hard_threshold(y, std), std).double().numpy()
    t_hard = time.perf_counter() - t
    p = case["pilot"].astype(np.float64)

    def db(est):
        return float(10 * np.log10(peak ** 2 / np.mean((est - clean) ** 2)))

    row = {"net": db(p), "blend": blend, "seconds_net_gains": t_net,
           "seconds_hard_gains": t_hard}
    for h in shares:
        row[f"h={h:g}"] = db((1 - blend) * ((1 - h) * from_net + h * from_hard) + blend * p)
    ref = np.asarray(case["clean"], np.float64)
    row["peer"] = float(10 * np.log10((255.0 if case["noisy"].dtype == np.uint8 else 1.0) ** 2
                                      / np.mean((np.asarray(case["peer"]) - ref) ** 2)))
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--set", choices=("grey", "colour"), default="grey")
    ap.add_argument("--images", default=None, help=f"comma list (grey: {GREY}; colour: "
                                                   f"{COLOUR})")
    ap.add_argument("--sigma", type=float, default=25.0, help="noise std in /255 (25)")
    ap.add_argument("--shares", default="0,0.1,0.2,0.3,0.4,0.5,0.7,1")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--save", default=None, help="keep each image's stage inputs here")
    ap.add_argument("--load", default=None, help="score the saved inputs of this folder")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    shares = [float(h) for h in args.shares.split(",")]
    cases = {}
    if args.load:
        for path in sorted(glob.glob(os.path.join(args.load, f"{args.preset}_*.npz"))):
            name = os.path.basename(path)[len(args.preset) + 1:-4]
            with np.load(path) as f:
                cases[name] = {k: f[k] for k in f.files}
    else:
        names = args.images or (GREY if args.set == "grey" else COLOUR)
        for name in names.split(","):
            cases[name] = run_and_keep(args.preset, name, args.set == "colour", args.sigma,
                                       args.device)
            print(f"{name}: {cases[name]['seconds']:.0f} s", flush=True)
            if args.save:
                os.makedirs(args.save, exist_ok=True)
                np.savez(os.path.join(args.save, f"{args.preset}_{name}.npz"), **cases[name])
    if not cases:
        raise SystemExit("no images: nothing saved under --load, or an empty --images")
    rows = {}
    for name, case in cases.items():
        rows[name] = score(case, shares, args.threads)
    keys = [f"h={h:g}" for h in shares]
    print(f"\n{args.preset} preset, sigma {args.sigma:g}, torch {torch.__version__}; PSNR in dB "
          f"of the net's estimate, of the result for each refine_hard_share h, and of the "
          f"peer (BM3D / CBM3D)")
    print(f"{'image':>10} {'net':>6} " + " ".join(f"{k:>7}" for k in keys) + f" {'peer':>6}")
    for name, r in rows.items():
        print(f"{name:>10} {r['net']:6.2f} " + " ".join(f"{r[k]:7.2f}" for k in keys)
              + f" {r['peer']:6.2f}")
    mean = {k: float(np.mean([r[k] for r in rows.values()])) for k in ["net", *keys, "peer"]}
    print(f"{'mean':>10} {mean['net']:6.2f} " + " ".join(f"{mean[k]:7.2f}" for k in keys)
          + f" {mean['peer']:6.2f}")
    base = np.array([r[keys[0]] for r in rows.values()])
    print(f"{'vs ' + keys[0]:>10} {'':6s} " + " ".join(
        f"{np.mean([r[k] for r in rows.values()] - base):+7.3f}" for k in keys))
    print(f"{'worst':>10} {'':6s} " + " ".join(
        f"{np.min([r[k] for r in rows.values()] - base):+7.3f}" for k in keys))
    print(f"{'vs peer':>10} {mean['net'] - mean['peer']:+6.2f} "
          + " ".join(f"{mean[k] - mean['peer']:+7.2f}" for k in keys))
    print(f"seconds per image ({args.threads} threads): the filter with the net's gains "
          f"{np.mean([r['seconds_net_gains'] for r in rows.values()]):.1f}, the thresholding "
          f"estimate and the filter with its gains "
          f"{np.mean([r['seconds_hard_gains'] for r in rows.values()]):.1f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(args=vars(args), torch=torch.__version__, rows=rows), fh, indent=1)


if __name__ == "__main__":
    sys.exit(main())
