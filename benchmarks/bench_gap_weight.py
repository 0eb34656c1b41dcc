"""The gaps' blend (``gap_blend="biharmonic"``): the weight of the net that a run fits
without the truth against the best single weight for its gaps, found with the truth.

For each image and mask: one hold-out run of the preset with its known pixels kept; the
net's own estimate (the snapshot before the blend), the blend's result and its weight
``w`` (from the run's note); the biharmonic interpolation (``fill.biharmonic``); and
``w*`` = the least-squares weight of net against interpolation on the gaps given the
clean image, with the PSNR it would reach ("oracle"). Where the gaps are deep enough for
the band around them to be fitted too, ``w_band`` and ``w_pixels`` are the two weights
(the run keeps the smaller); ``depth`` is the gaps' mean chessboard depth and
``blend_seconds`` the blend's time from its note. Prints one JSON line per run.

    python benchmarks/bench_gap_weight.py --images clock,moon --masks text   # ~3 minutes
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_inpaint import IMAGES, MASKS, grey, run_dip  # noqa: E402
from bench_quality import make_masks, psnr  # noqa: E402


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", default=",".join(IMAGES))
    p.add_argument("--masks", default="random50,text", help="from " + ", ".join(MASKS))
    p.add_argument("--preset", default="fast")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    a.seed, a.sigma, a.steps = 0, 0.0, None  # as bench_inpaint.run_dip reads them
    import torch

    from napari_dip.core.fill import biharmonic, gap_depth

    for image in a.images.split(","):
        clean = grey(image, a.size)
        masks = make_masks(clean.shape)
        for mname in a.masks.split(","):
            mask = masks[mname]
            observed = np.where(mask, 0.0, clean).astype(np.float32)
            res, sec, net = run_dip(observed, mask, a)
            if net is None:  # no blend ran: nothing to compare
                p.error(f"--preset {a.preset}: its runs do not blend their gaps")
            final = res.image.astype(np.float64)
            note = [n for n in res.info.notes if n.startswith("gap blend: the gaps")]
            w = float(note[0].split("the gaps are ")[1].split()[0]) if note else None
            # deep gaps: the band's weight and the single pixels' (the smaller is kept)
            band = re.search(r"fit w ([0-9.e-]+) where the single pixels fit ([0-9.e-]+)",
                             note[0]) if note else None
            took = re.search(r"; ([0-9.]+) s\)$", note[0]) if note else None
            depth = gap_depth(torch.from_numpy(~mask)[None])[0].numpy()[mask].mean()
            fill, _ = biharmonic(torch.from_numpy(observed)[None, None],
                                 torch.from_numpy(~mask)[None, None])
            fill = fill[0, 0].double().numpy()
            d, e = (net.astype(np.float64) - fill)[mask], (clean - fill)[mask]
            best = float(np.clip((d * e).sum() / (d * d).sum(), 0.0, 1.0))
            oracle = np.where(mask, best * net + (1 - best) * fill, clean)
            print(json.dumps(dict(image=image, mask=mname, w=w, w_oracle=best,
                                  w_band=float(band.group(1)) if band else None,
                                  w_pixels=float(band.group(2)) if band else None,
                                  depth=float(depth),
                                  blend_seconds=float(took.group(1)) if took else None,
                                  net=psnr(clean, net), bh=psnr(clean, fill),
                                  final=psnr(clean, final), oracle=psnr(clean, oracle),
                                  sec=sec)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
