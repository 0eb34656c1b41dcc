"""Sample data made from images that scikit-image ships or from generated data.

Nothing is downloaded: the 2-D samples use scikit-image's bundled ``camera``, ``astronaut``
and ``immunohistochemistry`` images, the volume is generated procedurally.
"""

from __future__ import annotations

import numpy as np


def _camera(size: int) -> np.ndarray:
    from skimage import data, transform

    img = data.camera().astype(np.float32) / 255.0
    if size != img.shape[0]:
        img = transform.resize(img, (size, size), anti_aliasing=True).astype(np.float32)
    return img


def noisy_camera(size: int = 256, sigma: float = 25.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """scikit-image's camera (``size`` x ``size``) with Gaussian noise of ``sigma``/255.

    Returns ``(noisy, clean)``, both uint8 (the noisy one clipped to [0, 255]).
    """
    clean = _camera(size)
    rng = np.random.default_rng(seed)
    noisy = clean + rng.normal(0.0, sigma / 255.0, clean.shape)
    to8 = lambda a: np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8)  # noqa: E731
    return to8(noisy), to8(clean)


def inpainting_example(size: int = 256, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The camera image with scratches and a block missing.

    Returns ``(image, mask)``: uint8 image with the missing pixels set to 0, and a uint8
    label mask that is 1 on the missing pixels (as painted in a napari labels layer).
    """
    from skimage.draw import line, rectangle

    clean = np.clip(np.rint(_camera(size) * 255.0), 0, 255).astype(np.uint8)
    rng = np.random.default_rng(seed)
    mask = np.zeros(clean.shape, dtype=np.uint8)
    for _ in range(12):
        r0, c0, r1, c1 = rng.integers(0, size, 4)
        rr, cc = line(int(r0), int(c0), int(r1), int(c1))
        for d in (-1, 0, 1):
            mask[np.clip(rr + d, 0, size - 1), cc] = 1
    rr, cc = rectangle((size // 5, size // 2), extent=(size // 10, size // 10), shape=mask.shape)
    mask[rr, cc] = 1
    image = np.where(mask > 0, 0, clean).astype(np.uint8)
    return image, mask


def noisy_volume(shape: tuple[int, int, int] = (32, 64, 64), sigma: float = 0.1, seed: int = 0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """A generated 3-D volume of smooth blobs (like stained nuclei) with Gaussian noise.

    Returns ``(noisy, clean)`` as float32 in about [0, 1].
    """
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    clean = np.zeros(shape, dtype=np.float32)
    zz, yy, xx = np.indices(shape, dtype=np.float32)
    for _ in range(max(4, int(np.prod(shape) / 6000))):
        c = rng.uniform(0, 1, 3) * np.array(shape)
        r = rng.uniform(3, 8, 3)
        blob = ((zz - c[0]) / r[0]) ** 2 + ((yy - c[1]) / r[1]) ** 2 + ((xx - c[2]) / r[2]) ** 2
        clean = np.maximum(clean, (blob <= 1).astype(np.float32) * rng.uniform(0.4, 1.0))
    clean = ndimage.gaussian_filter(clean, 1.0).astype(np.float32)
    noisy = (clean + rng.normal(0, sigma, shape)).astype(np.float32)
    return noisy, clean


def photon_nuclei(size: int = 256, peak: float = 30.0, gain: float = 2.0,
                  read_noise: float = 3.0, offset: float = 100.0, seed: int = 0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Stained nuclei as a camera would count them, like a fluorescence image: the
    haematoxylin channel of scikit-image's ``immunohistochemistry`` (``rgb2hed``; the
    centre ``size`` x ``size``, scaled to [0, 1]) with ``peak`` photons at the brightest
    pixel, ``gain`` camera units per photon, Gaussian read noise of ``read_noise`` units
    and a camera offset of ``offset`` units, rounded like a 16-bit camera.

    Returns ``(counts, clean)``: uint16 counts and the float32 expectation
    ``offset + gain * peak * x`` without noise, in the same units.
    """
    from skimage import color, data

    stain = np.maximum(color.rgb2hed(data.immunohistochemistry())[..., 0], 0.0)
    r0, c0 = (stain.shape[0] - size) // 2, (stain.shape[1] - size) // 2
    if min(r0, c0) < 0:
        raise ValueError(f"size: expected at most {min(stain.shape)}, got {size}")
    crop = stain[r0:r0 + size, c0:c0 + size]
    x = (crop - crop.min()) / (crop.max() - crop.min())
    rng = np.random.default_rng(seed)
    raw = offset + gain * rng.poisson(peak * x) + rng.normal(0.0, read_noise, x.shape)
    counts = np.clip(np.rint(raw), 0, 65535).astype(np.uint16)
    return counts, (offset + gain * peak * x).astype(np.float32)
