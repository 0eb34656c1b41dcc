"""Restoration quality benchmark: DIP (stop rule and oracle), SGLD-DIP and baselines.

Tasks
-----
denoise      Gaussian noise at sigma in {15, 25, 50}/255 (unclipped, noise seed 0) on images
             bundled with scikit-image: DIP with the stop rule (the preset's result,
             after its second stage where it has one: ``refine``), the net's estimate
             at the stop ("dip_stop_net", where a second stage ran: the same run's snapshot
             before the stage), DIP oracle (best
             snapshot PSNR of an auto_stop=False run of the net, no second stage), with
             ``--known-noise`` the stop rule's run given the noise level ("dip_known":
             ``noise_std``, as BM3D is given it; else read from the image), SGLD
             posterior mean, BM3D / CBM3D (PyPI ``bm3d``). PSNR (data_range=1) and SSIM
             per image and averaged.
inpaint      50% and 80% random pixel loss and a text/scribble mask (nonzero = missing):
             DIP vs ``skimage.restoration.inpaint_biharmonic``; PSNR on the whole image and
             on the missing pixels.
uncertainty  SGLD on the inpainting masks (and from the denoising runs): Spearman
             correlation between per-pixel posterior std and absolute error, and the mean
             std inside vs outside the holes.

Examples
--------
    python benchmarks/bench_quality.py --quick --json benchmarks/results/quality_cpu_reduced.json
    python benchmarks/bench_quality.py --device cuda --preset balanced --size 256 --images 8
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import warnings

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_uncertainty import neighbours_error  # noqa: E402

DEFAULT_IMAGES = ["camera", "astronaut", "coins", "chelsea", "moon", "coffee", "page",
                  "rocket", "immunohistochemistry", "text"]


# ----------------------------------------------------------------------------- data
def load_image(name: str, size: int) -> np.ndarray:
    """Centre square crop, resize to size x size, float64 in [0, 1]; (H, W) or (H, W, 3)."""
    from skimage import data, transform, util

    img = getattr(data, name)()
    if img.ndim == 3 and img.shape[-1] == 4:
        img = img[..., :3]
    img = util.img_as_float64(img)
    h, w = img.shape[:2]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    img = img[y0:y0 + s, x0:x0 + s]
    if s != size:
        img = transform.resize(img, (size, size) + img.shape[2:], order=3, anti_aliasing=True,
                               mode="reflect")
    return np.clip(img, 0.0, 1.0)


def add_noise(img: np.ndarray, sigma: float) -> np.ndarray:
    rng = np.random.default_rng(0)
    return img + rng.normal(0.0, sigma, img.shape)  # unclipped


def make_masks(shape2d: tuple[int, int]) -> dict[str, np.ndarray]:
    """Boolean masks, True = missing. Random masks use seed 0."""
    rng = np.random.default_rng(0)
    masks = {
        "random50": rng.random(shape2d) < 0.5,
        "random80": rng.random(shape2d) < 0.8,
        "text": text_mask(shape2d),
    }
    return masks


def text_mask(shape2d: tuple[int, int]) -> np.ndarray:
    h, w = shape2d
    m = np.zeros(shape2d, bool)
    try:
        from PIL import Image, ImageDraw, ImageFont

        canvas = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(canvas)
        try:
            font = ImageFont.load_default(size=max(8, h // 8))
        except TypeError:  # old Pillow
            font = ImageFont.load_default()
        step = max(10, h // 6)
        words = "deep image prior napari dip"
        for k, y in enumerate(range(2, h - 4, step)):
            draw.text((2 - (k % 3) * 3, y), words, fill=255, font=font)
        m |= np.asarray(canvas) > 0
    except Exception:  # noqa: BLE001 - fall back to scribbles only
        pass
    from skimage.draw import line
    from scipy.ndimage import binary_dilation

    rng = np.random.default_rng(1)
    scrib = np.zeros(shape2d, bool)
    for _ in range(4):
        r0, c0, r1, c1 = rng.integers(0, [h, w, h, w])
        rr, cc = line(int(r0), int(c0), int(r1), int(c1))
        scrib[rr, cc] = True
    m |= binary_dilation(scrib, iterations=max(1, h // 64))
    return m


# ----------------------------------------------------------------------------- metrics
def psnr(ref: np.ndarray, est: np.ndarray) -> float:
    from skimage.metrics import peak_signal_noise_ratio

    return float(peak_signal_noise_ratio(ref, np.asarray(est, np.float64), data_range=1.0))


def ssim(ref: np.ndarray, est: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    ch = -1 if ref.ndim == 3 else None
    return float(structural_similarity(ref, np.asarray(est, np.float64), data_range=1.0,
                                       channel_axis=ch))


def psnr_on(ref: np.ndarray, est: np.ndarray, mask2d: np.ndarray) -> float:
    m = np.broadcast_to(mask2d[..., None], ref.shape) if ref.ndim == 3 else mask2d
    mse = float(np.mean((ref[m] - np.asarray(est, np.float64)[m]) ** 2))
    return float("inf") if mse == 0 else 10 * math.log10(1.0 / mse)


def uncertainty_stats(ref, est, var, mask2d=None) -> dict:
    from scipy.stats import spearmanr

    std = np.sqrt(np.maximum(np.asarray(var, np.float64), 0.0))
    err = np.abs(ref - np.asarray(est, np.float64))
    near = neighbours_error(err)  # the smooth map's ceiling (bench_uncertainty.py)
    out = {"spearman_std_abs_err": float(spearmanr(std.ravel(), err.ravel())[0]),
           "spearman_neighbours": float(spearmanr(near.ravel(), err.ravel())[0]),
           "mean_std": float(std.mean())}
    if mask2d is not None:
        m = np.broadcast_to(mask2d[..., None], ref.shape) if ref.ndim == 3 else mask2d
        out["mean_std_missing"] = float(std[m].mean())
        out["mean_std_known"] = float(std[~m].mean()) if (~m).any() else float("nan")
        out["spearman_missing"] = float(spearmanr(std[m].ravel(), err[m].ravel())[0])
        out["spearman_neighbours_missing"] = float(spearmanr(near[m].ravel(),
                                                             err[m].ravel())[0])
    return out


# ----------------------------------------------------------------------------- methods
def bm3d_denoise(noisy: np.ndarray, sigma: float):
    import bm3d

    if noisy.ndim == 3:
        return np.asarray(bm3d.bm3d_rgb(noisy, sigma))
    return np.asarray(bm3d.bm3d(noisy, sigma_psd=sigma))


def have_bm3d() -> str | None:
    try:
        import bm3d  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"
    return None


# ----------------------------------------------------------------------------- output
class Table:
    COLS = [("task", 9), ("image", 11), ("cond", 9), ("method", 12), ("psnr", 7),
            ("ssim", 6), ("psnr_miss", 9), ("rho", 6), ("nbrs", 5), ("std_in/out", 13),
            ("steps", 9),
            ("sec", 6)]

    def __init__(self):
        self.rows: list[dict] = []

    def header(self) -> str:
        return " ".join(f"{n:>{w}}" for n, w in self.COLS)

    def fmt(self, r: dict) -> str:
        def f(v, nd=2):
            return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{nd}f}"

        u = r.get("uncertainty") or {}
        inout = "-"
        if "mean_std_missing" in u:
            inout = f"{u['mean_std_missing']:.3f}/{u['mean_std_known']:.3f}"
        steps = "-"
        if r.get("steps") is not None:
            steps = str(r["steps"]) + (f"@{r['best_step']}" if r.get("best_step") else "")
        vals = [r["task"], r["image"], r["cond"], r["method"], f(r.get("psnr")),
                f(r.get("ssim"), 3), f(r.get("psnr_missing")),
                f(u.get("spearman_std_abs_err"), 2), f(u.get("spearman_neighbours"), 2),
                inout, steps, f(r.get("seconds"), 1)]
        return " ".join(f"{str(v):>{w}}" for v, (_, w) in zip(vals, self.COLS))

    def add(self, r: dict) -> None:
        self.rows.append(r)
        print(self.fmt(r), flush=True)


PEERS = ("bm3d", "cbm3d")


def summarise(rows: list[dict], kinds: dict[str, str] | None = None) -> list[dict]:
    """Averages per (task, condition, method) over all images and, where ``kinds`` maps
    image names to "grey" / "colour", over each kind; "vs_peer" is the mean difference
    to BM3D (grey) or CBM3D (colour) on the same images and noise."""
    kinds = kinds or {}
    peer = {(r["image"], r["cond"]): r["psnr"] for r in rows
            if r.get("method") in PEERS and r.get("psnr") is not None}
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if r.get("psnr") is None:
            continue
        groups.setdefault((r["task"], r["cond"], r["method"], "all"), []).append(r)
        if r["image"] in kinds and len(set(kinds.values())) > 1:
            groups.setdefault((r["task"], r["cond"], r["method"], kinds[r["image"]]),
                              []).append(r)
    out = []
    for (task, cond, method, kind), rs in groups.items():
        def mean(key, sub=None):
            v = [(x.get(sub) or {}).get(key) if sub else x.get(key) for x in rs]
            v = [a for a in v if a is not None and not (isinstance(a, float) and math.isnan(a))]
            return float(np.mean(v)) if v else None

        gaps = [x["psnr"] - peer[(x["image"], x["cond"])] for x in rs
                if (x["image"], x["cond"]) in peer and method not in PEERS]
        out.append({"task": task, "cond": cond, "method": method, "kind": kind,
                    "n": len(rs), "psnr": mean("psnr"), "ssim": mean("ssim"),
                    "vs_peer": float(np.mean(gaps)) if gaps else None,
                    "psnr_missing": mean("psnr_missing"), "seconds": mean("seconds"),
                    "spearman_std_abs_err": mean("spearman_std_abs_err", "uncertainty"),
                    "spearman_neighbours": mean("spearman_neighbours", "uncertainty"),
                    "mean_std_missing": mean("mean_std_missing", "uncertainty"),
                    "mean_std_known": mean("mean_std_known", "uncertainty")})
    order = {"all": 0, "grey": 1, "colour": 2}
    out.sort(key=lambda s: order.get(s["kind"], 3))
    return out


# ----------------------------------------------------------------------------- runs
def run_engine(img_in, *, method, mask=None, channel_axis, args, auto_stop=None,
               reference=None, keep_known=False, **extra):
    import napari_dip

    t = time.perf_counter()
    res = napari_dip.restore(img_in.astype(np.float32), method=method, mask=mask,
                             channel_axis=channel_axis, preset=args.preset, steps=args.steps,
                             auto_stop=auto_stop, device=args.device, seed=args.seed,
                             reference=None if reference is None else reference.astype(np.float32),
                             keep_known=keep_known, **{**args.options, **extra})
    return res, time.perf_counter() - t


def run_dip_stop(img_in, *, channel_axis, args, **extra):
    """DIP with the stop rule: the result, its seconds, and the snapshot before the final
    one (where a second stage ran, the net's estimate that went into it). ``extra``:
    options for this run only."""
    import napari_dip

    t = time.perf_counter()
    snaps = [None, None]
    losses = []
    for snap in napari_dip.iterate(img_in.astype(np.float32), method="dip",
                                   channel_axis=channel_axis, preset=args.preset,
                                   steps=args.steps, auto_stop=True, device=args.device,
                                   seed=args.seed, **{**args.options, **extra}):
        snaps = [snaps[1], snap]
        losses.append(snap.losses)
    prev, snap = snaps
    res = napari_dip.Result.from_snapshot(snap, np.concatenate(losses))
    return res, time.perf_counter() - t, prev


def dip_oracle(noisy, clean, *, channel_axis, args):
    """auto_stop=False run; the best snapshot PSNR against the ground truth. The net's
    snapshots only: the run's second stage (``refine``) is off, so that the oracle bounds
    what a stop rule can pick."""
    import napari_dip

    t = time.perf_counter()
    best = (-np.inf, None, None)
    last = None
    for snap in napari_dip.iterate(noisy.astype(np.float32), method="dip",
                                   channel_axis=channel_axis, preset=args.preset,
                                   steps=args.steps, auto_stop=False, device=args.device,
                                   seed=args.seed, reference=clean.astype(np.float32),
                                   **{**args.options, "refine": "off"}):
        p = psnr(clean, snap.image)
        if p > best[0]:
            best = (p, snap.step, snap.image)
        last = snap
    return best, last, time.perf_counter() - t


def do_denoise(name, clean, sigmas, args, table, bm3d_err):
    ch = -1 if clean.ndim == 3 else None
    for s255 in sigmas:
        sigma = s255 / 255.0
        noisy = add_noise(clean, sigma)
        cond = f"s{s255:g}"
        base = dict(task="denoise", image=name, cond=cond, sigma=s255)
        table.add({**base, "method": "noisy", "psnr": psnr(clean, noisy),
                   "ssim": ssim(clean, np.clip(noisy, 0, 1))})
        # DIP oracle
        (bp, bstep, bimg), last, osec = dip_oracle(noisy, clean, channel_axis=ch, args=args)
        # DIP with the stop rule (a SURE run has none: its whole run), then the second
        # stage where the preset has one ("dip_stop"); the net's own estimate
        # ("dip_stop_net") is what the stop rule picked, to compare with the oracle
        res, sec, net = run_dip_stop(noisy, channel_axis=ch, args=args)
        table.add({**base, "method": "dip_stop", "psnr": psnr(clean, res.image),
                   "ssim": ssim(clean, res.image), "steps": res.steps,
                   "best_step": res.best_step, "stop_reason": res.stop_reason,
                   "refine": res.info.config.refine, "seconds": sec})
        if res.info.config.refine != "off":
            # the same run's last progressive snapshot: the estimate the stage started from
            table.add({**base, "method": "dip_stop_net", "psnr": psnr(clean, net.image),
                       "ssim": ssim(clean, net.image), "steps": net.step,
                       "stop_reason": res.stop_reason, "seconds": net.elapsed})
        if args.known_noise:  # the same run given the noise level, as BM3D is given it
            res, sec, _ = run_dip_stop(noisy, channel_axis=ch, args=args, noise_std=sigma)
            table.add({**base, "method": "dip_known", "psnr": psnr(clean, res.image),
                       "ssim": ssim(clean, res.image), "steps": res.steps,
                       "stop_reason": res.stop_reason, "seconds": sec})
        table.add({**base, "method": "dip_oracle", "psnr": bp, "ssim": ssim(clean, bimg),
                   "steps": last.step, "best_step": bstep,
                   "final_psnr": psnr(clean, last.image), "seconds": osec})
        # SGLD posterior mean (+ uncertainty)
        if not args.no_sgld:
            res, sec = run_engine(noisy, method="sgld", channel_axis=ch, args=args)
            row = {**base, "method": "sgld_mean", "psnr": psnr(clean, res.image),
                   "ssim": ssim(clean, res.image), "steps": res.steps,
                   "stop_reason": res.stop_reason, "seconds": sec}
            if res.variance is not None:
                row["uncertainty"] = uncertainty_stats(clean, res.image, res.variance)
            table.add(row)
        # BM3D / CBM3D
        mname = "cbm3d" if clean.ndim == 3 else "bm3d"
        if bm3d_err is None:
            t = time.perf_counter()
            try:
                den = bm3d_denoise(noisy, sigma)
                table.add({**base, "method": mname, "psnr": psnr(clean, den),
                           "ssim": ssim(clean, den), "seconds": time.perf_counter() - t})
            except Exception as exc:  # noqa: BLE001
                table.add({**base, "method": mname, "psnr": None,
                           "error": f"{type(exc).__name__}: {exc}"})
        else:
            table.add({**base, "method": mname, "psnr": None, "error": "missing: " + bm3d_err})


def do_inpaint(name, clean, args, table, with_dip: bool, with_sgld: bool):
    from skimage.restoration import inpaint_biharmonic

    ch = -1 if clean.ndim == 3 else None
    for mname, mask in make_masks(clean.shape[:2]).items():
        m3 = mask[..., None] if clean.ndim == 3 else mask
        observed = np.where(m3, 0.0, clean)
        cond = f"{mname}({mask.mean() * 100:.0f}%)"
        base = dict(task="inpaint", image=name, cond=cond, mask=mname,
                    missing_fraction=float(mask.mean()))
        t = time.perf_counter()
        bh = inpaint_biharmonic(observed, mask, channel_axis=ch)
        table.add({**base, "method": "biharmonic", "psnr": psnr(clean, bh),
                   "ssim": ssim(clean, bh), "psnr_missing": psnr_on(clean, bh, mask),
                   "seconds": time.perf_counter() - t})
        if with_dip:
            res, sec = run_engine(observed, method="dip", mask=mask, channel_axis=ch, args=args,
                                  auto_stop=False, keep_known=True)
            table.add({**base, "method": "dip", "psnr": psnr(clean, res.image),
                       "ssim": ssim(clean, res.image),
                       "psnr_missing": psnr_on(clean, res.image, mask), "steps": res.steps,
                       "stop_reason": res.stop_reason, "seconds": sec})
        if with_sgld:
            res, sec = run_engine(observed, method="sgld", mask=mask, channel_axis=ch,
                                  args=args, keep_known=True)
            row = {**base, "task": "inpaint", "method": "sgld_mean",
                   "psnr": psnr(clean, res.image), "ssim": ssim(clean, res.image),
                   "psnr_missing": psnr_on(clean, res.image, mask), "steps": res.steps,
                   "stop_reason": res.stop_reason, "seconds": sec}
            if res.variance is not None:
                row["uncertainty"] = uncertainty_stats(clean, res.image, res.variance, mask)
            table.add(row)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="auto")
    p.add_argument("--preset", default=None, choices=["fast", "balanced", "quality"])
    p.add_argument("--size", type=int, default=None, help="square side (default 128; quick 64)")
    p.add_argument("--images", default=None,
                   help="comma list of skimage.data names, or a count (default 8; quick 2)")
    p.add_argument("--sigmas", default=None, help="comma list, in /255 (default 15,25,50)")
    p.add_argument("--steps", type=int, default=None, help="engine steps (default: preset's)")
    p.add_argument("--tasks", default="denoise,inpaint,uncertainty")
    p.add_argument("--seed", type=int, default=0, help="engine seed")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--options", default="",
                   help="config options for every engine run, e.g. 'members=2,compile=true'")
    p.add_argument("--no-sgld", action="store_true", help="denoising: skip the SGLD runs")
    p.add_argument("--known-noise", action="store_true",
                   help="denoising: also run DIP with the stop rule given the noise level "
                        "(noise_std, as BM3D is given it): the rows 'dip_known'")
    p.add_argument("--json", default=None, help="write results here")
    p.add_argument("--quick", action="store_true",
                   help="reduced CPU set: 2 images at 64x64, sigma 25, fast preset, 300 steps")
    a = p.parse_args(argv)
    if a.quick:
        a.size = a.size or 64
        a.images = a.images or "camera,astronaut"
        a.sigmas = a.sigmas or "25"
        a.preset = a.preset or "fast"
        a.steps = a.steps or 300
    a.size = a.size or 128
    a.images = a.images or "8"
    a.sigmas = a.sigmas or "15,25,50"
    a.preset = a.preset or "balanced"
    a.tasks = [t.strip() for t in a.tasks.split(",") if t.strip()]
    bad = set(a.tasks) - {"denoise", "inpaint", "uncertainty"}
    if bad:
        p.error(f"--tasks: unknown {sorted(bad)}")
    a.sigmas = [float(s) for s in a.sigmas.split(",")]
    from bench_speed import parse_options  # this folder is on the path when run as a script

    a.options = parse_options(a.options)
    if "steps" in a.options:  # --options steps=N is --steps N
        if a.steps is not None and a.steps != a.options["steps"]:
            p.error("--options steps=... and --steps disagree; give one")
        a.steps = a.options.pop("steps")
    return a


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch
    import napari_dip

    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=UserWarning)

    if args.images.strip().isdigit():
        wanted, n = DEFAULT_IMAGES, int(args.images)
    else:
        wanted = [s.strip() for s in args.images.split(",") if s.strip()]
        n = len(wanted)
    images, skipped = {}, {}
    for name in wanted:
        if len(images) >= n:
            break
        try:
            images[name] = load_image(name, args.size)
        except Exception as exc:  # noqa: BLE001 - e.g. needs a download
            skipped[name] = f"{type(exc).__name__}: {exc}"
    bm3d_err = have_bm3d()

    print(f"# bench_quality: napari_dip {napari_dip.__version__}, torch {torch.__version__}, "
          f"device={args.device}, preset={args.preset}, steps={args.steps or 'preset'}, "
          f"size={args.size}, threads={torch.get_num_threads()}", flush=True)
    print(f"# images: {', '.join(f'{k}{list(v.shape)}' for k, v in images.items())}"
          + (f"; skipped: {skipped}" if skipped else ""), flush=True)
    if bm3d_err:
        print(f"# bm3d missing: {bm3d_err}", flush=True)
    table = Table()
    print(table.header(), flush=True)
    t0 = time.perf_counter()
    for name, clean in images.items():
        if "denoise" in args.tasks:
            do_denoise(name, clean, args.sigmas, args, table, bm3d_err)
        if "inpaint" in args.tasks or "uncertainty" in args.tasks:
            do_inpaint(name, clean, args, table, with_dip="inpaint" in args.tasks,
                       with_sgld="uncertainty" in args.tasks)
    total = time.perf_counter() - t0

    print(f"\n# per-image rows ({total:.0f} s in all)", flush=True)
    print(table.header())
    for r in table.rows:
        print(table.fmt(r))
    summary = summarise(table.rows, {k: "colour" if v.ndim == 3 else "grey"
                                     for k, v in images.items()})
    print("\n# averages over images (all, then grey and colour apart; vs_peer: against "
          "BM3D on grey, CBM3D on colour images)")
    print(f"{'task':>9} {'cond':>14} {'method':>12} {'kind':>6} {'n':>2} {'psnr':>7} "
          f"{'vs_peer':>7} {'ssim':>6} "
          f"{'psnr_miss':>9} {'rho':>6} {'nbrs':>5} {'std_in':>7} {'std_out':>7} {'sec':>6}")

    def f(v, nd=2):
        return "-" if v is None else f"{v:.{nd}f}"

    for s in summary:
        print(f"{s['task']:>9} {s['cond']:>14} {s['method']:>12} {s['kind']:>6} {s['n']:>2} "
              f"{f(s['psnr']):>7} {f(s['vs_peer']):>7} {f(s['ssim'], 3):>6} "
              f"{f(s['psnr_missing']):>9} "
              f"{f(s['spearman_std_abs_err']):>6} {f(s['spearman_neighbours']):>5} "
              f"{f(s['mean_std_missing'], 3):>7} "
              f"{f(s['mean_std_known'], 3):>7} {f(s['seconds'], 1):>6}")
    missing = sorted({r["method"] for r in table.rows if r.get("error")})
    if missing:
        print(f"# methods missing or failed: {missing}")
    sys.stdout.flush()

    if args.json:
        try:
            versions = napari_dip.versions()
        except Exception:  # noqa: BLE001
            versions = {}
        out = {"config": {k: v for k, v in vars(args).items()},
               "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
               "versions": versions, "images": {k: list(v.shape) for k, v in images.items()},
               "skipped_images": skipped, "bm3d": bm3d_err or "ok",
               "total_seconds": total, "rows": table.rows, "summary": summary}
        d = os.path.dirname(args.json)
        if d:
            os.makedirs(d, exist_ok=True)
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1, default=lambda o: None if o is None else str(o))
        print(f"# wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
