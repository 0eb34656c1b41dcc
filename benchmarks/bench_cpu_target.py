"""Where a preset lands against BM3D within a time budget (256x256 grey or colour, sigma 25).

The target: a restoration within 0.5 dB of BM3D in 60 s on two cores, or at least within
1.5 dB in 120 s. Each configuration runs on the noisy camera sample of the README's quick
start (uint8, clipped noise) until the budget is spent; the table gives the PSNR of the estimate at 60 s and at the budget, the
steps done, and BM3D (PyPI ``bm3d``) on the same input in the same run.

    python benchmarks/bench_cpu_target.py                       # fast preset, 2 threads
    python benchmarks/bench_cpu_target.py --configs fast,w16 --budget 120 --json out.json
    python benchmarks/bench_cpu_target.py --images sample,moon,coins,astronaut,coffee

``--images``: "sample" is the quick start's camera (resized to 256x256 from 512x512, so
smoother than the classic 256x256 cameraman); the other names are 256x256 centre crops at
full resolution of scikit-image's images (grey), with the same noise recipe (sigma 25,
seed 0, clipped and rounded to uint8): images that nothing here was tuned on. Beyond the
ten of the README's table, images of other kinds: ``camera``, ``hubble_deep_field`` (a dark
sky, clipped at 0), ``retina``, ``horse`` (a binary silhouette, clipped at both ends),
``logo``, ``colorwheel``, ``cell``, ``immunohistochemistry`` and ``shepp_logan_phantom``
(piecewise constant). Three images that matplotlib ships with its sample data, which
nothing here was tuned on or looked at before: ``grace_hopper`` (a photographed portrait,
JPEG, colour), ``mri`` (a 256x256 MRI slice of a head, 8-bit values in 16 bits) and
``dem`` (the elevation model of a fault, scaled to 0-1: a smooth field); these need
matplotlib.

``--colour`` keeps the three channels of colour images (CBM3D is then the peer).

``--device cuda --mark 5`` runs the same comparison on a GPU (the PSNR after 5 s instead
of 60 s), e.g. for the SURE variants on the wider nets (``sure-w64``, ``sure-w128``).

Add a configuration to CONFIGS to try an idea; it is compared with the rest in one run.
The ``-known`` configurations give the run the noise level (``noise_std``), as BM3D is
given it; the others read it from the image. The column "std" is the noise std the run
used (in /255, ``RunInfo.noise_std``).
Where a configuration ends with a second stage (``refine``), a row "<name>:net" gives the
same run's net before the stage (its snapshot before the final one), so "fast" also
shows what "fast-noref" would.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time

import numpy as np
import torch

import napari_dip
from napari_dip.core.engine import psnr
from napari_dip.samples import noisy_camera

# the fast preset's SURE settings, for the nets of the other presets (1000 steps)
SURE_WIDE = dict(loss="sure", lr_final=0.25, steps=1000, ema=0.0, backtrack_db=0.0, jitter=0.0,
                 snapshot_every=10, sure_max_noise=0.14)

# name -> (preset, options)
CONFIGS = {
    "fast": ("fast", {}),
    "fast-mse": ("fast", dict(loss="mse")),  # the papers' loss with the fast preset's net
    # variants of the fast preset's SURE settings (lr 0.003 easing to 0.0015, 300 steps)
    "sure-const": ("fast", dict(lr_final=1.0)),
    "sure-lr5e-3": ("fast", dict(lr=0.005, lr_final=0.2)),
    "sure-lr2e-3": ("fast", dict(lr=0.002, lr_final=0.3)),
    "sure-w24": ("fast", dict(width=24, lr=0.002)),
    "sure-s5": ("fast", dict(scales=5)),
    "sure-skip16": ("fast", dict(skip_channels=16)),
    "sure-nearest": ("fast", dict(upsample="nearest")),
    "sure-600": ("fast", dict(steps=600)),
    "w16": ("fast", dict(width=16, lr=0.02)),
    "fast-2-members": ("fast", dict(members=2)),
    "balanced": ("balanced", {}),
    # SURE on wider nets, for a GPU (--device cuda): the fast preset's SURE settings on the
    # balanced (width 64, 5 scales) and quality (the papers' width 128) nets
    "sure-w32": ("fast", dict(width=32, steps=600, lr=0.002)),
    "sure-w64": ("balanced", dict(SURE_WIDE, width=64, lr=0.002)),
    "sure-w64-lr1e-3": ("balanced", dict(SURE_WIDE, width=64, lr=0.001)),
    "sure-w128": ("quality", dict(SURE_WIDE, width=128, lr=0.001)),
    # after the first GPU sweep (the wider nets peak higher, then break down by step 1000)
    "fast-m4": ("fast", dict(members=4)),
    "sure-w32-300": ("fast", dict(width=32)),
    "sure-w64-400": ("balanced", dict(SURE_WIDE, width=64, lr=0.002, steps=400)),
    "sure-w64-400-ema": ("balanced", dict(SURE_WIDE, width=64, lr=0.002, steps=400, ema=0.99)),
    "sure-w128-300": ("quality", dict(SURE_WIDE, width=128, lr=0.001, steps=300)),
    # clipped data: SURE on the data as they are, and whatever the noise level
    "fast-noclip": ("fast", dict(sure_clipping="off")),
    "fast-sure": ("fast", dict(sure_max_noise=0.0)),
    "fast-sure-noclip": ("fast", dict(sure_max_noise=0.0, sure_clipping="off")),
    # the fast preset's SURE settings (its default for images without a mask until R2R)
    "sure": ("fast", dict(loss="sure")),
    # R2R variants: the recorruption's strength, a constant lr, no divergence stop
    "r2r-a0.3": ("fast", dict(r2r_alpha=0.3)),
    "r2r-a1": ("fast", dict(r2r_alpha=1.0)),
    "r2r-a2": ("fast", dict(r2r_alpha=2.0)),
    "r2r-a2-d8": ("fast", dict(r2r_alpha=2.0, r2r_draws=8)),
    "fast-d8": ("fast", dict(r2r_draws=8)),
    # the fast preset on the raw values whatever the noise check reads: the way out where
    # strong texture makes weak Gaussian noise read as photon counts
    "fast-raw": ("fast", dict(noise_model="gaussian", sure_max_trend=0.0)),
    "fast-raw-1800": ("fast", dict(noise_model="gaussian", sure_max_trend=0.0, steps=1800)),
    "fast-raw-w32": ("fast", dict(noise_model="gaussian", sure_max_trend=0.0, width=32)),
    "fast-raw-a0.25": ("fast", dict(noise_model="gaussian", sure_max_trend=0.0,
                                    r2r_alpha=0.25)),
    "balanced-raw": ("balanced", dict(noise_model="gaussian", sure_max_trend=0.0)),
    # the presets' strength before it was set by the image's signal-to-noise ratio
    "fast-a0.5": ("fast", dict(r2r_alpha=0.5)),
    "balanced-a0.5": ("balanced", dict(r2r_alpha=0.5)),
    "r2r-const": ("fast", dict(lr_final=1.0)),
    "r2r-nostop": ("fast", dict(auto_stop=False)),
    "r2r-w24-400": ("fast", dict(width=24, steps=400)),
    # R2R on more compute, for a GPU: four nets averaged (the balanced preset's R2R version
    # for grey images), and wider nets, whose SURE fits broke down (divergence stop on)
    "r2r-m4": ("fast", dict(members=4)),
    "r2r-w32": ("fast", dict(width=32, lr=0.002)),
    "r2r-w64": ("fast", dict(width=64, scales=5, lr=0.002)),
    "r2r-w128": ("fast", dict(width=128, scales=5, lr=0.001)),
    "r2r-w64-m4": ("fast", dict(width=64, scales=5, lr=0.002, members=4)),
    "r2r-w32-m4": ("fast", dict(width=32, lr=0.002, members=4)),
    # the estimate from the net's output for the image itself (before r2r_draws=2)
    "r2r-image": ("fast", dict(r2r_draws=0)),
    # the fast preset without its second stage (the Wiener filter guided by the net)
    "fast-noref": ("fast", dict(refine="off")),
    # the raw values whatever the noise check reads (noise_model="auto" may stabilise them)
    "fast-gaussian": ("fast", dict(noise_model="gaussian")),
    "balanced-noref": ("balanced", dict(refine="off")),
    # the noise level given (noise_std: the noise's std in the image's units, as BM3D is
    # given it) instead of estimated from the image; "sigma" stands for --sigma
    "fast-known": ("fast", dict(noise_std="sigma")),
    "balanced-known": ("balanced", dict(noise_std="sigma")),
}


MATPLOTLIB_IMAGES = ("grace_hopper", "mri", "dem")


def matplotlib_image(name):
    """One of the images of matplotlib's sample data (shipped with it, read from disk):
    uint8 (grace_hopper, mri) or a float field scaled to 0-1 (dem)."""
    import matplotlib.image
    from matplotlib import cbook

    if name == "grace_hopper":
        with cbook.get_sample_data("grace_hopper.jpg") as f:
            return np.asarray(matplotlib.image.imread(f))
    if name == "mri":  # 256x256 big-endian 16-bit values of 0-215
        with cbook.get_sample_data("s1045.ima.gz") as f:
            return np.frombuffer(f.read(), ">u2").reshape(256, 256).astype(np.uint8)
    if name == "dem":
        with cbook.get_sample_data("jacksboro_fault_dem.npz") as fields:
            dem = np.asarray(fields["elevation"], np.float64)
        return (dem - dem.min()) / (dem.max() - dem.min())
    raise ValueError(f"--images: unknown matplotlib image {name!r}")


def test_image(name, sigma=25.0, seed=0, colour=False):
    """(noisy, clean) uint8 256x256 grey images; see the module's docstring. ``colour``:
    keep a colour image's three channels (the same crop and noise recipe)."""
    if name == "sample":
        return noisy_camera(size=256, sigma=sigma, seed=seed)
    from skimage import color, data

    img = matplotlib_image(name) if name in MATPLOTLIB_IMAGES else getattr(data, name)()
    if img.ndim == 3 and colour:
        img = img[..., :3]
    elif img.ndim == 3:
        img = color.rgb2gray(img[..., :3])
    img = img.astype(np.float64)
    img = img / 255.0 if img.max() > 1.0 else img
    r0, c0 = (img.shape[0] - 256) // 2, (img.shape[1] - 256) // 2
    clean = img[r0:r0 + 256, c0:c0 + 256]
    noisy = clean + np.random.default_rng(seed).normal(0.0, sigma / 255.0, clean.shape)
    to8 = lambda a: np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)  # noqa: E731
    return to8(noisy), to8(clean)


