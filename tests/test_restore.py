"""End-to-end behaviour of the public API on tiny inputs."""

import subprocess
import sys

import numpy as np
import pytest

import napari_dip
from napari_dip import iterate, restore


def _psnr(a, b):
    data_range = float(b.max() - b.min())  # scikit-image's convention for float images
    return 10 * np.log10(data_range**2 / np.mean((np.asarray(a, float) - b) ** 2))


@pytest.mark.parametrize(
    "shape, channel_axis",
    [((20, 24), None), ((20, 24, 3), -1), ((2, 20, 24), 0), ((10, 12, 14), None),
     ((8, 10, 12, 2), 3)],
)
def test_shape_dtype_range_kept(tiny, shape, channel_axis):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, shape).astype(np.uint8)
    res = restore(img, channel_axis=channel_axis, steps=6, seed=0, device="cpu", auto_stop=False,
                  **tiny)
    assert res.image.shape == img.shape and res.image.dtype == np.uint8
    assert res.steps == 6 and res.variance is None and res.stop_reason
    f32 = restore(img, channel_axis=channel_axis, steps=6, seed=0, device="cpu",
                  output_dtype="float32", **tiny).image
    assert f32.dtype == np.float32 and 0 <= f32.min() and f32.max() <= 255


def test_uint16_range_and_dtype(tiny):
    rng = np.random.default_rng(1)
    img = rng.integers(1000, 5001, (24, 24)).astype(np.uint16)
    res = restore(img, steps=30, seed=0, device="cpu", **tiny)
    assert res.image.dtype == np.uint16
    assert 1000 <= res.image.min() and res.image.max() <= 5000
    assert abs(float(res.image.mean()) - float(img.mean())) < 400


@pytest.mark.parametrize("dtype", [np.int16, np.int32, np.float64, np.float16])
def test_other_dtypes(tiny, dtype):
    img = (np.random.default_rng(2).normal(size=(16, 16)) * 100 - 50).astype(dtype)
    res = restore(img, steps=4, seed=0, device="cpu", **tiny)
    assert res.image.dtype == dtype and res.image.shape == img.shape
    assert img.min() - 1 <= res.image.min() and res.image.max() <= img.max() + 1


def test_same_seed_same_result_different_seed_differs(tiny):
    img = np.random.default_rng(3).random((24, 24)).astype(np.float32)
    a = restore(img, steps=10, seed=5, device="cpu", **tiny)
    b = restore(img, steps=10, seed=5, device="cpu", **tiny)
    c = restore(img, steps=10, seed=6, device="cpu", **tiny)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.losses, b.losses)
    assert not np.array_equal(a.image, c.image)
    assert a.info.seed == 5
    d = restore(img, steps=10, device="cpu", **tiny)  # a drawn seed is reported ...
    e = restore(img, steps=10, device="cpu", seed=d.info.seed, **tiny)
    assert np.array_equal(d.image, e.image)  # ... and repeats the run


def test_config_round_trip_reproduces(tiny):
    img = np.random.default_rng(4).random((24, 24)).astype(np.float32)
    a = restore(img, method="sgld", steps=12, seed=1, device="cpu", **tiny)
    meta = a.metadata()
    b = restore(img, config=meta["config"], seed=meta["seed"], device="cpu")
    assert np.array_equal(a.image, b.image) and np.array_equal(a.variance, b.variance)
    assert meta["versions"]["napari-dip"] == napari_dip.__version__


def test_denoising_gains(camera_crop):
    rng = np.random.default_rng(0)
    noisy = camera_crop + rng.normal(0, 25 / 255, camera_crop.shape)
    res = restore(noisy, preset="fast", steps=200, seed=0, device="cpu", reference=camera_crop)
    assert _psnr(res.image, camera_crop) > _psnr(noisy, camera_crop) + 3.0
    assert res.psnr == pytest.approx(_psnr(res.image, camera_crop), abs=0.05)


