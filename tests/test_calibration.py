"""SGLD with a mask: known pixels held out of the fit calibrate the std in the gaps."""

import re

import numpy as np
import pytest

from napari_dip import make_config, restore
from napari_dip.core import arrays
from napari_dip.core.engine import MIN_HELD_OUT, held_out


def _image(size=32):
    """scikit-image's camera resized to size x size in [0, 1], and a mask of half its
    pixels (True: missing) drawn with default_rng(0), as tests and benchmarks often draw
    theirs."""
    from skimage import data, transform

    img = transform.resize(data.camera() / 255.0, (size, size), anti_aliasing=True)
    missing = np.random.default_rng(0).random(img.shape) < 0.5
    return img, missing


def test_held_out_pixels_are_known_and_drawn_apart_from_the_mask():
    img, missing = _image(size=64)
    prep = arrays.prepare(np.where(missing, 0.0, img), mask=missing)
    cfg = make_config("sgld", "fast", masked=True)
    assert cfg.calibration_share == 0.05
    held = held_out(cfg, prep, seed=0)
    assert held.shape == prep.known.shape and held.dtype == bool
    assert not (held & (prep.known == 0)).any()  # only known pixels are held out
    # a mask drawn with default_rng(0) must not be the draw: about 5 % of the known ones
    share = held.sum() / (prep.known > 0).sum()
    assert 0.02 < share < 0.09
    assert np.array_equal(held, held_out(cfg, prep, seed=0))  # the seed decides
    assert not np.array_equal(held, held_out(cfg, prep, seed=1))
    # off without a mask, with a share of 0, and with too few pixels to hold out
    assert held_out(cfg, arrays.prepare(img), seed=0) is None
    assert held_out(make_config("sgld", "fast", calibration_share=0.0), prep, seed=0) is None
    tiny = arrays.prepare(np.where(missing[:8, :8], 0.0, img[:8, :8]), mask=missing[:8, :8])
    assert 0 < (tiny.known > 0).sum() * cfg.calibration_share < MIN_HELD_OUT
    assert held_out(cfg, tiny, seed=0) is None


def test_the_std_in_the_gaps_matches_the_error_on_held_out_pixels():
    img, missing = _image()
    observed = np.where(missing, 0.0, img)
    res = restore(observed, mask=missing, method="sgld", preset="fast", steps=200, seed=0,
                  device="cpu", calibration_share=0.2, keep_known=False)
    notes = [n for n in res.info.notes if n.startswith("uncertainty:")]
    assert len(notes) == 1, res.info.notes
    prep = arrays.prepare(observed, mask=missing)
    held = held_out(res.info.config, prep, seed=0)[0]
    assert f"{int(held.sum())} known pixels (20%) held out of the fit" in notes[0]
    var = np.asarray(res.std, np.float64) ** 2
    err2 = (np.asarray(res.image, np.float64) - img) ** 2
    noise = arrays.noise_variance(prep.data, prep.known) * (prep.hi - prep.lo) ** 2
    found = re.search(r"is ([0-9.e+-]+) x their posterior variance", notes[0])
    ratio = float(found.group(1))
    # the chain's std is too small for the pixels the fit does not see: scaled up, so that
    # the held-out pixels' variance is their error less the noise
    assert "multiplied by" in notes[0] and ratio > 1
    assert var[held].mean() == pytest.approx(err2[held].mean() - noise, rel=1e-3)
    factor = float(re.search(r"multiplied by ([0-9.e+-]+)", notes[0]).group(1))
    assert factor == pytest.approx(ratio, rel=1e-2)


def test_calibration_is_off_without_a_mask_and_in_the_papers_settings():
    img, missing = _image(size=24)
    res = restore(img, method="sgld", preset="fast", steps=40, seed=0, device="cpu")
    assert not any(n.startswith("uncertainty:") for n in res.info.notes)
    assert make_config("sgld", "quality").calibration_share == 0.0
    assert make_config("sgld", "balanced").calibration_share == 0.05
    with pytest.raises(ValueError, match="calibration_share"):
        make_config("sgld", "fast", calibration_share=0.9)
