"""Restore many images, frames or tiles on a Dask cluster.

:func:`restore_many` (results in input order) and :func:`restore_as_completed` (results
as they finish) run one task per image, or per tile with ``tile_size``, on
`Dask distributed <https://distributed.dask.org>`_: a local cluster of worker processes
(``cluster="local"`` or ``"local:N"``), a running scheduler (``"tcp://host:8786"`` or a
scheduler file), or a ``Client``/cluster object, e.g. from dask-jobqueue. The command line
uses the same machinery for ``--cluster`` and ``--scheduler``.

How the work is shared out:

* Tasks are pure: they get the pixels, the configuration and a seed drawn beforehand, and
  return the restored arrays and the run's metadata. Only the calling process writes
  files, so a worker that dies cannot leave a half-written or duplicate output; its tasks
  run again elsewhere.
* A task that raises is retried once (``retries``); if it fails again it is reported.
* Workers with a ``GPU`` resource run one task at a time each (tasks ask for
  ``{"GPU": 1}``). A local cluster on a machine with CUDA GPUs starts one worker per GPU
  and shows each worker only its own GPU (``CUDA_VISIBLE_DEVICES``); without GPUs the
  cores are split between the worker processes (PyTorch threads per worker = cores /
  workers).
* A bounded number of tasks is in flight (twice the number that can run at once), so the
  inputs of a batch of thousands of frames are not all held in memory at once.

Dask is an optional dependency: ``pip install "napari-dip[cluster]"``. Importing this
module does not import it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
import warnings
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

__all__ = [
    "INSTALL_HINT",
    "ClusterSpec",
    "Connection",
    "ItemResult",
    "connect",
    "local_cluster",
    "parse_cluster",
    "restore_as_completed",
    "restore_many",
]

INSTALL_HINT = 'pip install "napari-dip[cluster]"'
GPU = "GPU"
"""Name of the worker resource that stands for one GPU."""

_ADDRESS = re.compile(r"^(tcp|tls|ucx|ws|wss|inproc)://\S+$|^[\w.\-]+:\d+$")
_EXPECTED = ("'local', 'local:N', a scheduler address such as 'tcp://host:8786', a scheduler "
             "file (.json), a dask.distributed Client or a cluster object")


def _require_distributed() -> Any:
    """Import ``distributed`` or raise ImportError with the install command."""
    try:
        import distributed
    except ImportError as exc:
        raise ImportError(
            f"running on a cluster needs Dask distributed, which is not installed; install "
            f"it with: {INSTALL_HINT}") from exc
    return distributed


# ---------------------------------------------------------------------------------------
# which cluster
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClusterSpec:
    """Where tasks run, as given by the user (see :func:`parse_cluster`).

    Attributes
    ----------
    kind : {"default", "local", "address", "file", "client", "cluster"}
        ``"default"``: the current Dask client if there is one, else a local cluster.
    workers : int or None
        ``"local"``: the number of worker processes (None: one per GPU, else by cores).
    address : str or None
        ``"address"``: the scheduler address; ``"file"``: the scheduler file.
    obj : object
        ``"client"`` or ``"cluster"``: the object given.
    """

    kind: str
    workers: int | None = None
    address: str | None = None
    obj: Any = field(default=None, compare=False, repr=False)

    def describe(self) -> str:
        if self.kind == "local":
            return "local" if self.workers is None else f"local:{self.workers}"
        if self.kind in ("address", "file"):
            return str(self.address)
        return self.kind


def parse_cluster(value: Any, name: str = "cluster") -> ClusterSpec:
    """Read a cluster argument.

    Parameters
    ----------
    value : None, str, Client or cluster
        None (the current Dask client, else a local cluster); ``"local"`` or ``"local:N"``
        (a local cluster of N worker processes); a scheduler address (``"tcp://host:8786"``
        or ``"host:8786"``); the path of a scheduler file (``.json``, as written by
        ``dask scheduler --scheduler-file``); a ``distributed.Client``; or a cluster object
        (``LocalCluster``, dask-jobqueue's ``SLURMCluster``, ...).
    name : str
        The argument's name in error messages.

    Returns
    -------
    ClusterSpec
    """
    if value is None:
        return ClusterSpec("default")
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if isinstance(value, str):
        text = value.strip()
        low = text.lower()
        if low == "local":
            return ClusterSpec("local")
        if low.startswith("local:"):
            count = text[6:]
            if not count.isdigit() or int(count) < 1:
                raise ValueError(f"{name}: expected 'local' or 'local:N' with N a positive "
                                 f"number of workers, got {value!r}")
            return ClusterSpec("local", workers=int(count))
        if text.lower().endswith(".json") or os.path.isfile(text):
            if not os.path.isfile(text):
                raise ValueError(f"{name}: scheduler file {value!r} does not exist; expected "
                                 f"{_EXPECTED}")
            return ClusterSpec("file", address=text)
        if _ADDRESS.match(text):
            return ClusterSpec("address", address=text)
        raise ValueError(f"{name}: expected {_EXPECTED}, got {value!r}")
    distributed = _require_distributed()
    if isinstance(value, distributed.Client):
        return ClusterSpec("client", obj=value)
    if hasattr(value, "scheduler_address"):
        return ClusterSpec("cluster", obj=value)
    raise TypeError(f"{name}: expected {_EXPECTED}, got {type(value).__name__}")


def _cpu_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _visible_gpus(device: str) -> list[str]:
    """The CUDA devices a local cluster shares out (as CUDA_VISIBLE_DEVICES entries)."""
    dev = str(device).lower()
    if dev not in ("auto", "cuda") and not dev.startswith("cuda:"):
        return []
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        return []
    listed = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")
              if d.strip()]
    ids = listed[:count] if len(listed) >= count else [str(i) for i in range(count)]
    if dev.startswith("cuda:"):
        index = int(dev[5:])
        if index >= len(ids):
            raise ValueError(f"device: {device!r} does not exist; this machine has {len(ids)} "
                             f"CUDA device(s)")
        return [ids[index]]
    return ids


@dataclass(frozen=True)
class LocalPlan:
    """How a local cluster is laid out: worker processes, PyTorch threads per worker, and
    the GPU (CUDA_VISIBLE_DEVICES entry) of each worker, if any."""

    workers: int
    threads: int
    gpus: tuple[str, ...] = ()


def plan_local(workers: int | None = None, *, device: str = "auto", threads: int | None = None,
               tasks: int | None = None) -> LocalPlan:
    """Lay out a local cluster.

    With CUDA GPUs (and ``device`` not ``"cpu"``): one worker per GPU by default; ``workers``
    beyond the number of GPUs share them round-robin. Without: ``cores // threads`` workers
    when ``threads`` is given, else one worker per core up to 4 cores and one per 2 cores
    above that, each with ``cores // workers`` PyTorch threads. ``tasks`` (when known) caps
    the default number of workers.
    """
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise ValueError(f"workers: expected a positive integer or None, got {workers!r}")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                or threads < 1):
        raise ValueError(f"threads: expected a positive integer or None, got {threads!r}")
    cores = _cpu_count()
    gpus = _visible_gpus(device)
    if gpus:
        n = workers or len(gpus)
        per = threads or max(1, cores // n)
        return LocalPlan(n, per, tuple(gpus[i % len(gpus)] for i in range(n)))
    if workers is None:
        if threads is not None:
            workers = max(1, cores // threads)
        else:
            workers = cores if cores <= 4 else max(1, cores // 2)
        if tasks is not None:
            workers = max(1, min(workers, tasks))
    return LocalPlan(workers, threads or max(1, cores // workers))


def local_cluster(workers: int | None = None, *, device: str = "auto",
                  threads: int | None = None, tasks: int | None = None) -> Any:
    """Start a cluster of worker processes on this machine (see :func:`plan_local`).

    CPU workers: a ``distributed.LocalCluster``, one thread per worker process (one task at
    a time), each task using the planned number of PyTorch threads. GPU workers: one worker
    process per GPU that sees only its GPU (``CUDA_VISIBLE_DEVICES``) and offers the resource
    ``{"GPU": 1}``. (dask-cuda's ``LocalCUDACluster(resources={"GPU": 1})`` does the same
    and may be passed as ``cluster`` instead.) The plan is the cluster's ``napari_dip_plan``
    attribute. Close the cluster when done.
    """
    distributed = _require_distributed()
    plan = plan_local(workers, device=device, threads=threads, tasks=tasks)
    env = {"OMP_NUM_THREADS": str(plan.threads), "MKL_NUM_THREADS": str(plan.threads)}
    preload = [__name__]  # see dask_setup
    # no dashboard; the scheduler's HTTP routes on a free port (not 8787, maybe taken)
    http = {"dashboard": False, "dashboard_address": "127.0.0.1:0"}
    if not plan.gpus:
        cluster = distributed.LocalCluster(
            n_workers=plan.workers, threads_per_worker=1, processes=True,
            dashboard_address=None, scheduler_kwargs=http, host="127.0.0.1", env=env,
            preload=preload)
    else:
        from distributed.system import MEMORY_LIMIT

        scheduler = {"cls": distributed.Scheduler, "options": {**http, "host": "127.0.0.1"}}
        specs = {
            i: {"cls": distributed.Nanny,
                "options": {"nthreads": 1, "resources": {GPU: 1}, "host": "127.0.0.1",
                            "memory_limit": int(MEMORY_LIMIT // plan.workers),
                            "silence_logs": logging.WARNING, "preload": preload,
                            "env": {**env, "CUDA_VISIBLE_DEVICES": gpu}}}
            for i, gpu in enumerate(plan.gpus)
        }
        cluster = distributed.SpecCluster(scheduler=scheduler, workers=specs,
                                          silence_logs=logging.WARNING, name="napari-dip")
    cluster.napari_dip_plan = plan
    return cluster


def dask_setup(worker: Any) -> None:
    """Preload hook of the workers of :func:`local_cluster` (Dask calls it when a worker
    process starts): load the engine, and let the process end without Python's module
    teardown once the worker has closed (PyTorch's takes seconds, and the nanny would
    kill the process meanwhile)."""
    import atexit
    import importlib

    importlib.import_module(f"{__package__}.core")  # PyTorch, before the first task
    atexit.register(_exit_at_once)


def _exit_at_once() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)


@dataclass
class Connection:
    """A client connected to a cluster, and how tasks are sent to it.

    Attributes
    ----------
    client : distributed.Client
    description : str
        E.g. ``"local cluster, 2 workers (cpu, 1 thread each)"``.
    gpu : bool
        Tasks ask for one ``GPU`` resource each.
    threads : int or None
        PyTorch threads per task (None: the worker's setting).
    device : str
        The device the tasks ask for (``"auto"``, ``"cuda"``, ``"cpu"``, ...).
    """

    client: Any
    description: str
    gpu: bool
    threads: int | None
    device: str

    @property
    def scheduler_address(self) -> str:
        return str(self.client.scheduler.address)

    def slots(self) -> int:
        """How many tasks the connected workers can run at once (at least 1)."""
        workers = _workers(self.client)
        if self.gpu:
            n = sum(int(w.get("resources", {}).get(GPU, 0)) for w in workers.values())
        else:
            n = sum(int(w.get("nthreads", 1)) for w in workers.values())
        return max(1, n)


def _workers(client: Any) -> dict[str, Any]:
    """The scheduler's information on every connected worker."""
    try:
        info = client.scheduler_info(n_workers=-1)  # all of them, not the first few
    except TypeError:  # older versions list them all anyway
        info = client.scheduler_info()
    return dict(info.get("workers", {}))


def _worker_gpus(client: Any) -> int:
    return sum(1 for w in _workers(client).values() if w.get("resources", {}).get(GPU, 0) > 0)


@contextlib.contextmanager
def connect(cluster: Any = None, *, device: str = "auto", threads: int | None = None,
            tasks: int | None = None, on_wait: Callable[[str], None] | None = None
            ) -> Iterator[Connection]:
    """Connect to a cluster for the duration of a ``with`` block.

    Parameters
    ----------
    cluster : None, str, ClusterSpec, Client or cluster
        See :func:`parse_cluster`. A local cluster, and clients opened here, are closed at
        the end of the block; a client or cluster passed in is left open.
    device : str
        The device the tasks use. A local cluster shares out the CUDA GPUs unless it is
        ``"cpu"``. On other clusters, tasks ask for one ``GPU`` resource when a connected
        worker offers that resource and ``device`` is not ``"cpu"``.
    threads : int, optional
        PyTorch threads per task (default: cores / workers on a local cluster, the
        worker's own setting elsewhere).
    tasks : int, optional
        The number of tasks, if known: a local cluster starts no more workers by default.
    on_wait : callable, optional
        Called with a message when no worker has joined the scheduler yet (the block then
        waits for the first one).
    """
    distributed = _require_distributed()
    spec = cluster if isinstance(cluster, ClusterSpec) else parse_cluster(cluster)
    dev = str(device)
    with contextlib.ExitStack() as stack:
        client = None
        local = None
        if spec.kind == "default":
            try:
                client = distributed.default_client()
                spec = ClusterSpec("client", obj=client)
            except ValueError:
                spec = ClusterSpec("local")
        if spec.kind == "local":
            local = local_cluster(spec.workers, device=dev, threads=threads, tasks=tasks)
            stack.callback(_quietly, local.close)
            client = distributed.Client(local)
            stack.callback(_quietly, client.close)
        elif spec.kind == "address":
            client = distributed.Client(spec.address, timeout="30s")
            stack.callback(_quietly, client.close)
        elif spec.kind == "file":
            client = distributed.Client(scheduler_file=spec.address, timeout="30s")
            stack.callback(_quietly, client.close)
        elif spec.kind == "cluster":
            client = distributed.Client(spec.obj)
            stack.callback(_quietly, client.close)
        elif spec.kind == "client":
            client = spec.obj
        if local is not None:
            plan: LocalPlan = local.napari_dip_plan
            what = (f"{len(set(plan.gpus))} GPU{'s' if len(set(plan.gpus)) != 1 else ''}"
                    if plan.gpus else "cpu")
            description = (f"local cluster, {plan.workers} worker{'s' if plan.workers != 1 else ''}"
                           f" ({what}, {plan.threads} thread{'s' if plan.threads != 1 else ''} "
                           f"each)")
            conn = Connection(client, description, gpu=bool(plan.gpus),
                              threads=threads or plan.threads,
                              device="cuda" if plan.gpus else dev)
        else:
            if not _workers(client):
                if on_wait is not None:
                    on_wait(f"waiting for workers to join the scheduler at "
                            f"{client.scheduler.address}")
                client.wait_for_workers(1)
            gpus = _worker_gpus(client)
            n = len(_workers(client))
            description = (f"scheduler {client.scheduler.address}, {n} worker"
                           f"{'s' if n != 1 else ''}" + (f" ({gpus} with a GPU)" if gpus else ""))
            conn = Connection(client, description, gpu=gpus > 0 and dev.lower() != "cpu",
                              threads=threads, device=dev)
        yield conn


def _quietly(close: Callable[[], Any]) -> None:
    """Close a client or cluster; errors while shutting down are not the user's concern,
    nor are workers that take long to exit (PyTorch's teardown) and are stopped."""
    nanny = logging.getLogger("distributed.nanny")
    level = nanny.level
    nanny.setLevel(logging.ERROR)
    try:
        with contextlib.suppress(Exception):
            close()
    finally:
        nanny.setLevel(level)


# ---------------------------------------------------------------------------------------
# tasks (these run on the workers)
# ---------------------------------------------------------------------------------------
@dataclass
class ItemResult:
    """What a task returns: the final snapshot of its run and the worker that ran it."""

    snapshot: Any
    worker: str


def _worker_address() -> str:
    """The worker's address, and its GPU when it is given one (CUDA_VISIBLE_DEVICES)."""
    try:
        from distributed import get_worker

        address = str(get_worker().address)
    except (ImportError, ValueError):
        address = "local"
    gpu = os.environ.get("CUDA_VISIBLE_DEVICES")
    return f"{address} (GPU {gpu})" if gpu else address


def _use_threads(threads: int | None) -> None:
    if threads:
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


def _restore_task(payload: dict[str, Any]) -> ItemResult:
    """Restore one image (a file, a frame or a volume) with :func:`napari_dip.iterate`."""
    from .core import iterate

    _use_threads(payload["threads"])
    snap = None
    losses = []
    with contextlib.closing(iterate(payload["image"], **payload["kwargs"])) as run:
        for snap in run:
            losses.append(snap.losses)
    assert snap is not None and snap.done
    snap.losses = np.concatenate(losses) if losses else np.zeros(0)
    return ItemResult(snap, _worker_address())


def _tile_task(payload: dict[str, Any]) -> ItemResult:
    """Restore one tile of a prepared (normalised) image; the result stays normalised in
    the engine's layout ``(C, *tile)``, ready to be blended."""
    from .core import arrays, engine
    from .core.device import resolve_device

    _use_threads(payload["threads"])
    data, known = payload["data"], payload["known"]
    sub = arrays.Prepared(
        data=data, known=known, reference=None, lo=0.0, hi=1.0, shape=data.shape,
        dtype=np.dtype(np.float32), channel_axis=0, ndim_spatial=data.ndim - 1,
        noise_std=payload["noise_std"])
    dev = resolve_device(payload["device"])
    snap = None
    losses = []
    with contextlib.closing(engine.run(sub, payload["config"], device=dev,
                                       seed=payload["seed"])) as run:
        for snap in run:
            losses.append(snap.losses)
    assert snap is not None and snap.done
    snap.losses = np.concatenate(losses) if losses else np.zeros(0)
    return ItemResult(snap, _worker_address())


# ---------------------------------------------------------------------------------------
# tiles: cut on the client, restored on the workers, blended on the client
# ---------------------------------------------------------------------------------------
def tiles_wanted(cfg: Any, spatial: Sequence[int], kwargs: dict[str, Any] | None = None,
                 image: Any = None) -> bool:
    """Whether an image of this spatial shape is cut into tiles on the client
    (``cfg.tile_size`` set and smaller than the image). An image with a noise model other
    than Gaussian goes to one worker whole (its transformation needs the whole image; the
    worker still tiles it itself). With ``noise_model="auto"`` (the default) the choice is
    made here as the run will make it (:func:`napari_dip.core.api.choose_noise_model`),
    on ``image`` (with the ``mask`` and ``channel_axis`` of ``kwargs``); without
    ``image`` the image goes whole, and the worker decides and tiles it."""
    size = int(getattr(cfg, "tile_size", 0) or 0)
    if not 0 < size < max(spatial):
        return False
    kwargs = kwargs or {}
    model = kwargs.get("noise_model", "auto")
    if model == "auto":
        if image is None:
            return False
        from .core import arrays
        from .core.api import choose_noise_model

        prep = arrays.prepare(image, mask=kwargs.get("mask"),
                              channel_axis=kwargs.get("channel_axis"))
        model, _ = choose_noise_model(prep, cfg, model, kwargs.get("gain"),
                                      kwargs.get("read_noise"))
    return model == "gaussian"


class TiledImage:
    """One image restored as overlapping tiles, one task per tile, blended here.

    The image is normalised once as a whole (so that every tile sees the same intensity
    scale), each tile runs with the same seed, and the tiles are blended with weights
    that sum to one (raised-cosine ramps across the overlaps): the result is the same as
    that of a tiled run on one machine.
    """

    def __init__(self, image: Any, cfg: Any, *, mask: Any = None, channel_axis: int | None = None,
                 reference: Any = None, seed: int, output_dtype: Any = None,
                 keep_known: bool = False) -> None:
        from .core import arrays, engine, tiling

        self.prep = arrays.prepare(image, mask=mask, channel_axis=channel_axis,
                                   reference=reference)
        self.cfg, _ = tiling.whole_image_strength(self.prep, cfg)  # as a local tiled run
        given = engine.given_noise_variance(self.prep, cfg)  # the whole image's, every tile's
        self.noise_std = 0.0 if given is None else float(np.sqrt(given))
        self.seed = seed
        self.output_dtype = output_dtype
        self.keep_known = keep_known
        spatial = tuple(self.prep.data.shape[1:])
        edge = int(cfg.tile_size)
        self.overlap = min(int(cfg.tile_overlap), edge // 4)
        self.plan = tiling.plan_tiles(spatial, edge, self.overlap)
        channels = self.prep.data.shape[0]
        self.mosaic = tiling.Mosaic(self.plan, channels)
        self.sgld = cfg.method == "sgld"
        self.var_mosaic = tiling.Mosaic(self.plan, channels) if self.sgld else None
        self.remaining = len(self.plan.tiles)
        self.finals: dict[int, Any] = {}
        for tile in self.plan.tiles:
            known = self._known(tile)
            if known is not None and not known.any():
                raise ValueError(
                    f"tile_size: tile {tile.index + 1} of {len(self.plan)} ({tile.shape}) "
                    f"lies wholly in the mask's missing pixels; use larger tiles (tile_size) "
                    f"so that every tile sees known pixels")

    def _known(self, tile: Any) -> np.ndarray | None:
        if self.prep.known is None:
            return None
        return np.ascontiguousarray(self.prep.known[(slice(None),) + tile.slices])

    @property
    def tiles(self) -> list[Any]:
        return list(self.plan.tiles)

    def payload(self, tile: Any, device: str, threads: int | None) -> dict[str, Any]:
        region = (slice(None),) + tile.slices
        return {"data": np.ascontiguousarray(self.prep.data[region]), "known": self._known(tile),
                "noise_std": self.noise_std, "config": self.cfg, "seed": self.seed,
                "device": device, "threads": threads}

    def add(self, tile: Any, snap: Any) -> None:
        """Keep a finished tile (its final snapshot) for blending."""
        if tile.index in self.finals:
            return
        self.finals[tile.index] = snap
        self.remaining -= 1

    @property
    def done(self) -> bool:
        return self.remaining == 0

    def result(self) -> Any:
        """The final snapshot of the whole image (its shape, range and dtype)."""
        from .core import arrays, engine

        prep = self.prep
        finals = [self.finals[t.index] for t in self.plan.tiles]
        # blended in the plan's order, whatever order the tasks finished in, so that the
        # sums (and the result) do not depend on the scheduling
        for tile, snap in zip(self.plan.tiles, finals):
            self.mosaic.add(tile, snap.image)
            if self.var_mosaic is not None:
                self.var_mosaic.add(tile, snap.variance if snap.variance is not None
                                    else np.zeros_like(snap.image))
        first = finals[0]
        user = arrays.restore_layout(np.clip(self.mosaic.result(), 0.0, 1.0), prep,
                                     output_dtype=self.output_dtype)
        if self.keep_known:
            user = arrays.keep_known_pixels(user, prep, output_dtype=self.output_dtype)
        variance = None
        if self.var_mosaic is not None:
            variance = arrays.variance_to_user(self.var_mosaic.result(), prep)
        info = engine.RunInfo(
            method=self.cfg.method, config=self.cfg, seed=self.seed, device=first.info.device,
            input_shape=tuple(prep.shape), input_dtype=str(prep.dtype),
            channel_axis=prep.channel_axis, padded_shape=first.info.padded_shape,
            parameters=first.info.parameters)
        info.tiles = {**self.plan.describe(), "distributed": True}
        if self.cfg.noise_std > 0:  # else each tile read its own
            info.noise_std = float(self.cfg.noise_std)
        info.notes.append(f"{len(finals)} tiles of {list(self.plan.tile)} (overlap "
                          f"{self.overlap}), one task each")
        reasons = [s.stop_reason or "" for s in finals]
        unique = list(dict.fromkeys(reasons))
        reason = (f"{len(finals)} tiles, each: {unique[0]}" if len(unique) == 1 else
                  f"{len(finals)} tiles: " + "; ".join(f"tile {i + 1}: {r}"
                                                         for i, r in enumerate(reasons)))
        return engine.Snapshot(
            step=int(sum(s.step for s in finals)), loss=float(finals[-1].loss), image=user,
            variance=variance,
            psnr=None if prep.reference is None else engine.psnr(user, prep.reference),
            stop_reason=reason, done=True, elapsed=float(sum(s.elapsed for s in finals)),
            max_steps=int(self.cfg.steps) * len(finals), best_step=None,
            samples=int(finals[-1].samples),
            losses=np.concatenate([s.losses for s in finals]), info=info,
            tile=len(finals) - 1, tiles=len(finals))


# ---------------------------------------------------------------------------------------
# the pipeline: bounded submission, results in completion order
# ---------------------------------------------------------------------------------------
@dataclass
class Task:
    """A unit of work: ``fn(payload)`` under ``key``; ``tag`` is the caller's."""

    key: str
    fn: Callable[[dict[str, Any]], Any]
    payload: dict[str, Any]
    tag: Any


class Pipeline:
    """Submits tasks as room frees up and yields them as they finish.

    At most ``2 x slots`` tasks (at least 4) are submitted at a time, ``slots`` being the
    number of tasks the workers can run at once (looked up again as workers come and go).
    Every task is submitted with ``retries``; one that kills its workers repeatedly ends
    as a ``KilledWorker`` error.
    """

    def __init__(self, conn: Connection, retries: int = 1) -> None:
        self.conn = conn
        self.retries = retries
        self._live: dict[Any, Task] = {}
        self._limit = 4
        self._checked = 0.0

    def _room(self) -> int:
        now = time.monotonic()
        if now - self._checked > 2.0:
            with contextlib.suppress(Exception):
                self._limit = max(4, 2 * self.conn.slots())
            self._checked = now
        return self._limit - len(self._live)

    def run(self, tasks: Iterable[Task]) -> Iterator[tuple[Task, Any]]:
        """Yield ``(task, future)`` in completion order (the future is done: finished,
        failed or cancelled). Leaving the loop early cancels what is still running."""
        from distributed import as_completed

        source = iter(tasks)
        done = as_completed()
        exhausted = False

        def fill() -> None:
            nonlocal exhausted
            while not exhausted and self._room() > 0:
                task = next(source, None)
                if task is None:
                    exhausted = True
                    return
                future = self._submit(task)
                self._live[future] = task
                done.add(future)

        try:
            fill()
            while self._live:
                future = next(done)
                task = self._live.pop(future, None)
                if task is not None:
                    yield task, future
                future.release()
                fill()
        finally:
            if self._live:
                with contextlib.suppress(Exception):
                    self.conn.client.cancel(list(self._live))
                self._live.clear()

    def _submit(self, task: Task) -> Any:
        resources = {GPU: 1} if self.conn.gpu else None
        with warnings.catch_warnings():
            # the pixels travel with the task; their size is bounded by the in-flight limit
            warnings.filterwarnings("ignore", message=".*[Ll]arge graph.*")
            warnings.filterwarnings("ignore", message=".*[Ll]arge object.*")
            return self.conn.client.submit(task.fn, task.payload, key=task.key,
                                           retries=self.retries, resources=resources,
                                           pure=False)

    def cancel(self, which: Callable[[Task], bool]) -> None:
        """Cancel the tasks in flight for which ``which(task)`` is true."""
        futures = [f for f, t in self._live.items() if which(t)]
        for f in futures:
            del self._live[f]
        if futures:
            with contextlib.suppress(Exception):
                self.conn.client.cancel(futures)


def explain(exc: BaseException) -> BaseException:
    """A task's error as the user should read it (a worker that died gets a message)."""
    try:
        from distributed import KilledWorker
    except ImportError:  # pragma: no cover - only without distributed
        return exc
    if isinstance(exc, KilledWorker):
        return RuntimeError(
            "the workers running it died repeatedly (out of memory, or a crash); see the "
            "workers' logs")
    return exc


def _key(*parts: Any) -> str:
    from dask.base import tokenize

    words = [re.sub(r"[^\w.\-]+", "_", str(p))[:40] for p in parts[:-1]]
    return "-".join(["napari-dip", *words, tokenize(*parts[-1])])


# ---------------------------------------------------------------------------------------
# the Python API
# ---------------------------------------------------------------------------------------
def _split_kwargs(kwargs: dict[str, Any], masked: bool = False) -> tuple[Any, dict[str, Any]]:
    """Resolve the configuration here (errors show before anything is sent) and keep the
    other arguments of :func:`napari_dip.iterate` for the tasks. ``masked``: whether any
    image has a mask (the "fast" and "balanced" presets then fit known pixels for all of
    them instead of denoising with SURE)."""
    from .core.api import split_iterate_kwargs

    if "finish" in kwargs:  # a task runs in another process: it would poll a copy
        raise TypeError("finish: not available for tasks on a cluster, which run in other "
                        "processes; give time_limit=SECONDS to bound each task's fit")
    reserved = {"mask", "seed", "device"} & set(kwargs)
    if reserved:
        name = sorted(reserved)[0]
        raise TypeError(f"{name}: give it to restore_many as "
                        f"{'masks' if name == 'mask' else name}=..., not among the options")
    return split_iterate_kwargs(kwargs, masked=masked)


def _per_image(value: Any, n: int, name: str) -> list[Any]:
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(f"{name}: expected one per image ({n}), got {len(value)}")
        return list(value)
    return [value] * n


@dataclass
class _Open:
    """An image of :func:`restore_as_completed` whose tasks are not all back."""

    index: int
    tiled: TiledImage | None = None
    failed: bool = False


def _load(image: Any) -> tuple[np.ndarray, int | None]:
    if isinstance(image, (str, os.PathLike)):
        from . import io as dio

        src = dio.read_image(image)
        return src.data, src.channel_axis
    return image, None


def restore_as_completed(
    images: Sequence[Any],
    *,
    cluster: Any = None,
    masks: Any = None,
    seed: int | Sequence[int] | None = None,
    device: str = "auto",
    threads: int | None = None,
    retries: int = 1,
    errors: str = "raise",
    progress: bool = False,
    **kwargs: Any,
) -> Iterator[tuple[int, Any]]:
    """Restore many images on a Dask cluster; yield ``(index, result)`` as each finishes.

    Takes the arguments of :func:`restore_many`. With ``errors="return"``, an image whose
    task failed (after its retries) yields ``(index, exception)``; with ``"raise"`` the
    first failure cancels the rest and is raised, with a note naming the image.
    """
    from .core.api import Result
    from .core.device import resolve_seed

    images = list(images)
    n = len(images)
    if errors not in ("raise", "return"):
        raise ValueError(f"errors: expected 'raise' or 'return', got {errors!r}")
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries: expected an integer >= 0, got {retries!r}")
    mask_list = _per_image(masks, n, "masks")
    cfg, passed = _split_kwargs(kwargs, masked=any(m is not None for m in mask_list))
    if isinstance(seed, (list, tuple)):
        seeds = [resolve_seed(s) for s in _per_image(seed, n, "seed")]
    else:
        resolve_seed(seed)
        seeds = [resolve_seed(seed) for _ in range(n)]
    if n == 0:
        return
    _require_distributed()

    to_result = Result.from_snapshot

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, unit="image", desc="napari-dip")

    def tick() -> None:
        if bar is not None:
            bar.update(1)

    # with tiles there are more tasks than images: no cap on a local cluster's workers
    with connect(cluster, device=device, threads=threads,
                 tasks=None if cfg.tile_size else n) as conn:
        pipeline = Pipeline(conn, retries=retries)
        ready: list[tuple[int, Any]] = []

        def image_tasks(i: int, state: _Open) -> list[tuple]:
            """Check and plan image ``i``; its tasks, with their pixels cut out on demand."""
            data, file_axis = _load(images[i])
            kw = dict(passed)
            if "channel_axis" not in kw and file_axis is not None:
                kw["channel_axis"] = file_axis
            spatial = _spatial_shape(data, kw.get("channel_axis"))
            token = (i, seeds[i], cfg.to_dict(), np.asarray(data), mask_list[i], kw)
            check_item(data, {**kw, "config": cfg, "mask": mask_list[i], "seed": seeds[i]})
            if tiles_wanted(cfg, spatial, {**kw, "mask": mask_list[i]}, image=data):
                state.tiled = TiledImage(
                    data, cfg, mask=mask_list[i], channel_axis=kw.get("channel_axis"),
                    reference=kw.get("reference"), seed=seeds[i],
                    output_dtype=kw.get("output_dtype"), keep_known=kw.get("keep_known", False))
                return [(_key("image", i, "tile", tile.index, token), _tile_task,
                         partial(state.tiled.payload, tile, conn.device, conn.threads),
                         (state, tile)) for tile in state.tiled.tiles]
            kwargs = {**kw, "config": cfg, "mask": mask_list[i], "seed": seeds[i],
                      "device": conn.device}
            payload = {"image": data, "threads": conn.threads, "kwargs": kwargs}
            return [(_key("image", i, token), _restore_task, partial(dict, payload),
                     (state, None))]

        def tasks() -> Iterator[Task]:
            for i in range(n):
                state = _Open(i)
                try:
                    units = image_tasks(i, state)
                except Exception as exc:  # noqa: BLE001 - reported like a task's error
                    if errors == "raise":
                        exc.add_note(f"while preparing image {i} of {n}")
                        raise
                    ready.append((i, exc))
                    continue
                for key, fn, make_payload, tag in units:
                    yield Task(key, fn, make_payload(), tag)

        def fail(i: int, exc: BaseException) -> tuple[int, Any]:
            exc = explain(exc)
            if errors == "raise":
                exc.add_note(f"while restoring image {i} of {n} on the cluster")
                raise exc
            return i, exc

        finished = pipeline.run(tasks())
        try:
            for task, future in finished:
                while ready:
                    i, exc = ready.pop(0)
                    yield fail(i, exc)
                    tick()
                state, tile = task.tag
                if state.failed:
                    continue
                try:
                    value = future.result()
                except Exception as exc:  # noqa: BLE001 - reported per image
                    state.failed = True
                    pipeline.cancel(lambda t, s=state: t.tag[0] is s)
                    yield fail(state.index, exc)
                    tick()
                    continue
                if tile is None:
                    out = to_result(value.snapshot)
                else:
                    state.tiled.add(tile, value.snapshot)
                    if not state.tiled.done:
                        continue
                    try:
                        out = to_result(state.tiled.result())
                    except Exception as exc:  # noqa: BLE001 - reported per image
                        state.tiled = None
                        yield fail(state.index, exc)
                        tick()
                        continue
                    state.tiled = None
                yield state.index, out
                tick()
            while ready:
                i, exc = ready.pop(0)
                yield fail(i, exc)
                tick()
        finally:
            finished.close()
            if bar is not None:
                bar.close()


def check_item(image: Any, kwargs: dict[str, Any]) -> None:
    """Check an image and every argument here, as the task will, so that bad inputs are
    reported at once instead of failing on a worker (twice, with the retry).
    :func:`napari_dip.iterate` checks everything before it returns, and nothing runs
    until its first snapshot is asked for; the device is checked on the workers."""
    from .core import iterate

    run = iterate(image, **{**kwargs, "device": "cpu"})
    run.close()


def _spatial_shape(data: Any, channel_axis: int | None) -> tuple[int, ...]:
    shape = np.shape(data)
    if channel_axis is None or not shape:
        return tuple(shape)
    axis = channel_axis % len(shape)
    return tuple(s for i, s in enumerate(shape) if i != axis)


def restore_many(
    images: Sequence[Any],
    *,
    cluster: Any = None,
    masks: Any = None,
    seed: int | Sequence[int] | None = None,
    device: str = "auto",
    threads: int | None = None,
    retries: int = 1,
    errors: str = "raise",
    progress: bool = False,
    **kwargs: Any,
) -> list[Any]:
    """Restore many images on a Dask cluster, one task per image (or per tile).

    Parameters
    ----------
    images : sequence of array_like or paths
        The images (each as :func:`napari_dip.restore` takes it), or image files (TIFF,
        PNG, JPEG; their channel axis is taken from the file unless ``channel_axis`` is
        given).
    cluster : None, str, Client or cluster
        Where to run: None (the current Dask client, else a local cluster that is closed
        afterwards), ``"local"`` or ``"local:N"`` (N worker processes on this machine; by
        default one per GPU, else by cores), a scheduler address (``"tcp://host:8786"``), a
        scheduler file, a ``distributed.Client``, or a cluster object (e.g.
        dask-jobqueue's ``SLURMCluster``).
    masks : array_like or sequence, optional
        One inpainting mask for all images, or a list/tuple with one per image (None for
        none).
    seed : int or sequence of int, optional
        One seed for all, one per image, or None: a fresh seed per image, drawn here, so
        that a task that is run again gives the same result. Each result's
        ``info.seed`` holds it.
    device : str
        The device on the workers (``"auto"``: a worker's GPU if it has one).
    threads : int, optional
        PyTorch threads per task (default: cores / workers on a local cluster, the
        worker's own setting elsewhere).
    retries : int
        How many times a failed task is run again before its image counts as failed.
    errors : {"raise", "return"}
        ``"raise"``: the first image that fails raises its error (with a note naming the
        image) and the rest are cancelled. ``"return"``: its entry in the list is the
        exception.
    progress : bool
        Show a progress bar of finished images.
    **kwargs
        The arguments of :func:`napari_dip.restore`: ``method``, ``preset``, ``steps``,
        ``config``, ``channel_axis``, ``output_dtype``, ``keep_known`` and configuration
        fields such as ``width=32``. With ``tile_size=N`` (smaller than an image), every
        tile is a task of its own and the tiles are blended here.

    Returns
    -------
    list of Result (or of exceptions, with ``errors="return"``)
        In the order of ``images``.

    Examples
    --------
    >>> from napari_dip import restore_many
    >>> results = restore_many(frames, cluster="local:2", preset="fast", seed=0)  # doctest: +SKIP
    >>> restored = [r.image for r in results]  # doctest: +SKIP
    """
    images = list(images)
    out: list[Any] = [None] * len(images)
    for index, result in restore_as_completed(
            images, cluster=cluster, masks=masks, seed=seed, device=device, threads=threads,
            retries=retries, errors=errors, progress=progress, **kwargs):
        out[index] = result
    return out


# ---------------------------------------------------------------------------------------
# the command line's runner
# ---------------------------------------------------------------------------------------
def check_device(text: str) -> str:
    """Check the spelling of a device for the workers (which may have GPUs that this
    machine lacks); returns it in lower case."""
    dev = str(text).strip().lower()
    if dev in ("auto", "cpu", "cuda", "mps") or re.fullmatch(r"cuda:\d+", dev):
        return dev
    raise ValueError(f"device: expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {text!r}")


@dataclass
class _JobState:
    prep: Any
    finals: list[Any]
    tiled: dict[int, TiledImage]
    remaining: int
    tasks: int = 0
    workers: set[str] = field(default_factory=set)
    failed: bool = False


def cli_runner(spec: ClusterSpec, *, retries: int = 1) -> Callable[..., None]:
    """The function that runs the command line's jobs on the cluster ``spec``: every
    frame (or tile) is a task, the files are written here as the jobs complete."""

    def runner(jobs: list[Any], settings: Any, reporter: Any, report: Callable[[Any], None]
               ) -> None:
        from . import cli

        reported: set[int] = set()

        def finish(job: Any, outcome: Any) -> None:
            if id(job) not in reported:  # one outcome per job, whatever happens
                reported.add(id(job))
                report(outcome)

        try:
            with connect(spec, device=settings.device, threads=settings.threads,
                         on_wait=reporter.info) as conn:
                reporter.info(f"running on {conn.description}")
                _run_cli_jobs(conn, jobs, settings, finish, retries)
        except (ImportError, OSError, TimeoutError) as exc:  # the cluster, not an input
            text = str(exc).strip().splitlines()
            reason = text[0] if text else type(exc).__name__
            for job in jobs:
                finish(job, cli.Outcome(job, "failed", f"cannot run on the cluster "
                                                       f"{spec.describe()}: {reason}"))

    return runner


def _run_cli_jobs(conn: Connection, jobs: list[Any], settings: Any,
                  finish: Callable[[Any, Any], None], retries: int) -> None:
    from . import cli

    def tasks() -> Iterator[Task]:
        for job in jobs:
            try:
                prep = cli._prepare_job(job, settings)
                n = len(prep.items)
                state = _JobState(prep, [None] * n, {}, n)
                token = (job.name, prep.input_info.get("sha256"), prep.mask_info, prep.seed,
                         settings.cfg.to_dict(), settings.output_dtype, settings.keep_known,
                         prep.layout.describe(), conn.device)
                # checked and planned first, so that a bad input sends no task at all; the
                # pixels of a task are cut out only when it is sent
                units: list[tuple[str, Callable[..., Any], Callable[[], dict], tuple]] = []
                for index, item in enumerate(prep.items):
                    kwargs = cli._item_kwargs(prep, index, settings)
                    kwargs["device"] = conn.device
                    spatial = _spatial_shape(item, kwargs.get("channel_axis"))
                    if tiles_wanted(settings.cfg, spatial, kwargs, image=item):
                        tiled = TiledImage(
                            item, settings.cfg.replace(**prep.shared) if prep.shared else
                            settings.cfg, mask=kwargs.get("mask"),
                            channel_axis=kwargs.get("channel_axis"),
                            reference=kwargs.get("reference"), seed=prep.seed,
                            output_dtype=kwargs.get("output_dtype"),
                            keep_known=bool(kwargs.get("keep_known")))
                        state.tiled[index] = tiled
                        for tile in tiled.tiles:
                            units.append((
                                _key(job.stem, index, "tile", tile.index, token), _tile_task,
                                partial(tiled.payload, tile, conn.device, conn.threads),
                                (job, state, index, tile)))
                    else:
                        check_item(item, kwargs)
                        payload = {"image": item, "kwargs": kwargs, "threads": conn.threads}
                        units.append((_key(job.stem, index, token), _restore_task,
                                      partial(dict, payload), (job, state, index, None)))
            except Exception as exc:  # noqa: BLE001 - reported per input, the rest go on
                finish(job, cli._failure(job, exc))
                continue
            state.tasks = len(units)
            for key, fn, make_payload, tag in units:
                yield Task(key, fn, make_payload(), tag)

    pipeline = Pipeline(conn, retries=retries)
    with contextlib.closing(pipeline.run(tasks())) as finished:
        _collect(finished, pipeline, conn, settings, finish)


def _collect(finished: Iterator[tuple[Task, Any]], pipeline: Pipeline, conn: Connection,
             settings: Any, finish: Callable[[Any, Any], None]) -> None:
    """Gather the items of every job as they finish; write a job when it is complete."""
    from . import cli

    for task, future in finished:
        job, state, index, tile = task.tag
        if state.failed:
            continue
        try:
            value = future.result()
        except Exception as exc:  # noqa: BLE001 - reported per input, the rest go on
            state.failed = True
            pipeline.cancel(lambda t, s=state: t.tag[1] is s)
            finish(job, cli._failure(job, explain(exc)))
            continue
        state.workers.add(value.worker)
        if tile is not None:
            tiled = state.tiled[index]
            tiled.add(tile, value.snapshot)
            if not tiled.done:
                continue
            state.finals[index] = tiled.result()
            del state.tiled[index]
        elif state.finals[index] is None:
            state.finals[index] = value.snapshot
        else:
            continue
        state.remaining -= 1
        if state.remaining:
            continue
        # the time reported for the job: its computation, not its wait in the queue
        state.prep.t0 = time.perf_counter() - float(sum(s.elapsed for s in state.finals))
        extra = {"cluster": {"scheduler": conn.scheduler_address,
                             "description": conn.description,
                             "workers": sorted(state.workers), "tasks": state.tasks}}
        try:
            outcome = cli._write_job(state.prep, state.finals, settings, extra=extra)
        except Exception as exc:  # noqa: BLE001 - reported per input, the rest go on
            outcome = cli._failure(job, exc)
        state.finals = []
        finish(job, outcome)
