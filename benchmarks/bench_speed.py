"""Speed of the engine against a re-implementation of the original DIP denoising loop.

Run on one device, in one process, on the same input:

(a) "original loop": the reference notebook's loop as users run it: the paper's net, input
    jitter, Adam, EMA; every step copies the output to the host, computes three PSNRs with
    scikit-image, and copies every weight to the host for backtracking;
(b) the engine at the paper configuration (float32, and bfloat16 on CUDA);
(c) every preset, run to its stop rule (DIP) or to its schedule's end (SGLD).

Prints a table (ms per step, peak device memory, time to the stop, PSNR reached, ratio to
(a)) and writes JSON. Examples::

    python benchmarks/bench_speed.py                       # CPU, 128x128 grey
    python benchmarks/bench_speed.py --device cuda --size 512 --rgb --json out.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time

import numpy as np
import torch

import napari_dip
from napari_dip.core.config import DIPConfig, make_config
from napari_dip.core.device import device_name, resolve_device
from napari_dip.core.engine import psnr
from napari_dip.core.nets import SkipNet


def test_image(size: int, rgb: bool, sigma: float, seed: int = 0):
    from skimage import data, transform

    img = data.astronaut() if rgb else data.camera()
    img = img.astype(np.float32) / 255.0
    if img.shape[0] != size:
        shape = (size, size, 3) if rgb else (size, size)
        img = transform.resize(img, shape, anti_aliasing=True).astype(np.float32)
    noisy = img + np.random.default_rng(seed).normal(0, sigma / 255.0, img.shape)
    return noisy.astype(np.float32), img


def original_loop(noisy, clean, dev, steps, warmup):
    """The reference notebook's loop, host copies and per-step PSNRs included."""
    from skimage.metrics import peak_signal_noise_ratio as sk_psnr

    cfg = DIPConfig()
    rgb = noisy.ndim == 3
    y = noisy.transpose(2, 0, 1) if rgb else noisy[None]
    gt = clean.transpose(2, 0, 1) if rgb else clean[None]
    torch.manual_seed(0)
    net = SkipNet(cfg, y.shape[0]).to(dev)
    z = (torch.rand(1, 32, *y.shape[1:]) * 0.1).to(dev)
    target = torch.from_numpy(np.ascontiguousarray(y))[None].to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    out_avg = None
    last_net = None
    psnr_last = 0.0
    times = []
    for i in range(steps + warmup):
        t = time.perf_counter()
        opt.zero_grad()
        out = net(z + torch.randn_like(z) * cfg.jitter)
        out_avg = out.detach() if out_avg is None else out_avg * 0.99 + out.detach() * 0.01
        loss = torch.nn.functional.mse_loss(out, target)
        loss.backward()
        out_np = out.detach().cpu().numpy()[0]
        p_noisy = sk_psnr(y, out_np, data_range=1.0)
        sk_psnr(gt, out_np, data_range=1.0)
        sk_psnr(gt, out_avg.cpu().numpy()[0], data_range=1.0)
        if p_noisy - psnr_last < -5 and last_net is not None:
            for new, p in zip(last_net, net.parameters()):
                p.data.copy_(new.to(dev))
            loss = loss * 0
        else:
            last_net = [p.detach().cpu() for p in net.parameters()]
            psnr_last = p_noisy
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def engine_step_time(noisy, dev, cfg, steps, channel_axis, **kw):
    """ms per step of the engine, timed between two snapshots (after warm-up), the peak
    device memory, and the seconds to the first snapshot (compiling and capture included).
    ``kw`` goes to ``napari_dip.iterate`` (e.g. a mask)."""
    changes = dict(snapshot_every=steps, steps=3 * steps)
    if cfg.method == "sgld":
        changes["burn_in"] = 0  # time the sampling phase
    else:
        changes["auto_stop"] = False
    cfg = cfg.replace(**changes)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    gen = napari_dip.iterate(noisy, config=cfg, device=dev, seed=0, channel_axis=channel_axis,
                             **kw)
    a = next(gen)
    b = next(gen)
    gen.close()
    peak = torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else float("nan")
    return 1000 * (b.elapsed - a.elapsed) / steps, peak, a.elapsed


