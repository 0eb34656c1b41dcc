"""What the noise check reads on Gaussian and on photon-counting images.

``napari_dip.core.arrays.noise_trend`` ("half split"): the variance of the finest diagonal
differences in the brighter half of an image's 2x2 blocks over that in the darker half
(clipped blocks left out). The presets run R2R or SURE on the raw values only below
``sure_max_trend`` (1.5); above it the default ``noise_model="auto"`` stabilises the image
first. Beside it, in the same run, a more sensitive check that was tried and not adopted
("tenth"): the noise variance of the brightest tenth of the pixels over that of the
darker half, read from the high-pass residual of the noise-curve estimate (the product of
second differences along both axes; clipped pixels and their 3x3 support left out;
1.0 where fewer than 256 bright pixels are left); the smaller of the two ("both";
the tenth with at least 64 bright pixels, 1.0 without); and the half split of
integer-valued data dithered by uniform noise one count wide ("dithered"), whose median
absolute deviation is then not quantised. Prints all four for:

- Gaussian noise on the CPU time-budget images (``bench_cpu_target.py``: uint8, clipped;
  its ten grey images and nine of other kinds) and the quality benchmark's images
  (``bench_quality.py``: float, unclipped), sigma 5/15/25/50, at 256x256;
- the same uint8 images in 128x128 and 64x64 crops (three per image: two corners and
  the centre), where little of an image is left to tell noise from structure;
- Gaussian noise on the microscopy benchmark's images (``bench_microscopy.py``: cell,
  ihc, hubble, blobs at 256x256; 100 + 1000 x, noise std 1 %, 3 % and 10 % of the
  range): the structures of photon-counting images without their shot noise;
- photon counts on those images (96x96 and 256x256 crops) at 3-100 photons, raw and
  after the generalized Anscombe transformation;
- pure photon counts (integers, no offset, no read noise, as a photon-counting detector
  gives them) on those images at 128x128 and 256x256, 5-100 photons.

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


def _highpass_details(data: np.ndarray, known, *, clipped: bool = False):
    """A unit-norm high-pass residual of a ``(C, *spatial)`` image (second differences
    ``[1, -2, 1] / sqrt(6)`` along every spatial axis) at every pixel whose 3x3 support
    lies inside, and the mean over that support, flattened, without pixels whose support
    holds a missing pixel or (``clipped``) one at the known values' minimum or maximum."""
    d = data.astype(np.float64)
    m = d
    bad = arrays.left_out(d, known, clipped=clipped)
    for axis in range(1, d.ndim):
        n = d.shape[axis]
        if n < 3:
            continue
        lo, mid, hi = range(0, n - 2), range(1, n - 1), range(2, n)
        d = (np.take(d, lo, axis=axis) - 2.0 * np.take(d, mid, axis=axis)
             + np.take(d, hi, axis=axis)) / np.sqrt(6.0)
        m = (np.take(m, lo, axis=axis) + np.take(m, mid, axis=axis)
             + np.take(m, hi, axis=axis)) / 3.0
        bad = (np.take(bad, lo, axis=axis) | np.take(bad, mid, axis=axis)
               | np.take(bad, hi, axis=axis))
    return d[~bad], m[~bad]


def tenth(data: np.ndarray, share: float = 0.1, least: int = 256) -> float:
    """The check that was tried: the brightest ``share`` of the pixels against the darker
    half, on the high-pass residual; 1.0 with fewer than ``least`` bright pixels."""
    d, m = arrays._unclipped_blocks(data, details=_highpass_details)
    if d.size < least:
        return 1.0
    dark = m <= np.median(m)
    bright = m > np.quantile(m, 1.0 - share)
    if bright.sum() < least:
        return 1.0
    dark_var = arrays._mad_variance(d[dark])
    return arrays._mad_variance(d[bright]) / dark_var if dark_var > 0 else 1.0


def both(data: np.ndarray, half: float) -> float:
    """The other check that was tried: the smaller of the half split and the tenth (with
    at least 64 bright pixels; 1.0 where the tenth has no reading)."""
    d, m = arrays._unclipped_blocks(data, details=_highpass_details)
    bright = m > np.quantile(m, 0.9) if d.size else np.zeros(0, bool)
    if bright.sum() < 64:
        return 1.0
    return min(half, tenth(data, least=64))


def dithered(img) -> np.ndarray:
    """Integer-valued data plus uniform noise of one count's width (seed 0) away from
    their minimum and maximum, so that the median absolute deviation is not quantised;
    other data as they are."""
    img = np.asarray(img, np.float64)
    if not np.array_equal(img, np.round(img)):
        return img
    # the values at the extremes stay, so that clipped pixels are still found there
    inner = (img > img.min()) & (img < img.max())
    return img + inner * np.random.default_rng(0).uniform(-0.5, 0.5, img.shape)


def reading(img, channel_axis=None) -> tuple[float, float, float, float]:
    """(tenth, half split, both, half split of the dithered data) of an image."""
    prep = arrays.prepare(np.asarray(img, np.float32), channel_axis=channel_axis)
    half = arrays.noise_trend(prep.data)
    dith = arrays.prepare(dithered(img).astype(np.float32), channel_axis=channel_axis)
    return tenth(prep.data), half, both(prep.data, half), arrays.noise_trend(dith.data)


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
    # photon counts as a photon-counting detector gives them: integers, no offset, no
    # read noise
    for size in (128, 256):
        for name in bm.KNOWN_IMAGES:
            clean = bm.load_clean(name, size)
            for peak in (5, 10, 30, 100):
                y = np.random.default_rng(0).poisson(clean * peak).astype(np.float64)
                rows.append(("counts, pure", f"{name} {size} peak {peak}", reading(y)))
    print(f"{'noise':12s} {'image':30s} {'tenth':>6s} {'half':>6s} {'both':>6s} {'dith':>6s}  "
          f"(* half split, the check, above {limit:g}: R2R stabilises the image first, SURE "
          f"falls back to the papers' loss; 'tenth', 'both' and 'dith' (the half split of "
          f"integer data dithered by one count): checks that were tried)")
    for kind, name, (value, old, two, dith) in rows:
        print(f"{kind:12s} {name:30s} {value:6.2f} {old:6.2f} {two:6.2f} {dith:6.2f}"
              f"{'  *' if old > limit else ''}")
    print(f"\nrange per kind, and how many read above {limit:g}")
    print(f"{'noise':12s} {'cases':>5s} {'tenth':>11s} {'above':>5s} {'half split':>11s} "
          f"{'above':>5s} {'both':>11s} {'above':>5s} {'dithered':>11s} {'above':>5s}")
    for kind in dict.fromkeys(k for k, _, _ in rows):
        v = np.array([x for k, _, x in rows if k == kind])
        cols = " ".join(f"{v[:, j].min():5.2f}-{v[:, j].max():<5.2f} "
                        f"{int((v[:, j] > limit).sum()):5d}" for j in range(4))
        print(f"{kind:12s} {len(v):5d} {cols}")


if __name__ == "__main__":
    main()
