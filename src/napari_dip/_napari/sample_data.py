"""Sample data for File > Open Sample > Deep Image Prior.

Each function returns napari layer-data tuples ``(data, kwargs, layer_type)``; nothing is
downloaded (see :mod:`napari_dip.samples`).
"""

from __future__ import annotations

from typing import Any

from .. import samples

LayerDataTuple = tuple[Any, dict[str, Any], str]


def noisy_image() -> list[LayerDataTuple]:
    """The camera image (256 x 256, uint8) with Gaussian noise of sigma 25."""
    noisy, _clean = samples.noisy_camera()
    return [(noisy, {"name": "noisy camera", "contrast_limits": (0, 255)}, "image")]


def inpainting() -> list[LayerDataTuple]:
    """The camera image with scratches and a block missing, and a labels layer that marks
    the missing pixels (label 1), ready to be used as the mask."""
    image, mask = samples.inpainting_example()
    return [
        (image, {"name": "damaged camera", "contrast_limits": (0, 255)}, "image"),
        (mask, {"name": "missing pixels", "opacity": 0.5}, "labels"),
    ]


def noisy_volume() -> list[LayerDataTuple]:
    """A generated 3-D volume (32 x 64 x 64, float32) of blobs with Gaussian noise."""
    noisy, _clean = samples.noisy_volume()
    return [(noisy, {"name": "noisy volume", "colormap": "gray"}, "image")]


def photon_counts() -> list[LayerDataTuple]:
    """Stained nuclei as a camera counts them (256 x 256, uint16): about 30 photons at the
    brightest pixel, so the noise grows with the signal; the fast and balanced presets
    stabilise it before they denoise."""
    counts, _clean = samples.photon_nuclei()
    return [(counts, {"name": "photon counts (nuclei)", "colormap": "gray"}, "image")]
