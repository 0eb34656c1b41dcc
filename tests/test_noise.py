"""The Poisson-Gaussian noise model: GAT, its inverses, the estimator and the front end."""

import warnings

import numpy as np
import pytest

from napari_dip.core.noise import (
    MODELS,
    NoiseState,
    estimate_poisson_gaussian,
    generalized_anscombe,
    inverse_generalized_anscombe,
    inverse_generalized_anscombe_derivative,
    stabilise,
    unstabilise,
    unstabilise_variance,
)


def expected_gat(lam, gain, sigma):
    """E[f(y)] for y = gain * Poisson(lam) + N(0, sigma^2), by summing the Poisson pmf and
    Gauss-Hermite quadrature over the Gaussian part."""
    from scipy import stats

    k = np.arange(0, int(lam + 12 * np.sqrt(lam) + 30))
    pk = stats.poisson.pmf(k, lam)
    nodes, weights = np.polynomial.hermite_e.hermegauss(60)
    weights = weights / weights.sum()
    y = gain * k[:, None] + sigma * nodes[None, :]
    return float(np.sum(pk[:, None] * weights[None, :] * generalized_anscombe(y, gain, sigma)))


def synthetic_clean(size=256):
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = 0.1 + 0.8 * xx
    for cy, cx, r in [(0.3, 0.3, 0.1), (0.7, 0.6, 0.15), (0.5, 0.8, 0.08)]:
        img = img + 0.5 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * r * r))
    return img / img.max()


# ----------------------------------------------------------------------------- transform
@pytest.mark.parametrize("gain,sigma,offset", [(1.0, 0.0, 0.0), (2.0, 3.0, 0.0), (0.5, 4.0, 100.0)])
def test_algebraic_round_trip(gain, sigma, offset):
    ey = offset + gain * np.array([1.0, 2.0, 5.0, 30.0, 1000.0])
    back = inverse_generalized_anscombe(generalized_anscombe(ey, gain, sigma, offset), gain,
                                        sigma, offset, method="algebraic")
    np.testing.assert_allclose(back, ey, rtol=1e-10)


@pytest.mark.parametrize("gain,sigma", [(1.0, 0.0), (2.0, 3.0), (0.5, 2.0)])
@pytest.mark.parametrize("lam", [1.0, 2.0, 5.0, 20.0, 100.0])
def test_unbiased_inverse_recovers_the_mean(gain, sigma, lam):
    """The unbiased inverse maps E[f(y)] back to E[y] for mean counts >= 1."""
    back = float(inverse_generalized_anscombe(expected_gat(lam, gain, sigma), gain, sigma))
    assert back == pytest.approx(gain * lam, rel=0.05, abs=0.05 * gain)
    # the algebraic inverse is biased low at low counts, the unbiased one fixes that
    alg = float(inverse_generalized_anscombe(expected_gat(lam, gain, sigma), gain, sigma,
                                             method="algebraic"))
    assert abs(back - gain * lam) <= abs(alg - gain * lam) + 1e-9


def test_unbiased_inverse_of_the_transformed_mean():
    """Applied to f(E[y]) instead of E[f(y)], the unbiased inverse overshoots by the
    transformation's bias, about gain / 4, which is small from a few counts on."""
    gain, sigma = 2.0, 3.0
    for lam in [1.0, 5.0, 30.0, 100.0]:
        ey = gain * lam
        back = float(inverse_generalized_anscombe(generalized_anscombe(ey, gain, sigma), gain,
                                                  sigma))
        assert 0 <= back - ey <= 0.3 * gain


@pytest.mark.parametrize("gain,sigma", [(1.0, 0.0), (2.0, 3.0), (10.0, 5.0)])
def test_transformed_noise_has_unit_variance(gain, sigma):
    rng = np.random.default_rng(0)
    for lam in [5.0, 10.0, 30.0, 100.0, 1000.0]:
        y = gain * rng.poisson(lam, 40000) + rng.normal(0.0, sigma, 40000)
        v = float(np.var(generalized_anscombe(y, gain, sigma)))
        assert v == pytest.approx(1.0, abs=0.06), (lam, v)


