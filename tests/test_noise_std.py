"""A known noise level (``noise_std``): every part of a run takes it instead of reading the
noise from the image, it says the noise is Gaussian, and it reaches the tiles, the command
line and the sidecar."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import tifffile

from napari_dip import make_config, restore
from napari_dip.cli import main
from napari_dip.core import arrays, engine
from napari_dip.core.api import choose_noise_model
from napari_dip.core.config import config_from_json

KW = dict(preset="fast", seed=0, device="cpu", steps=20, width=8, scales=2)


def _stds(notes, prefix):
    """The noise stds (of the data range) that the notes starting with ``prefix`` give."""
    found = [re.search(r"noise std ([0-9.e-]+) of the data range", n)
             for n in notes if n.startswith(prefix)]
    return [float(m.group(1)) for m in found if m]


def _noisy(clean, sigma, seed):
    """``clean`` with Gaussian noise of std ``sigma`` (float32), and its value range."""
    noisy = (clean + np.random.default_rng(seed).normal(0, sigma, clean.shape)
             ).astype(np.float32)
    return noisy, float(noisy.max() - noisy.min())


def _texture(shape=(48, 48), seed=0):
    """A clean image whose finest scale is noise-like (the estimate reads it as noise)."""
    rng = np.random.default_rng(seed)
    return np.clip(0.5 + 0.08 * rng.standard_normal(shape), 0.0, 1.0)


def test_the_config_takes_a_positive_std_or_zero_and_keeps_it():
    assert make_config("dip", "fast").noise_std == 0.0  # estimated from the image
    cfg = make_config("dip", "fast", noise_std=25)
    assert cfg.noise_std == 25.0 and config_from_json(cfg.to_json()) == cfg
    assert make_config("sgld", "fast", noise_std=0.1).noise_std == 0.1
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="noise_std: expected a finite number >= 0"):
            make_config("dip", "fast", noise_std=bad)
    with pytest.raises(TypeError, match="noise_std: expected a number"):
        make_config("dip", "fast", noise_std="25")


def test_the_given_std_is_in_the_images_units(camera_crop):
    prep = arrays.prepare((camera_crop * 200 + 20).astype(np.float32))
    span = prep.hi - prep.lo
    cfg = make_config("dip", "fast", noise_std=10)
    assert engine.given_noise_variance(prep, cfg) == pytest.approx((10 / span) ** 2)
    assert engine.given_noise_variance(prep, make_config("dip", "fast")) is None
    # a tile carries its image's value in its own (normalised) units
    tile = arrays.Prepared(data=prep.data[:, :16, :16], known=None, reference=None, lo=0.0,
                           hi=1.0, shape=(1, 16, 16), dtype=np.dtype(np.float32),
                           channel_axis=0, ndim_spatial=2, noise_std=0.05)
    assert engine.given_noise_variance(tile, cfg) == pytest.approx(0.0025)


def test_every_part_of_a_run_takes_the_given_std():
    clean = _texture()
    sigma = 0.02
    noisy, span = _noisy(clean, sigma, 1)
    read = restore(noisy, **KW)
    given = restore(noisy, noise_std=sigma, **KW)
    est = _stds(read.info.notes, "loss: R2R")[0]
    assert any("estimated from the image" in n for n in read.info.notes if n.startswith("loss"))
    # the texture reads as noise: the estimate is well above the true level ...
    assert est > 2 * sigma / span
    # ... and the given level is used instead, by the loss and by the second stage
    for prefix in ("loss: R2R", "refine: Wiener"):
        (std,) = _stds(given.info.notes, prefix)
        assert std == pytest.approx(sigma / span, rel=5e-3)
        assert "given: noise_std" in next(n for n in given.info.notes if n.startswith(prefix))
    assert given.info.config.noise_std == sigma
    # the smaller level keeps more of the texture: a result closer to the clean image
    err = lambda r: float(np.mean((r.image - clean) ** 2))  # noqa: E731
    assert err(given) < err(read)


def test_the_papers_loss_stops_at_the_given_level(camera_crop):
    noisy, span = _noisy(camera_crop, 0.1, 2)
    res = restore(noisy, loss="mse", noise_std=0.05, **{**KW, "steps": 10})
    note = next(n for n in res.info.notes if n.startswith("stop rule: discrepancy"))
    assert "given: noise_std" in note
    assert _stds([note], "stop rule")[0] == pytest.approx(0.05 / span, rel=5e-3)


def test_sure_the_hold_out_blend_and_sgld_take_it(camera_crop):
    noisy, span = _noisy(camera_crop, 0.1, 4)
    sure = restore(noisy, loss="sure", noise_std=0.05, **{**KW, "steps": 4})
    note = next(n for n in sure.info.notes if n.startswith("loss: SURE"))
    assert "given: noise_std" in note and _stds([note], "loss")[0] == pytest.approx(
        0.05 / span, rel=5e-3)
    # the hold-out fit blends the known pixels with their prediction by the noise level
    mask = np.zeros(noisy.shape, bool)
    mask[20:30, 20:30] = True
    hold = restore(noisy, mask=mask, noise_std=0.05, **{**KW, "steps": 20})
    note = next(n for n in hold.info.notes if "the known pixels are" in n)
    found = re.search(r"noise variance ([0-9.e-]+), given: noise_std", note)
    assert found and float(found.group(1)) == pytest.approx((0.05 / span) ** 2, rel=1e-2)
    # SGLD's calibration (with a mask) takes the noise out of the held-out pixels' error:
    # a larger given level leaves less error to compare with the posterior variance
    kw = dict(method="sgld", preset="fast", seed=0, device="cpu", steps=30, burn_in=10,
              thinning=5, width=8, scales=2, calibration_share=0.1)
    ratios = []
    for std in (0.01, 0.09):
        res = restore(noisy, mask=mask, noise_std=std, **kw)
        note = next(n for n in res.info.notes if n.startswith("uncertainty:"))
        ratios.append(float(re.search(r"is ([0-9.e+-]+) x their posterior", note).group(1)))
    assert ratios[1] < ratios[0]


def test_a_given_std_means_gaussian_noise():
    rng = np.random.default_rng(0)
    ramp = np.tile(np.linspace(0.0, 1.0, 48), (48, 1))
    counts = (100 + 2 * rng.poisson(100 * ramp) + rng.normal(0, 3, ramp.shape))
    prep = arrays.prepare(counts.astype(np.float32))
    fast = make_config("dip", "fast")
    assert choose_noise_model(prep, fast, "auto")[0] == "poisson-gaussian"  # the check
    cfg = fast.replace(noise_std=5.0)
    assert choose_noise_model(prep, cfg, "auto") == ("gaussian", None)  # no check
    # and the engine's own check for growing noise is skipped too: R2R runs
    assert engine.fallback_reason(prep, fast, 0.01) is not None
    assert engine.fallback_reason(prep, cfg, 0.01) is None
    res = restore(counts.astype(np.float32), noise_std=5.0, **KW)
    assert res.info.config.loss == "r2r" and res.info.noise is None
    for model, extra in (("poisson-gaussian", {}), ("auto", {"gain": 2.0}),
                         ("auto", {"read_noise": 3.0})):
        with pytest.raises(ValueError, match="noise_std: a known std of Gaussian noise"):
            restore(counts.astype(np.float32), noise_std=5.0, noise_model=model, **extra,
                    **KW)


def test_the_tiles_of_an_image_share_its_given_std(camera_crop):
    noisy, span = _noisy(camera_crop * 1000, 30, 3)
    # a level other than the true one, so that a tile reading its own would not pass
    res = restore(noisy, noise_std=15, tile_size=32, tile_overlap=8, **KW)
    assert res.info.tiles is not None
    (note,) = [n for n in res.info.notes if n.startswith("loss: R2R")]  # the last tile's
    assert "(given: noise_std)" in note
    assert _stds([note], "loss")[0] == pytest.approx(15 / span, rel=5e-3)


def test_the_run_reports_the_level_it_used(camera_crop):
    """``info.noise_std`` (and the metadata's "noise_std"): the level a run used, in the
    image's units, given or read; none where the tiles read their own or the data were
    stabilised."""
    noisy, _ = _noisy(camera_crop * 200, 10, 5)
    prep = arrays.prepare(noisy)
    var, _ = engine.image_noise_variance(prep.data, make_config("dip", "fast"))
    read = restore(noisy, **KW)
    assert read.info.noise_std == pytest.approx(np.sqrt(var) * (prep.hi - prep.lo))
    assert read.metadata()["noise_std"] == read.info.noise_std
    given = restore(noisy, noise_std=7.5, **KW)
    assert given.info.noise_std == pytest.approx(7.5)
    tiles = dict(tile_size=32, tile_overlap=8)
    assert restore(noisy, **tiles, **KW).info.noise_std is None  # each tile reads its own
    assert restore(noisy, noise_std=7.5, **tiles, **KW).info.noise_std == pytest.approx(7.5)
    stable = restore(noisy - noisy.min(), noise_model="poisson-gaussian", **KW)
    assert stable.info.noise_std is None and "noise_std" not in stable.metadata()


def test_the_command_line_gives_it_and_the_sidecar_keeps_it(tmp_path, capsys):
    rng = np.random.default_rng(0)
    img = np.clip(120 + 40 * rng.standard_normal((32, 32)), 0, 255).astype(np.uint8)
    src = tmp_path / "a.tif"
    tifffile.imwrite(src, img, photometric="minisblack")
    fast = ["--preset", "fast", "--steps", "10", "--option", "width=8", "--option",
            "scales=2", "--threads", "1", "--device", "cpu"]
    assert main([str(src), "-o", str(tmp_path / "out"), *fast, "--noise-std", "12"]) == 0
    side = json.loads((tmp_path / "out" / "a_dip.json").read_text())
    assert side["config"]["noise_std"] == 12.0
    assert any("given: noise_std" in n for n in side["notes"])
    # the sidecar repeats it
    assert main([str(src), "-o", str(tmp_path / "again"), "--config",
                 str(tmp_path / "out" / "a_dip.json")]) == 0
    again = json.loads((tmp_path / "again" / "a_dip.json").read_text())
    assert again["config"]["noise_std"] == 12.0
    assert side["noise_std"] == 12.0  # the level the run used, as given
    # a stack's frames each read their own level: one per frame, none for the whole
    stack = tmp_path / "stack.tif"
    frames = np.stack([img, np.clip(img.astype(float) * 0.5 + 40, 0, 255).astype(np.uint8)])
    tifffile.imwrite(stack, frames, photometric="minisblack")
    assert main([str(stack), "-o", str(tmp_path / "frames"), *fast, "--stack",
                 "frames"]) == 0
    side = json.loads((tmp_path / "frames" / "stack_dip.json").read_text())
    levels = [f["noise_std"] for f in side["frames"]]
    assert "noise_std" not in side and len(levels) == 2 and levels[0] != levels[1]
    capsys.readouterr()
    for extra in (["--noise-model", "poisson-gaussian"], ["--gain", "2"]):
        assert main([str(src), "-o", str(tmp_path / "bad"), *fast, "--noise-std", "12",
                     *extra]) == 2
        assert "--noise-std" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    assert main([str(src), "-o", str(tmp_path / "bad"), *fast, "--noise-std", "0"]) == 2
    assert "--noise-std" in capsys.readouterr().err
