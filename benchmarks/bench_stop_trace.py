"""Per-step traces of DIP runs for the design of stop rules, and rules scored on them.

Runs DIP (the papers' loop: jitter, Adam, moving average of the output) on noisy images
and records at every step: the data-fit loss of the raw output, the PSNR of the raw output
and of the moving average (EMA) against the clean image, the EMA's residual to the noisy
image, and the windowed variance of the last W raw outputs (the ES-WMV statistic). Then
scores stop rules on the traces against the best step (the oracle):

* ``wmv``: the engine's rule (minimum of the windowed variance after the warm-up, stop
  after ``patience`` steps without a new minimum, return the EMA of the minimum's step);
* ``wmv+L``: the same, returning the EMA L steps after the minimum;
* ``disc f``: the discrepancy principle on the EMA: the first step whose residual
  ||EMA - noisy||^2 / N falls to f times the noise variance estimated from the image
  (``arrays.noise_variance``).

    python benchmarks/bench_stop_trace.py --preset fast --size 128 --images camera
    python benchmarks/bench_stop_trace.py --device cuda --preset quality --size 256
    python benchmarks/bench_stop_trace.py --images camera@50:350   # a 128x128 crop at (50, 350)
    python benchmarks/bench_stop_trace.py --merge a.json b.json     # one table, and a scan of f

``--merge`` reads the JSON of earlier runs (one image each, or several) and prints their
rules in one table, the residual at the best step over the true and the estimated noise
variance, and a scan of the fraction f on the stored traces (every 10th step).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from napari_dip.core import arrays
from napari_dip.core.config import make_config
from napari_dip.core.nets import SkipNet


def load(name: str, size: int, sigma: float):
    """A scikit-image sample: its centre square resized to ``size``, or, for
    ``name@row:col``, the ``size`` x ``size`` crop at that corner."""
    from skimage import data, transform, util

    name, _, corner = name.partition("@")
    img = util.img_as_float32(getattr(data, name)())
    if img.ndim == 3:
        img = img[..., :3]
    if corner:
        y0, x0 = (int(v) for v in corner.split(":"))
        s = size
    else:
        s = min(img.shape[:2])
        y0, x0 = (img.shape[0] - s) // 2, (img.shape[1] - s) // 2
    img = img[y0:y0 + s, x0:x0 + s]
    if s != size:
        img = transform.resize(img, (size, size) + img.shape[2:], order=3,
                               anti_aliasing=True).astype(np.float32)
    img = np.clip(img, 0, 1)
    chw = img.transpose(2, 0, 1) if img.ndim == 3 else img[None]
    noisy = chw + np.random.default_rng(0).normal(0, sigma, chw.shape).astype(np.float32)
    return np.ascontiguousarray(chw), noisy.astype(np.float32)


def trace(clean, noisy, cfg, dev, seed=0):
    """Per-step arrays (numpy) of one DIP run without stop rule or backtracking."""
    c = clean.shape[0]
    torch.manual_seed(seed)
    net = SkipNet(cfg, c).to(dev).train()
    z = (torch.rand((1, cfg.input_channels, *clean.shape[1:])) * cfg.input_scale).to(dev)
    y = torch.from_numpy(noisy)[None].to(dev)
    x = torch.from_numpy(clean)[None].to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    w = cfg.stop_window
    buf = torch.zeros((w, *y.shape[1:]), device=dev)
    n = cfg.steps
    rec = {k: torch.zeros(n, device=dev) for k in
           ("loss", "psnr_raw", "psnr_ema", "resid_ema", "var_raw")}
    ema = torch.zeros_like(y)

    def psnr(a):
        return -10 * torch.log10(((a.clamp(0, 1) - x) ** 2).mean())

    for t in range(n):
        zin = z + torch.randn_like(z) * cfg.jitter
        out = net(zin)
        loss = ((out - y) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        o = out.detach()
        if t == 0:
            ema.copy_(o)
        else:
            d = min(cfg.ema, (1 + t) / (10 + t)) if cfg.ema_warmup else cfg.ema
            ema.mul_(d).add_(o, alpha=1 - d)
        buf[t % w] = o[0]
        rec["loss"][t] = loss.detach()
        rec["psnr_raw"][t] = psnr(o)
        rec["psnr_ema"][t] = psnr(ema)
        rec["resid_ema"][t] = ((ema - y) ** 2).mean()
        if t + 1 >= w:
            rec["var_raw"][t] = ((buf - buf.mean(0)) ** 2).mean()
        else:
            rec["var_raw"][t] = float("nan")
    return {k: v.cpu().numpy().astype(np.float64) for k, v in rec.items()}


def score(tr, cfg, sigma2_hat, lags=(0, 100, 200, 400), fs=(1.0, 0.95, 0.9, 0.85)):
    """PSNR and step (1-based) of each rule's estimate."""
    pe = tr["psnr_ema"]
    n = len(pe)
    out = {"oracle": (float(pe.max()), int(pe.argmax()) + 1)}
    var = tr["var_raw"]
    best, best_t, stop_t = np.inf, -1, n - 1
    for t in range(cfg.stop_window - 1, n):
        if t >= cfg.stop_warmup and var[t] < best:
            best, best_t = var[t], t
        if best_t >= 0 and t - best_t >= cfg.stop_patience:
            stop_t = t
            break
    for lag in lags:
        if best_t < 0:
            break
        k = min(best_t + lag, stop_t)
        out[f"wmv+{lag}" if lag else "wmv"] = (float(pe[k]), k + 1)
    for f in fs:
        hit = np.nonzero(tr["resid_ema"] <= f * sigma2_hat)[0]
        k = int(hit[0]) if len(hit) else n - 1
        out[f"disc {f:g}"] = (float(pe[k]), k + 1)
    return out


