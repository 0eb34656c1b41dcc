"""Filling masks with the hold-out fit (``loss="holdout"``): a net that learns, from the
image alone, to predict known pixels hidden from it, on top of a push-pull fill of the
gaps, and the fill itself."""

import re

import numpy as np
import pytest
import torch

from napari_dip import iterate, make_config, restore
from napari_dip.core.fill import push_pull
from napari_dip.core.stopping import HoldoutWatch

KW = dict(preset="fast", seed=0, device="cpu")


def _psnr_on(a, b, where):
    return 10 * np.log10(1 / np.mean((np.clip(a, 0, 1) - b)[where] ** 2))


@pytest.fixture
def holes(camera_crop):
    return np.random.default_rng(1).random(camera_crop.shape) < 0.5


def _fill(image, missing):
    v = torch.from_numpy(np.asarray(image, np.float32))[None, None]
    w = torch.from_numpy((~missing).astype(np.float32))[None, None]
    return push_pull(v, w)[0, 0].numpy()


def test_push_pull_keeps_known_pixels_and_fills_gaps_of_any_size():
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:40, 0:56] / 56.0
    ramp = (0.2 + 0.5 * xx + 0.2 * yy).astype(np.float32)
    missing = rng.random(ramp.shape) < 0.6
    missing[10:30, 15:45] = True  # and a block far wider than the kernel
    out = _fill(ramp, missing)
    assert np.array_equal(out[~missing], ramp[~missing])
    assert np.isfinite(out).all()
    # a smooth image comes back close, in the block too, and within the known values
    assert np.abs(out - ramp).max() < 0.05
    assert ramp[~missing].min() - 1e-6 <= out.min() and out.max() <= ramp[~missing].max() + 1e-6
    # a constant stays constant; a volume with few planes and several channels works
    const = _fill(np.full((9, 7), 0.3, np.float32), rng.random((9, 7)) < 0.9)
    assert np.allclose(const, 0.3)
    vol = torch.rand(1, 2, 3, 16, 20)
    seen = (torch.rand(1, 1, 3, 16, 20) > 0.7).float()
    filled = push_pull(vol, seen)
    assert filled.shape == vol.shape and torch.equal(filled * seen, vol * seen)
    assert torch.isfinite(filled).all()
    with pytest.raises(ValueError, match="values: expected"):
        push_pull(torch.rand(3, 8, 8), torch.ones(3, 8, 8))


def test_the_presets_fill_masks_with_the_holdout_fit(camera_crop, holes):
    cfg = make_config("dip", "fast", masked=True)
    assert cfg.loss == "holdout" and cfg.width == 16 and cfg.holdout_share == 0.2
    assert make_config("dip", "balanced", masked=True).members == 4
    assert make_config("dip", "quality", masked=True).loss == "mse"
    assert make_config("dip", "fast", masked=True, loss="mse").width == 32
    observed = np.where(holes, 0.0, camera_crop).astype(np.float32)
    res = restore(observed, mask=holes, steps=150, snapshot_every=25, **KW)
    notes = " ".join(res.info.notes)
    assert "loss: hold-out" in notes and "5 passes" in notes
    assert not any(n.startswith("stop rule") for n in res.info.notes)
    # better in the gaps than the fill the net starts from
    fill = _fill(camera_crop, holes)
    assert _psnr_on(res.image, camera_crop, holes) > _psnr_on(fill, camera_crop, holes) + 0.5
    # a known pixel blends its data with its prediction from its neighbours, weighted by
    # the noise: on a noise-free image it is nearly the data; keep_known puts the data back
    assert "x their data" in notes
    assert _psnr_on(res.image, camera_crop, ~holes) > 40
    kept = restore(observed, mask=holes, steps=150, snapshot_every=25, keep_known=True, **KW)
    assert np.array_equal(kept.image[~holes], observed[~holes])
    assert np.array_equal(kept.image[holes], res.image[holes])
    assert "(the lowest error on hidden pixels" in res.stop_reason
    assert res.best_step is not None and 0 < res.best_step <= 150


def test_noisy_known_pixels_are_denoised_by_their_neighbours(noisy_crop, camera_crop, holes):
    observed = np.where(holes, 0.0, noisy_crop).astype(np.float32)
    res = restore(observed, mask=holes, steps=150, snapshot_every=25, **KW)
    before = _psnr_on(noisy_crop, camera_crop, ~holes)
    assert _psnr_on(res.image, camera_crop, ~holes) > before + 2
    blend = [n for n in res.info.notes if "x their data" in n]
    assert len(blend) == 1 and float(blend[0].split("known pixels are ")[1].split()[0]) < 0.6


