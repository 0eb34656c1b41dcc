"""The course of R2R fits against what their stop watches (256x256 grey images).

Runs a configuration of ``bench_cpu_target.py`` (default: the fast preset, one R2R net) on
its test images at one or more noise levels with the stop off, and prints at every
snapshot the PSNR of the estimate (which needs the truth), the mean of the R2R loss over
the snapshot's steps (an estimate of the mean squared error, less its offset) and the
net's divergence at the image (``Snapshot.divergence``), which the stop watches. It then
lists per run the best snapshot, where the stop would have ended the run, and what that
cost against the best snapshot.

    python benchmarks/bench_r2r_trace.py --runs moon:50,chelsea:50,moon:25,sample:25
    python benchmarks/bench_r2r_trace.py --runs moon:50 --config r2r-m4 --device cuda
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import napari_dip  # noqa: E402
from bench_cpu_target import CONFIGS, test_image  # noqa: E402


def trace(noisy, clean, preset, options, seed, device):
    """(step, PSNR, mean loss, divergence) at every snapshot of a run with the stop off."""
    rows = []
    for snap in napari_dip.iterate(noisy, preset=preset, seed=seed, reference=clean,
                                   device=device, **dict(options, auto_stop=False)):
        if snap.divergence is None:
            raise SystemExit(f"--config: {preset} {options} is not an R2R run")
        mean_loss = float(np.mean(snap.losses)) if len(snap.losses) else float("nan")
        rows.append((snap.step, round(float(snap.psnr), 3), mean_loss, snap.divergence))
    return rows


def where_stopped(rows):
    """The snapshot whose divergence is first not positive (after the first), or None."""
    for i, (_, _, _, div) in enumerate(rows):
        if i > 0 and div <= 0:
            return i
    return None


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", default="moon:50,chelsea:50,moon:25,sample:25",
                    help="comma-separated IMAGE:SIGMA pairs (images as in bench_cpu_target)")
    ap.add_argument("--config", default="fast", help="a name from bench_cpu_target's CONFIGS")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if args.config not in CONFIGS:
        ap.error(f"--config: expected one of {', '.join(CONFIGS)}, got {args.config!r}")
    torch.set_num_threads(args.threads)
    preset, options = CONFIGS[args.config]
    results = {}
    summary = []
    for run in args.runs.split(","):
        name, _, sigma = run.partition(":")
        try:
            sigma_value = float(sigma)
        except ValueError:
            ap.error(f"--runs: expected IMAGE:SIGMA pairs, got {run!r}")
        noisy, clean = test_image(name, sigma=sigma_value, seed=args.seed)
        rows = trace(noisy, clean, preset, options, args.seed, args.device)
        results[run] = rows
        print(f"\n{run} ({args.config})\n  step    PSNR   mean loss  divergence", flush=True)
        for step, p, loss, div in rows:
            print(f"  {step:4d}  {p:6.2f}  {loss:+.2e}  {div:+.4f}", flush=True)
        best = max(range(len(rows)), key=lambda i: rows[i][1])
        stop = where_stopped(rows)
        # the stop keeps the estimates from before the snapshot at which it fires; their
        # mean is not in the trace, so the snapshot before stands for it
        kept = rows[stop - 1] if stop is not None else rows[-1]
        summary.append((run, rows[best][0], rows[best][1],
                        None if stop is None else rows[stop][0], kept[1], rows[-1][1]))
    print(f"\n{args.config} on {args.device}, torch {torch.__version__}; the stop: the first "
          f"snapshot whose divergence is not positive ('-': none in the run)")
    print(f"{'run':12s} {'best at':>7s} {'best':>6s} {'stop at':>7s} {'before':>6s} "
          f"{'lost':>5s} {'end':>6s}")
    for run, best_step, best_p, stop_step, kept_p, end_p in summary:
        print(f"{run:12s} {best_step:7d} {best_p:6.2f} "
              f"{'-' if stop_step is None else stop_step:>7} {kept_p:6.2f} "
              f"{best_p - kept_p:5.2f} {end_p:6.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"config": args.config, "device": args.device,
                                               "traces": results}, indent=1))
        print(f"# wrote {args.json}")


if __name__ == "__main__":
    main()
