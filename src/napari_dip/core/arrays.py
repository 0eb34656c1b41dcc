"""Input handling: validation, axes, normalisation to [0, 1] and back, padding and cropping.

The user's array is never modified: every function here reads it and returns new arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

MIN_SIZE = 4  # smallest accepted spatial extent along every axis


@dataclass(frozen=True)
class Prepared:
    """An image in the engine's layout: float32 ``(C, *spatial)`` in [0, 1].

    ``known`` is ``(1 or C, *spatial)`` with 1 on pixels that enter the loss.
    ``noise_std`` is the noise's standard deviation in these units where it is known (a
    tile of a larger image gets the whole image's), 0 where the run reads it (from
    ``DIPConfig.noise_std`` or the image).
    """

    data: np.ndarray
    known: np.ndarray | None
    reference: np.ndarray | None
    lo: float
    hi: float
    shape: tuple[int, ...]
    dtype: np.dtype
    channel_axis: int | None
    ndim_spatial: int
    original: np.ndarray | None = None  # the caller's array (read, never written)
    noise_std: float = 0.0


def _as_numeric_array(name: str, value: Any) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except Exception as exc:  # noqa: BLE001 - report any conversion failure
        raise TypeError(f"{name}: expected a numeric array, got {type(value).__name__} ({exc})") from None
    if arr.dtype == object or arr.dtype.kind not in "biuf":
        raise TypeError(
            f"{name}: expected a numeric array (bool, int, uint or float), got dtype {arr.dtype}"
        )
    return arr


def validate_image(image: Any, channel_axis: int | None) -> tuple[np.ndarray, int | None]:
    """Check an image and its channel axis; return the array and a normalised axis."""
    arr = _as_numeric_array("image", image)
    if arr.dtype.kind == "b":
        raise TypeError("image: expected a numeric array of intensities, got dtype bool")
    if arr.size == 0:
        raise ValueError(f"image: expected a non-empty array, got shape {arr.shape}")
    if channel_axis is not None:
        if isinstance(channel_axis, bool) or not isinstance(channel_axis, (int, np.integer)):
            raise TypeError(f"channel_axis: expected an integer or None, got {channel_axis!r}")
        if not -arr.ndim <= channel_axis < arr.ndim:
            raise ValueError(
                f"channel_axis: expected an axis in [{-arr.ndim}, {arr.ndim - 1}] for an image "
                f"of shape {arr.shape}, got {channel_axis}"
            )
        channel_axis = int(channel_axis) % arr.ndim
    n_spatial = arr.ndim - (channel_axis is not None)
    if n_spatial not in (2, 3):
        hint = "" if channel_axis is not None or arr.ndim < 3 else " (pass channel_axis for channels)"
        raise ValueError(
            f"image: expected 2 or 3 spatial axes (Y, X) or (Z, Y, X), plus an optional "
            f"channel axis; got shape {arr.shape} with channel_axis={channel_axis}{hint}"
        )
    spatial = [s for i, s in enumerate(arr.shape) if i != channel_axis]
    if min(spatial) < MIN_SIZE:
        raise ValueError(
            f"image: expected at least {MIN_SIZE} pixels along every spatial axis, got shape "
            f"{arr.shape}"
        )
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        raise ValueError("image: expected finite values, got NaN or inf")
    return arr, channel_axis


def _to_engine_layout(arr: np.ndarray, channel_axis: int | None) -> np.ndarray:
    if channel_axis is None:
        return arr[np.newaxis]
    return np.moveaxis(arr, channel_axis, 0)


def prepare(
    image: Any,
    *,
    mask: Any = None,
    channel_axis: int | None = None,
    reference: Any = None,
) -> Prepared:
    """Validate and convert an image (and optional mask, reference) to the engine layout.

    ``mask`` is nonzero on missing pixels (to be filled), with the image's shape or its
    spatial shape. Normalisation maps the minimum and maximum of the known pixels to 0 and
    1 (one range for all channels, so colours keep their balance).
    """
    arr, channel_axis = validate_image(image, channel_axis)
    spatial = tuple(s for i, s in enumerate(arr.shape) if i != channel_axis)
    data = _to_engine_layout(arr, channel_axis).astype(np.float64, copy=True)

    known = None
    if mask is not None:
        m = _as_numeric_array("mask", mask)
        if m.shape == arr.shape:
            m = _to_engine_layout(m, channel_axis)
        elif m.shape == spatial:
            m = m[np.newaxis]
        else:
            raise ValueError(
                f"mask: expected shape {arr.shape} (the image's) or {spatial} (its spatial "
                f"shape), got {m.shape}"
            )
        if m.dtype.kind == "f" and not np.isfinite(m).all():
            raise ValueError("mask: expected finite values (nonzero = missing), got NaN or inf")
        known = (m == 0).astype(np.float32)
        if not known.any():
            raise ValueError(
                "mask: every pixel is marked missing; expected at least one known pixel "
                "(nonzero marks the pixels to fill)"
            )
        if known.all():
            known = None  # nothing to fill: plain denoising

    sel = data if known is None else data[np.broadcast_to(known, data.shape) > 0]
    lo, hi = float(sel.min()), float(sel.max())
    if arr.dtype.kind in "iu" and max(abs(lo), abs(hi)) > 2.0 ** 53:
        # beyond 2**53 a float64 rounds the bounds, possibly out of the data's range: step
        # them inside it, so that results cast back to the dtype stay within the input's
        raw = _to_engine_layout(arr, channel_axis)
        raw = raw if known is None else raw[np.broadcast_to(known, raw.shape) > 0]
        if int(hi) > int(raw.max()):
            hi = float(np.nextafter(hi, -np.inf))
        if int(lo) < int(raw.min()):
            lo = float(np.nextafter(lo, np.inf))
    scale = hi - lo if hi > lo else 1.0
    norm = ((data - lo) / scale).astype(np.float32)
    if known is not None:  # missing pixels carry no information: set them to mid-grey
        norm = np.where(np.broadcast_to(known, norm.shape) > 0, norm, np.float32(0.5))

    ref = None
    if reference is not None:
        r = _as_numeric_array("reference", reference)
        if r.shape != arr.shape:
            raise ValueError(f"reference: expected the image's shape {arr.shape}, got {r.shape}")
        if r.dtype.kind == "f" and not np.isfinite(r).all():
            raise ValueError("reference: expected finite values, got NaN or inf")
        ref = r
    return Prepared(
        data=np.ascontiguousarray(norm),
        known=None if known is None else np.ascontiguousarray(known),
        reference=ref,
        lo=lo,
        hi=hi if hi > lo else lo + 1.0,
        shape=arr.shape,
        dtype=arr.dtype,
        channel_axis=channel_axis,
        ndim_spatial=len(spatial),
        original=arr,
    )


def restore_layout(
    norm: np.ndarray, prep: Prepared, *, output_dtype: str | np.dtype | None = None
) -> np.ndarray:
    """Map an engine-layout array in [0, 1] back to the user's axes, range and dtype."""
    out = norm.astype(np.float64) * (prep.hi - prep.lo) + prep.lo
    # within the range even where the product rounds up (e.g. near the int64 limits)
    out = np.clip(out, min(prep.lo, prep.hi), max(prep.lo, prep.hi))
    out = out[0] if prep.channel_axis is None else np.moveaxis(out, 0, prep.channel_axis)
    return cast_to(out, prep.dtype if output_dtype is None else np.dtype(output_dtype))


