"""The compiled-net path (``compile=True``): the same numbers as the net run as it is, and a
clean fallback when the compiler fails. On CUDA the backend is TorchInductor; here the
"aot_eager" backend runs the same tracing (TorchDynamo) and autograd graph (AOTAutograd)
without generating code, which is what can change the numbers or fail on the net."""

import numpy as np
import pytest
import torch

from napari_dip import restore
from napari_dip.core import engine

KW = dict(preset="fast", width=8, scales=3, seed=0, steps=2, auto_stop=False, ema=0.0,
          backtrack_db=0.0, output_dtype="float32")


@pytest.fixture
def cpu_compile(monkeypatch):
    torch._dynamo.reset()
    monkeypatch.setitem(engine.COMPILE_BACKENDS, "cpu", "aot_eager")
    yield
    torch._dynamo.reset()


def _noisy(seed=1):
    return np.random.default_rng(seed).random((32, 32)).astype(np.float32)


def test_compile_is_off_on_the_cpu_by_default():
    res = restore(_noisy(), compile=True, **KW)
    assert "compile: off (not used on cpu)" in res.info.notes


@pytest.mark.parametrize("extra", [dict(), dict(members=2), dict(loss="sure"),
                                   dict(method="sgld", burn_in=0, thinning=1)])
def test_compiled_net_follows_the_plain_path(cpu_compile, extra):
    noisy = _noisy()
    a = restore(noisy, **{**KW, **extra})
    b = restore(noisy, compile=True, **{**KW, **extra})
    assert "compile: aot_eager" in b.info.notes
    # The first loss comes from the same initial weights; after that the traced graph's
    # different rounding is amplified by Adam (which divides tiny gradients by their own
    # size), as between thread counts, so compare the first updates only.
    # (SURE's loss is a difference of nearly equal terms: an absolute margin too)
    assert abs(a.losses[0] - b.losses[0]) <= 1e-6 * abs(a.losses[0]) + 2e-7
    # SURE divides a difference of two passes by the perturbation length, and R2R (the
    # fast preset's DIP loss) subtracts its target's noise variance from its fit, which
    # magnifies the rounding: 1e-3 there, 1e-4 for the rest
    own = b.info.config.loss in ("sure", "r2r")
    np.testing.assert_allclose(a.losses, b.losses, rtol=1e-3 if own else 1e-4)
    np.testing.assert_allclose(a.image, b.image, atol=3e-4)
    if a.variance is not None:
        assert float(a.variance.max()) > 0
        np.testing.assert_allclose(a.variance, b.variance, rtol=1e-2, atol=1e-5)


def test_a_failing_compiler_falls_back_and_says_why(monkeypatch):
    tiny = _noisy()
    torch._dynamo.reset()

    def broken(gm, example_inputs):
        raise RuntimeError("no code generator here")

    monkeypatch.setitem(engine.COMPILE_BACKENDS, "cpu", broken)
    try:
        res = restore(tiny, compile=True, **KW)
    finally:
        torch._dynamo.reset()
    plain = restore(tiny, **KW)
    note = [n for n in res.info.notes if n.startswith("compile:")]
    assert len(note) == 1 and "failed" in note[0] and "no code generator here" in note[0], note
    np.testing.assert_allclose(res.image, plain.image, atol=1e-6)
    assert res.steps == plain.steps == KW["steps"]
