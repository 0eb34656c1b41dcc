"""Validated run configurations for DIP and SGLD-DIP, with presets and JSON round-trip.

Every constant of the two papers is a named field here, with the paper's value as default:

* Ulyanov, Vedaldi & Lempitsky, "Deep Image Prior", CVPR 2018 (``DIPConfig``);
* Cheng, Gadelha, Maji & Sheldon, "A Bayesian Perspective on the Deep Image Prior",
  CVPR 2019 (``SGLDConfig``);
* Wang et al., "Early Stopping for Deep Image Prior" (ES-WMV; the ``stop_*`` fields).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field, fields
from typing import Any

METHODS = ("dip", "sgld")
PRESETS = ("fast", "balanced", "quality")
UPSAMPLE_MODES = ("bilinear", "nearest")
PADDING_MODES = ("reflect", "zeros", "replicate")
NORMS = ("batch", "instance", "none")
PRECISIONS = ("float32", "bfloat16")
STOP_RULES = ("discrepancy", "variance", "holdout")
LOSSES = ("mse", "sure", "r2r", "holdout")
# losses whose net takes the noisy image itself as its input (denoising without a mask)
IMAGE_LOSSES = ("sure", "r2r")
SURE_CLIPPING = ("impute", "off")
REFINES = ("off", "wiener")
GAP_BLENDS = ("off", "biharmonic")


@dataclass(frozen=True)
class DIPConfig:
    """Settings of a Deep Image Prior run (defaults: the paper's denoising notebook).

    Parameters
    ----------
    steps : int
        Maximum number of optimisation steps (3000 in the reference notebook).
    lr : float
        Adam learning rate (0.01).
    lr_final : float
        Learning rate at the last step, as a fraction of ``lr`` (cosine decay); 1 keeps
        the rate constant as in the paper.
    weight_decay : float
        L2 weight decay added to the gradient, as in ``torch.optim.Adam``.
    width : int
        Channels of every encoder/decoder scale of the "skip" net (128).
    scales : int
        Number of down/up-sampling scales (5).
    skip_channels : int
        Channels of the 1x1 skip branch at every scale (4; 0 disables the skips).
    upsample : {"bilinear", "nearest"}
        Upsampling of the decoder ("bilinear"; trilinear for volumes).
    padding : {"reflect", "zeros", "replicate"}
        Padding of the 3x3 convolutions ("reflect").
    norm : {"batch", "instance", "none"}
        Normalisation layers ("batch", which with one image equals "instance").
    input_channels : int
        Channels of the fixed input code z (32).
    input_scale : float
        z is uniform(0, 1) times this (0.1).
    jitter : float
        Standard deviation of the Gaussian noise added to z at every step
        ("reg_noise_std", 1/30).
    ema : float
        Weight of the exponential moving average of the output (0.99; 0 disables).
    ema_warmup : bool
        Use the weight ``min(ema, (1 + t) / (10 + t))`` at step t so that the average
        follows the fast early progress instead of dragging the first, blank outputs
        along for hundreds of steps (False: the paper's constant weight).
    backtrack_db : float
        Restore the last good weights and optimiser state when the fit to the data drops
        by more than this many dB in one step (5; 0 disables).
    auto_stop : bool
        Stop by itself (``stop_rule``) and return the estimate of the step it chose; with
        ``loss="r2r"``, stop where the net's outputs for the image and for recorrupted
        copies of it drift apart (with ``r2r_draws`` 0: where its divergence at the image
        turns negative) (off: run all ``steps``). Not used by SURE, which runs its steps.
    stop_rule : {"discrepancy", "variance", "holdout"}
        "discrepancy" (default): Morozov's discrepancy principle: stop at the first step
        whose estimate differs from the image on the known pixels by no more than
        ``stop_discrepancy`` times the noise variance estimated from the image (MAD of
        the finest diagonal differences; ``noise_std`` where given), i.e. once it explains the image as well as the
        clean image would; used without a mask, and where the image shows noise; else,
        and when that level is never reached, the windowed-variance rule applies.
        "variance": the windowed-variance rule (ES-WMV) only: the estimate at the minimum
        of the variance of the last ``stop_window`` outputs.
        "holdout" (the papers' loss only, ``loss="mse"``): a fixed share of the known
        pixels (``stop_holdout_share``) is kept out of the fit, and the error of the
        estimate on them, which the fit cannot lower by following their noise, is
        measured at every snapshot; the run keeps the estimate (the mean of the recent
        checks') with the lowest such error and stops ``stop_patience`` steps after it.
        Needs no noise level; the held-out pixels are predicted from their neighbours.
    stop_discrepancy : float
        The fraction of the estimated noise variance at which "discrepancy" stops (0.9:
        on the papers' configuration at 256x256, sigma 25, it landed 0.06 dB below the
        best step on average against 0.55 dB for the windowed variance;
        benchmarks/RESULTS.md).
    stop_holdout_share : float
        The share of the known pixels that ``stop_rule="holdout"`` keeps out of the fit
        (0.1), in [0.01, 0.5].
    stop_window : int
        Number of recent outputs whose variance is tracked (W = 100).
    stop_patience : int
        Stop after this many steps without a new variance minimum (P = 1000).
    stop_warmup : int
        Ignore variance minima before this step (avoids false early minima).
    stop_fit : float
        Let the stop rule start before ``stop_warmup`` once the data-fit loss falls below
        this many times the noise variance (``noise_std``'s, else estimated; the output then
        fits the data about as well as the clean image would); 0 disables.
    snapshot_every : int
        Report a snapshot (and check the stop rule) every this many steps.
    precision : {"float32", "bfloat16"}
        Arithmetic of the net on CUDA ("bfloat16" uses autocast); the CPU always uses
        float32.
    capture : bool
        On CUDA, record one whole step (forward, backward, update, averaging) as a CUDA
        graph and replay it, which removes most of the per-step launch overhead; falls
        back to ordinary steps if the capture fails. No effect elsewhere.
    tile_size : int
        Restore the image in overlapping tiles of this edge length (pixels), one after the
        other, blended without seams; 0 (default) tiles only when the whole image would not
        fit the memory budget, and then picks the largest tile that fits.
    tile_overlap : int
        Minimum overlap of neighbouring tiles in pixels (32); the blending ramps span it.
    members : int
        Independent nets fitted together: on a GPU in one batched pass (grouped
        convolutions), on a CPU one after the other. DIP returns the average of their
        estimates (an ensemble: averaging independent DIP
        runs gained 0.57 dB in Ulyanov et al.); SGLD runs that many Langevin chains and
        pools their samples. 1 (default) is the papers' single net.
    channels_last : bool
        Keep activations and convolution weights in channels-last layout (NHWC), which
        the tensor-core convolutions of recent GPUs prefer.
    compile : bool
        On CUDA, compile the net's forward and backward pass with ``torch.compile``
        (TorchInductor), which fuses the memory-bound work between the convolutions
        (normalisation, LeakyReLU, padding, upsampling, concatenation) into a few
        generated kernels. The first steps then wait for the compiler (tens of seconds,
        once per image shape and process); falls back to ordinary steps, with a note,
        where compiling fails. No effect elsewhere (on two CPU cores it gained nothing).
    loss : {"mse", "sure", "r2r", "holdout"}
        "mse" (default): the papers' DIP: the net maps a fixed random code to an image and
        minimises its squared error to the image on the known pixels; the stop rule
        decides when the fit has gone far enough.
        "sure": denoising with the noisy image itself as the net's input and Stein's
        unbiased risk estimate (SURE) of the mean squared error against the unseen clean
        image as the loss (Metzler et al., 2018; Jo, Chun & Choi, ICCV 2021), with the
        divergence term estimated by one random perturbation per step (Ramani, Blu &
        Unser, 2008) and the noise variance (``noise_std``'s, else estimated). SURE penalises
        copying the noise, so the fit does not overfit and needs no stop rule: the run
        goes through its ``steps`` (use ``lr_final`` < 1 to settle it) and the reported
        loss is an estimate of the MSE to the clean image. Needs every pixel known (no
        mask) and method "dip"; ``input_channels``, ``input_scale``, ``jitter`` and
        ``backtrack_db`` are not used, and the net runs in float32.
        "r2r": denoising with the noisy image y as the net's input and Recorrupted-to-
        Recorrupted (Pang et al., CVPR 2021) as the loss: each step draws fresh noise z
        of the estimated level sigma and fits the net's output for y + alpha sigma z to
        y - sigma z / alpha (``r2r_alpha``), two noisy copies of the image whose noises are
        independent, so that the fit cannot copy the input's noise. One forward pass per
        step where SURE needs two: half the time per step. The estimate is the mean of the
        net's outputs for ``r2r_draws`` recorrupted copies y + alpha sigma z of the image
        (as in R2R's paper), averaged over the last four snapshots. Fitted long enough,
        the net overfits its inputs, and its outputs for y and for the copies drift apart:
        the run stops where their mean squared difference exceeds 1.5 times its smallest
        value so far (``stopping.DRIFT_RATIO``) at two checks in a row
        (``stopping.DRIFT_CHECKS``), counted once the fit's estimate of its error is below
        a tenth of the noise variance (``stopping.DRIFT_GATE``), keeping the estimates
        from before. The net's divergence at y is measured at every snapshot
        too (``Snapshot.divergence``); it turns negative once the net learns the
        recorruption's negative copy of its input, but on smooth images it does so while
        the fit still improves, so it stops the run only with ``r2r_draws=0`` (two CPU
        cores, 27 runs on 256x256 grey images at sigma 15-50 with a strength of 0.5: the
        drift stop kept 0.09 dB less than the best snapshot on average and at most 0.75
        less (0.10 with its second check), a stop at the first negative divergence 1.27
        dB less; benchmarks/RESULTS.md) (the reported
        loss is the fit's estimate of the mean squared error to the clean image of the
        output for the recorrupted input). Needs every pixel known and method "dip", as SURE; the ``sure_*``
        options (noise limits, clipping) hold for it too. On two CPU cores the fast
        preset with it came 0.66 dB below BM3D after 60 s on six 256x256 8-bit grey images
        at sigma 25, where SURE came 1.07 dB below in the same run (0.96 at its end,
        77 s), and 0.23 dB above BM3D at sigma 50 on the six (with the drift stop; SURE
        on three of them: 0.04 below; benchmarks/RESULTS.md).
        "holdout": filling the gaps of a mask with a net that learns, from the image
        alone, to predict pixels it is not shown (the self-supervised idea of Noise2Self,
        Batson & Royer, ICML 2019, and Self2Self, Quan et al., CVPR 2020, applied to the
        known pixels). At every step a random ``holdout_share`` of the known pixels is
        hidden; the gaps and the hidden pixels are filled by push-pull interpolation from
        the pixels left (:mod:`napari_dip.core.fill`), and the net, given that fill, the
        visible pixels and where they are, adds a correction to the fill and is fitted to
        the hidden pixels only. So the net never copies the pixel it predicts, and its loss
        is an error of prediction, the thing the gaps need (a training error all the same:
        every known pixel is a target now and then, so a net left long enough could learn
        pixels by heart, and the loss then keeps falling while the gaps no longer gain).
        At each snapshot the estimate takes the gaps from the mean of
        ``max(2, round(1 / holdout_share))`` passes that each hide a fixed group of the
        known pixels, and each known pixel from the pass that hides it, blended with its
        data: weighted m / (m + v) on the data, v the noise variance (``noise_std``'s, else
        estimated from the image) and m the error on hidden pixels less v, which is the data itself on a
        noise-free image and mostly the prediction from its neighbours (a denoised value)
        on a noisy one. The run returns the mean of the estimates of the recent snapshots
        (from half its step on) at the snapshot with the lowest error on hidden pixels
        and, with ``auto_stop``, stops after ``stop_patience`` steps without a new low.
        ``input_channels``, ``input_scale``, ``jitter``, ``ema`` and ``backtrack_db`` are
        not used. Without a mask (or with one that marks nothing) every pixel is known and
        the same fit denoises as a blind-spot denoiser, which the presets do not use for
        images without a mask. On two CPU cores the fast preset with it filled six
        256x256 grey images 1.9 dB above biharmonic inpainting on average with 50 % of
        their pixels lost at random, 2.1 dB above with 80 % lost, and 0.5 dB above under
        a text mask, in about 90 s each (benchmarks/RESULTS.md); on the noisy camera (sigma
        25, 50 % lost) it came level with the papers' loss (26.52 against 26.39 dB) in a
        third of the time (84 against 252 s).
    r2r_alpha : float or None
        With ``loss="r2r"``: the recorruption's strength alpha, in (0, 10]: the net's
        input carries noise of std sigma sqrt(1 + alpha^2) and its target std
        sigma sqrt(1 + 1 / alpha^2). None (default) sets it from the image
        (``recorruption_strength``): 0.5, as in R2R's paper, where the image's variance is
        at least 2.5 times its noise variance, 2 where it is at most 1.5 times, and
        between them on a geometric scale (tiles share the whole image's, the frames of a
        stack restored one by one the strength for the median of their ratios). A
        stronger
        recorruption gives the net noisier inputs, so that it smooths more and learns
        less of this one image's noise. With the fast preset on two CPU cores the rule
        gained 1.84 dB on average at 5 photons (128x128 crops; above GAT + BM3D on every
        one) and 0.72 at 10, and 0.15 dB on ten 256x256 grey images at sigma 50, but
        textures lost there (grass 0.85, gravel 0.53 dB); at sigma 25 three of the ten
        change (+0.05 dB on average) and six other images lost 0.11 dB on average
        (benchmarks/RESULTS.md, "R2R's recorruption strength"). On the 256x256 camera at
        sigma 25 (600 steps, an early form of the loop) 0.3 and 0.7 gave within 0.05 dB
        of 0.5, and 1.0 0.16 dB less.
    r2r_draws : int
        With ``loss="r2r"``: at every snapshot the estimate is the mean of the net's
        outputs for this many recorrupted copies of the image, the inputs the net is
        fitted on (2); 0 takes its output for the image itself, which lies off those
        inputs and drifts further once the fit overfits. Two CPU cores, the fast preset
        (benchmarks/RESULTS.md): the same mean at sigma 25 on six 256x256 grey images
        (30.07 against 30.08 dB at 60 s); where the fit overfits, more kept: moon at sigma
        50 30.08 dB against 28.35 where the stop fired, chelsea at sigma 50 25.80 against
        25.58 after 600 steps.
    sure_max_noise : float
        With ``loss="sure"``: above this noise standard deviation (``noise_std``, else
        estimated from the image, as a fraction of its value range, max - min) run the papers' loss with the
        fast preset's settings for it instead, with a note (0, the default and the
        presets' value: no limit). Without ``sure_clipping="impute"``, SURE broke down on
        8-bit images at sigma 50 (21.0 dB on the 256x256 camera, where the papers' loss
        reached 24.7 dB); with it, the fast preset came 0.04 dB below BM3D there on
        average over three images, and at sigma 75 it still beat the papers' loss
        (21.8 against 21.4 dB; benchmarks/RESULTS.md), so the presets set no limit.
    sure_max_trend : float
        With ``loss="sure"``: run the papers' loss with the fast preset's settings instead,
        with a note, where the noise variance of the brighter half of the image exceeds
        that of the darker half by more than this factor (``arrays.noise_trend``; 0: no
        check; the fast and balanced presets set 1.5). SURE assumes one noise variance
        everywhere; on photon-counting (Poisson-Gaussian) data it broke down, 3.6-4.7 dB
        below the papers' loss (benchmarks/RESULTS.md). Gaussian noise of std 15-50 read
        0.83-1.42 on 81 images of 256x256 (up to 2.44 in 64x64 crops), photon counts at
        3-100 photons 1.06-4.91, 18 of 40 cases above 1.5 (benchmarks/bench_noise_trend.py).
        With the default ``noise_model="auto"`` (:func:`napari_dip.iterate`) an R2R run
        whose image reads above this factor is variance-stabilised instead and runs R2R
        on the transformed data; with a noise model other than "gaussian" a positive
        value means the papers' loss for ``loss="sure"`` (:func:`for_noise_model`): SURE
        on the transformed data broke down at low photon counts, where R2R held up.
    holdout_share : float
        With ``loss="holdout"``: the share of the known pixels hidden from the net at each
        step (0.2), in [0.05, 0.5]; the estimate makes ``max(2, round(1 / share))`` passes
        at each snapshot, each hiding about that share.
    gap_blend : {"off", "biharmonic"}
        With ``loss="holdout"``: "biharmonic" blends the net's estimate in the gaps with a
        biharmonic interpolation of the known pixels (the model of scikit-image's
        ``inpaint_biharmonic``, solved on the run's device for images and volumes, each
        channel from its own known pixels), w x net + (1 - w) x interpolation, where
        w (in [0, 1]) gives the least squared error on a fifth of the known pixels that
        both predict without seeing them: the net where it predicts better (texture),
        the interpolation on smooth images and in large holes. Where the gaps lie deeper
        than single pixels (strokes, painted holes: their mean distance to a known pixel
        rounds to 2 px or more), w is also fitted on the known pixels in a band of that
        width around the gaps, hidden from both, and the smaller of the two is kept. The run yields the net's
        own estimate as the snapshot before the final one, and its note gives w and both
        errors. "off" (default): the net's estimate as it is.
    colour_width : int
        Width of the net (as ``width``) for images with more than one channel (colour);
        0 (default): ``width`` for every image. A colour image gives the net three times
        the measurements of a grey one: with SURE, a single net of width 32 came 0.3-0.8
        dB above one of width 16 on four colour images where on grey ones it drifted
        (benchmarks/RESULTS.md), so the balanced preset sets 32 for colour.
    refine : {"off", "wiener"}
        A second stage for denoising (method "dip"): "wiener"
        filters the noisy image again with Wiener gains taken from the net's final
        estimate, on stacks of similar patches, as BM3D's second step does with its own
        first estimate (``core/refine.py``; noise std ``noise_std``, else estimated from the image), and
        returns a share of the net's estimate (``refine_blend``) plus the rest of the
        filtered image.
        The progressive snapshots stay the net's. The fast and balanced presets set it
        when they denoise (R2R or SURE). On two CPU cores the fast preset's results on
        ten 256x256 grey images at sigma 25 gained 0.36-1.22 dB from it, 0.17 dB below
        BM3D on six of them and 0.01 above on the other four, where the net alone came
        0.68 and 0.81 below (benchmarks/RESULTS.md). "off" (default) returns the net's
        estimate. With a mask only the known pixels are filtered (the gaps keep the net's
        estimate, which also stands in for them in the patches); the presets do not set
        it with a mask. An image without measurable noise is left as the net made it.
    refine_blend : float or None
        With ``refine="wiener"``: the share of the net's estimate in the result, in
        [0, 1]; None (default) sets it from the noise std s (``noise_std``'s, else estimated), as a
        fraction of its value range: ``clip(5 (s - 0.06), 0, 1)`` (``refine_share``),
        0 at sigma 15/255, 0.2 at 25, 0.65 at 50. The filter gains most over the net at
        low noise, the net's estimate holds up better at high noise, and their errors
        differ: on the fast preset's estimates (two CPU cores, 256x256 8-bit grey) the
        best fixed share was 0 at sigma 15, 0.2 at 25 and 0.6 at 50, and the rule came
        within 0.02 dB of it on average at each level (benchmarks/RESULTS.md).
    refine_hard_share : float
        With ``refine="wiener"``: the share, in [0, 1], of the filtered image that comes
        from a second pass of the filter whose gains are read from a hard-thresholding
        estimate of the noisy image (BM3D's first step, ``refine.hard_threshold``)
        instead of from the net's estimate; 0 (default): the net's gains only. A net's
        estimate errs smooth, so gains read from it lose texture; the thresholding
        estimate keeps texture at full contrast and errs noisy, so gains read from it do
        best on detailed images and worst on smooth ones. The fast and balanced presets
        set 0.2 when they denoise: on the same nets' estimates (two CPU cores, sigma 25)
        +0.05 dB on ten 256x256 8-bit grey images with the fast preset (-0.05 on grass
        to +0.10 on sample), +0.02 with the balanced preset, +0.04 on four colour images
        with the balanced preset; a share of 1 lost 0.06, 0.18 and 0.17
        (``benchmarks/bench_stage_mix.py``). It adds a thresholding pass and a second
        filter: 1.6 s for a 256x256 grey image on two CPU cores.
    noise_std : float
        The noise's standard deviation where it is known, in the image's own units (25
        for an 8-bit image with noise of std 25; the same for every channel); 0 (default):
        estimated from the image (a wavelet estimate, ``arrays.noise_variance``). Every
        part that needs the noise level takes it: R2R's recorruption and strength, SURE,
        the discrepancy stop and ``stop_fit``, the hold-out blend, SGLD's calibration and the
        second stage.
        The estimate reads fine texture as noise: on 256x256 8-bit crops at sigma 5 it
        read 12.6 on grass (11.1 on the clean crop) and 7.4 on coins, and the result
        smoothed that texture away (grass, fast preset: 4.8 dB below BM3D, which is given
        the level; 0.1 above with it given; benchmarks/RESULTS.md). Giving it also tells
        the run that the noise is Gaussian: ``noise_model="auto"`` keeps the raw values
        and the presets' check for noise that grows with the signal (``sure_max_trend``)
        is skipped. Not for photon counts: give ``gain`` and ``read_noise`` there
        (:func:`napari_dip.iterate`).
    time_limit : float
        Seconds the fit may take (0, default: no limit). At the first snapshot (every
        ``snapshot_every`` steps) after the limit, the fit ends, and the run finishes as
        at its last step: the estimate its stop rule would return there (the mean of the
        samples so far for SGLD), then the gaps' blend and the second stage where they
        are set, which take a few seconds more (with the fast preset, a 256x256 grey image
        ended 2.4-4.6 s after its limit on two CPU cores, overshoot to the snapshot
        included; benchmarks/bench_time_limit.py). An image restored in tiles shares the
        limit among its tiles: each gets the time left divided by the tiles left (on a
        Dask cluster, where tiles are tasks of their own, each has the whole limit). A run's result then depends on the
        machine's speed: a seed repeats it only where the limit is not reached.
    sure_clipping : {"impute", "off"}
        With ``loss="sure"``, for data whose values pile up at their minimum or maximum
        (clipped or saturated, as in 8-bit images of noisy scenes; ``arrays.clipped_ends``):
        "impute" (default) reads the noise level from blocks away from the clipped ends
        and gives SURE the data with each clipped value replaced by a draw of the noise
        beyond the clip around a local estimate (``arrays.impute_clipped``), so that they
        look unclipped, as SURE assumes; "off" uses the data as they are. A run of equal
        clipped values lets the net score a SURE below zero there by copying them: on
        the 256x256 8-bit camera at sigma 50 the fit broke down to 21.0 dB with "off"
        and reached 26.6 dB with "impute" (benchmarks/RESULTS.md). The second stage
        (``refine``) follows it whatever the loss: "impute" gives the filter each clipped
        value as its expectation beyond the clip given the net's estimate
        (``arrays.expect_clipped``; with the fast preset on a binary 8-bit image 39.2 dB
        where the clipped values gave 29.2), "off" the clipped values as they are.
    """

    steps: int = 3000
    lr: float = 0.01
    lr_final: float = 1.0
    weight_decay: float = 0.0
    width: int = 128
    scales: int = 5
    skip_channels: int = 4
    upsample: str = "bilinear"
    padding: str = "reflect"
    norm: str = "batch"
    input_channels: int = 32
    input_scale: float = 0.1
    jitter: float = 1.0 / 30.0
    ema: float = 0.99
    ema_warmup: bool = False
    backtrack_db: float = 5.0
    auto_stop: bool = True
    stop_rule: str = "discrepancy"
    stop_discrepancy: float = 0.9
    stop_holdout_share: float = 0.1
    stop_window: int = 100
    stop_patience: int = 1000
    stop_warmup: int = 300
    stop_fit: float = 0.0
    snapshot_every: int = 50
    precision: str = "float32"
    capture: bool = True
    tile_size: int = 0
    tile_overlap: int = 32
    members: int = 1
    channels_last: bool = False
    compile: bool = False
    loss: str = "mse"
    sure_max_noise: float = 0.0
    sure_max_trend: float = 0.0
    sure_clipping: str = "impute"
    colour_width: int = 0
    r2r_alpha: float | None = None
    r2r_draws: int = 2
    holdout_share: float = 0.2
    gap_blend: str = "off"
    refine: str = "off"
    refine_blend: float | None = None
    refine_hard_share: float = 0.0
    noise_std: float = 0.0
    time_limit: float = 0.0

    method: str = field(default="dip", init=False, repr=False)

    def __post_init__(self) -> None:
        _validate(self)

    # -- conveniences -------------------------------------------------------------
    def replace(self, **changes: Any) -> "DIPConfig":
        """Return a copy with some fields changed (validated; unknown names are errors)."""
        _check_names(type(self), changes, what="option")
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON dictionary, including ``"method"``."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.init}
        return {"method": self.method, **out}

    def to_json(self, **kwargs: Any) -> str:
        return json.dumps(self.to_dict(), **kwargs)


@dataclass(frozen=True)
class SGLDConfig(DIPConfig):
    """Settings of an SGLD-DIP run (defaults: Cheng et al., CVPR 2019).

    Adds to :class:`DIPConfig`:

    Parameters
    ----------
    noise_scale : float
        Langevin noise on every convolution weight after each Adam step has standard
        deviation ``noise_scale * lr`` (2, i.e. N(0, (2 lr)^2)).
    burn_in : int
        Steps before samples are kept (7000).
    thinning : int
        Keep one sample every this many steps (50).
    calibration_share : float
        With a mask: the share of the known pixels held out of the fit (drawn at random
        with the run's seed) to calibrate the posterior std in the gaps. At the end the
        net's error on them (less the noise variance: ``noise_std``'s, else estimated) is
        compared with their posterior variance, and the variance of every pixel the fit
        did not see is multiplied by that ratio where it is above 1 (never narrowed).
        The posterior of a pixel the fit does not see is too narrow: on a 64x64 camera
        crop with 57 % missing, its std was 1.7 times too small in the gaps, which held
        86 % of their errors within 1.96 std instead of 95 %
        (benchmarks/RESULTS.md). 0 (the papers' setting): off. The fast and balanced
        presets hold out 5 %.
    """

    steps: int = 20000
    weight_decay: float = 5e-8
    ema: float = 0.0
    backtrack_db: float = 0.0
    auto_stop: bool = False
    noise_scale: float = 2.0
    burn_in: int = 7000
    thinning: int = 50
    calibration_share: float = 0.0

    method: str = field(default="sgld", init=False, repr=False)


CONFIG_CLASSES: dict[str, type[DIPConfig]] = {"dip": DIPConfig, "sgld": SGLDConfig}

# Preset overrides on top of the paper defaults. "quality" is the papers' configuration;
# "balanced" and "fast" trade width and steps for speed (see benchmarks/RESULTS.md). The
# lighter SGLD presets keep the paper's lr but a quarter of its Langevin noise: with short
# chains and narrow nets the paper's noise keeps the samples far from the data (64x64
# camera crop, sigma 25, 800 steps: 21.4 dB with lr 0.02 and noise 2 lr, 27.3 dB with
# lr 0.01 and noise 0.5 lr; the noisy input is 19.6 dB).
PRESET_OVERRIDES: dict[str, dict[str, dict[str, Any]]] = {
    "quality": {"dip": {}, "sgld": {}},
    "balanced": {
        "dip": dict(width=64, steps=2000, ema_warmup=True, stop_patience=500, stop_warmup=200,
                    snapshot_every=25),
        "sgld": dict(width=64, steps=6000, ema_warmup=True, noise_scale=0.5, burn_in=2000,
                     thinning=20, snapshot_every=50, calibration_share=0.05),
    },
    "fast": {
        "dip": dict(width=32, scales=4, steps=1000, ema_warmup=True, stop_window=50,
                    stop_patience=250, stop_warmup=300, snapshot_every=25),
        "sgld": dict(width=32, scales=4, steps=2000, ema_warmup=True, noise_scale=0.5,
                     burn_in=600, thinning=10,
                     snapshot_every=25, calibration_share=0.05),
    },
}
# Where these presets denoise an image without a mask, their DIP uses the SURE loss with
# the image as input, on top of the overrides above (which stay for images with a mask,
# whose holes only the papers' loss can fill). Fast, on two CPU cores, 256x256 camera,
# sigma 25: 29.41 dB in 69 s (BM3D 30.81; the papers' loss with the fast net: 23.45 dB at
# 60 s); 29.59 dB once its clipped values were imputed (sure_clipping). Width 16 and 4
# scales beat 24 channels, 5 scales, no normalisation, a residual output and 16 skip
# channels; a constant lr of 0.004-0.005 overfits after 300-450 steps
# (benchmarks/RESULTS.md).
# "balanced" averages four such nets, trained together as one batch (members): on an
# NVIDIA H100, six 256x256 grey images at sigma 25, 0.90 dB below BM3D on average against
# 1.29 for one net, in 2.4 s against 1.3 s per image; 512x512 RGB: 29.96 dB in 6.3 s, where
# the earlier balanced preset (the papers' loss, width 64, 2000 steps) gave 28.43 dB in
# 18.5 s. The papers' net with SURE peaks higher but breaks down within 1000 steps.
# Colour images get nets of width 32 in "balanced" (colour_width): single nets on two CPU
# cores, 256x256 colour images at sigma 25, came 0.30-0.77 dB above width 16, where on
# grey images width 32 drifted after its best step (benchmarks/RESULTS.md).
def _fast_and_balanced(fast: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The overrides of a loss for the fast preset, and for the balanced preset, which
    averages four of the fast preset's nets (32 wide for colour)."""
    return {"fast": fast, "balanced": dict(fast, members=4, colour_width=32)}


_SURE_FAST = dict(loss="sure", width=16, scales=4, lr=0.003, lr_final=0.5, steps=300,
                  ema=0.0, backtrack_db=0.0, jitter=0.0, snapshot_every=10,
                  sure_max_trend=1.5, refine="wiener", refine_hard_share=0.2)
SURE_OVERRIDES: dict[str, dict[str, Any]] = _fast_and_balanced(_SURE_FAST)
# The same nets fitted with Recorrupted-to-Recorrupted (loss="r2r"): one forward pass per
# step instead of SURE's two, so twice the steps in the same time. On two CPU cores, six
# 256x256 8-bit grey images at sigma 25: 30.10 dB on average after 60 s, 0.66 below BM3D,
# where SURE gave 29.68 in the same run (29.79 at its end, 77 s); the lr falls to 0.3 of
# its start over the 600 steps (a constant lr reached the same peaks on a noisier path),
# and the run stops where the net's outputs for the image and for recorrupted copies of it
# drift apart (on the smooth moon image at step 350, 0.27 dB below BM3D; all 600 steps
# ended 1.2 dB lower).
_R2R_FAST = dict(_SURE_FAST, loss="r2r", steps=600, lr_final=0.3, snapshot_every=25)
# Both denoising losses end with the second stage (refine="wiener", core/refine.py): the
# noisy image filtered on stacks of similar patches with Wiener gains from the net's
# estimate, blended with that estimate by the noise level (refine_share: 0.2 of the net's
# at sigma 25). Two CPU cores, the fast preset, 256x256
# 8-bit grey images at sigma 25 (bench_cpu_target.py, configs fast and fast-noref in one
# run): six images 30.59 dB, 0.17 below BM3D, where the net alone gave 30.07 (0.68
# below); four images nothing was tuned on (brick, grass, gravel, clock) 0.01 dB above
# BM3D, the net alone 0.81 below; every image gained (0.36-1.22 dB), the whole run still
# under 60 s (27-52 s). The filter's sizes and the blend were chosen on the estimates of
# the six images and of three of them at sigma 15 and 50 (benchmarks/RESULTS.md).
# 0.2 of the filtered image comes from gains read from a hard-thresholding estimate
# (refine_hard_share): on the same nets' estimates (bench_stage_mix.py, two CPU cores,
# sigma 25) +0.05 dB on the ten grey images with the fast preset (-0.05 to +0.10 per
# image), +0.02 with the balanced preset (-0.07 to +0.08) and +0.04 on four colour images
# with the balanced preset (+0.02 to +0.09); 0.3 gained about as much on average but lost
# up to 0.11 dB (grass).
R2R_OVERRIDES: dict[str, dict[str, Any]] = _fast_and_balanced(_R2R_FAST)
# The loss each preset denoises an image without a mask with, unless another is asked for.
# "balanced" averages four R2R nets (16 wide, 32 for colour). On an NVIDIA H200, the quality
# benchmark's 256x256 images (seven of its eight; benchmarks/RESULTS.md): 0.23 dB below
# BM3D / CBM3D at sigma 25 and 0.02 above at sigma 50, where four SURE nets came 0.51 and
# 0.36 below, in about 3.5 s per image; 512x512 RGB (width 32): 31.04 dB in 8.8 s, 2.1 GiB,
# against 30.42 dB, 8.6 s and 4.6 GiB for the SURE nets. On two CPU cores a step of the
# four R2R nets costs 0.57 of a step of the four SURE nets (0.74 against 1.30 s at 256x256;
# bench_speed.py, results/speed_cpu_balanced_r2r.txt), for twice the steps: about 7.5
# minutes per grey image where the SURE nets took 6.5, when neither stops early (with the
# nets side by side; one after the other, as a CPU now runs them, 1.46x faster a step:
# benchmarks/bench_members_cpu.py). Four
# nets 32 wide on grey images too came closer still on a GPU (six grey images at sigma 25:
# 0.09 dB below BM3D against 0.27 for width 16; `width=32`) but cost 2.9 times as much on
# the CPU (2.03 against 0.71 s a step; results/speed_cpu_balanced_r2r_w32.txt).
DENOISE_LOSS: dict[str, str] = {"fast": "r2r", "balanced": "r2r"}
# Images with a mask: the hold-out fit (loss="holdout"), a net of the fast denoisers' size
# that learns from the image itself to predict known pixels hidden from it, on top of a
# push-pull fill of the gaps (core/fill.py). On two CPU cores, six 256x256 grey images
# (benchmarks/bench_inpaint.py): 35.76 dB with 50 % of the pixels lost at random, 30.99
# with 80 %, 31.81 under a text mask, against 33.83, 28.89 and 31.30 for biharmonic
# inpainting, in about 90 s per image; on camera at 50 % the papers' loss with the fast
# preset's settings for it took 225 s for 29.44 dB (hold-out: 31.66 in 92 s). A constant
# lr beat one easing to 0.3 of it (camera and brick: 0.17 and 0.34 dB on average); hiding
# shifted copies of the mask instead of single pixels, or doing so every other step, did
# worse under the text mask (camera: 25.7 and 25.9 dB against 26.8, exploratory runs).
# "balanced" averages four such nets, as for denoising: camera at 50 %, 31.90 dB in 617 s
# on two CPU cores (one net: 31.66 in 92 s).
# The gaps of the result blend the net's estimate with a biharmonic interpolation, weighted
# by their errors on held-out known pixels (gap_blend): on eight 256x256 grey images with
# 50 % and 80 % of the pixels lost (bench_inpaint.py, fast preset, 2 CPU cores) +0.29 and
# +0.05 dB over the net alone on average, never more than 0.01 dB below it (texture such
# as brick and grass: the net's estimate as it is), for solves of the interpolation at
# the end (fill.biharmonic: 0.03-0.09 s each at 256x256 on two CPU cores,
# bench_biharmonic.py). Under their text mask, whose gaps are deep enough for the weight
# to be fitted on the band around them as well (the engine's deep_gap_band): +0.90 dB
# over the net (clock +1.98, the text image +2.65; brick -0.03), 33.51 dB against 33.30
# with single pixels alone, above biharmonic or level with it on all eight
# (bench_gap_weight.py).
_HOLDOUT_FAST = dict(loss="holdout", width=16, scales=4, lr=0.003, lr_final=1.0, steps=800,
                     ema=0.0, backtrack_db=0.0, jitter=0.0, snapshot_every=50,
                     stop_patience=300, gap_blend="biharmonic")
HOLDOUT_OVERRIDES: dict[str, dict[str, Any]] = _fast_and_balanced(_HOLDOUT_FAST)
INPAINT_LOSS: dict[str, str] = {"fast": "holdout", "balanced": "holdout"}
_IMAGE_OVERRIDES = {"sure": SURE_OVERRIDES, "r2r": R2R_OVERRIDES,
                    "holdout": HOLDOUT_OVERRIDES}


def refine_share(noise_std: float) -> float:
    """The share of the net's estimate in a refined result (``refine_blend=None``) for an
    estimated noise std given as a fraction of the image's value range: 0 up to 0.06
    (sigma 15 of 255), rising by 5 per unit to 1 at 0.26 (see ``refine_blend``)."""
    return float(min(1.0, max(0.0, 5.0 * (noise_std - 0.06))))


# R2R's recorruption strength where r2r_alpha is None: R2R_ALPHA[0] (R2R's paper's 0.5)
# where the image's variance is at least R2R_RATIO[1] times its noise variance, R2R_ALPHA[1]
# where it is at most R2R_RATIO[0] times, geometric between. At low ratios a fit with 0.5
# learns the image's noise within a few dozen steps. Two CPU cores, the fast preset, against
# 0.5 (benchmarks/RESULTS.md, "R2R's recorruption strength"): photon counts on 128x128
# crops +1.84 dB on average at 5 photons (above GAT + BM3D on every crop) and +0.72 at 10;
# the ten 256x256 grey images of the CPU table +0.05 dB at sigma 25 and +0.15 at sigma 50,
# where textures lost (grass -0.85, gravel -0.53); six other grey images +0.57 at sigma 50
# (among those the thresholds were chosen on) and -0.11 at sigma 25 (not; a dark sky -0.86,
# stopped early). With the drift stop's second check (stopping.DRIFT_CHECKS), which lets
# that sky run on: -0.07 at sigma 25 (the sky -0.60), +0.53 at sigma 50, and the ten +0.14
# at sigma 50.
R2R_ALPHA = (0.5, 2.0)
R2R_RATIO = (1.5, 2.5)


def recorruption_strength(ratio: float) -> float:
    """R2R's recorruption strength alpha for ``r2r_alpha=None``, given the image's
    variance as a multiple of its noise variance (``arrays.variance_ratio``): 2 at or
    below 1.5, 0.5 at or above 2.5, and between them geometric in the ratio (1 at 1.94)."""
    lo, hi = R2R_RATIO
    if not ratio < hi:
        return R2R_ALPHA[0]
    if ratio <= lo:
        return R2R_ALPHA[1]
    t = math.log(hi / ratio) / math.log(hi / lo)  # 0 at hi, 1 at lo
    return float(R2R_ALPHA[0] * (R2R_ALPHA[1] / R2R_ALPHA[0]) ** t)


def check_loss(cfg: DIPConfig, masked: bool) -> None:
    """Refuse SURE or R2R for an image with missing pixels, which only the squared error
    and the hold-out fit fill."""
    if cfg.loss in IMAGE_LOSSES and masked:
        raise ValueError(f"loss: {cfg.loss!r} denoises images whose every pixel is known; "
                         f"with a mask use loss='holdout' or 'mse', which fill the missing "
                         f"pixels")


def net_config(cfg: DIPConfig, channels: int) -> DIPConfig:
    """The settings the generator is built from: with SURE the net denoises the image
    itself, so its input has the image's ``channels`` instead of ``input_channels``; an
    image of several channels gets ``colour_width`` where that is set."""
    changes: dict[str, Any] = {}
    if cfg.loss in IMAGE_LOSSES:
        changes["input_channels"] = channels
    elif cfg.loss == "holdout":  # the filled image, the visible pixels and where they are
        changes["input_channels"] = 3 * channels
    if channels > 1 and cfg.colour_width > 0:
        changes["width"] = cfg.colour_width
    return dataclasses.replace(cfg, **changes) if changes else cfg


def sure_fallback(cfg: DIPConfig) -> DIPConfig:
    """The configuration that replaces a SURE or R2R run where its checks
    (``sure_max_noise``, ``sure_max_trend``) fail: the fast preset's settings for the
    papers' loss, keeping what was chosen on top of the fast preset's settings for the
    run's loss (a field of those settings with another value, e.g. ``steps``; a value
    equal to theirs counts as theirs) and the fields that neither sets (members,
    precision, tiles, compile, ...)."""
    own = _IMAGE_OVERRIDES.get(cfg.loss, SURE_OVERRIDES)["fast"]
    plain = PRESET_OVERRIDES["fast"]["dip"]
    keep = {}
    for key, value in cfg.to_dict().items():
        if key in ("method", "loss", "sure_max_noise", "sure_max_trend", "r2r_alpha",
                   "r2r_draws"):
            continue
        if key in own:
            if value != own[key]:
                keep[key] = value
        elif key not in plain:
            keep[key] = value
    return make_config("dip", "fast", masked=True, loss="mse", **keep)


def sure_fallback_note(reason: str) -> str:
    """The run note of a SURE or R2R run replaced by :func:`sure_fallback`, for ``reason``."""
    return f"loss: squared error with the fast preset's settings for it ({reason})"


def for_noise_model(cfg: DIPConfig, noise_model: str) -> tuple[DIPConfig, str | None]:
    """The configuration for data of ``noise_model`` and the note of any change: with a
    noise model other than "gaussian", SURE with its checks on (``sure_max_trend`` > 0,
    as in the presets) becomes :func:`sure_fallback`, since SURE on the variance-
    stabilised data broke down at low photon counts. R2R stays: on the transformed data
    it was 1.3-2.0 dB above the papers' loss on the raw values on average at 10-100
    photons with the fast preset, 1.0-2.8 with balanced (benchmarks/RESULTS.md, "Photon
    counts: R2R and the second stage on stabilised data")."""
    if noise_model == "gaussian" or cfg.loss != "sure" or cfg.sure_max_trend <= 0:
        return cfg, None
    return sure_fallback(cfg), sure_fallback_note(
        "the presets do not use SURE with a noise model other than 'gaussian'; "
        "loss='sure' with sure_max_trend=0 forces it")


def make_config(
    method: str = "dip",
    preset: str = "balanced",
    *,
    steps: int | None = None,
    auto_stop: bool | None = None,
    masked: bool = False,
    **options: Any,
) -> DIPConfig:
    """Build a validated configuration from a method, a preset and option overrides.

    Parameters
    ----------
    method : {"dip", "sgld"}
        Deep Image Prior or its Bayesian (Langevin) variant.
    preset : {"fast", "balanced", "quality"}
        Starting point; "quality" is the papers' configuration.
    steps, auto_stop : optional
        Shortcuts for the fields of the same name.
    masked : bool
        Whether the image to restore has missing pixels (a mask). Without one, DIP with
        the "fast" and "balanced" presets denoise with the R2R loss (``R2R_OVERRIDES``;
        ``DENOISE_LOSS``), or with the SURE loss and its own settings
        (``SURE_OVERRIDES``) where ``loss="sure"`` is asked for, unless ``loss="mse"`` is
        asked for; with one, it fits the known pixels (``loss="mse"``).
    **options
        Any other field of :class:`DIPConfig` / :class:`SGLDConfig`.
    """
    method = _choice("method", method, METHODS)
    preset = _choice("preset", preset, PRESETS)
    cls = CONFIG_CLASSES[method]
    _check_names(cls, options, what="option")
    if not isinstance(masked, bool):
        raise TypeError(f"masked: expected True or False, got {masked!r}")
    values = dict(PRESET_OVERRIDES[preset][method])
    defaults = INPAINT_LOSS if masked else DENOISE_LOSS
    if method == "dip" and preset in defaults:
        loss = str(options.get("loss", defaults[preset])).lower()
        values.update(_IMAGE_OVERRIDES.get(loss, {}).get(preset, {}))
    values.update(options)
    if "width" in options and "colour_width" not in options:
        values["colour_width"] = 0  # a width asked for holds for colour images too
    if steps is not None:
        if method == "sgld" and "burn_in" not in options:
            # keep the preset's proportions of burn-in and sampling for a new length
            base = cls(**PRESET_OVERRIDES[preset][method])
            if isinstance(steps, int) and not isinstance(steps, bool) and steps >= 2:
                values["burn_in"] = min(round(base.burn_in * steps / base.steps), steps - 1)
                if "thinning" not in options:
                    values["thinning"] = max(1, min(base.thinning,
                                                    (steps - values["burn_in"]) // 10))
        values["steps"] = steps
    if auto_stop is not None:
        values["auto_stop"] = auto_stop
    return cls(**values)


def config_from_dict(data: dict[str, Any]) -> DIPConfig:
    """Rebuild a configuration from :meth:`DIPConfig.to_dict` output (or parsed JSON).

    Unknown keys, wrong types and out-of-range values raise errors that name the key.
    """
    if not isinstance(data, dict):
        raise TypeError(f"config: expected a dict (JSON object), got {type(data).__name__}")
    data = dict(data)
    method = _choice("method", data.pop("method", "dip"), METHODS)
    cls = CONFIG_CLASSES[method]
    _check_names(cls, data, what="config key")
    return cls(**data)


def config_from_json(text: str) -> DIPConfig:
    """Parse a JSON string made by :meth:`DIPConfig.to_json` (plain JSON only)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"config: not valid JSON ({exc})") from None
    return config_from_dict(data)


# ---------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------
_INT_RANGES: dict[str, tuple[int, int | None]] = {
    "steps": (1, 10_000_000),
    "width": (1, 4096),
    "colour_width": (0, 4096),
    "scales": (1, 8),
    "skip_channels": (0, 4096),
    "input_channels": (1, 4096),
    "stop_window": (2, 10_000),
    "stop_patience": (1, None),
    "stop_warmup": (0, None),
    "snapshot_every": (1, 1_000_000),
    "burn_in": (0, None),
    "thinning": (1, None),
    "tile_size": (0, None),
    "tile_overlap": (0, None),
    "members": (1, 64),
    "r2r_draws": (0, 64),
}
_FLOAT_RANGES: dict[str, tuple[float, float | None]] = {
    "lr": (0.0, None),
    "lr_final": (0.0, 1.0),
    "weight_decay": (0.0, None),
    "input_scale": (0.0, None),
    "jitter": (0.0, None),
    "ema": (0.0, 1.0),
    "backtrack_db": (0.0, None),
    "noise_scale": (0.0, None),
    "calibration_share": (0.0, 0.5),
    "stop_fit": (0.0, None),
    "stop_discrepancy": (0.0, 2.0),
    "stop_holdout_share": (0.01, 0.5),
    "sure_max_noise": (0.0, 1.0),
    "sure_max_trend": (0.0, None),
    "r2r_alpha": (0.0, 10.0),
    "holdout_share": (0.05, 0.5),
    "refine_blend": (0.0, 1.0),
    "refine_hard_share": (0.0, 1.0),
    "time_limit": (0.0, None),
    "noise_std": (0.0, None),
}
_OPTIONAL = ("refine_blend", "r2r_alpha")  # None: chosen by the run
_CHOICES: dict[str, tuple[str, ...]] = {
    "upsample": UPSAMPLE_MODES,
    "padding": PADDING_MODES,
    "norm": NORMS,
    "precision": PRECISIONS,
    "stop_rule": STOP_RULES,
    "loss": LOSSES,
    "sure_clipping": SURE_CLIPPING,
    "refine": REFINES,
    "gap_blend": GAP_BLENDS,
}


def _validate(cfg: DIPConfig) -> None:
    for f in fields(cfg):
        if not f.init:
            continue
        name, value = f.name, getattr(cfg, f.name)
        if name in _OPTIONAL and value is None:
            continue
        if name in _INT_RANGES:
            if isinstance(value, bool) or not isinstance(value, int):
                if isinstance(value, float) and value.is_integer():
                    object.__setattr__(cfg, name, int(value))
                    value = int(value)
                else:
                    raise TypeError(f"{name}: expected an integer, got {value!r}")
            lo, hi = _INT_RANGES[name]
            if value < lo or (hi is not None and value > hi):
                rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
                raise ValueError(f"{name}: expected an integer {rng}, got {value!r}")
        elif name in _FLOAT_RANGES:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name}: expected a number, got {value!r}")
            value = float(value)
            object.__setattr__(cfg, name, value)
            lo, hi = _FLOAT_RANGES[name]
            if not math.isfinite(value) or value < lo or (hi is not None and value > hi):
                rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
                raise ValueError(f"{name}: expected a finite number {rng}, got {value!r}")
        elif name in _CHOICES:
            object.__setattr__(cfg, name, _choice(name, value, _CHOICES[name]))
        elif name in ("auto_stop", "ema_warmup", "capture", "channels_last", "compile"):
            if not isinstance(value, bool):
                raise TypeError(f"{name}: expected True or False, got {value!r}")
    if cfg.lr <= 0:
        raise ValueError(f"lr: expected a number > 0, got {cfg.lr!r}")
    if cfg.r2r_alpha is not None and cfg.r2r_alpha <= 0:
        raise ValueError(f"r2r_alpha: expected a number in (0, 10], got {cfg.r2r_alpha!r}")
    if cfg.stop_discrepancy <= 0:
        raise ValueError(f"stop_discrepancy: expected a number in (0, 2], got "
                         f"{cfg.stop_discrepancy!r}")
    if 0 < cfg.tile_size < 16:
        raise ValueError(f"tile_size: expected 0 (automatic) or at least 16 pixels, got "
                         f"{cfg.tile_size}")
    if cfg.tile_size and cfg.tile_overlap * 2 >= cfg.tile_size:
        raise ValueError(f"tile_overlap: expected less than half of tile_size="
                         f"{cfg.tile_size}, got {cfg.tile_overlap}")
    if isinstance(cfg, SGLDConfig) and cfg.loss != "mse":
        raise ValueError(f"loss: method 'sgld' samples with the squared error ('mse'), got "
                         f"{cfg.loss!r}")
    if isinstance(cfg, SGLDConfig) and cfg.refine != "off":
        raise ValueError(f"refine: method 'sgld' returns the posterior mean of its samples "
                         f"as it is; expected 'off', got {cfg.refine!r}")
    if isinstance(cfg, SGLDConfig) and cfg.burn_in >= cfg.steps:
        raise ValueError(
            f"burn_in: expected fewer than steps={cfg.steps} so that samples are kept, "
            f"got {cfg.burn_in}"
        )


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value.lower() not in allowed:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, allowed))}, got {value!r}")
    return value.lower()


def _check_names(cls: type, values: dict[str, Any], *, what: str) -> None:
    known = {f.name for f in fields(cls) if f.init}
    unknown = sorted(set(values) - known)
    if unknown:
        raise TypeError(
            f"unknown {what}{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
            f"for method {cls.method!r}; "
            f"known: {', '.join(sorted(known))}"
        )
