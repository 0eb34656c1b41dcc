"""What a time limit gives: a fit ended early and finished (``time_limit``, the widget's
Finish) against the estimate a plain stop at the same time left, and against the whole run.

For each image (256x256 grey, sigma 25, the noise recipe of ``bench_cpu_target.py``) and
each limit T:

- "stop at T": the latest snapshot of the whole run at T seconds: what the widget's Stop
  left in the result layer (the net's estimate, no second stage);
- "limit T": a run with ``time_limit=T``: the fit ends at the first snapshot after T and
  the run finishes as at its last step (the stop rule's estimate and the second stage);
  its seconds are those of the whole ``restore`` call;
- the whole run, and BM3D (PyPI ``bm3d``) on the same input.

    python benchmarks/bench_time_limit.py                      # fast, T = 10, 20, 30 s
    python benchmarks/bench_time_limit.py --images sample,moon --limits 15,30 --json out.json

On two CPU cores the fast preset takes 26-54 s per image, so limits below that show what a
slower machine gets from a fixed budget.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

import napari_dip
from napari_dip.core.engine import psnr

from bench_cpu_target import bm3d_uint8, test_image

TEN = "sample,moon,coins,astronaut,coffee,chelsea,brick,grass,gravel,clock"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", default=TEN, help="comma-separated; see bench_cpu_target.py")
    ap.add_argument("--limits", default="10,20,30", help="seconds, comma-separated")
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--sigma", type=float, default=25.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    limits = [float(t) for t in args.limits.split(",")]
    try:
        import bm3d
    except ImportError:
        bm3d = None
        print("bm3d is not installed (pip install bm3d): no peer column", flush=True)
    rows = []
    for image in args.images.split(","):
        noisy, clean = test_image(image, sigma=args.sigma)
        row = dict(image=image, noisy=psnr(noisy, clean), limits={})
        if bm3d is not None:
            row["bm3d"] = psnr(bm3d_uint8(bm3d, noisy, args.sigma), clean)
        trace = []  # (seconds, PSNR) of the whole run's snapshots
        snap = None
        for snap in napari_dip.iterate(noisy, preset=args.preset, seed=args.seed,
                                       reference=clean, device=args.device):
            trace.append((snap.elapsed, snap.psnr))
        row.update(whole=snap.psnr, whole_seconds=snap.elapsed, whole_steps=snap.step)
        for t in limits:
            before = [p for s, p in trace[:-1] if s <= t]  # the final snapshot is no stop
            started = time.perf_counter()
            res = napari_dip.restore(noisy, preset=args.preset, seed=args.seed,
                                     reference=clean, device=args.device, time_limit=t)
            row["limits"][f"{t:g}"] = dict(
                stop=before[-1] if before else float("nan"),
                limit=psnr(res.image, clean), seconds=time.perf_counter() - started,
                steps=res.steps, reason=res.stop_reason)
        rows.append(row)
        print(json.dumps(row), flush=True)
        if args.json:
            with open(args.json, "w") as fh:
                json.dump(dict(args=vars(args), torch=torch.__version__, rows=rows), fh,
                          indent=1)

    from napari_dip.core.device import device_name, resolve_device

    print(f"\n256x256 grey, sigma {args.sigma:g}, preset {args.preset}, "
          f"{device_name(resolve_device(args.device))}, {args.threads} CPU threads, torch "
          f"{torch.__version__}; PSNR in dB")
    head = f"{'image':10s} {'BM3D':>6s} {'whole':>6s} {'s':>5s}"
    for t in limits:
        head += f" | T={t:g}: {'stop':>6s} {'limit':>6s} {'s':>5s} {'steps':>5s}"
    print(head)
    nan = float("nan")
    for r in rows:
        line = (f"{r['image']:10s} {r.get('bm3d', nan):6.2f} {r['whole']:6.2f} "
                f"{r['whole_seconds']:5.1f}")
        for t in limits:
            x = r["limits"][f"{t:g}"]
            line += (f" | {'':>{len(f'T={t:g}:')}s} {x['stop']:6.2f} {x['limit']:6.2f} "
                     f"{x['seconds']:5.1f} {x['steps']:5d}")
        print(line)
    if len(rows) > 1:
        def mean(key, t=None, sub=None):
            vals = [r[key] if t is None else r["limits"][f"{t:g}"][sub] for r in rows]
            return float(np.mean(vals))

        peer = mean("bm3d") if bm3d is not None else nan
        print(f"\nmean over {len(rows)} images: BM3D {peer:.2f}; whole run "
              f"{mean('whole'):.2f} ({mean('whole') - peer:+.2f}) in "
              f"{mean('whole_seconds'):.1f} s")
        for t in limits:
            stop, lim = mean(None, t, "stop"), mean(None, t, "limit")
            print(f"  T = {t:g} s: stop {stop:.2f} ({stop - peer:+.2f} vs BM3D), limit "
                  f"{lim:.2f} ({lim - peer:+.2f}) in {mean(None, t, 'seconds'):.1f} s; "
                  f"limit - stop {lim - stop:+.2f}")


if __name__ == "__main__":
    sys.exit(main())
