"""DIP with the R2R loss (recorrupted-to-recorrupted): the noisy image as the net's input, a
fit of one re-noised copy of it to another, and a stop where the net's outputs for the image
and for re-noised copies of it drift apart (or, without those copies, where its divergence
at the image turns negative)."""

import re

import numpy as np
import pytest
import torch

from napari_dip import iterate, make_config, restore
from napari_dip.core.arrays import variance_ratio
from napari_dip.core.config import recorruption_strength, sure_fallback
from napari_dip.core.engine import image_noise_variance, r2r_strength
from napari_dip.core.stopping import DRIFT_CHECKS, DRIFT_GATE, DivergenceWatch
from napari_dip.core.tiling import estimate_memory

KW = dict(preset="fast", seed=0, device="cpu", snapshot_every=10)


def _psnr(a, b):
    return 10 * np.log10(1 / np.mean((np.clip(a, 0, 1) - b) ** 2))


def test_the_fast_preset_denoises_with_r2r(noisy_crop, camera_crop):
    cfg = make_config("dip", "fast")
    assert cfg.loss == "r2r" and cfg.r2r_alpha is None and cfg.steps == 600
    res = restore(noisy_crop, steps=80, reference=camera_crop, **KW)
    assert res.info.config.loss == "r2r"
    notes = " ".join(res.info.notes)
    assert "loss: R2R" in notes and "drift apart" in notes
    assert "since the fit's estimate of its error fell below 0.1 x the noise variance" in notes
    assert not any(n.startswith("stop rule") for n in res.info.notes)
    assert res.psnr > _psnr(noisy_crop, camera_crop) + 4
    # the estimate: the mean of the net's outputs for two recorrupted copies of the image
    # at each of the last four checks
    assert cfg.r2r_draws == 2
    assert ("mean of the net's outputs for 2 recorrupted copies of the image at steps 50, "
            "60, 70, 80") in res.stop_reason
    assert "the mean of its outputs for 2 recorrupted copies" in notes
    assert res.best_step == 80
    # the same steps with SURE cost about twice the passes; both land close
    sure = restore(noisy_crop, steps=80, loss="sure", reference=camera_crop, **KW)
    assert abs(res.psnr - sure.psnr) < 1.5
    # every snapshot reports the divergence and the drift; other losses report neither
    snaps = list(iterate(noisy_crop, steps=30, refine="off", **KW))  # no stage's snapshot
    divs = [s.divergence for s in snaps]
    assert len(divs) == 3 and all(np.isfinite(d) and d != 0 for d in divs)
    assert len(set(divs)) == 3
    assert all(s.drift > 0 for s in snaps) and len({s.drift for s in snaps}) == 3
    assert all(s.drift is None for s in iterate(noisy_crop, steps=20, r2r_draws=0, **KW))
    assert all(s.divergence is None and s.drift is None
               for s in iterate(noisy_crop, steps=20, loss="sure", **KW))


