"""Replay a stop-at-zero guard for SURE runs on the traces of a ``bench_cpu_target.py`` JSON.

SURE's value estimates the squared error to the clean image, so it cannot be negative if
it is right; where a wide net games the divergence estimate it turns negative as the PSNR
falls. The guard replayed here ends a run at the first snapshot whose loss, averaged over
the last ``--window`` snapshots, is at or below zero, and returns that snapshot's estimate.
Prints, per configuration, the mean gap to BM3D with the guard and at the run's end, and
the steps where the guard stopped. Nothing is run: only the recorded traces are read.

    python benchmarks/sure_guard_replay.py benchmarks/results/sure_sweep2_h100.json
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def replay(trace, window):
    """Index of the snapshot the guard returns (the last one if it never fires)."""
    loss = np.array([t[3] for t in trace], dtype=float)
    smooth = np.convolve(loss, np.ones(window) / window, mode="valid")
    fired = np.nonzero(smooth <= 0)[0]
    return int(fired[0]) + window - 1 if fired.size else len(trace) - 1


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("json", help="output of bench_cpu_target.py --json (with loss traces)")
    ap.add_argument("--window", type=int, default=3, help="snapshots averaged (3)")
    args = ap.parse_args(argv)
    with open(args.json) as fh:
        rows = json.load(fh)["rows"]
    peers = {r["image"]: r["psnr_budget"] for r in rows if r["name"].startswith("BM3D")}
    names = list(dict.fromkeys(r["name"] for r in rows if not r["name"].startswith("BM3D")))
    print(f"{'configuration':20s} {'guard vs BM3D':>14s} {'end vs BM3D':>12s}  guard's steps")
    for name in names:
        sel = [r for r in rows if r["name"] == name and len(r["trace"][0]) > 3]
        if not sel:
            print(f"{name:20s} (no loss in the traces)")
            continue
        picks = [replay(r["trace"], args.window) for r in sel]
        guard = np.mean([r["trace"][i][2] - peers[r["image"]] for r, i in zip(sel, picks)])
        end = np.mean([r["psnr_budget"] - peers[r["image"]] for r in sel])
        steps = ", ".join(str(r["trace"][i][0]) for r, i in zip(sel, picks))
        print(f"{name:20s} {guard:+14.2f} {end:+12.2f}  {steps}")


if __name__ == "__main__":
    main()
