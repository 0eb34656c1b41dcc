"""Why ``compile=True`` is not used on the CPU: one Adam step of a net run as it is against
the same net compiled by TorchInductor (C++ code), in one process on the same input.

    python benchmarks/bench_compile_cpu.py --size 256 --preset fast --threads 2

Prints the first step's seconds (the compiling) and the median ms per step afterwards.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from napari_dip.core.config import make_config
from napari_dip.core.nets import SkipNet


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = make_config("dip", args.preset)
    torch.manual_seed(0)
    net = SkipNet(cfg, 1)
    z = torch.rand(1, cfg.input_channels, args.size, args.size) * cfg.input_scale
    target = torch.rand(1, 1, args.size, args.size)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)

    def step(fn):
        opt.zero_grad(set_to_none=True)
        loss = (fn(z) - target).square().mean()
        loss.backward()
        opt.step()

    rows = []
    for name, fn in [("as it is", net),
                     ("inductor", torch.compile(net, fullgraph=True, dynamic=False))]:
        t = time.perf_counter()
        step(fn)
        first = time.perf_counter() - t
        times = []
        for _ in range(args.steps + 2):
            t = time.perf_counter()
            step(fn)
            times.append(time.perf_counter() - t)
        rows.append((name, first, 1000 * float(np.median(times[2:]))))
        print(rows[-1], flush=True)
    print(f"\n{args.preset} preset, {args.size}x{args.size} grey, {args.threads} threads, "
          f"torch {torch.__version__}")
    print(f"{'net':10s} {'first step (s)':>15s} {'ms/step':>9s} {'x as it is':>11s}")
    for name, first, ms in rows:
        print(f"{name:10s} {first:15.1f} {ms:9.1f} {rows[0][2] / ms:11.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