def test_the_recorruption_strength_follows_the_signal_to_noise_ratio(noisy_crop, camera_crop):
    """r2r_alpha=None (the default) sets alpha from the image's variance as a multiple of
    its noise variance: R2R's 0.5 at 2.5 and above, 2 at 1.5 and below, falling between."""
    assert recorruption_strength(1.0) == 2.0 and recorruption_strength(1.5) == 2.0
    assert recorruption_strength(2.5) == 0.5 and recorruption_strength(40.0) == 0.5
    assert recorruption_strength(float("inf")) == 0.5
    between = [recorruption_strength(r) for r in (1.6, 1.9, 2.2, 2.4)]
    assert all(a > b for a, b in zip(between, between[1:]))
    assert 0.5 < between[-1] and between[0] < 2.0
    # geometric in the ratio: 1 (the geometric mean of 0.5 and 2) at the ratios' own
    assert recorruption_strength(np.sqrt(1.5 * 2.5)) == pytest.approx(1.0)
    # the measure: about 1 for pure noise, 1 + the signal's variance over the noise's
    rng = np.random.default_rng(0)
    noise = rng.normal(0.0, 0.1, (1, 96, 96))
    assert 0.9 < variance_ratio(noise, 0.01) < 1.1
    ramp = np.broadcast_to(np.linspace(0.0, 1.0, 96), (1, 96, 96))
    expected = 1.0 + float(np.var(ramp)) / 0.01
    assert abs(variance_ratio(ramp + noise, 0.01) - expected) < 0.05 * expected
    # each channel about its own mean: channels at other levels read as one
    shifted = np.concatenate([noise, noise[:, ::-1] + 5.0])
    assert abs(variance_ratio(shifted, 0.01) - variance_ratio(noise, 0.01)) < 1e-9
    assert variance_ratio(noise, 0.0) == float("inf")
    # a run on an image well above its noise keeps 0.5: the same run as asking for it
    def chosen(res):
        found = re.search(r"alpha ([0-9.]+), set by the image's variance, ([0-9.]+) x",
                          " ".join(res.info.notes))
        return float(found.group(1)), float(found.group(2))

    sharp = restore(noisy_crop, steps=20, **KW)
    alpha, ratio = chosen(sharp)
    assert alpha == 0.5 and 5.0 < ratio < 8.0
    assert np.array_equal(sharp.image, restore(noisy_crop, steps=20, r2r_alpha=0.5,
                                               **KW).image)
    # a faint image (a tenth of the camera's contrast) under the same noise gets 2, and
    # its loss, less the target's extra variance for that alpha (sigma^2 (1 + 1/4)),
    # estimates an error far below the noise variance, as it should
    clean = 0.5 + 0.1 * (camera_crop - camera_crop.mean())
    faint = (clean + rng.normal(0.0, 25 / 255, clean.shape)).astype(np.float32)
    res = restore(faint, steps=60, reference=clean, **KW)
    alpha, ratio = chosen(res)
    assert alpha == 2.0 and ratio <= 1.5
    given = restore(faint, steps=60, reference=clean, r2r_alpha=2.0, **KW)
    assert np.array_equal(res.image, given.image)
    assert "alpha 2)" in " ".join(given.info.notes)  # given, not set by the run
    weak = restore(faint, steps=60, reference=clean, r2r_alpha=0.5, **KW)
    assert not np.array_equal(res.image, weak.image)
    sigma2 = (25 / 255 / (float(faint.max()) - float(faint.min()))) ** 2
    assert abs(float(np.mean(res.losses[-30:]))) < 0.2 * sigma2
    assert abs(float(np.mean(weak.losses[-30:]))) < 0.2 * sigma2


def test_r2r_loss_estimates_the_error_to_the_clean_image(noisy_crop, camera_crop):
    res = restore(noisy_crop, steps=120, reference=camera_crop, **KW)
    lo, hi = float(noisy_crop.min()), float(noisy_crop.max())
    true_mse = np.mean(((res.image - camera_crop) / (hi - lo)) ** 2)
    sigma2 = (25 / 255 / (hi - lo)) ** 2
    estimate = float(np.mean(res.losses[-60:]))
    # the raw fit is about 5 sigma^2 above the error (the target's noise, alpha 0.5); less
    # that, it is the error of the output for the recorrupted input, above the estimate's
    assert abs(estimate) < sigma2
    assert 0.5 * true_mse < estimate < 4 * true_mse


def test_r2r_runs_repeat_bit_for_bit_and_with_members(noisy_crop):
    a = restore(noisy_crop, steps=20, **KW)
    b = restore(noisy_crop, steps=20, **KW)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.losses, b.losses)
    two = restore(noisy_crop, steps=20, members=2, **KW)
    assert two.image.shape == a.image.shape and not np.array_equal(two.image, a.image)
    assert np.isfinite(two.losses).all()


