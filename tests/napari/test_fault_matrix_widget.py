"""Fault matrix of the napari widget: Stop at random points, errors inside the engine,
closing the viewer or removing the input mid-run, bad settings, and memory over twenty
runs in one viewer.

The cases are declared as in ``tests/test_fault_matrix.py`` (the Python API and the
command line), whose last tests check that ``docs/FAULTS.md`` lists exactly the cases of
both files; ``scripts/fault_report.py`` runs both and writes that report.

What a run leaves behind in the viewer:

* Stop (or a removed input layer): the result layers keep the latest snapshot, whole, and
  their metadata says where and why the run stopped; Stop before the first snapshot leaves
  no layer.
* An error inside the engine: a notification and the status line say what went wrong, and
  the viewer's layers are as they were before the run (the layers it added are removed; a
  result layer of an earlier run that it was updating gets its earlier contents back).

Everything is tiny: 16 x 16 images, a net of width 8 with 2 scales, at most 30 steps.
"""

from __future__ import annotations

import gc
import inspect
import os
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest


@dataclass(frozen=True)
class Case:
    """One fault: what is done to which front end, and what must happen."""

    id: str
    front: str
    done: str
    expect: str
    params: dict[str, Any] = field(default_factory=dict, compare=False)

    def __str__(self) -> str:
        return self.id


CASES = [
    Case("widget-stop-random", "widget",
         "DIP, 30 steps, a snapshot every 2: press Stop at once after Run, then after "
         "snapshot k for three k drawn at random (seeded), each time on a new input layer.",
         "No error; at once: no layer, or a whole one marked stopped; after snapshot k: the "
         "result layer holds snapshot k+1 (input's shape and dtype, finite) and its metadata "
         "says 'stopped by the user at step 2(k+1)'; the input is unchanged; Run is enabled, "
         "Stop disabled; the engine is closed.",
         {"seed": 7}),
    Case("widget-stop-sgld", "widget",
         "SGLD (burn-in 10 of 30 steps): Stop during the burn-in, and again after samples "
         "were kept.",
         "During burn-in: a whole result layer marked stopped and no uncertainty layer; after "
         "samples: result and uncertainty layers, both whole and marked stopped."),
    Case("widget-stop-frames", "widget",
         "A 3-frame stack restored frame by frame: Stop in the middle of the second frame.",
         "The result layer has the stack's shape; its metadata says frames_done 1 of 3 and "
         "'stopped by the user ... in frame 2/3'; the first frame is restored."),
    Case("widget-stop-after-last", "widget",
         "Press Stop after the final snapshot is shown but before the run has ended.",
         "The run is reported as done (status 'Done'), with the engine's own stop reason, not "
         "'stopped by the user'."),
    Case("widget-engine-error-first", "widget",
         "The network's forward pass raises RuntimeError at its first call (fault "
         "injection); then Run again without the fault.",
         "An error notification names the image and the message; status 'Failed: ...'; no "
         "result layer; the input's data and name are unchanged; the next run completes."),
    Case("widget-engine-error-mid", "widget",
         "The forward pass raises RuntimeError at step 7, after the result layer appeared.",
         "The notification and the status name the message; the half-made result layer is "
         "removed; the input is unchanged; Run is enabled again."),
    Case("widget-engine-error-reused", "widget",
         "A run completes; a second run on the same image (another seed) fails at step 7 "
         "after it has updated the first run's result layer.",
         "The result layer gets the first run's data and metadata back exactly."),
    Case("widget-engine-error-frames", "widget",
         "A 2-frame stack: the forward pass raises in the second frame.",
         "The error is shown; no result layer remains (the first frame's result goes with "
         "the half-made stack)."),
    Case("widget-close-viewer", "widget", "Close the viewer while a run is going.",
         "The worker thread ends within 5 s; the engine is closed; no error."),
    Case("widget-remove-input", "widget", "Remove the input layer while a run is going.",
         "The run stops; the status says why; the result layer keeps the latest snapshot and "
         "its metadata says 'stopped: the input layer ... was removed'."),
    Case("widget-bad-settings", "widget",
         "Press Run with a 3x3 image, with a mask of the wrong shape, and with an SGLD "
         "burn-in not below the steps.",
         "Each time an error notification names the problem (image size, mask, burn_in); no "
         "run starts; no layer is added."),
    Case("widget-memory-20-runs", "widget",
         "20 runs in a row in one viewer (DIP and SGLD alternately, 16x16, 10 steps), after "
         "3 warm-up runs.",
         "Resident memory grows by less than 60 MiB; the layers stay input + [DIP] + [SGLD] + "
         "[SGLD std]; no run state is left alive."),
]
BY_ID = {c.id: c for c in CASES}


