"""The dock widget's Dask path: the frames of a stack as tasks on a local cluster.

The widget starts a real ``LocalCluster`` of two worker processes ("local:2") and closes
it at the end of each run. Runs are tiny (frames of 16 x 16, a net of width 8, a few
steps), so that the file takes well under a minute on two CPU cores, most of it spent
starting the workers.
"""

from __future__ import annotations

import multiprocessing
import sys

import numpy as np
import pytest

pytest.importorskip("napari")
pytest.importorskip("pytestqt")
pytest.importorskip("distributed")

import napari_dip  # noqa: E402
from napari_dip._napari import worker as worker_module  # noqa: E402
from napari_dip._napari.layers import ROLE_KEY  # noqa: E402

PLUGIN = "napari-dip"
WIDGET = "Deep Image Prior"
TIMEOUT = 90_000  # ms: starting the workers (PyTorch imports) is most of a run


@pytest.fixture
def dock(qtbot, viewer):
    _dock_widget, widget = viewer.window.add_plugin_dock_widget(PLUGIN, WIDGET)
    yield widget
    # a run left going is stopped, and its cluster closed, before the viewer goes
    if widget.running:
        widget.stop()
        qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT)
    qtbot.waitUntil(lambda: not multiprocessing.active_children(), timeout=TIMEOUT)


def stack(n=3, size=16):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    frames = [0.5 + 0.3 * np.sin(xx / (2.0 + k)) * np.cos(yy / 3.0)
              + rng.normal(0, 0.1, (size, size)) for k in range(n)]
    return np.stack(frames).astype(np.float32)


def configure(widget, *, steps=10, every=5, scheduler="local:2", **extra):
    widget.method.value = "dip"
    widget.preset.value = "fast"
    widget.steps.value = steps
    widget.net_width.value = 8
    widget.net_scales.value = 2
    widget.snapshot_every.value = every
    widget.seed.value = "0"
    widget.mode.value = "frames"
    widget.dask_scheduler.value = scheduler
    for name, value in extra.items():
        getattr(widget, name).value = value


def record_shown(dock, monkeypatch):
    """The frames the widget puts into the layers, in the order it does so."""
    shown: list[int] = []
    cls = type(dock)
    real = cls._show

    def show(self, run, update):
        if self is dock:
            shown.append(update.frame)
        real(self, run, update)

    # patched on the class: setting and deleting attributes of a magicgui Container
    # instance adds and removes widgets
    monkeypatch.setattr(cls, "_show", show)
    return shown


def test_frames_on_a_local_cluster(qtbot, viewer, dock, monkeypatch):
    data = stack()
    before = data.copy()
    src = viewer.add_image(data, name="movie", scale=(2.0, 1.0, 1.0))
    configure(dock)
    shown = record_shown(dock, monkeypatch)
    worker = dock.run()
    assert worker is not None and dock._run.dask is not None
    qtbot.waitUntil(lambda: not dock.running, timeout=TIMEOUT)

    assert dock.status.value.startswith("Done"), dock.status.value
    assert "local cluster, 2 workers" in dock.status.value
    assert sorted(shown) == [0, 1, 2]  # each frame once, as its task finished
    np.testing.assert_array_equal(src.data, before)  # the input is never modified
    res = viewer.layers["movie [DIP]"]
    assert res.data.shape == (3, 16, 16) and res.data.dtype == np.float32
    np.testing.assert_allclose(res.scale, (2.0, 1.0, 1.0))
    # every frame is what restoring it alone, with the same settings and seed, gives
    opts = dock.run_options()
    for k in range(3):
        alone = napari_dip.restore(before[k], **opts).image
        np.testing.assert_allclose(res.data[k], alone, rtol=0, atol=1e-5)

    md = res.metadata
    assert md[ROLE_KEY] == "result" and md["mode"] == "frames"
    assert md["n_frames"] == 3 and md["frames_done"] == 3
    assert md["stop_reason"] == "all 3 frames restored"
    assert md["seed"] == 0 and md["steps"] == sum(f["steps"] for f in md["frames"])
    cluster = md["cluster"]
    assert cluster["requested"] == "local:2" and cluster["tasks"] == 3
    assert cluster["scheduler"].startswith("tcp://127.0.0.1:")
    assert cluster["description"].startswith("local cluster, 2 workers")
    assert cluster["workers"] and all(w.startswith("tcp://") for w in cluster["workers"])
    assert [f["index"] for f in md["frames"]] == [0, 1, 2]
    for f in md["frames"]:
        assert f["complete"] and f["stop_reason"] and f["worker"] in cluster["workers"]
    assert not dock.stop_button.enabled


