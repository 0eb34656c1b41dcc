"""The gaps' blend on a volume: a hold-out inpainting of ``samples.noisy_volume``'s clean
blobs (16x64x64) with 50 % and 80 % of the voxels missing at random, fast preset, known
voxels kept; PSNR of the biharmonic interpolation alone (``fill.biharmonic``), of the
net's own estimate (the snapshot before the blend) and of the blend, with the blend's
note. Before the interpolation ran on the run's device the blend was off for volumes.

    python benchmarks/bench_volume_blend.py        # 2 CPU cores: ~4 minutes
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_inpaint import run_dip  # noqa: E402


def psnr(a, b):
    return float(10 * np.log10(1.0 / np.mean((a - b) ** 2)))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shape", default="16,64,64")
    p.add_argument("--shares", default="0.5,0.8")
    p.add_argument("--preset", default="fast")
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    a.seed, a.sigma, a.steps = 0, 0.0, None  # as bench_inpaint.run_dip reads them
    import torch

    from napari_dip.core.fill import biharmonic
    from napari_dip.samples import noisy_volume

    _, clean = noisy_volume(tuple(int(s) for s in a.shape.split(",")))
    for share in (float(s) for s in a.shares.split(",")):
        missing = np.random.default_rng(0).random(clean.shape) < share
        observed = np.where(missing, 0, clean).astype(np.float32)
        res, sec, net = run_dip(observed, missing, a)
        if net is None:  # no blend ran: nothing to compare
            p.error(f"--preset {a.preset}: its runs do not blend their gaps")
        fill, _ = biharmonic(torch.from_numpy(observed)[None, None],
                             torch.from_numpy(~missing)[None, None])
        print(json.dumps(dict(
            missing=share, biharmonic=psnr(clean, fill[0, 0].numpy()), net=psnr(clean, net),
            blend=psnr(clean, res.image), seconds=sec,
            note=[n for n in res.info.notes if n.startswith("gap blend")])),
            flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
