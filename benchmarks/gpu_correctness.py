"""Correctness of the CUDA code paths against each other and against the CPU.

Checks: the CUDA graph gives the same run as eager steps (same seed); bfloat16 stays close
to float32; the result on CUDA is as good as on the CPU; SGLD's variance is finite; the
newer paths (``--paths``, e.g. ``sure,sure-eager``) against the float32 graph.
"""

import argparse
import time

import numpy as np
import torch

import napari_dip
from napari_dip.core.engine import psnr


NEWER_PATHS = {
    "compiled": dict(compile=True),
    "compiled-bf16": dict(compile=True, precision="bfloat16"),
    "channels-last": dict(channels_last=True),
    "bf16-channels-last": dict(channels_last=True, precision="bfloat16"),
    "2-members": dict(members=2),
    "2-members-eager": dict(members=2, capture=False),
    "tiles-64": dict(tile_size=64, tile_overlap=16),
    "sgld-4-chains": None,
    # the SURE loss (the fast preset's settings for it: another net, lr and step count);
    # compare the two with each other, and their PSNR with the squared error's
    "sure": dict(loss="sure"),
    "sure-eager": dict(loss="sure", capture=False),
}


def main(argv=None):
    from skimage import data

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--paths", default=",".join(NEWER_PATHS),
                    help="newer paths to compare with the float32 CUDA graph: "
                         + ", ".join(NEWER_PATHS))
    args = ap.parse_args(argv)
    wanted = [p for p in args.paths.split(",") if p]
    unknown = set(wanted) - set(NEWER_PATHS)
    if unknown:
        ap.error(f"--paths: unknown {sorted(unknown)}; known: {', '.join(NEWER_PATHS)}")

    clean = data.camera()[128:256, 128:256].astype(np.float32) / 255
    noisy = clean + np.random.default_rng(0).normal(0, 25 / 255, clean.shape).astype(np.float32)
    # the papers' loss (the fast preset would denoise this image with SURE)
    kw = dict(preset="fast", loss="mse", steps=300, seed=0, reference=clean, auto_stop=False)
    out = {}
    for name, extra in [("cpu", dict(device="cpu")),
                        ("cuda eager", dict(device="cuda", capture=False)),
                        ("cuda graph", dict(device="cuda", capture=True)),
                        ("cuda graph bf16", dict(device="cuda", precision="bfloat16"))]:
        t = time.perf_counter()
        try:
            r = napari_dip.restore(noisy, **kw, **extra)
        except Exception as exc:  # report and go on with the other paths
            print(f"{name:16s} FAILED: {type(exc).__name__}: {exc}")
            continue
        out[name] = r
        print(f"{name:16s} psnr {r.psnr:6.2f} dB  {time.perf_counter() - t:6.2f} s  "
              f"notes {r.info.notes}  final loss {r.losses[-1]:.5f}")
    if not {"cuda eager", "cuda graph", "cuda graph bf16", "cpu"} <= set(out):
        print("some paths failed; skipping comparisons")
        return
    e, g = out["cuda eager"], out["cuda graph"]
    diff = np.abs(e.image.astype(float) - g.image.astype(float)).max()
    print(f"graph vs eager: max |diff| {diff:.4g}, loss curves max rel diff "
          f"{np.max(np.abs(e.losses - g.losses) / e.losses):.3g}")
    print(f"bf16 - fp32 psnr: {out['cuda graph bf16'].psnr - g.psnr:+.3f} dB; "
          f"cuda - cpu psnr: {g.psnr - out['cpu'].psnr:+.3f} dB")
    s = napari_dip.restore(noisy, method="sgld", preset="fast", seed=0, device="cuda",
                           steps=400, reference=clean)
    print(f"sgld cuda: psnr {s.psnr:.2f}, variance finite {np.isfinite(s.variance).all()}, "
          f"mean std {np.sqrt(s.variance).mean():.4f}, notes {s.info.notes}")
    a = napari_dip.restore(noisy, device="cuda", seed=3, steps=60, preset="fast")
    b = napari_dip.restore(noisy, device="cuda", seed=3, steps=60, preset="fast")
    print("cuda same seed identical:", np.array_equal(a.image, b.image))
    print("peak memory GiB", torch.cuda.max_memory_allocated() / 2**30)
    # the newer paths against the float32 CUDA graph
    newer = {}
    for name in wanted:
        extra = NEWER_PATHS[name]
        t = time.perf_counter()
        try:
            if extra is None:  # four pooled SGLD chains
                r = napari_dip.restore(noisy, method="sgld", preset="fast", seed=0,
                                       device="cuda", steps=400, reference=clean, members=4)
                print(f"sgld 4 chains: psnr {r.psnr:.2f} (1 chain {s.psnr:.2f}), mean std "
                      f"{np.sqrt(r.variance).mean():.4f}, notes {r.info.notes}")
                continue
            r = napari_dip.restore(noisy, device="cuda", **{**kw, **extra})
        except Exception as exc:  # noqa: BLE001 - report and go on
            print(f"{name:20s} FAILED: {type(exc).__name__}: {exc}")
            continue
        newer[name] = r
        same = np.abs(r.image.astype(float) - g.image.astype(float)).max()
        print(f"{name:20s} psnr {r.psnr:6.2f} dB ({r.psnr - g.psnr:+.2f} vs fp32 graph)  "
              f"{time.perf_counter() - t:6.2f} s  max |diff| {same:.3g}  first loss rel diff "
              f"{abs(r.losses[0] - g.losses[0]) / g.losses[0]:.2g}  notes {r.info.notes}")
    if {"sure", "sure-eager"} <= set(newer):  # the SURE step captured against eager steps
        a, b = newer["sure"], newer["sure-eager"]
        print(f"sure graph vs eager: psnr {a.psnr - b.psnr:+.3f} dB, max |diff| "
              f"{np.abs(a.image.astype(float) - b.image.astype(float)).max():.3g}, first loss "
              f"rel diff {abs(a.losses[0] - b.losses[0]) / abs(b.losses[0]):.2g}, loss curves "
              f"median rel diff {np.median(np.abs(a.losses - b.losses) / np.abs(b.losses)):.3g}")


if __name__ == "__main__":
    main()
