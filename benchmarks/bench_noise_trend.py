"""What the noise check reads on Gaussian and on photon-counting images.

``napari_dip.core.arrays.noise_trend`` ("check") is the smaller of two readings, so that
both must see the noise variance grow with the signal: the "half split" (the variance of
the finest diagonal differences in the brighter half of an image's 2x2 blocks over that
in the darker half) and the "tenth" (the variance of a high-pass residual, the product of
second differences along both axes, at the brightest tenth of the pixels over that in
the darker half; no reading where fewer than 64 bright pixels are left). Clipped blocks
are left out of both. The presets run R2R or SURE on the raw values only below
``sure_max_trend`` (1.5); above it the default ``noise_model="auto"`` stabilises the image
first. Until 2026-11-28 the check was the half split alone. Prints all three for:

- Gaussian noise on the CPU time-budget images (``bench_cpu_target.py``: uint8, clipped;
  its ten grey images and nine of other kinds) and the quality benchmark's images
  (``bench_quality.py``: float, unclipped), sigma 5/15/25/50, at 256x256;
- the same uint8 images in 128x128 and 64x64 crops (three per image: two corners and
  the centre), where little of an image is left to tell noise from structure;
- Gaussian noise on the microscopy benchmark's images (``bench_microscopy.py``: cell,
  ihc, hubble, blobs at 256x256; 100 + 1000 x, noise std 1 %, 3 % and 10 % of the
  range): the structures of photon-counting images without their shot noise;
- photon counts on those images (96x96 and 256x256 crops) at 3-100 photons, raw and
  after the generalized Anscombe transformation.

    python benchmarks/bench_noise_trend.py
"""

from __future__ import annotations

import numpy as np

import bench_microscopy as bm
from bench_cpu_target import test_image
from bench_quality import DEFAULT_IMAGES, add_noise, load_image
from napari_dip.core import arrays
from napari_dip.core.config import SURE_OVERRIDES
from napari_dip.core.noise import stabilise

CPU_IMAGES = ("sample", "moon", "coins", "astronaut", "coffee", "chelsea", "brick", "grass",
              "gravel", "clock")
# images of other kinds (a dark sky, a binary silhouette, a logo, a phantom, ...)
OTHER_KINDS = ("camera", "hubble_deep_field", "retina", "horse", "logo", "colorwheel", "cell",
               "immunohistochemistry", "shepp_logan_phantom")


def half_split(data: np.ndarray) -> float:
    """The first reading alone (the check until 2026-11-28)."""
    d, m = arrays._unclipped_blocks(data)
    if d.size < 64:
        return 1.0
    bright = m > np.median(m)
    dark_var = arrays._mad_variance(d[~bright])
    if not bright.any() or dark_var <= 0:
        return 1.0
    return arrays._mad_variance(d[bright]) / dark_var


def reading(img, channel_axis=None) -> tuple[float, float, float]:
    """(check, tenth, half split) of an image; the tenth is 1.0 where it gives none."""
    prep = arrays.prepare(np.asarray(img, np.float32), channel_axis=channel_axis)
    tenth = arrays._trend_tenth(prep.data, None)
    return arrays.noise_trend(prep.data), 1.0 if tenth is None else tenth, half_split(prep.data)


def main():
    limit = SURE_OVERRIDES["fast"]["sure_max_trend"]
    rows = []
    for sigma in (5, 15, 25, 50):
        for name in (*CPU_IMAGES, *OTHER_KINDS):
            rows.append(("gaussian 256", f"{name} uint8 s{sigma}",
                         reading(test_image(name, sigma=sigma)[0])))
        for name in DEFAULT_IMAGES[:8]:
            clean = load_image(name, 256)
            rows.append(("gaussian 256", f"{name} float s{sigma}",
                         reading(add_noise(clean, sigma / 255), -1 if clean.ndim == 3 else None)))
    for size in (128, 64):
        for sigma in (5, 15, 25, 50):
            for name in (*CPU_IMAGES, *OTHER_KINDS):
                noisy = test_image(name, sigma=sigma)[0]
                corners = ((0, 0), (256 - size, 256 - size), ((256 - size) // 2,) * 2)
                for k, (r, c) in enumerate(corners):
                    rows.append((f"gaussian {size}", f"{name} uint8 s{sigma} crop {k}",
                                 reading(noisy[r:r + size, c:c + size])))
    rng = np.random.default_rng(3)
    for name in bm.KNOWN_IMAGES:
        clean = bm.load_clean(name, 256)
        for sd in (0.01, 0.03, 0.1):
            y = 100 + 1000 * (clean + rng.normal(0.0, sd, clean.shape))
            rows.append(("gaussian mic", f"{name} std {sd:g}", reading(y)))
    for size in (96, 256):
        for name in bm.KNOWN_IMAGES:
            clean = bm.load_clean(name, size)
            for peak in (3, 5, 10, 30, 100):
                y = bm.observe(clean, peak, 2.0, 3.0, 100.0)
                rows.append(("counts, raw", f"{name} {size} peak {peak}", reading(y)))
                rows.append(("counts, GAT", f"{name} {size} peak {peak}",
                             reading(stabilise(y, "poisson-gaussian", offset=100.0)[0])))
    print(f"{'noise':12s} {'image':30s} {'check':>6s} {'tenth':>6s} {'half':>6s}  (* check "
          f"above {limit:g}: R2R stabilises the image first, SURE falls back to the papers' "
          f"loss)")
    for kind, name, (value, tenth, half) in rows:
        print(f"{kind:12s} {name:30s} {value:6.2f} {tenth:6.2f} {half:6.2f}"
              f"{'  *' if value > limit else ''}")
    print(f"\nrange per kind, and how many read above {limit:g}")
    print(f"{'noise':12s} {'cases':>5s} {'check':>11s} {'above':>5s} {'tenth':>11s} {'above':>5s} "
          f"{'half split':>11s} {'above':>5s}")
    for kind in dict.fromkeys(k for k, _, _ in rows):
        v = np.array([x for k, _, x in rows if k == kind])
        cols = " ".join(f"{v[:, j].min():5.2f}-{v[:, j].max():<5.2f} {int((v[:, j] > limit).sum()):5d}"
                        for j in range(3))
        print(f"{kind:12s} {len(v):5d} {cols}")


if __name__ == "__main__":
    main()
