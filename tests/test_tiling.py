"""Tiling, the memory model and the out-of-memory fallback (issue: large inputs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_dip import iterate, restore
from napari_dip.core import engine, tiling
from napari_dip.core.config import make_config

TINY = dict(preset="fast", width=8, seed=0)


def _noisy(shape=(48, 80), sigma=0.1, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    clean = (0.5 + 0.3 * np.sin(xx / 7.0) * np.cos(yy / 9.0)).astype(np.float32)
    return clean, (clean + rng.normal(0, sigma, shape)).astype(np.float32)


@pytest.mark.parametrize("spatial, tile, overlap", [
    ((100,), 32, 8), ((64, 80), 32, 16), ((50, 70), 24, 0), ((12, 40, 30), 16, 4),
    ((40, 40), 64, 8),
])
def test_blending_weights_sum_to_one_and_reproduce_a_field(spatial, tile, overlap):
    plan = tiling.plan_tiles(spatial, tile, overlap)
    field = np.random.default_rng(1).random((2, *spatial)).astype(np.float32)
    mosaic = tiling.Mosaic(plan, 2)
    covered = np.zeros(spatial, int)
    for t in plan.tiles:
        assert all(e <= tile for e in t.shape)
        mosaic.add(t, field[(slice(None),) + t.slices])
        covered[t.slices] += 1
    assert covered.min() >= 1
    np.testing.assert_allclose(mosaic.weight, 1.0, atol=1e-5)
    np.testing.assert_allclose(mosaic.result(), field, atol=1e-5)


def test_neighbouring_tiles_overlap_by_at_least_the_overlap():
    plan = tiling.plan_tiles((300, 77), 64, 16)
    for starts, size in zip(plan.starts, (300, 77)):
        if len(starts) == 1:
            continue
        assert starts[0] == 0 and starts[-1] + 64 == size
        assert all(b - a <= 64 - 16 for a, b in zip(starts, starts[1:]))


def test_blend_of_two_different_tiles_is_a_smooth_ramp():
    # tiles whose results disagree (0 and 1): the blend must climb gradually, never jump
    plan = tiling.plan_tiles((8, 100), (8, 60), 20)
    assert len(plan) == 2
    mosaic = tiling.Mosaic(plan, 1)
    for t, value in zip(plan.tiles, (0.0, 1.0)):
        mosaic.add(t, np.full((1, *t.shape), value, np.float32))
    row = mosaic.result()[0, 0]
    steps = np.diff(row)
    assert row[0] == 0 and row[-1] == 1 and (steps >= -1e-7).all()
    assert steps.max() <= np.pi / (2 * 20) + 1e-6  # raised cosine over 20 pixels


def test_plan_rejects_bad_sizes_naming_the_argument():
    with pytest.raises(ValueError, match="tile_overlap"):
        tiling.plan_tiles((100, 100), 32, 32)
    with pytest.raises(ValueError, match="tile_size"):
        tiling.plan_tiles((100, 100), (32,), 8)
    with pytest.raises(ValueError, match="tile_size"):
        make_config("dip", "fast", tile_size=8)
    with pytest.raises(ValueError, match="tile_overlap"):
        make_config("dip", "fast", tile_size=64, tile_overlap=32)


def test_memory_estimate_grows_with_pixels_and_width_and_drives_the_plan():
    cfg = make_config("dip", "quality")
    small = tiling.estimate_memory(cfg, (256, 256), 3)
    big = tiling.estimate_memory(cfg, (512, 512), 3)
    assert 3.5 * small < big < 4.5 * small
    assert tiling.estimate_memory(cfg.replace(width=64), (512, 512), 3) < big
    assert tiling.estimate_memory(cfg.replace(precision="bfloat16"), (512, 512), 3) < big
    # the papers' net at 512 x 512 is known to fit in a few GiB, at 4096 x 4096 it does not
    assert 1.5 * 2**30 < big < 4 * 2**30
    assert tiling.choose_tile(cfg, (512, 512), 3, 24 * 2**30) is None
    edge = tiling.choose_tile(cfg, (4096, 4096), 3, 24 * 2**30)
    assert edge is not None and edge % 32 == 0
    assert tiling.estimate_memory(cfg, (edge, edge), 3) <= 24 * 2**30
    # a 512 x 512 x 64 volume: tiles in Y and X, the 64 planes kept whole
    edge3 = tiling.choose_tile(cfg, (64, 512, 512), 1, 24 * 2**30)
    assert edge3 is not None and 64 <= edge3 < 512


def test_impossible_budget_is_refused_before_the_run_naming_the_argument():
    _, noisy = _noisy()
    with pytest.raises(ValueError, match="memory_budget"):
        iterate(noisy, memory_budget=1e-6, **TINY)
    with pytest.raises(ValueError, match="memory_budget"):
        iterate(noisy, memory_budget=-1, **TINY)
    with pytest.raises(TypeError, match="memory_budget"):
        iterate(noisy, memory_budget="lots", **TINY)


def test_tiled_restore_keeps_shape_dtype_and_reports_the_plan():
    clean, noisy = _noisy()
    noisy16 = np.clip(noisy * 60000, 0, 65535).astype(np.uint16)
    res = restore(noisy16, steps=40, tile_size=32, tile_overlap=8, auto_stop=False, **TINY)
    assert res.image.shape == noisy16.shape and res.image.dtype == np.uint16
    assert res.info.tiles == {"tiles": 6, "tile_shape": [32, 32], "overlap": 8}
    assert res.steps == 6 * 40 and len(res.losses) == res.steps  # every step's loss
    assert "6 tiles" in res.stop_reason
    meta = res.metadata()
    assert meta["tiling"]["tiles"] == 6 and meta["config"]["tile_size"] == 32


def test_tiled_restore_denoises_without_seams_and_repeats_with_a_seed():
    clean, noisy = _noisy()
    snaps = list(iterate(noisy, steps=60, tile_size=32, tile_overlap=12, reference=clean,
                         **TINY))
    res = snaps[-1]
    assert res.done and res.tiles == 6
    assert [s.tile for s in snaps] == sorted(s.tile for s in snaps)
    # the steps never go back (a tile's estimate before its second stage repeats a step)
    assert all(a.step <= b.step for a, b in zip(snaps, snaps[1:]))
    assert len({s.step for s in snaps}) >= len(snaps) - 6
    assert res.psnr > engine.psnr(noisy, clean) + 3
    # no seams: the jump across the centre of every overlap is no larger than the jumps
    # next to it (the restored image is smooth where the tiles meet)
    plan = tiling.plan_tiles(noisy.shape, 32, 12)
    for axis, starts in enumerate(plan.starts):
        img = res.image if axis == 0 else res.image.T
        jumps = np.abs(np.diff(img, axis=0)).mean(1)
        for a, b in zip(starts, starts[1:]):
            centre = (b + a + 32) // 2 - 1
            near = np.r_[jumps[centre - 6:centre - 1], jumps[centre + 2:centre + 7]]
            assert jumps[centre] < 1.5 * near.mean() + 1e-3, (axis, centre)
    again = restore(noisy, steps=60, tile_size=32, tile_overlap=12, **TINY)
    np.testing.assert_array_equal(again.image, res.image)


def test_small_budget_tiles_automatically():
    clean, noisy = _noisy((64, 64))
    cfg = make_config("dip", "fast", width=8)
    whole = tiling.estimate_memory(cfg, (64, 64), 1, "cpu")
    res = restore(noisy, steps=20, memory_budget=0.6 * whole / 2**30, **TINY)
    assert res.info.tiles is not None and res.info.tiles["tiles"] > 1
    assert any("budget" in n for n in res.info.notes)
    assert res.image.shape == noisy.shape


def test_out_of_memory_restarts_with_smaller_tiles(monkeypatch):
    # a device that cannot hold more than 40 x 40 pixels: the run must finish in tiles
    forward = engine.SkipNet.forward

    def limited(self, z):
        if z.shape[-1] * z.shape[-2] > 40 * 40:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return forward(self, z)

    monkeypatch.setattr(engine.SkipNet, "forward", limited)
    clean, noisy = _noisy((64, 64))
    res = restore(noisy, steps=20, tile_overlap=4, **TINY)
    assert res.info.tiles is not None and res.info.tiles["tile_shape"] == [32, 32]
    assert any("out of memory" in n for n in res.info.notes)
    assert res.image.shape == noisy.shape and np.isfinite(res.image).all()


def test_step_count_never_goes_back_after_an_out_of_memory_restart(monkeypatch):
    # memory runs out only after the first snapshot of the whole-image run
    forward = engine.SkipNet.forward
    calls = {"n": 0}

    def late_failure(self, z):
        calls["n"] += 1
        if z.shape[-1] * z.shape[-2] > 40 * 40 and calls["n"] > 12:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return forward(self, z)

    monkeypatch.setattr(engine.SkipNet, "forward", late_failure)
    _, noisy = _noisy((64, 64))
    snaps = list(iterate(noisy, steps=20, tile_overlap=4, snapshot_every=10, loss="mse",
                         **TINY))
    steps = [s.step for s in snaps]
    assert steps == sorted(steps) and len(set(steps)) == len(steps), steps
    assert snaps[0].tiles == 1 and snaps[-1].tiles > 1 and snaps[-1].done
    assert any("after 10 steps" in n for n in snaps[-1].info.notes)


def test_out_of_memory_at_the_smallest_tile_is_a_clear_error(monkeypatch):
    def no_memory(self, z):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(engine.SkipNet, "forward", no_memory)
    _, noisy = _noisy((64, 64))
    with pytest.raises(MemoryError, match="out of memory"):
        restore(noisy, steps=5, tile_overlap=4, **TINY)


def test_other_errors_are_not_taken_for_out_of_memory(monkeypatch):
    def broken(self, z):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    monkeypatch.setattr(engine.SkipNet, "forward", broken)
    _, noisy = _noisy((32, 32))
    with pytest.raises(RuntimeError, match="mat1"):
        restore(noisy, steps=5, **TINY)


def test_tiled_sgld_gives_a_blended_variance_and_tiled_inpainting_keeps_known_pixels():
    clean, noisy = _noisy((32, 56))
    res = restore(noisy, method="sgld", preset="fast", width=8, seed=0, steps=30,
                  tile_size=32, tile_overlap=8)
    assert res.info.tiles["tiles"] == 2
    assert res.variance.shape == noisy.shape and (res.variance > 0).all()
    mask = np.zeros(noisy.shape, bool)
    mask[::3, ::2] = True
    res = restore(noisy, mask=mask, keep_known=True, steps=20, tile_size=32, tile_overlap=8,
                  **TINY)
    np.testing.assert_array_equal(res.image[~mask], noisy[~mask])


def test_tile_entirely_in_the_hole_is_refused():
    _, noisy = _noisy((40, 96))
    mask = np.zeros(noisy.shape, bool)
    mask[:, 20:80] = True
    with pytest.raises(ValueError, match="tile_size"):  # before anything runs
        iterate(noisy, mask=mask, steps=5, tile_size=32, tile_overlap=4, **TINY)


def test_tiled_volume_and_rgb():
    rng = np.random.default_rng(0)
    vol = rng.random((8, 24, 40)).astype(np.float32)
    res = restore(vol, steps=5, tile_size=24, tile_overlap=4, **TINY)
    assert res.image.shape == vol.shape and res.info.tiles["tiles"] == 2
    rgb = (rng.random((24, 40, 3)) * 255).astype(np.uint8)
    res = restore(rgb, channel_axis=-1, steps=5, tile_size=24, tile_overlap=4, **TINY)
    assert res.image.shape == rgb.shape and res.image.dtype == np.uint8


def test_tiled_sgld_keeps_showing_the_variance_of_finished_tiles():
    _, noisy = _noisy((32, 56))
    snaps = list(iterate(noisy, method="sgld", preset="fast", width=8, seed=0, steps=20,
                         burn_in=10, thinning=2, snapshot_every=5, tile_size=32,
                         tile_overlap=8))
    second = [s for s in snaps if s.tile == 1 and not s.done]
    assert second and all(s.variance is not None for s in second)
    assert (second[0].variance[:, :20] > 0).all()  # the first tile's part


def test_host_memory_errors_count_as_out_of_memory_only_on_the_cpu():
    assert tiling.is_out_of_memory(MemoryError(), torch.device("cpu"))
    assert not tiling.is_out_of_memory(MemoryError(), torch.device("cuda"))
    assert tiling.is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory"),
                                   torch.device("cuda"))
    assert tiling.is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert not tiling.is_out_of_memory(RuntimeError("shapes cannot be multiplied"))