def cases(*ids: str):
    """Parametrize a test with the declared cases ``ids`` (the test ids are the case ids)."""
    return pytest.mark.parametrize("case", [BY_ID[i] for i in ids], ids=list(ids))


pytest.importorskip("napari")
pytest.importorskip("pytestqt")

from napari.utils.notifications import (  # noqa: E402
    NotificationSeverity,
    notification_manager,
)

from napari_dip._napari import widgets as widgets_module  # noqa: E402
from napari_dip._napari import worker as worker_module  # noqa: E402
from napari_dip._napari.layers import ROLE_KEY  # noqa: E402

PLUGIN = "napari-dip"
WIDGET = "Deep Image Prior"
TIMEOUT = 60_000  # ms


@pytest.fixture
def observe(record_property):
    """Collects what a test observed; stored as the test's ``observed`` property."""
    notes: list[str] = []
    yield notes.append
    record_property("observed", "; ".join(notes))


@pytest.fixture
def dock(viewer):
    _dock_widget, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    return widget


@pytest.fixture
def errors():
    """The error notifications shown since the test started."""
    start = len(notification_manager.records)

    def new() -> list[str]:
        return [str(n.message) for n in notification_manager.records[start:]
                if n.severity == NotificationSeverity.ERROR]

    return new


class Gate:
    """Wraps every engine the widget starts: records it and, when asked, holds the worker
    after the ``after``-th snapshot (counted over all frames) until :meth:`release`."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.engines: list[Any] = []
        self.after: int | None = None
        self.count = 0
        self.waiting = threading.Event()
        self._go = threading.Event()
        real = worker_module.iterate

        def gated(*args, **kwargs):
            engine = real(*args, **kwargs)
            self.engines.append(engine)
            return _Held(self, engine)

        monkeypatch.setattr(worker_module, "iterate", gated)

    def hold_after(self, k: int | None) -> None:
        self.after, self.count = k, 0
        self.waiting.clear()
        self._go.clear()

    def release(self) -> None:
        self._go.set()

    def closed(self, k: int = -1) -> bool:
        """Whether engine ``k`` is closed (its memory freed), started or not."""
        return inspect.getgeneratorstate(self.engines[k]) == inspect.GEN_CLOSED


class _Held:
    """An engine generator that a :class:`Gate` can hold between two snapshots."""

    def __init__(self, gate: Gate, engine: Any) -> None:
        self.gate, self.engine = gate, engine

    def __iter__(self) -> "_Held":
        return self

    def __next__(self) -> Any:
        gate = self.gate
        if gate.after is not None and gate.count == gate.after and not gate._go.is_set():
            gate.waiting.set()
            gate._go.wait(30)
        snap = next(self.engine)
        gate.count += 1
        return snap

    def close(self) -> None:
        self.engine.close()


@pytest.fixture
def gate(monkeypatch):
    g = Gate(monkeypatch)
    yield g
    g.release()  # never leave a worker waiting


class Fault:
    """Makes the network's forward pass raise at its ``at``-th call."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from napari_dip.core import engine

        self.calls = 0
        self.at: int | None = None
        real = engine.SkipNet.forward

        def forward(net, *args, **kwargs):
            self.calls += 1
            if self.calls == self.at:
                raise RuntimeError("simulated failure in the network")
            return real(net, *args, **kwargs)

        monkeypatch.setattr(engine.SkipNet, "forward", forward)

    def arm(self, at: int | None) -> None:
        self.calls, self.at = 0, at


@pytest.fixture
def fault(monkeypatch):
    return Fault(monkeypatch)


