"""Stop-rule settings against the best snapshot (the oracle), on camera crops and a
low-photon microscopy image.

For every image and setting: the PSNR of the estimate the stop rule returns and its step,
and the best PSNR among the snapshots (against the ground truth) and its step.

    python benchmarks/bench_stop_rule.py --settings discrepancy,variance,none
    python benchmarks/bench_stop_rule.py --settings fit1.2 --images cam_c,cell_p10
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

import napari_dip

SETTINGS = {
    "discrepancy": dict(stop_rule="discrepancy"),
    "variance": dict(stop_rule="variance"),
    "fit1.0": dict(stop_rule="variance", stop_fit=1.0),
    "fit1.2": dict(stop_rule="variance", stop_fit=1.2),
    "fit1.5": dict(stop_rule="variance", stop_fit=1.5),
    "none": dict(auto_stop=False),  # every step: its best snapshot is the true oracle
}


def images(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Three 128x128 camera crops at sigma 25, and scikit-image's cell (half size) with
    10 photons at its peak, gain 2, offset 100 and read noise 3."""
    from skimage import data, transform

    cam = data.camera().astype(np.float64) / 255
    rng = np.random.default_rng(seed)
    out = {}
    for name, (r, c) in {"cam_a": (100, 100), "cam_b": (300, 200), "cam_c": (50, 350)}.items():
        clean = cam[r:r + 128, c:c + 128]
        out[name] = (clean + rng.normal(0, 25 / 255, clean.shape), clean)
    cell = transform.rescale(data.cell().astype(np.float64), 0.5, anti_aliasing=True)
    cell = cell[:128, :128] / cell[:128, :128].max()
    raw = 100 + 2 * rng.poisson(10 * cell) + rng.normal(0, 3, cell.shape)
    out["cell_p10"] = (raw, 100 + 20 * cell)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--settings", default="discrepancy,variance,none",
                    help="comma list of " + ", ".join(SETTINGS))
    ap.add_argument("--images", default="cam_a,cam_b,cam_c,cell_p10")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    wanted = args.images.split(",")
    rows = []
    for setting in args.settings.split(","):
        for name, (noisy, clean) in images().items():
            if name not in wanted:
                continue
            best, snap = (-np.inf, 0), None
            for snap in napari_dip.iterate(noisy.astype(np.float32), preset=args.preset, seed=0,
                                           reference=clean.astype(np.float32),
                                           device=args.device, **SETTINGS[setting]):
                if not snap.done and snap.psnr > best[0]:
                    best = (snap.psnr, snap.step)
            rows.append(dict(setting=setting, image=name, returned=snap.psnr,
                             returned_step=snap.best_step, steps=snap.step, oracle=best[0],
                             oracle_step=best[1], seconds=snap.elapsed))
            print(rows[-1], flush=True)
    print(f"\n{'setting':8s} {'image':9s} {'returned':>9s} {'step':>5s} {'oracle':>7s} "
          f"{'step':>5s}")
    for r in rows:
        print(f"{r['setting']:8s} {r['image']:9s} {r['returned']:9.2f} "
              f"{r['returned_step'] or 0:5d} {r['oracle']:7.2f} {r['oracle_step']:5d}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(args=vars(args), rows=rows), fh, indent=1)


if __name__ == "__main__":
    sys.exit(main())
