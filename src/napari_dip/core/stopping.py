"""Stop rules that need no ground truth.

The discrepancy principle (Morozov, 1966): an estimate that differs from the noisy data
by less than the noise itself has begun to reproduce the noise, so stop when the residual
on the known pixels falls to about the noise variance, which is estimated from the image
(or given: ``noise_std``).

The windowed moving variance rule (ES-WMV) of Wang et al., "Early Stopping for Deep Image
Prior": the mean squared distance of the last W outputs to their mean falls to a minimum
near the step where the output is closest to the clean image. This implementation keeps a
ring buffer with running sums, so each step costs O(pixels), not O(W * pixels), and never
waits for the host; the exact sums are recomputed every W steps to cancel rounding drift.

For the recorrupted-to-recorrupted loss (R2R, Pang et al., CVPR 2021), the divergence watch:
fitted long enough on one image, the net learns the map from the recorrupted input
y + a s z to the target y - s z / a that holds for this image, y (1 + 1/a^2) - input / a^2,
whose divergence is negative, where a denoiser's is positive (it keeps part of what it is
given). So the fit has gone past its best once the net's divergence at y turns negative.
On smooth images, though, that sign comes early, while the fit still improves, so where
the estimate comes from recorrupted copies of y the watch stops on another sign instead:
the net's output for y and its mean output for the copies drift apart once it begins to
overfit.
"""

from __future__ import annotations

import torch


class WindowedVariance:
    """Tracks the variance of the last ``window`` outputs and its running minimum.

    Parameters
    ----------
    window : int
        W, the number of recent outputs.
    warmup : int
        Minima before this step are ignored (a false minimum in the first few hundred
        steps is a known failure of the rule).
    """

    def __init__(self, like: torch.Tensor, window: int, warmup: int,
                 fit_threshold: float = 0.0) -> None:
        self.window = window
        self.warmup = warmup
        # minima also count before the warm-up once the data-fit loss has fallen below this
        # (about the noise variance: the output then fits the data as well as the clean
        # image would); a device flag that stays set once set
        self.fit_threshold = fit_threshold
        self.fitted = torch.zeros((), dtype=torch.bool, device=like.device)
        self.buffer = torch.zeros((window, *like.shape), dtype=torch.float32, device=like.device)
        self.total = torch.zeros_like(like, dtype=torch.float32)
        self.sq_total = torch.zeros((), dtype=torch.float32, device=like.device)
        self.best_value = torch.full((), float("inf"), device=like.device)
        self.best_step = torch.full((), -1, dtype=torch.int64, device=like.device)
        self.best_estimate = torch.zeros_like(like, dtype=torch.float32)
        self.last_value = torch.full((), float("nan"), device=like.device)
        self._numel = like.numel()

    def update(self, step: int, output: torch.Tensor, estimate: torch.Tensor,
               loss: torch.Tensor | None = None) -> None:
        """Add the output of 0-based ``step``; remember ``estimate`` at a new minimum.
        ``loss`` (the step's data-fit loss) lets the rule start before the warm-up."""
        if loss is not None and self.fit_threshold > 0:
            self.fitted |= loss <= self.fit_threshold
        out = output.detach().float()
        slot = step % self.window
        old = self.buffer[slot]
        self.total.add_(out - old)
        self.sq_total.add_(out.square().sum() - old.square().sum())
        old.copy_(out)
        if (step + 1) % self.window == 0:  # cancel drift: exact sums of the full buffer
            self.total.copy_(self.buffer.sum(0))
            self.sq_total.copy_(self.buffer.square().sum())
        if step + 1 < self.window:
            return
        w = self.window
        value = (self.sq_total - self.total.square().sum() / w).clamp_min(0) / (w * self._numel)
        self.last_value = value
        if step < self.warmup and self.fit_threshold <= 0:
            return
        better = value < self.best_value
        if step < self.warmup:
            better = better & self.fitted
        self.best_value = torch.where(better, value, self.best_value)
        self.best_step = torch.where(better, torch.full_like(self.best_step, step), self.best_step)
        self.best_estimate.copy_(torch.where(better, estimate.detach().float(), self.best_estimate))


