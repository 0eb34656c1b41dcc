"""The napari plugin with a real viewer: manifest, samples, runs from the dock widget.

Runs are tiny (32 x 32 images, a net of width 8 with 2 scales, a few dozen steps) so that
the whole file takes well under a minute on two CPU cores.
"""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari_dip import make_config  # noqa: E402
from napari_dip._napari import worker as worker_module  # noqa: E402
from napari_dip._napari.layers import ROLE_KEY  # noqa: E402

PLUGIN = "napari-dip"
WIDGET = "Deep Image Prior"
TIMEOUT = 60_000  # ms


@pytest.fixture
def dock(viewer):
    """The plugin's widget, docked the way napari does it (Plugins menu)."""
    _dock_widget, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    return widget


def tiny_image(shape=(32, 32), seed=0, dtype=np.uint8):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[-2], : shape[-1]]
    base = 120 + 80 * np.sin(xx / 5.0) * np.cos(yy / 7.0)
    img = base + rng.normal(0, 20, shape)
    return np.clip(img, 0, 255).astype(dtype)


def configure(widget, *, method="dip", steps=20, every=5, seed=0, **extra):
    widget.method.value = method  # resets steps and advanced fields to the preset
    widget.preset.value = "fast"
    widget.steps.value = steps
    widget.net_width.value = 8
    widget.net_scales.value = 2
    widget.snapshot_every.value = every
    widget.seed.value = str(seed)
    for name, value in extra.items():
        getattr(widget, name).value = value


def with_painted_mask(viewer, widget, data, name, box):
    """Add ``data`` as image ``name`` and a labels layer "paint" with the slices ``box``
    painted, select the image and make the labels the widget's mask; returns (mask,
    labels layer)."""
    viewer.add_image(data, name=name)
    mask = np.zeros(data.shape[:2], np.uint8)
    mask[box] = 1
    labels = viewer.add_labels(mask, name="paint")
    viewer.layers.selection.active = viewer.layers[name]
    widget.mask_layer.value = labels
    return mask, labels


def record_status(monkeypatch, widget):
    """The texts the widget's status line shows from now on (patched on the class: a
    magicgui container takes attributes set on it for widgets)."""
    texts = []
    shown = type(widget)._set_status

    def record(self, text):
        texts.append(text)
        shown(self, text)
    monkeypatch.setattr(type(widget), "_set_status", record)
    return texts


def run_to_end(qtbot, widget):
    worker = widget.run()
    assert worker is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT)
    return worker


def start_and_wait_first_snapshot(qtbot, viewer, widget, name):
    worker = widget.run()
    assert worker is not None
    qtbot.waitUntil(lambda: name in viewer.layers, timeout=TIMEOUT)
    return worker


# -- packaging -------------------------------------------------------------------------
def test_manifest_valid_and_contributions():
    from npe2 import PluginManifest

    pm = PluginManifest.from_distribution(PLUGIN)
    pm.validate_imports()
    assert [w.display_name for w in pm.contributions.widgets] == [WIDGET]
    keys = {s.key for s in pm.contributions.sample_data}
    assert keys == {"noisy_image", "inpainting", "noisy_volume", "photon_counts"}


