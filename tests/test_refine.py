"""The second stage of denoising (``refine="wiener"``): a Wiener filter on stacks of similar
patches with gains from the net's estimate (core/refine.py), and its place in a run."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_dip import make_config, restore
from napari_dip.core.config import config_from_json, refine_share
from napari_dip.core.refine import hard_threshold, wiener_refine

SIGMA = 25 / 255


def _mse(a, b):
    return float(np.mean((np.asarray(a, np.float64) - b) ** 2))


def _blur(image):
    """A plain pilot: a 5 x 5 box blur of each channel (reflected edges)."""
    t = torch.from_numpy(np.asarray(image, np.float32))
    t = t[None] if t.ndim == 2 else t
    t = F.avg_pool2d(F.pad(t[:, None], (2, 2, 2, 2), mode="reflect"), 5, stride=1)[:, 0]
    return t


def _refine(noisy, pilot, sigma=SIGMA, **kw):
    y = torch.from_numpy(np.asarray(noisy, np.float32))
    y = y[None] if y.ndim == 2 else y
    return wiener_refine(y, pilot, sigma, **kw)


def test_wiener_beats_its_pilot_and_a_better_pilot_gives_more(camera_crop, noisy_crop):
    pilot = _blur(noisy_crop)
    out = _refine(noisy_crop, pilot)[0].numpy()
    assert out.shape == camera_crop.shape and np.isfinite(out).all()
    err_noisy = _mse(noisy_crop, camera_crop)
    err_pilot = _mse(pilot[0].numpy(), camera_crop)
    err_out = _mse(out, camera_crop)
    assert err_out < 0.8 * err_pilot and err_out < 0.3 * err_noisy
    # with the clean image as its pilot (the oracle's gains) it does better still
    oracle = _refine(noisy_crop, torch.from_numpy(camera_crop)[None])[0].numpy()
    assert _mse(oracle, camera_crop) < 0.8 * err_out


def test_no_noise_or_a_tiny_image_gives_the_pilot_back(noisy_crop):
    pilot = _blur(noisy_crop)
    assert torch.equal(_refine(noisy_crop, pilot, sigma=0.0), pilot)
    small = noisy_crop[:6, :20]
    assert torch.equal(_refine(small, _blur(small), patch=8), _blur(small))


def test_bands_of_reference_patches_give_the_same_result(noisy_crop):
    # the pilot keeps some noise, so no two candidates tie in their distance
    pilot = 0.5 * _blur(noisy_crop) + 0.5 * torch.from_numpy(noisy_crop)[None]
    whole = _refine(noisy_crop, pilot)
    banded = _refine(noisy_crop, pilot, max_refs=50)  # about two rows of references
    assert torch.allclose(whole, banded, atol=1e-5)


def test_float32_box_means_find_the_same_stacks(noisy_crop, monkeypatch):
    # the path for devices without float64 (Apple MPS), run here on the CPU
    from napari_dip.core import refine

    pilot = 0.5 * _blur(noisy_crop) + 0.5 * torch.from_numpy(noisy_crop)[None]
    exact = _refine(noisy_crop, pilot)
    monkeypatch.setattr(refine, "_float64_tables", lambda device: False)
    assert torch.allclose(_refine(noisy_crop, pilot), exact, atol=1e-4)


def test_a_small_image_and_search_window_still_cover_every_pixel():
    rng = np.random.default_rng(3)
    clean = np.tile(np.linspace(0.2, 0.8, 11, dtype=np.float32), (9, 1))
    noisy = clean + rng.normal(0, 0.05, clean.shape).astype(np.float32)
    out = _refine(noisy, torch.from_numpy(clean)[None], sigma=0.05, radius=1, stride=3)
    assert out.shape == (1, 9, 11) and torch.isfinite(out).all()
    assert _mse(out[0].numpy(), clean) < _mse(noisy, clean)


def test_colour_is_filtered_in_opponent_colours(camera_crop):
    rng = np.random.default_rng(4)
    clean = np.stack([camera_crop, 0.8 * camera_crop + 0.1, 1.0 - camera_crop])
    noisy = (clean + rng.normal(0, SIGMA, clean.shape)).astype(np.float32)
    out = _refine(noisy, _blur(noisy)).numpy()
    assert out.shape == clean.shape
    for c in range(3):
        assert _mse(out[c], clean[c]) < 0.4 * _mse(noisy[c], clean[c])
    # an orthonormal rotation: one grey image in three equal channels (the same noise in
    # each, so sqrt(3) sigma in their sum) comes out as that image filtered alone with
    # sigma / sqrt(3)
    grey = np.repeat(noisy[:1], 3, axis=0)
    both = _refine(grey, _blur(grey))
    alone = _refine(noisy[0], _blur(noisy[0]), sigma=SIGMA / np.sqrt(3))
    assert torch.allclose(both, alone.expand(3, -1, -1), atol=1e-5)


def test_a_volume_is_filtered_plane_by_plane(noisy_crop):
    vol = np.stack([noisy_crop[:32, :40], noisy_crop[32:, :40], noisy_crop[:32, 24:]])
    y = torch.from_numpy(vol)[None]
    pilot = torch.stack([_blur(p)[0] for p in vol])[None]
    out = wiener_refine(y, pilot, SIGMA)
    assert out.shape == y.shape
    for z in range(3):
        assert torch.allclose(out[:, z], wiener_refine(y[:, z], pilot[:, z], SIGMA))


def test_hard_thresholding_keeps_texture_and_guides_the_filter(camera_crop, noisy_crop):
    """BM3D's first step: an estimate from the noisy image alone, whose gains guide the
    Wiener filter to a better estimate still; on a flat image it leaves no noise behind."""
    y = torch.from_numpy(noisy_crop)[None]
    est = hard_threshold(y, SIGMA)
    assert est.shape == y.shape and torch.isfinite(est).all()
    err_noisy = _mse(noisy_crop, camera_crop)
    err_est = _mse(est[0].numpy(), camera_crop)
    assert err_est < 0.4 * err_noisy
    guided = wiener_refine(y, est, SIGMA)
    assert _mse(guided[0].numpy(), camera_crop) < 0.95 * err_est
    flat = 0.5 + np.random.default_rng(1).normal(0, SIGMA, (48, 48)).astype(np.float32)
    out = hard_threshold(torch.from_numpy(flat)[None], SIGMA)[0].numpy()
    assert np.std(out) < 0.15 * SIGMA and abs(np.mean(out) - 0.5) < 0.01
    # without noise there is nothing to threshold
    assert torch.equal(hard_threshold(y, 0.0), y)


def test_bad_arguments_are_named():
    y = torch.zeros(1, 16, 16)
    with pytest.raises(ValueError, match="same shape"):
        wiener_refine(y, torch.zeros(1, 16, 15), 0.1)
    with pytest.raises(ValueError, match="stride"):
        wiener_refine(y, y, 0.1, stride=9)


# -- in a run -------------------------------------------------------------------------------
def test_the_denoising_presets_refine_and_the_others_do_not():
    for preset in ("fast", "balanced"):
        assert make_config("dip", preset).refine == "wiener"
        assert make_config("dip", preset, loss="sure").refine == "wiener"
        assert make_config("dip", preset, masked=True).refine == "off"
    assert make_config("dip", "quality").refine == "off"
    assert make_config("sgld", "fast").refine == "off"
    with pytest.raises(ValueError, match="refine: method 'sgld'"):
        make_config("sgld", "fast", refine="wiener")
    with pytest.raises(ValueError, match="refine: expected one of 'off', 'wiener'"):
        make_config("dip", "fast", refine="bm3d")
    with pytest.raises(ValueError, match="refine_blend"):
        make_config("dip", "fast", refine_blend=1.5)
    # the share of the net's estimate follows the noise level unless one is given
    cfg = make_config("dip", "fast")
    assert cfg.refine_blend is None and config_from_json(cfg.to_json()) == cfg
    assert make_config("dip", "fast", refine_blend=0.3).refine_blend == 0.3
    assert refine_share(0.03) == 0.0 and refine_share(0.5) == 1.0
    assert refine_share(25 / 255) == pytest.approx(0.19, abs=0.01)
    assert refine_share(50 / 255) == pytest.approx(0.68, abs=0.01)


def test_a_run_refines_its_final_estimate_only(noisy_crop, camera_crop):
    kw = dict(preset="fast", seed=0, device="cpu", steps=60)
    plain = restore(noisy_crop, refine="off", **kw)
    ref = restore(noisy_crop, **kw)
    note = next(n for n in ref.info.notes if n.startswith("refine: Wiener"))
    assert "share set by the noise level" in note
    assert not any(n.startswith("refine") for n in plain.info.notes)
    # the same net (same seed), then the second stage: closer to the clean image
    assert _mse(ref.image, camera_crop) < 0.9 * _mse(plain.image, camera_crop)
    # refine_blend=1 keeps the net's estimate as it was
    kept = restore(noisy_crop, refine_blend=1.0, **kw)
    np.testing.assert_allclose(kept.image, plain.image, atol=1e-6)


def test_gains_from_a_thresholding_estimate_take_their_share(noisy_crop, camera_crop):
    kw = dict(preset="fast", seed=0, device="cpu", steps=60)
    plain = restore(noisy_crop, refine="off", refine_blend=0.0, **kw)
    net = restore(noisy_crop, refine_blend=0.0, refine_hard_share=0.0, **kw)
    both = restore(noisy_crop, refine_blend=0.0, refine_hard_share=0.3, **kw)
    only = restore(noisy_crop, refine_blend=0.0, refine_hard_share=1.0, **kw)
    note = next(n for n in both.info.notes if n.startswith("refine: Wiener"))
    assert "0.3 of the filtered image with gains from a hard-thresholding estimate" in note
    assert "hard-thresholding" not in next(n for n in net.info.notes
                                           if n.startswith("refine: Wiener"))
    # the result is the mix of the two filtered images, 0.7 and 0.3
    np.testing.assert_allclose(both.image, 0.7 * net.image + 0.3 * only.image, atol=1e-5)
    # the thresholding estimate does not depend on the net: its filtered image beats the
    # net alone on this detailed crop
    assert _mse(only.image, camera_crop) < _mse(plain.image, camera_crop)
    with pytest.raises(ValueError, match="refine_hard_share"):
        make_config(preset="fast", refine_hard_share=1.5)


def test_with_a_mask_only_the_known_pixels_are_refined(noisy_crop, camera_crop):
    mask = np.zeros(noisy_crop.shape, bool)
    mask[10:20, 10:20] = True
    mask[40:, 30:34] = True
    kw = dict(mask=mask, preset="fast", seed=0, device="cpu", steps=40)
    plain = restore(noisy_crop, **kw)
    assert plain.info.config.refine == "off"  # the presets leave masks to the hold-out fit
    ref = restore(noisy_crop, refine="wiener", **kw)
    note = next(n for n in ref.info.notes if n.startswith("refine: Wiener"))
    assert "known pixels only" in note
    # the same net: the gaps keep its estimate, the known pixels come out closer to the truth
    np.testing.assert_array_equal(ref.image[mask], plain.image[mask])
    assert _mse(ref.image[~mask], camera_crop[~mask]) < _mse(plain.image[~mask],
                                                             camera_crop[~mask])
    # an image without noise has nothing to filter
    ramp = np.tile(np.linspace(0.1, 0.9, 64, dtype=np.float32), (64, 1))
    clean = restore(ramp, refine="wiener", **kw)
    assert "refine: off (no noise measurable in the image: nothing to filter)" in clean.info.notes


def test_the_snapshot_before_the_final_one_is_the_net_estimate(noisy_crop):
    """The estimate that goes into the second stage comes as the last progressive snapshot:
    the same as the final image of the same run without the stage."""
    from napari_dip import iterate

    kw = dict(preset="fast", seed=0, device="cpu", steps=60)
    snaps = list(iterate(noisy_crop, **kw))
    plain = restore(noisy_crop, refine="off", **kw)
    assert snaps[-1].done and not snaps[-2].done
    assert snaps[-2].step == snaps[-1].step
    np.testing.assert_allclose(snaps[-2].image, plain.image, atol=1e-6)
    assert not np.allclose(snaps[-1].image, plain.image, atol=1e-3)
    # the losses are not counted twice
    assert sum(len(s.losses) for s in snaps) == snaps[-1].step


def _clipped_shapes(seed=0, sigma=SIGMA):
    """A dark background at the lower clip, a bright disc at the upper one and a grey
    ramp between them; clipped noise. (clean, noisy), float32 64 x 64."""
    yy, xx = np.mgrid[:64, :64]
    clean = np.zeros((64, 64), np.float32)
    clean[:, 20:44] = np.linspace(0.2, 0.8, 64, dtype=np.float32)[:, None]
    clean[(yy - 32) ** 2 + (xx - 54) ** 2 < 9 ** 2] = 1.0
    noisy = clean + np.random.default_rng(seed).normal(0, sigma, clean.shape)
    return clean, np.clip(noisy, 0.0, 1.0).astype(np.float32)


def test_clipped_values_are_taken_at_their_expectation_given_the_pilot():
    from napari_dip.core.arrays import clipped_ends, expect_clipped

    clean, noisy = _clipped_shapes()
    data, pilot = noisy[None], clean[None]
    assert clipped_ends(data) == (True, True)
    out = expect_clipped(data, pilot, SIGMA, low=True, high=True)
    assert out.dtype == data.dtype and out.shape == data.shape
    inside = (data > 0) & (data < 1)
    np.testing.assert_array_equal(out[inside], data[inside])  # unclipped values kept
    assert (out[data <= 0] < 0).all() and (out[data >= 1] > 1).all()
    # the dark background and the disc average their clean values again; clipped, they
    # read about 0.4 sigma inside
    dark, disc = clean[None] == 0, clean[None] == 1
    assert data[dark].mean() > 0.3 * SIGMA and abs(out[dark].mean()) < 0.05 * SIGMA
    assert 1 - data[disc].mean() > 0.3 * SIGMA and abs(out[disc].mean() - 1) < 0.05 * SIGMA
    np.testing.assert_array_equal(out, expect_clipped(data, pilot, SIGMA, low=True,
                                                      high=True))  # nothing drawn
    # one end only, outside the known pixels nothing, an estimate far inside the range
    low_only = expect_clipped(data, pilot, SIGMA, low=True, high=False)
    np.testing.assert_array_equal(low_only[data >= 1], data[data >= 1])
    known = np.zeros_like(data, bool)
    known[:, :, 10:] = True  # part of the background and all of the disc: the same ends
    assert data[known].min() == 0 and data[known].max() == 1
    part = expect_clipped(data, pilot, SIGMA, low=True, high=True, known=known)
    np.testing.assert_array_equal(part[~known], data[~known])
    np.testing.assert_array_equal(part[known], out[known])
    # estimates far inside the range (a = -100 sigma): the tails' ratios stay finite
    far = expect_clipped(data, np.where(data <= 0, 10.0, -10.0).astype(np.float32), SIGMA,
                         low=True, high=True)
    assert np.isfinite(far).all()
    assert (far[data <= 0] <= 0).all() and (far[data <= 0] > -0.01).all()
    assert (far[data >= 1] >= 1).all() and (far[data >= 1] < 1.01).all()
    # the filter on the clipped data is pulled inwards at the ends; on these values not
    filtered = lambda y: wiener_refine(torch.from_numpy(y), torch.from_numpy(pilot),  # noqa: E731
                                       SIGMA)[0].numpy()
    assert _mse(filtered(out), clean) < 0.7 * _mse(filtered(data), clean)  # 0.55 here


def test_a_run_on_clipped_data_refines_the_expected_values():
    clean, noisy = _clipped_shapes()
    kw = dict(preset="fast", seed=0, device="cpu")
    res = restore(noisy, steps=100, **kw)
    note = next(n for n in res.info.notes if n.startswith("refine: Wiener"))
    assert "clipped values" in note and "minimum and maximum" in note
    # the clip's bias (the filter's output pulled about 0.4 sigma inwards at both ends, as
    # it was when the filter took the clipped values: 0.50 and 0.47 sigma here, and twice
    # the squared error) is gone for the most part (0.28 and 0.21 sigma, squared error
    # 0.0010; the output's own clip to [0, 1] leaves some)
    assert float(res.image[clean == 0].mean()) < 0.4 * SIGMA
    assert 1 - float(res.image[clean == 1].mean()) < 0.33 * SIGMA
    assert _mse(res.image, clean) < 0.0015
    off = restore(noisy, steps=20, sure_clipping="off", **kw)
    assert "clipped" not in next(n for n in off.info.notes if n.startswith("refine: Wiener"))
    # data that are not clipped go to the filter as they are
    unclipped = clean + np.random.default_rng(0).normal(0, SIGMA, clean.shape)
    plain = restore(unclipped.astype(np.float32), steps=20, **kw)
    assert "clipped" not in next(n for n in plain.info.notes if n.startswith("refine: Wiener"))


def test_flat_or_saturated_areas_leave_no_pixel_uncovered():
    """Where many patches tie (a constant pilot, a saturated block of the data), each
    reference patch still heads its own stack: every pixel is filtered, none is NaN."""
    _, noisy = _clipped_shapes()
    saturated = np.ones_like(noisy)
    saturated[:, :20] = noisy[:, :20]  # the right two thirds at the maximum, noise-free
    y = torch.from_numpy(saturated)[None]
    for out in (hard_threshold(y, SIGMA), wiener_refine(y, y, SIGMA),
                wiener_refine(torch.from_numpy(noisy)[None], torch.zeros_like(y), SIGMA)):
        assert torch.isfinite(out).all()
    np.testing.assert_allclose(hard_threshold(y, SIGMA)[0, :, 24:].numpy(), 1.0, atol=1e-6)
    # in a run the saturated block goes to the filter as expected values, which no longer
    # tie; the direct calls above are what reach the ties
    res = restore(saturated, preset="fast", seed=0, device="cpu", steps=20)
    assert np.isfinite(res.image).all()
