"""The public entry points: :func:`iterate` (streaming) and :func:`restore` (blocking)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from . import arrays, engine, noise, tiling
from .config import (DIPConfig, SGLDConfig, check_loss, config_from_dict, for_noise_model,
                     make_config, recorruption_strength)
from .device import resolve_device, resolve_seed
from .engine import RunInfo, Snapshot


@dataclass
class Result:
    """The outcome of :func:`restore`.

    Attributes
    ----------
    image : numpy.ndarray
        The restored image: the input's shape, value range and dtype (or ``output_dtype``).
    variance : numpy.ndarray or None
        SGLD: per-pixel posterior variance (input units squared, float32); else None.
    steps : int
        Optimisation steps run.
    stop_reason : str
        Why the run ended and which estimate was returned.
    psnr : float or None
        PSNR against ``reference`` when one was given.
    best_step : int or None
        DIP with the stop rule: the step of the returned estimate.
    losses : numpy.ndarray
        The data-fit loss of every step.
    elapsed : float
        Seconds the engine ran.
    info : RunInfo
        Method, configuration, seed, device and shapes.
    """

    image: np.ndarray
    variance: np.ndarray | None
    steps: int
    stop_reason: str
    psnr: float | None
    best_step: int | None
    losses: np.ndarray
    elapsed: float
    info: RunInfo = field(repr=False)

    @classmethod
    def from_snapshot(cls, snap: Snapshot, losses: np.ndarray | None = None) -> Result:
        """The result a run's final snapshot holds; ``losses``: the run's whole loss
        history (default: the snapshot's own)."""
        return cls(image=snap.image, variance=snap.variance, steps=snap.step,
                   stop_reason=snap.stop_reason or "", psnr=snap.psnr,
                   best_step=snap.best_step,
                   losses=snap.losses if losses is None else losses,
                   elapsed=snap.elapsed, info=snap.info)

    @property
    def std(self) -> np.ndarray | None:
        """Posterior standard deviation (SGLD), the square root of ``variance``."""
        return None if self.variance is None else np.sqrt(self.variance)

    def metadata(self) -> dict[str, Any]:
        """Plain-JSON provenance: configuration, seed, device, steps, stop reason, versions."""
        return run_metadata(self.info, steps=self.steps, stop_reason=self.stop_reason,
                            best_step=self.best_step, elapsed=self.elapsed)


def versions() -> dict[str, str]:
    """Versions of this package and of the libraries a result depends on."""
    import platform

    import torch

    from .._version import __version__

    return {
        "napari-dip": __version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def run_metadata(info: RunInfo, **extra: Any) -> dict[str, Any]:
    """Plain-JSON provenance of a run: configuration, seed, device, shapes, versions."""
    return {
        "method": info.method,
        "config": info.config.to_dict(),
        "seed": info.seed,
        "device": info.device,
        "input_shape": list(info.input_shape),
        "input_dtype": info.input_dtype,
        "channel_axis": info.channel_axis,
        "parameters": info.parameters,
        **({"tiling": info.tiles} if info.tiles else {}),
        **({"noise_model": info.noise} if info.noise else {}),
        **({"noise_std": info.noise_std} if info.noise_std is not None else {}),
        **({"notes": list(info.notes)} if info.notes else {}),
        **extra,
        "versions": versions(),
    }


def iterate(
    image: Any,
    *,
    method: str = "dip",
    mask: Any = None,
    channel_axis: int | None = None,
    preset: str = "balanced",
    steps: int | None = None,
    auto_stop: bool | None = None,
    device: Any = "auto",
    seed: int | None = None,
    reference: Any = None,
    config: DIPConfig | dict | None = None,
    output_dtype: Any = None,
    keep_known: bool = False,
    memory_budget: float | None = None,
    noise_model: str = "auto",
    gain: float | None = None,
    read_noise: float | None = None,
    finish: Callable[[], bool] | None = None,
    **options: Any,
) -> Iterator[Snapshot]:
    """Restore an image with DIP or SGLD-DIP, yielding a :class:`Snapshot` every
    ``snapshot_every`` steps and a final one with ``done=True``. Where a second stage runs
    (``refine``), the snapshot before the final one holds the net's estimate that goes
    into it.

    All arguments are checked before this function returns; the work starts at the first
    ``next()``. Closing the generator stops the run and frees the device memory.

    Parameters
    ----------
    image : array_like
        2-D (Y, X) or 3-D (Z, Y, X) image, with an optional channel axis. Any numeric
        dtype and value range.
    method : {"dip", "sgld"}
        Deep Image Prior (Ulyanov et al., 2018) or its Bayesian SGLD variant
        (Cheng et al., 2019), which also returns a per-pixel posterior variance.
    mask : array_like, optional
        Nonzero (True) on missing pixels, which are filled in (inpainting). The image's
        shape, or its spatial shape to apply to every channel.
    channel_axis : int, optional
        Axis of channels (e.g. -1 for RGB); None for a single channel.
    preset : {"fast", "balanced", "quality"}
        "quality" is the papers' configuration; the others are lighter and faster. DIP
        with "fast" or "balanced" denoises an image without a mask with the noisy image
        as the net's input and the R2R loss (``loss="r2r"``, which stops by itself):
        "fast" with one net, "balanced" with four averaged (``loss="sure"`` for the SURE
        loss); both fill a mask with the papers' loss.
    steps : int, optional
        Maximum number of steps (the preset's when None).
    auto_stop : bool, optional
        DIP: stop by itself (``stop_rule``: the discrepancy principle, or the
        windowed-variance rule with a mask, or the lowest error on held-out pixels with
        ``stop_rule="holdout"``; on by default). Not used by SGLD.
    device : str or torch.device
        "auto" (CUDA, then MPS, then CPU), "cpu", "cuda", "cuda:N" or "mps".
    seed : int, optional
        Makes a run repeatable (on the CPU bit for bit); drawn at random when None and
        reported in ``info.seed``.
    reference : array_like, optional
        Ground truth of the image's shape: snapshots then report the PSNR.
    config : DIPConfig, SGLDConfig or dict, optional
        A full configuration (e.g. read back from a result's metadata); ``method`` and
        ``preset`` are then taken from it, and ``steps``/``auto_stop``/``options`` still
        override its fields.
    output_dtype : dtype, optional
        Dtype of the returned images (default: the input's), e.g. "float32".
    keep_known : bool
        With a mask: copy the known pixels of the input into the result unchanged
        (for clean images; leave False to denoise them too).
    memory_budget : float, optional
        GiB the run may use on the device (default: 90 % of the free GPU memory, or half
        of the available system memory). An image whose run would need more is restored
        in overlapping tiles, blended without seams (see ``tile_size``); a run that runs
        out of memory anyway starts again with smaller tiles.
    noise_model : {"auto", "gaussian", "poisson-gaussian"}
        "gaussian": noise of one variance everywhere; the data term works on the raw values.
        "poisson-gaussian" (photon-counting detectors): the image is first mapped by the
        generalized Anscombe transformation, which makes its noise about Gaussian with unit
        variance, restored, and mapped back by the exact unbiased inverse (Makitalo & Foi,
        2013); an SGLD variance is mapped back by the delta method.
        "auto" (default): "poisson-gaussian" where ``gain`` or ``read_noise`` is given, or
        where a run that denoises a whole image with R2R (the "fast" and
        "balanced" presets without a mask) finds its noise variance growing with the
        signal (:func:`choose_noise_model`); "gaussian" otherwise. On photon counts the
        fast preset then gained 1.3-2.0 dB on average at 10-100 photons at the brightest
        pixel over the papers' loss on the raw values, which it used before; it came
        0.1-0.3 dB above BM3D with the same transformation at 30-100 photons and 1.0 dB
        below it at 10 (benchmarks/RESULTS.md, "Photon counts"). A known noise level
        (the option ``noise_std``) says the noise is Gaussian: "auto" is then
        "gaussian", and "poisson-gaussian" (or ``gain``, ``read_noise``) with it is an
        error.
    gain, read_noise : float, optional
        "poisson-gaussian": detector gain (image units per photon) and the standard
        deviation of the Gaussian read noise, in image units; estimated from the image
        when not given (:func:`napari_dip.core.noise.estimate_poisson_gaussian`), and
        the camera offset with them (the image's dark level, which sets the floor of the
        inverse: see :func:`napari_dip.core.noise.stabilise`). With ``read_noise`` given,
        the data are taken to have no offset: subtract it first.
    finish : callable, optional
        Polled at every snapshot: once it returns True the fit ends, and the run finishes
        as at its last step (the stop rule's estimate, then the gaps' blend and the second
        stage where they are set), as ``time_limit`` does. A tiled run ends the tile in
        progress, and every later tile at the step where that one ended, so that the
        tiles stay alike. Closing the generator instead stops at once, with no final
        snapshot.
    **options
        Fields of :class:`~napari_dip.core.config.DIPConfig` /
        :class:`~napari_dip.core.config.SGLDConfig` (e.g. ``width=64, lr=0.02``).
    """
    cfg = resolve_config(method=method, preset=preset, steps=steps, auto_stop=auto_stop,
                         config=config, options=options, masked=mask is not None)
    if output_dtype is not None:
        try:
            dt = np.dtype(output_dtype)
        except TypeError:
            raise TypeError(f"output_dtype: expected a numpy dtype, got {output_dtype!r}") from None
        if dt.kind not in "iuf":
            raise TypeError(f"output_dtype: expected an integer or float dtype, got {dt}")
    if not isinstance(keep_known, bool):
        raise TypeError(f"keep_known: expected True or False, got {keep_known!r}")
    if finish is not None and not callable(finish):
        raise TypeError(f"finish: expected a function of no arguments that returns True "
                        f"to end the fit, or None, got {finish!r}")
    prep = arrays.prepare(image, mask=mask, channel_axis=channel_axis, reference=reference)
    check_loss(cfg, masked=prep.known is not None)
    dev = resolve_device(device)
    seed = resolve_seed(seed)
    noise_model, chosen_note = choose_noise_model(prep, cfg, noise_model, gain, read_noise)
    cfg, stabilised_note = for_noise_model(cfg, noise_model)
    notes = [n for n in (chosen_note, stabilised_note) if n is not None]
    # planned now, so that an impossible budget or a tile in a hole is reported at once
    plan = tiling.plan_run(prep, cfg, dev, memory_budget)
    if noise_model == "gaussian" and gain is None and read_noise is None:
        return tiling.run(prep, cfg, device=dev, seed=seed, output_dtype=output_dtype,
                          keep_known=keep_known, plan=plan, finish=finish)
    state, stable = _stabilise(prep, noise_model, gain, read_noise)
    run = tiling.run(stable, cfg, device=dev, seed=seed, output_dtype="float64", plan=plan,
                     finish=finish)
    return _unstabilised(run, state, stable, prep, output_dtype=output_dtype,
                         keep_known=keep_known, notes=notes)


NOISE_MODELS = ("auto", *noise.MODELS)


def choose_noise_model(prep: arrays.Prepared, cfg: DIPConfig, noise_model: Any,
                       gain: Any = None, read_noise: Any = None) -> tuple[str, str | None]:
    """The noise model a run of ``cfg`` on ``prep`` uses for ``noise_model`` (one of
    :data:`NOISE_MODELS`), and a note where "auto" chose the transformation.

    "auto" is "poisson-gaussian" where ``gain`` or ``read_noise`` is given; for a DIP run
    that denoises a whole image with R2R (the fast and balanced presets without a mask),
    with its check on (``sure_max_trend`` > 0, as in the presets), it is
    "poisson-gaussian" where the noise variance of the brighter half of the image exceeds
    that of the darker half by more than ``sure_max_trend`` (:func:`arrays.noise_trend`:
    0.83-1.42 on 81 images of 256x256 with Gaussian noise, 1.06-4.91 on photon counts,
    benchmarks/bench_noise_trend.py). Without the transformation such a run falls back to
    the papers' loss on the raw values (:func:`~napari_dip.core.config.sure_fallback`); with
    it, R2R gained 1.3-2.0 dB on average at 10-100 photons on the microscopy benchmark
    (fast preset; balanced 1.0-2.8). Everything else stays "gaussian": masks (the estimate
    of the noise parameters cannot leave out their pixels), SGLD, SURE (which broke down
    on stabilised data at 10 photons) and the papers' loss, where the transformation was
    not measured to help. A known noise level (``cfg.noise_std``) says the noise is
    Gaussian: "auto" is then "gaussian" without the check, and a Poisson-Gaussian model
    (or ``gain``, ``read_noise``) with it is an error."""
    if not isinstance(noise_model, str) or noise_model not in NOISE_MODELS:
        raise ValueError(f"noise_model: expected one of {', '.join(map(repr, NOISE_MODELS))}, "
                         f"got {noise_model!r}")
    if cfg.noise_std > 0 and (noise_model == "poisson-gaussian" or gain is not None
                              or read_noise is not None):
        raise ValueError(
            f"noise_std: a known std of Gaussian noise (given {cfg.noise_std:g}); for "
            f"photon counts give gain and read_noise with noise_model='poisson-gaussian' "
            f"instead, not both (got noise_model={noise_model!r}, gain={gain!r}, "
            f"read_noise={read_noise!r})")
    if noise_model != "auto":
        return noise_model, None
    if gain is not None or read_noise is not None:
        return "poisson-gaussian", None
    if cfg.noise_std > 0:  # the caller says the noise is Gaussian, with this std
        return "gaussian", None
    if (cfg.method != "dip" or cfg.loss != "r2r" or cfg.sure_max_trend <= 0
            or prep.known is not None):
        return "gaussian", None
    trend = arrays.noise_trend(prep.data)
    if not trend > cfg.sure_max_trend:
        return "gaussian", None
    return "poisson-gaussian", (
        f"noise: its variance grows with the signal ({trend:.2f}x from the darker to the "
        f"brighter half, above sure_max_trend={cfg.sure_max_trend:g}), so the image is "
        f"variance-stabilised for the fit (noise_model='auto' chose 'poisson-gaussian'; "
        f"noise_model='gaussian' keeps the raw values, on which the same check gives the "
        f"papers' loss; with sure_max_trend=0 as well, R2R runs on them: use this for "
        f"Gaussian noise misread as growing, e.g. on strong texture or clipped values)")


def choose_noise_model_for_frames(frames: Any, cfg: DIPConfig, *,
                                  channel_axis: int | None = None, masks: Any = None,
                                  noise_model: Any = "auto", gain: Any = None,
                                  read_noise: Any = None, most: int = 8) -> Any:
    """One noise model for the frames (or slices) of a stack that are restored one by one,
    so that they are restored alike: where ``noise_model`` is "auto" and there are
    several frames, :func:`choose_noise_model` on up to ``most`` of them, evenly spaced,
    and "poisson-gaussian" where at least half of those choose it (frames that cannot be
    restored, e.g. with NaN, do not vote: their own runs report them). ``masks``: one per
    frame or None. Otherwise ``noise_model`` as it is (one frame: its run decides, and
    notes why)."""
    if noise_model != "auto" or len(frames) < 2:
        return noise_model
    picks = np.unique(np.linspace(0, len(frames) - 1, min(most, len(frames))).round()
                      ).astype(int)
    votes = counted = 0
    for k in picks:  # frames and masks may be lazy: only these are read
        try:
            prep = arrays.prepare(frames[k], mask=None if masks is None else masks[k],
                                  channel_axis=channel_axis)
        except (TypeError, ValueError):  # a frame that cannot be restored fails in its run
            continue
        model, _ = choose_noise_model(prep, cfg, noise_model, gain, read_noise)
        votes += model == "poisson-gaussian"
        counted += 1
    if not counted:
        return noise_model
    return "poisson-gaussian" if 2 * votes >= counted else "gaussian"


def choose_r2r_alpha_for_frames(frames: Any, cfg: DIPConfig, *,
                                channel_axis: int | None = None, noise_model: Any = "auto",
                                gain: Any = None, read_noise: Any = None,
                                most: int = 8) -> float | None:
    """One recorruption strength for the frames (or slices) of a stack that are restored
    one by one with R2R, so that they are smoothed alike: where ``cfg`` leaves it to the
    run (``r2r_alpha=None``) and there are several frames, the strength for the median of
    the signal-to-noise ratios of up to ``most`` frames, evenly spaced, each read on the
    data its run would see (variance-stabilised where ``noise_model``, the frames'
    shared choice, says so; see :func:`engine.r2r_strength`). Otherwise
    ``cfg.r2r_alpha`` as it is (None: each run reads its own). Frames that cannot be
    restored, or whose runs would not use R2R, are not read."""
    if (cfg.method != "dip" or cfg.loss != "r2r" or cfg.r2r_alpha is not None
            or len(frames) < 2):
        return cfg.r2r_alpha
    picks = np.unique(np.linspace(0, len(frames) - 1, min(most, len(frames))).round()
                      ).astype(int)
    ratios = []
    for k in picks:  # frames may be lazy: only these are read
        try:
            prep = arrays.prepare(frames[k], channel_axis=channel_axis)
            model, _ = choose_noise_model(prep, cfg, noise_model, gain, read_noise)
            if model != "gaussian" or gain is not None or read_noise is not None:
                prep = _stabilise(prep, model, gain, read_noise)[1]  # R2R stays R2R there
        except (TypeError, ValueError):  # a frame that cannot be restored fails in its run
            continue
        var, _ = engine.image_noise_variance(prep.data, cfg,
                                             engine.given_noise_variance(prep, cfg))
        if engine.fallback_reason(prep, cfg, var) is None:  # else: the papers' loss
            ratios.append(engine.r2r_strength(prep.data, var)[1])
    if not ratios:
        return None
    return recorruption_strength(float(np.median(ratios)))


def noise_model_for_frames(frames: Any, *, masks: Any = None, channel_axis: int | None = None,
                           **kwargs: Any) -> Any:
    """:func:`choose_noise_model_for_frames` for :func:`iterate`'s keyword arguments (the
    configuration's, ``noise_model``, ``gain`` and ``read_noise``; the others are left
    out), as the widget gives them for every frame of a stack."""
    cfg, own = split_iterate_kwargs(kwargs, masked=masks is not None)
    return choose_noise_model_for_frames(
        frames, cfg, channel_axis=channel_axis, masks=masks,
        noise_model=own.get("noise_model", "auto"), gain=own.get("gain"),
        read_noise=own.get("read_noise"))


def r2r_alpha_for_frames(frames: Any, *, channel_axis: int | None = None,
                         **kwargs: Any) -> float | None:
    """:func:`choose_r2r_alpha_for_frames` for :func:`iterate`'s keyword arguments (give
    the frames' shared ``noise_model``), as the widget gives them for every frame."""
    cfg, own = split_iterate_kwargs(kwargs)
    return choose_r2r_alpha_for_frames(
        frames, cfg, channel_axis=channel_axis, noise_model=own.get("noise_model", "auto"),
        gain=own.get("gain"), read_noise=own.get("read_noise"))


#: the arguments of :func:`iterate` that choose its configuration
CONFIG_ARGS = ("method", "preset", "steps", "auto_stop", "config")


def split_iterate_kwargs(kwargs: dict[str, Any], masked: bool = False
                         ) -> tuple[DIPConfig, dict[str, Any]]:
    """The configuration that :func:`iterate` would resolve from its keyword arguments
    ``kwargs`` (``masked``: whether a mask is given), and the arguments of its own among
    them other than those that choose the configuration (:data:`CONFIG_ARGS`) and
    ``image``; the rest of ``kwargs`` are configuration fields."""
    import inspect

    params = set(inspect.signature(iterate).parameters) - {"image", "options"}
    own = {k: v for k, v in kwargs.items() if k in params and k not in CONFIG_ARGS}
    options = {k: v for k, v in kwargs.items() if k not in params}
    cfg = resolve_config(method=kwargs.get("method", "dip"),
                         preset=kwargs.get("preset", "balanced"), steps=kwargs.get("steps"),
                         auto_stop=kwargs.get("auto_stop"), config=kwargs.get("config"),
                         options=options, masked=masked)
    return cfg, own


def _stabilise(prep: arrays.Prepared, model: Any, gain: Any, read_noise: Any
               ) -> tuple[noise.NoiseState, arrays.Prepared]:
    """The noise model's transformation of the (validated) image, ready for the engine."""
    if model == "gaussian":  # the model was checked by choose_noise_model
        raise ValueError("gain, read_noise: only used with noise_model='poisson-gaussian' or "
                         "'auto'; got "
                         f"gain={gain!r}, read_noise={read_noise!r} with noise_model='gaussian'")
    data = prep.original
    raw = np.moveaxis(data, prep.channel_axis, 0) if prep.channel_axis is not None else data
    raw = raw.astype(np.float64)
    if (gain is None or read_noise is None) and prep.known is not None:
        raise ValueError(
            "gain, read_noise: with a mask, give both (the estimate from the image cannot "
            f"leave out the missing pixels); got gain={gain!r}, read_noise={read_noise!r}")
    try:  # elementwise, so planes and channels are pooled (as planes) for the estimate
        # an unknown offset: the image's dark level (it sets the inverse's floor)
        planes, state = noise.stabilise(raw.reshape(-1, *raw.shape[-2:]), model, gain=gain,
                                        sigma=read_noise,
                                        offset=None if read_noise is None else 0.0)
        transformed = planes.reshape(raw.shape)
    except (TypeError, ValueError) as exc:
        text = str(exc).replace("sigma:", "read_noise:").replace("gain and sigma",
                                                                  "gain and read_noise")
        raise type(exc)(text) from None
    if prep.channel_axis is not None:
        transformed = np.moveaxis(transformed, 0, prep.channel_axis)
    mask = None if prep.known is None else (prep.known == 0)
    if mask is not None and prep.channel_axis is not None and mask.shape[0] > 1:
        mask = np.moveaxis(mask, 0, prep.channel_axis)
    elif mask is not None:
        mask = mask[0]
    stable = arrays.prepare(transformed, mask=mask, channel_axis=prep.channel_axis)
    return state, stable


def _unstabilised(run: Iterator[Snapshot], state: noise.NoiseState, stable: arrays.Prepared,
                  prep: arrays.Prepared, *, output_dtype: Any, keep_known: bool,
                  notes: list[str] | tuple[str, ...] = ()) -> Iterator[Snapshot]:
    """Snapshots mapped from the stabilised domain back to the image's units and dtype;
    ``notes`` lead the run's notes."""
    dtype = prep.dtype if output_dtype is None else np.dtype(output_dtype)
    with contextlib.closing(run):
        for snap in run:
            if snap.variance is not None:
                snap.variance = noise.unstabilise_variance(
                    snap.image, snap.variance, state).astype(np.float32)
            image = noise.unstabilise(snap.image, state)
            image = arrays.cast_to(image, dtype)
            if snap.done and keep_known:
                image = arrays.keep_known_pixels(image, prep, output_dtype=output_dtype)
            snap.image = image
            snap.psnr = None if prep.reference is None else engine.psnr(image, prep.reference)
            snap.info.noise = state.to_dict()
            snap.info.noise_std = None  # the fit's was in the stabilised units
            for note in reversed(notes):
                if note not in snap.info.notes:
                    snap.info.notes.insert(0, note)
            yield snap


def restore(image: Any, **kwargs: Any) -> Result:
    """Restore an image and return the final :class:`Result` (blocking).

    Takes the same arguments as :func:`iterate`, e.g.
    ``restore(noisy, preset="fast", seed=0).image``.
    """
    snap = None
    losses = []
    for snap in iterate(image, **kwargs):
        losses.append(snap.losses)
    assert snap is not None and snap.done
    return Result.from_snapshot(snap, np.concatenate(losses))


def resolve_config(
    *,
    method: str = "dip",
    preset: str = "balanced",
    steps: int | None = None,
    auto_stop: bool | None = None,
    config: DIPConfig | dict | None = None,
    options: dict[str, Any] | None = None,
    masked: bool = False,
) -> DIPConfig:
    """The configuration a run will use, from the same arguments as :func:`iterate`
    (``masked``: whether a mask is given; see :func:`~napari_dip.core.config.make_config`)."""
    options = dict(options or {})
    if config is not None:
        if isinstance(config, dict):
            cfg = config_from_dict(config)
        elif isinstance(config, DIPConfig):
            cfg = config
        else:
            raise TypeError(f"config: expected a DIPConfig, SGLDConfig or dict, got "
                            f"{type(config).__name__}")
        if steps is not None:
            options["steps"] = steps
        if auto_stop is not None:
            options["auto_stop"] = auto_stop
        cfg = cfg.replace(**options) if options else cfg
    else:
        cfg = make_config(method, preset, steps=steps, auto_stop=auto_stop, masked=masked,
                          **options)
    if isinstance(cfg, SGLDConfig) and cfg.auto_stop:
        raise ValueError(
            "auto_stop: the stop rule is for method 'dip'; SGLD's posterior "
            "mean does not overfit, so it runs its full schedule. Got auto_stop=True with "
            "method 'sgld'"
        )
    return cfg