def test_divergence_watch_keeps_four_estimates_and_stops_at_a_negative_divergence():
    watch = DivergenceWatch()
    assert watch.keep == 4
    # the first check keeps its estimate whatever its divergence (there is nothing else)
    assert not watch.check(10, torch.full((1, 2, 2), 1.0), -0.1)
    assert watch.describe() == "the net's output for the image at step 10"
    drawn = DivergenceWatch(draws=3)
    drawn.check(10, torch.zeros(1, 2, 2), 0.5, 1e-5)
    assert drawn.describe() == ("mean of the net's outputs for 3 recorrupted copies of the "
                                "image at step 10")
    for step, value, div in ((20, 2.0, 0.3), (30, 3.0, 0.2), (40, 4.0, 0.1), (50, 5.0, 0.05)):
        assert not watch.check(step, torch.full((1, 2, 2), value), div)
    assert watch.steps == [20, 30, 40, 50]
    # the mean of those from half the latest step on: 30, 40 and 50
    assert torch.allclose(watch.estimate, torch.full((1, 2, 2), 4.0))
    assert watch.describe().endswith("at steps 30, 40, 50")
    assert not watch.check(60, torch.full((1, 2, 2), 6.0), 0.01)
    assert torch.allclose(watch.estimate, torch.full((1, 2, 2), 4.5))  # 30 to 60
    assert watch.last == 0.01
    assert watch.check(70, torch.full((1, 2, 2), 9.0), 0.0)  # not positive: stop
    assert watch.last == 0.0
    assert watch.steps == [30, 40, 50, 60] and float(watch.estimate.mean()) == 4.5
    # without the stop it goes on keeping estimates
    keeps = DivergenceWatch(stop=False)
    for step in (10, 20, 30):
        assert not keeps.check(step, torch.full((1, 2, 2), float(step)), -1.0)
    assert keeps.steps == [10, 20, 30] and float(keeps.estimate.mean()) == 25.0


def test_divergence_watch_stops_where_the_two_estimates_drift_apart():
    """With draws, the gap between the output for the image and the estimate from its
    recorrupted copies: a stop once it exceeds 1.5 times its smallest value so far (here
    at the first check above it; the default waits for a second, the next test)."""
    watch = DivergenceWatch(draws=2, checks=1)
    assert watch.drift_ratio == 1.5
    gaps = (4e-5, 2e-5, 2.5e-5, 2.9e-5)  # falls, then rises, within 1.5 x the least
    for step, gap in zip((25, 50, 75, 100), gaps):
        assert not watch.check(step, torch.full((1, 2, 2), float(step)), 0.05, gap)
    assert watch.least_gap == 2e-5 and watch.reason is None
    assert watch.check(125, torch.zeros(1, 2, 2), 0.05, 3.1e-5)
    assert "drifted apart at step 125 (1.55 x their smallest" in watch.reason
    assert watch.steps == [25, 50, 75, 100]  # the drifted estimate is left out
    # with draws a negative divergence stops nothing (on smooth images it turns while the
    # fit still improves): the drift decides; it is still recorded
    other = DivergenceWatch(draws=2, checks=1)
    other.check(25, torch.zeros(1, 2, 2), 0.05, 1e-5)
    for step in (50, 75, 100):
        assert not other.check(step, torch.zeros(1, 2, 2), -0.01, 1e-5)
    assert other.last == -0.01 and other.steps == [25, 50, 75, 100] and other.reason is None
    assert other.check(125, torch.zeros(1, 2, 2), -0.02, 2e-5)
    assert "drifted apart at step 125 (2.00 x" in other.reason
    # the drift counts only once the fit's estimate of its error is below a tenth of the
    # noise variance (DRIFT_GATE): a net still building the image sets no reference
    assert DRIFT_GATE == 0.1
    gated = DivergenceWatch(draws=2, noise_var=0.01, checks=1)
    assert gated.gate_level == pytest.approx(0.001)
    assert not gated.check(25, torch.zeros(1, 2, 2), 0.05, 1e-5, fit=0.03)
    assert gated.least_gap is None and gated.opened_at is None and gated.last_gap == 1e-5
    assert not gated.check(50, torch.zeros(1, 2, 2), 0.05, 5e-5, fit=0.005)  # 5 x: no stop
    assert gated.opened_at is None  # beats the noisy image, not yet by 10 dB
    assert not gated.check(75, torch.zeros(1, 2, 2), 0.05, 6e-5, fit=0.0008)
    assert gated.opened_at == 75 and gated.least_gap == 6e-5
    assert not gated.check(100, torch.zeros(1, 2, 2), 0.05, 8e-5, fit=0.02)  # stays open
    assert gated.check(125, torch.zeros(1, 2, 2), 0.05, 9.5e-5, fit=0.0004)
    assert "1.58 x" in gated.reason
    # without a noise level there is no gate
    assert DivergenceWatch(draws=2).gate_level == float("inf")
    # a watch with draws needs the gap
    with pytest.raises(ValueError, match="gap: expected the drift"):
        DivergenceWatch(draws=2).check(25, torch.zeros(1, 2, 2), 0.05)
    # without the stop, or without draws (r2r_draws=0: the divergence decides), a growing
    # gap stops nothing and sets no reference
    for watch in (DivergenceWatch(draws=2, stop=False), DivergenceWatch()):
        for step, gap in ((25, 1e-5), (50, 1e-3)):
            assert not watch.check(step, torch.zeros(1, 2, 2), 0.05, gap)
    assert watch.least_gap is None and watch.last_gap == 1e-3