# CUDA rows at the papers' configuration: name -> (label, options, run to the end)
CUDA_VARIANTS = {
    "eager": ("float32, eager", dict(capture=False), False),
    "graph": ("float32, CUDA graph", dict(), True),
    "bf16": ("bfloat16, CUDA graph", dict(precision="bfloat16"), False),
    "cl": ("float32, channels-last, graph", dict(channels_last=True), False),
    "bf16-cl": ("bfloat16, channels-last, graph", dict(precision="bfloat16",
                                                     channels_last=True), True),
    "compiled": ("float32, compiled, graph", dict(compile=True), True),
    "compiled-bf16": ("bfloat16, compiled, graph", dict(compile=True, precision="bfloat16"),
                      True),
}


def cuda_variants(args):
    out = []
    for key in filter(None, args.variants.split(",")):
        if key not in CUDA_VARIANTS:
            raise SystemExit(f"--variants: unknown {key!r}; known: {', '.join(CUDA_VARIANTS)}")
        label, opts, full = CUDA_VARIANTS[key]
        out.append((f"engine, paper config, {label}", DIPConfig(**opts), full))
    member_opts = parse_options(args.member_options)
    for k in (int(v) for v in args.members.split(",") if v):
        out.append((f"engine, paper config, {k} members, {args.member_options}",
                    DIPConfig(members=k, **member_opts), k == 4))
    return out