def print_table(results: dict, title: str) -> None:
    first = next(iter(results.values()))
    rules = [k for k in first if isinstance(first[k], (tuple, list))]
    print(f"\n{title}; PSNR of the EMA estimate (step)")
    print(f"{'rule':10s} " + " ".join(f"{n:>16s}" for n in results) + f" {'mean':>7s} "
          f"{'below oracle':>12s} {'worst':>6s}")
    for rule in rules:
        vals = [results[n][rule][0] for n in results]
        gaps = [results[n]["oracle"][0] - results[n][rule][0] for n in results]
        cells = " ".join(f"{results[n][rule][0]:9.2f} ({results[n][rule][1]:4d})"
                         for n in results)
        print(f"{rule:10s} {cells} {np.mean(vals):7.2f} {np.mean(gaps):12.2f} "
              f"{np.max(gaps):6.2f}")


def merge(paths: list[str]) -> int:
    results, traces = {}, {}
    for path in paths:
        with open(path) as fh:
            d = json.load(fh)
        tag = f"{d['args']['preset']}/{d['args']['size']}/s{d['args']['sigma']:g}"
        for name, r in d["results"].items():
            results[f"{name} {tag}"] = r
            traces[f"{name} {tag}"] = d["traces_every_10"][name]
    print_table(results, f"{len(results)} runs from {len(paths)} files")
    print(f"\n{'run':28s} {'best step':>9s} {'resid/sigma2':>12s} {'resid/estimate':>14s}")
    for key, tr in traces.items():
        k = int(np.argmax(tr["psnr_ema"]))
        r = results[key]
        print(f"{key:28s} {10 * k + 1:9d} {tr['resid_ema'][k] / r['sigma2']:12.3f} "
              f"{tr['resid_ema'][k] / r['sigma2_hat']:14.3f}")
    print(f"\nfraction f scanned on the stored traces: dB below the best stored step")
    print(f"{'f':>5s} " + " ".join(f"{k[:14]:>14s}" for k in traces) + f" {'mean':>6s} "
          f"{'worst':>6s}")
    for f in (0.85, 0.88, 0.9, 0.92, 0.95, 1.0):
        gaps = []
        for key, tr in traces.items():
            p, res = np.array(tr["psnr_ema"]), np.array(tr["resid_ema"])
            hit = np.nonzero(res <= f * results[key]["sigma2_hat"])[0]
            gaps.append(p.max() - p[hit[0] if len(hit) else len(p) - 1])
        print(f"{f:5.2f} " + " ".join(f"{g:14.2f}" for g in gaps) + f" {np.mean(gaps):6.2f} "
              f"{np.max(gaps):6.2f}")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--sigma", type=float, default=25.0)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--images", default="camera,astronaut,coins,chelsea")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--merge", nargs="+", metavar="JSON", help="tabulate earlier runs")
    args = ap.parse_args(argv)
    if args.merge:
        return merge(args.merge)
    if args.threads:
        torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    cfg = make_config("dip", args.preset, **({"steps": args.steps} if args.steps else {}))
    results, traces = {}, {}
    for name in filter(None, args.images.split(",")):
        clean, noisy = load(name, args.size, args.sigma / 255)
        t0 = time.perf_counter()
        tr = trace(clean, noisy, cfg, dev)
        s2 = arrays.noise_variance(noisy)
        results[name] = dict(score(tr, cfg, s2), seconds=time.perf_counter() - t0,
                             sigma2_hat=s2, sigma2=(args.sigma / 255) ** 2)
        traces[name] = {k: v[::10].tolist() for k, v in tr.items()}
        print(name, {k: v for k, v in results[name].items()}, flush=True)
    print_table(results, f"{args.preset} preset, {args.size}x{args.size}, sigma "
                         f"{args.sigma:g}, {cfg.steps} steps, device {args.device}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(args=vars(args), results=results, traces_every_10=traces), fh)
    return 0


if __name__ == "__main__":
    sys.exit(main())
