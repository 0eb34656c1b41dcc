"""The discrepancy stop rule: the first estimate that fits the image to the noise level."""

import numpy as np
import pytest
import torch

from napari_dip import restore
from napari_dip.core import arrays
from napari_dip.core.stopping import Discrepancy

# the papers' loss (the fast and balanced presets denoise with R2R, which has its own stop)
KW = dict(preset="fast", loss="mse", width=16, scales=3, seed=0, device="cpu",
          snapshot_every=10)


def test_discrepancy_keeps_the_first_estimate_at_the_level():
    target = torch.zeros(1, 4, 4)
    rule = Discrepancy(target, None, 16.0, threshold=0.25)
    for step, value in enumerate([1.0, 0.6, 0.4, 0.3, 0.2, 0.1]):
        rule.update(step, torch.full((1, 4, 4), value))
    assert int(rule.step) == 2  # 0.4 ** 2 is the first residual <= 0.25
    assert torch.allclose(rule.estimate, torch.full((1, 4, 4), 0.4))
    # only known pixels count
    weight = torch.zeros(1, 4, 4)
    weight[0, :2] = 1.0
    rule = Discrepancy(target, weight, float(weight.sum()), threshold=0.01)
    est = torch.zeros(1, 4, 4)
    est[0, 2:] = 5.0  # wrong where nothing is known
    rule.update(0, est)
    assert int(rule.step) == 0


def test_a_noisy_image_stops_at_the_noise_level_and_gains(camera_crop):
    noisy = camera_crop + np.random.default_rng(0).normal(0, 25 / 255, camera_crop.shape)
    noisy = noisy.astype(np.float32)
    res = restore(noisy, steps=1500, reference=camera_crop, **KW)
    notes = " ".join(res.info.notes)
    assert "stop rule: discrepancy" in notes
    assert "discrepancy rule" in res.stop_reason and res.stop_reason.startswith("stopped")
    assert res.best_step is not None and 0 <= res.steps - res.best_step < KW["snapshot_every"]
    assert res.steps < 1500
    noisy_psnr = 10 * np.log10(1 / np.mean((noisy - camera_crop) ** 2))
    assert res.psnr > noisy_psnr + 3
    # the returned estimate fits the noisy image no closer than the level (in data units)
    lo, hi = float(noisy.min()), float(noisy.max())
    level = 0.9 * arrays.noise_variance(((noisy - lo) / (hi - lo))[None])
    resid = np.mean(((res.image - noisy) / (hi - lo)) ** 2)
    assert resid <= level * 1.02


def test_the_windowed_variance_rule_is_still_there(camera_crop):
    noisy = camera_crop + np.random.default_rng(1).normal(0, 25 / 255, camera_crop.shape)
    res = restore(noisy.astype(np.float32), steps=120, stop_rule="variance", stop_window=10,
                  stop_warmup=20, stop_patience=30, **KW)
    assert not any("discrepancy" in n for n in res.info.notes)
    assert "windowed output variance" in res.stop_reason or "stopped: no new minimum" in (
        res.stop_reason)


@pytest.mark.parametrize("case", ["mask", "clean"])
def test_falls_back_to_the_windowed_variance(case, camera_crop):
    if case == "mask":
        img = camera_crop + np.random.default_rng(2).normal(0, 0.1, camera_crop.shape)
        mask = np.zeros(img.shape, bool)
        mask[20:30, 20:30] = True
        res = restore(img.astype(np.float32), mask=mask, steps=40, **KW)
        expected = "for images without missing pixels"
    else:
        yy, xx = np.mgrid[0:64, 0:64]
        img = (0.2 + 0.5 * (xx + yy) / 126).astype(np.float32)  # a smooth ramp, no noise
        res = restore(img, steps=40, **KW)
        expected = "no noise measurable"
    assert any(expected in n for n in res.info.notes), res.info.notes


def test_never_reaching_the_level_returns_the_last_estimate(camera_crop):
    noisy = camera_crop + np.random.default_rng(3).normal(0, 25 / 255, camera_crop.shape)
    res = restore(noisy.astype(np.float32), steps=20, **KW)
    assert res.steps == 20 and res.best_step is None
    assert "before the estimate fit the image to the noise level" in res.stop_reason


def test_stop_rule_is_checked():
    with pytest.raises(ValueError, match="stop_rule"):
        restore(np.zeros((16, 16), np.float32), stop_rule="psychic")
    with pytest.raises(ValueError, match="stop_discrepancy"):
        restore(np.zeros((16, 16), np.float32), stop_discrepancy=0.0)


def test_the_holdout_rule_keeps_the_lowest_error_on_pixels_kept_out_of_the_fit(camera_crop):
    from napari_dip import make_config
    from napari_dip.core.engine import validation_pixels

    noisy = camera_crop + np.random.default_rng(4).normal(0, 25 / 255, camera_crop.shape)
    noisy = noisy.astype(np.float32)
    res = restore(noisy, steps=1500, stop_rule="holdout", stop_patience=100,
                  reference=camera_crop, **KW)
    assert any(n.startswith("stop rule: hold-out") for n in res.info.notes)
    assert res.stop_reason.startswith("stopped: no new low of the error on hidden pixels")
    assert res.steps < 1500 and res.best_step is not None
    assert res.steps - res.best_step >= 100
    noisy_psnr = 10 * np.log10(1 / np.mean((noisy - camera_crop) ** 2))
    assert res.psnr > noisy_psnr + 3
    # the held-out pixels were not fitted: the estimate is further from their data
    cfg = make_config("dip", "fast", loss="mse", width=16, scales=3, snapshot_every=10,
                      stop_rule="holdout")
    val = validation_pixels(cfg, arrays.prepare(noisy), 0)[0]
    assert 0.05 < val.mean() < 0.15
    sq = (res.image - noisy) ** 2
    assert sq[val].mean() > 1.1 * sq[~val].mean()
    # other losses (here R2R, the fast preset's) do not hold pixels out
    assert validation_pixels(make_config("dip", "fast", stop_rule="holdout"),
                             arrays.prepare(noisy), 0) is None
    with pytest.raises(ValueError, match="stop_holdout_share"):
        restore(noisy, stop_rule="holdout", stop_holdout_share=0.9, **KW)
