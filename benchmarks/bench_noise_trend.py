"""What SURE's noise check reads on Gaussian and on photon-counting images.

``napari_dip.core.arrays.noise_trend``: the noise variance of the brighter half of an
image's 2x2 blocks over that of the darker half (clipped blocks left out). The presets run
R2R or SURE on the raw values only below ``sure_max_trend`` (1.5); above it the default
``noise_model="auto"`` stabilises the image first. Prints the reading for:

- the CPU time-budget images (``bench_cpu_target.py``: uint8, clipped noise; its ten
  grey images and nine of other kinds that nothing was tuned on) and the quality
  benchmark's images (``bench_quality.py``: float, unclipped), sigma 15/25/50;
- the microscopy benchmark's images (``bench_microscopy.py``) at several photon counts,
  raw and after the generalized Anscombe transformation.

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


# images of other kinds (a dark sky, a binary silhouette, a logo, a phantom, ...)
OTHER_KINDS = ("camera", "hubble_deep_field", "retina", "horse", "logo", "colorwheel", "cell",
               "immunohistochemistry", "shepp_logan_phantom")


def reading(img, channel_axis=None) -> float:
    prep = arrays.prepare(np.asarray(img, np.float32), channel_axis=channel_axis)
    return arrays.noise_trend(prep.data)


def main():
    limit = SURE_OVERRIDES["fast"]["sure_max_trend"]
    rows = []
    for sigma in (15, 25, 50):
        for name in ("sample", "moon", "coins", "astronaut", "coffee", "chelsea", "brick",
                     "grass", "gravel", "clock", *OTHER_KINDS):
            rows.append(("gaussian", f"{name} uint8 s{sigma}",
                         reading(test_image(name, sigma=sigma)[0])))
        for name in DEFAULT_IMAGES[:8]:
            clean = load_image(name, 256)
            rows.append(("gaussian", f"{name} float s{sigma}",
                         reading(add_noise(clean, sigma / 255), -1 if clean.ndim == 3 else None)))
    for name in bm.IMAGES:
        clean = bm.load_clean(name, 96)
        for peak in (10, 30, 100, 1000):
            y = bm.observe(clean, peak, 2.0, 3.0, 100.0)
            rows.append(("counts, raw", f"{name} peak {peak}", reading(y)))
            rows.append(("counts, GAT", f"{name} peak {peak}",
                         reading(stabilise(y, "poisson-gaussian", offset=100.0)[0])))
    print(f"{'noise':12s} {'image':24s} {'trend':>6s}  (* above {limit:g}: R2R stabilises "
          f"the image first, SURE falls back to the papers' loss)")
    for kind, name, value in rows:
        print(f"{kind:12s} {name:24s} {value:6.2f}{'  *' if value > limit else ''}")
    print("\nrange per kind")
    for kind in dict.fromkeys(k for k, _, _ in rows):
        v = [x for k, _, x in rows if k == kind]
        over = sum(x > limit for x in v)
        print(f"{kind:12s} {min(v):.2f}-{max(v):.2f}  above {limit:g}: {over} of {len(v)}")


if __name__ == "__main__":
    main()