def tiny_image(shape=(16, 16), seed=0, dtype=np.uint8):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[-2], : shape[-1]]
    img = 120 + 80 * np.sin(xx / 3.0) * np.cos(yy / 4.0) + rng.normal(0, 20, shape)
    return np.clip(img, 0, 255).astype(dtype)


def configure(widget, *, method="dip", steps=30, every=2, seed=0, **extra):
    widget.method.value = method  # resets steps and advanced fields to the preset
    widget.preset.value = "fast"
    widget.steps.value = steps
    widget.net_width.value = 8
    widget.net_scales.value = 2
    widget.snapshot_every.value = every
    widget.seed.value = str(seed)
    if method == "dip":  # one forward pass per step, which the faults count
        widget.data_term.value = "mse"
    for name, value in extra.items():
        getattr(widget, name).value = value


def shown_step(viewer, name: str) -> int:
    """The step of the snapshot that result layer ``name`` shows (0 before the first)."""
    if name not in viewer.layers:
        return 0
    return int(viewer.layers[name].metadata.get("steps") or 0)


def assert_idle(dock):
    assert not dock.running
    assert dock.run_button.enabled and not dock.stop_button.enabled


def assert_whole(layer, like: np.ndarray):
    assert layer.data.shape == like.shape and layer.data.dtype == like.dtype
    assert np.isfinite(np.asarray(layer.data, dtype=np.float64)).all()


# -- Stop ------------------------------------------------------------------------------
@cases("widget-stop-random")
def test_stop_at_random_points(case, observe, qtbot, viewer, dock, gate, errors):
    rng = random.Random(case.params["seed"])
    points = [0] + sorted(rng.sample(range(1, 13), 3))
    for i, k in enumerate(points):
        data = tiny_image(seed=i)
        before = data.copy()
        name = f"noisy {i}"
        src = viewer.add_image(data, name=name)
        dock.image_layer.value = src
        configure(dock, steps=30, every=2, auto_stop=False)
        gate.hold_after(k or None)
        dock.run_button.native.click()
        assert dock.running
        if k:
            qtbot.waitUntil(lambda: shown_step(viewer, f"{name} [DIP]") == 2 * k,
                            timeout=TIMEOUT)
        dock.stop_button.native.click()
        gate.release()
        qtbot.waitUntil(lambda: not dock.running, timeout=TIMEOUT)

        assert_idle(dock)
        assert gate.closed()  # closed: its memory is freed
        assert src.name == name
        np.testing.assert_array_equal(src.data, before)
        result = f"{name} [DIP]"
        if result not in viewer.layers:
            assert k == 0 and dock.status.value.startswith("Stopped before the first snapshot")
            observe("at once: no layer")
            continue
        layer = viewer.layers[result]
        assert_whole(layer, data)
        md = layer.metadata
        assert md[ROLE_KEY] == "result"
        if k:
            assert md["steps"] == 2 * (k + 1)
        assert md["stop_reason"].startswith(f"stopped by the user at step {md['steps']}")
        assert dock.status.value.startswith(f"Stopped at step {md['steps']}")
        observe(f"{'at once' if not k else f'after snapshot {k}'}: layer at step "
                f"{md['steps']}, marked stopped")
    assert errors() == []


@cases("widget-stop-sgld")
def test_stop_sgld_in_and_after_burn_in(case, observe, qtbot, viewer, dock, gate, errors):
    data = tiny_image().astype(np.float32) / 255
    viewer.add_image(data, name="f")
    for k, samples_expected in ((2, False), (9, True)):
        configure(dock, method="sgld", steps=30, every=2, burn_in=10, thinning=2)
        gate.hold_after(k)
        dock.run_button.native.click()
        qtbot.waitUntil(lambda: shown_step(viewer, "f [SGLD]") == 2 * k, timeout=TIMEOUT)
        dock.stop_button.native.click()
        gate.release()
        qtbot.waitUntil(lambda: not dock.running, timeout=TIMEOUT)
        assert_idle(dock)
        layer = viewer.layers["f [SGLD]"]
        assert_whole(layer, data)
        assert layer.metadata["stop_reason"].startswith("stopped by the user")
        if samples_expected:
            std = viewer.layers["f [SGLD std]"]
            assert std.data.shape == data.shape and np.all(std.data >= 0)
            assert std.metadata[ROLE_KEY] == "std"
            assert std.metadata["stop_reason"].startswith("stopped by the user")
            assert std.metadata["steps"] == layer.metadata["steps"] == 2 * (k + 1)
            observe(f"after samples: [SGLD] and [SGLD std] at step {2 * (k + 1)}, marked "
                    f"stopped ({std.metadata['samples']} samples)")
        else:
            assert "f [SGLD std]" not in viewer.layers
            observe(f"in burn-in: [SGLD] at step {layer.metadata['steps']}, marked stopped, "
                    "no std layer")
    assert errors() == []


