"""Large inputs: a memory model, tiling with overlap and seamless blending, and the
out-of-memory fallback.

A DIP net keeps every activation of one forward pass for the backward pass, so its memory
grows with ``width x pixels``: the papers' net needs about 2 GiB at 512 x 512 and would
need about 150 GiB at 4096 x 4096. :func:`run` estimates what a run needs, compares it with
a memory budget (by default what the device has free) and, when the image does not fit,
restores it in overlapping tiles, one after the other, and blends them with weights that
sum to one everywhere (raised-cosine ramps centred in every overlap), so that no seam is
left. A run that still runs out of memory is restarted with tiles half the size.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np
import torch

from . import arrays, engine
from .config import DIPConfig, SGLDConfig, net_config
from .device import is_out_of_memory, release
from .nets import SkipNet, axis_levels
from .stopping import DIVERGENCE_KEEP, DRIFT_CHECKS

# Bytes per pixel that one training step keeps alive (activations, their gradients,
# temporaries): ACTIVATION_BYTES per channel of net width plus ACTIVATION_BASE, fitted to
# measured CUDA peaks on an NVIDIA H200 (benchmarks/RESULTS.md): the papers' net (width
# 128) at 512 x 512 RGB, 2.15 GiB in float32 and 1.36 GiB with bfloat16 autocast, and the
# fast preset (width 32) at 2912 x 2912 grey, 23.1 GiB. MARGIN covers the allocator's
# rounding and fragmentation: the estimate lands 5-10 % above those peaks.
ACTIVATION_BYTES = 48.0
ACTIVATION_BASE = 1110.0
BF16_FACTOR = 0.55
MARGIN = 1.05
# Bytes per parameter: weights, gradients, Adam's two moments, and the three copies the
# backtracking keeps.
PARAMETER_BYTES = 28
MIN_TILE = 32  # smallest tile edge the planner tries before giving up


@dataclass(frozen=True)
class Tile:
    """One tile: ``index`` in the plan and the ``slices`` of the spatial axes it covers."""

    index: int
    slices: tuple[slice, ...]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(s.stop - s.start for s in self.slices)


@dataclass(frozen=True)
class TilePlan:
    """Overlapping tiles that cover an image, and their blending weights.

    Build it with :func:`plan_tiles`.
    """

    spatial: tuple[int, ...]
    tile: tuple[int, ...]
    overlap: int
    starts: tuple[tuple[int, ...], ...]  # per axis, the start of every tile
    tiles: list[Tile] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.tiles)

    def weights(self, tile: Tile) -> np.ndarray:
        """Blending weights of ``tile`` (its shape, float32). The weights of all tiles
        sum to exactly one at every pixel of the image."""
        out = np.ones((), np.float32)
        position = np.unravel_index(tile.index, [len(s) for s in self.starts])
        for axis, k in enumerate(position):
            w = _axis_weights(self.starts[axis], self.tile[axis], self.spatial[axis],
                              self.overlap, int(k))
            out = np.multiply.outer(out, w) if out.ndim else w
        return out.astype(np.float32)

    def describe(self) -> dict[str, Any]:
        return {"tiles": len(self.tiles), "tile_shape": list(self.tile), "overlap": self.overlap}


def _axis_starts(size: int, tile: int, overlap: int) -> tuple[int, ...]:
    if tile >= size:
        return (0,)
    n = math.ceil((size - overlap) / (tile - overlap))
    return tuple(int(round(v)) for v in np.linspace(0, size - tile, n))


def _axis_weights(starts: tuple[int, ...], tile: int, size: int, overlap: int, k: int) -> np.ndarray:
    """1-D weights of tile ``k`` along one axis: one inside, raised-cosine ramps of length
    ``overlap`` centred in the overlaps with its neighbours, zero beyond them."""
    length = min(tile, size)
    a = starts[k]
    x = np.arange(a, a + length, dtype=np.float64) + 0.5
    w = np.ones(length)
    ramp = max(overlap, 1)
    if k > 0:  # rising ramp centred in the overlap with the previous tile
        centre = (a + starts[k - 1] + length) / 2.0
        t = np.clip((x - (centre - ramp / 2.0)) / ramp, 0.0, 1.0)
        w *= 0.5 - 0.5 * np.cos(np.pi * t)
    if k < len(starts) - 1:  # falling ramp centred in the overlap with the next tile
        centre = (starts[k + 1] + a + length) / 2.0
        t = np.clip((x - (centre - ramp / 2.0)) / ramp, 0.0, 1.0)
        w *= 0.5 + 0.5 * np.cos(np.pi * t)
    return w


def plan_tiles(spatial: tuple[int, ...], tile: int | tuple[int, ...], overlap: int) -> TilePlan:
    """Cover an image of spatial shape ``spatial`` with tiles of edge ``tile`` (per axis, or
    one value for all; an axis shorter than the tile is not split) that overlap by at least
    ``overlap`` pixels."""
    spatial = tuple(int(s) for s in spatial)
    sizes = (tile,) * len(spatial) if np.isscalar(tile) else tuple(tile)
    if len(sizes) != len(spatial) or any(int(t) < 1 for t in sizes):
        raise ValueError(f"tile_size: expected a positive size per axis of {spatial}, got {tile!r}")
    sizes = tuple(min(int(t), s) for t, s in zip(sizes, spatial))
    if overlap < 0:
        raise ValueError(f"tile_overlap: expected an integer >= 0, got {overlap}")
    for t, s in zip(sizes, spatial):
        if t < s and overlap >= t:
            raise ValueError(
                f"tile_overlap: expected less than the tile size {t}, got {overlap}")
    starts = tuple(_axis_starts(s, t, overlap) for s, t in zip(spatial, sizes))
    tiles = []
    for index, position in enumerate(np.ndindex(*[len(s) for s in starts])):
        slices = tuple(slice(starts[a][k], starts[a][k] + sizes[a])
                       for a, k in enumerate(position))
        tiles.append(Tile(index, slices))
    return TilePlan(spatial, sizes, int(overlap), starts, tiles)


class Mosaic:
    """Accumulates tile results ``(C, *tile)`` into a blended ``(C, *spatial)`` image."""

    def __init__(self, plan: TilePlan, channels: int) -> None:
        self.plan = plan
        self.total = np.zeros((channels, *plan.spatial), np.float32)
        self.weight = np.zeros((1, *plan.spatial), np.float32)

    def add(self, tile: Tile, values: np.ndarray) -> None:
        w = self.plan.weights(tile)[None]
        region = (slice(None),) + tile.slices
        self.total[region] += values * w
        self.weight[region] += w

    def preview(self, tile: Tile, values: np.ndarray, background: np.ndarray) -> np.ndarray:
        """The blend of the finished tiles with ``values`` for ``tile`` (not yet added);
        ``background`` where nothing has been restored yet."""
        w = self.plan.weights(tile)[None]
        region = (slice(None),) + tile.slices
        out = np.where(self.weight > 0, self.result(), background)
        total = self.total[region] + values * w
        weight = self.weight[region] + w
        out[region] = np.where(weight > 0, total / np.maximum(weight, 1e-12), background[region])
        return out

    def result(self) -> np.ndarray:
        return self.total / np.maximum(self.weight, 1e-12)


# ---------------------------------------------------------------------------------------
# memory model
# ---------------------------------------------------------------------------------------
def estimate_memory(cfg: DIPConfig, spatial: tuple[int, ...], channels: int,
                    device_type: str = "cuda") -> int:
    """Bytes a run of ``cfg`` on an image of ``spatial`` shape with ``channels`` channels
    needs on the device (an estimate, 5-10 % above measured CUDA peaks)."""
    levels = axis_levels(tuple(spatial), cfg.scales)
    pads = arrays.pad_amounts(tuple(spatial), levels)
    padded = [s + a + b for s, (a, b) in zip(spatial, pads)]
    pixels = float(np.prod(padded))
    net_cfg = net_config(cfg, channels)
    act = (ACTIVATION_BYTES * net_cfg.width + ACTIVATION_BASE) * pixels * cfg.members
    sure = cfg.loss == "sure"
    if sure:  # two forward passes (the image and its perturbation) kept for one backward
        act *= 2.0
    elif cfg.precision == "bfloat16" and device_type == "cuda":
        act *= BF16_FACTOR
    with torch.device("meta"):
        params = sum(p.numel() for p in SkipNet(net_cfg, channels, nd=len(spatial),
                                                levels=levels).parameters())
    # per-pixel buffers: target, weight, output, EMA, best estimate, SGLD moments, the stop
    # rule's window of outputs (R2R: its recent estimates), and the input code with its jitter
    images = 8 + (cfg.stop_window if cfg.auto_stop and not isinstance(cfg, SGLDConfig) else 0)
    if cfg.loss in ("r2r", "holdout"):  # the estimates the watch averages
        images += DIVERGENCE_KEEP
    if cfg.loss == "r2r":  # and those its drift stop holds back (DRIFT_CHECKS)
        images += DRIFT_CHECKS
    if cfg.loss == "holdout":  # the push-pull fill's levels, the hidden pixels, their groups
        images += 12
    buffers = 4.0 * pixels * (channels * (images + cfg.members)
                              + 2 * net_cfg.input_channels * cfg.members)
    return int(MARGIN * (act + buffers + PARAMETER_BYTES * params))


def device_budget(device: torch.device) -> int:
    """Bytes a run may use on ``device``: 90 % of the free GPU memory, or half of the
    available system memory for the CPU (and for Apple MPS, which shares it)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(0.9 * free)
    available = _available_system_memory()
    return int(0.5 * available)


