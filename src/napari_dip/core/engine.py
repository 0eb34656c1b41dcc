"""The optimisation loop shared by DIP and SGLD-DIP.

One generator runs both algorithms: DIP (Ulyanov et al., 2018) with input jitter, Adam,
an exponential moving average of the output, backtracking and a stop rule (the
discrepancy principle, or the windowed-variance rule); SGLD-DIP (Cheng et al., 2019)
adds Langevin noise to the convolution weights after every step and accumulates the
posterior mean and variance of the thinned samples after burn-in. Between snapshots
nothing waits for the host: every decision that depends on data (backtracking, the stop
rule's step) is taken on the device with ``torch.where``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch

from . import arrays
from .config import (IMAGE_LOSSES, DIPConfig, SGLDConfig, check_loss, net_config,
                     recorruption_strength, refine_share, sure_fallback, sure_fallback_note)
from .device import device_name, is_out_of_memory, make_generator, release
from .nets import Members, SkipNet, axis_levels, make_input
from .optim import Backtracker, FlatAdam
from .stats import RunningMoments
from .fill import around, biharmonic, gap_depth, push_pull
from .refine import hard_threshold, wiener_refine
from .stopping import DRIFT_GATE, DivergenceWatch, Discrepancy, HoldoutWatch, WindowedVariance


# torch.compile backend per device type; other devices run the net as it is. (On two CPU
# cores the generated code ran at 0.89-1.05x the speed of the plain net, fast preset at
# 256x256 grey, after 111 s of compiling: benchmarks/bench_compile_cpu.py.) Tests map
# "cpu" to "aot_eager" to check the compiled path.
COMPILE_BACKENDS: dict[str, str] = {"cuda": "inductor"}
# Device types on which the members of an ensemble (members > 1) run as nets of their own,
# one after the other (nets.Members), rather than side by side in grouped convolutions.
# On two CPU cores a step of the balanced preset's four nets was 1.46x faster that way at
# 256x256 grey, 1.70x in colour, 1.21x for the hold-out fit (benchmarks/bench_members_cpu.py).
SEPARATE_MEMBERS: tuple[str, ...] = ("cpu",)
# Below this estimated noise variance (a std of 0.1 % of the data range) an image counts as
# clean, and the discrepancy stop rule gives way to the windowed-variance rule.
MIN_NOISE_VARIANCE = 1e-6
# An SGLD run calibrates its std in the gaps only with at least this many held-out pixels.
MIN_HELD_OUT = 32
# Length of the random perturbation of the input with which loss="sure" estimates the
# divergence of the net (data range 1). For a given net the estimate hardly depends on it
# (2 % between 1e-3 and 6e-2), but during the fit a longer one lets the net learn to damp
# perturbations of that size and so game the estimate: on a 64x64 camera at sigma 25 the
# fast preset ended 0.49 dB below its best step with 0.01 and 1.79 dB with 0.05, but
# 0.16 dB with 0.003 and 0.05 dB with 0.001, which climbs slower (best 27.37 against
# 27.52 dB; benchmarks/bench_sure_step.py). On six 256x256 images 0.003 and 0.01 gave the
# same mean (benchmarks/RESULTS.md).
SURE_STEP = 0.003
# The gaps' blend (gap_blend="biharmonic") fits its weight on single hidden known pixels,
# where the net is at its best. Where the gaps are deeper than that (their pixels' mean
# chessboard distance to a known pixel rounds to 2 or more, as under strokes and painted
# holes; random pixel loss stays near 1), the known pixels in a band of that width around
# the gaps are hidden too, and the net's weight is the smaller of the two fits. Eight
# 256x256 grey images under the text mask of bench_inpaint.py (fast preset, two CPU cores):
# +0.22 dB on average, clock +1.30 and moon +0.35, the worst camera -0.06
# (benchmarks/bench_gap_weight.py). The band is at most RING_MAX pixels wide and is left
# out where it would hide more than RING_MAX_SHARE of the known pixels.
RING_MAX = 8
RING_MAX_SHARE = 0.5


def held_out(cfg: SGLDConfig, prep: arrays.Prepared, seed: int) -> np.ndarray | None:
    """The known pixels an SGLD run with a mask holds out of its fit to calibrate the
    posterior std in the gaps (``cfg.calibration_share`` of them, drawn with ``seed``;
    shape ``(1, *spatial)``, bool), or None: no mask, a share of 0, or too few known
    pixels (under MIN_HELD_OUT held out)."""
    if prep.known is None or cfg.calibration_share <= 0:
        return None
    return _draw_known(prep, cfg.calibration_share, seed, 0xCA1)


def _draw_known(prep: arrays.Prepared, share: float, seed: int, stream: int
                ) -> np.ndarray | None:
    """``share`` of the known pixels of ``prep`` (all pixels without a mask), drawn with
    ``seed`` from a stream of their own (``stream``: a mask drawn with
    ``default_rng(seed)`` must not be the same draw); bool, the shape of ``prep.known``
    or ``(1, *spatial)``; None under MIN_HELD_OUT pixels."""
    known = (prep.known > 0) if prep.known is not None else np.ones(
        (1, *prep.data.shape[1:]), bool)
    drawn = known & (np.random.default_rng([seed, stream]).random(known.shape) < share)
    return drawn if drawn.sum() >= MIN_HELD_OUT else None


def validation_pixels(cfg: DIPConfig, prep: arrays.Prepared, seed: int) -> np.ndarray | None:
    """The known pixels a DIP run with ``stop_rule="holdout"`` keeps out of its fit to
    measure its error (``cfg.stop_holdout_share`` of them, see :func:`_draw_known`), or
    None where the rule does not apply (not the papers' loss, no automatic stop) or too
    few pixels would be held out."""
    if (isinstance(cfg, SGLDConfig) or cfg.stop_rule != "holdout" or not cfg.auto_stop
            or cfg.loss != "mse"):
        return None
    return _draw_known(prep, cfg.stop_holdout_share, seed, 0x5707)


@dataclass
class RunInfo:
    """What a run was started with (for provenance)."""

    method: str
    config: DIPConfig
    seed: int
    device: str
    input_shape: tuple[int, ...]
    input_dtype: str
    channel_axis: int | None
    padded_shape: tuple[int, ...]
    parameters: int
    notes: list[str] = field(default_factory=list)
    tiles: dict[str, Any] | None = None
    noise: dict[str, Any] | None = None
    #: the noise std the run used, in the image's units (``noise_std`` where given, else
    #: read from the image); None where it used none, where the tiles of an image read
    #: their own, and on variance-stabilised data
    noise_std: float | None = None


@dataclass
class Snapshot:
    """The state of a run at one reporting step.

    Attributes
    ----------
    step : int
        Steps done so far.
    loss : float
        Data-fit loss (mean squared error on known pixels, normalised units) of the last
        step; with ``loss="sure"``, SURE's estimate of the mean squared error to the clean
        image (one noisy Monte-Carlo draw per step).
    image : numpy.ndarray
        Current estimate in the input's shape, value range and dtype: the moving average
        (DIP), or the posterior mean once SGLD has samples. In the final snapshot: the
        result (for DIP with the stop rule, the estimate at the detected step).
    variance : numpy.ndarray or None
        SGLD posterior variance per pixel (input units squared, float32) once samples exist.
    psnr : float or None
        PSNR of ``image`` against the reference, when one was given.
    stop_reason : str or None
        Why the run ended (final snapshot only).
    done : bool
        True for the final snapshot. Where a second stage runs (``refine``), the snapshot
        just before the final one holds the net's estimate that goes into it.
    elapsed : float
        Seconds since the engine started.
    max_steps : int
        The configured maximum number of steps.
    best_step : int or None
        DIP with the stop rule: the step whose estimate is (or would be) returned.
    samples : int
        SGLD: posterior samples kept so far.
    losses : numpy.ndarray
        Per-step losses since the previous snapshot.
    info : RunInfo
        Configuration, seed and device of the run.
    tile, tiles : int
        For an image restored in tiles: the (0-based) tile in progress and their number;
        ``step`` and ``max_steps`` then count the steps of all tiles.
    divergence, drift : float or None
        ``loss="r2r"``: what the run's stop watches, measured at this snapshot: the net's
        divergence at the image per value (one Monte-Carlo probe), and (with
        ``r2r_draws``) the mean squared difference between the net's output for the
        image and the mean of its outputs for the recorrupted copies; None otherwise.
    """

    step: int
    loss: float
    image: np.ndarray
    variance: np.ndarray | None
    psnr: float | None
    stop_reason: str | None
    done: bool
    elapsed: float
    max_steps: int
    best_step: int | None
    samples: int
    losses: np.ndarray
    info: RunInfo = field(repr=False)
    tile: int = 0
    tiles: int = 1
    divergence: float | None = None
    drift: float | None = None


def psnr(image: np.ndarray, reference: np.ndarray) -> float:
    """PSNR in dB with scikit-image's convention for the data range.

    The range is that of the reference's dtype for integers, else the reference's
    max - min (1 if constant).
    """
    ref = reference.astype(np.float64)
    if reference.dtype.kind in "iu":
        info = np.iinfo(reference.dtype)
        data_range = float(info.max) - float(info.min)
    else:
        data_range = float(ref.max() - ref.min()) or 1.0
    mse = float(np.mean((image.astype(np.float64) - ref) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(data_range**2 / mse)


def given_noise_variance(prep: arrays.Prepared, cfg: DIPConfig) -> float | None:
    """The noise variance in ``prep``'s units where it is known: ``prep.noise_std`` (set
    for the tiles of an image), else ``cfg.noise_std`` (in the image's units) over the
    image's value range; None where the run reads it from the image."""
    if prep.noise_std > 0:
        return float(prep.noise_std) ** 2
    if cfg.noise_std > 0:
        return (float(cfg.noise_std) / (prep.hi - prep.lo)) ** 2
    return None


def noise_source(given: float | None) -> str:
    """Where a run's noise level comes from, for its notes."""
    return "given: noise_std" if given is not None else "estimated from the image"


def no_noise(given: float | None) -> str:
    """Why a run finds no noise to remove (a variance at most ``MIN_NOISE_VARIANCE``), for
    its notes."""
    return ("the given noise_std is below 0.1 % of the data range" if given is not None
            else "no noise measurable in the image")


def image_noise_variance(data: np.ndarray, cfg: DIPConfig, given: float | None = None
                         ) -> tuple[float, tuple[bool, bool]]:
    """The noise variance that a SURE or R2R run reads from an engine-layout image whose
    every pixel is known (``given``, where known: :func:`given_noise_variance`), and
    whether its values pile up at its low and high ends: with ``sure_clipping="impute"``,
    read away from clipped ends (the plain estimate reads low on clipped data)."""
    var = arrays.noise_variance(data) if given is None else float(given)
    ends = (False, False)
    if cfg.sure_clipping == "impute":
        ends = arrays.clipped_ends(data)
        if any(ends) and given is None:
            var = arrays.clipped_noise_variance(data)
    return var, ends


def fallback_reason(prep: arrays.Prepared, cfg: DIPConfig, noise_var: float) -> str | None:
    """Why a SURE or R2R run of ``cfg`` on ``prep``, whose noise variance reads
    ``noise_var`` (:func:`image_noise_variance`), runs the papers' loss instead
    (``sure_max_noise``, ``sure_max_trend``); None where it does not. A given noise level
    (:func:`given_noise_variance`) says the noise is Gaussian: no ``sure_max_trend``
    check."""
    if 0 < cfg.sure_max_noise < np.sqrt(noise_var):
        return (f"noise std {np.sqrt(noise_var):.3g} of the data range is above "
                f"sure_max_noise={cfg.sure_max_noise:g}, where SURE is unreliable")
    if cfg.sure_max_trend > 0 and given_noise_variance(prep, cfg) is None:
        trend = arrays.noise_trend(prep.data, prep.known)
        if trend > cfg.sure_max_trend:
            return (f"the noise variance grows with the signal, {trend:.2f}x from the darker "
                    f"to the brighter half, above sure_max_trend={cfg.sure_max_trend:g}: SURE "
                    f"assumes one variance; for photon counts see "
                    f"noise_model='poisson-gaussian'")
    return None


def r2r_strength(data: np.ndarray, noise_var: float) -> tuple[float, float]:
    """R2R's recorruption strength for ``r2r_alpha=None`` and the ratio it comes from: the
    image's variance as a multiple of ``noise_var`` (see ``recorruption_strength``)."""
    ratio = arrays.variance_ratio(data, noise_var)
    return recorruption_strength(ratio), ratio


def run(
    prep: arrays.Prepared,
    cfg: DIPConfig,
    *,
    device: torch.device,
    seed: int,
    output_dtype: Any = None,
    keep_known: bool = False,
    finish: Callable[[], bool] | None = None,
    deadline: float | None = None,
) -> Iterator[Snapshot]:
    """Run DIP or SGLD-DIP on a prepared image and yield snapshots (see :class:`Snapshot`).

    The fit ends early, and the run finishes as at its last step (stop rule's estimate,
    gaps' blend, second stage), at the first snapshot where ``finish()`` is true or
    ``time.perf_counter()`` has passed ``deadline`` (by default ``cfg.time_limit``
    seconds after the start, where that is set)."""
    t0 = time.perf_counter()
    whole_limit = deadline is None and cfg.time_limit > 0  # else a share of it, or none
    if whole_limit:
        deadline = t0 + cfg.time_limit
    nd = prep.ndim_spatial
    spatial = prep.data.shape[1:]
    check_loss(cfg, masked=prep.known is not None)
    own = cfg.loss in IMAGE_LOSSES  # SURE or R2R: the net denoises the image itself
    sure = cfg.loss == "sure"
    r2r = cfg.loss == "r2r"
    hold = cfg.loss == "holdout"  # the net predicts known pixels hidden from it
    sure_var = None  # the noise variance of SURE and R2R, also the stop rule's
    clip_ends = (False, False)
    given = given_noise_variance(prep, cfg)  # None: read from the image where needed
    source = noise_source(given)

    def level(clipped: bool = False) -> float:
        """The noise variance: the given one, else read from the image's known pixels
        (away from its clipped ends with ``clipped``)."""
        if given is not None:
            return given
        if clipped:
            return arrays.clipped_noise_variance(prep.data, prep.known)
        return arrays.noise_variance(prep.data, prep.known)

    if own:
        sure_var, clip_ends = image_noise_variance(prep.data, cfg, given)
    reason = fallback_reason(prep, cfg, sure_var) if own else None
    fallback_note = None if reason is None else sure_fallback_note(reason)
    if fallback_note is not None:
        cfg = sure_fallback(cfg)
        own = sure = r2r = False
    levels = axis_levels(spatial, cfg.scales)
    pads = arrays.pad_amounts(spatial, levels)
    padded = arrays.pad_array(prep.data, pads, cfg.padding)
    # the loss counts known pixels only: not the holes of a mask, not the padding
    known_np = prep.known if prep.known is not None else np.ones((1, *spatial), np.float32)
    sgld = isinstance(cfg, SGLDConfig)
    held = held_out(cfg, prep, seed) if sgld else None  # calibrates the std in the gaps
    held_noise = 0.0  # the noise variance in the held-out pixels' error
    if held is not None:
        known_np = known_np * ~held
        held_noise = level()
        held_noise = held_noise if held_noise > MIN_NOISE_VARIANCE else 0.0
    val = validation_pixels(cfg, prep, seed)  # the hold-out stop's pixels
    if val is not None:
        known_np = known_np * ~val
    weight_np = arrays.pad_array(known_np, pads, "zeros")
    weight_np = None if weight_np.all() else weight_np
    crop = (slice(None),) + arrays.crop_slices(spatial, pads)
    channels = padded.shape[0]
    net_cfg = net_config(cfg, channels)

    with torch.random.fork_rng(devices=[]):  # seeded init without touching global state
        torch.manual_seed(seed)
        net = SkipNet(net_cfg, channels, nd=nd, levels=levels)
    if net_cfg.members > 1 and device.type in SEPARATE_MEMBERS:
        net = Members(net)
    net = net.to(device).train()
    layout = torch.contiguous_format
    if cfg.channels_last:
        layout = torch.channels_last if nd == 2 else torch.channels_last_3d
        net = net.to(memory_format=layout)
    members = cfg.members
    forward = net
    compiled = None
    info = RunInfo(
        method=cfg.method, config=cfg, seed=seed, device=device_name(device),
        input_shape=tuple(prep.shape), input_dtype=str(prep.dtype),
        channel_axis=prep.channel_axis, padded_shape=tuple(padded.shape[1:]),
        parameters=sum(p.numel() for p in net.parameters()),
    )

    def used(var: float) -> None:  # the noise level this run works with, for its info
        if given is not None and prep.noise_std == 0:  # the option, exactly as given
            info.noise_std = float(cfg.noise_std)
        else:
            info.noise_std = float(np.sqrt(max(var, 0.0))) * (prep.hi - prep.lo)

    if own:
        used(sure_var)
    elif given is not None:
        used(given)
    elif held_noise > 0:  # SGLD's calibration
        used(held_noise)
    if cfg.compile:
        backend = COMPILE_BACKENDS.get(device.type)
        if backend is None:
            info.notes.append(f"compile: off (not used on {device.type})")
        else:
            compiled = forward = torch.compile(net, backend=backend, fullgraph=True,
                                               dynamic=False)
            compile_note = len(info.notes)
            info.notes.append(f"compile: {backend}")
    cpu_gen = torch.Generator().manual_seed(seed)
    if own and any(clip_ends):  # SURE's data: as if never clipped (see sure_clipping)
        filled = arrays.impute_clipped(prep.data, float(np.sqrt(sure_var)), low=clip_ends[0],
                                       high=clip_ends[1], seed=seed + 7)
        padded = arrays.pad_array(filled, pads, cfg.padding)
    target = torch.from_numpy(np.ascontiguousarray(padded))[None].to(device)
    if own:  # every member gets the image
        z = target.repeat(1, cfg.members, *([1] * nd))
    elif hold:  # the input is made at every step from the pixels left visible
        z = target
    else:
        z = make_input(cfg, padded.shape[1:], generator=cpu_gen, device=device)
    z = z.contiguous(memory_format=layout)
    gen = make_generator(device, seed + 1)
    weight = None if weight_np is None else torch.from_numpy(weight_np)[None].to(device)
    denom = float(np.broadcast_to(weight_np, padded.shape).sum()) if weight_np is not None else (
        float(target.numel()))
    if hold:
        # every known pixel (of the padded image) may be hidden; the padding never
        known_t = (weight if weight is not None else
                   torch.ones((1, 1, *padded.shape[1:]), device=device))
        hold_u = torch.empty_like(known_t)
        # the groups of the estimate: each known pixel is hidden in one of hold_groups passes
        hold_groups = max(2, round(1.0 / cfg.holdout_share))
        group_of = torch.randint(hold_groups, known_t.shape, generator=cpu_gen,
                                 dtype=torch.uint8).to(device)
        # the noise variance of the known pixels, for the blend of data and prediction there
        hold_var = float(level())
        used(hold_var)
    # deep gaps (gap_blend): the band of known pixels around them, predicted with the band
    # hidden at every check, so that the blend's weight is fitted there too
    band = band_shown = None
    band_why = ""
    if hold and cfg.gap_blend != "off" and prep.known is not None:
        seen_np = torch.from_numpy(np.ascontiguousarray(prep.known)).to(device) > 0
        band, band_why = deep_gap_band(seen_np.expand(channels, *seen_np.shape[1:]))
        if band is not None:
            band_shown = torch.zeros_like(known_t)
            band_shown[0][crop] = (seen_np & ~band[:seen_np.shape[0]]).float()

    opt = FlatAdam(net, lr=cfg.lr, weight_decay=cfg.weight_decay,
                   schedule=(cfg.steps, cfg.lr_final))
    use_bf16 = cfg.precision == "bfloat16" and device.type == "cuda"
    moments = RunningMoments() if sgld else None
    stopper = None
    discrepancy = None
    rule = cfg.stop_rule if cfg.auto_stop and not sgld and not own and not hold else None
    watch = None
    if fallback_note is not None:
        info.notes.append(fallback_note)
    if hold:
        watch = HoldoutWatch(stop=cfg.auto_stop, patience=cfg.stop_patience)
        info.notes.append(
            f"loss: hold-out: at every step the net sees the image with "
            f"{cfg.holdout_share:.0%} of its known pixels hidden, filled in (push-pull), "
            f"and is fitted to predict them; the estimate takes the gaps from the mean of "
            f"{hold_groups} passes that each hide a group of the known pixels and every "
            f"known pixel from the pass that hides it, blended with its data by the noise "
            f"level; the run keeps the estimate of the snapshot with the lowest error on "
            f"hidden pixels; " + (
                f"stops after {cfg.stop_patience} steps without a new low of the error on "
                f"hidden pixels" if cfg.auto_stop else
                f"runs its {cfg.steps} steps (auto_stop off)"))
    if sure:
        info.notes.append(
            f"loss: SURE, noise std {np.sqrt(sure_var):.3g} of the data range ({source}); "
            f"no stop rule needed: it runs its {cfg.steps} steps")
    alpha = 0.0  # R2R's recorruption strength
    if r2r:
        watch = DivergenceWatch(stop=cfg.auto_stop, draws=cfg.r2r_draws,
                                noise_var=float(sure_var))
        what = (f"the mean of its outputs for {cfg.r2r_draws} recorrupted copies of the image"
                if cfg.r2r_draws else "the net's output for the image")
        if cfg.r2r_alpha is None:
            alpha, ratio = r2r_strength(prep.data, float(sure_var))
            chosen = (f"alpha {alpha:.2g}, set by the image's variance, {ratio:.2f} x its "
                      f"noise variance")
        else:
            alpha = float(cfg.r2r_alpha)
            chosen = f"alpha {alpha:g}"
        info.notes.append(
            f"loss: R2R (recorrupted-to-recorrupted, {chosen}), noise std "
            f"{np.sqrt(sure_var):.3g} of the data range ({source}); the "
            f"estimate is {what}, averaged over the last {watch.keep} snapshots; " + (
                (f"stops where the net's outputs for the image and for the copies drift "
                 f"apart at {watch.checks} check{'s' if watch.checks > 1 else ''} in a row "
                 f"({watch.drift_ratio:g} x their smallest mean squared difference "
                 f"since the fit's estimate of its error fell below {DRIFT_GATE:g} x the noise "
                 f"variance)"
                 if cfg.r2r_draws else
                 "stops where the net's divergence at the image turns negative")
                if cfg.auto_stop else f"runs its {cfg.steps} steps (auto_stop off)"))
    if own:
        if any(clip_ends):
            share, ends = arrays.clip_summary(prep.data, clip_ends)
            info.notes.append(
                f"loss: {cfg.loss.upper()}: {share * 100:.1f} % of the values sit at the "
                f"data's {ends} (clipped); they are replaced by noise draws beyond the clip "
                f"around a local estimate"
                + ("" if given is not None else
                   ", and the noise std read away from the clipped ends")
                + " (sure_clipping='impute')")
        if sure_var <= MIN_NOISE_VARIANCE:
            info.notes.append(f"loss: {no_noise(given)}, so {cfg.loss.upper()} "
                              f"is the plain fit of the image and returns it about unchanged")
        if use_bf16 and sure:
            use_bf16 = False
            info.notes.append("precision: float32 (SURE's divergence term is a small "
                              "difference of two outputs, which bfloat16 would drown)")
    val_t = None
    val_den = 1.0
    if rule == "holdout":
        if val is None:
            rule = "variance"
            info.notes.append(
                "stop rule: windowed variance (the hold-out rule is for the papers' loss "
                "and needs at least 32 pixels to hold out)")
        else:
            val_t = torch.from_numpy(
                arrays.pad_array(val.astype(np.float32), pads, "zeros"))[None].to(device)
            val_den = float(val.sum()) * (channels if val.shape[0] == 1 else 1)
            watch = HoldoutWatch(stop=True, patience=cfg.stop_patience)
            info.notes.append(
                f"stop rule: hold-out: {int(val.sum())} known pixels "
                f"({cfg.stop_holdout_share:.0%}) are kept out of the fit; the run keeps the "
                f"estimate with the lowest error on them and stops {cfg.stop_patience} "
                f"steps after it")
    if rule == "discrepancy":
        if prep.known is not None:
            rule = "variance"
            info.notes.append("stop rule: windowed variance (the discrepancy rule is for "
                              "images without missing pixels)")
        else:
            sigma2 = sure_var if sure_var is not None else level()
            if sigma2 > MIN_NOISE_VARIANCE:
                used(sigma2)
                level = cfg.stop_discrepancy * sigma2
                discrepancy = Discrepancy(target[0], None if weight is None else weight[0],
                                          denom, level)
                info.notes.append(
                    f"stop rule: discrepancy: stops once the estimate is within "
                    f"{cfg.stop_discrepancy:g} x the noise variance (noise std "
                    f"{np.sqrt(sigma2):.3g} of the data range, {source})")
            else:
                rule = "variance"
                info.notes.append(f"stop rule: windowed variance ({no_noise(given)}, for "
                                  f"the discrepancy rule)")
    if rule == "variance":
        threshold = 0.0
        if cfg.stop_fit > 0:
            threshold = cfg.stop_fit * level()
            info.notes.append(f"stop rule: may start before step {cfg.stop_warmup} once the "
                              f"loss is below {threshold:.3g} ({cfg.stop_fit} x the noise "
                              f"variance, {source})")
        stopper = WindowedVariance(target[0], cfg.stop_window, cfg.stop_warmup, threshold)
    backtrack = Backtracker(opt, cfg.backtrack_db) if (
        cfg.backtrack_db > 0 and not sure and not hold) else None
    losses = torch.zeros(cfg.snapshot_every, device=device)
    noise = torch.empty_like(z)
    out_now = torch.zeros_like(target)
    # SGLD with several chains: every chain's output is a sample
    members_now = torch.zeros((members, *target.shape[1:]), device=device) if (
        sgld and members > 1) else None
    loss_now = torch.zeros((), device=device)
    ema = torch.zeros_like(target) if cfg.ema > 0 and not hold else None
    last_snapshot_step = 0
    step = 0
    stop_reason = None
    ended = None  # why the fit ended before its last step, other than by its stop rule

    # R2R: the net's input y + alpha s z and its target y - s z / alpha, z the step's noise;
    # the loss, less the target's extra variance, estimates the MSE to the clean image
    r2r_in = float(alpha * np.sqrt(sure_var)) if r2r else 0.0
    r2r_out = float(np.sqrt(sure_var) / alpha) if r2r else 0.0
    r2r_offset = float(sure_var * (1.0 + 1.0 / alpha ** 2)) if r2r else 0.0

    def hold_predict(visible: torch.Tensor, net_fn, mixed: bool = True) -> torch.Tensor:
        """The net's prediction, member by member ``(1, K * C, ...)``, from the pixels
        ``visible`` leaves it: the push-pull fill of the image from them plus the net's
        correction (its output less 0.5), the net given the fill, the visible pixels and
        where they are; ``mixed``: in bfloat16 where the run uses it."""
        shown = visible.expand_as(target)
        filled = push_pull(target, shown)
        x = torch.cat([filled, target * shown, shown], 1)
        if members > 1:
            x = x.repeat(1, members, *([1] * nd))
            filled = filled.repeat(1, members, *([1] * nd))
        x = x.contiguous(memory_format=layout)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16 and mixed,
                            cache_enabled=False):
            raw = net_fn(x)
        return filled + (raw.float() - 0.5)

    def core_step() -> None:
        """One optimisation step on static tensors only (so it can be graph-captured)."""
        if hold:
            if hold_u.device.type == gen.device.type:
                hold_u.uniform_(generator=gen)
            else:
                hold_u.copy_(torch.rand(hold_u.shape, generator=gen))
            hidden = (hold_u < cfg.holdout_share).float() * known_t
            out = hold_predict(known_t - hidden, forward)
            moved = None
        else:
            if cfg.jitter > 0 or own:
                if noise.device.type == gen.device.type:
                    noise.normal_(generator=gen)
                else:
                    noise.copy_(torch.randn(noise.shape, generator=gen))
            if r2r:
                z_in = z + noise * r2r_in
            else:
                z_in = z + noise * cfg.jitter if cfg.jitter > 0 and not sure else z
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_bf16,
                                cache_enabled=False):
                out = forward(z_in)
                moved = forward(z + noise * SURE_STEP).float() if sure else None
            out = out.float()
        probe = noise  # SURE's and R2R's draw, one per member
        if members > 1:  # (1, K*C, ...) -> (K, C, ...): one estimate per member
            out = out.unflatten(1, (members, -1))[0]
            if sure:
                moved = moved.unflatten(1, (members, -1))[0]
            if own:
                probe = noise.unflatten(1, (members, -1))[0]
        diff = out - target
        if r2r:  # the target's own noise: -s z / alpha
            diff = diff + probe * r2r_out
        # the sum of the members' mean squared errors (each member fits on its own)
        if hold:  # on the hidden pixels only
            loss = (diff.square() * hidden).sum() / hidden.expand_as(target).sum().clamp_min(1.0)
        elif weight is not None:
            loss = (diff.square() * weight).sum() / denom
        else:
            loss = diff.square().mean() * members
        if sure:
            # SURE = |y - f(y)|^2 / n - s^2 + 2 s^2 div f(y) / n, the divergence from a
            # finite difference along the random direction ``probe`` (Monte-Carlo SURE)
            change = probe * (moved - out)
            if weight is not None:
                change = change * weight
            div = change.sum() / (SURE_STEP * (denom if weight is not None else
                                                float(target.numel())))
            loss = loss + (2.0 * div - members) * sure_var
        loss_now.copy_(loss.detach() / members - r2r_offset)
        if backtrack is not None:
            backtrack.check(loss)
        opt.backward(loss)
        opt.step()
        if backtrack is not None:
            backtrack.undo_if_bad()
        if sgld and cfg.noise_scale > 0:
            opt.add_langevin_noise(cfg.noise_scale, gen)
        if members > 1:
            if members_now is not None:
                members_now.copy_(out.detach())
            out = out.mean(0, keepdim=True)
        out_now.copy_(out.detach())
        if ema is not None:
            t = opt.step_count  # steps done, counting this one
            decay = torch.clamp(t / (9.0 + t), max=cfg.ema) if cfg.ema_warmup else (
                torch.full_like(t, cfg.ema))
            decay = torch.where(t <= 1.0, torch.zeros_like(decay), decay)  # first: the output
            new = torch.lerp(ema, out_now, 1.0 - decay)
            ema.copy_(torch.where(backtrack.bad, ema, new) if backtrack is not None else new)

    graph = None
    capture = cfg.capture and device.type == "cuda" and gen.device.type == "cuda"
    side = torch.cuda.Stream() if capture else None
    info.notes.append("CUDA graph: " + ("pending" if capture else "off"))

    def to_user(t: torch.Tensor) -> np.ndarray:
        arr = t[0][crop].float().cpu().numpy()
        return arrays.restore_layout(np.clip(arr, 0.0, 1.0), prep, output_dtype=output_dtype)

    def snapshot(final: bool, image_t: torch.Tensor, reason: str | None) -> Snapshot:
        n = step - last_snapshot_step
        loss_hist = losses[:n].cpu().numpy().astype(np.float64) if n else np.zeros(0)
        var = None
        if sgld and moments.count > 0:
            var = moments.variance[0][crop].cpu().numpy()
            if held is not None:
                var = calibrated(var, final)
            var = arrays.variance_to_user(var, prep)
        image = to_user(image_t)
        if final and keep_known:
            image = arrays.keep_known_pixels(image, prep, output_dtype=output_dtype)
        best = None
        if discrepancy is not None:
            found = int(discrepancy.step.item())
            best = found + 1 if found >= 0 else None
        elif stopper is not None:
            best = int(stopper.best_step.item())
            best = best + 1 if best >= 0 else None
        elif hold or val_t is not None:
            best = watch.best_step
        elif watch is not None and watch.steps:
            best = watch.steps[-1]
        return Snapshot(
            step=step,
            loss=float(loss_hist[-1]) if len(loss_hist) else float("nan"),
            image=image, variance=var,
            psnr=None if prep.reference is None else psnr(image, prep.reference),
            stop_reason=reason, done=final, elapsed=time.perf_counter() - t0,
            max_steps=cfg.steps, best_step=best,
            samples=moments.count if sgld else 0, losses=loss_hist, info=info,
            divergence=watch.last if r2r else None,
            drift=watch.last_gap if r2r else None,
        )

    def calibrated(var: np.ndarray, final: bool) -> np.ndarray:
        """The posterior variance (normalised units) with every pixel the fit did not see
        (the gaps and the held-out pixels) multiplied by the ratio of the error on the
        held-out pixels (less the noise variance) to their posterior variance, where that
        ratio is above 1 (see ``SGLDConfig.calibration_share``)."""
        mean = np.clip(moments.mean[0][crop].float().cpu().numpy(), 0.0, 1.0)  # as shown
        on = np.broadcast_to(held, var.shape)
        error = float(np.mean((mean[on] - prep.data[on]) ** 2)) - held_noise
        spread = float(np.mean(var[on]))
        ratio = error / spread if spread > 0 else 1.0
        scale = max(ratio, 1.0)
        if final:
            info.notes.append(
                f"uncertainty: {int(held.sum())} known pixels ({cfg.calibration_share:.0%})"
                f" held out of the fit; their error"
                f"{' less the noise variance' if held_noise > 0 else ''} is "
                f"{max(ratio, 0.0):.3g} x their posterior variance, so the variance of "
                f"the pixels the fit did not see (the gaps and these) is "
                + (f"multiplied by {scale:.3g}" if ratio > 1 else "left as it is (never "
                   "narrowed)"))
        unseen = np.broadcast_to(known_np == 0, var.shape)  # the gaps and the held-out
        return np.where(unseen, var * scale, var)

    def refined(est: torch.Tensor) -> torch.Tensor:
        """The final estimate after the second stage (``refine="wiener"``, see
        core/refine.py): ``refine_blend`` of the net's estimate plus the rest of the noisy
        image filtered with Wiener gains from it. Where the data are clipped
        (``arrays.clipped_ends``; unless ``sure_clipping="off"``), the filter takes each
        clipped value as its expectation beyond the clip given the net's estimate
        (``arrays.expect_clipped``), and the noise level is read away from the clipped
        ends (``arrays.clipped_noise_variance``) where the loss has not read it: on the clipped
        values themselves it read dark backgrounds too bright and saturated areas too dark,
        and lost up to 7 dB against the net's estimate on a binary image
        (benchmarks/RESULTS.md, "Clipped data in the second stage")."""
        if own:  # read at the start, with the noise level (sure_var)
            ends = clip_ends
        elif cfg.sure_clipping == "impute":
            ends = arrays.clipped_ends(prep.data, prep.known)
        else:
            ends = (False, False)
        # the plain estimate reads low on clipped data
        var = sure_var if sure_var is not None else level(clipped=any(ends))
        if not var > MIN_NOISE_VARIANCE:
            info.notes.append(f"refine: off ({no_noise(given)}: nothing to filter)")
            return est
        started = time.perf_counter()
        used(var)
        std = float(np.sqrt(var))
        share = refine_share(std) if cfg.refine_blend is None else cfg.refine_blend
        pilot = est[0][crop].float()
        data_np, clip_note = prep.data, ""
        if any(ends):  # clipped values as they would average unclipped, given the pilot
            data_np = arrays.expect_clipped(prep.data, pilot.cpu().numpy(), std, low=ends[0],
                                            high=ends[1], known=prep.known)
            at_ends, words = arrays.clip_summary(prep.data, ends, prep.known)
            clip_note = (f"; the clipped values ({100 * at_ends:.3g} % of the data, at its "
                         f"{words}) taken as their expectation beyond the clip given the "
                         f"net's estimate")
        data = torch.from_numpy(np.ascontiguousarray(data_np)).to(device, torch.float32)
        known = None
        if prep.known is not None:  # the gaps keep the net's estimate, which fills them in
            known = torch.from_numpy(np.ascontiguousarray(prep.known)).to(device) > 0
            data = torch.where(known, data, pilot)
        hard = cfg.refine_hard_share
        with torch.no_grad():
            filtered = wiener_refine(data, pilot, std)
            if hard > 0:  # gains read from a thresholding estimate too, for the texture
                from_hard = wiener_refine(data, hard_threshold(data, std), std)
                filtered = torch.lerp(filtered, from_hard, hard)
            filtered = torch.lerp(filtered, pilot, share)
        if known is not None:
            filtered = torch.where(known, filtered, pilot)
        out = est.clone()
        out[0][crop] = filtered.to(out.dtype)
        info.notes.append(
            f"refine: Wiener filter on stacks of similar patches with gains from the net's "
            f"estimate (noise std {std:.3g} of the data range, {source}"
            f"{'; known pixels only, the gaps keep the estimate' if known is not None else ''}"
            f"{clip_note}"
            + (f"; {hard:.3g} of the filtered image with gains from a hard-thresholding "
               f"estimate instead" if hard > 0 else "")
            + f"); result {1 - share:.3g} x filtered + {share:.3g} x the net's estimate"
            f"{' (share set by the noise level)' if cfg.refine_blend is None else ''} "
            f"({time.perf_counter() - started:.1f} s)")
        return out

    def gap_blended(est: torch.Tensor) -> torch.Tensor:
        """The hold-out fit's estimate with its gaps blended with a biharmonic
        interpolation of the known pixels (``gap_blend="biharmonic"``): ``w`` x the net's
        estimate + (1 - w) x the interpolation, where ``w`` gives the least squared error
        on one group of known pixels that both predict without seeing them (the net from
        the checks' passes that hid them, the interpolation from the other known pixels).
        The noise of those pixels adds the same to either error, so it does not bias
        ``w``. Where the gaps are deep (``deep_gap_band``), ``w`` is also fitted on the
        band of known pixels around them, predicted by the net with the band hidden at
        the same checks as the estimate, and the smaller weight is kept. Known pixels
        keep the estimate as it is. The interpolation runs on the run's device
        (fill.biharmonic), for images and volumes, each channel from its own known
        pixels."""
        if prep.known is None:
            info.notes.append("gap blend: off (no missing pixels)")
            return est
        extra = watch.best_extra
        if extra is None:
            return est
        started = time.perf_counter()
        data = torch.from_numpy(np.ascontiguousarray(prep.data)).to(device, torch.float32)
        known = (torch.from_numpy(np.ascontiguousarray(prep.known)).to(device) > 0
                 ).expand_as(data)
        group = (group_of[0] == 0)[crop].expand_as(data) & known
        if not bool(group.any()):
            return est
        probe, _ = biharmonic(data[None], (known & ~group)[None])
        filled, solve = biharmonic(data[None], known[None])
        y, b, n = data[group], probe[0][group], extra[0][crop][group].float()
        w = _weight(y, n, b)
        errors = [float((p - y).square().mean()) for p in (n, b, w * n + (1 - w) * b)]
        held = f"{int(group.sum())} held-out known pixels"
        band_note = f"; {band_why}" if band_why else ""
        if band is not None:  # also fitted on the band around the gaps, hidden from both
            band_fill, _ = biharmonic(data[None], (known & ~band)[None])
            w_band = _weight(data[band], extra[1][crop][band].float(), band_fill[0][band])
            band_note += (f", hidden as well, fit w {w_band:.3g} where the single pixels "
                          f"fit {w:.3g}: the smaller is kept")
            w = min(w, w_band)
        out = est.clone()
        mine = out[0][crop]
        out[0][crop] = torch.where(known, mine, w * mine + (1 - w) * filled[0].to(mine.dtype))
        info.notes.append(
            f"gap blend: the gaps are {w:.3g} x the net's estimate + {1 - w:.3g} x a "
            f"biharmonic interpolation of the known pixels (squared error on {held}: net "
            f"{errors[0]:.3g}, interpolation {errors[1]:.3g}, their best blend "
            f"{errors[2]:.3g}{band_note}; the interpolation's solve: "
            f"{solve['iterations']} iterations"
            + (", then a sparse direct solve" if solve["direct"] else
               f", relative residual {solve['residual']:.2g}") + "; "
            f"{time.perf_counter() - started:.1f} s)")
        return out

    def r2r_check() -> bool:
        """Keep R2R's estimate (the mean of the net's outputs for ``r2r_draws`` recorrupted
        copies of the image, or its output for the image) and measure the net's
        divergence at the image; True where the watch says stop (see DivergenceWatch).
        Runs the net as it is (not compiled, not captured), in float32 and without
        gradients."""
        with torch.no_grad():
            est = net(z).float()
            probe = torch.randn(z.shape, generator=cpu_gen).to(device)
            moved = net(z + probe * SURE_STEP).float()
            change = (probe * (moved - est))[0][crop]
            div = float(change.sum()) / (SURE_STEP * change.numel())
            gap = None
            if cfg.r2r_draws:  # the estimate: outputs for inputs like those of the fit
                at_image = est
                est = torch.zeros_like(est)
                for _ in range(cfg.r2r_draws):
                    draw = torch.randn(z.shape, generator=cpu_gen).to(device)
                    est += net(z + draw * r2r_in).float()
                est /= cfg.r2r_draws
                gap = float((at_image - est)[0][crop].square().mean())
        if members > 1:
            est = est.unflatten(1, (members, -1))[0].mean(0, keepdim=True)
        n = step - last_snapshot_step  # the fit's estimate of its error since the last check
        fit = float(losses[:n].mean()) if n > 0 else None
        return watch.check(step, est[0], div, gap, fit)

    hold_weight: float | None = None  # the hold-out estimate's weight of the data, latest

    def holdout_check() -> bool:
        """Keep the hold-out fit's estimate: the gaps from the mean of ``hold_groups``
        passes that each hide one group of the known pixels; every known pixel from the
        pass that hides it, blended with its data (see below). True where the watch says
        stop (see HoldoutWatch). Runs the net as it is, in float32, without gradients."""
        nonlocal hold_weight

        def predicted(visible: torch.Tensor) -> torch.Tensor:  # the members' mean
            pred = hold_predict(visible, net, mixed=False)
            return pred.unflatten(1, (members, -1))[0].mean(0, keepdim=True) if (
                members > 1) else pred

        with torch.no_grad():
            pred_all = torch.zeros_like(target)
            gaps = (1.0 - known_t).expand_as(target) / hold_groups
            for g in range(hold_groups):
                hid = known_t * (group_of == g)
                pred_all += predicted(known_t - hid) * (hid.expand_as(target) + gaps)
            keep = None
            if cfg.gap_blend != "off":  # for the gaps' blend: the groups' predictions, and
                keep = [pred_all[0]]  # the band's, with the band hidden
                if band_shown is not None:
                    keep.append(predicted(band_shown)[0])
                keep = torch.stack(keep)
        n = step - last_snapshot_step  # the mean error on hidden pixels since the last check
        error = float(losses[:n].mean()) if n > 0 else float("inf")
        # At a known pixel the data (error: the noise variance v) and the prediction from
        # its neighbours (error about m = the error on hidden pixels less v) are two
        # estimates of the clean value; weighting the data by m / (m + v) gives the least
        # error of such blends: the data where there is no noise, mostly the prediction
        # where the noise is large against what the net cannot predict.
        excess = max(error - hold_var, 0.0) if np.isfinite(error) else 1.0
        share = excess / (excess + hold_var) if excess + hold_var > 0 else 1.0
        hold_weight = share
        shown = known_t.expand_as(target)
        est = pred_all + shown * share * (target - pred_all)
        return watch.check(step, est[0], error, keep)

    def validation_check() -> bool:
        """The hold-out stop: the current estimate's mean squared error on the pixels kept
        out of the fit; True where the watch says stop (see HoldoutWatch)."""
        with torch.no_grad():
            est = (ema if ema is not None else out_now).float()
            error = float(((est - target).square() * val_t).sum()) / val_den
        return watch.check(step, est[0].clone(), error)

    watch_check = holdout_check if hold else (validation_check if val_t is not None
                                              else r2r_check)

    def current_estimate(out: torch.Tensor) -> torch.Tensor:
        if watch is not None and watch.recent:
            return watch.estimate[None]
        if sgld and moments.count > 0:
            return moments.mean
        return ema if ema is not None else out

    def one_step(i: int) -> None:
        if graph is not None:
            graph.replay()
        elif side is not None and i < 3:  # warm-up for the capture, on a side stream
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                core_step()
            torch.cuda.current_stream().wait_stream(side)
        else:
            core_step()

    # the shapes never change during a run: let cuDNN time its algorithms once
    cudnn_benchmark = torch.backends.cudnn.benchmark
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    try:
        for i in range(cfg.steps):
            if compiled is not None and i == 0:  # the compiler runs now
                rng_state = gen.get_state()
                try:
                    one_step(i)
                except Exception as exc:  # noqa: BLE001 - run the net as it is, and say why
                    if is_out_of_memory(exc):  # the tiling driver's business, not the compiler's
                        raise
                    forward, compiled = net, None
                    info.notes[compile_note] = f"compile: failed ({_why(exc)}); net run as it is"
                    gen.set_state(rng_state)  # the step again, as if it were the first
                    one_step(i)
            else:
                one_step(i)
            if side is not None and i == 2:
                graph = _capture(core_step, gen, info)  # None: eager steps from now on
                side = None
            losses[i - last_snapshot_step] = loss_now
            o = out_now
            if sgld and i >= cfg.burn_in and (i - cfg.burn_in) % cfg.thinning == 0:
                if members_now is None:
                    moments.add(o)
                else:
                    for k in range(members):
                        moments.add(members_now[k:k + 1])
            if stopper is not None:
                stopper.update(i, o[0], current_estimate(o)[0], loss_now)
            if discrepancy is not None:
                discrepancy.update(i, current_estimate(o)[0])
            step = i + 1
            if step % cfg.snapshot_every == 0 and step < cfg.steps:
                if watch is not None and watch_check():
                    stop_reason = f"stopped: {watch.reason}; {watch.describe()}"
                    break
                if discrepancy is not None:
                    found = int(discrepancy.step.item())
                    if found >= 0:
                        stop_reason = (f"stopped: the estimate of step {found + 1} fits the "
                                       f"image to the noise level (discrepancy rule)")
                        break
                if stopper is not None:
                    best = int(stopper.best_step.item())
                    if best >= 0 and step - (best + 1) >= cfg.stop_patience:
                        stop_reason = (
                            f"stopped: no new minimum of the windowed output variance for "
                            f"{cfg.stop_patience} steps; estimate of step {best + 1}"
                        )
                        break
                if deadline is not None and time.perf_counter() >= deadline:
                    ended = (f"ended at the time limit ({cfg.time_limit:g} s) after {step} "
                             f"of {cfg.steps} steps" if whole_limit else
                             f"ended at its share of the time limit after {step} of "
                             f"{cfg.steps} steps")
                    break
                if finish is not None and finish():
                    ended = f"ended on request after {step} of {cfg.steps} steps"
                    break
                yield snapshot(False, current_estimate(o), None)
                last_snapshot_step = step
        # -- final result -------------------------------------------------------------
        end = ended or f"reached the maximum of {cfg.steps} steps"
        if discrepancy is not None:
            found = int(discrepancy.step.item())
            if found >= 0:
                final = discrepancy.estimate[None]
                if stop_reason is None:
                    stop_reason = (f"{end}; estimate of "
                                   f"step {found + 1}, which fits the image to the noise level "
                                   f"(discrepancy rule)")
            else:  # still short of the noise level: the latest estimate is the best fit
                final = current_estimate(out_now)
                stop_reason = (f"{end} before the estimate "
                               f"fit the image to the noise level (discrepancy rule); last "
                               f"estimate")
        elif watch is not None:
            if stop_reason is None:
                # the last step's output too (an early end has just checked it)
                turned = watch_check() if ended is None else False
                stop_reason = (f"{end}; "
                               f"{watch.describe()}" + (
                                   f" (left out: {watch.reason})" if turned and r2r else ""))
            final = watch.estimate[None]
            if hold_weight is not None:
                info.notes.append(
                    f"loss: hold-out: the known pixels are {hold_weight:.3g} x their data + "
                    f"{1 - hold_weight:.3g} x the prediction from their neighbours (noise "
                    f"variance {hold_var:.3g}, {source}, error on hidden "
                    f"pixels {watch.last_error:.3g}, at the latest check)")
        elif stopper is not None:
            best = int(stopper.best_step.item())
            if best >= 0:
                final = stopper.best_estimate[None]
                if stop_reason is None:
                    stop_reason = (f"{end}; estimate of step "
                                   f"{best + 1} (minimum of the windowed output variance)")
            else:
                final = current_estimate(out_now)
                stop_reason = (f"{end} before the stop rule "
                               f"could start (window {cfg.stop_window}, warm-up "
                               f"{cfg.stop_warmup}); last estimate")
        else:
            final = current_estimate(out_now)
            what = "moving average" if cfg.ema > 0 else "last output"
            if sgld:
                what = (f"posterior mean of {moments.count} samples" if moments.count else
                        f"no samples yet (burn-in {cfg.burn_in} steps): the {what}, with "
                        f"no variance")
            stop_reason = f"{end}; {what}"
        if cfg.gap_blend != "off" and not hold:
            info.notes.append("gap blend: off (it blends the gaps of a hold-out fit, "
                              "loss='holdout')")
        elif cfg.gap_blend != "off":
            # the net's own estimate first, as for the second stage below
            yield snapshot(False, final, None)
            last_snapshot_step = step
            final = gap_blended(final)
        if cfg.refine == "wiener" and not sgld:
            # the estimate that goes into the second stage, as the last progressive
            # snapshot: a viewer shows it while the stage runs, and a benchmark can score
            # the net alone without a second run
            yield snapshot(False, final, None)
            last_snapshot_step = step
            final = refined(final)
        yield snapshot(True, final, stop_reason)
    finally:
        del net, forward, compiled, opt, z, target, weight, ema, moments, members_now, stopper
        del discrepancy, backtrack, graph, out_now, watch, band, band_shown
        release(device)
        torch.backends.cudnn.benchmark = cudnn_benchmark


