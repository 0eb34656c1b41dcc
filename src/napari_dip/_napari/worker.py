"""Running a restoration in the background for the napari widget.

:func:`plan_frames` splits an n-D layer into the 2-D/3-D pieces the engine restores one
at a time; :func:`restore_frames` is the generator that runs them, yielding an
:class:`Update` at every engine snapshot; :func:`start_worker` wraps it in a napari
``thread_worker``. Nothing here touches layers: the widget does that in the worker's
``yielded`` and ``finished`` slots, in the main thread.
"""

from __future__ import annotations

import itertools
import traceback
from dataclasses import dataclass, field
from typing import Any, Generator, Iterator

import numpy as np

from ..core import iterate
from ..core.engine import Snapshot

#: How an n-D layer is processed: as one image or volume, as 2-D planes one by one, or
#: frame by frame along its first axis (time series).
MODES = ("whole", "slices", "frames")


@dataclass(frozen=True)
class FramePlan:
    """The pieces of an array that the engine restores one after the other.

    Attributes
    ----------
    indices : list of tuple
        Index of every piece into the full array (``[()]``: the whole array).
    positions : list of tuple of int
        The position of every piece along the iterated axes (for provenance).
    lead_axes : tuple of int
        The iterated axes of the full array.
    channel_axis : int or None
        Channel axis of the full array (non-negative).
    frame_channel_axis : int or None
        Channel axis within a piece.
    """

    indices: list[tuple]
    positions: list[tuple[int, ...]]
    lead_axes: tuple[int, ...]
    channel_axis: int | None
    frame_channel_axis: int | None

    def __len__(self) -> int:
        return len(self.indices)


def plan_frames(shape: tuple[int, ...], channel_axis: int | None, mode: str) -> FramePlan:
    """Split an array of ``shape`` into pieces of 2 or 3 spatial axes.

    ``mode`` is "whole" (one 2-D image or 3-D volume), "slices" (every 2-D plane) or
    "frames" (along the first non-channel axis, e.g. time).
    """
    ndim = len(shape)
    ch = None if channel_axis is None else int(channel_axis) % ndim
    axes = [a for a in range(ndim) if a != ch]
    n = len(axes)
    shape_txt = " x ".join(map(str, shape))
    if mode == "whole":
        if n not in (2, 3):
            raise ValueError(
                f"The image ({shape_txt}) has {n} axes besides channels; a whole run takes "
                "2 (Y, X) or 3 (Z, Y, X). Choose 'frames along first axis' or '2-D slices'."
            )
        lead: list[int] = []
    elif mode == "frames":
        if n - 1 not in (2, 3):
            raise ValueError(
                f"The image ({shape_txt}) has {n} axes besides channels; frames along the "
                "first axis need 3 (T, Y, X) or 4 (T, Z, Y, X)."
            )
        lead = axes[:1]
    elif mode == "slices":
        if n < 3:
            raise ValueError(
                f"The image ({shape_txt}) is 2-D: there are no slices; process it whole."
            )
        lead = axes[:-2]
    else:
        raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
    indices, positions = [], []
    for pos in itertools.product(*(range(shape[a]) for a in lead)):
        idx: list[Any] = [slice(None)] * ndim
        for a, i in zip(lead, pos):
            idx[a] = i
        indices.append(tuple(idx) if lead else ())
        positions.append(tuple(int(i) for i in pos))
    frame_ch = None if ch is None else ch - sum(1 for a in lead if a < ch)
    return FramePlan(indices, positions, tuple(lead), ch, frame_ch)