def test_holdout_runs_repeat_bit_for_bit_with_members_colour_and_tiles(camera_crop, holes):
    observed = np.where(holes, 0.0, camera_crop).astype(np.float32)
    a = restore(observed, mask=holes, steps=20, snapshot_every=10, **KW)
    b = restore(observed, mask=holes, steps=20, snapshot_every=10, **KW)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.losses, b.losses)
    two = restore(observed, mask=holes, steps=20, snapshot_every=10, members=2, **KW)
    assert two.image.shape == a.image.shape and not np.array_equal(two.image, a.image)
    assert np.isfinite(two.losses).all()
    rgb = np.stack([observed, observed[::-1], observed[:, ::-1]], -1)
    colour = restore(rgb, mask=holes, channel_axis=-1, steps=10, snapshot_every=5, **KW)
    assert colour.image.shape == rgb.shape and np.isfinite(colour.image).all()
    tiled = restore(observed, mask=holes, steps=20, snapshot_every=10, tile_size=32,
                    tile_overlap=8, **KW)
    assert tiled.info.tiles is not None and tiled.info.tiles["tiles"] > 1
    assert tiled.image.shape == observed.shape


def test_holdout_fills_a_volume(camera_crop):
    vol = np.stack([camera_crop[:32, :32]] * 4).astype(np.float32)
    missing = np.random.default_rng(2).random(vol.shape) < 0.4
    res = restore(np.where(missing, 0, vol), mask=missing, steps=10, snapshot_every=5,
                  keep_known=True, **KW)
    assert res.image.shape == vol.shape
    assert np.array_equal(res.image[~missing], vol[~missing])


def test_the_snapshots_report_the_error_on_hidden_pixels(camera_crop, holes):
    observed = np.where(holes, 0.0, camera_crop).astype(np.float32)
    snaps = list(iterate(observed, mask=holes, steps=60, snapshot_every=20, **KW))
    # (the presets blend the gaps at the end: the net's own estimate comes before that)
    assert [s.step for s in snaps] == [20, 40, 60, 60] and snaps[-1].done
    # the loss is the squared error on pixels hidden from the net: it falls
    first, last = np.mean(snaps[0].losses), np.mean(snaps[-2].losses)
    assert last < first
    assert len(snaps[-1].losses) == 0  # the blend adds no steps: no loss counted twice
    assert all(s.divergence is None and s.drift is None for s in snaps)


def test_holdout_watch_keeps_the_lowest_error_and_stops_after_its_patience():
    watch = HoldoutWatch(keep=4, patience=30)
    ones = torch.ones(1, 4, 4)
    assert not watch.check(10, ones * 1, 0.5)
    assert not watch.check(20, ones * 2, 0.3)
    assert watch.best_step == 20 and watch.best_steps == [10, 20]
    assert torch.allclose(watch.estimate, ones * 1.5)
    assert not watch.check(30, ones * 3, 0.4)
    assert not watch.check(40, ones * 4, 0.35)
    assert torch.allclose(watch.estimate, ones * 1.5)  # still the best check's
    assert watch.check(50, ones * 5, 0.31)  # 30 steps without a new low
    assert "no new low of the error on hidden pixels for 30 steps after step 20" in watch.reason
    assert "steps 10, 20" in watch.describe()
    # without stop it only records
    calm = HoldoutWatch(stop=False, patience=1)
    assert not any(calm.check(s, ones, 1.0) for s in (1, 2, 3))
    with pytest.raises(RuntimeError, match="no check"):
        HoldoutWatch().estimate


def test_holdout_share_is_checked_and_sgld_keeps_the_squared_error():
    with pytest.raises(ValueError, match="holdout_share"):
        make_config("dip", "fast", masked=True, holdout_share=0.0)
    with pytest.raises(ValueError, match="holdout_share"):
        make_config("dip", "fast", masked=True, holdout_share=0.95)
    with pytest.raises(ValueError, match="method 'sgld' samples with the squared error"):
        make_config("sgld", "fast", masked=True, loss="holdout")
    assert make_config("sgld", "fast", masked=True).loss == "mse"


def _blend_weight(final, net, fill):
    """The single w with final = w * net + (1 - w) * fill (least squares) and the largest
    departure from that line."""
    d = net - fill
    w = float((d * (final - fill)).sum() / (d * d).sum())
    return w, float(np.abs(final - (w * net + (1 - w) * fill)).max())


