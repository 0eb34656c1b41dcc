"""Noise models for the data term: Gaussian (identity) or Poisson-Gaussian (variance
stabilisation with the generalized Anscombe transformation).

Deep Image Prior fits its network with a squared-error loss, which is the right data term
for additive white Gaussian noise of constant variance. Fluorescence microscopy and other
photon-counting images are better described by the Poisson-Gaussian model

    y = gain * Poisson(x / gain) + N(offset, sigma**2),

whose variance grows with the signal: ``Var[y] = gain * (E[y] - offset) + sigma**2``. The
usual remedy is to *stabilise* the variance: transform the data so that the noise becomes
approximately Gaussian with unit variance, restore with the Gaussian data term, and map
the estimate back with an inverse that removes the bias of the non-linear transformation.

* Forward transformation: the generalized Anscombe transformation (GAT) of
  Starck, Murtagh & Bijaoui, *Image Processing and Data Analysis: The Multiscale
  Approach*, Cambridge University Press, 1998 (also Murtagh, Starck & Bijaoui, "Image
  restoration with noise suppression using a multiresolution support", Astron. Astrophys.
  Suppl. Ser. 112, 1995).
* Inverse: the closed-form approximation of the exact unbiased inverse of
  Makitalo & Foi, "Optimal inversion of the Anscombe transformation in low-count Poisson
  image denoising", IEEE Trans. Image Process. 20(1), 2011, and "Optimal inversion of the
  generalized Anscombe transformation for Poisson-Gaussian noise", IEEE Trans. Image
  Process. 22(1), 2013.
* Parameter estimation from a single image: a simplified version of Foi, Trimeche,
  Katkovnik & Egiazarian, "Practical Poissonian-Gaussian noise modeling and fitting for
  single-image raw-data", IEEE Trans. Image Process. 17(10), 2008.

Everything here is plain NumPy/SciPy: the functions work on arrays of any shape and can
be used around :func:`napari_dip.restore` (or any other Gaussian denoiser)::

    t, state = stabilise(noisy, "poisson-gaussian")      # gain and sigma estimated
    res = napari_dip.restore(t, method="sgld", preset="fast")
    image = unstabilise(res.image, state)
    variance = unstabilise_variance(res.image, res.variance, state)
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

MODELS = ("gaussian", "poisson-gaussian")

# Constant of the closed-form approximation of the exact unbiased inverse (Makitalo & Foi
# 2011, 2013).
_A = math.sqrt(1.5)
# The closed-form polynomial in 1/D has a local minimum at D = 0.8381 (where its value is
# negative, so the clipped inverse is already 0 there); below it the D**-3 term makes it
# rise again. Transformed values below this point are treated as this point.
_D_MIN = 0.8380823155304359

# Unit-norm high-pass filter for the noise estimate: the product of second differences
# along the two axes. It removes every signal that is at most linear along x or along y
# (constants, ramps, axis-aligned edges, x**2 * y, ...), so in smooth regions its output
# is noise with the local variance (weights squared sum to one).
_HIGHPASS = np.outer([1.0, -2.0, 1.0], [1.0, -2.0, 1.0]) / 6.0


# ---------------------------------------------------------------------------------------
# argument checks
# ---------------------------------------------------------------------------------------
def _number(name: str, value: Any, *, positive: bool = False, nonneg: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        want = " > 0" if positive else (" >= 0" if nonneg else "")
        raise TypeError(f"{name}: expected a finite number{want}, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name}: expected a finite number, got {value!r}")
    if positive and v <= 0:
        raise ValueError(f"{name}: expected a number > 0, got {value!r}")
    if nonneg and v < 0:
        raise ValueError(f"{name}: expected a number >= 0, got {value!r}")
    return v


def _array(name: str, value: Any) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except Exception as exc:  # noqa: BLE001 - report any conversion failure
        raise TypeError(
            f"{name}: expected a numeric array, got {type(value).__name__} ({exc})"
        ) from None
    if arr.dtype == object or arr.dtype.kind not in "iuf":
        raise TypeError(
            f"{name}: expected a numeric array (int, uint or float), got dtype {arr.dtype}"
        )
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError(f"{name}: expected finite values, got NaN or inf")
    return arr


def _model(model: Any) -> str:
    if isinstance(model, str):
        m = model.lower().replace("_", "-")
        if m in MODELS:
            return m
    raise ValueError(f"model: expected one of {', '.join(map(repr, MODELS))}, got {model!r}")


# ---------------------------------------------------------------------------------------
# the transformation and its inverses
# ---------------------------------------------------------------------------------------
def generalized_anscombe(x: Any, gain: float, sigma: float, offset: float = 0.0) -> np.ndarray:
    """Generalized Anscombe transformation (GAT) of Poisson-Gaussian data.

    For ``y = gain * Poisson(x / gain) + N(offset, sigma**2)`` the transformation

        f(y) = 2 / gain * sqrt(max(gain * y + 3/8 * gain**2 + sigma**2 - gain * offset, 0))

    (Starck, Murtagh & Bijaoui 1998) makes the noise approximately Gaussian with unit
    variance. The approximation is good from a few photons per pixel upwards (variance
    within a few per cent of 1 from about 5 photons); below that the variance of ``f(y)``
    departs from 1 (at one photon per pixel about 0.72 for pure Poisson data and 1.15
    with a read noise of 1.5 photons, by simulation). With ``gain=1, sigma=0, offset=0`` it is the classical Anscombe transformation
    ``2 * sqrt(y + 3/8)``.

    Parameters
    ----------
    x : array_like
        Noisy data ``y`` (any shape; negative values from read noise are allowed: the
        argument of the square root is clipped at 0, so no NaN is produced).
    gain : float
        Detector units per photon (> 0).
    sigma : float
        Standard deviation of the Gaussian (read) noise, in detector units (>= 0).
    offset : float
        Mean of the Gaussian part (camera offset / bias), in detector units.

    Returns
    -------
    numpy.ndarray
        float64 array of ``x``'s shape, with noise of approximately unit variance.
    """
    gain = _number("gain", gain, positive=True)
    sigma = _number("sigma", sigma, nonneg=True)
    offset = _number("offset", offset)
    y = _array("x", x).astype(np.float64)
    arg = gain * y + 0.375 * gain * gain + sigma * sigma - gain * offset
    return (2.0 / gain) * np.sqrt(np.maximum(arg, 0.0))


def _closed_form(d: np.ndarray) -> np.ndarray:
    """Makitalo & Foi's closed-form approximation of the exact unbiased inverse of the
    Anscombe transformation (unit gain, no Gaussian part), for ``d >= _D_MIN``."""
    return 0.25 * d**2 + 0.25 * _A / d - 1.375 / d**2 + 0.625 * _A / d**3 - 0.125


def _closed_form_derivative(d: np.ndarray) -> np.ndarray:
    return 0.5 * d - 0.25 * _A / d**2 + 2.75 / d**3 - 1.875 * _A / d**4


def inverse_generalized_anscombe(
    d: Any, gain: float, sigma: float, offset: float = 0.0, *, method: str = "unbiased"
) -> np.ndarray:
    """Map a denoised GAT-domain image back to detector units.

    ``method="unbiased"`` (default) is the closed-form approximation of the exact unbiased
    inverse (Makitalo & Foi 2011, 2013): with ``s = sigma / gain``,

        I(D) = gain * max(D**2/4 + sqrt(3/2)/(4 D) - 11/(8 D**2) + 5 sqrt(3/2)/(8 D**3)
                          - 1/8 - s**2, 0) + offset.

    It maps ``E[f(y)]``, the expected value of the transformed data (which is what an
    ideal denoiser returns), to ``E[y]``: the non-linear transformation makes
    ``E[f(y)] < f(E[y])``, and the plain algebraic inverse would leave a negative bias of
    about ``gain / 4``, which matters at low counts. The result is clipped at ``offset``
    (zero photons); transformed values below 0.8381 (where the polynomial has its local
    minimum) give ``offset`` too, so the inverse is finite and monotone for any input.

    ``method="algebraic"`` is the exact inverse of :func:`generalized_anscombe`,
    ``(gain * D**2 / 4 - 3/8 gain**2 - sigma**2) / gain + offset``, clipped the same way.

    Parameters
    ----------
    d : array_like
        Values in the transformed domain (e.g. a denoised GAT image).
    gain, sigma, offset : float
        The parameters used by the forward transformation.
    method : {"unbiased", "algebraic"}

    Returns
    -------
    numpy.ndarray
        float64 estimate of ``E[y]`` (detector units, offset included).
    """
    gain = _number("gain", gain, positive=True)
    sigma = _number("sigma", sigma, nonneg=True)
    offset = _number("offset", offset)
    if method not in ("unbiased", "algebraic"):
        raise ValueError(f"method: expected 'unbiased' or 'algebraic', got {method!r}")
    t = _array("d", d).astype(np.float64)
    s2 = (sigma / gain) ** 2
    if method == "algebraic":
        z = 0.25 * t * t - 0.375 - s2
        z = np.where(t > 0, z, 0.0)
    else:
        z = _closed_form(np.maximum(t, _D_MIN)) - s2
    return gain * np.maximum(z, 0.0) + offset


def inverse_generalized_anscombe_derivative(
    d: Any, gain: float, sigma: float, offset: float = 0.0
) -> np.ndarray:
    """Derivative ``dI/dD`` of the unbiased inverse of
    :func:`inverse_generalized_anscombe` (0 where the inverse is clipped at ``offset``).

    Used by the delta method: a transformed-domain variance ``v`` maps to about
    ``(dI/dD)**2 * v`` in detector units.
    """
    gain = _number("gain", gain, positive=True)
    sigma = _number("sigma", sigma, nonneg=True)
    _number("offset", offset)
    t = np.maximum(_array("d", d).astype(np.float64), _D_MIN)
    inside = (_closed_form(t) - (sigma / gain) ** 2) > 0
    return np.where(inside, gain * _closed_form_derivative(t), 0.0)


# ---------------------------------------------------------------------------------------
# parameter estimation
# ---------------------------------------------------------------------------------------
def _planes(arr: np.ndarray) -> list[np.ndarray]:
    if arr.ndim == 2:
        return [arr]
    if arr.ndim == 3:
        return list(arr)
    raise ValueError(
        f"image: expected a 2-D image (Y, X) or a 3-D stack of planes (Z, Y, X), got shape "
        f"{arr.shape}"
    )


def _clipped_variance(r: np.ndarray, k: float = 3.5, iterations: int = 3) -> float:
    """Variance of ``r`` after rejecting values more than ``k`` robust standard deviations
    from the median (leakage of edges and texture into the high-pass residual)."""
    keep = r
    for _ in range(iterations):
        med = np.median(keep)
        scale = 1.4826 * np.median(np.abs(keep - med))
        if scale <= 0:  # discrete data with a spike at the median: fall back to the IQR
            q1, q3 = np.percentile(keep, [25, 75])
            scale = (q3 - q1) / 1.349
        if scale <= 0:
            break
        new = r[np.abs(r - med) <= k * scale]
        if new.size == keep.size:
            break
        keep = new
    if keep.size < 2:
        return float("nan")
    # a Gaussian truncated at +-k sigma keeps this fraction of its variance
    phi = math.exp(-0.5 * k * k) / math.sqrt(2 * math.pi)
    frac = 1.0 - 2.0 * k * phi / math.erf(k / math.sqrt(2.0))
    return float(np.var(keep) / frac)


def _local_statistics(arr: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """High-pass residual and local mean of the interior pixels of every plane."""
    from scipy import ndimage

    res, mean = [], []
    for p in _planes(arr):
        p = p.astype(np.float64)
        if min(p.shape) < 16:
            raise ValueError(
                f"image: expected at least 16 x 16 pixels per plane to estimate the noise, "
                f"got shape {arr.shape}"
            )
        r = ndimage.correlate(p, _HIGHPASS, mode="reflect")
        m = ndimage.uniform_filter(p, size=window, mode="reflect")
        h = window // 2 + 1
        res.append(r[h:-h, h:-h].ravel())
        mean.append(m[h:-h, h:-h].ravel())
    return np.concatenate(res), np.concatenate(mean)


# the share of the local means below the dark level that stands in for an unknown offset
DARK_QUANTILE = 1e-3
# above this share of pixels at the image's minimum, the data read as clipped there
CLIPPED_SHARE = 0.01


def _fit_noise_curve(
    image: Any, *, gain: float | None = None, b: float | None = None, bins: int | None = None,
    window: int = 7,
) -> tuple[float, float, dict[str, Any]]:
    """Fit ``Var[y] = a * E[y] + b`` to one image; returns ``(a, b, details)``.

    A given ``gain`` fixes the slope, a given ``b`` the intercept.
    """
    arr = _array("image", image)
    r, m = _local_statistics(arr, window)
    n = r.size
    if bins is None:
        bins = int(np.clip(n // 400, 8, 40))
    edges = np.unique(np.quantile(m, np.linspace(0.0, 1.0, bins + 1)))
    idx = np.clip(np.searchsorted(edges, m, side="right") - 1, 0, len(edges) - 2)
    means, variances, counts = [], [], []
    for k in range(len(edges) - 1):
        sel = idx == k
        if sel.sum() < 50:
            continue
        v = _clipped_variance(r[sel])
        if math.isfinite(v):
            means.append(float(np.mean(m[sel])))
            variances.append(v)
            counts.append(int(sel.sum()))
    mu, var = np.asarray(means), np.asarray(variances)
    if mu.size < 2 or np.ptp(mu) <= 0:
        raise ValueError(
            "image: cannot estimate the noise: it has too little range of intensities "
            f"(local means span {np.ptp(m):.3g}); pass gain and sigma"
        )
    if gain is not None and b is not None:
        a_fit, b_fit = gain, b
    elif gain is not None:
        a_fit, b_fit = gain, float(np.median(var - gain * mu))
    elif b is not None:
        pos = mu > 0
        a_fit = float(np.median((var[pos] - b) / mu[pos])) if pos.any() else 0.0
        b_fit = b
    else:
        a_fit, b_fit = _robust_line(mu, var, np.asarray(counts, np.float64))
    details = {"bin_means": mu.tolist(), "bin_variances": var.tolist(), "bin_counts": counts,
               "dark": float(np.quantile(m, DARK_QUANTILE))}
    return a_fit, b_fit, details


def _robust_line(mu: np.ndarray, var: np.ndarray, counts: np.ndarray) -> tuple[float, float]:
    """Fit ``var = a * mu + b`` robustly: Theil-Sen to start, then iteratively reweighted
    least squares with the standard error of a variance estimate (``var * sqrt(2 / n)``,
    so the precise dark bins count more) and Huber weights against bins spoilt by
    structure."""
    from scipy import stats

    a, b = (float(v) for v in stats.theilslopes(var, mu)[:2])
    design = np.stack([mu, np.ones_like(mu)], axis=1)
    floor = 1e-3 * float(np.median(var)) + 1e-300
    for _ in range(20):
        pred = np.maximum(a * mu + b, floor)
        se = pred * np.sqrt(2.0 / counts)
        z = (var - pred) / se
        scale = 1.4826 * float(np.median(np.abs(z))) or 1.0
        u = np.abs(z) / (1.345 * scale)
        w = np.where(u <= 1, 1.0, 1.0 / np.maximum(u, 1e-12)) / se**2
        sw = np.sqrt(w)
        sol, *_ = np.linalg.lstsq(design * sw[:, None], var * sw, rcond=None)
        a_new, b_new = float(sol[0]), float(sol[1])
        done = abs(a_new - a) <= 1e-6 * abs(a) + 1e-12 and abs(b_new - b) <= 1e-6 * abs(b) + 1e-12
        a, b = a_new, b_new
        if done:
            break
    return a, b


def estimate_poisson_gaussian(image: Any, *, offset: float = 0.0) -> tuple[float, float]:
    """Estimate ``(gain, sigma)`` of Poisson-Gaussian noise from a single image.

    A simplified version of Foi et al. (2008): a unit-norm high-pass residual (the product
    of second differences along both axes, which removes ramps, axis-aligned edges and
    any signal that is at most linear along one axis) measures the local noise variance;
    pixels are grouped by their local mean (7 x 7 window) into equal-count bins; in each
    bin the variance of the residual is taken after rejecting values beyond 3.5 robust
    standard deviations (edges and texture that leak into the residual); and the line
    ``Var = gain * mean + b`` is fitted to the bins by Theil-Sen regression (median of
    the pairwise slopes). ``sigma = sqrt(b + gain * offset)``.

    Parameters
    ----------
    image : array_like
        A raw (not rescaled, not clipped) 2-D image, or a 3-D stack of planes that share
        the same camera (the planes are pooled). At least 16 x 16 pixels per plane.
    offset : float
        The camera offset, if known. The noise curve only determines
        ``b = sigma**2 - gain * offset``; with the default 0 the returned sigma is the
        effective one, which gives exactly the same transformation.

    Returns
    -------
    (gain, sigma) : tuple of float
        ``gain`` in detector units per photon, ``sigma`` in detector units.

    Limits
    ------
    * The image needs a range of intensities with reasonably flat regions in several of
      them: one flat level cannot separate gain from read noise. Strongly textured images
      (every pixel near an edge or a spot) bias both parameters upwards.
    * Clipped or saturated data (Foi et al. model clipping; this does not), data that
      were rescaled non-linearly or compressed, and correlated noise (e.g. demosaicked or
      already filtered images) violate the model.
    * Bins at very low counts (below about one photon) are non-Gaussian; they enter the
      robust fit with the rest and rarely spoil it, but the estimate is less accurate
      when most of the image is that dark.
    * A slope that is not positive means the noise does not grow with the signal; the
      gain is then set to a tiny positive value (and a RuntimeWarning says so), which
      makes the transformation an affine, Gaussian one.
    """
    offset = _number("offset", offset)
    a, b, _ = _fit_noise_curve(image)
    a, sigma = _finish_estimate(a, b, offset, np.asarray(image))
    return a, sigma


def _finish_estimate(a: float, b: float, offset: float, arr: np.ndarray) -> tuple[float, float]:
    floor = 1e-6 * max(float(np.ptp(arr)), 1e-12)
    if not a > floor:
        warnings.warn(
            f"estimate_poisson_gaussian: the noise variance does not grow with the signal "
            f"(fitted slope {a:.3g}); using gain={floor:.3g}: the noise looks Gaussian, "
            f"model 'gaussian' may suit these data better",
            RuntimeWarning,
            stacklevel=3,
        )
        a = floor
    return a, math.sqrt(max(b + a * offset, 0.0))


# ---------------------------------------------------------------------------------------
# front end for the restoration
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NoiseState:
    """What :func:`unstabilise` needs to map a restored image back (and provenance).

    Attributes
    ----------
    model : {"gaussian", "poisson-gaussian"}
    gain, sigma, offset : float
        Parameters of the transformation (gain 1, sigma 0, offset 0 for "gaussian").
    estimated : tuple of str
        Which of gain, sigma and offset were estimated from the image.
    """

    model: str
    gain: float = 1.0
    sigma: float = 0.0
    offset: float = 0.0
    estimated: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dictionary (for result metadata)."""
        out = asdict(self)
        out["estimated"] = list(self.estimated)
        return out