@cases("widget-stop-frames")
def test_stop_in_the_middle_of_frames(case, observe, qtbot, viewer, dock, gate, errors):
    stack = np.stack([tiny_image(seed=s) for s in range(3)])
    viewer.add_image(stack, name="movie")
    dock.mode.value = "frames"
    configure(dock, steps=10, every=2, auto_stop=False)
    gate.hold_after(7)  # frame 2, step 4 (5 snapshots a frame)
    dock.run_button.native.click()
    qtbot.waitUntil(lambda: shown_step(viewer, "movie [DIP]") == 14, timeout=TIMEOUT)
    dock.stop_button.native.click()
    gate.release()
    qtbot.waitUntil(lambda: not dock.running, timeout=TIMEOUT)
    assert_idle(dock)
    layer = viewer.layers["movie [DIP]"]
    assert_whole(layer, stack)
    md = layer.metadata
    assert md["n_frames"] == 3 and md["frames_done"] == 1
    assert md["stop_reason"].startswith("stopped by the user at step 6 in frame 2/3")
    assert np.any(layer.data[0] != 0)
    assert errors() == []
    observe(f"layer {layer.data.shape}, frames_done {md['frames_done']}/3, "
            f"'{md['stop_reason']}'")


@cases("widget-stop-after-last")
def test_stop_after_the_final_snapshot(case, observe, qtbot, viewer, dock, gate, errors):
    viewer.add_image(tiny_image(), name="short")
    configure(dock, steps=10, every=2, auto_stop=False)
    gate.hold_after(5)  # the final snapshot
    dock.run_button.native.click()
    qtbot.waitUntil(lambda: shown_step(viewer, "short [DIP]") == 10, timeout=TIMEOUT)
    dock.stop_button.native.click()
    gate.release()
    qtbot.waitUntil(lambda: not dock.running, timeout=TIMEOUT)
    assert_idle(dock)
    md = viewer.layers["short [DIP]"].metadata
    assert dock.status.value.startswith("Done"), dock.status.value
    assert md["stop_reason"].startswith("reached the maximum of 10 steps"), md["stop_reason"]
    assert errors() == []
    observe(f"status '{dock.status.value.splitlines()[0]}'; stop reason "
            f"'{md['stop_reason']}'")


# -- errors inside the engine ------------------------------------------------------------
def _wait_failed(qtbot, dock):
    qtbot.waitUntil(lambda: not dock.running, timeout=TIMEOUT)
    assert dock.status.value.startswith("Failed: simulated failure in the network")


@cases("widget-engine-error-first")
def test_engine_error_before_the_first_snapshot(case, observe, qtbot, viewer, dock, fault,
                                                errors):
    data = tiny_image()
    before = data.copy()
    src = viewer.add_image(data, name="doomed")
    configure(dock, steps=10, every=2)
    fault.arm(1)
    dock.run_button.native.click()
    _wait_failed(qtbot, dock)
    assert_idle(dock)
    shown = errors()
    assert len(shown) == 1 and "doomed" in shown[0]
    assert "simulated failure in the network" in shown[0]
    assert [x.name for x in viewer.layers] == ["doomed"]
    assert src.name == "doomed"
    np.testing.assert_array_equal(src.data, before)
    observe(f"notification: '{shown[0]}'; layers: {[x.name for x in viewer.layers]}")
    fault.arm(None)
    dock.run_button.native.click()
    qtbot.waitUntil(lambda: not dock.running, timeout=TIMEOUT)
    assert dock.status.value.startswith("Done")
    assert viewer.layers["doomed [DIP]"].metadata["steps"] == 10
    observe("next run: done")