class Discrepancy:
    """Finds the first step whose estimate's residual falls to ``threshold``.

    The residual is the mean squared difference between the estimate and the target over
    the known pixels (``weight`` > 0, or all). Everything stays on the device: the step
    (-1 until found) and a copy of the estimate at that step.
    """

    def __init__(self, target: torch.Tensor, weight: torch.Tensor | None, denom: float,
                 threshold: float) -> None:
        self.target = target
        self.weight = weight
        self.denom = denom
        self.threshold = threshold
        self.step = torch.full((), -1, dtype=torch.int64, device=target.device)
        self.estimate = torch.zeros_like(target, dtype=torch.float32)
        self.last_value = torch.full((), float("nan"), device=target.device)

    def update(self, step: int, estimate: torch.Tensor) -> None:
        est = estimate.detach().float()
        sq = (est - self.target).square()
        value = (sq * self.weight).sum() / self.denom if self.weight is not None else sq.mean()
        self.last_value = value
        first = (self.step < 0) & (value <= self.threshold)
        self.step = torch.where(first, torch.full_like(self.step, step), self.step)
        self.estimate.copy_(torch.where(first, est, self.estimate))


# How many recent estimates of an R2R fit DivergenceWatch keeps (and averages).
DIVERGENCE_KEEP = 4
# DivergenceWatch (with draws) stops where the net's outputs for the image and for its
# recorrupted copies drift apart: their mean squared difference above this multiple of its
# smallest value so far. Fast preset, two CPU cores: on moon at sigma 50 it first passed
# 1.5 at step 150, the best snapshot (33.44 dB, 3.4 dB above where the divergence
# turned), and on chelsea at sigma 50 at step 450; on the sample at sigma 25, which
# improved for all 600 steps, it never passed 1.5 (after its smallest value, at most 1.12;
# benchmarks/bench_r2r_trace.py, results/r2r_trace_cpu_draws.txt).
DRIFT_RATIO = 1.5
# The drift counts from the first check at which the fit's own estimate of its mean squared
# error (the R2R loss less its offset, averaged over the steps since the last check) is
# below this multiple of the noise variance, i.e. once its estimate is 10 dB better than the
# noisy image. Before that the net is still building the image, and its outputs move
# little with its input for want of content, not for want of an overfit, so their drift
# is small: on colour images (two CPU cores, the fast preset, astronaut at sigma 25) the
# smallest drift came at the first check (18.9 dB), and a 1.5-fold rise at the second
# would have ended the run there; on a dark sky at sigma 50 (hubble_deep_field) the drift
# doubled between steps 50 and 225 while the stars came out, and a gate at the noise
# variance itself (1, before) stopped the run at step 200, 1.5 dB below its best snapshot
# (0.8 with 0.1). On 47 traced runs (two CPU cores, 39 grey runs of the fast preset at
# sigma 15-50, six colour ones, two of four nets; gates of 1, 0.15 and 0.1 modelled on the
# same traces) 0.1 changed two others, grass and gravel at sigma 50, which then ran to
# their end, 0.16 and 0.02 dB lower (benchmarks/RESULTS.md, "The drift's gate").
DRIFT_GATE = 0.1
# The drift stops the run where it is above DRIFT_RATIO at this many checks in a row; the
# estimate of a check above it is held back until the next check says whether the fit
# overfits (both above: the run stops, and both are left out, as a stop at the first
# would have left it out) or the drift came back (the held estimate is kept). With R2R's
# strength of 2 on faint images (config.recorruption_strength) the drift is noisier: on
# hubble_deep_field at sigma 25 it was 1.56 x its smallest since the gate at step 225
# and 1.09 x at the next check, and a stop at the first ended the run there, its net's
# estimate 2.26 dB below that at the end of its 600 steps (benchmarks/RESULTS.md, "The
# drift stop waits for a second check").
DRIFT_CHECKS = 2


