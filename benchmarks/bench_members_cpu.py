"""An ensemble's members on a CPU: side by side in grouped convolutions, or one net after
the other (``nets.Members``), in one process on the same inputs.

The balanced preset averages four nets (``members=4``). On a GPU they run side by side in
grouped convolutions, one pass for all four; on a CPU the engine runs them as four nets of
their own (``engine.SEPARATE_MEMBERS``), from the same weights. This script times both
ways and prints both results side by side (tests/test_parts.py checks that they agree):

1. **ms per step** of the balanced preset (each way, ``--repeats`` times, the median):
   256x256 grey and colour images denoised (R2R), and a grey image with half of its
   pixels missing (the hold-out fit); ``bench_speed.engine_step_time``: the time between
   the first two snapshots, ``--steps`` apart (the check at the second is in; the preset
   checks every 25 or 50 steps), so the set-up and the second stage are left out; the
   order of the two ways alternates between repeats;
2. **whole runs** of the balanced preset on ``--images`` (bench_cpu_target.py's 256x256
   grey images, sigma 25) and ``--colour-images`` (the same recipe, three channels), each
   way: PSNR, steps and seconds. The two ways compute the same
   functions, so their PSNRs differ only by float rounding along the run.

    python benchmarks/bench_members_cpu.py                         # steps only
    python benchmarks/bench_members_cpu.py --images sample,moon --json out.json
    python benchmarks/bench_members_cpu.py --steps 0 --colour-images astronaut
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
import napari_dip.core.engine as engine
from napari_dip.core.config import make_config
from napari_dip.core.engine import psnr

from bench_cpu_target import test_image
from bench_speed import engine_step_time

WAYS = {"grouped": (), "separate": ("cpu",)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", default="", help="whole runs on these (comma-separated)")
    ap.add_argument("--colour-images", default="", help="whole runs on these, in colour")
    ap.add_argument("--steps", type=int, default=30,
                    help="steps timed per measurement (0: no timed runs)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    grey, _ = test_image("sample")
    colour, _ = test_image("astronaut", colour=True)
    mask = np.random.default_rng(0).random(grey.shape) < 0.5
    cases = {  # image, channel axis, mask
        "grey 256x256, denoise (R2R)": (grey, None, None),
        "colour 256x256, denoise (R2R)": (colour, -1, None),
        "grey 256x256, 50 % missing (hold-out)": (grey, None, mask),
    }
    steps_rows = []
    for name, (image, axis, holes) in (cases.items() if args.steps > 0 else ()):
        cfg = make_config("dip", "balanced", masked=holes is not None)
        found = {w: [] for w in WAYS}
        for rep in range(args.repeats):
            for way, devices in list(WAYS.items())[::1 if rep % 2 == 0 else -1]:
                engine.SEPARATE_MEMBERS = devices
                ms, _, _ = engine_step_time(image, torch.device("cpu"), cfg, args.steps, axis,
                                            mask=holes)
                found[way].append(ms)
        row = dict(case=name, **{w: float(np.median(v)) for w, v in found.items()},
                   all={w: v for w, v in found.items()})
        steps_rows.append(row)
        print(json.dumps(row), flush=True)

    run_rows = []
    names = [(n, False) for n in args.images.split(",") if n]
    names += [(n, True) for n in args.colour_images.split(",") if n]
    for image_name, colour in names:
        noisy, clean = test_image(image_name, colour=colour)
        row = dict(image=image_name + (" (colour)" if colour else ""))
        for way, devices in WAYS.items():
            engine.SEPARATE_MEMBERS = devices
            t = time.perf_counter()
            res = napari_dip.restore(noisy, preset="balanced", seed=0, device="cpu",
                                     channel_axis=-1 if colour else None)
            row[way] = dict(psnr=psnr(res.image, clean), steps=res.steps,
                            seconds=time.perf_counter() - t)
        run_rows.append(row)
        print(json.dumps(row), flush=True)
    engine.SEPARATE_MEMBERS = WAYS["separate"]

    print(f"\nbalanced preset (four members), {platform.processor() or platform.machine()}, "
          f"{args.threads} CPU threads, torch {torch.__version__}")
    if steps_rows:
        print(f"{'case':40s} {'grouped ms':>10s} {'separate ms':>11s} {'speed-up':>8s}")
    for r in steps_rows:
        print(f"{r['case']:40s} {r['grouped']:10.0f} {r['separate']:11.0f} "
              f"{r['grouped'] / r['separate']:7.2f}x")
    if run_rows:
        print(f"\n{'image':18s} {'grouped dB':>10s} {'s':>6s} {'steps':>5s} | "
              f"{'separate dB':>11s} {'s':>6s} {'steps':>5s}")
        for r in run_rows:
            g, s = r["grouped"], r["separate"]
            print(f"{r['image']:18s} {g['psnr']:10.2f} {g['seconds']:6.1f} {g['steps']:5d} | "
                  f"{s['psnr']:11.2f} {s['seconds']:6.1f} {s['steps']:5d}")
        mean = {w: (np.mean([r[w]["psnr"] for r in run_rows]),
                    np.mean([r[w]["seconds"] for r in run_rows])) for w in WAYS}
        print(f"{'mean':18s} {mean['grouped'][0]:10.2f} {mean['grouped'][1]:6.1f} {'':5s} | "
              f"{mean['separate'][0]:11.2f} {mean['separate'][1]:6.1f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(dict(args=vars(args), torch=torch.__version__, steps=steps_rows,
                           runs=run_rows), fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