def test_the_drift_stop_waits_for_a_second_check_above_the_ratio():
    """By default (DRIFT_CHECKS) the drift stops the run at two checks in a row above 1.5
    x its smallest value: a passing spike does not end the run, and its estimate, held
    back meanwhile, is kept once the drift has come back; two in a row stop the run and
    leave both estimates out, as a stop at the first would have left that one out."""
    assert DRIFT_CHECKS == 2
    watch = DivergenceWatch(draws=2)
    assert watch.checks == 2
    for step, gap in ((25, 4e-5), (50, 2e-5), (75, 2.5e-5)):
        assert not watch.check(step, torch.full((1, 2, 2), float(step)), 0.05, gap)
    # a spike: 1.9 x, held back from the estimate (mean of 50 and 75, from half of 75 on)
    assert not watch.check(100, torch.full((1, 2, 2), 100.0), 0.05, 3.8e-5)
    assert watch.steps == [25, 50, 75] and [s for s, _, _ in watch.held] == [100]
    assert float(watch.estimate.mean()) == 62.5
    # the drift comes back: the held estimate is kept, before this check's
    assert not watch.check(125, torch.full((1, 2, 2), 125.0), 0.05, 2.6e-5)
    assert watch.steps == [50, 75, 100, 125] and not watch.held and watch.reason is None
    assert watch.least_gap == 2e-5 and float(watch.estimate.mean()) == 100.0  # 75 to 125
    # two checks in a row above: stop, both left out
    assert not watch.check(150, torch.full((1, 2, 2), 150.0), 0.05, 3.2e-5)
    assert watch.check(175, torch.full((1, 2, 2), 175.0), 0.05, 3.6e-5)
    assert "drifted apart at steps 150 and 175 (1.60 and 1.80 x their smallest" in watch.reason
    assert watch.steps == [50, 75, 100, 125] and float(watch.estimate.mean()) == 100.0
    assert "(left out" not in watch.describe()  # the reason says what was left out
    # a run that ends on one check above leaves it out and says so
    ends = DivergenceWatch(draws=2)
    for step, gap in ((25, 2e-5), (50, 2e-5), (75, 5e-5)):
        assert not ends.check(step, torch.full((1, 2, 2), float(step)), 0.05, gap)
    assert ends.steps == [25, 50] and ends.reason is None
    assert float(ends.estimate.mean()) == 37.5
    assert ends.describe().endswith(
        "at steps 25, 50 (left out: step 75, whose drift was 2.50 x its smallest, with no "
        "later check to say whether the fit overfits)")
    # without the stop nothing is held back
    keeps = DivergenceWatch(draws=2, stop=False)
    for step, gap in ((25, 2e-5), (50, 5e-5), (75, 6e-5)):
        assert not keeps.check(step, torch.zeros(1, 2, 2), 0.05, gap)
    assert keeps.steps == [25, 50, 75] and not keeps.held
    for bad in (0, 1.5, -1):
        with pytest.raises(ValueError, match="checks: expected a whole number of checks >= 1"):
            DivergenceWatch(draws=2, checks=bad)


