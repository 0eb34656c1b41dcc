"""Ending a fit early: ``time_limit`` and ``finish``. The run still finishes as at its last
step (the stop rule's estimate, the second stage), on tiny images and nets."""

from __future__ import annotations

import json
import re
import time

import numpy as np
import pytest
import tifffile

from napari_dip import iterate, make_config, restore
from napari_dip.cli import main

SMALL = dict(width=8, scales=2, snapshot_every=5)


def noisy_image(shape=(32, 32), seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    clean = 0.5 + 0.3 * np.sin(xx / 4.0) * np.cos(yy / 6.0)
    return (clean + rng.normal(0, 0.1, shape)).astype(np.float32), clean.astype(np.float32)


def after(n):
    """A ``finish`` that turns true at its n-th call."""
    calls = []

    def finish():
        calls.append(1)
        return len(calls) >= n
    return finish


def test_finish_equals_a_run_of_that_many_steps():
    """With a constant learning rate, a fit ended on request at step 20 is the run of 20
    steps: the same estimate, the same second stage, bit for bit on the CPU."""
    noisy, _ = noisy_image()
    opts = dict(preset="fast", seed=3, device="cpu", lr_final=1.0, auto_stop=False, **SMALL)
    ended = list(iterate(noisy, steps=400, finish=after(4), **opts))
    short = list(iterate(noisy, steps=20, **opts))
    final, whole = ended[-1], short[-1]
    assert final.done and final.step == 20
    assert final.stop_reason.startswith("ended on request after 20 of 400 steps; mean of")
    assert whole.stop_reason.startswith("reached the maximum of 20 steps; mean of")
    assert any(n.startswith("refine: Wiener") for n in final.info.notes)
    np.testing.assert_array_equal(final.image, whole.image)
    # the snapshot before the final one is the net's estimate that went into the stage
    np.testing.assert_array_equal(ended[-2].image, short[-2].image)
    assert not np.array_equal(final.image, ended[-2].image)


def test_time_limit_ends_the_fit_and_finishes():
    noisy, clean = noisy_image()
    res = restore(noisy, preset="fast", seed=0, device="cpu", steps=100_000,
                  time_limit=1e-3, reference=clean, **SMALL)
    # the limit has passed at the first snapshot: the fit ends there
    assert res.steps == 5
    assert res.stop_reason.startswith("ended at the time limit (0.001 s) after 5 of 100000 "
                                      "steps")
    assert res.image.shape == noisy.shape and res.image.dtype == noisy.dtype
    assert np.isfinite(res.image).all()
    assert any(n.startswith("refine: Wiener") for n in res.metadata()["notes"])
    assert res.metadata()["config"]["time_limit"] == 1e-3


def test_time_limit_not_reached_changes_nothing():
    noisy, _ = noisy_image()
    opts = dict(preset="fast", seed=1, device="cpu", steps=20, **SMALL)
    a = restore(noisy, **opts)
    b = restore(noisy, time_limit=3600.0, **opts)
    np.testing.assert_array_equal(a.image, b.image)
    assert a.stop_reason == b.stop_reason


def test_papers_loss_ended_before_its_stop_rule_says_so():
    noisy, _ = noisy_image()
    res = restore(noisy, preset="quality", loss="mse", seed=0, device="cpu", steps=5000,
                  finish=after(2), **SMALL)
    assert res.steps == 10
    assert res.stop_reason == ("ended on request after 10 of 5000 steps before the estimate "
                               "fit the image to the noise level (discrepancy rule); last "
                               "estimate")
    # the windowed-variance rule (with a mask) returns its best estimate so far
    mask = np.zeros(noisy.shape, bool)
    mask[10:14, 10:14] = True
    res = restore(noisy, mask=mask, preset="quality", loss="mse", seed=0, device="cpu",
                  steps=5000, stop_window=4, stop_warmup=0, finish=after(4), **SMALL)
    assert res.steps == 20
    assert re.fullmatch(r"ended on request after 20 of 5000 steps; estimate of step \d+ "
                        r"\(minimum of the windowed output variance\)", res.stop_reason)


def test_inpainting_ended_early_still_blends_its_gaps():
    noisy, _ = noisy_image()
    mask = np.zeros(noisy.shape, bool)
    mask[8:20, 10:22] = True
    res = restore(noisy, mask=mask, preset="fast", seed=0, device="cpu", steps=5000,
                  finish=after(2), snapshot_every=5, width=8, scales=2)
    assert res.steps == 10
    assert res.stop_reason.startswith("ended on request after 10 of 5000 steps")
    assert any(n.startswith("gap blend: the gaps are") for n in res.metadata()["notes"])
    assert np.isfinite(res.image).all()


def test_sgld_ended_before_its_burn_in_says_so():
    noisy, _ = noisy_image()
    res = restore(noisy, method="sgld", preset="fast", seed=0, device="cpu", steps=200,
                  burn_in=100, finish=after(1), **SMALL)
    assert res.steps == 5 and res.variance is None
    assert "no samples yet (burn-in 100 steps)" in res.stop_reason
    later = restore(noisy, method="sgld", preset="fast", seed=0, device="cpu", steps=200,
                    burn_in=10, thinning=2, finish=after(4), **SMALL)
    assert later.steps == 20 and later.variance is not None
    assert "posterior mean of 5 samples" in later.stop_reason


def test_tiles_share_the_time_limit():
    noisy, _ = noisy_image((64, 64))
    res = restore(noisy, preset="fast", seed=0, device="cpu", steps=100_000, tile_size=32,
                  tile_overlap=8, time_limit=1e-3, **SMALL)
    tiles = res.metadata()["tiling"]["tiles"]
    assert tiles > 1 and res.steps == 5 * tiles  # each tile ends at its first snapshot
    assert res.stop_reason.startswith(f"{tiles} tiles, each: ended at its share of the time "
                                      f"limit after 5 of 100000 steps")
    assert res.image.shape == noisy.shape and np.isfinite(res.image).all()


def test_tiles_split_the_time_left(monkeypatch):
    """Each tile's deadline is the time left divided by the tiles left: the first gets a
    share of the whole limit, the last the rest of it."""
    from napari_dip.core import engine, tiling

    deadlines = []
    real_run = engine.run

    def recording_run(*args, deadline=None, **kwargs):
        deadlines.append((time.perf_counter(), deadline))
        return real_run(*args, deadline=deadline, **kwargs)

    monkeypatch.setattr(tiling.engine, "run", recording_run)
    noisy, _ = noisy_image((64, 64))
    started = time.perf_counter()
    res = restore(noisy, preset="fast", seed=0, device="cpu", steps=10, tile_size=32,
                  tile_overlap=8, time_limit=1000.0, **SMALL)
    n = res.metadata()["tiling"]["tiles"]
    assert len(deadlines) == n > 2
    end = deadlines[-1][1]  # the last tile gets all that is left
    assert started < end - 1000.0 < started + 5.0
    for k, (now, deadline) in enumerate(deadlines):
        assert deadline == pytest.approx(now + (end - now) / (n - k), abs=1e-3)
    assert res.stop_reason.startswith(f"{n} tiles, each: reached the maximum of 10 steps")


def test_finish_in_a_tiled_run_keeps_the_tiles_alike():
    """The tile in progress ends on request; the later tiles end at the same step."""
    noisy, _ = noisy_image((64, 64))
    res = restore(noisy, preset="fast", seed=0, device="cpu", steps=100_000, tile_size=32,
                  tile_overlap=8, finish=after(2), **SMALL)
    tiles = res.metadata()["tiling"]["tiles"]
    assert tiles > 1 and res.steps == 10 * tiles
    assert res.stop_reason.startswith(f"{tiles} tiles, each: ended on request after 10 of "
                                      f"100000 steps")


def test_bad_values_are_refused_by_name():
    noisy, _ = noisy_image()
    with pytest.raises(ValueError, match="time_limit: expected a finite number >= 0.0"):
        iterate(noisy, preset="fast", time_limit=-1.0)
    with pytest.raises(TypeError, match="time_limit: expected a number"):
        make_config("dip", "fast", time_limit="60")
    with pytest.raises(TypeError, match="finish: expected a function"):
        iterate(noisy, preset="fast", finish=True)


def test_cli_time_limit(tmp_path, capsys):
    noisy, _ = noisy_image()
    src = tmp_path / "in.tif"
    tifffile.imwrite(src, noisy)
    out = tmp_path / "out"
    code = main([str(src), "-o", str(out), "--preset", "fast", "--seed", "0",
                 "--device", "cpu", "--steps", "100000", "--time-limit", "0.001",
                 "--option", "width=8", "--option", "scales=2",
                 "--option", "snapshot_every=5", "-q"])
    assert code == 0
    sidecars = list(out.glob("*.json"))
    assert len(sidecars) == 1
    md = json.loads(sidecars[0].read_text())
    assert md["config"]["time_limit"] == 0.001
    assert md["stop_reason"].startswith("ended at the time limit (0.001 s) after 5 of")
    assert main([str(src), "-o", str(tmp_path / "bad"), "--time-limit", "0"]) == 2
    assert "--time-limit" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