def bm3d_uint8(bm3d, noisy, sigma):
    """The peer: BM3D (the ``bm3d`` module; CBM3D for a colour image, channels last) on a
    uint8 image with noise of std ``sigma`` (in /255), rounded back to uint8 like the
    restorations."""
    if noisy.ndim == 3:
        ref = np.asarray(bm3d.bm3d_rgb(noisy / 255.0, sigma / 255), np.float64)
    else:
        ref = np.asarray(bm3d.bm3d(noisy / 255.0, sigma_psd=sigma / 255), np.float64)
    return np.clip(np.rint(ref * 255), 0, 255).astype(np.uint8)


def run_config(noisy, clean, preset, options, budget, seed, mark=60.0, device="cpu"):
    """PSNR and step at ``mark`` seconds and at the budget (or the run's end), the last
    snapshot, the run's trace of (step, seconds, PSNR, loss) at every snapshot, and where a
    second stage ran the trace's entry for the snapshot before it (the net's estimate that
    went into the stage; else None)."""
    at = {}
    trace = []
    snap = None
    if noisy.ndim == 3:  # colour, channels last
        options = dict(options, channel_axis=-1)
    for snap in napari_dip.iterate(noisy, preset=preset, seed=seed, reference=clean,
                                   device=device, **options):
        trace.append((snap.step, round(snap.elapsed, 3), round(snap.psnr, 3),
                      float(f"{snap.loss:.4g}")))
        for t in (mark, budget):
            if t not in at and snap.elapsed >= t:
                at[t] = (snap.psnr, snap.step)
        if snap.elapsed >= budget:
            break
    for t in (mark, budget):
        at.setdefault(t, (snap.psnr, snap.step))
    staged = snap.done and snap.info.config.refine != "off" and len(trace) > 1
    return at, snap, trace, trace[-2] if staged else None


