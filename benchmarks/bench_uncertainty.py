"""Calibration of SGLD-DIP's per-pixel uncertainty against the actual error.

Two cases on a crop of scikit-image's camera (size x size, values in [0, 1]):

denoise   Gaussian noise, sigma 25/255 (noise seed 0).
inpaint   the clean crop with missing pixels: 50 % of the pixels at random (seed 0), text
          strokes and one solid block (so there are small and large holes); the known
          pixels are refitted too (``keep_known=False``), so their std and error are the
          model's own.

Both run ``napari_dip.restore(observed, method="sgld", preset=..., steps=..., seed=0)``;
``result.image`` is the posterior mean and ``result.std`` the posterior standard deviation.
For every case the script reports

* Spearman's rank correlation between std and the absolute error |mean - clean| (all
  pixels; for inpainting also inside the holes and on the known pixels), beside two
  references: "ideal", what a calibrated std would reach with one error draw per pixel,
  and "nbrs", what each pixel's neighbours' true error reaches (``neighbours_error``:
  the mean |error| within about a pixel, the pixel's own left out), roughly the most a
  spatially smooth map can reach on that image;
* the mean std inside the holes over the mean std on the known pixels (and the same
  ratio for the absolute error, which is what an ideal std ratio would follow);
* calibration: pixels are put into quantile bins of their predicted std; per bin the
  root-mean-square std against the RMSE of the actual error. A calibrated posterior lies
  on the ideal line RMSE == std; above it the posterior is overconfident. Also the ratio
  RMSE / RMS(std) over all pixels and the fraction of pixels whose error lies within
  +-1.96 std (95 % for a calibrated Gaussian posterior).

The calibration plot goes to docs/images/calibration.png (needs matplotlib) and the
numbers to benchmarks/results/uncertainty_cpu.json.

Examples
--------
    python benchmarks/bench_uncertainty.py --quick
    python benchmarks/bench_uncertainty.py --device cuda --size 256 --preset balanced
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import warnings

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


# ----------------------------------------------------------------------------- data
def load_clean(size: int) -> np.ndarray:
    """A size x size crop of the camera picture (its centre-left, with the photographer's
    coat and face and some sky), float64 in [0, 1]."""
    from skimage import data, transform

    img = data.camera().astype(np.float64) / 255.0
    if size <= 256:
        y0, x0 = 200 - size // 2, 240 - size // 2
        return img[max(y0, 0):max(y0, 0) + size, max(x0, 0):max(x0, 0) + size]
    return transform.resize(img, (size, size), order=3, anti_aliasing=True)


def text_block_mask(shape: tuple[int, int]) -> np.ndarray:
    """True on text strokes (a few words, thickened) and on one solid block."""
    from scipy.ndimage import binary_dilation

    h, w = shape
    m = np.zeros(shape, bool)
    try:
        from PIL import Image, ImageDraw, ImageFont

        canvas = Image.new("L", (w, h), 0)
        draw = ImageDraw.Draw(canvas)
        try:
            font = ImageFont.load_default(size=max(10, h // 6))
        except TypeError:  # Pillow < 10.1: fixed-size font
            font = ImageFont.load_default()
        draw.text((2, h // 12), "DIP", fill=255, font=font)
        draw.text((w // 3, h // 2), "napari", fill=255, font=font)
        m = binary_dilation(np.asarray(canvas) > 0, iterations=max(1, h // 96))
    except Exception:  # noqa: BLE001 - no Pillow font: horizontal bars instead
        for y in range(h // 8, h, h // 4):
            m[y:y + max(2, h // 32), w // 8: w - w // 8] = True
    b = max(4, h // 6)
    y0, x0 = h - b - h // 10, w // 10
    m[y0:y0 + b, x0:x0 + b] = True
    return m


def inpainting_masks(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(random 50 % pixels, text and block); their union is the missing set."""
    rng = np.random.default_rng(0)
    return rng.random(shape) < 0.5, text_block_mask(shape)


# ----------------------------------------------------------------------------- statistics
def calibration_curve(std: np.ndarray, err: np.ndarray, bins: int) -> dict:
    """Quantile bins of the predicted std; per bin RMS std, RMSE and count."""
    std, err = std.ravel(), err.ravel()
    order = np.argsort(std, kind="stable")
    parts = np.array_split(order, bins)
    rms_std = [float(np.sqrt(np.mean(std[p] ** 2))) for p in parts if p.size]
    rmse = [float(np.sqrt(np.mean(err[p] ** 2))) for p in parts if p.size]
    count = [int(p.size) for p in parts if p.size]
    return {"rms_std": rms_std, "rmse": rmse, "count": count,
            "ratio": [e / s if s > 0 else float("inf") for e, s in zip(rmse, rms_std)]}