def keep_known_pixels(
    image: np.ndarray, prep: Prepared, *, output_dtype: str | np.dtype | None = None
) -> np.ndarray:
    """``image`` (user layout) with the known pixels of the input copied in unchanged."""
    if prep.known is None:
        return image
    kn = np.broadcast_to(prep.known, prep.data.shape) > 0
    kn = kn[0] if prep.channel_axis is None else np.moveaxis(kn, 0, prep.channel_axis)
    if prep.original is not None:
        dtype = prep.dtype if output_dtype is None else np.dtype(output_dtype)
        orig = cast_to(prep.original, dtype) if prep.original.dtype != dtype else prep.original
    else:
        orig = restore_layout(prep.data, prep, output_dtype=output_dtype)
    return np.where(kn, orig, image)


def variance_to_user(var: np.ndarray, prep: Prepared) -> np.ndarray:
    """Scale a normalised variance to the user's units (float32, user's axes)."""
    out = var.astype(np.float64) * (prep.hi - prep.lo) ** 2
    out = out[0] if prep.channel_axis is None else np.moveaxis(out, 0, prep.channel_axis)
    return out.astype(np.float32)


def cast_to(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Round and clip to an integer dtype's range, or convert to a float dtype."""
    dtype = np.dtype(dtype)
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return np.clip(np.rint(values), info.min, info.max).astype(dtype)
    return values.astype(dtype)


def pad_amounts(spatial: tuple[int, ...], levels: tuple[int, ...]) -> list[tuple[int, int]]:
    """Padding before/after each axis so that an axis halved ``levels[axis]`` times is a
    multiple of ``2 ** levels[axis]`` and keeps 2 pixels at the coarsest scale (its padded
    3x3 convolutions need them)."""
    out = []
    for s, v in zip(spatial, levels):
        total = max((-s) % 2**v, 2 ** (v + 1) - s)
        out.append((total // 2, total - total // 2))
    return out


def pad_array(arr: np.ndarray, pads: list[tuple[int, int]], mode: str = "reflect") -> np.ndarray:
    """Pad the trailing spatial axes of a ``(C, *spatial)`` array."""
    if not any(a or b for a, b in pads):
        return arr
    full = [(0, 0)] * (arr.ndim - len(pads)) + pads
    if mode == "reflect":
        return np.pad(arr, full, mode="symmetric")
    return np.pad(arr, full, mode="constant")


def crop_slices(spatial: tuple[int, ...], pads: list[tuple[int, int]]) -> tuple[slice, ...]:
    return tuple(slice(a, a + s) for s, (a, _) in zip(spatial, pads))


def left_out(data: np.ndarray, known: np.ndarray | None, *, clipped: bool = False
             ) -> np.ndarray:
    """The pixels of an engine-layout image ``(C, *spatial)`` that a noise reading leaves
    out, as a boolean array of its shape: the missing ones (``known`` <= 0) and, with
    ``clipped``, those at the known values' minimum or maximum."""
    bad = np.zeros(data.shape, bool)
    if known is not None:
        bad |= np.broadcast_to(known, data.shape) <= 0
    if clipped and not bad.all():
        vals = data[~bad]  # the extremes of the known values
        bad |= (data <= vals.min()) | (data >= vals.max())
    return bad


def _diagonal_details(data: np.ndarray, known: np.ndarray | None, *, clipped: bool = False
                      ) -> tuple[np.ndarray, np.ndarray]:
    """The finest diagonal differences of an engine-layout image ``(C, *spatial)`` (one
    per 2 x 2 block, 2 x 2 x 2 for volumes; scaled to keep the variance of white noise)
    and their blocks' means, flattened, leaving out blocks with a missing pixel and, with
    ``clipped``, blocks with a pixel at the known values' minimum or maximum."""
    d = data.astype(np.float64)
    m = d
    bad = left_out(d, known, clipped=clipped)
    for axis in range(1, d.ndim):
        later, earlier = range(1, d.shape[axis]), range(0, d.shape[axis] - 1)
        d = (np.take(d, later, axis=axis) - np.take(d, earlier, axis=axis)) / np.sqrt(2.0)
        m = (np.take(m, later, axis=axis) + np.take(m, earlier, axis=axis)) / 2.0
        bad = np.take(bad, later, axis=axis) | np.take(bad, earlier, axis=axis)
    return d[~bad], m[~bad]


def _mad_variance(x: np.ndarray) -> float:
    """Variance of Gaussian samples from their median absolute deviation."""
    return float((1.4826 * np.median(np.abs(x - np.median(x)))) ** 2)


def noise_trend(data: np.ndarray, known: np.ndarray | None = None) -> float:
    """How much the noise variance grows with the signal in an engine-layout image
    ``(C, *spatial)``: the variance of the finest diagonal differences (as in
    :func:`noise_variance`) in the brighter half of the blocks over that in the darker
    half, the blocks sorted by their mean. Blocks with a missing pixel or a pixel at the
    known values' minimum or maximum are left out, and where the data are clipped (see
    :func:`clipped_noise_variance`) so are blocks near a clipped end, whose noise the clip
    cuts short. About 1 for Gaussian noise of one variance; well above 1 for shot
    (Poisson) noise. 1.0 where too few blocks are left. (A check of the brightest tenth
    against the darker half, on a high-pass residual, finds more photon counts but was
    not adopted: benchmarks/RESULTS.md, "Two other noise checks".)"""
    d, m = _unclipped_blocks(data, known)
    if d.size < 64:
        return 1.0
    bright = m > np.median(m)
    dark_var = _mad_variance(d[~bright])
    if not bright.any() or dark_var <= 0:
        return 1.0
    return _mad_variance(d[bright]) / dark_var


def noise_variance(data: np.ndarray, known: np.ndarray | None = None) -> float:
    """Variance of white noise in an engine-layout image ``(C, *spatial)``, estimated from
    the median absolute deviation of its finest diagonal differences (pixels in 2 x 2
    blocks, 2 x 2 x 2 for volumes), which smooth content barely touches. Blocks with a
    missing pixel are left out."""
    d, _ = _diagonal_details(data, known)
    if d.size < 16:
        return 0.0
    return _mad_variance(d)


def variance_ratio(data: np.ndarray, noise_var: float) -> float:
    """The variance of an engine-layout image ``(C, *spatial)`` whose every pixel is known
    (R2R's runs), each channel about its own mean and the channels averaged, as a multiple
    of ``noise_var`` (a signal-to-noise measure: 1 for pure noise, the signal's variance
    over the noise's plus 1 otherwise); inf where ``noise_var`` is not positive or there is
    a single pixel."""
    if not noise_var > 0 or data[0].size < 2:
        return float("inf")
    per_channel = [float(np.var(data[c], dtype=np.float64)) for c in range(data.shape[0])]
    return float(np.mean(per_channel)) / float(noise_var)


def clipped_ends(data: np.ndarray, known: np.ndarray | None = None,
                 min_fraction: float = 1e-3) -> tuple[bool, bool]:
    """Whether the values of an engine-layout image pile up at its minimum and at its
    maximum (clipped or saturated data): more than ``min_fraction`` of the known values
    (and more than 8) equal to the extreme, and more than twice as many as lie within
    1/256 of the value range beside it, or within the next value present (the next grey
    level of quantised data). Unclipped noisy data hold each extreme once, or
    (quantised) fewer than the levels next to it."""
    vals = data if known is None else data[np.broadcast_to(known, data.shape) > 0]
    if vals.size == 0 or vals.min() >= vals.max():  # nothing, or one value: no clip to tell
        return False, False
    limit = max(min_fraction * vals.size, 8)
    lo, hi = float(vals.min()), float(vals.max())
    step = (hi - lo) / 256.0  # a band of the value range beside each end, and at least
    # the next value present there (the next grey level of quantised data)
    step_lo = max(step, float(vals[vals > lo].min()) - lo)
    step_hi = max(step, hi - float(vals[vals < hi].max()))

    def piled(at_end: int, beside: int) -> bool:
        # a clip gathers the whole tail at the end: far more values than just beside it,
        # where quantised data that are not clipped hold fewer at their extreme
        return at_end > limit and at_end > 2 * beside

    low = piled(np.count_nonzero(vals <= lo),
                np.count_nonzero((vals > lo) & (vals <= lo + step_lo)))
    high = piled(np.count_nonzero(vals >= hi),
                 np.count_nonzero((vals < hi) & (vals >= hi - step_hi)))
    return bool(low), bool(high)


def _unclipped_blocks(data: np.ndarray, known: np.ndarray | None = None,
                      margin: float = 2.0, details: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_diagonal_details` without blocks that have a pixel at the known values'
    minimum or maximum and, where the values pile up at an end (:func:`clipped_ends`), without
    blocks whose mean lies within ``margin`` noise standard deviations of that end (the
    deviation found by iterating from the estimate over all unclipped blocks).
    ``details``: another function like :func:`_diagonal_details` to take the residual
    from."""
    d, m = (details or _diagonal_details)(data, known, clipped=True)
    low, high = clipped_ends(data, known)
    if not (low or high) or d.size < 16:
        return d, m
    vals = data if known is None else data[np.broadcast_to(known, data.shape) > 0]
    lo, hi = float(vals.min()), float(vals.max())
    keep = np.ones(d.shape, bool)
    var = _mad_variance(d)
    for _ in range(3):
        s = margin * np.sqrt(var)
        ok = np.ones(d.shape, bool)
        if low:
            ok &= m > lo + s
        if high:
            ok &= m < hi - s
        if ok.sum() < 256:
            break
        keep = ok
        var = _mad_variance(d[ok])
    return d[keep], m[keep]


def clip_summary(data: np.ndarray, ends: tuple[bool, bool],
                 known: np.ndarray | None = None) -> tuple[float, str]:
    """The share of the known values that sit at the clipped ends ``ends`` (from
    :func:`clipped_ends`) of an engine-layout image, and those ends in words ("minimum",
    "maximum" or "minimum and maximum"), for the run's notes."""
    vals = data if known is None else data[np.broadcast_to(known, data.shape) > 0]
    if vals.size == 0:
        return 0.0, ""
    at = np.zeros(vals.shape, bool)
    if ends[0]:
        at |= vals <= vals.min()
    if ends[1]:
        at |= vals >= vals.max()
    words = " and ".join(e for e, f in zip(("minimum", "maximum"), ends) if f)
    return float(at.mean()), words


def clipped_noise_variance(data: np.ndarray, known: np.ndarray | None = None) -> float:
    """:func:`noise_variance` for data that may be clipped at their minimum or maximum
    (:func:`clipped_ends`): only blocks whose mean lies more than two noise standard
    deviations inside a clipped end count, as the clip cuts the noise short near it (the
    plain estimate read 42-46 instead of 50 on 8-bit images at sigma 50). The same as
    :func:`noise_variance`, less blocks at the extremes, on unclipped data."""
    d, _ = _unclipped_blocks(data, known)
    if d.size < 16:
        return noise_variance(data, known)
    return _mad_variance(d)


def clipped_mean(x: np.ndarray, sigma: float, lo: float | None, hi: float | None
                 ) -> np.ndarray:
    """Mean of ``x + n`` (``n`` Gaussian with std ``sigma``) clipped below at ``lo`` and
    above at ``hi`` (None: no clipping at that end)."""
    from scipy.special import ndtr

    x = np.asarray(x, np.float64)
    out = x.copy()
    pdf = lambda t: np.exp(-0.5 * t * t) / np.sqrt(2.0 * np.pi)  # noqa: E731
    if lo is not None:  # E[max(lo, v)] = v + E[max(0, lo - v)]
        t = (lo - x) / sigma
        out += (lo - x) * ndtr(t) + sigma * pdf(t)
    if hi is not None:  # E[min(hi, v)] = v - E[max(0, v - hi)]
        t = (x - hi) / sigma
        out -= (x - hi) * ndtr(t) + sigma * pdf(t)
    return out


def unclip_mean(values: np.ndarray, sigma: float, lo: float | None, hi: float | None
                ) -> np.ndarray:
    """The inverse of :func:`clipped_mean`: the value whose clipped noisy versions average
    ``values`` (a denoiser of clipped data estimates that average, which near a clipped
    end lies inside the true value; Foi, 2009, treats the same bias for clipped noise)."""
    if sigma <= 0 or (lo is None and hi is None):
        return values
    a = (lo if lo is not None else 0.0) - 6.0 * sigma
    b = (hi if hi is not None else 1.0) + 6.0 * sigma
    grid = np.linspace(a, b, 8193)
    means = clipped_mean(grid, sigma, lo, hi)
    return np.interp(values, means, grid).astype(values.dtype, copy=False)


def impute_clipped(data: np.ndarray, sigma: float, *, low: bool, high: bool, seed: int = 0,
                   smooth: float = 2.0) -> np.ndarray:
    """Replace the clipped values of an engine-layout image ``(C, *spatial)`` (those at its
    minimum where ``low``, at its maximum where ``high``) by draws of Gaussian noise of std
    ``sigma`` around a local estimate of the clean value, each conditioned on lying beyond
    the clip: such data look as if they were never clipped, which is what SURE assumes.

    The local estimate is a Gaussian blur of width ``smooth`` pixels with the clipping's
    bias removed (:func:`unclip_mean`). Unclipped values are kept."""
    from scipy.ndimage import gaussian_filter
    from scipy.special import ndtr, ndtri

    if not sigma > 0 or not (low or high):
        return data.copy()
    out = data.astype(np.float64, copy=True)
    lo, hi = float(data.min()), float(data.max())
    blur = np.stack([gaussian_filter(c, smooth, mode="reflect") for c in out])
    guess = unclip_mean(blur, sigma, lo if low else None, hi if high else None)
    rng = np.random.default_rng(seed)
    eps = 1e-12
    for flag, at, below in ((low, lo, True), (high, hi, False)):
        if not flag:
            continue
        sel = out <= lo if below else out >= hi
        mu = guess[sel]
        edge = ndtr((at - mu) / sigma)  # P(v <= at) for v ~ N(mu, sigma^2)
        u = rng.uniform(size=mu.shape)
        p = u * edge if below else edge + u * (1.0 - edge)
        out[sel] = mu + sigma * ndtri(np.clip(p, eps, 1.0 - eps))
        if below:
            out[sel] = np.minimum(out[sel], at)
        else:
            out[sel] = np.maximum(out[sel], at)
    return out.astype(data.dtype, copy=False)


def expect_clipped(data: np.ndarray, estimate: np.ndarray, sigma: float, *, low: bool,
                   high: bool, known: np.ndarray | None = None) -> np.ndarray:
    """Replace the clipped values of an engine-layout image ``(C, *spatial)`` (those at the
    minimum of its known values where ``low``, at their maximum where ``high``) by their
    expectation beyond the clip, ``E[v | v <= lo]`` or ``E[v | v >= hi]`` for ``v`` Gaussian
    around ``estimate`` (same shape, an estimate of the clean image) with std ``sigma``.

    Each replaced value has the unclipped noisy value's expectation given the estimate, so
    a linear filter of the result is not pulled inwards near the clipped ends as it is on
    the clipped data (a dark background read some 0.4 ``sigma`` too bright), and no noise
    is drawn: the same input gives the same output. Unclipped values and pixels outside
    ``known`` are kept. Float data keep their dtype; integers come back as float32."""
    from scipy.special import log_ndtr

    out = data.astype(np.result_type(data.dtype, np.float32), copy=True)
    if not sigma > 0 or not (low or high):
        return out
    inside = np.ones(data.shape, bool) if known is None else np.broadcast_to(known > 0,
                                                                              data.shape)
    vals = data[inside]
    if vals.size == 0:
        return out
    lo, hi = float(vals.min()), float(vals.max())
    if lo >= hi:  # one value: no clip to tell
        return out
    mu_all = np.broadcast_to(estimate, data.shape)
    log_pdf = lambda t: -0.5 * t * t - 0.5 * np.log(2.0 * np.pi)  # noqa: E731
    for flag, at, below in ((low, lo, True), (high, hi, False)):
        if not flag:
            continue
        sel = inside & ((data <= at) if below else (data >= at))
        mu = mu_all[sel].astype(np.float64)
        if below:  # E[v | v <= at] = mu - sigma pdf(a) / cdf(a), a = (at - mu) / sigma
            a = (at - mu) / sigma
            out[sel] = np.minimum(mu - sigma * np.exp(log_pdf(a) - log_ndtr(a)), at)
        else:  # E[v | v >= at] = mu + sigma pdf(b) / cdf(-b), b = (at - mu) / sigma
            b = (at - mu) / sigma
            out[sel] = np.maximum(mu + sigma * np.exp(log_pdf(b) - log_ndtr(-b)), at)
    return out