def stabilise(
    image: Any,
    model: str = "poisson-gaussian",
    gain: float | None = None,
    sigma: float | None = None,
    offset: float | None = 0.0,
) -> tuple[np.ndarray, NoiseState]:
    """Transform an image so that a Gaussian data term suits its noise.

    Parameters
    ----------
    image : array_like
        Raw data (2-D image or a 3-D stack for the estimate; any shape when ``gain`` and
        ``sigma`` are both given).
    model : {"gaussian", "poisson-gaussian"}
        "gaussian": the image is returned unchanged (as an array). "poisson-gaussian": the
        generalized Anscombe transformation (:func:`generalized_anscombe`).
    gain, sigma : float, optional
        Noise parameters in the image's units; estimated from the image
        (:func:`estimate_poisson_gaussian`) when not given. When only one is given, the
        other is fitted with it fixed.
    offset : float or None
        Camera offset (mean of the Gaussian part), in the image's units. None: unknown;
        with ``sigma`` estimated too, the image's dark level stands in for it (the 0.1 %
        quantile of its 7 x 7 local means, or the image's minimum where more than 1 % of
        the pixels sit at it: data clipped there, e.g. with the offset taken off and the
        negative values cut; ``estimated`` lists "offset"; not where the noise does
        not grow with the signal: the gain is then floored, see
        :func:`estimate_poisson_gaussian`, and the offset stays 0; and raised where the
        fitted curve needs a higher one, as for any offset). The
        transformation itself only sees ``sigma**2 - gain * offset``, which the noise
        curve fixes whatever the split; the split sets the floor of the inverse, which
        keeps the photon count at or above 0 (the result at or above the offset).
        Without an offset (0, or all the intercept taken as read noise) that floor lay
        too low, and the dark background of a 128 x 128 cell crop at 10 photons came
        out 1.2 dB worse than with the true offset (benchmarks/RESULTS.md, "Photon
        counts").

    Returns
    -------
    (transformed, state)
        ``transformed`` (float64 for "poisson-gaussian") has noise of about unit variance;
        ``state`` is passed to :func:`unstabilise` and :func:`unstabilise_variance`.
    """
    model = _model(model)
    if gain is not None:
        gain = _number("gain", gain, positive=True)
    if sigma is not None:
        sigma = _number("sigma", sigma, nonneg=True)
    dark = offset is None
    if dark and sigma is not None:
        raise ValueError("offset: None (estimated) needs sigma estimated too; give an "
                         "offset with a given sigma (0 if the data have none)")
    offset = 0.0 if dark else _number("offset", offset)
    arr = _array("image", image)
    if model == "gaussian":
        return arr, NoiseState(model="gaussian")
    estimated: list[str] = []
    if gain is None or sigma is None:
        # a given sigma fixes the intercept b = sigma**2 - gain * offset only when the
        # offset is 0 (otherwise b depends on the unknown gain: both are fitted and the
        # given sigma is kept)
        b = sigma * sigma if (sigma is not None and offset == 0) else None
        a_fit, b_fit, details = _fit_noise_curve(arr, gain=gain, b=b)
        if gain is None:
            estimated.append("gain")
            gain, _ = _finish_estimate(a_fit, b_fit, 0.0, arr)
            dark = dark and gain == a_fit  # no slope: the data are not counts, offset 0
        if dark:
            estimated.append("offset")
            offset = details["dark"]
            low = float(arr.min())
            if np.mean(arr == low) > CLIPPED_SHARE:  # clipped below (an offset taken off
                offset = min(offset, low)  # and the negative values cut): the clip's level
        if sigma is None:
            estimated.append("sigma")
            s2 = b_fit + gain * offset
            if s2 < 0:
                # the fitted curve needs more offset than given: keep the fit exact by
                # moving the rest into the offset (the transformation only sees
                # sigma**2 - gain * offset)
                offset = offset - s2 / gain
                s2 = 0.0
            sigma = math.sqrt(s2)
    state = NoiseState(model=model, gain=float(gain), sigma=float(sigma), offset=float(offset),
                       estimated=tuple(estimated))
    return generalized_anscombe(arr, state.gain, state.sigma, state.offset), state