def test_stop_keeps_the_finished_frames(qtbot, viewer, dock, monkeypatch):
    data = stack(4)
    before = data.copy()
    viewer.add_image(data, name="long")
    configure(dock, steps=300, every=50, auto_stop=False)
    record_shown(dock, monkeypatch)
    assert dock.run() is not None
    run = dock._run
    qtbot.waitUntil(lambda: run.frames_done >= 1, timeout=TIMEOUT)
    dock.stop_button.native.click()
    assert "cancelling" in dock.status.value
    qtbot.waitUntil(lambda: not dock.running, timeout=TIMEOUT)

    done = run.frames_done
    assert 1 <= done < 4, done
    assert dock.status.value.startswith("Stopped after"), dock.status.value
    res = viewer.layers["long [DIP]"]
    md = res.metadata
    assert md["stop_reason"].startswith(f"stopped by the user with {done} of 4 frames")
    assert md["frames_done"] == done and len(md["frames"]) == done
    finished = {f["index"] for f in md["frames"]}
    for k in range(4):
        assert np.any(res.data[k] != 0) == (k in finished)
    np.testing.assert_array_equal(viewer.layers["long"].data, before)


@pytest.fixture
def own_cluster():
    """A cluster of one worker that the test starts (and closes), reached by address."""
    from napari_dip.distributed import local_cluster

    cluster = local_cluster(1, device="cpu", threads=1)
    try:
        yield cluster
    finally:
        cluster.close()


def test_failed_frame_on_a_scheduler_by_address(qtbot, viewer, dock, notes, own_cluster):
    data = stack(3)
    data[1, 3, 4] = np.nan  # frame 2 cannot be restored: its task raises on the worker
    viewer.add_image(data, name="broken")
    configure(dock, scheduler=own_cluster.scheduler_address)
    assert dock.run() is not None
    qtbot.waitUntil(lambda: not dock.running, timeout=TIMEOUT)

    kind, message = notes[-1]
    assert kind == "error" and "frame 2/3 on the cluster" in message
    assert "finite" in message
    assert dock.status.value.startswith("Failed: frame 2/3"), dock.status.value
    assert [layer.name for layer in viewer.layers] == ["broken"]  # no half-made result
    assert own_cluster.status.name == "running"  # a cluster passed by address stays up


def test_scheduler_errors_name_the_field(qtbot, viewer, dock, notes, monkeypatch):
    viewer.add_image(stack(2), name="clip")
    for text in ("not a scheduler", "local:0"):
        configure(dock, scheduler=text)
        assert dock.run() is None
        kind, message = notes[-1]
        assert kind == "error" and "Dask scheduler:" in message and repr(text) in message
        assert "local:N" in message and dock.status.value.startswith("Not started")

    monkeypatch.setitem(sys.modules, "distributed", None)  # as if Dask were missing
    configure(dock, scheduler="local")
    assert dock.run() is None
    assert "Dask scheduler:" in notes[-1][1] and "not installed" in notes[-1][1]
    monkeypatch.delitem(sys.modules, "distributed")

    # a scheduler that does not answer: the run ends, the message names the field
    monkeypatch.setattr(worker_module, "CONNECT_TIMEOUT", 1.0)
    configure(dock, scheduler="tcp://127.0.0.1:9")
    assert dock.run() is not None
    qtbot.waitUntil(lambda: not dock.running, timeout=TIMEOUT)
    assert notes[-1][0] == "error"
    assert "Dask scheduler: cannot reach 'tcp://127.0.0.1:9'" in notes[-1][1]
    assert dock.status.value.startswith("Failed: Dask scheduler")
    assert [layer.name for layer in viewer.layers] == ["clip"]


def test_whole_image_runs_here(qtbot, viewer, dock, monkeypatch):
    viewer.add_image(stack(1)[0], name="single")
    configure(dock, scheduler="local:2")
    dock.mode.value = "whole"
    assert dock.run() is not None
    assert dock._run.dask is None
    assert "frames and slices only" in dock.status.value
    qtbot.waitUntil(lambda: not dock.running, timeout=TIMEOUT)
    md = viewer.layers["single [DIP]"].metadata
    assert "cluster" not in md and md["steps"] == 10
