"""Faults: stopping at any point, repeated runs, errors inside a run."""

import gc

import numpy as np
import pytest

from napari_dip import iterate, restore

TINY = dict(width=8, scales=2, skip_channels=2, input_channels=8, snapshot_every=3)


def _rss_mib():
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    import os

    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


@pytest.mark.parametrize("stop_after", [0, 1, 4])
@pytest.mark.parametrize("method", ["dip", "sgld"])
def test_close_at_any_point(method, stop_after):
    img = np.random.default_rng(0).random((16, 16)).astype(np.float32)
    gen = iterate(img, method=method, steps=200, seed=0, device="cpu", **TINY,
                  **({"burn_in": 5, "thinning": 2} if method == "sgld" else {"auto_stop": False}))
    seen = [next(gen) for _ in range(stop_after)]
    gen.close()  # also before the first step
    assert [s.step for s in seen] == [3 * (k + 1) for k in range(stop_after)]
    if method == "sgld" and seen and seen[-1].step > 5:
        assert seen[-1].variance is not None and seen[-1].variance.shape == img.shape


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/statm"), reason="Linux only")
def test_twenty_runs_do_not_grow_memory():
    img = np.random.default_rng(1).random((32, 32)).astype(np.float32)
    for _ in range(3):  # warm-up: allocator pools, lazy imports
        restore(img, steps=6, seed=0, device="cpu", **TINY)
    gc.collect()
    before = _rss_mib()
    for k in range(20):
        restore(img, method=("dip", "sgld")[k % 2], steps=6, seed=k, device="cpu", **TINY)
    gc.collect()
    growth = _rss_mib() - before
    assert growth < 25, f"resident memory grew by {growth:.1f} MiB over 20 runs"


def test_error_inside_run_propagates_and_cleans_up(monkeypatch):
    from napari_dip.core import engine

    img = np.random.default_rng(2).random((16, 16)).astype(np.float32)
    calls = {"n": 0}
    real_psnr = engine.psnr

    def failing_psnr(*args, **kwargs):
        calls["n"] += 1
        raise RuntimeError("simulated failure inside the engine")

    monkeypatch.setattr(engine, "psnr", failing_psnr)
    gen = iterate(img, steps=30, seed=0, device="cpu", reference=img, **TINY)
    with pytest.raises(RuntimeError, match="simulated failure"):
        next(gen)
    with pytest.raises(StopIteration):  # the generator is finished, not left half-way
        next(gen)
    monkeypatch.setattr(engine, "psnr", real_psnr)
    assert calls["n"] == 1
    res = restore(img, steps=6, seed=0, device="cpu", reference=img, **TINY)
    assert res.psnr is not None