def _note_weight(notes):
    blend = [n for n in notes if n.startswith("gap blend: the gaps are")]
    assert len(blend) == 1
    return float(blend[0].split("the gaps are ")[1].split()[0])


def test_gap_blend_mixes_the_net_and_a_biharmonic_fill_by_their_held_out_errors(
        camera_crop, holes):
    from skimage.restoration import inpaint_biharmonic

    observed = np.where(holes, 0.0, camera_crop).astype(np.float32)
    run = dict(mask=holes, steps=200, snapshot_every=50, keep_known=True, **KW)
    snaps = list(iterate(observed, gap_blend="biharmonic", **run))
    # the net's own estimate comes first, as the run without the blend returns it
    assert [s.step for s in snaps] == [50, 100, 150, 200, 200] and snaps[-1].done
    plain = restore(observed, gap_blend="off", **run)
    net, final = snaps[-2].image, snaps[-1].image
    assert np.array_equal(net[holes], plain.image[holes])
    # the known pixels stay; the gaps lie on the line from the interpolation to the net
    assert np.array_equal(final[~holes], observed[~holes])
    fill = inpaint_biharmonic(observed.astype(np.float64), holes)
    # (results are clipped to the known values' range: compare where nothing was clipped)
    lo, hi = observed[~holes].min() + 1e-6, observed[~holes].max() - 1e-6
    inside = holes & np.all([(a > lo) & (a < hi) for a in (net, final, fill)], axis=0)
    assert inside.mean() > 0.4
    w, off_line = _blend_weight(final[inside], net[inside], fill[inside])
    assert 0.05 < w < 0.95 and off_line < 1e-4  # a mix at this step (0.36)
    assert abs(w - _note_weight(snaps[-1].info.notes)) < 5e-3
    assert "held-out known pixels" in " ".join(snaps[-1].info.notes)


def test_gap_blend_leans_on_the_interpolation_where_the_image_is_smooth(holes):
    yy, xx = np.mgrid[0:64, 0:64] / 64.0
    smooth = (0.2 + 0.4 * xx + 0.2 * yy ** 2 + 0.1 * np.sin(3 * xx)).astype(np.float32)
    observed = np.where(holes, 0.0, smooth).astype(np.float32)
    snaps = list(iterate(observed, mask=holes, steps=40, snapshot_every=20,
                         keep_known=True, gap_blend="biharmonic", **KW))
    net, final = snaps[-2].image, snaps[-1].image
    assert _note_weight(snaps[-1].info.notes) < 0.5
    assert _psnr_on(final, smooth, holes) > _psnr_on(net, smooth, holes) + 3


def test_deep_gaps_fit_the_weight_on_the_band_around_them_too(camera_crop, holes):
    """Under strokes the gaps lie deeper than single hidden pixels: the known pixels
    around them are hidden as well, and the net gets the smaller of the two weights."""
    from scipy.ndimage import binary_dilation, distance_transform_cdt

    mask = np.zeros(camera_crop.shape, bool)
    mask[20:30, 8:56] = True  # a painted stroke, 10 px wide
    mask[36:60, 40:48] = True
    snaps = list(iterate(np.where(mask, 0.0, camera_crop).astype(np.float32), mask=mask,
                         steps=40, snapshot_every=20, keep_known=True,
                         gap_blend="biharmonic", **KW))
    note = [n for n in snaps[-1].info.notes if n.startswith("gap blend: the gaps are")][0]
    found = re.search(r"the (\d+) known pixels within (\d+) px of them, hidden as well, "
                      r"fit w ([0-9.e-]+) where the single pixels fit ([0-9.e-]+): the "
                      r"smaller is kept", note)
    assert found, note
    width = round(distance_transform_cdt(mask, metric="chessboard")[mask].mean())
    assert int(found.group(2)) == width >= 2
    band = binary_dilation(mask, np.ones((3, 3), bool), iterations=width) & ~mask
    assert int(found.group(1)) == band.sum()
    w_band, w_pixels = float(found.group(3)), float(found.group(4))
    assert _note_weight(snaps[-1].info.notes) == pytest.approx(min(w_band, w_pixels),
                                                               abs=5e-4)
    assert np.array_equal(snaps[-1].image[~mask], camera_crop[~mask].astype(np.float32))
    # random pixel loss lies about 1 px deep: the single hidden pixels alone
    res = restore(np.where(holes, 0.0, camera_crop).astype(np.float32), mask=holes,
                  steps=20, snapshot_every=10, gap_blend="biharmonic", **KW)
    assert "px deep" not in " ".join(res.info.notes)
    from napari_dip.core.engine import deep_gap_band

    for share in (0.5, 0.8):  # random loss at the benchmarks' size
        lost = np.random.default_rng(0).random((256, 256)) < share
        assert deep_gap_band(torch.from_numpy(~lost)[None]) == (None, "")
    # a band that would hide most known pixels is left out, and the note says so
    combs = np.zeros(camera_crop.shape, bool)
    for c in range(4):
        combs[:, c::6] = True  # gaps 4 px wide, 2 known columns between them
    res = restore(np.where(combs, 0.0, camera_crop).astype(np.float32), mask=combs,
                  steps=20, snapshot_every=10, gap_blend="biharmonic", **KW)
    assert "band of 2 px around them holds more than 50% of the known pixels: not " \
        "fitted there" in " ".join(res.info.notes)


