"""Property tests: any dtype x shape x channel_axis x mask gives a well-formed result or a
clear ValueError/TypeError, and never touches the caller's arrays."""

import numpy as np
import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from napari_dip import restore

TINY = dict(width=4, scales=1, skip_channels=1, input_channels=2, snapshot_every=2)
DTYPES = [np.uint8, np.uint16, np.int8, np.int16, np.int32, np.int64, np.float16,
          np.float32, np.float64, np.bool_]


@st.composite
def cases(draw):
    # mostly valid inputs, with invalid ones mixed in
    ndim = draw(st.sampled_from([2, 2, 2, 3, 3, 3, 1, 4]))
    size = st.sampled_from([4, 5, 6, 7, 8, 9, 10, 12, 4, 6, 8, 1, 2, 3])
    shape = tuple(draw(st.lists(size, min_size=ndim, max_size=ndim)))
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    channel_axis = draw(st.sampled_from([None, None, None, -1, 0, ndim - 1, ndim, -ndim - 1]))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    if dtype.kind == "b":
        image = rng.random(shape) > 0.5
    elif dtype.kind in "iu":
        info = np.iinfo(dtype)
        image = rng.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)
    else:
        scale = draw(st.sampled_from([1e-3, 1.0, 1e3]))
        image = (rng.normal(size=shape) * scale).astype(dtype)
        if draw(st.integers(0, 5)) == 0 and image.size:
            image.flat[0] = draw(st.sampled_from([np.nan, np.inf, -np.inf, 0.0]))
    mask_kind = draw(st.sampled_from(["none", "none", "spatial", "full", "wrong", "all"]))
    return image, channel_axis, mask_kind, seed


def _mask(image, channel_axis, kind, seed):
    if kind == "none":
        return None
    if kind == "wrong":
        return np.zeros(tuple(s + 1 for s in image.shape), bool)
    shape = image.shape
    if kind == "spatial" and channel_axis is not None and -image.ndim <= channel_axis < image.ndim:
        shape = tuple(s for i, s in enumerate(image.shape) if i != channel_axis % image.ndim)
    if kind == "all":
        return np.ones(shape, np.uint8)
    return (np.random.default_rng(seed).random(shape) < 0.3).astype(np.uint8)


# int64 beyond 2**53, where float64 rounds the image's maximum above it (found by a run)
BIG_INT64 = np.array([[1829959290696096324, 868216972447593498, 8562513583331377556,
                       516262328867632824],
                      [-203357857581225965, -2452810391145859999, 4041503014932080876,
                       7934834974990561403],
                      [-261742058645947027, -1683436521986642030, 714552709956621628,
                       2535222703805143893],
                      [-3701504042346160965, -4567973180300650444, 4426035306955667831,
                       -1030406436145783928]], dtype=np.int64)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
@example(case=(BIG_INT64, None, "spatial", 423))
@example(case=(BIG_INT64, None, None, 0))
def test_result_or_clear_error(case):
    image, channel_axis, mask_kind, seed = case
    mask = _mask(image, channel_axis, mask_kind, seed)
    image_before = image.copy()
    mask_before = None if mask is None else mask.copy()
    try:
        res = restore(image, mask=mask, channel_axis=channel_axis, steps=2, seed=0,
                      device="cpu", **TINY)
    except (ValueError, TypeError) as exc:
        msg = str(exc)
        event(f"rejected: {type(exc).__name__}")
        assert any(k in msg for k in ("image", "mask", "channel_axis")), msg
    else:
        event("restored")
        assert res.image.shape == image.shape and res.image.dtype == image.dtype
        finite = np.asarray(image, np.float64)
        assert np.isfinite(res.image.astype(np.float64)).all()
        tol = 1 if image.dtype.kind in "iu" else 1e-3 * (np.abs(finite).max() + 1)
        if image.dtype != np.float16:  # float16 rounding of the range is coarse
            assert res.image.min() >= finite.min() - tol and res.image.max() <= finite.max() + tol
    assert np.array_equal(image, image_before, equal_nan=image.dtype.kind == "f")
    if mask is not None:
        assert np.array_equal(mask, mask_before)


@pytest.mark.parametrize("dtype", [np.float32, np.uint8])
def test_constant_image(dtype):
    img = np.full((8, 8), 7, dtype)
    res = restore(img, steps=3, seed=0, device="cpu", **TINY)
    assert res.image.dtype == dtype and np.allclose(res.image.astype(float), 7, atol=1)
