"""DIP with the SURE loss: the noisy image as input, an unbiased estimate of the error as loss."""

import dataclasses

import numpy as np
import pytest

from napari_dip import make_config, restore
from napari_dip.core.config import PRESET_OVERRIDES, sure_fallback
from napari_dip.core.tiling import estimate_memory

FAST = dict(preset="fast", seed=0, device="cpu", snapshot_every=10)
KW = dict(FAST, loss="sure")  # the fast preset's SURE settings


def _psnr(a, b):
    return 10 * np.log10(1 / np.mean((np.clip(a, 0, 1) - b) ** 2))


def test_sure_denoises_with_no_stop_rule(noisy_crop, camera_crop):
    res = restore(noisy_crop, steps=60, reference=camera_crop, **KW)
    assert res.info.config.loss == "sure"
    notes = " ".join(res.info.notes)
    assert "loss: SURE" in notes and not any(n.startswith("stop rule") for n in res.info.notes)
    assert res.steps == 60 and res.stop_reason.startswith("reached the maximum of 60 steps")
    assert res.psnr > _psnr(noisy_crop, camera_crop) + 4
    # the same steps of the papers' loss, from a random code, are far behind
    mse = restore(noisy_crop, steps=60, auto_stop=False, reference=camera_crop,
                  **dict(KW, loss="mse"))
    assert mse.info.config.loss == "mse" and res.psnr > mse.psnr + 2


def test_sure_loss_estimates_the_error_to_the_clean_image(noisy_crop, camera_crop):
    # the net's own estimate (no second stage), whose error the loss estimates
    res = restore(noisy_crop, steps=120, lr_final=1.0, reference=camera_crop, refine="off",
                  **KW)
    # per step one noisy draw; their mean over the last steps against the true error
    # (data range of the noisy image: the engine's normalised units)
    lo, hi = float(noisy_crop.min()), float(noisy_crop.max())
    true_mse = np.mean(((res.image - camera_crop) / (hi - lo)) ** 2)
    fit = np.mean(((res.image - noisy_crop) / (hi - lo)) ** 2)
    estimate = float(np.mean(res.losses))
    assert estimate < fit  # it subtracts the noise that a plain fit would count
    assert 0.4 * true_mse < estimate < 2.5 * true_mse


def test_sure_runs_repeat_bit_for_bit_and_with_members(noisy_crop):
    a = restore(noisy_crop, steps=20, **KW)
    b = restore(noisy_crop, steps=20, **KW)
    assert np.array_equal(a.image, b.image)
    two = restore(noisy_crop, steps=20, members=2, **KW)
    assert two.image.shape == a.image.shape and not np.array_equal(two.image, a.image)
    assert np.isfinite(two.losses).all()


def test_a_mask_gets_the_holdout_fit_or_the_papers_loss_with_the_fast_preset(camera_crop):
    mask = np.zeros(camera_crop.shape, bool)
    mask[20:30, 20:30] = True
    res = restore(np.where(mask, 0, camera_crop), mask=mask, steps=20, **FAST)
    assert res.info.config.loss == "holdout"
    res = restore(np.where(mask, 0, camera_crop), mask=mask, steps=20, loss="mse", **FAST)
    cfg = res.info.config
    assert cfg.loss == "mse" and cfg.width == PRESET_OVERRIDES["fast"]["dip"]["width"]
    with pytest.raises(ValueError, match=r"loss: 'sure' .* mask"):
        restore(camera_crop, mask=mask, steps=5, **KW)


def test_presets_and_validation():
    fast = make_config("dip", "fast")
    assert fast.loss == "r2r" and fast.jitter == 0 and fast.backtrack_db == 0
    sure = make_config("dip", "fast", loss="sure")  # with the preset's SURE settings
    assert sure.loss == "sure" and sure.steps == 300 and fast.steps == 600
    assert make_config("dip", "fast", masked=True).loss == "holdout"
    plain = make_config("dip", "fast", loss="mse")  # the papers' loss with the fast net
    assert plain == make_config("dip", "fast", masked=True, loss="mse")
    assert make_config("dip", "quality").loss == "mse"
    assert make_config("sgld", "fast").loss == "mse"
    with pytest.raises(ValueError, match="loss: method 'sgld'"):
        make_config("sgld", "fast", loss="sure")
    with pytest.raises(ValueError, match="loss: expected one of 'mse', 'sure', 'r2r', 'holdout'"):
        make_config("dip", "fast", loss="l1")
    with pytest.raises(TypeError, match="masked: expected True or False"):
        make_config("dip", "fast", masked="yes")
    assert make_config("dip", "fast", loss="SURE").loss == "sure"