@cases("widget-engine-error-mid")
def test_engine_error_after_the_layer_appeared(case, observe, qtbot, viewer, dock, gate,
                                               fault, errors):
    data = tiny_image()
    before = data.copy()
    src = viewer.add_image(data, name="doomed")
    configure(dock, steps=30, every=2, auto_stop=False)
    fault.arm(7)
    gate.hold_after(3)
    dock.run_button.native.click()
    qtbot.waitUntil(lambda: shown_step(viewer, "doomed [DIP]") == 6, timeout=TIMEOUT)
    gate.release()
    _wait_failed(qtbot, dock)
    assert_idle(dock)
    assert "doomed [DIP]" not in viewer.layers
    assert [x.name for x in viewer.layers] == ["doomed"]
    shown = errors()
    assert len(shown) == 1 and "simulated failure in the network" in shown[0]
    assert src.name == "doomed"
    np.testing.assert_array_equal(src.data, before)
    observe("the layer appeared at step 6 and was removed after the failure; status "
            f"'{dock.status.value.splitlines()[0]}'")


@cases("widget-engine-error-reused")
def test_engine_error_gives_back_an_earlier_result(case, observe, qtbot, viewer, dock, gate,
                                                   fault, errors):
    viewer.add_image(tiny_image(), name="twice")
    configure(dock, steps=10, every=2, seed=1)
    dock.run_button.native.click()
    qtbot.waitUntil(lambda: not dock.running, timeout=TIMEOUT)
    layer = viewer.layers["twice [DIP]"]
    first_data = np.array(layer.data, copy=True)
    first_md = dict(layer.metadata)
    assert first_md["seed"] == 1 and first_md["steps"] == 10

    configure(dock, steps=30, every=2, seed=2, auto_stop=False)
    fault.arm(7)
    gate.hold_after(3)
    dock.run_button.native.click()
    qtbot.waitUntil(lambda: viewer.layers["twice [DIP]"].metadata.get("seed") == 2
                    and shown_step(viewer, "twice [DIP]") == 6, timeout=TIMEOUT)
    assert viewer.layers["twice [DIP]"] is layer  # the earlier layer is being updated
    gate.release()
    _wait_failed(qtbot, dock)
    assert [x.name for x in viewer.layers] == ["twice", "twice [DIP]"]
    assert viewer.layers["twice [DIP]"] is layer
    np.testing.assert_array_equal(layer.data, first_data)
    assert layer.metadata == first_md
    assert len(errors()) == 1
    observe("the first run's data and metadata are back (seed 1, 10 steps)")


@cases("widget-engine-error-frames")
def test_engine_error_in_a_later_frame(case, observe, qtbot, viewer, dock, fault, errors):
    stack = np.stack([tiny_image(seed=s) for s in range(2)])
    viewer.add_image(stack, name="pair")
    dock.mode.value = "frames"
    configure(dock, steps=10, every=2, auto_stop=False)
    fault.arm(13)  # the second frame's third step
    dock.run_button.native.click()
    _wait_failed(qtbot, dock)
    assert_idle(dock)
    assert [x.name for x in viewer.layers] == ["pair"]
    shown = errors()
    assert len(shown) == 1 and "simulated failure" in shown[0]
    observe(f"notification: '{shown[0]}'; no result layer")


# -- the viewer goes away, the input goes away ------------------------------------------
@cases("widget-close-viewer")
def test_closing_the_viewer_mid_run(case, observe, qtbot, make_napari_viewer, gate, errors):
    viewer = make_napari_viewer()
    _dw, dock = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    viewer.add_image(tiny_image(), name="bye")
    configure(dock, steps=30, every=2, auto_stop=False)
    gate.hold_after(2)
    dock.run_button.native.click()
    worker = dock.last_worker
    qtbot.waitUntil(lambda: shown_step(viewer, "bye [DIP]") == 4, timeout=TIMEOUT)
    viewer.close()
    t0 = time.perf_counter()
    gate.release()
    qtbot.waitUntil(lambda: not worker.is_running, timeout=5_000)
    seconds = time.perf_counter() - t0
    qtbot.waitUntil(gate.closed, timeout=5_000)
    assert worker.abort_requested
    assert errors() == []
    observe(f"worker ended {seconds:.2f} s after the viewer closed; engine closed")