def test_low_counts_and_negative_values_stay_finite():
    y = np.array([-50.0, -3.0, -0.5, 0.0, 0.2, 1.0])
    t = generalized_anscombe(y, 2.0, 1.0)
    assert np.isfinite(t).all() and (t >= 0).all()
    d = np.linspace(-5.0, 3.0, 801)
    for method in ("unbiased", "algebraic"):
        x = inverse_generalized_anscombe(d, 2.0, 1.0, offset=10.0, method=method)
        assert np.isfinite(x).all()
        assert (x >= 10.0).all()  # never below zero photons
        assert (np.diff(x) >= -1e-12).all()  # monotone
    der = inverse_generalized_anscombe_derivative(d, 2.0, 1.0)
    assert np.isfinite(der).all() and (der >= 0).all()


def test_derivative_matches_finite_differences():
    d = np.linspace(2.0, 40.0, 50)
    h = 1e-5
    num = (inverse_generalized_anscombe(d + h, 2.0, 3.0) -
           inverse_generalized_anscombe(d - h, 2.0, 3.0)) / (2 * h)
    np.testing.assert_allclose(inverse_generalized_anscombe_derivative(d, 2.0, 3.0), num,
                               rtol=1e-5)


# ----------------------------------------------------------------------------- estimator
@pytest.mark.parametrize("gain,sigma,peak", [(2.0, 3.0, 30.0), (4.0, 10.0, 10.0),
                                             (1.0, 1.0, 10.0)])
def test_estimator_recovers_gain_and_sigma(gain, sigma, peak):
    rng = np.random.default_rng(1)
    x = synthetic_clean() * peak
    y = gain * rng.poisson(x) + rng.normal(0.0, sigma, x.shape)
    g, s = estimate_poisson_gaussian(y)
    assert g == pytest.approx(gain, rel=0.2)
    assert s == pytest.approx(sigma, rel=0.2)


def test_estimator_with_offset_and_a_stack():
    rng = np.random.default_rng(2)
    x = synthetic_clean(128) * 30.0
    y = 100.0 + 2.0 * rng.poisson(np.stack([x, x[::-1]])) + rng.normal(0.0, 3.0, (2,) + x.shape)
    g, s = estimate_poisson_gaussian(y, offset=100.0)
    assert g == pytest.approx(2.0, rel=0.2)
    assert s == pytest.approx(3.0, rel=0.2)


def test_estimator_warns_on_signal_independent_noise():
    rng = np.random.default_rng(3)
    y = synthetic_clean(128) * 100.0 + rng.normal(0.0, 5.0, (128, 128))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        g, s = estimate_poisson_gaussian(y)
    if caught:  # the fitted slope came out <= 0: tiny gain and a clear warning
        assert "model 'gaussian'" in str(caught[0].message)
    assert g > 0 and g < 0.2
    assert s == pytest.approx(5.0, rel=0.2)


# ----------------------------------------------------------------------------- front end
def test_gaussian_model_is_the_identity():
    img = np.arange(64, dtype=np.uint16).reshape(8, 8)
    t, state = stabilise(img, "gaussian")
    assert t is img or np.shares_memory(t, img)
    assert state == NoiseState(model="gaussian")
    est = np.ones((8, 8))
    assert unstabilise(est, state) is est
    var = np.full((8, 8), 0.5)
    assert unstabilise_variance(est, var, state) is var