def test_balanced_preset_averages_four_nets(noisy_crop, camera_crop):
    """The default preset: the fast preset's R2R nets (or, asked for, its SURE nets), four
    of them averaged, where there is no mask; with a mask four hold-out nets, or, asked
    for, its own net with the papers' loss; above the noise limit the fast preset's squared-error settings with the four
    nets kept."""
    cfg = make_config("dip", "balanced")
    assert cfg.loss == "r2r" and cfg.members == 4
    for loss in ("r2r", "sure"):
        mine = make_config("dip", "balanced", loss=loss)
        fast = make_config("dip", "fast", loss=loss)
        assert mine.loss == loss and mine.members == 4 and fast.members == 1
        for name in ("loss", "width", "scales", "lr", "lr_final", "steps", "ema", "jitter",
                     "backtrack_db", "sure_max_noise", "sure_max_trend", "snapshot_every",
                     "r2r_alpha"):
            assert getattr(mine, name) == getattr(fast, name), (loss, name)
    assert make_config("dip", "balanced", masked=True).loss == "holdout"
    assert make_config("dip", "balanced", masked=True).members == 4
    masked = make_config("dip", "balanced", masked=True, loss="mse")
    assert masked.loss == "mse" and masked.members == 1
    assert masked.width == PRESET_OVERRIDES["balanced"]["dip"].get("width", 128)
    assert make_config("dip", "balanced", loss="mse") == masked
    fallback = sure_fallback(cfg)
    assert fallback.loss == "mse" and fallback.members == 4
    assert fallback.width == PRESET_OVERRIDES["fast"]["dip"]["width"]
    res = restore(noisy_crop, preset="balanced", steps=30, seed=0, device="cpu",
                  reference=camera_crop)
    assert res.info.config.members == 4 and res.info.config.loss == "r2r"
    one = restore(noisy_crop, preset="fast", steps=30, seed=0, device="cpu",
                  reference=camera_crop)
    # the average of four nets is not one net's estimate
    assert not np.allclose(res.image, one.image)
    assert res.psnr > one.psnr - 0.5


def test_memory_model_counts_the_second_pass():
    cfg = make_config("dip", "fast", loss="sure")
    plain = dataclasses.replace(cfg, loss="mse")
    assert estimate_memory(cfg, (256, 256), 1) > 1.5 * estimate_memory(plain, (256, 256), 1)


def test_an_image_without_noise_is_said_to_be_one(camera_crop):
    smooth = np.linspace(0, 1, 64 * 64, dtype=np.float32).reshape(64, 64)
    res = restore(smooth, steps=10, **KW)
    assert any("no noise measurable" in n for n in res.info.notes)


def test_sure_in_tiles(noisy_crop, camera_crop):
    whole = restore(noisy_crop, steps=40, reference=camera_crop, **KW)
    tiled = restore(noisy_crop, steps=40, tile_size=32, tile_overlap=8, reference=camera_crop,
                    **KW)
    assert tiled.info.tiles is not None and tiled.info.tiles["tiles"] > 1
    assert tiled.image.shape == noisy_crop.shape
    # each 32x32 tile fits on its own (fewer pixels per step): a little behind the whole
    assert tiled.psnr > _psnr(noisy_crop, camera_crop) + 2 and abs(tiled.psnr - whole.psnr) < 3


def test_a_noise_limit_falls_back_to_the_papers_loss(camera_crop):
    # clipped to the value range like 8-bit data (the limit is a fraction of the range)
    noisy = np.clip(camera_crop + np.random.default_rng(2).normal(0, 60 / 255,
                                                                  camera_crop.shape), 0, 1)
    res = restore(noisy.astype(np.float32), steps=20, members=2, sure_max_noise=0.14, **KW)
    cfg = res.info.config
    assert any("squared error with the fast preset's settings" in n for n in res.info.notes)
    assert cfg.loss == "mse" and cfg.width == PRESET_OVERRIDES["fast"]["dip"]["width"]
    assert cfg.steps == 20 and cfg.members == 2 and res.steps <= 20  # chosen: kept
    assert any(n.startswith("stop rule: discrepancy") for n in res.info.notes)
    # the presets set no limit: SURE runs whatever the noise
    assert make_config("dip", "fast").sure_max_noise == 0.0
    res = restore(noisy.astype(np.float32), steps=5, **KW)
    assert res.info.config.loss == "sure"