@cases("widget-remove-input")
def test_removing_the_input_mid_run(case, observe, qtbot, viewer, dock, gate, errors):
    viewer.add_image(tiny_image(), name="gone")
    configure(dock, steps=30, every=2, auto_stop=False)
    gate.hold_after(2)
    dock.run_button.native.click()
    qtbot.waitUntil(lambda: shown_step(viewer, "gone [DIP]") == 4, timeout=TIMEOUT)
    viewer.layers.remove("gone")
    gate.release()
    qtbot.waitUntil(lambda: not dock.running, timeout=TIMEOUT)
    assert_idle(dock)
    assert "removed" in dock.status.value
    md = viewer.layers["gone [DIP]"].metadata
    assert md["stop_reason"].startswith("stopped: the input layer 'gone' was removed")
    assert gate.closed()
    assert errors() == []
    observe(f"status '{dock.status.value}'; result layer: '{md['stop_reason']}' at step "
            f"{md['steps']}")


@cases("widget-bad-settings")
def test_bad_settings_start_nothing(case, observe, viewer, dock, errors):
    viewer.add_image(np.zeros((3, 3), np.uint8), name="speck")
    assert dock.run() is None
    good = viewer.add_image(tiny_image(), name="ok")
    wrong = viewer.add_labels(np.zeros((8, 8), np.uint8), name="small mask")
    dock.image_layer.value = good
    dock.mask_layer.value = wrong
    configure(dock, steps=10, every=2)
    assert dock.run() is None
    dock.mask_layer.value = None
    configure(dock, method="sgld", steps=10, every=2, burn_in=20)
    assert dock.run() is None
    shown = errors()
    assert len(shown) == 3
    assert "at least 4 pixels" in shown[0]
    assert "mask" in shown[1].lower()
    assert "burn_in" in shown[2]
    assert_idle(dock)
    assert [x.name for x in viewer.layers] == ["speck", "ok", "small mask"]
    assert dock.last_worker is None
    for text in shown:
        observe(text.removeprefix("Deep Image Prior: ")[:110])


# -- memory -------------------------------------------------------------------------------
def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


@cases("widget-memory-20-runs")
@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_twenty_runs_in_one_viewer(case, observe, qtbot, viewer, dock, errors):
    viewer.add_image(tiny_image(), name="again")
    settings = [dict(method="dip"), dict(method="sgld", burn_in=4, thinning=2)]

    def one_run(k: int) -> None:
        configure(dock, steps=10, every=5, seed=k, **settings[k % 2])
        dock.run_button.native.click()
        qtbot.waitUntil(lambda: not dock.running, timeout=TIMEOUT)
        assert dock.status.value.startswith("Done"), dock.status.value

    for k in range(3):
        one_run(k)
    names = [x.name for x in viewer.layers]
    assert names == ["again", "again [DIP]", "again [SGLD std]", "again [SGLD]"]
    gc.collect()
    qtbot.wait(50)
    before = _rss_mib()
    t0 = time.perf_counter()
    for k in range(20):
        one_run(k)
    seconds = time.perf_counter() - t0
    gc.collect()
    qtbot.wait(50)
    growth = _rss_mib() - before
    assert [x.name for x in viewer.layers] == names
    alive = [o for o in gc.get_objects() if isinstance(o, widgets_module._Run)]
    assert alive == []
    assert errors() == []
    observe(f"RSS {before:.0f} -> {before + growth:.0f} MiB ({growth:+.1f} MiB over 20 runs, "
            f"{seconds:.1f} s); layers {len(names)} before and after; no run state alive")
    assert growth < 60, f"resident memory grew by {growth:.1f} MiB over 20 runs"