def test_a_net_that_learns_the_recorruption_is_stopped():
    """A smooth image with little to learn: with a constant, large lr the net soon fits
    the recorruption (its divergence at the image turns negative) and the run stops there,
    keeping the estimates from before."""
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    clean = (0.3 + 0.4 * xx * yy).astype(np.float32)
    noisy = clean + np.random.default_rng(1).normal(0, 0.1, clean.shape).astype(np.float32)
    res = restore(noisy, steps=400, lr=0.01, lr_final=1.0, r2r_draws=0, reference=clean,
                  **KW)
    assert res.stop_reason.startswith("stopped: the net's divergence at the image turned "
                                      "negative"), res.stop_reason
    assert res.steps < 400 and res.best_step == res.steps - KW["snapshot_every"]
    assert res.psnr > _psnr(noisy, clean) + 3
    # auto_stop off: the same fit runs all its steps, and ends worse than where it stopped
    full = restore(noisy, steps=400, lr=0.01, lr_final=1.0, auto_stop=False, r2r_draws=0,
                   reference=clean, **KW)
    assert full.steps == 400 and full.stop_reason.startswith("reached the maximum")
    assert any("runs its 400 steps (auto_stop off)" in n for n in full.info.notes)
    assert full.psnr < res.psnr
    # with the draws (the default) the drift stops it, and what it keeps beats the end
    drawn = restore(noisy, steps=400, lr=0.01, lr_final=1.0, reference=clean, **KW)
    assert drawn.stop_reason.startswith("stopped: the net's outputs for the image and for "
                                        "recorrupted copies of it drifted apart"), (
        drawn.stop_reason)
    assert drawn.steps < 400 and drawn.psnr > _psnr(noisy, clean) + 3
    assert drawn.psnr > restore(noisy, steps=400, lr=0.01, lr_final=1.0, auto_stop=False,
                                reference=clean, **KW).psnr + 3
    # it stopped at the second of two checks in a row above the ratio; a run that ends on
    # the first of them (the same fit: the learning rate is constant) leaves that check
    # out as well, says why, and returns the same result
    found = re.search(r"drifted apart at steps (\d+) and (\d+) \(", drawn.stop_reason)
    assert found and int(found.group(2)) == drawn.steps, drawn.stop_reason
    first = int(found.group(1))
    ends = restore(noisy, steps=first, lr=0.01, lr_final=1.0, reference=clean, **KW)
    assert ends.stop_reason.startswith(f"reached the maximum of {first} steps")
    assert f"(left out: step {first}, whose drift was " in ends.stop_reason
    assert ends.best_step == drawn.best_step == first - KW["snapshot_every"]
    assert np.array_equal(ends.image, drawn.image)