def noise_std_used(snap):
    """The noise std (in /255 for these 8-bit images) that a run used (``RunInfo.noise_std``);
    NaN where it used none or was variance-stabilised (its level is then in the stabilised
    units)."""
    used = snap.info.noise_std
    return float("nan") if used is None else float(used)


def r2r_strength(noisy, device="cpu"):
    """The R2R run's note on its recorruption strength for this image (what the fast
    preset chooses with ``r2r_alpha=None``), read from a one-step run."""
    options = {"channel_axis": -1} if noisy.ndim == 3 else {}
    res = napari_dip.restore(noisy, preset="fast", steps=1, refine="off", seed=0,
                             device=device, **options)
    found = [re.search(r"alpha [^)]*", n) for n in res.info.notes if "loss: R2R" in n]
    return found[0].group(0) if found and found[0] else "no R2R run"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--configs", default="fast,fast-mse")
    ap.add_argument("--images", default="sample", help="comma-separated; see above")
    ap.add_argument("--budget", type=float, default=120.0, help="seconds per configuration")
    ap.add_argument("--sigma", type=float, default=25.0, help="noise std in /255 (25)")
    ap.add_argument("--mark", type=float, default=60.0,
                    help="also report the PSNR reached after this many seconds (60)")
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda, mps or auto")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--colour", action="store_true",
                    help="keep colour images' three channels (CBM3D as the peer)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--alphas", action="store_true",
                    help="only print the R2R strength each image gets (r2r_alpha=None)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.alphas:
        for image in args.images.split(","):
            noisy, _ = test_image(image, sigma=args.sigma, colour=args.colour)
            print(f"{image:18s} sigma {args.sigma:g}: {r2r_strength(noisy, args.device)}",
                  flush=True)
        return 0
    try:
        import bm3d
    except ImportError:
        bm3d = None
        print("bm3d is not installed (pip install bm3d): no peer row", flush=True)
    rows = []
    for image in args.images.split(","):
        noisy, clean = test_image(image, sigma=args.sigma, colour=args.colour)
        base = dict(image=image, noisy=psnr(noisy, clean))
        if bm3d is not None:
            t = time.perf_counter()
            ref = bm3d_uint8(bm3d, noisy, args.sigma)
            rows.append(dict(base, name="BM3D (peer)", psnr_60=psnr(ref, clean),
                             psnr_budget=psnr(ref, clean), seconds=time.perf_counter() - t))
            print(rows[-1], flush=True)
        for name in args.configs.split(","):
            preset, options = CONFIGS[name]
            options = {k: (args.sigma if v == "sigma" else v) for k, v in options.items()}
            at, snap, trace, prev = run_config(noisy, clean, preset, options, args.budget,
                                               args.seed, mark=args.mark, device=args.device)
            best = max(trace, key=lambda t: t[2])
            rows.append(dict(base, name=name, preset=preset, options=options,
                             psnr_60=at[args.mark][0], steps_60=at[args.mark][1],
                             psnr_budget=at[args.budget][0], steps_budget=at[args.budget][1],
                             seconds=snap.elapsed, stop_reason=snap.stop_reason,
                             best_psnr=best[2], best_step=best[0],
                             std_used=noise_std_used(snap)))
            print(rows[-1], flush=True)
            rows[-1]["trace"] = trace
            if prev is not None:  # the same run's net before its second stage
                step, sec, net_psnr = prev[:3]
                early = at[args.mark][1] < snap.step  # the mark fell before the end
                net_best = max(trace[:-1], key=lambda t: t[2])
                rows.append(dict(rows[-1], name=f"{name}:net", trace=None,
                                 psnr_60=at[args.mark][0] if early else net_psnr,
                                 psnr_budget=net_psnr, seconds=sec,
                                 best_psnr=net_best[2], best_step=net_best[0]))
                print({k: v for k, v in rows[-1].items() if k != "trace"}, flush=True)
            save(args, rows)  # after every run, so that a run cut short keeps what it did
    from napari_dip.core.device import device_name, resolve_device

    m = f"{args.mark:g}"
    kind = "colour (where the image has it)" if args.colour else "grey"
    print(f"\n256x256 {kind}, sigma {args.sigma:g}, "
          f"{device_name(resolve_device(args.device))}, "
          f"{args.threads} CPU threads, torch {torch.__version__}; 'seconds': the run's length "
          f"(to its end or the budget); 'best': the best snapshot's PSNR (needs the truth)")
    print(f"{'image':10s} {'run':18s} {f'PSNR@{m}s':>9s} {'steps':>6s} "
          f"{f'PSNR@{args.budget:.0f}s':>10s} {'steps':>6s} {'seconds':>8s} {'vs BM3D':>8s} "
          f"{'best':>6s} {'at':>5s} {'std':>5s}")
    peers = {r["image"]: r["psnr_budget"] for r in rows if r["name"].startswith("BM3D")}
    nan = float("nan")
    for r in rows:
        gap = r["psnr_budget"] - peers.get(r["image"], nan)
        print(f"{r['image']:10s} {r['name']:18s} {r['psnr_60']:9.2f} {r.get('steps_60', 0):6d} "
              f"{r['psnr_budget']:10.2f} {r.get('steps_budget', 0):6d} {r['seconds']:8.1f} "
              f"{gap:+8.2f} {r.get('best_psnr', nan):6.2f} {r.get('best_step', 0):5d} "
              f"{r.get('std_used', nan):5.1f}")
    names = list(dict.fromkeys(r["name"] for r in rows))
    if len(peers) > 1:
        print("\nmean over the images")
        for name in names:
            sel = [r for r in rows if r["name"] == name]
            gap60 = np.mean([r["psnr_60"] - peers[r["image"]] for r in sel])
            gapb = np.mean([r["psnr_budget"] - peers[r["image"]] for r in sel])
            print(f"{name:18s} PSNR@{m}s {np.mean([r['psnr_60'] for r in sel]):6.2f} "
                  f"({gap60:+.2f} vs BM3D)  PSNR@{args.budget:.0f}s "
                  f"{np.mean([r['psnr_budget'] for r in sel]):6.2f} ({gapb:+.2f})  "
                  f"seconds {np.mean([r['seconds'] for r in sel]):6.1f}")
    save(args, rows)


def save(args, rows):
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(args=vars(args), torch=torch.__version__, rows=rows), fh, indent=1,
                      default=str)


if __name__ == "__main__":
    sys.exit(main())