def test_the_band_for_a_mask_per_channel_and_several_nets(camera_crop):
    """Each channel's band from its own mask, a channel with nothing known left out of the
    depth, the members' predictions averaged: the gaps still lie on the blend's line."""
    image = np.stack([camera_crop, camera_crop[::-1], camera_crop.T], -1).astype(np.float32)
    missing = np.zeros(image.shape, bool)
    missing[20:30, 8:56, 0] = True
    missing[10:50, 30:38, 1] = True
    missing[..., 2] = True  # nothing known in the last channel
    _, final, w, notes = _blend_parts(image, missing, channel_axis=-1, members=2)
    note = " ".join(notes)
    assert re.search(r"known pixels within \d+ px of them, hidden as well", note), note
    assert np.array_equal(final[~missing], image[~missing])
    assert 0.0 <= w <= 1.0


def test_gap_blend_is_checked_and_says_where_it_does_not_apply(camera_crop):
    with pytest.raises(ValueError, match="gap_blend"):
        make_config("dip", "fast", masked=True, gap_blend="linear")
    # the hold-out fit asked for without a mask: nothing to blend
    res = restore(camera_crop, loss="holdout", gap_blend="biharmonic", steps=10,
                  snapshot_every=5, **KW)
    assert "gap blend: off (no missing pixels)" in res.info.notes


def _blend_parts(observed, mask, **kw):
    """The run's net estimate (the snapshot before the last), its final result, the
    note's w and the run's notes."""
    snaps = list(iterate(np.where(mask, 0, observed).astype(np.float32), mask=mask,
                         steps=20, snapshot_every=10, keep_known=True,
                         gap_blend="biharmonic", **kw, **KW))
    notes = snaps[-1].info.notes
    return snaps[-2].image, snaps[-1].image, _note_weight(notes), notes


@pytest.mark.parametrize("kind", ["volume", "per-channel mask"])
def test_gap_blend_covers_volumes_and_a_mask_per_channel(camera_crop, kind):
    from napari_dip.core.fill import biharmonic
    import torch

    rng = np.random.default_rng(3)
    if kind == "volume":
        image = np.stack([camera_crop[:32, :32]] * 4).astype(np.float32)
        extra = {}
        missing = rng.random(image.shape) < 0.4
    else:
        image = np.stack([camera_crop, camera_crop[::-1], camera_crop.T], -1).astype(
            np.float32)
        extra = {"channel_axis": -1}
        missing = rng.random(image.shape) < 0.3  # a different mask in every channel
    net, final, w, _ = _blend_parts(image, missing, **extra)
    assert 0.0 <= w <= 1.0
    assert np.array_equal(final[~missing], image[~missing])
    # every gap lies on the line from the interpolation (each channel from its own known
    # pixels) to the net
    values = image if kind == "volume" else np.moveaxis(image, -1, 0)
    known = ~missing if kind == "volume" else np.moveaxis(~missing, -1, 0)
    if kind == "volume":
        values, known = values[None], known[None]
    fill, _ = biharmonic(torch.from_numpy(values)[None], torch.from_numpy(known)[None])
    fill = fill[0].numpy()
    fill = fill[0] if kind == "volume" else np.moveaxis(fill, 0, -1)
    expected = w * net + (1 - w) * fill
    # (results are clipped to the known values' range: compare where nothing was clipped)
    lo, hi = image[~missing].min() + 1e-6, image[~missing].max() - 1e-6
    inside = missing & np.all([(a > lo) & (a < hi) for a in (net, final, fill)], axis=0)
    assert inside.sum() > 0.5 * missing.sum()
    assert np.abs(final - expected)[inside].max() < 1e-3