def test_r2r_needs_every_pixel_and_a_valid_alpha(camera_crop):
    mask = np.zeros(camera_crop.shape, bool)
    mask[20:30, 20:30] = True
    with pytest.raises(ValueError, match=r"loss: 'r2r' .* mask"):
        restore(camera_crop, mask=mask, steps=5, loss="r2r", **KW)
    res = restore(np.where(mask, 0, camera_crop), mask=mask, steps=5, **KW)
    assert res.info.config.loss == "holdout"  # a mask: the hold-out fit fills it
    for bad in (0.0, -1.0, 11.0):
        with pytest.raises(ValueError, match="r2r_alpha"):
            make_config("dip", "fast", r2r_alpha=bad)
    with pytest.raises(ValueError, match=r"r2r_draws: expected an integer in \[0, 64\]"):
        make_config("dip", "fast", r2r_draws=-1)
    with pytest.raises(TypeError, match="r2r_draws: expected an integer"):
        make_config("dip", "fast", r2r_draws=1.5)
    with pytest.raises(ValueError, match="loss: method 'sgld'"):
        make_config("sgld", "fast", loss="r2r")


def test_the_estimate_from_recorrupted_copies_or_the_image(noisy_crop, camera_crop):
    """r2r_draws=0 keeps the net's output for the image; the default averages its outputs
    for two recorrupted copies: the same fit (the draws come from their own stream), a
    different estimate, and one that is repeatable."""
    runs = {d: restore(noisy_crop, steps=40, r2r_draws=d, reference=camera_crop, **KW)
            for d in (0, 2)}
    assert "the net's output for the image, averaged" in " ".join(runs[0].info.notes)
    assert runs[0].stop_reason.endswith("the image at steps 20, 30, 40")
    assert "for 2 recorrupted copies" in runs[2].stop_reason
    assert np.array_equal(runs[0].losses, runs[2].losses)  # the same fit
    assert not np.array_equal(runs[0].image, runs[2].image)
    assert abs(runs[0].psnr - runs[2].psnr) < 1.0
    again = restore(noisy_crop, steps=40, reference=camera_crop, **KW)
    assert np.array_equal(again.image, runs[2].image)


def test_presets_memory_and_fallback():
    r2r = make_config("dip", "fast")
    sure = make_config("dip", "fast", loss="sure")
    # one forward pass kept for the backward where SURE keeps two
    assert estimate_memory(r2r, (256, 256), 1) < 0.7 * estimate_memory(sure, (256, 256), 1)
    # the balanced preset: four R2R nets, SURE's settings where SURE is asked for
    balanced = make_config("dip", "balanced")
    assert balanced.loss == "r2r" and balanced.members == 4 and balanced.steps == r2r.steps
    assert make_config("dip", "balanced", loss="sure").steps == sure.steps
    # the fallback drops R2R's own settings but keeps what was chosen on top of them
    fallback = sure_fallback(make_config("dip", "fast", steps=50, r2r_alpha=0.7))
    assert fallback.loss == "mse" and fallback.steps == 50
    assert fallback.width == make_config("dip", "fast", masked=True, loss="mse").width
    assert sure_fallback(r2r).steps == make_config("dip", "fast", masked=True, loss="mse").steps


def test_shot_noise_and_clipping_checks_hold_for_r2r(camera_crop):
    rng = np.random.default_rng(0)
    counts = 100 + 2.0 * rng.poisson(100 * camera_crop) + rng.normal(0, 3, camera_crop.shape)
    res = restore(counts.astype(np.float32), steps=10, noise_model="gaussian", **KW)
    assert res.info.config.loss == "mse"
    assert any("noise variance grows with the signal" in n for n in res.info.notes)
    # the way out that the default's note names (meant for Gaussian noise misread as
    # growing, e.g. on strong texture): here only that these settings keep R2R on the
    # raw values
    auto = restore(counts.astype(np.float32), steps=10, **KW)
    assert "with sure_max_trend=0 as well, R2R runs on them" in auto.info.notes[0]
    raw = restore(counts.astype(np.float32), steps=10, noise_model="gaussian",
                  sure_max_trend=0, **KW)
    assert raw.info.config.loss == "r2r" and raw.info.noise is None
    assert not any("grows with the signal" in n for n in raw.info.notes)
    clipped = np.clip(camera_crop + rng.normal(0, 0.2, camera_crop.shape), 0, 1)
    res = restore(clipped.astype(np.float32), steps=5, **KW)
    notes = " ".join(res.info.notes)
    assert "loss: R2R: " in notes and "(clipped)" in notes