def test_stabilise_round_trip_with_estimated_parameters():
    rng = np.random.default_rng(4)
    x = synthetic_clean(128) * 30.0
    y = 2.0 * rng.poisson(x) + rng.normal(0.0, 3.0, x.shape)
    t, state = stabilise(y, "poisson-gaussian")
    assert state.estimated == ("gain", "sigma")
    assert t.dtype == np.float64 and t.shape == y.shape
    # the noise of the transformed image is about unit: residual of the product of
    # second differences, which has unit norm
    from scipy import ndimage

    r = ndimage.correlate(t, np.outer([1, -2, 1], [1, -2, 1]) / 6.0)[2:-2, 2:-2]
    assert np.std(r) == pytest.approx(1.0, abs=0.1)
    # an ideal denoiser returns E[f(y)]: a local average of t stands in for it
    smooth = ndimage.uniform_filter(t, 9)
    back = unstabilise(smooth, state)
    inner = (slice(16, -16), slice(16, -16))
    rel = np.abs(back[inner] - 2.0 * ndimage.uniform_filter(x, 9)[inner]) / (2.0 * x.max())
    assert np.median(rel) < 0.03
    # the state survives a trip through a plain dict (result metadata)
    np.testing.assert_array_equal(unstabilise(smooth, state.to_dict()), back)


def test_stabilise_with_given_parameters_is_the_gat():
    y = np.linspace(0.0, 200.0, 256).reshape(16, 16)
    t, state = stabilise(y, "Poisson_Gaussian", gain=2.0, sigma=3.0, offset=1.0)
    assert state == NoiseState("poisson-gaussian", 2.0, 3.0, 1.0, ())
    np.testing.assert_array_equal(t, generalized_anscombe(y, 2.0, 3.0, 1.0))


def test_stabilise_fits_only_the_missing_parameter():
    rng = np.random.default_rng(5)
    x = synthetic_clean(128) * 30.0
    y = 2.0 * rng.poisson(x) + rng.normal(0.0, 3.0, x.shape)
    _, st = stabilise(y, gain=2.0)
    assert st.estimated == ("sigma",) and st.gain == 2.0
    assert st.sigma == pytest.approx(3.0, rel=0.2)
    _, st = stabilise(y, sigma=3.0)
    assert st.estimated == ("gain",) and st.sigma == 3.0
    assert st.gain == pytest.approx(2.0, rel=0.2)


def test_an_unknown_offset_is_the_dark_level():
    """offset=None: the dark level stands in for the camera offset. The transformation is
    the same whatever the split of the intercept; the inverse's floor sits near the true
    offset instead of below it, where all of the intercept is taken as read noise."""
    rng = np.random.default_rng(6)
    x = synthetic_clean(128) * 30.0
    x[:40, :40] = 0.0  # a dark background, no photons
    y = 100.0 + 2.0 * rng.poisson(x) + rng.normal(0.0, 3.0, x.shape)
    t, st = stabilise(y, "poisson-gaussian", offset=None)
    assert st.estimated == ("gain", "offset", "sigma")
    assert st.offset == pytest.approx(100.0, abs=1.5) and st.sigma == pytest.approx(3.0, rel=0.2)
    t0, st0 = stabilise(y, "poisson-gaussian")  # the offset taken as 0
    np.testing.assert_allclose(t, t0, atol=1e-9)
    assert st0.offset < 97.0  # all of the intercept as read noise: the floor lies low
    # noise that does not grow with the signal (here it shrinks): the gain is floored,
    # and there is no dark level to read
    ramp = np.tile(np.linspace(0.0, 1.0, 128), (128, 1))
    flat = 50.0 + 30.0 * ramp + rng.normal(0.0, 1.0, ramp.shape) * (6.0 - 4.0 * ramp)
    with pytest.warns(RuntimeWarning, match="does not grow"):
        _, st = stabilise(flat, "poisson-gaussian", offset=None)
    assert "offset" not in st.estimated and st.offset <= 0.0
    with pytest.raises(ValueError, match="offset"):
        stabilise(y, "poisson-gaussian", sigma=3.0, offset=None)
    # the offset taken off and the negative values cut: the floor is the clip, 0
    _, st = stabilise(np.maximum(y - 100.0, 0.0), "poisson-gaussian", offset=None)
    assert st.offset == 0.0