def neighbours_error(abs_err: np.ndarray, width: float = 1.0, spatial: int = 2) -> np.ndarray:
    """Each pixel's neighbours' mean absolute error, with Gaussian weights of std ``width``
    pixels over the first ``spatial`` axes and the pixel itself left out: a map that knows
    the true errors around a pixel but not the pixel's own. How well it ranks the errors
    (Spearman) is about the most a spatially smooth uncertainty map can be expected to
    reach on that image and noise draw, since one pixel's error is one random draw."""
    from scipy.ndimage import gaussian_filter

    sigma = (width,) * spatial + (0,) * (abs_err.ndim - spatial)
    impulse = np.zeros((9,) * spatial + (1,) * (abs_err.ndim - spatial))
    centre = (4,) * spatial + (0,) * (abs_err.ndim - spatial)
    impulse[centre] = 1.0
    own = gaussian_filter(impulse, sigma, mode="constant")[centre]
    return (gaussian_filter(abs_err, sigma, mode="reflect") - own * abs_err) / (1.0 - own)


def stats_for(std: np.ndarray, err: np.ndarray, neighbours: np.ndarray | None = None) -> dict:
    """Spearman, calibration and coverage of ``std`` against the error ``err``;
    ``neighbours`` (same pixels, from :func:`neighbours_error`) adds the Spearman
    correlation of the neighbours' error with the error, the smooth map's ceiling."""
    from scipy.stats import spearmanr

    a = np.abs(err)
    rho = spearmanr(std.ravel(), a.ravel())[0] if std.size > 2 else float("nan")
    # the correlation a perfectly calibrated std would reach: errors drawn as N(0, std^2)
    # (one error per pixel is a single draw, so even the ideal is well below 1)
    rng = np.random.default_rng(0)
    ideal = [spearmanr(std.ravel(), np.abs(std.ravel() * rng.standard_normal(std.size)))[0]
             for _ in range(20)] if std.size > 2 else [float("nan")]
    rms_std = float(np.sqrt(np.mean(std**2)))
    return {"n": int(std.size), "spearman_std_abs_err": float(rho),
            "spearman_if_calibrated": float(np.mean(ideal)),
            "mean_std": float(std.mean()), "mean_abs_err": float(a.mean()),
            "rmse": float(np.sqrt(np.mean(err**2))), "rms_std": rms_std,
            "rmse_over_rms_std": float(np.sqrt(np.mean(err**2)) / rms_std) if rms_std > 0
            else float("inf"),
            "coverage_1.96std": float(np.mean(a <= 1.96 * std)),
            "spearman_neighbours": float(spearmanr(neighbours.ravel(), a.ravel())[0])
            if neighbours is not None and std.size > 2 else None}


# ----------------------------------------------------------------------------- runs
def run_sgld(observed: np.ndarray, args, mask=None):
    import napari_dip

    t = time.perf_counter()
    res = napari_dip.restore(observed, method="sgld", mask=mask, preset=args.preset,
                             steps=args.steps, seed=args.seed, device=args.device,
                             members=args.members, **args.extra)
    return res, time.perf_counter() - t


def case_denoise(clean: np.ndarray, args) -> dict:
    from skimage.metrics import peak_signal_noise_ratio

    noisy = clean + np.random.default_rng(0).normal(0.0, args.sigma / 255.0, clean.shape)
    res, sec = run_sgld(noisy, args)
    err = np.asarray(res.image, np.float64) - clean
    std = np.asarray(res.std, np.float64)
    return {"case": "denoise", "condition": f"Gaussian noise sigma {args.sigma:g}/255",
            "short": f"sigma {args.sigma:g}/255",
            "psnr_noisy": float(peak_signal_noise_ratio(clean, noisy, data_range=1.0)),
            "psnr": float(peak_signal_noise_ratio(clean, res.image, data_range=1.0)),
            "steps": res.steps, "stop_reason": res.stop_reason, "seconds": sec,
            "all": stats_for(std, err, neighbours_error(np.abs(err))),
            "calibration": calibration_curve(std, err, args.bins), "_maps": (err, std, None)}


