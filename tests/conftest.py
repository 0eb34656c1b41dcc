import numpy as np
import pytest
import torch

# Tiny nets keep the suite fast on two CPU cores.
TINY = dict(width=8, scales=2, skip_channels=2, input_channels=8, snapshot_every=5)


@pytest.fixture(autouse=True)
def _limit_threads():
    torch.set_num_threads(2)
    yield


@pytest.fixture
def tiny():
    return dict(TINY)


@pytest.fixture
def camera_crop():
    from skimage import data

    img = data.camera()[180:244, 200:264].astype(np.float32) / 255.0
    return img


@pytest.fixture
def noisy_crop(camera_crop):
    """camera_crop with Gaussian noise of sigma 25/255 (seed 0), not clipped."""
    noisy = camera_crop + np.random.default_rng(0).normal(0, 25 / 255, camera_crop.shape)
    return noisy.astype(np.float32)