def test_inpainting_beats_mean_fill_and_keeps_known(camera_crop):
    rng = np.random.default_rng(0)
    mask = rng.random(camera_crop.shape) < 0.5
    img = np.where(mask, 0.0, camera_crop).astype(np.float32)
    res = restore(img, mask=mask, preset="fast", steps=150, seed=0, device="cpu",
                  auto_stop=False, keep_known=True)
    fill = np.where(mask, camera_crop[~mask].mean(), camera_crop)
    err_dip = np.mean((res.image[mask] - camera_crop[mask]) ** 2)
    err_mean = np.mean((fill[mask] - camera_crop[mask]) ** 2)
    assert err_dip < 0.5 * err_mean
    assert np.array_equal(res.image[~mask], img[~mask])
    # the hole's (zeroed) values never enter the fit: changing them changes nothing
    img2 = np.where(mask, 1.0, camera_crop).astype(np.float32)
    res2 = restore(img2, mask=mask, preset="fast", steps=5, seed=0, device="cpu",
                   auto_stop=False)
    res1 = restore(img, mask=mask, preset="fast", steps=5, seed=0, device="cpu",
                   auto_stop=False)
    np.testing.assert_allclose(res1.image, res2.image, atol=1e-6)


def test_sgld_variance_larger_in_hole(camera_crop):
    img = camera_crop[:32, :32].copy()
    mask = np.zeros(img.shape, bool)
    mask[10:22, 10:22] = True
    net = dict(width=16, scales=2, skip_channels=2, input_channels=8, snapshot_every=50)
    res = restore(img, method="sgld", mask=mask, steps=300, seed=0, device="cpu",
                  burn_in=100, thinning=5, **net)
    assert res.variance.shape == img.shape and res.variance.dtype == np.float32
    # nothing constrains the samples inside the hole: they disagree more there
    assert res.variance[mask].mean() > 1.3 * res.variance[~mask].mean()
    assert "posterior mean of 40 samples" in res.stop_reason


def test_channel_mask_broadcast(tiny):
    img = np.random.default_rng(5).random((16, 16, 3)).astype(np.float32)
    mask = np.zeros((16, 16), bool)
    mask[4:8, 4:8] = True
    res = restore(img, mask=mask, channel_axis=-1, steps=5, seed=0, device="cpu",
                  keep_known=True, **tiny)
    assert np.array_equal(res.image[~mask], img[~mask])


def test_snapshots_stream_and_close_stops(tiny):
    img = np.random.default_rng(6).random((16, 16)).astype(np.float32)
    gen = iterate(img, steps=1000, seed=0, device="cpu", auto_stop=False, **tiny)
    snaps = [next(gen), next(gen)]
    gen.close()
    assert [s.step for s in snaps] == [5, 10]
    assert all(s.image.shape == img.shape and not s.done and s.psnr is None for s in snaps)
    assert len(snaps[1].losses) == 5 and np.isfinite(snaps[1].losses).all()
    with pytest.raises(StopIteration):
        next(gen)


def test_stop_rule_stops_and_reports(tiny):
    img = np.random.default_rng(7).random((16, 16)).astype(np.float32)
    res = restore(img, steps=400, seed=0, device="cpu", stop_window=5, stop_warmup=10,
                  stop_patience=20, stop_rule="variance", loss="mse", **tiny)
    assert res.best_step is not None and res.best_step <= res.steps
    assert res.stop_reason.startswith(("stopped", "reached"))
    if res.stop_reason.startswith("stopped"):
        assert res.steps < 400 and res.steps - res.best_step >= 20


def test_inputs_never_modified(tiny):
    img = np.random.default_rng(8).random((16, 16)).astype(np.float32)
    mask = np.zeros((16, 16), np.uint8)
    mask[2:5, 2:5] = 3
    ref = img.copy()
    copies = img.copy(), mask.copy(), ref.copy()
    restore(img, mask=mask, reference=ref, steps=3, seed=0, device="cpu", **tiny)
    for a, b in zip((img, mask, ref), copies):
        assert np.array_equal(a, b)