def _available_system_memory() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 * 2**30


def resolve_budget(memory_budget: Any, device: torch.device) -> int:
    """``memory_budget`` in GiB (a number) or None for the device's own budget, as bytes."""
    if memory_budget is None:
        return device_budget(device)
    if isinstance(memory_budget, bool) or not isinstance(memory_budget, (int, float)):
        raise TypeError(f"memory_budget: expected a number of GiB or None, got {memory_budget!r}")
    if not math.isfinite(memory_budget) or memory_budget <= 0:
        raise ValueError(f"memory_budget: expected a number of GiB > 0, got {memory_budget!r}")
    return int(memory_budget * 2**30)


def choose_tile(cfg: DIPConfig, spatial: tuple[int, ...], channels: int, budget: int,
                device_type: str = "cuda") -> int | None:
    """The tile edge to use: ``cfg.tile_size`` when set, None when the whole image fits
    the budget, else the largest multiple of 32 (at least 2 x the overlap) whose tiles
    fit. Raises ValueError when not even the smallest tile fits."""
    if cfg.tile_size > 0:
        return cfg.tile_size if cfg.tile_size < max(spatial) else None
    if estimate_memory(cfg, spatial, channels, device_type) <= budget:
        return None
    smallest = MIN_TILE  # the overlap shrinks to a quarter of small tiles
    edge = (max(spatial) // 32) * 32
    while edge >= smallest:
        shape = tuple(min(edge, s) for s in spatial)
        if estimate_memory(cfg, shape, channels, device_type) <= budget:
            return edge
        edge = edge - 32 if edge <= 256 else int(edge * 0.85) // 32 * 32
    need = estimate_memory(cfg, tuple(min(smallest, s) for s in spatial), channels, device_type)
    raise ValueError(
        f"memory_budget: {budget / 2**30:.2f} GiB is not enough even for tiles of "
        f"{smallest} pixels (about {need / 2**30:.2f} GiB); give a larger budget, a narrower "
        f"net (width={cfg.width}) or a lighter preset"
    )


# ---------------------------------------------------------------------------------------
# the driver
# ---------------------------------------------------------------------------------------
def plan_run(prep: arrays.Prepared, cfg: DIPConfig, device: torch.device,
             memory_budget: Any = None) -> tuple[int | None, list[str]]:
    """Decide, before a run starts, whether it is tiled: the tile edge (None: the whole
    image) and a note saying why. Raises for an impossible budget or a tile that lies
    wholly in a mask's holes."""
    spatial = tuple(prep.data.shape[1:])
    channels = prep.data.shape[0]
    budget = resolve_budget(memory_budget, device)
    edge = choose_tile(cfg, spatial, channels, budget, device.type)
    if edge is None:
        return None, []
    check_tiles(tile_plan(cfg, spatial, edge), prep.known)
    if cfg.tile_size:
        return edge, [f"tiled: tile_size={cfg.tile_size}"]
    need = estimate_memory(cfg, spatial, channels, device.type)
    return edge, [f"tiled: the whole image needs about {need / 2**30:.1f} GiB (budget "
                  f"{budget / 2**30:.1f} GiB)"]


def run(
    prep: arrays.Prepared,
    cfg: DIPConfig,
    *,
    device: torch.device,
    seed: int,
    output_dtype: Any = None,
    keep_known: bool = False,
    plan: tuple[int | None, list[str]] | None = None,
    finish: Callable[[], bool] | None = None,
) -> Iterator[engine.Snapshot]:
    """Run the engine on the whole image, or tile by tile, as ``plan`` (from
    :func:`plan_run`; made here with the device's budget when None) says; on an
    out-of-memory error start again with tiles half the size. ``finish``: see
    :func:`engine.run`; tiles share ``cfg.time_limit``, counted from the start."""
    end = time.perf_counter() + cfg.time_limit if cfg.time_limit > 0 else None
    spatial = tuple(prep.data.shape[1:])
    edge, notes = plan if plan is not None else plan_run(prep, cfg, device)
    notes = list(notes)
    offset = 0  # steps reported before a restart: the count goes on from there
    while True:
        reported = offset
        try:
            if edge is None:
                source = engine.run(prep, cfg, device=device, seed=seed,
                                    output_dtype=output_dtype, keep_known=keep_known,
                                    finish=finish)
            else:
                source = _run_tiles(prep, cfg, edge, notes, device=device, seed=seed,
                                    output_dtype=output_dtype, keep_known=keep_known,
                                    finish=finish, end=end)
            for snap in source:
                snap.info.notes.extend(n for n in notes if n not in snap.info.notes)
                snap.step += offset
                snap.max_steps += offset
                reported = snap.step
                yield snap
            return
        except Exception as exc:  # noqa: BLE001 - only out-of-memory errors are handled
            if not is_out_of_memory(exc, device):
                raise
            release(device)
            current = edge if edge is not None else max(spatial)
            smaller = max(MIN_TILE, (current // 2) // 32 * 32)
            if smaller >= current:
                hint = "device='cpu', " if device.type != "cpu" else ""
                raise MemoryError(
                    f"out of memory on {device} even with tiles of {current} pixels "
                    f"({type(exc).__name__}); try {hint}a narrower net (width={cfg.width}) "
                    f"or a lighter preset"
                ) from exc
            notes.append(f"out of memory with {'the whole image' if edge is None else f'tiles of {edge}'}"
                         f" ({type(exc).__name__}) after {reported} steps; started again with "
                         f"tiles of {smaller}")
            edge = smaller
            offset = reported


def tile_plan(cfg: DIPConfig, spatial: tuple[int, ...], edge: int) -> TilePlan:
    """The tiles of edge ``edge`` a run of ``cfg`` uses (the overlap shrinks to a quarter
    of small tiles)."""
    return plan_tiles(spatial, edge, min(cfg.tile_overlap, edge // 4))


def check_tiles(plan: TilePlan, known: np.ndarray | None) -> None:
    """Refuse a plan with a tile that lies wholly in a mask's missing pixels."""
    if known is None:
        return
    for tile in plan.tiles:
        if not known[(slice(None),) + tile.slices].any():
            raise ValueError(
                f"tile_size: tile {tile.index + 1} of {len(plan)} ({tile.shape}) lies wholly "
                f"in the mask's missing pixels; use larger tiles (tile_size) so that every "
                f"tile sees known pixels"
            )


def whole_image_strength(prep: arrays.Prepared, cfg: DIPConfig) -> tuple[DIPConfig, str | None]:
    """``cfg`` for the tiles of ``prep``: an R2R run that leaves its strength to the run
    (``r2r_alpha=None``) gets the whole image's, so that a tile of background alone, which
    would read a low signal-to-noise ratio, is not smoothed more than its neighbours; and
    the note that says so (None where nothing changes)."""
    if cfg.loss != "r2r" or cfg.r2r_alpha is not None or prep.known is not None:
        return cfg, None
    given = engine.given_noise_variance(prep, cfg)
    alpha, ratio = engine.r2r_strength(prep.data,
                                       engine.image_noise_variance(prep.data, cfg, given)[0])
    return cfg.replace(r2r_alpha=alpha), (
        f"tiles: R2R's alpha {alpha:.2g} for every tile, set by the whole image's variance, "
        f"{ratio:.2f} x its noise variance")


def _run_tiles(
    prep: arrays.Prepared, cfg: DIPConfig, edge: int, notes: list[str], *,
    device: torch.device, seed: int, output_dtype: Any, keep_known: bool,
    finish: Callable[[], bool] | None = None, end: float | None = None,
) -> Iterator[engine.Snapshot]:
    """The tiles of ``prep`` one after another; with ``end`` (a ``time.perf_counter()``
    value), each tile's fit may take the time left divided by the tiles left. Once
    ``finish()`` is true, the tile in progress ends its fit, and every later tile ends
    at the step where that one did, so that the tiles stay alike."""
    spatial = tuple(prep.data.shape[1:])
    channels = prep.data.shape[0]
    plan = tile_plan(cfg, spatial, edge)
    overlap = plan.overlap
    check_tiles(plan, prep.known)
    sgld = isinstance(cfg, SGLDConfig)
    cfg, shared = whole_image_strength(prep, cfg)
    if shared is not None and shared not in notes:
        notes.append(shared)
    mosaic = Mosaic(plan, channels)
    var_mosaic = Mosaic(plan, channels) if sgld else None
    info = None
    steps_done = 0
    pending: list[np.ndarray] = []  # losses of finished tiles not yet reported
    t0 = time.perf_counter()
    reasons: list[str] = []
    matched: int | None = None  # the steps of the tile in progress when finish() turned
    given = engine.given_noise_variance(prep, cfg)  # the whole image's, for every tile
    given_std = 0.0 if given is None else float(np.sqrt(given))
    for tile in plan.tiles:
        region = (slice(None),) + tile.slices
        known = None if prep.known is None else np.ascontiguousarray(prep.known[region])
        sub = arrays.Prepared(
            data=np.ascontiguousarray(prep.data[region]), known=known, reference=None,
            lo=0.0, hi=1.0, shape=(channels, *tile.shape), dtype=np.dtype(np.float32),
            channel_axis=0, ndim_spatial=prep.ndim_spatial, noise_std=given_std,
        )
        final = None
        deadline = None
        if end is not None:
            now = time.perf_counter()
            deadline = now + max(end - now, 0.0) / (len(plan) - tile.index)
        tile_finish = finish if matched is None else _after_steps(matched, cfg.snapshot_every)
        for snap in engine.run(sub, cfg, device=device, seed=seed, finish=tile_finish,
                               deadline=deadline):
            if info is None:
                info = engine.RunInfo(
                    method=cfg.method, config=cfg, seed=seed, device=snap.info.device,
                    input_shape=tuple(prep.shape), input_dtype=str(prep.dtype),
                    channel_axis=prep.channel_axis, padded_shape=snap.info.padded_shape,
                    parameters=snap.info.parameters,
                )
                info.tiles = plan.describe()
                if cfg.noise_std > 0:  # else each tile reads its own
                    info.noise_std = float(cfg.noise_std)
            info.notes[:] = notes + [f"{len(plan)} tiles of {list(plan.tile)} "
                                     f"(overlap {overlap})"] + snap.info.notes
            if snap.done:
                final = snap
                break
            image = mosaic.preview(tile, snap.image, prep.data)
            var = None
            if var_mosaic is not None and (snap.variance is not None or tile.index > 0):
                # the tiles done keep showing their variance while this one burns in
                current = snap.variance if snap.variance is not None else np.zeros_like(
                    snap.image)
                var = var_mosaic.preview(tile, current, np.zeros_like(prep.data))
            if pending:
                snap.losses = np.concatenate(pending + [snap.losses])
                pending = []
            yield _tiled_snapshot(snap, prep, image, var, output_dtype, info,
                                  step=steps_done + snap.step, tile=tile.index, tiles=len(plan),
                                  max_steps=cfg.steps * len(plan),
                                  elapsed=time.perf_counter() - t0)
        assert final is not None
        pending.append(final.losses)
        steps_done += final.step
        reasons.append(final.stop_reason or "")
        if matched is None and finish is not None and finish():
            matched = final.step
        mosaic.add(tile, final.image)
        if var_mosaic is not None:
            var_mosaic.add(tile, final.variance if final.variance is not None
                           else np.zeros_like(final.image))
    image = mosaic.result()
    var = var_mosaic.result() if var_mosaic is not None else None
    unique = list(dict.fromkeys(reasons))
    reason = (f"{len(plan)} tiles, each: {unique[0]}" if len(unique) == 1 else
              f"{len(plan)} tiles: " + "; ".join(f"tile {i + 1}: {r}" for i, r in enumerate(reasons)))
    final.losses = np.concatenate(pending) if pending else final.losses
    snap = _tiled_snapshot(final, prep, image, var, output_dtype, info, step=steps_done,
                           tile=len(plan) - 1, tiles=len(plan), max_steps=cfg.steps * len(plan),
                           elapsed=time.perf_counter() - t0, done=True, reason=reason, keep_known=keep_known)
    yield snap


def _after_steps(steps: int, every: int) -> Callable[[], bool]:
    """A ``finish`` for :func:`engine.run` that turns true at the snapshot of step
    ``steps`` (it is polled once per snapshot, every ``every`` steps)."""
    polls = [0]

    def finish() -> bool:
        polls[0] += 1
        return polls[0] * every >= steps
    return finish


def _tiled_snapshot(
    snap: engine.Snapshot, prep: arrays.Prepared, image: np.ndarray, var: np.ndarray | None,
    output_dtype: Any, info: engine.RunInfo, *, step: int, tile: int, tiles: int,
    max_steps: int, elapsed: float, done: bool = False, reason: str | None = None,
    keep_known: bool = False,
) -> engine.Snapshot:
    user = arrays.restore_layout(np.clip(image, 0.0, 1.0), prep, output_dtype=output_dtype)
    if done and keep_known:
        user = arrays.keep_known_pixels(user, prep, output_dtype=output_dtype)
    variance = None if var is None else arrays.variance_to_user(var, prep)
    return engine.Snapshot(
        step=step, loss=snap.loss, image=user, variance=variance,
        psnr=None if prep.reference is None else engine.psnr(user, prep.reference),
        stop_reason=reason, done=done, elapsed=elapsed, max_steps=max_steps,
        best_step=None, samples=snap.samples, losses=snap.losses, info=info,
        tile=tile, tiles=tiles, divergence=snap.divergence, drift=snap.drift,
    )
