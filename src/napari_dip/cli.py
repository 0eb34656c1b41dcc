"""The ``napari-dip`` command: restore image files with DIP or SGLD-DIP in a batch.

Run ``napari-dip --help`` for the options. :func:`main` takes the arguments as a list and
returns the exit status (0: all succeeded, 1: some inputs failed, 2: usage error,
130: interrupted), so it can also be called from Python.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import json
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import io as dio

PROG = "napari-dip"

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

_EPILOG = """\
outputs (in OUTDIR, never over an existing file without --overwrite):
  NAME_dip.EXT        restored image (TIFF stays TIFF, PNG stays PNG, JPEG becomes PNG;
                      dtypes a PNG cannot hold are written as TIFF)
  NAME_sgld_std.tif   SGLD only: posterior standard deviation, float32
  NAME_METHOD.json    sidecar: configuration, seed, device, steps, stop reason,
                      input SHA-256, versions; --config FILE repeats the run

examples:
  napari-dip --sample -o out --preset fast
  napari-dip data/*.tif -o restored --preset fast --seed 0
  napari-dip data/ -o restored --method sgld --steps 3000 --option burn_in=1000
  napari-dip data/ -o restored --resume
  napari-dip data/cells.tif -o again --config restored/cells_dip.json
  napari-dip frames/ -o restored --preset fast --cluster local:2

exit status: 0 all succeeded (or were skipped), 1 some inputs failed, 2 usage error.
"""


class UsageError(Exception):
    """A problem with the command line or a configuration file (exit status 2)."""


# ---------------------------------------------------------------------------------------
# argument parsing
# ---------------------------------------------------------------------------------------
def _parse_option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. width=32), got {text!r}")
    return key, _parse_value(value.strip())


def _parse_value(value: str) -> Any:
    try:
        return json.loads(value)
    except ValueError:
        pass
    if value.lower() in ("true", "yes", "on"):
        return True
    if value.lower() in ("false", "no", "off"):
        return False
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value == 0:
        raise argparse.ArgumentTypeError("expected a positive integer, got 0")
    return value


def _finite_float(text: str, *, allow_zero: bool) -> float:
    bound = ">= 0" if allow_zero else "> 0"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number {bound}, got {text!r}") from None
    if not (0 <= value if allow_zero else 0 < value) or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number {bound}, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    return _finite_float(text, allow_zero=False)


def _non_negative_float(text: str) -> float:
    return _finite_float(text, allow_zero=True)


def _channel_axis(text: str) -> Any:
    if text.lower() in ("auto", "none"):
        return text.lower()
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected 'auto', 'none' or an axis number, got {text!r}") from None


def _dtype(text: str) -> str:
    try:
        dt = np.dtype(text)
    except TypeError:
        raise argparse.ArgumentTypeError(f"expected a numpy dtype such as uint8, uint16 or "
                                         f"float32, got {text!r}") from None
    if dt.kind not in "iuf" or dt.itemsize > 8:
        raise argparse.ArgumentTypeError(f"expected an integer or float dtype, got {text!r}")
    return dt.name


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``napari-dip`` command."""
    from . import __version__

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Restore images (denoising, inpainting) with the Deep Image Prior or its "
                    "Bayesian SGLD variant, which also gives a per-pixel uncertainty map.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("inputs", nargs="*", metavar="INPUT",
                        help="image files (.tif, .tiff, .png, .jpg, .jpeg), folders (their "
                             "images, not recursive) or glob patterns ('**' recurses)")
    parser.add_argument("-o", "--output", dest="outdir", metavar="OUTDIR", required=True,
                        help="folder for the results (created if needed)")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")

    run = parser.add_argument_group("restoration")
    run.add_argument("--method", choices=("dip", "sgld"), default=None,
                     help="dip: Deep Image Prior (default); sgld: Bayesian DIP that also "
                          "writes the posterior standard deviation")
    run.add_argument("--preset", choices=("fast", "balanced", "quality"), default=None,
                     help="network size and schedule (default: balanced; quality is the "
                          "papers' configuration)")
    run.add_argument("--steps", type=_positive_int, metavar="N",
                     help="maximum number of optimisation steps (default: the preset's)")
    run.add_argument("--auto-stop", action=argparse.BooleanOptionalAction, default=None,
                     help="DIP: stop by itself (discrepancy rule; windowed variance with a "
                          "mask) (default: on)")
    run.add_argument("--option", action="append", type=_parse_option, default=[],
                     metavar="KEY=VALUE",
                     help="any configuration field, e.g. width=32, lr=0.02, burn_in=500 "
                          "(repeatable)")
    run.add_argument("--config", metavar="FILE.json",
                     help="configuration from a JSON sidecar of an earlier run (its seed too, "
                          "unless --seed is given) or a plain configuration file; --steps, "
                          "--auto-stop and --option still override its fields")
    run.add_argument("--seed", type=_non_negative_int, metavar="S",
                     help="random seed (default: a fresh one per image, saved in the sidecar)")
    run.add_argument("--device", default="auto", metavar="D",
                     help="auto (CUDA, then MPS, then CPU; default), cpu, cuda, cuda:N or mps")
    run.add_argument("--threads", type=_positive_int, metavar="N",
                     help="CPU threads for the computation (default: the number of cores)")
    run.add_argument("--tile-size", type=_positive_int, metavar="N",
                     help="restore images larger than N pixels in overlapping tiles of "
                          "N x N, blended without seams (the same as --option tile_size=N; "
                          "default: tiles only when an image would not fit the memory "
                          "budget); on a cluster every tile is a task of its own")
    run.add_argument("--time-limit", type=_positive_float, metavar="SECONDS",
                     help="end the fit of each image (each frame or volume of a stack) "
                          "after this many seconds and finish its result as at its last "
                          "step (stop rule's estimate, second stage); the tiles of an image "
                          "share it, where on a cluster each task has its own (the same as "
                          "--option time_limit=SECONDS; default: no limit)")
    run.add_argument("--compile", action="store_true",
                     help="CUDA: compile the net with torch.compile, which fuses the work "
                          "between its convolutions; steps are 1.4-1.7x faster after about a "
                          "minute of compiling per image size (worth it for a batch of "
                          "same-size images; the same as --option compile=true)")
    run.add_argument("--noise-model", choices=NOISE_MODELS,
                     default=None,
                     help="poisson-gaussian: photon-counting data (e.g. fluorescence); the "
                          "image is variance-stabilised (generalized Anscombe) before the "
                          "fit and mapped back after it. auto (default): poisson-gaussian "
                          "where --gain or --read-noise is given, or where a denoising run "
                          "of the fast or balanced preset finds the noise growing with the "
                          "signal (decided once for all frames of a stack); gaussian "
                          "otherwise, and with --noise-std (with --config: the sidecar's "
                          "choice)")
    run.add_argument("--noise-std", type=_positive_float, metavar="S",
                     help="the std (S > 0) of the images' Gaussian noise where it is "
                          "known, in image units (e.g. 25 for 8-bit data with sigma 25; the "
                          "same as --option noise_std=S, where 0 means the default: "
                          "estimated from each image, which "
                          "reads fine texture as noise at low noise levels); not with "
                          "--gain/--read-noise or --noise-model poisson-gaussian")
    run.add_argument("--gain", type=_positive_float, metavar="G",
                     help="poisson-gaussian: detector gain in image units per photon "
                          "(default: estimated from each image)")
    run.add_argument("--read-noise", type=_non_negative_float, metavar="S",
                     help="poisson-gaussian: standard deviation of the read noise in image "
                          "units; the data are then taken to have no camera offset: "
                          "subtract it first (default: estimated from each image, with "
                          "the offset)")
    run.add_argument("--memory-budget", type=_positive_float, metavar="GIB",
                     help="device memory a run may use, in GiB (default: 90%% of the free "
                          "GPU memory, or half of the available system memory); larger "
                          "images are tiled")

    img = parser.add_argument_group("images")
    img.add_argument("--sample", action="store_true",
                     help="restore the bundled noisy 'camera' sample (256x256, sigma 25) "
                          "instead of INPUT files")
    img.add_argument("--mask", metavar="PATH",
                     help="inpainting mask, nonzero on the pixels to fill: one image for all "
                          "inputs, or a folder holding one mask per input with the input's name")
    img.add_argument("--keep-known", action=argparse.BooleanOptionalAction, default=None,
                     help="with --mask: copy the known pixels into the result unchanged "
                          "(default: off, they are denoised too)")
    img.add_argument("--channel-axis", type=_channel_axis, default=None, metavar="AXIS",
                     help="auto (default: RGB and TIFF C/S axes are channels), none, or the "
                          "axis number of the channels")
    img.add_argument("--stack", choices=dio.STACK_MODES, default=None,
                     help="multi-page TIFF: restore every plane on its own (frames), 3-D "
                          "volumes (volume), or volumes only for files with a Z axis (auto, "
                          "the default)")
    img.add_argument("--output-dtype", type=_dtype, default=None, metavar="DTYPE",
                     help="dtype of the restored images, e.g. float32 (default: the input's)")

    batch = parser.add_argument_group("batch")
    batch.add_argument("--overwrite", action="store_true",
                       help="replace existing outputs (default: skip their inputs)")
    batch.add_argument("--resume", action="store_true",
                       help="skip inputs whose outputs are complete (image and sidecar)")
    batch.add_argument("-q", "--quiet", action="store_true",
                       help="no progress bars, per-image lines or summary; errors only")
    _add_cluster_arguments(parser)
    return parser


# ---------------------------------------------------------------------------------------
# running on a Dask cluster (see napari_dip.distributed)
# ---------------------------------------------------------------------------------------
def _add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "cluster", "run every file, frame or tile as a task on Dask distributed "
                   '(needs: pip install "napari-dip[cluster]"); outputs are written here')
    where = group.add_mutually_exclusive_group()
    where.add_argument("--cluster", metavar="local[:N]",
                       help="start N worker processes on this machine (default: one per "
                            "GPU, else a share of the cores each)")
    where.add_argument("--scheduler", metavar="ADDRESS",
                       help="use the workers of a running Dask scheduler: tcp://host:port or "
                            "a scheduler file (.json)")


def _apply_shorthands(args: argparse.Namespace, settings: "Settings") -> None:
    """--tile-size, --compile, --time-limit and --noise-std: shorthands for configuration
    fields."""
    size = getattr(args, "tile_size", None)
    if size is not None and settings.cfg.tile_size != size:
        try:
            settings.cfg = settings.cfg.replace(tile_size=size)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"--tile-size {size}: {exc}") from None
    if getattr(args, "compile", False):
        settings.cfg = settings.cfg.replace(compile=True)
    limit = getattr(args, "time_limit", None)
    if limit is not None:
        try:
            settings.cfg = settings.cfg.replace(time_limit=limit)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"--time-limit {limit:g}: {exc}") from None
    std = getattr(args, "noise_std", None)
    if std is not None:
        settings.cfg = settings.cfg.replace(noise_std=std)  # > 0, checked by argparse
    noise = settings.noise
    if settings.cfg.noise_std > 0 and (noise.get("noise_model") == "poisson-gaussian"
                                       or noise.get("gain") is not None
                                       or noise.get("read_noise") is not None):
        raise UsageError(
            f"--noise-std (or noise_std={settings.cfg.noise_std:g}): the std of Gaussian "
            f"noise; for photon counts give --gain/--read-noise with --noise-model "
            f"poisson-gaussian instead, not both")


def _cluster_requested(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "cluster", None) or getattr(args, "scheduler", None))


def _cluster_runner(args: argparse.Namespace) -> Any:
    """The runner for ``--cluster``/``--scheduler`` (None without them)."""
    if not _cluster_requested(args):
        return None
    from . import distributed

    option, value = (("--cluster", args.cluster) if args.cluster
                     else ("--scheduler", args.scheduler))
    try:
        spec = distributed.parse_cluster(value, name=option)
        if option == "--cluster" and spec.kind != "local":
            raise ValueError(f"--cluster: expected 'local' or 'local:N', got {value!r} (give "
                             f"a scheduler address to --scheduler)")
        if option == "--scheduler" and spec.kind not in ("address", "file"):
            raise ValueError(f"--scheduler: expected an address such as tcp://host:8786 or "
                             f"a scheduler file (.json), got {value!r}")
        distributed._require_distributed()
    except (ImportError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    return distributed.cli_runner(spec)


# ---------------------------------------------------------------------------------------
# settings
# ---------------------------------------------------------------------------------------
@dataclass
class Settings:
    cfg: Any
    seed: int | None
    device: str
    outdir: Path
    inputs: list[Path]
    unmatched: list[str]
    sample: bool
    mask_path: Path | None
    mask_file: dio.ImageFile | None
    keep_known: bool
    channel_axis: Any  # "auto", None or int
    stack: str
    output_dtype: str | None
    overwrite: bool
    resume: bool
    quiet: bool
    threads: int | None = None
    memory_budget: float | None = None
    noise: dict[str, Any] = field(default_factory=dict)
    command: list[str] = field(default_factory=list)

    @property
    def method(self) -> str:
        return self.cfg.method


#: the choices of --noise-model (napari_dip.core.api.NOISE_MODELS, without importing torch)
NOISE_MODELS = ("auto", "gaussian", "poisson-gaussian")


def _noise_settings(model: Any, args: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of the noise model ``model`` (none for the default, "auto", with
    no detector parameters)."""
    if model not in NOISE_MODELS:
        raise UsageError(f"--config {args.config}: run.noise_model: expected one of "
                         f"{', '.join(NOISE_MODELS)}, got {model!r}")
    if model == "gaussian":
        if args.gain is not None or args.read_noise is not None:
            raise UsageError("--gain/--read-noise: only used with --noise-model "
                             "poisson-gaussian or auto")
        return {"noise_model": "gaussian"}
    if model == "auto" and args.gain is None and args.read_noise is None:
        return {}
    return {"noise_model": model, "gain": args.gain, "read_noise": args.read_noise}


def _resolve_settings(args: argparse.Namespace, argv: Sequence[str]) -> Settings:
    from .core import resolve_config, resolve_device

    if args.sample and args.inputs:
        raise UsageError("--sample restores the bundled sample; give no INPUT with it")
    if not args.sample and not args.inputs:
        raise UsageError("no INPUT given: name image files, folders or glob patterns "
                         "(or use --sample)")
    options = dict(args.option)
    config = None
    seed = args.seed
    if seed is not None and seed >= 2**63:
        raise UsageError(f"--seed: expected an integer in [0, 2**63), got {seed}")
    saved_run: dict[str, Any] = {}
    if args.config:
        try:
            loaded = dio.load_config_file(args.config)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"--config {exc}") from None
        config = loaded["config"]
        saved_method = config.get("method", "dip")
        if args.method is not None and args.method != saved_method:
            raise UsageError(f"--method {args.method} conflicts with --config {args.config}, "
                             f"whose method is {saved_method!r}")
        if args.preset is not None:
            raise UsageError("--preset cannot be combined with --config: the configuration is "
                             "complete; change single fields with --steps or --option")
        if seed is None:
            seed = loaded["seed"]
        saved_run = loaded["run"]
    try:
        cfg = resolve_config(method=args.method or "dip", preset=args.preset or "balanced",
                             steps=args.steps, auto_stop=args.auto_stop, config=config,
                             options=options, masked=args.mask is not None)
    except (TypeError, ValueError) as exc:
        msg = str(exc)
        if msg.startswith("burn_in"):
            msg += " (lower it with --option burn_in=N)"
        elif msg.startswith("auto_stop"):
            msg = "--auto-stop is for --method dip: " + msg
        raise UsageError(msg) from None
    try:
        if _cluster_requested(args):  # the workers pick their device, maybe a GPU
            from .distributed import check_device

            dev = check_device(args.device)
        else:
            dev = resolve_device(args.device)
    except (TypeError, ValueError) as exc:
        raise UsageError(str(exc)) from None

    def pick(name: str, default: Any) -> Any:
        value = getattr(args, name)
        if value is not None:
            return value
        return saved_run.get(name, default)

    channel_axis = pick("channel_axis", "auto")
    if channel_axis == "none":
        channel_axis = None
    if channel_axis not in ("auto", None) and (isinstance(channel_axis, bool)
                                                or not isinstance(channel_axis, int)):
        raise UsageError(f"--config {args.config}: run.channel_axis: expected 'auto', 'none', "
                         f"null or an axis number, got {channel_axis!r}")
    stack = pick("stack", "auto")
    if stack not in dio.STACK_MODES:
        raise UsageError(f"--config {args.config}: run.stack: expected one of "
                         f"{', '.join(dio.STACK_MODES)}, got {stack!r}")
    output_dtype = pick("output_dtype", None)
    if output_dtype is not None:
        try:
            output_dtype = _dtype(str(output_dtype))
        except argparse.ArgumentTypeError as exc:
            raise UsageError(f"--config {args.config}: run.output_dtype: {exc}") from None
    keep_known = pick("keep_known", False)
    if not isinstance(keep_known, bool):
        raise UsageError(f"--config {args.config}: run.keep_known: expected true or false, "
                         f"got {keep_known!r}")

    outdir = Path(os.path.expanduser(args.outdir))
    if outdir.exists() and not outdir.is_dir():
        raise UsageError(f"-o {args.outdir}: exists and is not a folder")

    mask_path = mask_file = None
    if args.mask:
        mask_path = Path(os.path.expanduser(args.mask))
        if not mask_path.exists():
            raise UsageError(f"--mask {args.mask}: no such file or folder")
        if mask_path.is_file():
            try:
                mask_file = dio.read_image(mask_path)
            except dio.ImageReadError as exc:
                raise UsageError(f"--mask {exc}") from None

    inputs: list[Path] = []
    unmatched: list[str] = []
    if not args.sample:
        inputs, unmatched = dio.find_inputs(args.inputs)
        if not inputs:
            raise UsageError("no images match " + ", ".join(map(repr, unmatched))
                             + f" (expected {', '.join(dio.IMAGE_SUFFIXES)} files or folders)")
    return Settings(
        cfg=cfg, seed=seed, device=str(dev) if args.device == "auto" else args.device,
        outdir=outdir, inputs=inputs, unmatched=unmatched, sample=args.sample,
        mask_path=mask_path, mask_file=mask_file, keep_known=keep_known,
        channel_axis=channel_axis, stack=stack, output_dtype=output_dtype,
        overwrite=args.overwrite, resume=args.resume, quiet=args.quiet,
        threads=args.threads, memory_budget=args.memory_budget, command=[PROG, *argv],
        noise=_noise_settings(pick("noise_model", "auto"), args),
    )


# ---------------------------------------------------------------------------------------
# jobs
# ---------------------------------------------------------------------------------------
@dataclass
class Job:
    name: str
    path: Path | None  # None for the sample
    stem: str
    image_out: Path
    std_out: Path | None
    sidecar: Path
    problem: str | None = None  # found while planning: reported as a failure


@dataclass
class Outcome:
    job: Job
    status: str  # "done", "skipped" or "failed"
    message: str = ""
    seconds: float = 0.0


def _stem(path: Path) -> str:
    name = path.name
    for suffix in dio.IMAGE_SUFFIXES:
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    else:
        name = path.stem
    if name.lower().endswith(".ome"):
        name = name[:-4]
    return name


def _plan_jobs(settings: Settings) -> list[Job]:
    method = settings.method
    out = settings.outdir

    def make(name: str, path: Path | None, stem: str, fmt: str, suffix: str) -> Job:
        ext = dio.output_suffix(fmt, suffix, settings.output_dtype)
        return Job(
            name=name, path=path, stem=stem,
            image_out=out / f"{stem}_{method}{ext}",
            std_out=out / f"{stem}_{method}_std.tif" if method == "sgld" else None,
            sidecar=out / f"{stem}_{method}.json",
        )

    if settings.sample:
        return [make("sample noisy_camera", None, "noisy_camera", "array", "")]
    jobs = []
    claimed: dict[Path, Job] = {}
    protected = {p.resolve() for p in settings.inputs}
    if settings.mask_path is not None and settings.mask_path.is_file():
        protected.add(settings.mask_path.resolve())
    for path in settings.inputs:
        job = make(str(path), path, _stem(path), dio.image_format(path) or "tiff", path.suffix)
        outputs = [p for p in (job.image_out, job.std_out, job.sidecar) if p is not None]
        for p in outputs:
            key = p.resolve()
            if key in protected:
                job.problem = (f"its output {p} would replace an input file; choose another "
                               f"output folder")
                break
            if key in claimed:
                job.problem = (f"its output {p.name} would also be written for "
                               f"{claimed[key].name}; rename one of them or restore them in "
                               f"separate runs")
                break
        else:
            for p in outputs:
                claimed[p.resolve()] = job
        jobs.append(job)
    return jobs


def _is_complete(job: Job) -> bool:
    """Output and sidecar present (the sidecar, renamed last, names the outputs)."""
    if not job.sidecar.is_file():
        return False
    try:
        data = json.loads(job.sidecar.read_text(encoding="utf-8"))
        outputs = data["outputs"]
        names = [entry["file"] for entry in outputs.values()]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    return bool(names) and all((job.sidecar.parent / name).is_file() for name in names)


def _find_mask(settings: Settings, job: Job) -> tuple[np.ndarray | None, dict | None]:
    if settings.mask_path is None:
        return None, None
    if settings.mask_file is not None:
        mf = settings.mask_file
    else:
        for suffix in dio.IMAGE_SUFFIXES:
            for name in (f"{job.stem}{suffix}", f"{job.stem}_mask{suffix}"):
                candidate = settings.mask_path / name
                if candidate.is_file():
                    mf = dio.read_image(candidate)
                    break
            else:
                continue
            break
        else:
            raise ValueError(f"no mask for it in {settings.mask_path} (expected "
                             f"{job.stem}.tif, {job.stem}.png, {job.stem}_mask.tif, ...)")
    return mf.data, {"file": str(mf.path.resolve()), "sha256": mf.sha256}


# ---------------------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------------------
class _Reporter:
    """Progress bars and messages (bars only on a terminal, nothing but errors with -q)."""

    def __init__(self, quiet: bool, n_jobs: int) -> None:
        from tqdm.auto import tqdm

        self._tqdm = tqdm
        self.quiet = quiet
        self.bars = not quiet and sys.stderr.isatty()
        self.batch = None
        if self.bars and n_jobs > 1:
            self.batch = tqdm(total=n_jobs, unit="image", desc=PROG, position=0,
                              dynamic_ncols=True)

    def image_bar(self, desc: str, total: int):
        if not self.bars:
            return None
        return self._tqdm(total=total, unit="step", desc=desc, leave=False,
                          position=1 if self.batch is not None else 0, dynamic_ncols=True)

    def info(self, text: str) -> None:
        if not self.quiet:
            self._tqdm.write(text, file=sys.stdout)
            sys.stdout.flush()

    def error(self, text: str) -> None:
        self._tqdm.write(text, file=sys.stderr)

    def advance(self) -> None:
        if self.batch is not None:
            self.batch.update(1)

    def close(self) -> None:
        if self.batch is not None:
            self.batch.close()


@dataclass
class PreparedJob:
    """An input read and cut into the items (frames or volumes) that are restored."""

    job: Job
    source: dio.ImageFile
    input_info: dict[str, Any]
    reference: np.ndarray | None
    channel_axis: Any
    alpha: np.ndarray | None
    layout: dio.Layout
    items: list[np.ndarray]
    masks: list[np.ndarray | None]
    ref_items: list[np.ndarray | None]
    mask_info: dict[str, Any] | None
    seed: int
    t0: float
    noise: dict[str, Any] = field(default_factory=dict)  # the noise model's arguments
    shared: dict[str, Any] = field(default_factory=dict)  # settings the items share


def _run_job(job: Job, settings: Settings, reporter: _Reporter) -> Outcome:
    prep = _prepare_job(job, settings)
    finals = _run_items(prep, settings, reporter)
    return _write_job(prep, finals, settings)


def _prepare_job(job: Job, settings: Settings) -> PreparedJob:
    """Read the input (or the sample), its mask, and plan its items."""
    from .core.device import resolve_seed

    t0 = time.perf_counter()
    reference = None
    if job.path is None:
        from .samples import noisy_camera

        noisy, clean = noisy_camera(size=256, sigma=25, seed=0)
        source = dio.ImageFile.from_array(noisy, axes="YX")
        reference = clean
        input_info: dict[str, Any] = {"sample": "noisy_camera", "size": 256, "sigma": 25,
                                      "noise_seed": 0, "sha256": source.sha256}
    else:
        source = dio.read_image(job.path)
        input_info = {"file": str(job.path.resolve()), "sha256": source.sha256}
    input_info.update(format=source.format, shape=list(source.data.shape),
                      dtype=str(source.data.dtype), axes=source.axes)

    data, axes = source.data, source.axes
    if settings.channel_axis == "auto":
        channel_axis = source.channel_axis
    else:
        channel_axis = settings.channel_axis
    # PNG/JPEG with alpha: restore the colours, keep the alpha channel as it is.
    alpha = None
    if (source.format in ("png", "jpeg") and axes == "YXS" and channel_axis in (2, -1)
            and data.shape[-1] in (2, 4)):
        alpha = data[..., -1]
        data = data[..., :-1]
        if data.shape[-1] == 1:
            data, axes, channel_axis = data[..., 0], "YX", None
    layout = dio.plan_layout(data.shape, axes, channel_axis, settings.stack)
    mask, mask_info = _find_mask(settings, job)
    masks = layout.split_mask(mask) if mask is not None else [None] * layout.n_items
    items = layout.split(data)
    ref_items = layout.split(reference) if reference is not None else [None] * len(items)
    seed = resolve_seed(settings.seed)
    noise = dict(settings.noise)
    if len(items) > 1:  # one noise model for every frame or volume of the file
        from .core.api import choose_noise_model_for_frames

        noise["noise_model"] = choose_noise_model_for_frames(
            items, settings.cfg, channel_axis=layout.item_channel_axis, masks=masks,
            noise_model=noise.get("noise_model", "auto"), gain=noise.get("gain"),
            read_noise=noise.get("read_noise"))
    shared: dict[str, Any] = {}
    if len(items) > 1 and all(m is None for m in masks):
        from .core.api import choose_r2r_alpha_for_frames

        alpha_r2r = choose_r2r_alpha_for_frames(  # one R2R strength for every frame
            items, settings.cfg, channel_axis=layout.item_channel_axis,
            noise_model=noise.get("noise_model", "auto"), gain=noise.get("gain"),
            read_noise=noise.get("read_noise"))
        if alpha_r2r is not None:
            shared["r2r_alpha"] = alpha_r2r
    return PreparedJob(job=job, source=source, input_info=input_info, reference=reference,
                       channel_axis=channel_axis, alpha=alpha, layout=layout, items=items,
                       masks=masks, ref_items=ref_items, mask_info=mask_info, seed=seed, t0=t0,
                       noise=noise, shared=shared)


def _item_kwargs(prep: PreparedJob, index: int, settings: Settings) -> dict[str, Any]:
    """Keyword arguments of :func:`napari_dip.iterate` for item ``index`` (but the image)."""
    return dict(config=settings.cfg, mask=prep.masks[index],
                channel_axis=prep.layout.item_channel_axis, device=settings.device,
                seed=prep.seed, reference=prep.ref_items[index],
                output_dtype=settings.output_dtype, keep_known=settings.keep_known,
                memory_budget=settings.memory_budget, **prep.noise, **prep.shared)


def _run_items(prep: PreparedJob, settings: Settings, reporter: _Reporter) -> list[Any]:
    """Restore the items one after the other here; the final snapshot of each."""
    from .core import iterate

    finals = []
    bar = reporter.image_bar(Path(prep.job.name).name, settings.cfg.steps * len(prep.items))
    try:
        for index, item in enumerate(prep.items):
            run = iterate(item, **_item_kwargs(prep, index, settings))
            last = 0
            snap = None
            with contextlib.closing(run):
                for snap in run:
                    if bar is not None:
                        bar.update(snap.step - last)
                        bar.set_postfix(loss=f"{snap.loss:.3g}", refresh=False)
                    last = snap.step
            finals.append(snap)
    finally:
        if bar is not None:
            bar.close()
    return finals


def _write_job(prep: PreparedJob, finals: Sequence[Any], settings: Settings,
               extra: dict[str, Any] | None = None) -> Outcome:
    """Merge the items' final snapshots and write the outputs and the sidecar (the sidecar
    last; nothing is left behind if writing fails). ``extra`` adds entries to the sidecar."""
    from .core import run_metadata
    from .core.engine import psnr as psnr_db

    job, source, layout, reference = prep.job, prep.source, prep.layout, prep.reference
    channel_axis, alpha, seed = prep.channel_axis, prep.alpha, prep.seed
    restored = layout.merge([s.image for s in finals])
    std = None
    if settings.method == "sgld":
        std = layout.merge([np.sqrt(s.variance) if s.variance is not None
                            else np.zeros(s.image.shape, np.float32) for s in finals])
        std = std.astype(np.float32)
    out_axes = layout.axes
    if alpha is not None:
        a = alpha.astype(restored.dtype) if restored.dtype != alpha.dtype else alpha
        restored = np.concatenate([restored if restored.ndim == 3 else restored[..., None],
                                   a[..., None]], axis=-1)
        out_axes = "YXS"
    image_out = job.image_out
    if image_out.suffix == ".png" and not dio.png_writable(restored):
        image_out = image_out.with_suffix(".tif")
    like = source if source.format == "tiff" else None

    info0 = finals[0].info
    meta = run_metadata(
        info0,
        steps=int(sum(s.step for s in finals)),
        stop_reason=_joint_reason([s.stop_reason or "" for s in finals]),
        best_step=finals[0].best_step if len(finals) == 1 else None,
        elapsed=float(sum(s.elapsed for s in finals)),
    )
    if len(finals) > 1 and not settings.cfg.noise_std > 0:
        meta.pop("noise_std", None)  # each frame read its own: see "frames"
    meta["input_shape"] = list(source.data.shape)
    meta["input_dtype"] = str(source.data.dtype)
    meta["channel_axis"] = channel_axis
    vers = dict(meta.pop("versions"))
    vers.update(_io_versions())
    outputs: dict[str, Any] = {}
    sidecar: dict[str, Any] = {
        **meta,
        "input": prep.input_info,
        "mask": prep.mask_info,
        "outputs": outputs,
        "run": {
            "stack": settings.stack,
            "channel_axis": settings.channel_axis,
            "output_dtype": settings.output_dtype,
            "keep_known": settings.keep_known,
            "memory_budget_gib": settings.memory_budget,
            "noise_model": settings.noise.get("noise_model", "auto"),
            "layout": layout.describe(),
            "items": layout.n_items,
            "item_shape": list(layout.item_shape),
            "item_axes": "".join(layout.axes[a] for a in layout.order[len(layout.loop_axes):]),
        },
    }
    if len(finals) > 1:
        sidecar["frames"] = [
            {"index": i, "steps": s.step, "stop_reason": s.stop_reason, "best_step": s.best_step,
             "elapsed": s.elapsed, "noise_std": s.info.noise_std} for i, s in enumerate(finals)
        ]
    if reference is not None:
        sidecar["psnr"] = {"input": psnr_db(source.data, reference),
                           "output": psnr_db(restored, reference)}
    sidecar["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    sidecar["command"] = settings.command
    sidecar["versions"] = vers
    if extra:
        sidecar.update(extra)

    with dio.OutputGroup() as group:
        tmp = group.add_image(image_out, restored, like=like, axes=out_axes)
        outputs["image"] = _describe_output(image_out, tmp, restored)
        if std is not None:
            tmp = group.add_image(job.std_out, std, like=like, axes=layout.axes)
            outputs["std"] = _describe_output(job.std_out, tmp, std)
        group.add_json(job.sidecar, sidecar)
        group.commit()

    seconds = time.perf_counter() - prep.t0
    parts = [f"{sidecar['steps']} steps", f"{seconds:.1f} s", f"seed {seed}"]
    if "psnr" in sidecar:
        parts.append(f"PSNR {sidecar['psnr']['input']:.2f} -> {sidecar['psnr']['output']:.2f} dB")
    written = ", ".join(str(job.sidecar.parent / o["file"]) for o in outputs.values())
    return Outcome(job, "done", f"{written} ({layout.describe()}; {', '.join(parts)})", seconds)


def _describe_output(final: Path, tmp: Path, data: np.ndarray) -> dict[str, Any]:
    return {"file": final.name, "sha256": dio.sha256_file(tmp), "shape": list(data.shape),
            "dtype": str(data.dtype)}


def _joint_reason(reasons: list[str]) -> str:
    unique = list(dict.fromkeys(reasons))
    if len(unique) == 1:
        return unique[0]
    return f"differs between the {len(reasons)} frames (see 'frames')"


def _io_versions() -> dict[str, str]:
    out = {}
    for name, module in (("tifffile", "tifffile"), ("imageio", "imageio"),
                         ("scikit-image", "skimage")):
        try:
            out[name] = __import__(module).__version__
        except Exception:  # noqa: BLE001 - versions are informative only
            pass
    return out


def _check_existing(job: Job, settings: Settings) -> str | None:
    """A reason to skip the job, or None to run it."""
    if settings.resume and _is_complete(job):
        return f"complete ({job.sidecar} exists)"
    if settings.overwrite:
        return None
    candidates = [job.image_out, job.image_out.with_suffix(".tif"), job.std_out, job.sidecar]
    for p in candidates:
        if p is not None and p.exists():
            hint = "use --overwrite to replace it"
            if not settings.resume:
                hint += " or --resume to skip finished images"
            elif not _is_complete(job):
                hint = "it is incomplete (no sidecar naming it); " + hint
            return f"{p} exists; {hint}"
    return None


def _precheck(job: Job, settings: Settings) -> Outcome | None:
    """The outcome of a job that is not run (a planning problem or existing outputs)."""
    if job.problem:
        return Outcome(job, "failed", job.problem)
    reason = _check_existing(job, settings)
    if reason is not None:
        return Outcome(job, "skipped", reason)
    return None


def _failure(job: Job, exc: BaseException) -> Outcome:
    """A failed job's outcome, with the first line of the error as the reason."""
    if isinstance(exc, dio.ImageReadError):
        return Outcome(job, "failed", str(exc).removeprefix(f"{job.path}: "))
    text = str(exc).strip().splitlines()
    reason = text[0] if text else ""
    return Outcome(job, "failed", reason or type(exc).__name__)


def _report(outcome: Outcome, outcomes: list[Outcome], reporter: _Reporter) -> None:
    outcomes.append(outcome)
    job = outcome.job
    if outcome.status == "done":
        reporter.info(f"done     {job.name} -> {outcome.message}")
    elif outcome.status == "skipped":
        reporter.info(f"skipped  {job.name}: {outcome.message}")
    else:
        reporter.error(f"{PROG}: error: {job.name}: {outcome.message}")
    reporter.advance()


def _run(settings: Settings, runner: Any = None) -> int:
    """Run the batch. ``runner(jobs, settings, reporter, report)``, when given, runs the jobs
    that are neither skipped nor failed while planning, and calls ``report(outcome)`` once
    per job; by default they run here, one after the other."""
    t0 = time.perf_counter()
    try:
        settings.outdir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"{PROG}: error: -o {settings.outdir}: cannot create the folder ({exc})",
              file=sys.stderr)
        return EXIT_USAGE
    probe = dio.temp_path(settings.outdir / "write-check")
    try:  # before any restoration: a batch must not fail only when it writes its results
        probe.touch(exist_ok=False)
        probe.unlink()
    except OSError as exc:
        print(f"{PROG}: error: -o {settings.outdir}: cannot write to the folder "
              f"({exc.strerror or exc})", file=sys.stderr)
        return EXIT_USAGE
    jobs = _plan_jobs(settings)
    reporter = _Reporter(settings.quiet, len(jobs))
    outcomes: list[Outcome] = []
    for pattern in settings.unmatched:
        reporter.error(f"{PROG}: error: no images match {pattern!r}")
        outcomes.append(Outcome(Job(pattern, None, "", Path(), None, Path()), "failed",
                                "no images match this pattern"))
    interrupted = False
    try:
        if runner is None:
            for job in jobs:
                outcome = _precheck(job, settings)
                if outcome is None:
                    try:
                        outcome = _run_job(job, settings, reporter)
                    except KeyboardInterrupt:
                        raise
                    except Exception as exc:  # noqa: BLE001 - report and go on with the rest
                        outcome = _failure(job, exc)
                _report(outcome, outcomes, reporter)
        else:
            pending = []
            for job in jobs:
                outcome = _precheck(job, settings)
                if outcome is None:
                    pending.append(job)
                else:
                    _report(outcome, outcomes, reporter)
            if pending:
                runner(pending, settings, reporter,
                       lambda outcome: _report(outcome, outcomes, reporter))
    except KeyboardInterrupt:
        interrupted = True
    finally:
        reporter.close()

    counts = {s: sum(o.status == s for o in outcomes) for s in ("done", "skipped", "failed")}
    seconds = time.perf_counter() - t0
    failed = [o for o in outcomes if o.status == "failed"]
    if interrupted:
        print(f"{PROG}: interrupted after {counts['done']} done; unfinished outputs were "
              f"removed, rerun with --resume to go on", file=sys.stderr)
    if not settings.quiet:
        summary = (f"{PROG}: {counts['done']} done, {counts['skipped']} skipped, "
                   f"{counts['failed']} failed in {seconds:.1f} s")
        print(summary, file=sys.stdout)
        for o in failed:
            print(f"  failed: {o.job.name}: {o.message}", file=sys.stdout)
        sys.stdout.flush()
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if failed else EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``napari-dip`` command with ``argv`` (default: ``sys.argv[1:]``).

    Returns the exit status: 0 when all inputs succeeded (or were skipped), 1 when some
    failed, 2 for usage errors (bad arguments, no inputs matched, bad configuration).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and argparse errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        settings = _resolve_settings(args, argv)
        _apply_shorthands(args, settings)
        runner = _cluster_runner(args)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    threads = None
    if settings.threads is not None:
        import torch

        threads = torch.get_num_threads()
        torch.set_num_threads(settings.threads)
    # SIGTERM (e.g. from a batch scheduler) stops like Ctrl-C: unfinished files are removed
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        return _run(settings, runner)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
        if threads is not None:
            torch.set_num_threads(threads)


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