def test_photon_counts_are_stabilised_for_r2r_by_default(camera_crop):
    """The default noise model reads the noise growing with the signal and runs R2R and
    the second stage on the variance-stabilised data, in the image's units; Gaussian
    noise, a mask, SGLD and the papers' loss stay on the raw values."""
    rng = np.random.default_rng(0)
    clean = 100 + 2.0 * 30 * camera_crop  # 30 photons at the brightest pixel, gain 2
    counts = (100 + 2.0 * rng.poisson(30 * camera_crop)
              + rng.normal(0, 3, camera_crop.shape)).astype(np.float32)
    res = restore(counts, steps=60, reference=clean, **KW)
    assert res.info.config.loss == "r2r" and res.info.config.refine == "wiener"
    assert res.info.noise["model"] == "poisson-gaussian"
    assert sorted(res.info.noise["estimated"]) == ["gain", "offset", "sigma"]
    assert "noise_model='auto' chose 'poisson-gaussian'" in res.info.notes[0]
    assert any(n.startswith("refine: ") for n in res.info.notes)
    assert abs(float(res.image.mean()) - float(counts.mean())) < 2  # the raw units
    raw = restore(counts, steps=60, reference=clean, noise_model="gaussian", **KW)
    assert raw.info.noise is None and raw.info.config.loss == "mse"  # the fallback
    assert res.psnr > raw.psnr + 1
    # given detector parameters mean the transformation whatever the run
    given = restore(counts, steps=3, gain=2.0, read_noise=3.0, **KW)
    assert given.info.noise["estimated"] == [] and given.info.noise["gain"] == 2.0
    # Gaussian noise, a mask, SGLD and the papers' loss: no transformation
    gauss = (camera_crop + rng.normal(0, 0.1, camera_crop.shape)).astype(np.float32)
    assert restore(gauss, steps=3, **KW).info.noise is None
    mask = rng.random(counts.shape) < 0.2
    assert restore(counts, mask=mask, steps=3, **KW).info.noise is None
    assert restore(counts, method="sgld", steps=6, burn_in=2, thinning=2,
                   **KW).info.noise is None
    assert restore(counts, steps=3, loss="mse", **KW).info.noise is None
    with pytest.raises(ValueError, match="noise_model: expected one of 'auto', 'gaussian'"):
        restore(counts, steps=3, noise_model="photon", **KW)


def test_the_frames_of_a_stack_share_one_noise_model(camera_crop):
    """A stack restored frame by frame gets one noise model, by the majority of its
    frames, so that its frames are restored alike."""
    from napari_dip.core.api import choose_noise_model_for_frames, noise_model_for_frames

    rng = np.random.default_rng(0)
    counts = [(100 + 2.0 * rng.poisson(100 * camera_crop)
               + rng.normal(0, 3, camera_crop.shape)).astype(np.float32) for _ in range(2)]
    gauss = (camera_crop + rng.normal(0, 0.1, camera_crop.shape)).astype(np.float32)
    cfg = make_config("dip", "fast")
    assert choose_noise_model_for_frames([*counts, gauss], cfg) == "poisson-gaussian"
    assert choose_noise_model_for_frames([counts[0], gauss, gauss], cfg) == "gaussian"
    assert choose_noise_model_for_frames([counts[0]], cfg) == "auto"  # its run decides
    broken = counts[1].copy()
    broken[0, 0] = np.nan  # cannot be restored: no vote, its own run reports it
    assert choose_noise_model_for_frames([counts[0], broken, gauss], cfg) == "poisson-gaussian"
    assert choose_noise_model_for_frames(counts, cfg, noise_model="gaussian") == "gaussian"
    hole = np.zeros(gauss.shape, bool)
    hole[:4, :4] = True
    masks = [hole] * 2  # with masks the raw values stay
    assert choose_noise_model_for_frames(counts, cfg, masks=masks) == "gaussian"
    # iterate's keyword arguments, as the widget gives them
    assert noise_model_for_frames(counts, preset="fast", seed=0, steps=5) == "poisson-gaussian"
    assert noise_model_for_frames(counts, preset="fast", loss="mse") == "gaussian"