def test_variance_maps_by_the_delta_method():
    state = NoiseState("poisson-gaussian", gain=2.0, sigma=3.0)
    t = np.array([[5.0, 10.0], [20.0, 40.0]])
    v = np.full_like(t, 1e-4)
    out = unstabilise_variance(t, v, state)
    der = inverse_generalized_anscombe_derivative(t, 2.0, 3.0)
    np.testing.assert_allclose(out, der**2 * v, rtol=1e-4)
    # at the clipping point the first-order formula gives 0; the central difference
    # over one standard deviation still reports the spread
    assert inverse_generalized_anscombe(2.5, 2.0, 3.0) == 0  # clipped at zero photons
    assert inverse_generalized_anscombe_derivative(np.array([2.5]), 2.0, 3.0)[0] == 0
    low = unstabilise_variance(np.array([2.5]), np.array([1.0]), state)
    assert low[0] > 0


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("kwargs,exc,words", [
    (dict(gain=0.0), ValueError, ["gain", "> 0", "0.0"]),
    (dict(gain=-2), ValueError, ["gain", "> 0", "-2"]),
    (dict(gain="2"), TypeError, ["gain", "'2'"]),
    (dict(gain=True), TypeError, ["gain", "True"]),
    (dict(sigma=-1.0), ValueError, ["sigma", ">= 0", "-1.0"]),
    (dict(sigma=float("nan")), ValueError, ["sigma", "nan"]),
    (dict(offset=float("inf")), ValueError, ["offset", "inf"]),
])
def test_bad_parameters_name_the_argument(kwargs, exc, words):
    args = dict(gain=2.0, sigma=1.0, offset=0.0)
    args.update(kwargs)
    for fn in (generalized_anscombe, inverse_generalized_anscombe):
        with pytest.raises(exc) as info:
            fn(np.ones(4), **args)
        for w in words:
            assert w in str(info.value)
    with pytest.raises(exc) as info:
        stabilise(np.ones((16, 16)), "poisson-gaussian", **args)
    assert words[0] in str(info.value)


def test_bad_model_and_inputs_name_the_argument():
    with pytest.raises(ValueError, match=r"model: expected one of 'gaussian', "
                                         r"'poisson-gaussian', got 'poisson'"):
        stabilise(np.ones((16, 16)), "poisson")
    assert MODELS == ("gaussian", "poisson-gaussian")
    with pytest.raises(ValueError, match="method: expected 'unbiased' or 'algebraic'"):
        inverse_generalized_anscombe(np.ones(3), 1.0, 0.0, method="exact")
    with pytest.raises(TypeError, match="x: expected a numeric array"):
        generalized_anscombe(np.array(["a"]), 1.0, 0.0)
    with pytest.raises(ValueError, match="image: expected finite values"):
        stabilise(np.full((16, 16), np.nan))
    with pytest.raises(ValueError, match="image: expected a 2-D image"):
        estimate_poisson_gaussian(np.ones((2, 2, 16, 16)))
    with pytest.raises(ValueError, match="image: expected at least 16 x 16"):
        estimate_poisson_gaussian(np.ones((8, 8)))
    with pytest.raises(ValueError, match="image: cannot estimate the noise"):
        estimate_poisson_gaussian(np.ones((32, 32)))
    with pytest.raises(TypeError, match="state: expected the NoiseState"):
        unstabilise(np.ones(3), "poisson-gaussian")
    with pytest.raises(ValueError, match="variance: expected the estimate's shape"):
        unstabilise_variance(np.ones(3), np.ones(4), NoiseState("poisson-gaussian"))
    with pytest.raises(ValueError, match="variance: expected values >= 0"):
        unstabilise_variance(np.ones(3), -np.ones(3), NoiseState("poisson-gaussian"))