GOOD = np.zeros((16, 16), np.float32)
BAD_CASES = [
    (dict(image=np.full((8, 8), np.nan)), ValueError, "image"),
    (dict(image=np.array([[1.0, np.inf] * 4] * 8)), ValueError, "image"),
    (dict(image=np.zeros((0, 8))), ValueError, "image"),
    (dict(image=np.zeros((1, 1))), ValueError, "image"),
    (dict(image=np.zeros(16)), ValueError, "image"),
    (dict(image=np.array([["a"] * 8] * 8)), TypeError, "image"),
    (dict(image=np.zeros((8, 8), bool)), TypeError, "image"),
    (dict(image=np.zeros((8, 8), complex)), TypeError, "image"),
    (dict(image=GOOD, mask=np.zeros((8, 8))), ValueError, "mask"),
    (dict(image=GOOD, mask=np.ones((16, 16))), ValueError, "mask"),
    (dict(image=GOOD, channel_axis=2), ValueError, "channel_axis"),
    (dict(image=GOOD, channel_axis="x"), TypeError, "channel_axis"),
    (dict(image=GOOD, colour=True), TypeError, "colour"),
    (dict(image=GOOD, method="gan"), ValueError, "method"),
    (dict(image=GOOD, preset="turbo"), ValueError, "preset"),
    (dict(image=GOOD, steps=0), ValueError, "steps"),
    (dict(image=GOOD, device="tpu"), ValueError, "device"),
    (dict(image=GOOD, seed=-1), ValueError, "seed"),
    (dict(image=GOOD, seed="abc"), TypeError, "seed"),
    (dict(image=GOOD, reference=np.zeros((4, 4))), ValueError, "reference"),
    (dict(image=GOOD, output_dtype="U4"), TypeError, "output_dtype"),
    (dict(image=GOOD, method="sgld", auto_stop=True), ValueError, "auto_stop"),
    (dict(image=np.zeros((16, 16, 16, 16))), ValueError, "image"),
]


@pytest.mark.parametrize("kwargs, exc, name", BAD_CASES)
def test_bad_input_is_clear(kwargs, exc, name):
    kwargs = dict(kwargs)
    image = kwargs.pop("image")
    before = image.copy()
    with pytest.raises(exc, match=name):
        iterate(image, **{"device": "cpu", **kwargs})  # raises before the generator starts
    assert np.array_equal(image, before, equal_nan=image.dtype.kind == "f")