def deep_gap_band(known: torch.Tensor) -> tuple[torch.Tensor | None, str]:
    """The band of known pixels around deep gaps, where the gaps' blend also fits its
    weight, for a boolean ``known`` of shape ``(C, *spatial)``; None where the gaps are
    not deep or the band would hold too many of the known pixels. The text says why, or
    describes the band. The gaps' depth is their pixels' mean chessboard distance to a
    known pixel (channels with no known pixel left out); the band is that many pixels
    wide, rounded, at most RING_MAX."""
    has = known.flatten(1).any(1).view(-1, *([1] * (known.dim() - 1)))
    gaps = ~known & has
    if not bool(gaps.any()):
        return None, ""
    depth = float(gap_depth(known)[gaps].mean())
    width = min(round(depth), RING_MAX)
    if width < 2:
        return None, ""
    band = around(~known, width)  # known pixels only
    if float(band.sum()) > RING_MAX_SHARE * float(known.sum()):
        return None, (f"the gaps lie {depth:.2g} px deep on average, but the band of "
                      f"{width} px around them holds more than {RING_MAX_SHARE:.0%} of the "
                      f"known pixels: not fitted there")
    return band, (f"the gaps lie {depth:.2g} px deep on average, and the {int(band.sum())} "
                  f"known pixels within {width} px of them")


