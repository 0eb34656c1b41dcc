"""Microscopy-like noise benchmark: Gaussian data term against variance stabilisation.

Clean images are crops of pictures that scikit-image ships (no download):

cell        ``skimage.data.cell()``: a cell in transmitted light, downscaled by 2 so that
            the whole cell and some background fit in the crop;
ihc         ``skimage.data.immunohistochemistry()``, its hematoxylin channel
            (``skimage.color.rgb2hed``): a nuclear stain, dark background, like a
            fluorescence image;
hubble      ``skimage.data.hubble_deep_field()`` in grey: photon-limited, mostly dark
            (astronomy rather than microscopy; in the full set only);
blobs       ``skimage.data.binary_blobs`` (seed 1, a tenth of the field covered) blurred
            by a Gaussian of 2 pixels: sparse bright objects on a dark field, like a
            fluorescence image of labelled structures (not in the default set).

Each crop (size x size, scaled to [0, 1]) is turned into photon counts with a given peak
(``--peaks``, mean photons at the brightest pixel) and observed as

    y = offset + gain * Poisson(peak * x) + N(0, read_noise**2)          (noise seed 0)

Methods, all scored on ``(estimate - offset) / (gain * peak)`` against the clean crop
(PSNR with data range 1, SSIM):

noisy          the observation itself;
dip_gauss      ``napari_dip.restore(y, preset, seed=0, noise_model="gaussian")``: DIP
               on the raw data, the estimate its stop rule returns (the presets' R2R
               reads the noise growing with the signal and falls back to the papers'
               squared error; ``--options sure_max_trend=0`` keeps R2R); the "oracle"
               column is the best snapshot (every ``snapshot_every`` steps) of the same
               run against the ground truth, i.e. a perfect stop rule;
dip_auto       the same with the default ``noise_model="auto"``: what a run on the raw
               counts returns (the presets stabilise such data themselves, with gain and
               read noise estimated and the camera offset not given);
dip_gat        the generalized Anscombe transformation with gain and read noise estimated
               from y (``napari_dip.core.noise.stabilise``, camera offset known), DIP, and
               the closed-form unbiased inverse (``unstabilise``);
dip_gat_true   the same with the true gain and read noise (``--true-params``);
dip_hold       the preset's settings for the papers' loss with the hold-out stop
               (``stop_rule="holdout"``) on the data stabilised as ``noise_model="auto"``
               does it (gain, read noise and offset estimated);
bm3d_raw       BM3D on the raw data with one noise level (the root-mean-square of the
               estimated noise curve over the image): the Gaussian peer;
bm3d_gat       GAT (estimated parameters) + BM3D (sigma 1) + unbiased inverse: the usual
               state of the art for Poisson-Gaussian data (Makitalo & Foi 2013);
bm3d_gat_true  the same with the true parameters.

Examples
--------
    python benchmarks/bench_microscopy.py --quick
    python benchmarks/bench_microscopy.py --size 128 --peaks 10,30,100 --device cuda
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
IMAGES = ("cell", "ihc", "hubble")  # the default set
KNOWN_IMAGES = (*IMAGES, "blobs")
METHODS = ("noisy", "dip_gauss", "dip_auto", "dip_gat", "dip_gat_true", "dip_hold", "bm3d_raw",
           "bm3d_gat", "bm3d_gat_true")


# ----------------------------------------------------------------------------- data
def _crop(img: np.ndarray, centre: tuple[int, int], size: int) -> np.ndarray:
    h, w = img.shape
    if size > min(h, w):
        raise ValueError(f"--size: expected at most {min(h, w)} for this image, got {size}")
    cy = int(np.clip(centre[0], size // 2, h - (size - size // 2)))
    cx = int(np.clip(centre[1], size // 2, w - (size - size // 2)))
    return img[cy - size // 2: cy - size // 2 + size, cx - size // 2: cx - size // 2 + size]


def load_clean(name: str, size: int) -> np.ndarray:
    """A size x size float64 crop scaled to [0, 1]."""
    from skimage import color, data, transform, util

    if name == "cell":
        img = util.img_as_float64(data.cell())
        img = transform.rescale(img, 0.5, anti_aliasing=True)
        crop = _crop(img, (185, 210), size)
    elif name == "ihc":
        img = color.rgb2hed(data.immunohistochemistry())[..., 0]
        crop = _crop(np.maximum(img, 0.0), (256, 256), size)
    elif name == "hubble":
        img = color.rgb2gray(data.hubble_deep_field())
        crop = _crop(img, (436, 500), size)
    elif name == "blobs":
        from skimage import filters

        blobs = data.binary_blobs(max(size, 64), blob_size_fraction=0.05, volume_fraction=0.1,
                                  rng=1).astype(np.float64)
        crop = filters.gaussian(blobs, 2.0)[:size, :size]
    else:
        raise ValueError(f"--images: unknown image {name!r}; known: {', '.join(KNOWN_IMAGES)}")
    crop = crop.astype(np.float64)
    return (crop - crop.min()) / (crop.max() - crop.min())


def observe(clean: np.ndarray, peak: float, gain: float, read_noise: float, offset: float,
            seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return offset + gain * rng.poisson(clean * peak) + rng.normal(0.0, read_noise, clean.shape)


# ----------------------------------------------------------------------------- metrics
def scores(clean: np.ndarray, est: np.ndarray) -> dict:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    est = np.asarray(est, np.float64)
    return {"psnr": float(peak_signal_noise_ratio(clean, est, data_range=1.0)),
            "ssim": float(structural_similarity(clean, est, data_range=1.0))}


# ----------------------------------------------------------------------------- methods
def dip(img: np.ndarray, args, score, noise_model: str = "gaussian"
        ) -> tuple[np.ndarray, dict]:
    """DIP with the preset's stop rule. ``score(image)`` gives the PSNR of a snapshot in
    the caller's terms: the best of the snapshots and the returned estimate is the
    oracle (what a perfect stop rule within the steps run would return), at no extra
    cost. ``noise_model``: "gaussian" for the raw data, "poisson-gaussian" for data
    stabilised by the caller (the run gets the configuration that ``noise_model=`` would
    give it, on the data as they are), "auto" for the raw data as a default run sees
    them (the run stabilises them itself where it reads the noise growing with the
    signal)."""
    import napari_dip
    from napari_dip.core.config import for_noise_model, make_config

    cfg = make_config("dip", args.preset, steps=args.steps, **args.options)
    if noise_model != "auto":
        cfg, _ = for_noise_model(cfg, noise_model)
    best, snap = (-np.inf, None), None
    for snap in napari_dip.iterate(img, config=cfg, seed=args.seed, device=args.device,
                                   noise_model="auto" if noise_model == "auto" else "gaussian"):
        p = score(snap.image)
        if p > best[0]:
            best = (p, snap.best_step if snap.done and snap.best_step else snap.step)
    assert snap is not None and snap.done
    return snap.image, {"steps": snap.step, "best_step": snap.best_step,
                        "loss": snap.info.config.loss,
                        "model": ("stabilised" if noise_model == "poisson-gaussian" else
                                  (snap.info.noise or {}).get("model", "gaussian")),
                        "stop_reason": snap.stop_reason, "psnr_oracle": float(best[0]),
                        "oracle_step": best[1]}


def dip_hold(img: np.ndarray, args, score) -> tuple[np.ndarray, dict]:
    """The papers' loss with the preset's settings for it and the hold-out stop, on data
    the caller has stabilised; ``score`` as in :func:`dip`."""
    import napari_dip
    from napari_dip.core.config import make_config

    options = {**args.options, "loss": "mse", "stop_rule": "holdout"}
    cfg = make_config("dip", args.preset, masked=True, steps=args.steps, **options)
    best, snap = (-np.inf, None), None
    for snap in napari_dip.iterate(img.astype(np.float32), config=cfg, seed=args.seed,
                                   device=args.device, noise_model="gaussian"):
        p = score(snap.image)
        if p > best[0]:
            best = (p, snap.step)
    assert snap is not None and snap.done
    return snap.image, {"steps": snap.step, "best_step": snap.best_step, "loss": "mse",
                        "model": "stabilised", "stop_reason": snap.stop_reason,
                        "psnr_oracle": float(best[0]), "oracle_step": best[1]}


def bm3d_denoise(img: np.ndarray, sigma: float) -> np.ndarray:
    import bm3d

    return np.asarray(bm3d.bm3d(img, sigma_psd=sigma), np.float64)


def have_bm3d() -> str | None:
    try:
        import bm3d  # noqa: F401
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {exc}"
    return None


# ----------------------------------------------------------------------------- run
COLS = [("image", 7), ("peak", 5), ("method", 14), ("psnr", 7), ("ssim", 6), ("oracle", 12),
        ("gain", 6), ("sigma", 6), ("steps", 9), ("loss", 18), ("sec", 6)]


def fmt_row(r: dict) -> str:
    def f(v, nd=2):
        return "-" if v is None else f"{v:.{nd}f}"

    steps = "-"
    if r.get("steps") is not None:
        steps = str(r["steps"]) + (f"@{r['best_step']}" if r.get("best_step") else "")
    oracle = "-"
    if r.get("psnr_oracle") is not None:
        oracle = f"{r['psnr_oracle']:.2f}@{r['oracle_step']}"
    loss = "-" if r.get("loss") is None else f"{r['loss']} ({r.get('model', 'gaussian')})"
    vals = [r["image"], f"{r['peak']:g}", r["method"], f(r.get("psnr")), f(r.get("ssim"), 3),
            oracle, f(r.get("gain")), f(r.get("sigma")), steps, loss, f(r.get("seconds"), 1)]
    return " ".join(f"{str(v):>{w}}" for v, (_, w) in zip(vals, COLS))


def header() -> str:
    return " ".join(f"{n:>{w}}" for n, w in COLS)


def run_case(name: str, clean: np.ndarray, peak: float, args, bm3d_err, rows: list) -> None:
    from napari_dip.core.noise import stabilise, unstabilise

    y = observe(clean, peak, args.gain, args.read_noise, args.offset)
    scale = args.gain * peak

    def to_unit(est):
        return (np.asarray(est, np.float64) - args.offset) / scale

    def add(method, est, t0, **extra):
        if method not in args.methods:
            return
        row = {"image": name, "peak": peak, "method": method, **scores(clean, to_unit(est)),
               "seconds": time.perf_counter() - t0, **extra}
        rows.append(row)
        print(fmt_row(row), flush=True)

    add("noisy", y, time.perf_counter())

    t0 = time.perf_counter()
    t_est, st_est = stabilise(y, "poisson-gaussian", offset=args.offset)
    est_params = {"gain": st_est.gain, "sigma": st_est.sigma}
    t_true, st_true = stabilise(y, "poisson-gaussian", gain=args.gain, sigma=args.read_noise,
                                offset=args.offset)
    t_stab = time.perf_counter() - t0

    def psnr_of(post):
        return lambda img: scores(clean, to_unit(post(img)))["psnr"]

    # DIP, Gaussian data term on the raw data
    if "dip_gauss" in args.methods:
        t0 = time.perf_counter()
        est, info = dip(y, args, psnr_of(lambda a: a))
        add("dip_gauss", est, t0, **info)
    # DIP as a default run (noise_model="auto") sees the raw data
    if "dip_auto" in args.methods:
        t0 = time.perf_counter()
        est, info = dip(y, args, psnr_of(lambda a: a), noise_model="auto")
        add("dip_auto", est, t0, **info)
    # DIP on the stabilised data
    if "dip_gat" in args.methods:
        t0 = time.perf_counter()
        est, info = dip(t_est, args, psnr_of(lambda a: unstabilise(a, st_est)),
                        noise_model="poisson-gaussian")
        add("dip_gat", unstabilise(est, st_est), t0 - t_stab, **est_params, **info)
    if "dip_hold" in args.methods:
        t0 = time.perf_counter()
        t_auto, st_auto = stabilise(y, "poisson-gaussian", offset=None)
        est, info = dip_hold(t_auto, args, psnr_of(lambda a: unstabilise(a, st_auto)))
        add("dip_hold", unstabilise(est, st_auto), t0, gain=st_auto.gain, sigma=st_auto.sigma,
            **info)
    if args.true_params and "dip_gat_true" in args.methods:
        t0 = time.perf_counter()
        est, info = dip(t_true, args, psnr_of(lambda a: unstabilise(a, st_true)),
                        noise_model="poisson-gaussian")
        add("dip_gat_true", unstabilise(est, st_true), t0, gain=args.gain,
            sigma=args.read_noise, **info)

    if bm3d_err is None and any(m.startswith("bm3d") for m in args.methods):
        t0 = time.perf_counter()
        curve = st_est.gain * np.maximum(y - st_est.offset, 0.0) + st_est.sigma**2
        sigma_raw = float(np.sqrt(curve.mean())) / scale
        add("bm3d_raw", bm3d_denoise(to_unit(y), sigma_raw) * scale + args.offset, t0,
            **est_params)
        t0 = time.perf_counter()
        add("bm3d_gat", unstabilise(bm3d_denoise(t_est, 1.0), st_est), t0 - t_stab,
            **est_params)
        t0 = time.perf_counter()
        add("bm3d_gat_true", unstabilise(bm3d_denoise(t_true, 1.0), st_true), t0,
            gain=args.gain, sigma=args.read_noise)


def summarise(rows: list[dict]) -> list[dict]:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["peak"], r["method"]), []).append(r)
    out = []
    for (peak, method), rs in groups.items():
        oracle = [r["psnr_oracle"] for r in rs if r.get("psnr_oracle") is not None]
        out.append({"peak": peak, "method": method, "n": len(rs),
                    "psnr": float(np.mean([r["psnr"] for r in rs])),
                    "psnr_oracle": float(np.mean(oracle)) if oracle else None,
                    "ssim": float(np.mean([r["ssim"] for r in rs])),
                    "seconds": float(np.mean([r["seconds"] for r in rs]))})
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--preset", default="fast", choices=["fast", "balanced", "quality"])
    p.add_argument("--size", type=int, default=None, help="crop side (default 128; quick 96)")
    p.add_argument("--images", default=None,
                   help=f"comma list of {', '.join(KNOWN_IMAGES)} (default "
                        f"{','.join(IMAGES)}; quick cell,ihc)")
    p.add_argument("--methods", default=None,
                   help=f"comma list of the methods to run (default all: {', '.join(METHODS)}; "
                        "dip_gat_true with --true-params)")
    p.add_argument("--peaks", default=None,
                   help="comma list of peak photon counts (default 10,30,100; quick 10,100)")
    p.add_argument("--gain", type=float, default=2.0, help="detector units per photon (2)")
    p.add_argument("--read-noise", type=float, default=3.0,
                   help="Gaussian read noise, detector units (3)")
    p.add_argument("--offset", type=float, default=100.0, help="camera offset (100)")
    p.add_argument("--steps", type=int, default=None,
                   help="DIP steps (default: the preset's, with its stop rule; quick 500)")
    p.add_argument("--true-params", action="store_true",
                   help="also run DIP on the GAT with the true gain and read noise")
    p.add_argument("--seed", type=int, default=0, help="engine seed")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (1)")
    p.add_argument("--json", default=None,
                   help="results file (default results/microscopy_cpu.json, or _gpu.json when "
                        "--device is not cpu)")
    p.add_argument("--options", default="",
                   help="config options for every DIP run, e.g. 'sure_max_trend=0' (SURE "
                        "whatever the noise)")
    p.add_argument("--quick", action="store_true",
                   help="reduced CPU set: cell and ihc at 96x96, peaks 10 and 100, 500 steps")
    a = p.parse_args(argv)
    from bench_speed import parse_options  # this folder is on the path when run as a script

    a.options = parse_options(a.options)
    if a.json is None:
        kind = "cpu" if a.device == "cpu" else "gpu"
        a.json = os.path.join(HERE, "results", f"microscopy_{kind}.json")
    if a.quick:
        a.size = a.size or 96
        a.images = a.images or "cell,ihc"
        a.peaks = a.peaks or "10,100"
        a.steps = a.steps or 500
    a.size = a.size or 128
    a.images = [s.strip() for s in (a.images or ",".join(IMAGES)).split(",") if s.strip()]
    a.peaks = [float(s) for s in (a.peaks or "10,30,100").split(",")]
    for name in a.images:
        if name not in KNOWN_IMAGES:
            p.error(f"--images: unknown image {name!r}; known: {', '.join(KNOWN_IMAGES)}")
    a.methods = [s.strip() for s in (a.methods or ",".join(METHODS)).split(",") if s.strip()]
    for m in a.methods:
        if m not in METHODS:
            p.error(f"--methods: unknown method {m!r}; known: {', '.join(METHODS)}")
    if a.gain <= 0 or a.read_noise < 0 or any(pk <= 0 for pk in a.peaks):
        p.error("--gain and --peaks must be > 0, --read-noise >= 0")
    return a


def main(argv=None) -> int:
    args = parse_args(argv)
    import torch

    import napari_dip

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", category=UserWarning)
    bm3d_err = have_bm3d()
    print(f"# bench_microscopy: napari_dip {napari_dip.__version__}, torch {torch.__version__}, "
          f"device={args.device}, preset={args.preset}, steps={args.steps or 'preset'}, "
          f"size={args.size}, threads={torch.get_num_threads()}, options={args.options}",
          flush=True)
    print(f"# y = {args.offset:g} + {args.gain:g} * Poisson(peak * x) + "
          f"N(0, {args.read_noise:g}^2); peaks {', '.join(f'{pk:g}' for pk in args.peaks)}; "
          f"images {', '.join(args.images)}", flush=True)
    if bm3d_err:
        print(f"# bm3d missing ({bm3d_err}): pip install bm3d for the BM3D rows", flush=True)
    print(header(), flush=True)
    rows: list[dict] = []
    t_all = time.perf_counter()
    for name in args.images:
        clean = load_clean(name, args.size)
        for peak in args.peaks:
            run_case(name, clean, peak, args, bm3d_err, rows)
    total = time.perf_counter() - t_all

    summary = summarise(rows)
    print(f"\n# averages over {len(args.images)} image(s) ({total:.0f} s in all)")
    print(f"{'peak':>5} {'method':>14} {'n':>2} {'psnr':>7} {'ssim':>6} {'oracle':>7} "
          f"{'sec':>6}")
    for s in summary:
        oracle = "-" if s["psnr_oracle"] is None else f"{s['psnr_oracle']:.2f}"
        print(f"{s['peak']:>5g} {s['method']:>14} {s['n']:>2} {s['psnr']:>7.2f} "
              f"{s['ssim']:>6.3f} {oracle:>7} {s['seconds']:>6.1f}")
    by = {(s["peak"], s["method"]): s for s in summary}
    print("\n# gain of the stabilised data term over the Gaussian one (dB)")
    for peak in args.peaks:
        parts = []
        for a, b in (("dip_auto", "dip_gauss"), ("dip_gat", "dip_gauss"),
                     ("bm3d_gat", "bm3d_raw")):
            if (peak, a) in by and (peak, b) in by:
                parts.append(f"{a} - {b}: {by[(peak, a)]['psnr'] - by[(peak, b)]['psnr']:+.2f}")
                if by[(peak, a)]["psnr_oracle"] is not None:
                    d = by[(peak, a)]["psnr_oracle"] - by[(peak, b)]["psnr_oracle"]
                    parts.append(f"oracles: {d:+.2f}")
        print(f"peak {peak:g}: " + "; ".join(parts))
    sys.stdout.flush()

    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        out = {"config": {k: v for k, v in vars(args).items()},
               "noise_model": "y = offset + gain * Poisson(peak * x) + N(0, read_noise^2)",
               "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
               "versions": napari_dip.versions(), "bm3d": bm3d_err or "ok",
               "total_seconds": total, "rows": rows, "summary": summary}
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1, default=lambda o: None if o is None else str(o))
        print(f"# wrote {os.path.relpath(args.json)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