def test_noise_trend_tells_shot_noise_from_gaussian_noise(camera_crop):
    from napari_dip.core.arrays import noise_trend

    rng = np.random.default_rng(0)
    img = camera_crop.astype(np.float64)
    gauss = img + rng.normal(0, 0.1, img.shape)
    assert 0.7 < noise_trend(gauss[None]) < 1.4
    # clipped pixels are left out, so clipping does not read as a trend
    assert 0.7 < noise_trend(np.clip(gauss, 0.2, 0.8)[None]) < 1.4
    counts = 2.0 * rng.poisson(100 * img) + rng.normal(0, 3, img.shape)
    assert noise_trend(counts[None]) > 2
    assert noise_trend(np.zeros((1, 4, 4))) == 1.0  # too few blocks to tell


def test_noise_trend_reads_the_known_values_only(camera_crop):
    # the values in the holes of a mask are not data: an extreme one there must not move
    # the data's minimum and maximum, whose blocks the check leaves out
    from napari_dip.core.arrays import noise_trend

    rng = np.random.default_rng(0)
    img = camera_crop.astype(np.float64)
    counts = 2.0 * rng.poisson(100 * img) + rng.normal(0, 3, img.shape)
    known = (rng.random(img.shape) > 0.1).astype(np.float32)
    base = noise_trend(counts[None], known[None])
    assert base > 1.5
    for fill in (1e6, -1e6):
        holes = counts.copy()
        holes[known == 0] = fill
        assert noise_trend(holes[None], known[None]) == pytest.approx(base)


def test_shot_noise_falls_back_to_the_papers_loss(camera_crop):
    rng = np.random.default_rng(0)
    counts = 100 + 2.0 * rng.poisson(100 * camera_crop) + rng.normal(0, 3, camera_crop.shape)
    counts = counts.astype(np.float32)
    res = restore(counts, steps=10, noise_model="gaussian", **KW)
    assert res.info.config.loss == "mse"
    assert any("noise variance grows with the signal" in n for n in res.info.notes)
    # the default noise model leaves SURE's data raw (the transformation is for R2R)
    res = restore(counts, steps=5, **KW)
    assert res.info.config.loss == "mse" and res.info.noise is None
    assert any("noise variance grows with the signal" in n for n in res.info.notes)
    # the check off: SURE whatever the noise, on the raw values
    res = restore(counts, steps=5, sure_max_trend=0.0, **KW)
    assert res.info.config.loss == "sure" and res.info.noise is None
    # the presets do not use SURE on the variance-stabilised data either
    res = restore(counts, steps=5, noise_model="poisson-gaussian", **KW)
    assert res.info.config.loss == "mse"
    assert any("noise model other than 'gaussian'" in n for n in res.info.notes)
    res = restore(counts, steps=5, noise_model="poisson-gaussian", sure_max_trend=0.0, **KW)
    assert res.info.config.loss == "sure"
    with pytest.raises(ValueError, match="sure_max_trend"):
        make_config("dip", "fast", sure_max_trend=-1.0)


