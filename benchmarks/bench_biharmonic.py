"""Biharmonic inpainting: scikit-image's sparse direct solve against the project's torch
solver (``napari_dip.core.fill.biharmonic``: conjugate gradients; on the CPU, images whose
holes stall them go to a sparse LU solve, "direct" in the table) on the same image and
mask, timed in the same run, with their agreement (largest absolute difference) and PSNR.

The gaps' blend of a hold-out inpainting (``gap_blend="biharmonic"``) solves this twice per
run; the torch solver runs on the run's device, handles volumes and a mask per channel.

Cases: grey images (``bench_quality.load_image``) at each size with 50 % and 80 % of the
pixels missing at random, the text mask and one wide hole (a disc a quarter of the image
across), all from ``bench_quality.make_masks`` where it has them (seed 0); a volume of
blobs (``samples.noisy_volume``'s clean volume) with 80 % missing, at each size given. The
sparse direct solve grows slow in 3-D (30 s for 16x64x64 and 145 s for 16x96x96 with 80 %
missing on two cores; 64 s for 1024x1024 with 80 % missing), so cases with more missing
pixels than ``--skip-scikit-above`` (images) or ``--skip-scikit-volume-above`` (volumes)
run the torch solver alone.

    python benchmarks/bench_biharmonic.py                     # 2 CPU cores: ~5 minutes
    python benchmarks/bench_biharmonic.py --sizes 512,1024 --device cuda
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_quality import load_image, make_masks, psnr  # noqa: E402


def disc_mask(shape, share: float = 0.25) -> np.ndarray:
    from skimage import draw

    mask = np.zeros(shape, bool)
    rr, cc = draw.disk((shape[0] // 2, shape[1] // 2), share * min(shape) / 2, shape=shape)
    mask[rr, cc] = True
    return mask


def cases(sizes, image_name, volumes):
    for size in sizes:
        img = load_image(image_name, size)
        if img.ndim == 3:
            img = img @ np.array([0.2125, 0.7154, 0.0721])
        masks = make_masks(img.shape)
        for name in ("random50", "random80", "text"):
            yield f"{size}x{size}", name, img, masks[name]
        yield f"{size}x{size}", "disc", img, disc_mask(img.shape)
    for shape in volumes:
        from napari_dip.samples import noisy_volume

        _, clean = noisy_volume(tuple(shape))
        clean = clean.astype(np.float64)
        rng = np.random.default_rng(0)
        yield "x".join(map(str, shape)), "random80", clean, rng.random(clean.shape) < 0.8


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="256,512,1024")
    p.add_argument("--image", default="camera")
    p.add_argument("--volumes", default="16,64,64;64,256,256",
                   help="depth,height,width of each volume case, ';' between; '' for none")
    p.add_argument("--device", default="cpu")
    p.add_argument("--skip-scikit-above", type=int, default=1 << 20,
                   help="leave scikit-image out for images with more missing pixels")
    p.add_argument("--skip-scikit-volume-above", type=int, default=1 << 16,
                   help="leave scikit-image out for volumes with more missing voxels")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    import torch
    from skimage.restoration import inpaint_biharmonic

    from napari_dip.core.fill import biharmonic

    if a.threads:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    name = torch.cuda.get_device_name(0) if dev.type == "cuda" else platform.processor()
    sizes = [int(s) for s in a.sizes.split(",") if s]
    volumes = [[int(s) for s in v.split(",")] for v in a.volumes.split(";") if v]
    print(f"# biharmonic inpainting: scikit-image (CPU, {torch.get_num_threads()} threads) "
          f"against fill.biharmonic on {a.device} ({name or 'cpu'}), float32, torch "
          f"{torch.__version__}")

    def sync():
        if dev.type == "cuda":
            torch.cuda.synchronize()

    if dev.type == "cuda":  # the first call pays for the kernels' start
        biharmonic(torch.rand(1, 1, 64, 64, device=dev),
                   torch.rand(1, 1, 64, 64, device=dev) > 0.5)
        sync()
    head = (f"{'shape':<12} {'mask':<9} {'missing':>8} {'skimage s':>9} {'torch s':>8} "
            f"{'speed-up':>8} {'iters':>5} {'solve':>6} {'max|diff|':>9} {'PSNR sk':>7} "
            f"{'PSNR ours':>9}")
    print(head)
    print("-" * len(head))
    rows = []
    for shape, mname, img, mask in cases(sizes, a.image, volumes):
        observed = np.where(mask, 0.0, img)
        missing = int(mask.sum())
        theirs, t_sk = None, float("nan")
        if missing <= (a.skip_scikit_above if img.ndim == 2 else a.skip_scikit_volume_above):
            t = time.perf_counter()
            theirs = inpaint_biharmonic(observed, mask)
            t_sk = time.perf_counter() - t
        values = torch.from_numpy(observed.astype(np.float32))[None, None].to(dev)
        known = torch.from_numpy(~mask)[None, None].to(dev)
        sync()
        t = time.perf_counter()
        out, info = biharmonic(values, known)
        sync()
        t_ours = time.perf_counter() - t
        ours = out[0, 0].double().cpu().numpy()
        row = dict(shape=shape, mask=mname, missing=missing, seconds_skimage=t_sk,
                   seconds_torch=t_ours, iterations=info["iterations"],
                   residual=info["residual"], direct=info["direct"],
                   psnr_ours=psnr(img, ours),
                   psnr_skimage=psnr(img, theirs) if theirs is not None else None,
                   max_diff=float(np.abs(ours - theirs).max()) if theirs is not None else None)
        rows.append(row)
        fmt = lambda v, f: format(v, f) if v is not None else format("-", ">" + f[0])  # noqa: E731
        print(f"{shape:<12} {mname:<9} {missing:>8} {t_sk:9.2f} {t_ours:8.2f} "
              f"{t_sk / t_ours:8.1f} {info['iterations']:>5} "
              f"{'direct' if info['direct'] else 'cg':>6} {fmt(row['max_diff'], '9.1e')} "
              f"{fmt(row['psnr_skimage'], '7.2f')} {row['psnr_ours']:9.2f}", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(dict(device=a.device, name=name,
                                                torch=torch.__version__, rows=rows),
                                           indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
