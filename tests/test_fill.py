"""The biharmonic interpolation on torch (fill.biharmonic) against scikit-image's sparse
direct solve of the same model, on scattered gaps, wide holes, volumes and channels."""

import numpy as np
import pytest
import torch
from skimage import data, draw
from skimage.restoration import inpaint_biharmonic

from napari_dip.core import fill
from napari_dip.core.fill import biharmonic


@pytest.fixture(scope="module")
def camera():
    return data.camera()[96:224, 160:288].astype(np.float64) / 255.0


def _solve(image, missing, **kw):
    out, info = biharmonic(torch.from_numpy(image).float()[None, None],
                           torch.from_numpy(~missing)[None, None], **kw)
    return out[0, 0].double().numpy(), info


def test_scattered_gaps_match_scikit_image(camera):
    missing = np.random.default_rng(0).random(camera.shape) < 0.7
    ours, info = _solve(camera, missing)
    theirs = inpaint_biharmonic(camera, missing)
    assert info["residual"] <= 1e-6 and 0 < info["iterations"] <= fill.PLAIN_ITERATIONS
    assert not info["direct"]  # the plain iterations converge on scattered gaps
    assert np.array_equal(ours[~missing], camera[~missing].astype(np.float32))
    assert np.abs(ours - theirs).max() < 2e-4


@pytest.fixture(scope="module")
def wide_hole(camera):
    missing = np.zeros(camera.shape, bool)
    rr, cc = draw.disk((64, 64), 36)
    missing[rr, cc] = True
    return missing, inpaint_biharmonic(camera, missing)


def test_a_wide_hole_goes_to_the_direct_solve_on_the_cpu(camera, wide_hole):
    missing, theirs = wide_hole
    ours, info = _solve(camera, missing)
    assert info["direct"] and info["iterations"] == fill.PLAIN_FIRST
    assert np.abs(ours - theirs).max() < 1e-5


def test_a_wide_hole_needs_the_preconditioned_solve_elsewhere(camera, wide_hole,
                                                              monkeypatch):
    # as on a GPU (or above the direct solve's size): the preconditioned iterations
    monkeypatch.setattr(fill, "DIRECT_MAX_MISSING", 0)
    missing, theirs = wide_hole
    ours, info = _solve(camera, missing)
    assert not info["direct"] and info["residual"] <= 1e-6
    assert info["iterations"] > fill.PLAIN_FIRST
    assert np.abs(ours - theirs).max() < 1e-3
    # plain iterations alone stop far from it (why the preconditioner is there)
    plain, _ = _solve(camera, missing, max_iter=fill.PLAIN_FIRST)
    assert np.abs(plain - theirs).max() > 10 * np.abs(ours - theirs).max()


def test_a_volume_matches_scikit_image(camera):
    vol = np.stack([camera[:40, :40], camera[5:45, :40], camera[10:50, 3:43],
                    camera[20:60, 6:46]])
    missing = np.random.default_rng(1).random(vol.shape) < 0.5
    out, info = biharmonic(torch.from_numpy(vol)[None, None],
                           torch.from_numpy(~missing)[None, None])
    assert out.dtype == torch.float64 and info["residual"] <= 1e-6
    assert np.abs(out[0, 0].numpy() - inpaint_biharmonic(vol, missing)).max() < 1e-5


def test_each_channel_uses_its_own_known_pixels(camera):
    rgb = np.stack([camera, camera[::-1], camera.T]).astype(np.float32)
    rng = np.random.default_rng(2)
    missing = rng.random(rgb.shape) < 0.5
    missing[2] = True  # a channel with nothing known comes back as 0
    out, _ = biharmonic(torch.from_numpy(rgb)[None], torch.from_numpy(~missing)[None])
    for c in range(2):
        alone, _ = _solve(rgb[c].astype(np.float64), missing[c])
        assert np.abs(out[0, c].numpy() - alone).max() < 1e-4
    assert not out[0, 2].any()


def test_nothing_missing_and_bad_shapes():
    values = torch.rand(1, 1, 8, 8)
    out, info = biharmonic(values, torch.ones(1, 1, 8, 8, dtype=torch.bool))
    assert torch.equal(out, values) and info["iterations"] == 0
    with pytest.raises(ValueError, match=r"values: expected \(B, C, H, W\)"):
        biharmonic(torch.rand(8, 8), torch.ones(8, 8, dtype=torch.bool))


@pytest.mark.parametrize("ndim", [2, 3])
def test_gap_depth_is_the_chessboard_distance_to_a_known_pixel(ndim):
    from scipy.ndimage import distance_transform_cdt

    rng = np.random.default_rng(5)
    shape = (24, 30) if ndim == 2 else (8, 12, 14)
    missing = rng.random(shape) < 0.6
    missing[tuple(slice(2, 9) for _ in range(ndim))] = True  # a deep hole
    depth = fill.gap_depth(torch.from_numpy(~missing)[None])[0].numpy()
    expected = distance_transform_cdt(missing, metric="chessboard")
    np.testing.assert_array_equal(depth, expected)
    assert depth.max() >= 4
    capped = fill.gap_depth(torch.from_numpy(~missing)[None], limit=2)[0].numpy()
    np.testing.assert_array_equal(capped, np.minimum(expected, 2))


def test_around_is_the_band_next_to_the_gaps():
    from scipy.ndimage import binary_dilation

    gaps = np.zeros((20, 20), bool)
    gaps[6:10, 5:15] = True
    band = fill.around(torch.from_numpy(gaps)[None], 3)[0].numpy()
    grown = binary_dilation(gaps, np.ones((3, 3), bool), iterations=3)
    np.testing.assert_array_equal(band, grown & ~gaps)
    assert band.sum() == (4 + 6) * (10 + 6) - 4 * 10
