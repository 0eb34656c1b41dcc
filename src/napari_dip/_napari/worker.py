"""Running a restoration in the background for the napari widget.

:func:`plan_frames` splits an n-D layer into the 2-D/3-D pieces the engine restores one
at a time; :func:`restore_frames` is the generator that runs them, yielding an
:class:`Update` at every engine snapshot; :func:`start_worker` wraps it in a napari
``thread_worker``. :func:`restore_frames_dask` does the same work on a Dask cluster: every
piece is a task, and a piece is yielded once, when its task finishes, in completion order.
Nothing here touches layers: the widget does that in the worker's ``yielded`` and
``finished`` slots, in the main thread.
"""

from __future__ import annotations

import contextlib
import itertools
import time
import traceback
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Generator, Iterator

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
    """What the worker yields at every engine snapshot (on a Dask cluster: the final
    snapshot of each piece, and the ``worker`` that restored it)."""

    frame: int
    n_frames: int
    snapshot: Snapshot
    worker: str | None = None


@dataclass
class Failure:
    """What the worker returns when the engine raised an error.

    ``scope`` is ``"frame"`` when piece ``frame`` failed, ``"cluster"`` when the Dask
    scheduler could not be reached or started.
    """

    frame: int
    error: BaseException
    traceback: str = field(repr=False, default="")
    scope: str = "frame"

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
    Where the options' ``finish`` (see :func:`napari_dip.iterate`) has turned true, the
    pieces not started yet are left out.
    """
    n = len(request.plan)
    finish = request.options.get("finish")
    for k in range(n):
        if k > 0 and finish is not None and finish():
            return None  # finished early: the pieces not started stay empty
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


# ---------------------------------------------------------------------------------------
# the pieces as tasks on a Dask cluster
# ---------------------------------------------------------------------------------------
#: The label of the widget's field that names the scheduler (errors start with it).
SCHEDULER_FIELD = "Dask scheduler"
#: Seconds to wait for a scheduler given by its address or scheduler file.
CONNECT_TIMEOUT = 10.0
_SCHEDULER_EXPECTED = ("'local', 'local:N' (N >= 1 worker processes on this machine), a "
                       "scheduler address such as 'tcp://host:8786', a scheduler file (.json), "
                       "or nothing to run here")


@dataclass
class ClusterStatus:
    """What the Dask path yields besides finished pieces: a line for the status, and once
    connected, the cluster's ``description`` and scheduler ``address``."""

    text: str
    description: str | None = None
    address: str | None = None


def parse_scheduler(text: str) -> Any:
    """Check the text of the Dask scheduler field and import Dask distributed.

    Returns a :class:`napari_dip.distributed.ClusterSpec`. Raises ValueError, naming the
    field, for text that is not a cluster or when Dask is not installed.
    """
    from .. import distributed as dd

    value = str(text).strip()
    try:
        spec = dd.parse_cluster(value, name=SCHEDULER_FIELD)
    except ValueError as exc:
        detail = str(exc)
        if "scheduler file" in detail:  # a .json path that does not exist
            raise ValueError(detail) from None
        raise ValueError(f"{SCHEDULER_FIELD}: expected {_SCHEDULER_EXPECTED}; got {value!r}") \
            from None
    try:
        import distributed  # noqa: F401 - optional; imported only when a scheduler is named
    except ImportError:
        raise ValueError(
            f"{SCHEDULER_FIELD}: {value!r} needs Dask distributed, which is not installed; "
            f"install it with {dd.INSTALL_HINT}, or clear the field to run here") from None
    return spec