def mask_for_frame(mask: np.ndarray | None, shape: tuple[int, ...], plan: FramePlan,
                   k: int) -> np.ndarray | None:
    """The part of ``mask`` that belongs to piece ``k`` of an array of ``shape``.

    The mask may have the array's shape, its shape without channels, or (for pieces) the
    shape of one piece's spatial axes, which then applies to every piece.
    """
    if mask is None:
        return None
    idx = plan.indices[k]
    ch = plan.channel_axis
    if mask.shape == tuple(shape):
        return mask[idx] if idx else mask
    no_ch = tuple(s for a, s in enumerate(shape) if a != ch)
    if mask.shape == no_ch:
        if not idx:
            return mask
        return mask[tuple(i for a, i in enumerate(idx) if a != ch)]
    piece = tuple(s for a, s in enumerate(shape) if a != ch and a not in plan.lead_axes)
    if mask.shape == piece:
        return mask
    raise ValueError(
        f"The mask ({' x '.join(map(str, mask.shape))}) does not fit the image "
        f"({' x '.join(map(str, shape))}): expected the image's shape"
        + (f" or {' x '.join(map(str, no_ch))}" if ch is not None else "")
        + (f" or one frame's {' x '.join(map(str, piece))}" if plan.lead_axes else "")
    )


@dataclass
class Update:
    """What the worker yields at every engine snapshot."""

    frame: int
    n_frames: int
    snapshot: Snapshot


@dataclass
class Failure:
    """What the worker returns when the engine raised an error."""

    frame: int
    error: BaseException
    traceback: str = field(repr=False, default="")

    @property
    def message(self) -> str:
        return str(self.error) or type(self.error).__name__


@dataclass
class RunRequest:
    """Everything a run needs, collected in the main thread.

    ``data`` is the layer's array (only read, piece by piece); ``mask`` a private boolean
    copy (nonzero = missing); ``options`` the keyword arguments of
    :func:`napari_dip.iterate` other than ``image``, ``mask`` and ``channel_axis``.
    """

    data: Any
    mask: np.ndarray | None
    plan: FramePlan
    options: dict[str, Any]

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(np.shape(self.data))

    def frame_image(self, k: int) -> np.ndarray:
        idx = self.plan.indices[k]
        return np.asarray(self.data[idx] if idx else self.data)

    def engine(self, k: int) -> Iterator[Snapshot]:
        """The engine's generator for piece ``k`` (arguments are checked here)."""
        return iterate(
            self.frame_image(k),
            mask=mask_for_frame(self.mask, self.shape, self.plan, k),
            channel_axis=self.plan.frame_channel_axis,
            **self.options,
        )


def restore_frames(request: RunRequest, first: Iterator[Snapshot] | None = None
                   ) -> Generator[Update, None, Failure | None]:
    """Restore every piece of ``request`` in turn, yielding an :class:`Update` per snapshot.

    ``first`` is the already created engine generator of piece 0 (so that its arguments
    were checked before the worker started). Returns None, or a :class:`Failure` when the
    engine raised. Closing this generator closes the engine's, which frees device memory.
    """
    n = len(request.plan)
    for k in range(n):
        gen = None
        try:
            gen = first if (k == 0 and first is not None) else request.engine(k)
            for snap in gen:
                yield Update(k, n, snap)
        except Exception as exc:  # noqa: BLE001 - reported to the user by the widget
            return Failure(k, exc, traceback.format_exc())
        finally:
            if gen is not None:
                gen.close()
    return None


def _drive(steps: Generator[Update, None, Any]) -> Generator[Update, None, Any]:
    """Worker body: runs a generator that the caller owns (and closes when done)."""
    return (yield from steps)


def start_worker(steps: Generator[Update, None, Any], *, connect: dict[str, Any]):
    """Run ``steps`` in a napari ``thread_worker``; signals are connected before it starts.

    Returns the (started) :class:`napari.qt.threading.GeneratorWorker`.
    """
    from napari.qt.threading import thread_worker

    worker = thread_worker(_drive, start_thread=False)(steps)
    for signal, slots in connect.items():
        for slot in slots if isinstance(slots, (list, tuple)) else [slots]:
            getattr(worker, signal).connect(slot)
    worker.start()
    return worker