def test_clipped_ends_noise_and_imputation_on_clipped_gaussian_noise():
    from napari_dip.core.arrays import (clipped_ends, clipped_noise_variance, impute_clipped,
                                        noise_variance)

    rng = np.random.default_rng(3)
    clean = np.zeros((1, 160, 160))
    clean[..., 80:] = 0.7  # a dark half near the lower clip, a bright one
    noisy = clean + rng.normal(0, 0.2, clean.shape)
    assert clipped_ends(noisy) == (False, False)  # unclipped: each extreme once
    clipped = np.clip(noisy, 0.0, 1.0)
    assert clipped_ends(clipped) == (True, True)
    assert clipped_ends(np.clip(noisy, 0.0, None)) == (True, False)
    assert clipped_ends(np.full((1, 8, 8), 0.5)) == (False, False)  # one value: no clip
    # quantised, low noise, not clipped: many ties at the extremes, but fewer than beside
    levels = np.rint(100 + 40 * clean + rng.normal(0, 0.8, clean.shape))
    assert clipped_ends(levels) == (False, False)
    assert clipped_ends(np.clip(levels, 101, None)) == (True, False)
    # low noise, quantised: the lowest level holds many values, but fewer than the next
    # level up (one grey level apart, more than 1/256 of this narrow range)
    quiet = np.rint(100 + rng.normal(0, 0.5, clean.shape))
    lowest = np.count_nonzero(quiet == quiet.min())
    assert lowest > 1e-3 * quiet.size and clipped_ends(quiet) == (False, False)
    assert np.array_equal(impute_clipped(clipped, 0.0, low=True, high=True), clipped)
    # the plain estimate reads low on clipped data; away from the clipped ends it does not
    assert np.sqrt(noise_variance(clipped)) < 0.17
    assert 0.18 < np.sqrt(clipped_noise_variance(clipped)) < 0.22
    filled = impute_clipped(clipped, 0.2, low=True, high=True, seed=0)
    kept = (clipped > 0) & (clipped < 1)
    assert np.array_equal(filled[kept], clipped[kept])  # unclipped values untouched
    assert (filled[clipped <= 0] <= 0).all() and (filled[clipped >= 1] >= 1).all()
    # the dark half looks unclipped again: mean and spread of the noise come back
    dark = filled[..., 8:-8, 8:72]
    assert abs(dark.mean()) < 0.02 and 0.18 < dark.std() < 0.22
    assert clipped[..., 8:-8, 8:72].mean() > 0.07  # where the clipped data read high


def test_sure_on_clipped_data_imputes_the_clipped_values(camera_crop):
    noisy = np.clip(camera_crop + np.random.default_rng(0).normal(0, 0.2, camera_crop.shape),
                    0, 1).astype(np.float32)
    res = restore(noisy, steps=5, sure_max_noise=0.0, **KW)
    notes = " ".join(res.info.notes)
    assert "(clipped)" in notes and "sure_clipping='impute'" in notes
    off = restore(noisy, steps=5, sure_max_noise=0.0, sure_clipping="off", **KW)
    assert "(clipped)" not in " ".join(off.info.notes)
    assert not np.array_equal(res.image, off.image)
    # the noise level that SURE uses: close to the truth with the imputation, low without
    read = [float(n.split("noise std ")[1].split()[0]) for n in (res.info.notes + off.info.notes)
            if n.startswith("loss: SURE, noise std")]
    scale = float(noisy.max() - noisy.min())
    assert 0.18 < read[0] * scale < 0.22 and read[1] * scale < read[0] * scale - 0.02
    # data that are not clipped are left alone
    unclipped = camera_crop + np.random.default_rng(0).normal(0, 0.2, camera_crop.shape)
    plain = restore(unclipped.astype(np.float32), steps=5, sure_max_noise=0.0, **KW)
    assert "(clipped)" not in " ".join(plain.info.notes)


def test_colour_width_widens_the_net_for_colour_images_only(camera_crop):
    from napari_dip.core.config import net_config
    from napari_dip.core.tiling import estimate_memory

    cfg = make_config("dip", "fast", colour_width=24)
    assert net_config(cfg, 3).width == 24 and net_config(cfg, 1).width == cfg.width
    assert net_config(make_config("dip", "fast"), 3).width == cfg.width  # 0: width
    # the balanced preset widens its nets for colour; a width asked for holds for colour too
    balanced = make_config("dip", "balanced")
    assert net_config(balanced, 3).width == 32 and net_config(balanced, 1).width == 16
    assert net_config(make_config("dip", "balanced", width=8), 3).width == 8
    assert make_config("dip", "balanced", masked=True, loss="mse").colour_width == 0
    assert estimate_memory(cfg, (64, 64), 3) > estimate_memory(
        make_config("dip", "fast"), (64, 64), 3)
    rgb = np.stack([camera_crop, camera_crop[::-1], camera_crop.T], -1)
    rgb = rgb + np.random.default_rng(0).normal(0, 0.1, rgb.shape)
    wide = restore(rgb.astype(np.float32), steps=3, colour_width=24, channel_axis=-1, **KW)
    plain = restore(rgb.astype(np.float32), steps=3, channel_axis=-1, **KW)
    assert wide.info.parameters > plain.info.parameters
    grey = restore(rgb[..., 0].astype(np.float32), steps=3, colour_width=24, **KW)
    grey_plain = restore(rgb[..., 0].astype(np.float32), steps=3, **KW)
    assert grey.info.parameters == grey_plain.info.parameters