def restore_frames_dask(request: RunRequest, spec: Any, *, should_stop: Callable[[], bool],
                        poll: float = 0.1, retries: int = 1
                        ) -> Generator[Update | ClusterStatus, None, Failure | None]:
    """Restore every piece of ``request`` as a task on a Dask cluster.

    ``spec`` comes from :func:`parse_scheduler`. Yields :class:`ClusterStatus` lines while
    connecting, then an :class:`Update` with the final snapshot of each piece as its task
    finishes (completion order). At most twice as many tasks as the workers can run are
    sent at a time. ``should_stop`` is polled while waiting: when it turns true, the tasks
    not done are cancelled and the generator returns None. A piece that fails (after
    ``retries``) cancels the rest and is returned as a :class:`Failure`; so is a scheduler
    that cannot be reached. A local cluster started here is closed before the end.
    """
    from .. import distributed as dd

    n = len(request.plan)
    local = spec.kind == "local"
    device = str(request.options.get("device", "auto"))
    with contextlib.ExitStack() as stack:
        where = spec.describe()
        try:
            target: Any = spec
            if local:
                yield ClusterStatus(f"Starting a local Dask cluster ({where}) \u2026")
            else:
                yield ClusterStatus(f"Connecting to the Dask scheduler {where} \u2026")
                target = _open_client(spec)
                stack.callback(_close_quietly, target)
                if not _has_workers(target):
                    yield ClusterStatus(f"Waiting for workers to join the Dask scheduler at "
                                        f"{target.scheduler.address} \u2026")
                    while not _has_workers(target):
                        if should_stop():
                            return None
                        time.sleep(max(poll, 0.25))
            conn = stack.enter_context(dd.connect(target, device=device, tasks=n))
        except Exception as exc:  # noqa: BLE001 - reported to the user by the widget
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            error = RuntimeError(f"{SCHEDULER_FIELD}: cannot {'start' if local else 'reach'} "
                                 f"{where!r} ({reason}); expected {_SCHEDULER_EXPECTED}")
            return Failure(0, error, traceback.format_exc(), scope="cluster")
        yield ClusterStatus(f"Connected: {conn.description}", conn.description,
                            conn.scheduler_address)
        failure = yield from _run_tasks(request, conn, should_stop, poll, retries)
        if failure is None and local and not should_stop():
            yield ClusterStatus("Closing the local Dask cluster \u2026")
        return failure
    return None  # pragma: no cover - the block returns


def _run_tasks(request: RunRequest, conn: Any, should_stop: Callable[[], bool], poll: float,
               retries: int) -> Generator[Update, None, Failure | None]:
    """Send the pieces as tasks and yield them as they finish (see restore_frames_dask)."""
    import distributed

    from .. import distributed as dd

    client = conn.client
    n = len(request.plan)
    token = uuid.uuid4().hex[:12]
    resources = {dd.GPU: 1} if conn.gpu else None
    live: dict[Any, int] = {}
    finished = distributed.as_completed()
    next_k = 0
    limit, checked = 4, 0.0

    def room() -> int:
        nonlocal limit, checked
        now = time.monotonic()
        if now - checked > 2.0:  # workers come and go
            with contextlib.suppress(Exception):
                limit = max(4, 2 * conn.slots())
            checked = now
        return limit - len(live)

    def fill() -> None:
        nonlocal next_k
        while next_k < n and room() > 0:
            k = next_k
            kwargs = dict(request.options,
                          mask=mask_for_frame(request.mask, request.shape, request.plan, k),
                          channel_axis=request.plan.frame_channel_axis, device=conn.device)
            payload = {"image": np.array(request.frame_image(k)), "threads": conn.threads,
                       "kwargs": kwargs}
            future = client.submit(dd._restore_task, payload, key=f"napari-dip-{token}-{k}",
                                   retries=retries, resources=resources, pure=False)
            live[future] = k
            finished.add(future)
            next_k += 1

    if should_stop():  # stopped while the cluster was starting
        return None
    try:
        try:
            fill()
        except Exception as exc:  # noqa: BLE001 - e.g. the scheduler went away
            return Failure(next_k, exc, traceback.format_exc())
        while live:
            if should_stop():
                return None
            if not finished.has_ready():
                time.sleep(poll)
                continue
            future = next(finished)
            k = live.pop(future, None)
            if k is None:
                continue
            try:
                value = future.result()
            except Exception as exc:  # noqa: BLE001 - reported to the user by the widget
                tb = "".join(traceback.format_exception(exc))
                return Failure(k, dd.explain(exc), tb)
            finally:
                future.release()
            yield Update(k, n, value.snapshot, worker=value.worker)
            try:
                fill()
            except Exception as exc:  # noqa: BLE001
                return Failure(next_k, exc, traceback.format_exc())
        return None
    finally:
        if live:  # stopped, failed or closed: the tasks not done are cancelled
            with contextlib.suppress(Exception):
                client.cancel(list(live))
            live.clear()


def _open_client(spec: Any) -> Any:
    """A client of the scheduler named by address or scheduler file."""
    import distributed

    timeout = f"{CONNECT_TIMEOUT}s"
    if spec.kind == "file":
        return distributed.Client(scheduler_file=spec.address, timeout=timeout)
    return distributed.Client(spec.address, timeout=timeout)


def _has_workers(client: Any) -> bool:
    return bool(client.scheduler_info().get("workers"))


def _close_quietly(client: Any) -> None:
    with contextlib.suppress(Exception):
        client.close()


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