def test_core_import_does_not_import_napari_or_qt():
    code = ("import sys, napari_dip, napari_dip.core; "
            "bad = [m for m in ('napari', 'qtpy', 'PyQt6', 'PyQt5', 'magicgui') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr


def test_samples_load(viewer):
    viewer.open_sample(PLUGIN, "noisy_image")
    viewer.open_sample(PLUGIN, "inpainting")
    viewer.open_sample(PLUGIN, "noisy_volume")
    viewer.open_sample(PLUGIN, "photon_counts")
    kinds = [(layer.name, type(layer).__name__, layer.data.shape) for layer in viewer.layers]
    assert kinds == [
        ("noisy camera", "Image", (256, 256)),
        ("damaged camera", "Image", (256, 256)),
        ("missing pixels", "Labels", (256, 256)),
        ("noisy volume", "Image", (32, 64, 64)),
        ("photon counts (nuclei)", "Image", (256, 256)),
    ]
    assert viewer.layers["photon counts (nuclei)"].data.dtype == np.uint16
    assert viewer.layers["missing pixels"].data.max() == 1


# -- the widget ------------------------------------------------------------------------
def test_widget_defaults_follow_selection_and_method(viewer, dock):
    a = viewer.add_image(tiny_image(), name="a")
    b = viewer.add_image(tiny_image(seed=1), name="b")
    viewer.layers.selection.active = a
    assert dock.image_layer.value is a or dock.image_layer.value == a
    viewer.layers.selection.active = b
    assert dock.image_layer.value == b
    assert dock.mask_layer.value is None
    assert "missing" in dock.mask_hint.value and "filled" in dock.mask_hint.value
    assert dock.device.current_choice.startswith("auto \u2192 ")
    assert dock.advanced.native.isHidden()  # folded away until asked for
    dock.show_advanced.value = True
    assert not dock.advanced.native.isHidden()
    dock.method.value = "sgld"
    assert not dock.auto_stop.enabled and not dock.auto_stop.value
    assert dock.run_options()["auto_stop"] is None
    dock.method.value = "dip"
    assert dock.auto_stop.value  # the user's choice is back
    # the stop rule is for the squared error; SURE and R2R decide for themselves
    assert dock.auto_stop.enabled == (dock.data_term.value in ("mse", "r2r"))
    dock.data_term.value = "mse"
    assert dock.auto_stop.enabled
    rgb = viewer.add_image(np.zeros((32, 32, 3), np.uint8), name="rgb", rgb=True)
    dock.image_layer.value = rgb
    assert dock.channels.value == -1 and not dock.channels.enabled


def test_dip_run_to_the_end(qtbot, viewer, dock):
    data = tiny_image()
    before = data.copy()
    src = viewer.add_image(data, name="tiny", scale=(0.5, 2.0), translate=(3.0, -1.0))
    configure(dock, steps=20, every=5)
    run_to_end(qtbot, dock)

    np.testing.assert_array_equal(src.data, before)  # the input is never modified
    res = viewer.layers["tiny [DIP]"]
    assert res.data.shape == (32, 32) and res.data.dtype == np.uint8
    np.testing.assert_allclose(res.scale, src.scale)
    np.testing.assert_allclose(res.translate, src.translate)
    md = res.metadata
    assert md[ROLE_KEY] == "result"
    assert md["method"] == "dip" and md["seed"] == 0 and md["steps"] == 20
    assert md["config"]["width"] == 8 and md["config"]["scales"] == 2
    assert md["config"]["steps"] == 20 and md["config"]["snapshot_every"] == 5
    assert md["device"] == "cpu" or md["device"].startswith(("cuda", "mps"))
    assert "20 steps" in md["stop_reason"]
    assert {"napari-dip", "torch", "numpy", "napari"} <= set(md["versions"])
    assert md["source_layer"] == "tiny" and md["mask_layer"] is None
    assert dock.status.value.startswith("Done")
    assert not dock.stop_button.enabled
    assert "tiny [SGLD std]" not in viewer.layers


def test_sgld_run_uncertainty_and_history(qtbot, viewer, dock):
    viewer.add_image(tiny_image().astype(np.float32) / 255, name="f")
    configure(dock, method="sgld", steps=20, every=5, burn_in=5, thinning=2,
              keep_history=True)
    run_to_end(qtbot, dock)

    res = viewer.layers["f [SGLD]"]
    std = viewer.layers["f [SGLD std]"]
    hist = viewer.layers["f [SGLD] history"]
    assert res.data.shape == (32, 32) and res.data.dtype == np.float32
    assert std.data.shape == (32, 32) and std.data.dtype == np.float32
    assert np.all(std.data >= 0) and std.data.max() > 0
    assert std.colormap.name in ("magma", "inferno")
    assert hist.data.shape == (4, 32, 32)
    assert hist.metadata["history_steps"] == [5, 10, 15, 20]
    for layer, role in ((res, "result"), (std, "std"), (hist, "history")):
        md = layer.metadata
        assert md[ROLE_KEY] == role
        assert md["method"] == "sgld" and md["config"]["burn_in"] == 5
        assert md["config"]["thinning"] == 2 and md["steps"] == 20
        assert md["samples"] == 8 and "posterior mean" in md["stop_reason"]
    # the uncertainty sits below the result, which stays in view
    names = [x.name for x in viewer.layers]
    assert names.index("f [SGLD std]") < names.index("f [SGLD]")


def test_stop_keeps_latest_estimate_and_closes_engine(qtbot, viewer, dock, monkeypatch):
    engines = []
    real_iterate = worker_module.iterate

    def recording_iterate(*args, **kwargs):
        gen = real_iterate(*args, **kwargs)
        engines.append(gen)
        return gen

    monkeypatch.setattr(worker_module, "iterate", recording_iterate)
    viewer.add_image(tiny_image(), name="long")
    configure(dock, steps=5000, every=5, auto_stop=False)
    start_and_wait_first_snapshot(qtbot, viewer, dock, "long [DIP]")
    assert dock.stop_button.enabled
    dock.stop_button.native.click()
    qtbot.waitUntil(lambda: not dock.running, timeout=TIMEOUT)

    md = viewer.layers["long [DIP]"].metadata
    assert md["stop_reason"].startswith("stopped by the user at step")
    assert 5 <= md["steps"] < 5000 and md["steps"] % 5 == 0
    assert dock.status.value.startswith("Stopped at step")
    assert len(engines) == 1 and engines[0].gi_frame is None  # closed: memory freed


def test_mask_from_labels_layer(qtbot, viewer, dock):
    data = tiny_image()
    before = data.copy()
    mask, labels = with_painted_mask(viewer, dock, data, "holes", np.s_[10:18, 12:20])
    configure(dock, steps=10, every=5, keep_known=True)
    run_to_end(qtbot, dock)

    res = viewer.layers["holes [DIP]"]
    assert res.metadata["mask_layer"] == "paint"
    known = mask == 0
    np.testing.assert_array_equal(res.data[known], before[known])  # keep_known
    np.testing.assert_array_equal(viewer.layers["holes"].data, before)
    np.testing.assert_array_equal(labels.data, mask)


def test_rgb_and_frames(qtbot, viewer, dock):
    rgb = np.stack([tiny_image(seed=s) for s in range(3)], axis=-1)
    viewer.add_image(rgb, name="colour", rgb=True)
    configure(dock, steps=10, every=5)
    assert dock.channels.value == -1
    run_to_end(qtbot, dock)
    res = viewer.layers["colour [DIP]"]
    assert res.rgb and res.data.shape == (32, 32, 3) and res.data.dtype == np.uint8
    assert res.metadata["channel_axis"] == 2

    stack = np.stack([tiny_image(seed=s) for s in range(2)]).astype(np.float32)
    src = viewer.add_image(stack, name="movie", scale=(2.0, 1.0, 1.0))
    dock.image_layer.value = src
    dock.mode.value = "frames"
    assert not dock.keep_history.enabled
    configure(dock, steps=10, every=5)
    run_to_end(qtbot, dock)
    res = viewer.layers["movie [DIP]"]
    assert res.data.shape == (2, 32, 32) and res.data.dtype == np.float32
    np.testing.assert_allclose(res.scale, (2.0, 1.0, 1.0))
    md = res.metadata
    assert md["n_frames"] == 2 and md["frames_done"] == 2 and md["mode"] == "frames"
    assert [f["position"] for f in md["frames"]] == [[0], [1]]
    # each frame read its own noise level: one per frame, none for the stack
    assert "noise_std" not in md and all(f["noise_std"] > 0 for f in md["frames"])
    assert md["steps"] == 20 and md["input_shape"] == [2, 32, 32]
    assert all(np.any(res.data[k] != 0) for k in range(2))


def test_second_run_is_refused_while_one_goes(qtbot, viewer, dock, notes):
    viewer.add_image(tiny_image(), name="busy")
    configure(dock, steps=5000, every=5, auto_stop=False)
    first = dock.run()
    assert first is not None
    assert dock.run() is None
    assert notes and notes[-1][0] == "warning" and "still going" in notes[-1][1]
    dock.stop()
    qtbot.waitUntil(lambda: not dock.running, timeout=TIMEOUT)


def test_removing_the_input_stops_the_run(qtbot, viewer, dock):
    viewer.add_image(tiny_image(), name="gone")
    configure(dock, steps=5000, every=5, auto_stop=False)
    start_and_wait_first_snapshot(qtbot, viewer, dock, "gone [DIP]")
    viewer.layers.remove("gone")
    qtbot.waitUntil(lambda: not dock.running, timeout=TIMEOUT)
    assert "removed" in dock.status.value
    assert dock.last_worker.abort_requested


def test_errors_reach_the_user(viewer, dock, notes):
    viewer.add_image(np.zeros((3, 3), np.uint8), name="speck")
    assert dock.run() is None
    assert notes[-1][0] == "error" and "at least 4 pixels" in notes[-1][1]

    viewer.add_image(tiny_image(), name="ok")
    configure(dock, method="sgld", steps=10, burn_in=20)
    assert dock.run() is None
    assert notes[-1][0] == "error" and "burn_in" in notes[-1][1]
    dock.seed.value = "abc"
    assert dock.run() is None
    assert "seed" in notes[-1][1]
    assert not dock.running and "ok [SGLD]" not in viewer.layers


def test_closing_the_viewer_stops_the_run(qtbot, make_napari_viewer):
    viewer = make_napari_viewer()
    _dw, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    viewer.add_image(tiny_image(), name="bye")
    configure(widget, steps=5000, every=5, auto_stop=False)
    start_and_wait_first_snapshot(qtbot, viewer, widget, "bye [DIP]")
    worker = widget.last_worker
    viewer.close()
    qtbot.waitUntil(lambda: not worker.is_running, timeout=TIMEOUT)
    assert worker.abort_requested


def test_errors_in_the_worker_reach_the_user(qtbot, viewer, dock, notes, monkeypatch):
    def failing_iterate(*args, **kwargs):
        def gen():
            raise RuntimeError("out of memory (simulated)")
            yield  # pragma: no cover - makes this a generator

        return gen()

    monkeypatch.setattr(worker_module, "iterate", failing_iterate)
    viewer.add_image(tiny_image(), name="doomed")
    configure(dock, steps=10)
    run_to_end(qtbot, dock)
    assert notes[-1][0] == "error" and "out of memory (simulated)" in notes[-1][1]
    assert dock.status.value.startswith("Failed")
    assert "doomed [DIP]" not in viewer.layers


def test_sgld_burn_in_follows_steps(dock):
    dock.method.value = "sgld"
    dock.preset.value = "fast"  # 2000 steps, burn-in 600
    dock.steps.value = 100
    assert dock.burn_in.value == 30
    assert dock.run_options()["burn_in"] == 30
    dock.burn_in.value = 50  # the user's choice is kept
    dock.steps.value = 200
    assert dock.burn_in.value == 50


def test_chains_and_noise_model_reach_the_engine(qtbot, viewer, dock):
    viewer.add_image(tiny_image(dtype=np.uint16), name="counts")
    configure(dock, method="sgld", steps=20, every=5, burn_in=5, thinning=2, members=3,
              noise_model="poisson-gaussian", compile_net=True)
    opts = dock.run_options()
    assert opts["members"] == 3 and opts["noise_model"] == "poisson-gaussian"
    assert opts["compile"] is True
    run_to_end(qtbot, dock)
    res = viewer.layers["counts [SGLD]"]
    md = res.metadata
    assert md["config"]["members"] == 3 and md["config"]["compile"] is True
    assert md["samples"] == 3 * 8  # three chains pooled
    assert md["noise_model"]["model"] == "poisson-gaussian"
    assert res.data.shape == (32, 32) and res.data.dtype == np.uint16
    assert (viewer.layers["counts [SGLD std]"].data > 0).all()
    # back to the defaults: nothing extra is passed
    configure(dock, method="dip", noise_model="auto")
    opts = dock.run_options()
    assert "members" not in opts and "noise_model" not in opts and "compile" not in opts
    configure(dock, noise_model="gaussian")  # a choice other than the default is passed
    assert dock.run_options()["noise_model"] == "gaussian"


def test_photon_counts_sample_is_stabilised_by_default(qtbot, viewer, dock):
    """The photon-count sample through the widget with its defaults: the run reads the
    shot noise, stabilises the image and returns it in the camera's units; the input
    layer is left as it was."""
    viewer.open_sample(PLUGIN, "photon_counts")
    layer = viewer.layers["photon counts (nuclei)"]
    before = layer.data.copy()
    configure(dock, steps=10, every=5)
    assert "noise_model" not in dock.run_options()  # the default: automatic
    run_to_end(qtbot, dock)
    res = viewer.layers["photon counts (nuclei) [DIP]"]
    md = res.metadata
    assert md["noise_model"]["model"] == "poisson-gaussian"
    assert sorted(md["noise_model"]["estimated"]) == ["gain", "offset", "sigma"]
    assert any("chose 'poisson-gaussian'" in n for n in md["notes"])
    assert res.data.dtype == np.uint16 and abs(float(res.data.mean()) - before.mean()) < 5
    np.testing.assert_array_equal(layer.data, before)
    assert "Photon counts: variance-stabilised (gain " in dock.status.value


def test_the_frames_of_a_photon_count_movie_share_one_noise_model(qtbot, viewer, dock):
    """Frames restored one by one get one noise model, chosen once for the movie (here by
    two frames of shot noise against one without), not each its own."""
    rng = np.random.default_rng(0)
    ramp = np.tile(np.linspace(0.0, 1.0, 32), (32, 1))
    shot = [100 + 2 * rng.poisson(100 * ramp) + rng.normal(0, 3, ramp.shape) for _ in range(2)]
    flat = 100 + 2 * rng.poisson(20, ramp.shape) + rng.normal(0, 3, ramp.shape)
    md = _restore_movie(qtbot, viewer, dock, np.stack([*shot, flat]).astype(np.uint16))
    assert md["frames_done"] == 3
    assert md["noise_model"]["model"] == "poisson-gaussian"  # the last frame's too


def _restore_movie(qtbot, viewer, dock, movie):
    """Restore ``movie`` frame by frame (10 steps each); the result layer's metadata."""
    viewer.add_image(movie, name="movie")
    dock.mode.value = "frames"
    configure(dock, steps=10, every=5)
    run_to_end(qtbot, dock)
    return viewer.layers["movie [DIP]"].metadata


def test_the_frames_of_a_movie_share_one_r2r_strength(qtbot, viewer, dock):
    """Frames restored one by one get one R2R strength, from the median of their
    signal-to-noise ratios (two faint frames against a sharp one: 2 for all three)."""
    from skimage import data as skdata

    cam = skdata.camera()[180:244, 200:264].astype(np.float64)
    rng = np.random.default_rng(0)
    sharp = np.clip(cam + rng.normal(0, 25, cam.shape), 0, 255)
    faint = [np.clip(128 + 0.1 * (cam - cam.mean()) + rng.normal(0, 25, cam.shape), 0, 255)
             for _ in range(2)]
    md = _restore_movie(qtbot, viewer, dock, np.stack([*faint, sharp]).astype(np.float32))
    assert md["frames_done"] == 3
    assert md["config"]["r2r_alpha"] == 2.0  # the sharp last frame's too


def test_a_mask_switches_the_presets_between_r2r_and_holdout(qtbot, viewer, dock):
    viewer.add_image(tiny_image(), name="img")
    dock.mask_layer.value = None
    dock.method.value = "dip"
    dock.preset.value = "fast"
    assert dock.data_term.value == "r2r" and dock.data_term.enabled
    assert dock.second_stage.value == "wiener" and dock.second_stage.enabled
    assert dock.steps.value == make_config("dip", "fast").steps
    assert dock.auto_stop.enabled  # R2R's drift stop
    assert "drift apart" in dock.auto_stop.native.toolTip()
    labels = viewer.add_labels(np.zeros((32, 32), np.uint8), name="m")
    dock.mask_layer.value = labels
    assert dock.data_term.value == "holdout" and dock.auto_stop.enabled
    assert dock.second_stage.value == "off"  # nothing to filter where pixels are missing
    assert dock.gap_fill.value == "biharmonic" and dock.gap_fill.enabled
    assert "gap_blend" not in dock.run_options()  # the preset's own value
    assert "hidden from the network" in dock.auto_stop.native.toolTip()
    assert dock.steps.value == make_config("dip", "fast", masked=True).steps
    assert "loss" not in dock.run_options()  # the engine picks the same for a mask
    dock.mask_layer.value = None
    assert dock.data_term.value == "r2r" and dock.gap_fill.value == "off"
    # the default preset averages four R2R nets without a mask, four hold-out nets with one
    dock.preset.value = "balanced"
    assert dock.data_term.value == "r2r" and dock.members.value == 4
    assert "members" not in dock.run_options()  # the preset's own value
    dock.mask_layer.value = labels
    assert dock.data_term.value == "holdout" and dock.members.value == 4
    assert dock.steps.value == make_config("dip", "balanced", masked=True).steps
    dock.mask_layer.value = None
    dock.preset.value = "fast"
    dock.method.value = "sgld"
    assert not dock.data_term.enabled and "loss" not in dock.run_options()
    assert not dock.second_stage.enabled and "refine" not in dock.run_options()
    assert not dock.gap_fill.enabled and "gap_blend" not in dock.run_options()
    configure(dock, method="dip", steps=10, every=5)
    run_to_end(qtbot, dock)
    md = viewer.layers["img [DIP]"].metadata
    assert md["config"]["loss"] == "r2r" and md["steps"] == 10
    assert any("loss: R2R" in n for n in md["notes"])
    assert md["config"]["refine"] == "wiener"
    assert any(n.startswith("refine: Wiener") for n in md["notes"])
    # the second stage switched off by hand reaches the run
    dock.second_stage.value = "off"
    assert dock.run_options()["refine"] == "off"


def test_sgld_gap_calibration_setting(qtbot, viewer, dock):
    with_painted_mask(viewer, dock, tiny_image().astype(np.float32) / 255, "gaps",
                      np.s_[8:20, 10:22])
    dock.method.value = "dip"
    assert not dock.gap_calibration.enabled  # SGLD only
    assert "calibration_share" not in dock.run_options()
    configure(dock, method="sgld", steps=20, every=5, burn_in=5, thinning=2)
    assert dock.gap_calibration.enabled
    assert dock.gap_calibration.value == pytest.approx(
        make_config("sgld", "fast", masked=True).calibration_share)
    assert "calibration_share" not in dock.run_options()  # the preset's own value
    assert "held out of the fit" in dock.gap_calibration.native.toolTip()
    run_to_end(qtbot, dock)
    md = viewer.layers["gaps [SGLD std]"].metadata
    assert md["config"]["calibration_share"] == pytest.approx(0.05)
    notes = [n for n in md["notes"] if n.startswith("uncertainty:")]
    assert len(notes) == 1 and "held out of the fit" in notes[0]
    # switched off by hand, it reaches the run, which then keeps the chain's own std
    dock.gap_calibration.value = 0.0
    assert dock.run_options()["calibration_share"] == 0.0
    run_to_end(qtbot, dock)
    md = viewer.layers["gaps [SGLD std]"].metadata
    assert md["config"]["calibration_share"] == 0.0
    assert not any(n.startswith("uncertainty:") for n in md["notes"])


def test_a_volume_with_painted_holes_gets_the_gap_fill(qtbot, viewer, dock):
    vol = np.stack([tiny_image(seed=s) for s in range(6)]).astype(np.float32)
    before = vol.copy()
    viewer.add_image(vol, name="stack")
    mask = np.zeros(vol.shape, np.uint8)
    mask[1:5, 10:18, 12:20] = 1  # a hole through four slices
    labels = viewer.add_labels(mask, name="paint")
    viewer.layers.selection.active = viewer.layers["stack"]
    dock.mask_layer.value = labels
    configure(dock, steps=10, every=5, keep_known=True)
    assert dock.mode.value == "whole" and dock.gap_fill.value == "biharmonic"
    run_to_end(qtbot, dock)
    res = viewer.layers["stack [DIP]"]
    assert res.data.shape == vol.shape
    blend = [n for n in res.metadata["notes"] if n.startswith("gap blend")]
    assert len(blend) == 1 and blend[0].startswith("gap blend: the gaps are")
    known = mask == 0
    np.testing.assert_array_equal(res.data[known], before[known])
    np.testing.assert_array_equal(viewer.layers["stack"].data, before)
    assert np.isfinite(res.data).all()


def test_finish_ends_the_fit_and_completes_the_result(qtbot, viewer, dock, monkeypatch):
    viewer.add_image(tiny_image(), name="long")
    configure(dock, steps=5000, every=5, auto_stop=False)
    assert dock.second_stage.value == "wiener"  # the fast preset's denoising
    assert not dock.finish_button.enabled
    texts = record_status(monkeypatch, dock)
    start_and_wait_first_snapshot(qtbot, viewer, dock, "long [DIP]")
    assert dock.finish_button.enabled and dock.stop_button.enabled
    dock.finish_button.native.click()
    assert not dock.finish_button.enabled and dock.stop_button.enabled
    qtbot.waitUntil(lambda: not dock.running, timeout=TIMEOUT)
    assert any(t.startswith("Finishing:") for t in texts)

    md = viewer.layers["long [DIP]"].metadata
    assert md["stop_reason"].startswith("ended on request after")
    assert 5 <= md["steps"] < 5000 and md["steps"] % 5 == 0
    assert any(n.startswith("refine: Wiener") for n in md["notes"])  # the second stage ran
    assert dock.status.value.startswith("Done in")
    assert not dock.finish_button.enabled and not dock.stop_button.enabled


def test_finish_on_frames_leaves_the_rest_empty(qtbot, viewer, dock):
    stack = np.stack([tiny_image(seed=s) for s in range(3)]).astype(np.float32)
    viewer.add_image(stack, name="movie")
    dock.mode.value = "frames"
    configure(dock, steps=5000, every=5, auto_stop=False)
    start_and_wait_first_snapshot(qtbot, viewer, dock, "movie [DIP]")
    dock.finish_button.native.click()
    qtbot.waitUntil(lambda: not dock.running, timeout=TIMEOUT)

    res = viewer.layers["movie [DIP]"]
    md = res.metadata
    assert md["frames_done"] == 1 and md["n_frames"] == 3
    assert md["stop_reason"] == "finished early by the user: 1 of 3 frames restored; the " \
                                "others are empty"
    assert md["frames"][0]["stop_reason"].startswith("ended on request after")
    assert np.any(res.data[0] != 0) and not np.any(res.data[1:])
    assert dock.status.value.startswith("Finished early after")


def test_noise_std_field(qtbot, viewer, dock, notes):
    """A known noise level: 0 shows "estimate" and passes nothing; a value is kept across
    presets, reaches the run and its layer's metadata, and a Poisson-Gaussian choice with
    it is refused before anything starts."""
    viewer.add_image(np.random.default_rng(0).random((16, 16)).astype(np.float32),
                     name="float data")
    # the field's step and decimals follow the image's units: a float image in [0, 1] ...
    assert dock.noise_std.native.singleStep() == pytest.approx(0.01)
    dock.noise_std.value = 0.0123
    assert dock.noise_std.value == pytest.approx(0.0123)
    dock.noise_std.value = 0
    viewer.add_image(tiny_image(), name="known")  # ... and 8-bit data
    assert dock.image_layer.value.name == "known"
    assert dock.noise_std.native.singleStep() == 1
    assert dock.noise_std.value == 0 and "noise_std" not in dock.run_options()
    assert dock.noise_std.native.text() == "estimate"
    configure(dock, steps=10, every=5)
    run_to_end(qtbot, dock)  # the level read from the image: the status says so
    assert re.search(r"Noise std [0-9.]+, read from the image: where you know it, set "
                     r"'noise std'", dock.status.value), dock.status.value
    viewer.layers.remove("known [DIP]")
    dock.noise_std.value = 20
    dock.preset.value = "balanced"  # a preset's change resets its own fields only
    configure(dock, steps=10, every=5)  # back to the fast preset
    assert dock.noise_std.value == 20 and dock.run_options()["noise_std"] == 20
    run_to_end(qtbot, dock)
    assert "Noise std 20 (given)." in dock.status.value
    md = viewer.layers["known [DIP]"].metadata
    assert md["config"]["noise_std"] == 20 and md["noise_std"] == 20
    assert any("(given: noise_std)" in n for n in md["notes"] if n.startswith("loss: R2R"))
    viewer.layers.remove("known [DIP]")
    configure(dock, steps=10, every=5, noise_model="poisson-gaussian")
    assert dock.run() is None
    assert notes[-1][0] == "error" and "noise_std: a known std of Gaussian" in notes[-1][1]
    assert dock.status.value.startswith("Not started")
    assert "known [DIP]" not in viewer.layers


def test_time_limit_field(qtbot, viewer, dock, monkeypatch):
    viewer.add_image(tiny_image(), name="timed")
    assert dock.time_limit.value == 0 and "time_limit" not in dock.run_options()
    assert dock.time_limit.native.text() == "none"
    dock.time_limit.value = 1
    configure(dock, steps=5000, every=5, auto_stop=False)  # method and preset set again
    assert dock.time_limit.value == 1  # not a preset's setting: kept
    assert dock.run_options()["time_limit"] == 1
    texts = record_status(monkeypatch, dock)
    run_to_end(qtbot, dock)
    # the time left counts the limit, not the 5000 steps
    left = [re.search(r"elapsed \u00b7 about (\d+) s left", t) for t in texts]
    left = [int(m.group(1)) for m in left if m]
    assert left and max(left) <= 1, texts
    md = viewer.layers["timed [DIP]"].metadata
    assert md["config"]["time_limit"] == 1
    assert md["stop_reason"].startswith("ended at the time limit (1 s) after")
    assert md["steps"] < 5000