def test_the_frames_of_a_stack_share_one_r2r_strength(noisy_crop, camera_crop):
    """Frames restored one by one get one R2R strength: the median of their ratios."""
    from napari_dip.core.api import choose_r2r_alpha_for_frames, r2r_alpha_for_frames

    rng = np.random.default_rng(1)
    faint = (0.5 + 0.1 * (camera_crop - camera_crop.mean())
             + rng.normal(0, 25 / 255, camera_crop.shape)).astype(np.float32)
    cfg = make_config("dip", "fast")
    assert choose_r2r_alpha_for_frames([noisy_crop], cfg) is None  # its run decides
    assert choose_r2r_alpha_for_frames([noisy_crop, noisy_crop, faint], cfg) == 0.5
    assert choose_r2r_alpha_for_frames([faint, faint, noisy_crop], cfg) == 2.0
    broken = faint.copy()
    broken[0, 0] = np.nan  # cannot be restored: not read, its own run reports it
    assert choose_r2r_alpha_for_frames([noisy_crop, broken, broken], cfg) == 0.5
    assert choose_r2r_alpha_for_frames([faint, faint],
                                       make_config("dip", "fast", r2r_alpha=0.7)) == 0.7
    assert choose_r2r_alpha_for_frames([faint, faint], make_config("dip", "fast",
                                                                   loss="mse")) is None
    # iterate's keyword arguments, as the widget gives them
    assert r2r_alpha_for_frames([faint, faint], preset="fast", seed=0, steps=5) == 2.0
    assert r2r_alpha_for_frames([faint, faint], preset="fast", loss="sure") is None


def test_r2r_in_tiles(noisy_crop, camera_crop):
    tiled = restore(noisy_crop, steps=40, tile_size=32, tile_overlap=8, reference=camera_crop,
                    **KW)
    assert tiled.info.tiles is not None and tiled.info.tiles["tiles"] > 1
    assert tiled.image.shape == noisy_crop.shape
    assert tiled.psnr > _psnr(noisy_crop, camera_crop) + 2
    # the tiles share one recorruption strength, read from the whole image, as a run
    # without tiles reads it; the tiles are given it and do not read their own
    notes = " ".join(tiled.info.notes)
    shared = re.search(r"tiles: R2R's alpha ([0-9.]+) for every tile, set by the whole "
                       r"image's variance, ([0-9.]+) x", notes)
    assert shared is not None and "alpha 0.5, set by the image's variance" not in notes
    whole = restore(noisy_crop, steps=1, refine="off", **KW)
    assert (f"alpha {shared.group(1)}, set by the image's variance, {shared.group(2)} x"
            in " ".join(whole.info.notes))
    # a faint half would read a low ratio alone, but every tile gets the whole image's
    # strength (the notes end with the last tile's, which lies in the faint half)
    half = noisy_crop.copy()
    half[:, 32:] = 0.5 + 0.05 * (camera_crop[:, 32:] - 0.5) + (noisy_crop - camera_crop)[:, 32:]
    right = half[None, :, 32:].astype(np.float64)
    right_var = image_noise_variance(right, make_config("dip", "fast"))[0]
    assert r2r_strength(right, right_var)[0] == 2.0
    mixed = restore(half, steps=10, tile_size=32, tile_overlap=8, **KW)
    notes = " ".join(mixed.info.notes)
    alpha = float(re.search(r"tiles: R2R's alpha ([0-9.]+) for every tile", notes).group(1))
    given = re.findall(r"recorrupted-to-recorrupted, alpha ([0-9.]+)\)", notes)
    assert alpha < 2.0 and given and abs(float(given[-1]) - alpha) < 0.01 * alpha