def _weight(y: torch.Tensor, n: torch.Tensor, b: torch.Tensor) -> float:
    """The weight w in [0, 1] of ``n`` for which w n + (1 - w) b comes nearest to ``y`` in
    the least-squares sense (1 where ``n`` and ``b`` agree)."""
    d = n - b
    den = float((d * d).sum())
    return float(((d * (y - b)).sum() / den).clamp(0.0, 1.0)) if den > 0 else 1.0


def _why(exc: BaseException) -> str:
    """The innermost cause of a (compiler) error, as 'Type: first line of its message'."""
    while True:
        inner = getattr(exc, "inner_exception", None) or exc.__cause__
        if not isinstance(inner, BaseException) or inner is exc:
            break
        exc = inner
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def _capture(step_fn, gen: torch.Generator, info: RunInfo):
    """Capture one optimisation step in a CUDA graph; None (eager steps) if that fails."""
    try:
        graph = torch.cuda.CUDAGraph()
        if hasattr(graph, "register_generator_state"):
            graph.register_generator_state(gen)
        elif gen is not torch.cuda.default_generators[gen.device.index or 0]:
            raise RuntimeError("this PyTorch cannot capture a custom generator")
        with torch.cuda.graph(graph):
            step_fn()
        info.notes[-1] = "CUDA graph: captured"
        return graph
    except Exception as exc:  # noqa: BLE001 - fall back to eager steps, and say why
        torch.cuda.synchronize()
        info.notes[-1] = f"CUDA graph: failed ({type(exc).__name__}: {exc}); eager steps"
        return None
