"""The course of R2R fits against what their stop watches (256x256 grey images).

Runs a configuration of ``bench_cpu_target.py`` (default: the fast preset, one R2R net) on
its test images at one or more noise levels with the stop off, and prints at every
snapshot the PSNR of the estimate (which needs the truth), the mean of the R2R loss over
the snapshot's steps (an estimate of the mean squared error, less its offset), and what
the stop watches: the net's divergence at the image (``Snapshot.divergence``) and, with
``r2r_draws``, the drift between its output for the image and its outputs for the
recorrupted copies (``Snapshot.drift``). It then lists per run the best snapshot, where
the stop would have ended the run and on which signal, and what that cost against the
best snapshot.

    python benchmarks/bench_r2r_trace.py --runs moon:50,chelsea:50,moon:25,sample:25
    python benchmarks/bench_r2r_trace.py --runs moon:50 --config r2r-m4 --device cuda
    python benchmarks/bench_r2r_trace.py --runs astronaut:25,chelsea:25 --colour
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import napari_dip  # noqa: E402
from bench_cpu_target import CONFIGS, test_image  # noqa: E402
from napari_dip.core.stopping import DRIFT_CHECKS, DRIFT_GATE, DRIFT_RATIO  # noqa: E402


def trace(noisy, clean, preset, options, seed, device):
    """(step, PSNR, mean loss, divergence, drift, variance) at every snapshot of a run with
    the stop off (drift None without draws; variance: the estimate's variance over its
    pixels, in the data's units of 0-1), and the noise std the run estimated from the image
    (as a fraction of the data range, read from its note)."""
    rows = []
    noise_std = None
    axis = -1 if noisy.ndim == 3 else None  # colour: channels last
    for snap in napari_dip.iterate(noisy, preset=preset, seed=seed, reference=clean,
                                   device=device, channel_axis=axis,
                                   **dict(options, auto_stop=False)):
        if snap.divergence is None:
            raise SystemExit(f"--config: {preset} {options} is not an R2R run")
        if noise_std is None:
            found = re.search(r"noise std ([0-9.e+-]+) of the data range",
                              " ".join(snap.info.notes))
            noise_std = float(found.group(1)) if found else float("nan")
        mean_loss = float(np.mean(snap.losses)) if len(snap.losses) else float("nan")
        spread = float(np.var(np.asarray(snap.image, np.float64) / 255.0))
        rows.append((snap.step, round(float(snap.psnr), 3), mean_loss, snap.divergence,
                     snap.drift, spread))
    return rows, noise_std


def where_stopped(rows, gate_level=None, ratio=DRIFT_RATIO, checks=DRIFT_CHECKS):
    """(first, index, signal): the snapshot from which DivergenceWatch would have left the
    estimates out and the one at which it would have stopped the run, or (None, None,
    None). With draws (a drift at every snapshot): the first of ``checks`` snapshots in a
    row whose drift exceeds ``ratio`` times its smallest value so far, counted from the
    first snapshot whose mean loss (the fit's estimate of its error) is below
    ``gate_level`` (DRIFT_GATE times the noise variance; None: from the first); without:
    the first after the first whose divergence is not positive. A run that ends on fewer
    than ``checks`` such snapshots is not stopped, but leaves them out as well; this
    returns (first, None, None) for it."""
    least = None
    opened = gate_level is None
    above = []  # snapshots in a row above the ratio
    for i, row in enumerate(rows):  # traces before the variance column have five entries
        loss, div, drift = row[2:5]
        if loss != loss:  # the final result's row (no loss): its check is the one before
            continue
        if drift is None:
            if i > 0 and div <= 0:
                return i, i, "divergence"
            continue
        opened = opened or loss < gate_level
        if not opened:
            continue
        if least is not None and drift > ratio * least:
            above.append(i)
            if len(above) >= checks:
                return above[0], i, "drift"
            continue
        above = []
        least = drift if least is None else min(least, drift)
    return (above[0] if above else None), None, None


def first_negative(rows):
    """Index of the first snapshot after the first whose divergence is not positive (where
    a divergence stop would have fired), or None."""
    return next((i for i, r in enumerate(rows) if i > 0 and r[3] <= 0), None)


def summarise(results, config, device, gate=DRIFT_GATE, checks=DRIFT_CHECKS):
    """Per run: the best snapshot, where the stop would have ended the run (and on which
    signal) and the PSNR it would have kept (the estimates from before the first of the
    snapshots it left out, whose mean the snapshot before shows), and the same for a stop
    at the first non-positive divergence; then the means over the runs. All of the net's
    estimates, before any second stage."""
    print(f"\n{config} on {device}, torch {torch.__version__}; 'drift / least': the drift "
          f"over its smallest value in the run; 'stop': where the run's stop fires (with "
          f"draws: the {'first snapshot' if checks == 1 else f'last of {checks} snapshots in a row'}"
          f" whose drift exceeds {DRIFT_RATIO:g} x its smallest "
          f"value since the mean loss fell below {gate:g} x sigma^2 (0: from the first); "
          f"without: the "
          f"first whose divergence is not positive); "
          f"'divergence': where a stop at the first non-positive divergence would fire; "
          f"'-': nowhere in the run; 'end, held': the run ended on checks above the ratio, "
          f"which it leaves out)")
    print(f"{'run':22s} {'best at':>7s} {'best':>6s} {'stop at':>7s} {'on':>10s} "
          f"{'kept':>6s} {'lost':>5s} {'div at':>6s} {'kept':>6s} {'lost':>5s} {'end':>6s}")
    sums = np.zeros(5)
    for run, rows in results.items():
        # the net's estimates: without the final result's row (no loss), which a second
        # stage may have changed
        rows = [r for r in rows if r[2] == r[2]]
        best = max(range(len(rows)), key=lambda i: rows[i][1])
        sigma = float(run.rpartition(":")[2]) / 255.0
        first, stop, signal = where_stopped(rows, gate * sigma ** 2 if gate > 0 else None,
                                            checks=checks)
        kept = rows[first - 1][1] if first is not None else rows[-1][1]
        if first is not None and stop is None:  # ended on checks above the ratio: left out
            signal = "end, held"
        neg = first_negative(rows)
        kept_neg = rows[neg - 1][1] if neg is not None else rows[-1][1]
        best_p, end_p = rows[best][1], rows[-1][1]
        sums += (best_p, kept, best_p - kept, kept_neg, best_p - kept_neg)
        print(f"{run:22s} {rows[best][0]:7d} {best_p:6.2f} "
              f"{'-' if stop is None else rows[stop][0]:>7} {signal or '-':>10s} "
              f"{kept:6.2f} {best_p - kept:5.2f} {'-' if neg is None else rows[neg][0]:>6} "
              f"{kept_neg:6.2f} {best_p - kept_neg:5.2f} {end_p:6.2f}")
    m = sums / max(len(results), 1)
    print(f"{'mean':22s} {'':7s} {m[0]:6.2f} {'':7s} {'':10s} {m[1]:6.2f} {m[2]:5.2f} "
          f"{'':6s} {m[3]:6.2f} {m[4]:5.2f}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", default="moon:50,chelsea:50,moon:25,sample:25",
                    help="comma-separated IMAGE:SIGMA pairs (images as in bench_cpu_target)")
    ap.add_argument("--config", default="fast", help="a name from bench_cpu_target's CONFIGS")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--colour", action="store_true",
                    help="keep colour images' three channels (else grey, as the CPU tables)")
    ap.add_argument("--checks", type=int, default=DRIFT_CHECKS,
                    help="checks in a row above the drift's ratio that stop a run, in the "
                         "summary (default: the engine's DRIFT_CHECKS)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--from-json", default=None, nargs="+", metavar="JSON",
                    help="summarise traces written by --json instead of running")
    ap.add_argument("--gate", type=float, default=DRIFT_GATE,
                    help="the drift's gate in the summary, x sigma^2 (0: none; default: "
                         "the engine's DRIFT_GATE)")
    args = ap.parse_args(argv)
    if args.from_json:
        results, config, device = {}, None, None
        for path in args.from_json:
            saved = json.loads(Path(path).read_text())
            config, device = saved["config"], saved["device"]
            results.update(saved["traces"])
        summarise(results, config, device, args.gate, args.checks)
        return
    if args.config not in CONFIGS:
        ap.error(f"--config: expected one of {', '.join(CONFIGS)}, got {args.config!r}")
    torch.set_num_threads(args.threads)
    preset, options = CONFIGS[args.config]
    results = {}
    for run in args.runs.split(","):
        name, _, sigma = run.partition(":")
        try:
            sigma_value = float(sigma)
        except ValueError:
            ap.error(f"--runs: expected IMAGE:SIGMA pairs, got {run!r}")
        noisy, clean = test_image(name, sigma=sigma_value, seed=args.seed,
                                  colour=args.colour)
        rows, noise_std = trace(noisy, clean, preset, options, args.seed, args.device)
        results[run] = rows
        least = min((r[4] for r in rows if r[4] is not None), default=None)
        print(f"\n{run} ({args.config}); noise std the run estimated {noise_std:.4g} of the "
              f"data range, added {sigma_value / 255:.4g}\n  step    PSNR   mean loss  "
              f"divergence     drift  / least", flush=True)
        for step, p, loss, div, drift, _ in rows:
            tail = "" if drift is None else f"  {drift:.3e}  {drift / least:6.2f}"
            print(f"  {step:4d}  {p:6.2f}  {loss:+.2e}  {div:+10.4f}{tail}", flush=True)
    summarise(results, args.config, args.device, args.gate, args.checks)
    if args.json:
        Path(args.json).write_text(json.dumps({"config": args.config, "device": args.device,
                                               "traces": results}, indent=1))
        print(f"# wrote {args.json}")


if __name__ == "__main__":
    main()