def _state(state: Any) -> NoiseState:
    if isinstance(state, dict):
        try:
            state = NoiseState(model=_model(state.get("model")),
                               gain=state.get("gain", 1.0), sigma=state.get("sigma", 0.0),
                               offset=state.get("offset", 0.0),
                               estimated=tuple(state.get("estimated", ())))
        except TypeError as exc:
            raise TypeError(f"state: {exc}") from None
    if not isinstance(state, NoiseState):
        raise TypeError(f"state: expected the NoiseState returned by stabilise, got "
                        f"{type(state).__name__}")
    _model(state.model)
    return state


def unstabilise(estimate: Any, state: NoiseState | dict, *, method: str = "unbiased") -> np.ndarray:
    """Map a restored image from the stabilised domain back to the image's units.

    "gaussian": returned unchanged. "poisson-gaussian": the closed-form unbiased inverse of
    the GAT (:func:`inverse_generalized_anscombe`; ``method="algebraic"`` for the plain
    inverse). ``state`` is what :func:`stabilise` returned (or its ``to_dict()``).
    """
    state = _state(state)
    arr = _array("estimate", estimate)
    if state.model == "gaussian":
        return arr
    return inverse_generalized_anscombe(arr, state.gain, state.sigma, state.offset, method=method)


def unstabilise_variance(estimate: Any, variance: Any, state: NoiseState | dict) -> np.ndarray:
    """Map a per-pixel variance (e.g. SGLD's posterior variance) from the stabilised
    domain back to the image's units, by the delta method.

    To first order ``Var_out = (dI/dD)**2 * Var_t`` with ``I`` the unbiased inverse, taken
    at the transformed-domain ``estimate`` (the posterior mean). The derivative is
    evaluated as a central difference over one standard deviation,
    ``((I(D + s) - I(D - s)) / 2)**2`` with ``s = sqrt(Var_t)``, which equals the delta
    method for small ``s`` and stays sensible where the inverse is clipped at zero
    photons (there the first-order formula would give 0). It remains an approximation:
    it ignores the skew of the back-transformed distribution, which matters below a few
    photons per pixel.

    Parameters
    ----------
    estimate : array_like
        The restored image in the stabilised domain (not yet unstabilised).
    variance : array_like
        Its per-pixel variance, same shape (stabilised units squared).
    state : NoiseState or dict
        What :func:`stabilise` returned.

    Returns
    -------
    numpy.ndarray
        float64 variance in the image's units squared ("gaussian": ``variance`` unchanged).
    """
    state = _state(state)
    t = _array("estimate", estimate)
    v = _array("variance", variance)
    if t.shape != v.shape:
        raise ValueError(f"variance: expected the estimate's shape {t.shape}, got {v.shape}")
    if (v < 0).any():
        raise ValueError("variance: expected values >= 0, got negative ones")
    if state.model == "gaussian":
        return v
    s = np.sqrt(v.astype(np.float64))
    t = t.astype(np.float64)
    hi = inverse_generalized_anscombe(t + s, state.gain, state.sigma, state.offset)
    lo = inverse_generalized_anscombe(t - s, state.gain, state.sigma, state.offset)
    return (0.5 * (hi - lo)) ** 2
