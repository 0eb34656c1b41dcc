"""Correctness of the CUDA code paths against each other and against the CPU.

Checks: the CUDA graph gives the same run as eager steps (same seed); bfloat16 stays close
to float32; the result on CUDA is as good as on the CPU; SGLD's variance is finite.
"""

import time

import numpy as np
import torch

import napari_dip
from napari_dip.core.engine import psnr


def main():
    from skimage import data

    clean = data.camera()[128:256, 128:256].astype(np.float32) / 255
    noisy = clean + np.random.default_rng(0).normal(0, 25 / 255, clean.shape).astype(np.float32)
    kw = dict(preset="fast", steps=300, seed=0, reference=clean, auto_stop=False)
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
    # the newer paths: channels-last, ensembles, tiles
    for name, extra in [("channels-last graph", dict(channels_last=True)),
                        ("bf16 channels-last", dict(channels_last=True, precision="bfloat16")),
                        ("2 members graph", dict(members=2)),
                        ("2 members eager", dict(members=2, capture=False)),
                        ("tiles of 64, graph", dict(tile_size=64, tile_overlap=16))]:
        t = time.perf_counter()
        try:
            r = napari_dip.restore(noisy, device="cuda", **kw, **extra)
        except Exception as exc:  # report and go on
            print(f"{name:20s} FAILED: {type(exc).__name__}: {exc}")
            continue
        print(f"{name:20s} psnr {r.psnr:6.2f} dB ({r.psnr - g.psnr:+.2f} vs fp32 graph)  "
              f"{time.perf_counter() - t:6.2f} s  notes {r.info.notes}")
    try:
        s = napari_dip.restore(noisy, method="sgld", preset="fast", seed=0, device="cuda",
                               steps=400, reference=clean, members=4)
        print(f"sgld 4 chains: psnr {s.psnr:.2f}, samples kept, mean std "
              f"{np.sqrt(s.variance).mean():.4f}, notes {s.info.notes}")
    except Exception as exc:  # noqa: BLE001
        print(f"sgld 4 chains FAILED: {type(exc).__name__}: {exc}")


if __name__ == "__main__":
    main()