class DivergenceWatch:
    """Keeps the last ``keep`` estimates of an R2R fit (the mean of the net's outputs for
    ``draws`` recorrupted copies of the image, or its output for the image) and, with
    ``stop``, says when to stop. With draws: where the two estimates drift apart at
    ``checks`` checks in a row (see :meth:`check`, DRIFT_RATIO and DRIFT_CHECKS); without:
    at the first check at which
    the net's divergence at the image (per value, a Monte-Carlo estimate) is not positive.
    The divergence is recorded in both cases (``last``). The estimate is the mean of the
    kept ones from at least half the latest one's step on, which smooths the step-to-step
    jitter of the fit (in an exploratory run on six 256x256 images at sigma 25, the mean of
    four outputs 25 steps apart was 0.03-0.14 dB above the last).

    Why not the divergence where there are draws: on smooth images it turns negative while
    the fit still improves (the net's output is a good smooth estimate plus a trace of the
    recorruption's negative copy of its input), e.g. on scikit-image's clock at sigma 25
    at step 125, 1.4 dB below the best snapshot, where the drift fired at step 250, 0.2 dB
    below it (results/r2r_trace_cpu_stops.txt).
    """

    def __init__(self, keep: int = DIVERGENCE_KEEP, stop: bool = True, draws: int = 0,
                 drift_ratio: float = DRIFT_RATIO, noise_var: float = 0.0,
                 gate: float = DRIFT_GATE, checks: int = DRIFT_CHECKS) -> None:
        if int(checks) != checks or checks < 1:
            raise ValueError(f"checks: expected a whole number of checks >= 1, got {checks!r}")
        self.keep = keep
        self.stop = stop
        self.draws = draws  # recorrupted copies per estimate (0: the image itself)
        self.drift_ratio = drift_ratio
        self.checks = int(checks)  # checks in a row above the ratio that stop the run
        # (step, estimate, drift over its smallest) of the latest checks above the ratio,
        # held back from the estimate until a check below it (see DRIFT_CHECKS)
        self.held: list[tuple[int, torch.Tensor, float]] = []
        # the drift counts once the fit's error estimate is below gate x noise_var (no
        # gate where either is 0)
        self.gate_level = gate * noise_var if gate > 0 and noise_var > 0 else float("inf")
        self.opened_at: int | None = None  # the check from which the drift counts
        self.least_gap: float | None = None  # the smallest gap so far
        self.reason: str | None = None  # why check() said stop
        self.recent: list[torch.Tensor] = []
        self.steps: list[int] = []
        self.last: float | None = None  # the latest check's divergence
        self.last_gap: float | None = None  # and its gap (with draws)

    def check(self, step: int, estimate: torch.Tensor, divergence: float,
              gap: float | None = None, fit: float | None = None) -> bool:
        """Record the check of ``step``; True where the fit should stop (the estimate of
        this step is then left out, and ``reason`` says why). ``gap`` (with draws): the
        mean squared difference between the net's output for the image and the estimate
        from recorrupted copies; the fit stops where it exceeds ``drift_ratio`` times its
        smallest value so far (the net has begun to fit its inputs off the image's
        neighbourhood, and the two drift apart), counted from the first check whose
        ``fit`` (the fit's estimate of its mean squared error; None: no gate) is below
        the gate (DRIFT_GATE), at ``checks`` checks in a row above it (DRIFT_CHECKS; the
        estimate of a check above it is held back until a check below it). Without draws
        it stops where ``divergence`` is not positive."""
        self.last = float(divergence)
        self.last_gap = gap
        if self.draws and gap is None:
            raise ValueError(f"gap: expected the drift of a watch with draws={self.draws}, "
                             f"got None")
        if self.opened_at is None and (fit is None or fit < self.gate_level):
            self.opened_at = step
        # the drift counts with draws, from the gate on; before, it neither stops the run
        # nor sets its reference
        counts = bool(self.draws) and self.opened_at is not None
        if self.stop and self.recent:
            if not self.draws and divergence <= 0:
                self.reason = (f"the net's divergence at the image turned negative at step "
                               f"{step} (it began to learn the recorruption)")
                return True
            if counts and self.least_gap is not None and (
                    gap > self.drift_ratio * self.least_gap):
                self.held.append((step, estimate, gap / self.least_gap))
                if len(self.held) < self.checks:
                    return False  # held back: the next check says whether it overfits
                steps, ratios = self._held_text()
                self.reason = (f"the net's outputs for the image and for recorrupted copies "
                               f"of it drifted apart at {steps} ({ratios} x their smallest "
                               f"mean squared difference; it began to overfit)")
                return True
        if counts:
            self.least_gap = gap if self.least_gap is None else min(self.least_gap, gap)
        for held_step, held_estimate, _ in self.held:  # the drift came back: keep them
            self._keep(held_step, held_estimate)
        self.held.clear()
        self._keep(step, estimate)
        return False

    def _held_text(self) -> tuple[str, str]:
        """The held checks' steps ("step 75", "steps 150 and 175") and their drifts over
        the smallest ("2.50", "1.60 and 1.80"), for the reason and the description."""
        steps = " and ".join(str(s) for s, _, _ in self.held)
        ratios = " and ".join(f"{r:.2f}" for _, _, r in self.held)
        return f"step{'s' if len(self.held) > 1 else ''} {steps}", ratios

    def _keep(self, step: int, estimate: torch.Tensor) -> None:
        self.recent.append(estimate)
        self.steps.append(step)
        del self.recent[:-self.keep], self.steps[:-self.keep]

    def _used(self) -> list[int]:
        """Indices of the kept estimates that are averaged: those from at least half the
        latest one's step on (a short run's first outputs are far from its last)."""
        return [i for i, s in enumerate(self.steps) if 2 * s >= self.steps[-1]]

    @property
    def estimate(self) -> torch.Tensor:
        return torch.stack([self.recent[i] for i in self._used()]).mean(0)

    def describe(self) -> str:
        used = [self.steps[i] for i in self._used()]
        at = f"step {used[0]}" if len(used) == 1 else f"steps {', '.join(map(str, used))}"
        if self.draws:
            held = ""
            if self.held and self.reason is None:  # the run ended on a check above the ratio
                steps, ratios = self._held_text()
                held = (f" (left out: {steps}, whose drift was {ratios} x its smallest, with "
                        f"no later check to say whether the fit overfits)")
            return (f"mean of the net's outputs for {self.draws} recorrupted copies of the "
                    f"image at {at}{held}")
        if len(used) == 1:
            return f"the net's output for the image at {at}"
        return f"mean of the net's outputs for the image at {at}"