def test_import_loads_no_gui():
    code = (
        "import sys, napari_dip, napari_dip.core\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('napari', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'magicgui', 'superqt', 'vispy')]\n"
        "print(bad)\nassert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_channels_last_follows_the_contiguous_path():
    # first steps agree to rounding (later, Adam amplifies rounding, as between thread counts)
    rng = np.random.default_rng(0)
    noisy = rng.random((32, 32)).astype(np.float32)
    kw = dict(preset="fast", loss="mse", width=8, seed=0, steps=2, auto_stop=False, ema=0.0,
              jitter=0.0, backtrack_db=0.0, output_dtype="float32")
    a = restore(noisy, **kw).image
    b = restore(noisy, channels_last=True, **kw).image
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_ensemble_members_average_and_pool_sgld_chains(camera_crop):
    clean = camera_crop
    noisy = (clean + np.random.default_rng(0).normal(0, 25 / 255, clean.shape)).astype(np.float32)
    res = restore(noisy, preset="fast", width=8, seed=0, steps=60, auto_stop=False,
                  members=2, reference=clean)
    assert res.image.shape == noisy.shape and res.info.config.members == 2
    assert res.psnr > _psnr(noisy, clean)
    snaps = list(iterate(noisy, method="sgld", preset="fast", width=8, seed=0, steps=40,
                         burn_in=20, thinning=5, members=3))
    assert snaps[-1].samples == 3 * 4  # three chains, four kept steps each
    assert snaps[-1].variance.shape == noisy.shape and (snaps[-1].variance > 0).all()


def test_poisson_gaussian_noise_model_maps_back_to_the_image_units():
    from skimage import data

    clean = data.cell()[:48, :48].astype(np.float64)
    clean /= clean.max()
    rng = np.random.default_rng(0)
    raw = (100 + 2 * rng.poisson(30 * clean) + rng.normal(0, 3, clean.shape)).astype(np.float32)
    truth = (100 + 60 * clean).astype(np.float32)
    res = restore(raw, preset="fast", width=8, steps=60, seed=0, reference=truth,
                  noise_model="poisson-gaussian", gain=2.0, read_noise=3.0)
    # back in the raw units (about 100 + 60 * intensity), denoised
    assert res.image.dtype == np.float32 and abs(res.image.mean() - raw.mean()) < 3
    assert res.psnr > _psnr(raw, truth) + 2
    assert res.metadata()["noise_model"] == {"model": "poisson-gaussian", "gain": 2.0,
                                             "sigma": 3.0, "offset": 0.0, "estimated": []}
    est = restore(raw, preset="fast", width=8, steps=5, seed=0, noise_model="poisson-gaussian")
    assert sorted(est.metadata()["noise_model"]["estimated"]) == ["gain", "offset", "sigma"]
    sg = restore(raw.astype(np.uint16), method="sgld", preset="fast", width=8, steps=30, seed=0,
                 noise_model="poisson-gaussian", gain=2.0, read_noise=3.0)
    assert sg.image.dtype == np.uint16 and (sg.variance > 0).all()
    # the variance is in raw units squared: a stabilised variance of about 1e-3 (normalised)
    # times the raw noise scale (gain 2 per photon), not in normalised or stabilised units
    assert 0.01 < float(np.median(sg.variance)) < 100


@pytest.mark.parametrize("kwargs, name", [
    (dict(noise_model="poisson"), "noise_model"),
    (dict(noise_model="poisson-gaussian", gain=-1.0), "gain"),
    (dict(noise_model="poisson-gaussian", read_noise=-1.0), "read_noise"),
    (dict(noise_model="gaussian", gain=2.0), "only used with noise_model='poisson-gaussian'"),
])
def test_noise_model_arguments_are_checked(kwargs, name):
    raw = np.random.default_rng(0).random((16, 16)).astype(np.float32)
    with pytest.raises(ValueError, match=name):
        iterate(raw, preset="fast", steps=2, **kwargs)


def test_poisson_gaussian_on_a_volume_with_channels_and_with_a_mask():
    rng = np.random.default_rng(0)
    vol = (100 + 2 * rng.poisson(20, (6, 24, 24, 2)) + rng.normal(0, 1, (6, 24, 24, 2)))
    vol = vol.astype(np.float32)
    res = restore(vol, channel_axis=-1, noise_model="poisson-gaussian", preset="fast",
                  steps=3, width=8, seed=0)
    assert res.image.shape == vol.shape
    assert sorted(res.metadata()["noise_model"]["estimated"]) == ["gain", "offset", "sigma"]
    mask = rng.random((6, 24, 24)) < 0.2
    with pytest.raises(ValueError, match="read_noise"):  # the estimate cannot skip holes
        iterate(vol[..., 0], mask=mask, noise_model="poisson-gaussian", steps=2)
    res = restore(vol[..., 0], mask=mask, noise_model="poisson-gaussian", gain=2.0,
                  read_noise=1.0, preset="fast", steps=3, width=8, seed=0)
    assert res.image.shape == vol.shape[:3]
    with pytest.raises(ValueError, match="read_noise"):  # no parameter called sigma here
        iterate(np.full((32, 32), 7.0), noise_model="poisson-gaussian", steps=2)