def case_inpaint(clean: np.ndarray, args) -> dict:
    from skimage.metrics import peak_signal_noise_ratio

    rand, text = inpainting_masks(clean.shape)
    missing = rand | text
    observed = np.where(missing, 0.0, clean)
    res, sec = run_sgld(observed, args, mask=missing)
    err = np.asarray(res.image, np.float64) - clean
    std = np.asarray(res.std, np.float64)
    near = neighbours_error(np.abs(err))
    holes = stats_for(std[missing], err[missing], near[missing])
    known = stats_for(std[~missing], err[~missing], near[~missing])
    out = {"case": "inpaint",
           "condition": f"{missing.mean() * 100:.0f}% missing (random 50% + text and block "
                        f"{text.mean() * 100:.0f}%)",
           "short": f"{missing.mean() * 100:.0f}% missing",
           "missing_fraction": float(missing.mean()),
           "psnr": float(peak_signal_noise_ratio(clean, res.image, data_range=1.0)),
           "psnr_holes": float(10 * np.log10(1.0 / np.mean(err[missing] ** 2))),
           "steps": res.steps, "stop_reason": res.stop_reason, "seconds": sec,
           "all": stats_for(std, err, near), "holes": holes, "known": known,
           "holes_random": stats_for(std[rand & ~text], err[rand & ~text],
                                     near[rand & ~text]),
           "holes_text_block": stats_for(std[text], err[text], near[text]),
           "std_ratio_holes_known": holes["mean_std"] / known["mean_std"],
           "abs_err_ratio_holes_known": holes["mean_abs_err"] / known["mean_abs_err"],
           "calibration": calibration_curve(std, err, args.bins),
           "_maps": (err, std, text)}
    return out


# ----------------------------------------------------------------------------- plot
def plot(cases: list[dict], args, path: str) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return ("matplotlib is not installed, so no calibration plot was written; "
                "`pip install matplotlib` and run again for " + os.path.relpath(path))
    colours = {"denoise": "tab:blue", "inpaint": "tab:red"}
    fig = plt.figure(figsize=(11.5, 5.6), layout="constrained")
    grid = fig.add_gridspec(2, 3, width_ratios=[2.1, 1, 1])
    ax = fig.add_subplot(grid[:, 0])
    lo, hi = np.inf, 0.0
    for c in cases:
        cal = c["calibration"]
        s, e = np.asarray(cal["rms_std"]), np.asarray(cal["rmse"])
        lo, hi = min(lo, s.min(), e.min()), max(hi, s.max(), e.max())
        a = c["all"]
        ax.plot(s, e, "o-", color=colours[c["case"]], lw=1.5, ms=5,
                label=f"{c['case']} ({c['short']}): Spearman {a['spearman_std_abs_err']:.2f}, "
                      f"RMSE/std {a['rmse_over_rms_std']:.2f}, "
                      f"95% cover {a['coverage_1.96std'] * 100:.0f}%")
    lo, hi = lo / 1.5, hi * 1.5
    ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="ideal: RMSE = std")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")
    ax.set_xlabel("predicted posterior std (RMS per bin)")
    ax.set_ylabel("actual error of the posterior mean (RMSE per bin)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left", fontsize=7.5)
    ax.text(0.98, 0.02, f"{args.bins} quantile bins of std per case;\n"
            "above the line: overconfident\n(maps: cyan outlines the text and block holes;\n"
            "50 % of the other pixels are missing too)", transform=ax.transAxes, ha="right",
            va="bottom", fontsize=8, color="0.3")
    for col, c in enumerate(cases):
        err, std, outline = c["_maps"]
        vmax = float(np.percentile(np.abs(err), 99))
        for row, (img, name) in enumerate(((np.abs(err), "|error|"), (std, "posterior std"))):
            axm = fig.add_subplot(grid[row, 1 + col])
            im = axm.imshow(img, cmap="magma", vmin=0, vmax=vmax if row == 0 else None)
            if outline is not None:
                axm.contour(outline, levels=[0.5], colors="cyan", linewidths=0.6)
            axm.set_title(f"{c['case']}: {name}", fontsize=9)
            axm.set_xticks([])
            axm.set_yticks([])
            fig.colorbar(im, ax=axm, shrink=0.8).ax.tick_params(labelsize=6)
    fig.suptitle(f"SGLD-DIP uncertainty calibration: camera crop {args.size}x{args.size}, "
                 f"preset {args.preset}, {cases[0]['steps']} steps, seed {args.seed}, "
                 f"device {args.device}", fontsize=10)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