class HoldoutWatch:
    """Keeps the estimates of a hold-out fit (``loss="holdout"``) and, with ``stop``, says
    when to stop. The fit's loss is its squared error on known pixels hidden from the
    net, so, unlike the papers' loss, it measures how well the net predicts pixels it was
    not shown, the thing the gaps need: it falls while the fit improves and stops
    falling when it no longer does (on noisy data it includes the noise variance, a
    constant). A check gets the mean loss since the previous check (``error``); the
    estimate is the mean of the last ``keep`` checks' estimates from at least half the
    latest one's step on (the fit jitters with the random choice of hidden pixels), and
    the watch holds on to the estimate at the check with the lowest error so far, which
    is what the run returns. With ``stop`` it says stop once ``patience`` steps have
    passed without a new lowest error.
    """

    def __init__(self, keep: int = DIVERGENCE_KEEP, stop: bool = True,
                 patience: int = 300) -> None:
        self.keep = keep
        self.stop = stop
        self.patience = patience
        self.recent: list[torch.Tensor] = []
        self.steps: list[int] = []
        self.best_error = float("inf")
        self.best_step: int | None = None
        self.best_steps: list[int] = []  # the steps averaged into the best estimate
        self.best_estimate: torch.Tensor | None = None
        self.last_error: float | None = None
        self.reason: str | None = None
        self.recent_extra: list[torch.Tensor | None] = []
        self.best_extra: torch.Tensor | None = None

    def check(self, step: int, estimate: torch.Tensor, error: float,
              extra: torch.Tensor | None = None) -> bool:
        """Record the check of ``step`` with its ``estimate`` and the mean hold-out
        ``error`` since the last check; True where the fit should stop (``reason`` says
        why). ``extra``, a tensor kept and averaged like the estimate (``best_extra``):
        the net's predictions of the hidden pixels, for the blend in the gaps."""
        self.last_error = float(error)
        self.recent.append(estimate)
        self.recent_extra.append(extra)
        self.steps.append(step)
        del self.recent[:-self.keep], self.steps[:-self.keep]
        del self.recent_extra[:-self.keep]
        if self.best_step is None or error < self.best_error:
            self.best_error = float(error)
            self.best_step = step
            used = self._used()
            self.best_steps = [self.steps[i] for i in used]
            self.best_estimate = torch.stack([self.recent[i] for i in used]).mean(0)
            extras = [self.recent_extra[i] for i in used]
            self.best_extra = (torch.stack(extras).mean(0)
                               if all(e is not None for e in extras) else None)
        if self.stop and step - self.best_step >= self.patience:
            self.reason = (f"no new low of the error on hidden pixels for {self.patience} "
                           f"steps after step {self.best_step}")
            return True
        return False

    def _used(self) -> list[int]:
        return [i for i, s in enumerate(self.steps) if 2 * s >= self.steps[-1]]

    @property
    def estimate(self) -> torch.Tensor:
        """The estimate of the check with the lowest error so far."""
        if self.best_estimate is None:
            raise RuntimeError("estimate: no check recorded yet")
        return self.best_estimate

    def describe(self) -> str:
        at = self.best_steps
        where = f"step {at[0]}" if len(at) == 1 else f"steps {', '.join(map(str, at))}"
        return (f"mean of the estimates at {where} (the lowest error on hidden pixels, "
                f"{self.best_error:.3g}, at step {self.best_step})")