def sgld_in_budget(noisy, clean, dev, channel_axis, args, options):
    """SGLD at the papers' net (changed by ``options``, e.g. 'width=64,members=4') with as
    many steps as fit ``--sgld-seconds`` at the measured speed: 40 % burn-in, 100 kept
    samples."""
    probe = make_config("sgld", "quality", **parse_options(options))
    ms, _, _ = engine_step_time(noisy, dev, probe, args.steps, channel_axis)
    steps = max(200, int(0.95 * args.sgld_seconds * 1000 / ms))
    burn = int(0.4 * steps)
    cfg = probe.replace(steps=steps, burn_in=burn, thinning=max(1, (steps - burn) // 100))
    return sgld_row(f"SGLD in {args.sgld_seconds:g} s, {options}", noisy, clean, dev,
                    channel_axis, cfg, ms)


def sgld_reference(noisy, clean, dev, channel_axis, args):
    """The papers' SGLD schedule run to its end (20000 steps, burn-in 7000, a sample every
    50, Langevin noise 2 lr; ``--sgld-reference-options`` may change it, e.g. 'steps=300'
    for a dry run): the posterior mean the time-budget rows are measured against."""
    cfg = make_config("sgld", "quality", **parse_options(args.sgld_reference_options))
    ms, _, _ = engine_step_time(noisy, dev, cfg, args.steps, channel_axis)
    label = args.sgld_reference_options or "as published"
    return sgld_row(f"SGLD, the papers' schedule ({label})", noisy, clean, dev, channel_axis,
                    cfg, ms)


def sgld_row(name, noisy, clean, dev, channel_axis, cfg, ms):
    from scipy.stats import spearmanr

    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    secs, res = full_run(noisy, clean, dev, cfg, channel_axis)
    err = np.abs(res.image.astype(np.float64) - clean)
    rho = float(spearmanr(np.sqrt(res.variance).ravel(), err.ravel())[0])
    peak = torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else float("nan")
    return dict(name=name, ms_per_step=ms, peak_gib=peak, members=cfg.members,
                ms_per_member_step=ms / cfg.members, seconds=secs, steps=res.steps,
                burn_in=cfg.burn_in, thinning=cfg.thinning, psnr=res.psnr, spearman=rho,
                rmse_over_std=float(np.sqrt(np.mean(err ** 2) / np.mean(res.variance))),
                notes=res.info.notes)


def parse_options(text):
    """'a=1,b=true,c=bfloat16' -> {'a': 1, 'b': True, 'c': 'bfloat16'}."""
    out = {}
    for item in filter(None, text.split(",")):
        key, _, value = item.partition("=")
        value = value.strip()
        try:
            out[key.strip()] = json.loads(value.lower() if value.lower() in ("true", "false")
                                          else value)
        except ValueError:
            out[key.strip()] = value
    return out


def full_run(noisy, clean, dev, cfg, channel_axis):
    t = time.perf_counter()
    res = napari_dip.restore(noisy, config=cfg, device=dev, seed=0, channel_axis=channel_axis,
                             reference=clean)
    return time.perf_counter() - t, res


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--rgb", action="store_true")
    ap.add_argument("--sigma", type=float, default=25.0)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per measurement")
    ap.add_argument("--presets", default="fast,balanced,quality")
    ap.add_argument("--methods", default="dip,sgld")
    ap.add_argument("--full-runs", action="store_true", help="also run presets to the end")
    ap.add_argument("--skip-full", default="sgld:quality,dip:quality",
                    help="method:preset pairs not to run to the end (comma-separated)")
    ap.add_argument("--variants", default="eager,graph,bf16,cl,bf16-cl,compiled,compiled-bf16",
                    help="CUDA rows at the paper configuration: " + ", ".join(CUDA_VARIANTS))
    ap.add_argument("--members", default="2,4",
                    help="ensemble sizes to time at the paper configuration (CUDA)")
    ap.add_argument("--member-options", default="precision=bfloat16,channels_last=true",
                    help="options of the ensemble rows")
    ap.add_argument("--sgld-seconds", type=float, default=0.0,
                    help="also run SGLD at the papers' net for as many steps as fit this "
                         "many seconds, and report the posterior mean's PSNR")
    ap.add_argument("--sgld-options", default="noise_scale=0.5",
                    help="options of the SGLD time-budget rows, one row per set, sets "
                         "separated by ';', e.g. 'compile=true;width=64,members=4'")
    ap.add_argument("--sgld-reference", action="store_true",
                    help="also run the papers' SGLD schedule to its end (20000 steps), the "
                         "posterior mean the time-budget rows are compared with")
    ap.add_argument("--sgld-reference-options", default="",
                    help="options of that reference run (default: none, as published)")
    ap.add_argument("--preset-options", default="",
                    help="also time every preset with these options, e.g. "
                         "'precision=bfloat16,channels_last=True'")
    ap.add_argument("--memory-model", action="store_true",
                    help="compare the tiling memory estimate with measured peaks (CUDA)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    dev = resolve_device(args.device)
    torch.backends.cudnn.benchmark = True
    noisy, clean = test_image(args.size, args.rgb, args.sigma)
    ca = -1 if args.rgb else None
    rows = []
    print(f"device: {device_name(dev)}; image {args.size}x{args.size}{'x3' if args.rgb else ''}, "
          f"sigma {args.sigma}; torch {torch.__version__}; noisy PSNR {psnr(noisy, clean):.2f} dB")
    base = original_loop(noisy, clean, dev, args.steps, warmup=5)
    rows.append(dict(name="original loop (paper net, host copies + 3 PSNR/step)",
                     ms_per_step=base, ratio=1.0))
    # (name, config, run to the end with --full-runs)
    variants = cuda_variants(args) if dev.type == "cuda" else [
        ("engine, paper config, float32", DIPConfig(capture=False), False),
        ("engine, paper config, channels-last", DIPConfig(channels_last=True), False)]
    for name, cfg, full in variants:
        ms, peak, first = engine_step_time(noisy, dev, cfg, args.steps, ca)
        row = dict(name=name, ms_per_step=ms, peak_gib=peak, ratio=base / ms,
                   members=cfg.members, ms_per_member_step=ms / cfg.members,
                   first_snapshot_s=first)
        if args.full_runs and dev.type == "cuda" and full:
            secs, res = full_run(noisy, clean, dev, cfg, ca)
            row.update(seconds=secs, steps=res.steps, psnr=res.psnr, notes=res.info.notes,
                       stop_reason=res.stop_reason)
        rows.append(row)
        print(row, flush=True)
    sgld_rows = []
    if args.sgld_reference:
        sgld_rows.append(sgld_reference(noisy, clean, dev, ca, args))
        print(sgld_rows[-1], flush=True)
    if args.sgld_seconds > 0:
        for options in [o.strip() for o in args.sgld_options.split(";")]:
            sgld_rows.append(sgld_in_budget(noisy, clean, dev, ca, args, options))
            print(sgld_rows[-1], flush=True)
    for row in sgld_rows:
        row["ratio"] = base / row["ms_per_step"]
    rows.extend(sgld_rows)
    extra = parse_options(args.preset_options)
    option_sets = [("", {})] + ([(" +" + args.preset_options, extra)] if extra else [])
    runs = [(m, p, o) for m in filter(None, args.methods.split(","))
            for p in filter(None, args.presets.split(",")) for o in option_sets]
    for method, preset, (suffix, opts) in runs:
        cfg = make_config(method, preset, **opts)
        ms, peak, first = engine_step_time(noisy, dev, cfg, args.steps, ca)
        row = dict(name=f"preset {preset} ({method}){suffix}", ms_per_step=ms,
                   peak_gib=peak, ratio=base / ms, members=cfg.members, first_snapshot_s=first,
                   ms_per_member_step=ms / cfg.members)
        if args.full_runs and f"{method}:{preset}" not in args.skip_full.split(","):
            secs, res = full_run(noisy, clean, dev, cfg, ca)
            row.update(seconds=secs, steps=res.steps, psnr=res.psnr,
                       noisy_psnr=psnr(noisy, clean))
        rows.append(row)
        print(row, flush=True)

    memory = memory_model_rows(dev, args) if args.memory_model and dev.type == "cuda" else []

    print(f"\ndevice: {device_name(dev)}; image {args.size}x{args.size}{'x3' if args.rgb else ''}, "
          f"sigma {args.sigma}; torch {torch.__version__}")
    print(f"noisy input PSNR {psnr(noisy, clean):.2f} dB")
    print(f"{'run':58s} {'ms/step':>9s} {'/member':>8s} {'x orig':>7s} {'peak GiB':>9s} "
          f"{'1st (s)':>8s} {'s total':>8s} {'steps':>6s} {'PSNR':>6s}")
    nan = float("nan")
    for r in rows:
        print(f"{r['name']:58s} {r['ms_per_step']:9.1f} "
              f"{r.get('ms_per_member_step', r['ms_per_step']):8.1f} {r['ratio']:7.2f} "
              f"{r.get('peak_gib', nan):9.2f} {r.get('first_snapshot_s', nan):8.1f} "
              f"{r.get('seconds', nan):8.1f} {r.get('steps', 0):6d} {r.get('psnr', nan):6.2f}")
    if sgld_rows:
        ref = sgld_rows[0]["psnr"] if args.sgld_reference else None
        print(f"\nSGLD: posterior mean against the truth; 'rho': Spearman correlation of the "
              f"posterior std with the absolute error; 'RMSE/std' 1 is calibrated"
              + ("; 'vs ref': against the papers' schedule (first row)" if ref else ""))
        print(f"{'run':58s} {'ms/step':>8s} {'steps':>6s} {'burn-in':>7s} {'s total':>8s} "
              f"{'PSNR':>6s} {'vs ref':>7s} {'rho':>5s} {'RMSE/std':>8s}")
        for r in sgld_rows:
            vs = f"{r['psnr'] - ref:+7.2f}" if ref else f"{'-':>7s}"
            print(f"{r['name']:58s} {r['ms_per_step']:8.1f} {r['steps']:6d} {r['burn_in']:7d} "
                  f"{r['seconds']:8.1f} {r['psnr']:6.2f} {vs} {r['spearman']:5.2f} "
                  f"{r['rmse_over_std']:8.2f}")
    if memory:
        print(f"\n{'memory model: config':44s} {'size':>6s} {'estimate GiB':>13s} "
              f"{'peak GiB':>9s}")
        for m in memory:
            print(f"{m['name']:44s} {m['size']:6d} {m['estimate_gib']:13.2f} {m['peak_gib']:9.2f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(device=device_name(dev), torch=torch.__version__,
                           python=platform.python_version(), args=vars(args), rows=rows,
                           memory_model=memory), fh, indent=1)


def memory_model_rows(dev, args):
    """Measured CUDA peaks of short runs against :func:`tiling.estimate_memory`."""
    from napari_dip.core import tiling

    out = []
    for name, cfg in [("paper config, fp32, graph", DIPConfig()),
                      ("paper config, bf16, channels-last", DIPConfig(precision="bfloat16",
                                                                      channels_last=True)),
                      ("fast preset (dip)", make_config("dip", "fast"))]:
        for size in (256, 512, 1024):
            noisy, _ = test_image(size, args.rgb, args.sigma)
            torch.cuda.empty_cache()
            _, peak, _ = engine_step_time(noisy, dev, cfg, 5, -1 if args.rgb else None)
            est = tiling.estimate_memory(cfg, (size, size), 3 if args.rgb else 1, "cuda")
            out.append(dict(name=name, size=size, estimate_gib=est / 2**30, peak_gib=peak))
            print(out[-1], flush=True)
    return out


if __name__ == "__main__":
    sys.exit(main())