# ----------------------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--preset", default="fast", choices=["fast", "balanced", "quality"])
    p.add_argument("--size", type=int, default=None, help="crop side (default 128; quick 64)")
    p.add_argument("--steps", type=int, default=None,
                   help="SGLD steps (default: the preset's; quick 1500); the burn-in keeps "
                        "the preset's proportion")
    p.add_argument("--sigma", type=float, default=25.0, help="denoising noise, /255 (25)")
    p.add_argument("--bins", type=int, default=10, help="quantile bins of std (10)")
    p.add_argument("--seed", type=int, default=0, help="engine seed")
    p.add_argument("--members", type=int, default=1,
                   help="SGLD chains run together, their samples pooled (1)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1)")
    p.add_argument("--calibration-share", type=float, default=None,
                   help="SGLD's calibration_share for the inpainting case (default: the "
                        "preset's; 0: the std in the gaps as the chain gives it)")
    p.add_argument("--png", default=os.path.join(ROOT, "docs", "images", "calibration.png"),
                   help="calibration plot (docs/images/calibration.png)")
    p.add_argument("--json", default=None,
                   help="results file (default results/uncertainty_cpu.json, or _gpu.json when "
                        "--device is not cpu)")
    p.add_argument("--quick", action="store_true",
                   help="reduced CPU run: 64x64 crop, 1500 steps")
    a = p.parse_args(argv)
    if a.json is None:
        kind = "cpu" if a.device == "cpu" else "gpu"
        a.json = os.path.join(HERE, "results", f"uncertainty_{kind}.json")
    if a.quick:
        a.size = a.size or 64
        a.steps = a.steps or 1500
    a.size = a.size or 128
    a.extra = {} if a.calibration_share is None else {"calibration_share": a.calibration_share}
    if a.size < 16:
        p.error("--size: expected at least 16")
    if a.bins < 2:
        p.error("--bins: expected at least 2")
    return a


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    import napari_dip

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=UserWarning)
    print(f"# bench_uncertainty: napari_dip {napari_dip.__version__}, torch {torch.__version__}, "
          f"device={args.device}, preset={args.preset}, steps={args.steps or 'preset'}, "
          f"size={args.size}, threads={torch.get_num_threads()}", flush=True)
    clean = load_clean(args.size)
    cases = [case_denoise(clean, args), case_inpaint(clean, args)]

    def f(v, nd=3):
        return "-" if v is None else f"{v:.{nd}f}"

    print(f"\n{'case':>8} {'pixels':>16} {'n':>6} {'spearman':>8} {'ideal':>6} {'nbrs':>5} "
          f"{'mean_std':>8} {'mean|err|':>9} {'rmse':>7} {'rmse/std':>8} {'cover95':>7}")
    for c in cases:
        groups = ["all"] + [g for g in ("holes", "known", "holes_random", "holes_text_block")
                            if g in c]
        for g in groups:
            s = c[g]
            print(f"{c['case']:>8} {g:>16} {s['n']:>6} {f(s['spearman_std_abs_err'], 2):>8} "
                  f"{f(s['spearman_if_calibrated'], 2):>6} {f(s['spearman_neighbours'], 2):>5} "
                  f"{f(s['mean_std'], 4):>8} {f(s['mean_abs_err'], 4):>9} {f(s['rmse'], 4):>7} "
                  f"{f(s['rmse_over_rms_std'], 2):>8} {s['coverage_1.96std'] * 100:>6.1f}%")
    for c in cases:
        extra = f", noisy {c['psnr_noisy']:.2f} dB" if "psnr_noisy" in c else ""
        extra += f", holes {c['psnr_holes']:.2f} dB" if "psnr_holes" in c else ""
        print(f"# {c['case']}: {c['condition']}; posterior mean {c['psnr']:.2f} dB{extra}; "
              f"{c['steps']} steps in {c['seconds']:.0f} s; {c['stop_reason']}")
    inp = cases[1]
    print(f"# inpaint: mean std holes / known = {inp['std_ratio_holes_known']:.2f} "
          f"(mean |error| holes / known = {inp['abs_err_ratio_holes_known']:.2f})")
    print("\n# calibration (quantile bins of std): RMS std -> RMSE (ratio; 1 is ideal)")
    for c in cases:
        cal = c["calibration"]
        print(f"{c['case']:>8}: " + "  ".join(
            f"{s:.4f}->{e:.4f} ({r:.1f})" for s, e, r in zip(cal["rms_std"], cal["rmse"],
                                                             cal["ratio"])))
    hint = plot(cases, args, args.png)
    if hint:
        print(f"# {hint}")
    else:
        print(f"# wrote {os.path.relpath(args.png)}")
    sys.stdout.flush()
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        out = {"config": {k: v for k, v in vars(args).items()},
               "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
               "versions": napari_dip.versions(),
               "plot": None if hint else os.path.relpath(args.png, ROOT),
               "cases": [{k: v for k, v in c.items() if not k.startswith("_")} for c in cases]}
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1, default=lambda o: None if o is None else str(o))
        print(f"# wrote {os.path.relpath(args.json)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
