"""Fault matrix of the Python API and the command line: bad inputs, bad configurations,
interruptions and errors inside a run.

Every case is a declared :class:`Case` (id, front end, what is done, what must happen).
The test that checks a case is parametrized with it (its test id is the case id) and
records what it observed, so that ``scripts/fault_report.py`` can run this file and
``tests/napari/test_fault_matrix_widget.py`` (the widget's cases) and write
``docs/FAULTS.md``. :func:`test_report_lists_exactly_the_cases` keeps that report in step
with the cases declared here and in the widget's file.

Everything is tiny: 16 x 16 images, nets of width 8, at most 30 steps, on the CPU.
"""

from __future__ import annotations

import ast
import contextlib
import gc
import hashlib
import importlib.util
import json
import math
import os
import pickle
import random
import re
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from napari_dip import io as dio
from napari_dip import iterate, restore
from napari_dip.cli import main

ROOT = Path(__file__).resolve().parents[1]
WIDGET_FILE = ROOT / "tests" / "napari" / "test_fault_matrix_widget.py"
REPORT = ROOT / "docs" / "FAULTS.md"

TINY = dict(width=8, scales=2, skip_channels=2, input_channels=8, snapshot_every=3)
FAST = ["--preset", "fast", "--steps", "6", "--option", "loss=mse", "--option", "width=8",
        "--option", "scales=2",
        "--option", "snapshot_every=3", "--threads", "1", "--device", "cpu", "--seed", "0"]


@dataclass(frozen=True)
class Case:
    """One fault: what is done to which front end, and what must happen."""

    id: str
    front: str  # "api", "cli" or "package" (the widget's cases are in tests/napari)
    done: str
    expect: str
    params: dict[str, Any] = field(default_factory=dict, compare=False)

    def __str__(self) -> str:
        return self.id


# configuration faults, shared by the API and the command line: the configuration and the
# key its error must name
CONFIG_FAULTS: dict[str, tuple[Any, str]] = {
    "unknown-key": ({"method": "dip", "widht": 8}, "widht"),
    "wrong-type": ({"width": "8"}, "width"),
    "out-of-range": ({"lr_final": 2.5}, "lr_final"),
    "nan": ({"lr": math.nan}, "lr"),
    "huge-int": ({"scales": 10**30}, "scales"),
    "dunder": ({"__class__": "os.system", "__reduce__": ["os.system", "echo hacked"]},
               "__class__"),
    "bool-for-int": ({"steps": True}, "steps"),
    "not-object": (["width", 8], "config"),
}

CASES = [
    # -- Python API ---------------------------------------------------------------------
    Case("api-close-random", "api",
         "Close the iterate() generator of a DIP and an SGLD run after a random number of "
         "snapshots (0-5, seeded draw).",
         "No error; the snapshots seen are in order; a later run with the same seed gives "
         "exactly the image of a run made before the interruption.",
         {"seed": 2024}),
    Case("api-engine-error", "api",
         "The network's forward pass raises RuntimeError at its 7th call (fault injection).",
         "restore() raises that RuntimeError with its message; the generator is finished; the "
         "caller's image is unchanged; the next run equals an undisturbed one."),
    Case("api-keyboard-interrupt", "api",
         "The network's forward pass raises KeyboardInterrupt mid-run.",
         "KeyboardInterrupt reaches the caller unchanged; the next run works."),
    Case("api-config-unknown-key", "api", "restore(config=...) with an unknown key ('widht').",
         "TypeError naming 'widht' (and the known keys); nothing runs.",
         {"fault": "unknown-key"}),
    Case("api-config-wrong-type", "api", "restore(config=...) with width \"8\" (a string).",
         "TypeError naming 'width'; nothing runs.", {"fault": "wrong-type"}),
    Case("api-config-out-of-range", "api",
         "restore(config=...) with lr_final 2.5 (a fraction in [0, 1]).",
         "ValueError naming 'lr_final' and the range; nothing runs.", {"fault": "out-of-range"}),
    Case("api-config-nan", "api", "restore(config=...) with lr NaN.",
         "ValueError naming 'lr'; nothing runs.", {"fault": "nan"}),
    Case("api-config-huge-int", "api", "restore(config=...) with scales 10**30.",
         "ValueError naming 'scales' and the range; nothing runs.", {"fault": "huge-int"}),
    Case("api-config-dunder", "api",
         "restore(config=...) with '__class__' and '__reduce__' keys naming os.system.",
         "TypeError naming '__class__' as an unknown key; nothing runs.", {"fault": "dunder"}),
    Case("api-config-bool-for-int", "api", "restore(config=...) with steps true.",
         "TypeError naming 'steps'; nothing runs.", {"fault": "bool-for-int"}),
    Case("api-config-not-object", "api", "restore(config=[\"width\", 8]) (not a dict).",
         "TypeError naming 'config'; nothing runs.", {"fault": "not-object"}),
    Case("api-out-of-memory", "api",
         "The device runs out of memory (torch.OutOfMemoryError from the forward pass) for "
         "any input larger than 40 x 40 pixels; a 64 x 64 image is restored.",
         "The run starts again in tiles that fit and finishes; the result has the image's "
         "shape; info.notes says out of memory and the tile size; steps never go back."),
    Case("api-out-of-memory-everywhere", "api",
         "The device runs out of memory for every input, even the smallest tile.",
         "MemoryError that says out of memory on which device and what to try (a narrower "
         "net, a lighter preset; device='cpu' when on a GPU); the caller's image is "
         "unchanged."),
    Case("api-memory-20-runs", "api",
         "20 runs in a row in one process (DIP and SGLD alternately, 32x32), after 3 warm-up "
         "runs; on a CUDA machine also 20 runs on the GPU.",
         "Resident memory grows by less than 25 MiB; GPU memory allocated returns to its "
         "level before the runs."),
    # -- command line -------------------------------------------------------------------
    Case("cli-sigint", "cli",
         "SIGINT (Ctrl-C) arrives during a batch of two inputs: at step 9 (the second input) "
         "and at two steps drawn at random (seeded); each time the same command with --resume "
         "follows.",
         "Exit 130 and 'interrupted'; inputs finished before the signal have complete outputs, "
         "the interrupted one has no file and no temporary file; --resume restores the rest "
         "(exit 0).",
         {"seed": 11}),
    Case("cli-sigterm", "cli", "SIGTERM arrives while the only input is being restored.",
         "Exit 130; OUTDIR holds no file at all (not even a temporary one)."),
    Case("cli-interrupt-writing", "cli",
         "KeyboardInterrupt while the outputs are written (the image's temporary file exists, "
         "the sidecar is being written).",
         "Exit 130; OUTDIR holds no file at all."),
    Case("cli-interrupt-commit", "cli",
         "--overwrite over a complete earlier output; KeyboardInterrupt between renaming the "
         "new image and the new sidecar into place.",
         "Exit 130; no sidecar is left beside an image it does not describe (SHA-256 checked); "
         "no temporary files."),
    Case("cli-engine-error", "cli",
         "The forward pass raises RuntimeError once, during the first of two inputs.",
         "Exit 1; the error names the input and the message; no file for that input; the "
         "second input is restored."),
    Case("cli-disk-full", "cli",
         "Writing the first of two inputs' image fails half-way with 'No space left on "
         "device' (OSError, fault injection).",
         "Exit 1; the error names the input and the cause; no file and no temporary file for "
         "it; the second input is restored."),
    Case("cli-unwritable-outdir", "cli",
         "-o names an existing folder without write permission.",
         "Exit 2 before any restoration; the error names -o and the folder; nothing written."),
    Case("cli-outdir-is-file", "cli", "-o names an existing file.",
         "Exit 2; the error names -o; the file is unchanged."),
    Case("cli-outdir-uncreatable", "cli", "-o names a folder below a file (notes.txt/out).",
         "Exit 2; the error names -o and says the folder cannot be created."),
    Case("cli-existing-outputs", "cli",
         "Outputs of an earlier run exist; the command runs again without --overwrite.",
         "Exit 0; the input is skipped with the --overwrite hint; the outputs' bytes and "
         "modification times are unchanged."),
    Case("cli-unicode-paths", "cli",
         "Inputs 'données brutes/écran 1.tif' and 'données brutes/ß ü 2.png' (folder given), "
         "-o 'sortie résultats'; then --config with the sidecar.",
         "Exit 0; 'écran 1_dip.tif' and 'ß ü 2_dip.png' read back with the inputs' shape and "
         "dtype; the sidecar names the input path; --config repeats the run bit for bit."),
    Case("cli-truncated-tiff", "cli",
         "A TIFF cut short inside its pixel data, beside a good input.",
         "Exit 1; the error names the file and 'cannot read as TIFF'; no file for it; the "
         "good input is restored.",
         {"kind": "truncated-tiff", "message": "cannot read as TIFF"}),
    Case("cli-truncated-png", "cli", "A PNG cut short inside its image data, beside a good "
         "input.",
         "Exit 1; the error names the file and 'cannot read as PNG'; the good input is "
         "restored.",
         {"kind": "truncated-png", "message": "cannot read as PNG"}),
    Case("cli-zero-byte", "cli", "A zero-byte .tif file, beside a good input.",
         "Exit 1; the error names the file; the good input is restored.",
         {"kind": "zero-byte", "message": "cannot read as TIFF"}),
    Case("cli-text-as-tif", "cli", "A text file renamed .tif, beside a good input.",
         "Exit 1; the error names the file and says it is not a TIFF; the good input is "
         "restored.",
         {"kind": "text", "message": "not a TIFF"}),
    Case("cli-dir-named-tif", "cli",
         "A folder named 'x.tif' given as an input, beside a good input; the same folder "
         "inside an input folder.",
         "Given by name: exit 1, reported as matching no images; inside a folder: ignored "
         "(exit 0); the good input is restored both times.",
         {"kind": "directory", "message": "no images match"}),
    Case("cli-unreadable-input", "cli", "An input file without read permission, beside a good "
         "input.",
         "Exit 1; the error names the file and 'cannot read'; the good input is restored.",
         {"kind": "unreadable", "message": "cannot read"}),
    Case("cli-config-unknown-key", "cli", "--config FILE.json with an unknown key ('widht').",
         "Exit 2; the error names 'widht'; OUTDIR is not created.", {"fault": "unknown-key"}),
    Case("cli-config-wrong-type", "cli", "--config FILE.json with width \"8\" (a string).",
         "Exit 2; the error names 'width'; OUTDIR is not created.", {"fault": "wrong-type"}),
    Case("cli-config-out-of-range", "cli", "--config FILE.json with lr_final 2.5.",
         "Exit 2; the error names 'lr_final'; OUTDIR is not created.",
         {"fault": "out-of-range"}),
    Case("cli-config-nan", "cli", "--config FILE.json with lr NaN (the bare word NaN).",
         "Exit 2; the error names 'lr'; OUTDIR is not created.", {"fault": "nan"}),
    Case("cli-config-huge-int", "cli", "--config FILE.json with scales 10**30.",
         "Exit 2; the error names 'scales'; OUTDIR is not created.", {"fault": "huge-int"}),
    Case("cli-config-dunder", "cli",
         "--config FILE.json with '__class__' and '__reduce__' keys naming os.system.",
         "Exit 2; the error names '__class__' as an unknown key; nothing is executed.",
         {"fault": "dunder"}),
    Case("cli-config-bool-for-int", "cli", "--config FILE.json with steps true.",
         "Exit 2; the error names 'steps'.", {"fault": "bool-for-int"}),
    Case("cli-config-not-object", "cli", "--config FILE.json holding a JSON list.",
         "Exit 2; the error names the file and says a JSON object is expected.",
         {"config": ["width", 8], "key": "expected a JSON object"}),
    Case("cli-config-sidecar-bad-run", "cli",
         "--config with a sidecar whose 'run' section has channel_axis \"x\" and keep_known "
         "\"yes\".",
         "Exit 2; the error names 'run.channel_axis'.",
         {"config": {"config": {"method": "dip", "width": 8, "scales": 2, "steps": 6},
                     "run": {"channel_axis": "x", "keep_known": "yes"}},
          "key": "run.channel_axis"}),
    Case("cli-config-seed-huge", "cli", "--config with seed 2**70 (and, separately, --seed "
         "2**70).",
         "Exit 2 both times, before any restoration; the errors name 'seed' and '--seed'.",
         {"config": {"method": "dip", "seed": 2**70}, "key": "seed"}),
    Case("cli-config-pickle", "cli",
         "--config with a binary pickle whose payload would create a file, and with the same "
         "payload as a protocol-0 (text) pickle.",
         "Exit 2 both times; the errors name the file and say it is not JSON; the payload "
         "never runs (the file is not created)."),
    # -- the package as a whole ---------------------------------------------------------
    Case("package-no-unsafe-loading", "package",
         "Scan the package's Python source for pickle/marshal/shelve/dill imports (also "
         "through __import__ or import_module), eval(), exec(), torch.load() without "
         "weights_only=True, yaml.load()/unsafe_load() and numpy.load(allow_pickle=True).",
         "None found: configurations are plain JSON, nothing is unpickled or evaluated."),
]
BY_ID = {c.id: c for c in CASES}


def cases(*ids: str):
    """Parametrize a test with the declared cases ``ids`` (the test ids are the case ids)."""
    return pytest.mark.parametrize("case", [BY_ID[i] for i in ids], ids=list(ids))


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One intra-op thread: tiny nets gain nothing from more, and on a busy machine a
    second thread that waits for a core makes every step many times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


_TEMP_DIRS = re.compile(re.escape(tempfile.gettempdir()) +
                        r"/(?:pytest-of-[^/]+/pytest-\d+/[^/]+|napari-dip-faults-[^/]+)/")


@pytest.fixture
def observe(record_property):
    """Collects what a test observed (temporary folders left out, each note at most 200
    characters); stored as the test's ``observed`` property for the report."""
    notes: list[str] = []

    def add(text: str) -> None:
        text = " ".join(_TEMP_DIRS.sub("", str(text)).split())
        notes.append(text if len(text) <= 200 else text[:199] + "\u2026")

    yield add
    record_property("observed", "; ".join(notes))


class Fault:
    """Makes the network's forward pass fail (or do something) at its ``at``-th call."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from napari_dip.core import engine

        self.calls = 0
        self.at: int | None = None
        self.action: Any = None
        real = engine.SkipNet.forward

        def forward(net, *args, **kwargs):
            self.calls += 1
            if self.calls == self.at:
                if isinstance(self.action, BaseException):
                    raise self.action
                self.action()
            return real(net, *args, **kwargs)

        monkeypatch.setattr(engine.SkipNet, "forward", forward)

    def arm(self, at: int, action: Any) -> None:
        self.calls, self.at, self.action = 0, at, action


@pytest.fixture
def fault(monkeypatch):
    return Fault(monkeypatch)


def _image(seed=0, shape=(16, 16), dtype=np.uint8):
    rng = np.random.default_rng(seed)
    hi = np.iinfo(dtype).max if dtype != np.float32 else 1.0
    return (rng.random(shape) * hi * 0.8).astype(dtype)


def _files(folder: Path) -> list[str]:
    """Every name in a folder, hidden (temporary) files included."""
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


@contextlib.contextmanager
def _default_sigint():
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def _permissions_apply():
    """File permissions bind root only once it gives up its effective user id (restored
    afterwards); for other users they already do."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        yield
        return
    os.seteuid(65534)  # nobody
    try:
        yield
    finally:
        os.seteuid(0)


@pytest.fixture
def open_tmp():
    """A temporary folder that any user may enter (for the permission cases)."""
    path = Path(tempfile.mkdtemp(prefix="napari-dip-faults-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for p in [path, *path.rglob("*")]:
            with contextlib.suppress(OSError):
                p.chmod(0o755 if p.is_dir() else 0o644)
        shutil.rmtree(path, ignore_errors=True)


# =======================================================================================
# Python API
# =======================================================================================
@cases("api-close-random")
def test_api_close_at_random_points(case, observe):
    rng = random.Random(case.params["seed"])
    img = _image(1, dtype=np.float32)
    before = img.copy()
    runs = {"dip": {}, "sgld": {"burn_in": 5, "thinning": 2}}
    reference = {m: restore(img, method=m, steps=12, seed=3, device="cpu", **TINY, **extra).image
                 for m, extra in runs.items()}
    for method, extra in runs.items():
        for _ in range(3):
            stop_after = rng.randint(0, 5)
            gen = iterate(img, method=method, steps=30, seed=3, device="cpu", **TINY, **extra)
            seen = [next(gen) for _ in range(stop_after)]
            gen.close()
            assert [s.step for s in seen] == [3 * (k + 1) for k in range(stop_after)]
            assert all(np.isfinite(s.image).all() and s.image.shape == img.shape for s in seen)
            with pytest.raises(StopIteration):
                next(gen)
            observe(f"{method} closed after {stop_after} snapshot(s)")
    for method, extra in runs.items():
        again = restore(img, method=method, steps=12, seed=3, device="cpu", **TINY, **extra)
        np.testing.assert_array_equal(again.image, reference[method])
    np.testing.assert_array_equal(img, before)
    observe("later runs identical to runs before the interruptions")


@cases("api-engine-error")
def test_api_engine_error(case, observe, fault):
    img = _image(2)
    before = img.copy()
    kw = dict(steps=12, seed=1, device="cpu", auto_stop=False, **TINY)  # all 12 steps run
    clean = restore(img, **kw).image
    fault.arm(7, RuntimeError("simulated failure in the network"))
    gen = iterate(img, **kw)
    with pytest.raises(RuntimeError, match="simulated failure in the network"):
        for _ in gen:
            pass
    with pytest.raises(StopIteration):
        next(gen)
    with pytest.raises(RuntimeError, match="simulated failure"):
        fault.arm(7, RuntimeError("simulated failure in the network"))
        restore(img, **kw)
    observe("RuntimeError with its message reached the caller (iterate and restore)")
    np.testing.assert_array_equal(img, before)
    fault.arm(0, None)  # disarmed
    np.testing.assert_array_equal(restore(img, **kw).image, clean)
    observe("next run identical to an undisturbed one")


@cases("api-keyboard-interrupt")
def test_api_keyboard_interrupt(case, observe, fault):
    img = _image(3)
    fault.arm(5, KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        restore(img, steps=12, seed=0, device="cpu", auto_stop=False, **TINY)
    observe("KeyboardInterrupt reached the caller")
    res = restore(img, steps=6, seed=0, device="cpu", auto_stop=False, **TINY)
    assert res.steps == 6 and res.image.shape == img.shape
    observe("next run completed")


@cases("api-config-unknown-key", "api-config-wrong-type", "api-config-out-of-range",
       "api-config-nan", "api-config-huge-int", "api-config-dunder", "api-config-bool-for-int",
       "api-config-not-object")
def test_api_bad_config(case, observe, fault):
    config, key = CONFIG_FAULTS[case.params["fault"]]
    fault.arm(1, RuntimeError("the run started"))
    with pytest.raises((TypeError, ValueError)) as info:
        restore(_image(), config=config, device="cpu")
    message = str(info.value)
    assert key in message, message
    assert fault.calls == 0
    observe(f"{type(info.value).__name__}: {message}")


@cases("api-out-of-memory")
def test_api_out_of_memory(case, observe, monkeypatch):
    import torch

    from napari_dip.core import engine

    real = engine.SkipNet.forward

    def forward(net, z):
        if z.shape[-1] * z.shape[-2] > 40 * 40:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 8.00 GiB")
        return real(net, z)

    monkeypatch.setattr(engine.SkipNet, "forward", forward)
    img = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    snaps = list(iterate(img, steps=6, seed=0, device="cpu", tile_overlap=4, **TINY))
    res = snaps[-1]
    assert res.done and res.image.shape == img.shape and np.isfinite(res.image).all()
    steps = [s.step for s in snaps]
    assert steps == sorted(steps)
    notes = [n for n in res.info.notes if "out of memory" in n]
    assert notes and res.info.tiles is not None
    observe(f"finished in {res.info.tiles['tiles']} tiles of {res.info.tiles['tile_shape']}; "
            f"note: {notes[-1]}")


@cases("api-out-of-memory-everywhere")
def test_api_out_of_memory_everywhere(case, observe, monkeypatch):
    import torch

    from napari_dip.core import engine

    def forward(net, z):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(engine.SkipNet, "forward", forward)
    img = np.random.default_rng(0).random((48, 48)).astype(np.float32)
    before = img.copy()
    with pytest.raises(MemoryError, match="out of memory") as info:
        restore(img, steps=6, seed=0, device="cpu", tile_overlap=4, **TINY)
    assert "narrower net" in str(info.value)
    np.testing.assert_array_equal(img, before)
    observe(f"MemoryError: {info.value}")


@cases("api-memory-20-runs")
@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc")
def test_api_memory_twenty_runs(case, observe):
    import torch

    img = _image(4, (32, 32), np.float32)
    kinds = [("dip", {}), ("sgld", {"burn_in": 3, "thinning": 1})]
    for k in range(3):
        restore(img, method=kinds[k % 2][0], steps=6, seed=0, device="cpu", **TINY,
                **kinds[k % 2][1])
    gc.collect()
    before = _rss_mib()
    for k in range(20):
        method, extra = kinds[k % 2]
        restore(img, method=method, steps=6, seed=k, device="cpu", **TINY, **extra)
    gc.collect()
    growth = _rss_mib() - before
    observe(f"CPU: RSS {before:.0f} -> {before + growth:.0f} MiB ({growth:+.1f} MiB over 20 "
            "runs)")
    assert growth < 25, f"resident memory grew by {growth:.1f} MiB over 20 runs"
    if not torch.cuda.is_available():
        observe("GPU: none on this machine")
        return
    restore(img, steps=6, seed=0, device="cuda", **TINY)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    allocated, reserved = torch.cuda.memory_allocated(), torch.cuda.memory_reserved()
    free = torch.cuda.mem_get_info()[0]
    for k in range(20):
        method, extra = kinds[k % 2]
        restore(img, method=method, steps=6, seed=k, device="cuda", **TINY, **extra)
    torch.cuda.synchronize()
    after = (torch.cuda.memory_allocated(), torch.cuda.memory_reserved(),
             torch.cuda.mem_get_info()[0])
    mib = 2**20
    observe(f"GPU ({torch.cuda.get_device_name(0)}), 20 runs: allocated {allocated / mib:.1f} "
            f"-> {after[0] / mib:.1f} MiB, reserved {reserved / mib:.1f} -> {after[1] / mib:.1f} "
            f"MiB, device memory in use {(free - after[2]) / mib:+.1f} MiB; peak during a run "
            f"{torch.cuda.max_memory_allocated() / mib:.1f} MiB")
    assert after[0] <= allocated, "GPU memory still allocated after the runs"
    assert after[1] <= reserved + 2 * mib, "the allocator holds more GPU memory after the runs"
    assert free - after[2] < 64 * mib, "the device has less free memory after the runs"


# =======================================================================================
# command line
# =======================================================================================
@pytest.fixture
def two_inputs(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    tifffile.imwrite(data / "a.tif", _image(10), photometric="minisblack")
    tifffile.imwrite(data / "b.tif", _image(11), photometric="minisblack")
    return data


def _complete_pairs(out: Path) -> dict[str, list[str]]:
    """Sidecars in ``out`` and the files they name, after checking every SHA-256."""
    pairs = {}
    for side in sorted(out.glob("*.json")):
        meta = json.loads(side.read_text(encoding="utf-8"))
        names = []
        for entry in meta["outputs"].values():
            path = out / entry["file"]
            assert path.is_file(), f"{side.name} names {entry['file']}, which is missing"
            assert _sha(path) == entry["sha256"], f"{side.name} does not describe {path.name}"
            names.append(entry["file"])
        pairs[side.name] = names
    return pairs


@cases("cli-sigint")
def test_cli_sigint(case, observe, fault, two_inputs, tmp_path, capsys):
    rng = random.Random(case.params["seed"])
    # 6 steps per input: forward passes 1-6 restore a.tif, 7-12 b.tif
    for i, at in enumerate([9, *rng.sample(range(1, 13), 2)]):
        out = tmp_path / f"out {i}"
        fault.arm(at, lambda: os.kill(os.getpid(), signal.SIGINT))
        with _default_sigint():
            status = main([str(two_inputs), "-o", str(out), *FAST])
        err = capsys.readouterr().err
        assert status == 130 and "interrupted" in err
        expected = ["a_dip.json", "a_dip.tif"] if at > 6 else []
        assert _files(out) == expected  # nothing of the interrupted input, no temporaries
        assert _complete_pairs(out) == ({"a_dip.json": ["a_dip.tif"]} if at > 6 else {})
        observe(f"SIGINT at step {at}: exit {status}; OUTDIR: {', '.join(expected) or 'empty'}")
        fault.arm(0, None)
        assert main([str(two_inputs), "-o", str(out), *FAST, "--resume"]) == 0
        summary = "1 done, 1 skipped" if at > 6 else "2 done, 0 skipped"
        assert f"{summary}, 0 failed" in capsys.readouterr().out
        assert _files(out) == ["a_dip.json", "a_dip.tif", "b_dip.json", "b_dip.tif"]
    observe("--resume then completed the batch each time (exit 0)")


@cases("cli-sigterm")
def test_cli_sigterm(case, observe, fault, two_inputs, tmp_path, capsys):
    out = tmp_path / "out"
    fault.arm(3, lambda: os.kill(os.getpid(), signal.SIGTERM))
    status = main([str(two_inputs / "a.tif"), "-o", str(out), *FAST])
    assert status == 130 and "interrupted" in capsys.readouterr().err
    assert _files(out) == []
    assert signal.getsignal(signal.SIGTERM) is not None  # the handler was put back
    observe(f"exit {status}; OUTDIR empty")


@cases("cli-interrupt-writing")
def test_cli_interrupt_while_writing(case, observe, two_inputs, tmp_path, monkeypatch):
    out = tmp_path / "out"
    seen = []
    real_to_json = dio.to_json

    def interrupted_to_json(*args, **kwargs):
        seen.append([n for n in _files(out) if n.startswith(".")])  # temporaries so far
        raise KeyboardInterrupt

    monkeypatch.setattr(dio, "to_json", interrupted_to_json)
    status = main([str(two_inputs / "a.tif"), "-o", str(out), *FAST, "-q"])
    monkeypatch.setattr(dio, "to_json", real_to_json)
    assert seen and seen[0], "the image's temporary file should exist when the sidecar is written"
    assert status == 130
    assert _files(out) == []
    observe(f"temporary files while writing: {len(seen[0])}; exit {status}; OUTDIR empty")


@cases("cli-interrupt-commit")
def test_cli_interrupt_during_commit(case, observe, two_inputs, tmp_path, monkeypatch):
    out = tmp_path / "out"
    image = str(two_inputs / "a.tif")
    assert main([image, "-o", str(out), *FAST, "-q"]) == 0
    old = {n: _sha(out / n) for n in _files(out)}
    real_replace = os.replace
    renames = []

    def replace(src, dst):
        renames.append(Path(dst).name)
        if len(renames) == 2:  # the new image is in place, the new sidecar is next
            raise KeyboardInterrupt
        return real_replace(src, dst)

    monkeypatch.setattr(dio.os, "replace", replace)
    status = main([image, "-o", str(out), *FAST, "-q", "--overwrite", "--seed", "5"])
    monkeypatch.setattr(dio.os, "replace", real_replace)
    assert status == 130
    left = _files(out)
    assert not [n for n in left if n.startswith(".")], left
    pairs = _complete_pairs(out)  # fails if a sidecar does not describe its image
    assert set(pairs) <= {"a_dip.json"}
    if pairs:
        assert {n: _sha(out / n) for n in left} == old  # the earlier pair, untouched
    observe(f"renamed before the interrupt: {renames[0]}; exit {status}; "
            f"OUTDIR: {', '.join(left) or 'empty'}")


@cases("cli-engine-error")
def test_cli_engine_error(case, observe, fault, two_inputs, tmp_path, capsys):
    out = tmp_path / "out"
    fault.arm(4, RuntimeError("simulated failure in the network"))
    status = main([str(two_inputs), "-o", str(out), *FAST, "--no-auto-stop"])
    captured = capsys.readouterr()
    assert status == 1
    assert "a.tif" in captured.err and "simulated failure in the network" in captured.err
    assert "1 done, 0 skipped, 1 failed" in captured.out
    assert _files(out) == ["b_dip.json", "b_dip.tif"]
    observe(f"exit {status}; error: {captured.err.strip().splitlines()[0]}; "
            f"OUTDIR: {', '.join(_files(out))}")


@cases("cli-disk-full")
def test_cli_disk_full(case, observe, two_inputs, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    real_write = dio._write_to
    calls = []

    def write(target, *args, **kwargs):
        calls.append(Path(target).name)
        if len(calls) == 1:
            Path(target).write_bytes(b"II*\x00 the first bytes")  # a partial file
            raise OSError(28, "No space left on device")
        return real_write(target, *args, **kwargs)

    monkeypatch.setattr(dio, "_write_to", write)
    status = main([str(two_inputs), "-o", str(out), *FAST])
    captured = capsys.readouterr()
    assert status == 1
    assert "a.tif" in captured.err and "No space left on device" in captured.err
    assert _files(out) == ["b_dip.json", "b_dip.tif"]
    observe(f"exit {status}; {captured.err.strip().splitlines()[0]}; "
            f"OUTDIR: {', '.join(_files(out))}")


@cases("cli-unwritable-outdir")
def test_cli_unwritable_outdir(case, observe, fault, open_tmp, capsys):
    data = open_tmp / "data"
    data.mkdir()
    tifffile.imwrite(data / "a.tif", _image(12), photometric="minisblack")
    out = open_tmp / "locked"
    out.mkdir()
    # a first run as usual loads every module the command needs
    assert main([str(data), "-o", str(open_tmp / "warm"), *FAST, "-q"]) == 0
    out.chmod(0o555)
    with _permissions_apply():
        try:
            (out / "probe").write_bytes(b"")
        except OSError:
            pass
        else:
            (out / "probe").unlink()
            pytest.skip("this user can write to a read-only folder")
        fault.arm(1, RuntimeError("a restoration started"))
        status = main([str(data), "-o", str(out), *FAST])
    err = capsys.readouterr().err
    assert status == 2, err
    assert "-o" in err and str(out) in err
    assert fault.calls == 0
    assert _files(out) == []
    observe(f"exit {status}; {err.strip()}")


@cases("cli-outdir-is-file")
def test_cli_outdir_is_a_file(case, observe, two_inputs, tmp_path, capsys):
    target = tmp_path / "result.tif"
    target.write_bytes(b"keep me")
    status = main([str(two_inputs), "-o", str(target), *FAST])
    err = capsys.readouterr().err
    assert status == 2 and "-o" in err and "not a folder" in err
    assert target.read_bytes() == b"keep me"
    observe(f"exit {status}; {err.strip()}")


@cases("cli-outdir-uncreatable")
def test_cli_outdir_cannot_be_created(case, observe, two_inputs, tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    out = tmp_path / "notes.txt" / "out"
    status = main([str(two_inputs), "-o", str(out), *FAST])
    err = capsys.readouterr().err
    assert status == 2 and "-o" in err and "cannot create" in err
    observe(f"exit {status}; {err.strip()}")


@cases("cli-existing-outputs")
def test_cli_existing_outputs_untouched(case, observe, two_inputs, tmp_path, capsys):
    out = tmp_path / "out"
    image = str(two_inputs / "a.tif")
    assert main([image, "-o", str(out), *FAST, "-q"]) == 0
    stamps = {p.name: (p.stat().st_mtime_ns, _sha(p)) for p in out.iterdir()}
    capsys.readouterr()
    status = main([image, "-o", str(out), *FAST, "--seed", "9"])
    text = capsys.readouterr().out
    assert status == 0 and "0 done, 1 skipped" in text and "--overwrite" in text
    assert {p.name: (p.stat().st_mtime_ns, _sha(p)) for p in out.iterdir()} == stamps
    observe(f"exit {status}; skipped with the hint; {len(stamps)} files unchanged")


@cases("cli-unicode-paths")
def test_cli_unicode_and_spaces(case, observe, tmp_path, capsys):
    data = tmp_path / "données brutes"
    data.mkdir()
    tif, png = _image(13, dtype=np.uint16), _image(14)
    tifffile.imwrite(data / "écran 1.tif", tif, photometric="minisblack")
    iio.imwrite(data / "ß ü 2.png", png, plugin="pillow", extension=".png")
    out = tmp_path / "sortie résultats"
    status = main([str(data), "-o", str(out), *FAST])
    assert status == 0, capsys.readouterr().err
    assert _files(out) == sorted(["écran 1_dip.json", "écran 1_dip.tif", "ß ü 2_dip.json",
                                  "ß ü 2_dip.png"])
    back_tif = dio.read_image(out / "écran 1_dip.tif")
    back_png = dio.read_image(out / "ß ü 2_dip.png")
    assert back_tif.data.shape == tif.shape and back_tif.data.dtype == tif.dtype
    assert back_png.data.shape == png.shape and back_png.data.dtype == png.dtype
    side = json.loads((out / "écran 1_dip.json").read_text(encoding="utf-8"))
    assert Path(side["input"]["file"]) == (data / "écran 1.tif").resolve()
    again = tmp_path / "encore une fois"
    assert main([str(data / "écran 1.tif"), "-o", str(again), "--config",
                 str(out / "écran 1_dip.json"), "--threads", "1", "--device", "cpu", "-q"]) == 0
    assert (again / "écran 1_dip.tif").read_bytes() == (out / "écran 1_dip.tif").read_bytes()
    observe(f"exit {status}; outputs: {', '.join(_files(out))}; --config repeat identical")


def _bad_input(kind: str, folder: Path) -> Path:
    good = _image(15, (16, 16))
    if kind == "truncated-tiff":
        path = folder / "cut.tif"
        tifffile.imwrite(path, good, photometric="minisblack")
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) - 100])  # the last 100 bytes of the pixels are gone
    elif kind == "truncated-png":
        path = folder / "cut.png"
        iio.imwrite(path, good, plugin="pillow", extension=".png")
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) // 2])
    elif kind == "zero-byte":
        path = folder / "empty.tif"
        path.write_bytes(b"")
    elif kind == "text":
        path = folder / "notes.tif"
        path.write_text("these are notes, not pixels\n")
    elif kind == "directory":
        path = folder / "x.tif"
        path.mkdir()
    elif kind == "unreadable":
        path = folder / "secret.tif"
        tifffile.imwrite(path, good, photometric="minisblack")
        path.chmod(0o000)
    else:  # pragma: no cover
        raise ValueError(kind)
    return path


@cases("cli-truncated-tiff", "cli-truncated-png", "cli-zero-byte", "cli-text-as-tif",
       "cli-dir-named-tif", "cli-unreadable-input")
def test_cli_bad_input_files(case, observe, open_tmp, capsys):
    data = open_tmp / "data"
    data.mkdir()
    tifffile.imwrite(data / "good.tif", _image(16), photometric="minisblack")
    bad = _bad_input(case.params["kind"], data)
    out = open_tmp / "out"
    out.mkdir()
    out.chmod(0o777)
    # a first run as usual loads every module the command needs
    assert main([str(data / "good.tif"), "-o", str(open_tmp / "warm"), *FAST, "-q"]) == 0
    capsys.readouterr()
    with _permissions_apply() if case.params["kind"] == "unreadable" else contextlib.nullcontext():
        status = main([str(bad), str(data / "good.tif"), "-o", str(out), *FAST])
    captured = capsys.readouterr()
    assert status == 1, captured.err
    assert bad.name in captured.err and case.params["message"] in captured.err, captured.err
    assert "1 done" in captured.out
    assert _files(out) == ["good_dip.json", "good_dip.tif"]
    line = next(x for x in captured.err.splitlines() if bad.name in x)
    observe(f"exit {status}; {line.strip()}; good input done")
    if case.params["kind"] == "directory":  # inside an input folder: not an image, ignored
        status = main([str(data), "-o", str(open_tmp / "out2"), *FAST, "-q"])
        assert status == 0 and _files(open_tmp / "out2") == ["good_dip.json", "good_dip.tif"]
        observe("inside an input folder: ignored, exit 0")


@cases("cli-config-unknown-key", "cli-config-wrong-type", "cli-config-out-of-range",
       "cli-config-nan", "cli-config-huge-int", "cli-config-dunder", "cli-config-bool-for-int",
       "cli-config-not-object", "cli-config-sidecar-bad-run", "cli-config-seed-huge")
def test_cli_bad_config(case, observe, fault, two_inputs, tmp_path, capsys):
    out = tmp_path / "out"
    if "fault" in case.params:
        config, key = CONFIG_FAULTS[case.params["fault"]]
    else:
        config, key = case.params["config"], case.params["key"]
    path = tmp_path / "my config.json"
    # json.dumps writes NaN as the bare word NaN, which Python's json module reads back
    path.write_text(json.dumps(config), encoding="utf-8")
    fault.arm(1, RuntimeError("a restoration started"))
    status = main([str(two_inputs), "-o", str(out), "--config", str(path), "--device", "cpu"])
    err = capsys.readouterr().err
    assert status == 2, err
    assert key in err, err
    assert not out.exists() and fault.calls == 0
    observe(f"exit {status}; {err.strip()[len('napari-dip: error: '):]}")
    if case.id == "cli-config-seed-huge":
        status = main([str(two_inputs), "-o", str(out), *FAST[:-2], "--seed", str(2**70)])
        err = capsys.readouterr().err
        assert status == 2 and "--seed" in err, err
        assert not out.exists() and fault.calls == 0
        observe(f"--seed 2**70: exit {status}; {err.strip()[len('napari-dip: error: '):]}")


class _Payload:
    """Unpickling this would run a shell command that creates a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


@cases("cli-config-pickle")
def test_cli_pickled_config(case, observe, two_inputs, tmp_path, capsys):
    marker = tmp_path / "payload ran"
    for protocol in (pickle.HIGHEST_PROTOCOL, 0):
        path = tmp_path / f"config-{protocol}.json"
        path.write_bytes(pickle.dumps(_Payload(marker), protocol=protocol))
        status = main([str(two_inputs), "-o", str(tmp_path / "out"), "--config", str(path)])
        err = capsys.readouterr().err
        assert status == 2, err
        assert path.name in err and "JSON" in err, err
        assert not marker.exists()
        observe(f"protocol {protocol}: exit {status}; "
                f"{err.strip()[len('napari-dip: error: '):]}")
    assert not (tmp_path / "out").exists()
    observe("payload never ran")


# =======================================================================================
# the package
# =======================================================================================
_UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "shelve", "marshal",
                   "joblib"}


def _unsafe_calls(path: Path) -> list[str]:
    """What in a Python file could load or run anything but plain data."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []

    def where(node: ast.AST) -> str:
        return f"{path.name}:{node.lineno}"

    def keyword(call: ast.Call, name: str) -> Any:
        for kw in call.keywords:
            if kw.arg == name:
                return kw.value.value if isinstance(kw.value, ast.Constant) else "?"
        return None

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [f"{where(node)} import {a.name}" for a in node.names
                      if a.name.split(".")[0] in _UNSAFE_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in _UNSAFE_MODULES:
                found.append(f"{where(node)} from {node.module} import ...")
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else (
                func.attr if isinstance(func, ast.Attribute) else "")
            owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(
                func.value, ast.Name) else ""
            first = node.args[0] if node.args else None
            if isinstance(func, ast.Name) and name in ("eval", "exec"):
                found.append(f"{where(node)} {name}()")
            elif (name in ("__import__", "import_module") and isinstance(first, ast.Constant)
                  and str(first.value).split(".")[0] in _UNSAFE_MODULES):
                found.append(f"{where(node)} {name}({first.value!r})")
            elif name == "load" and owner == "torch" and keyword(node, "weights_only") is not True:
                found.append(f"{where(node)} torch.load() without weights_only=True")
            elif owner == "yaml" and name in ("load", "unsafe_load", "full_load", "load_all"):
                found.append(f"{where(node)} yaml.{name}()")
            elif name == "load" and owner in ("np", "numpy") and keyword(node, "allow_pickle"):
                found.append(f"{where(node)} numpy.load(allow_pickle=True)")
    return found


@cases("package-no-unsafe-loading")
def test_package_loads_nothing_unsafely(case, observe, tmp_path):
    sources = sorted((ROOT / "src" / "napari_dip").rglob("*.py"))
    assert len(sources) > 10
    found = [hit for path in sources for hit in _unsafe_calls(path)]
    assert found == [], "\n".join(found)
    # the scan finds what it looks for, and lets the safe forms pass
    probe = tmp_path / "probe.py"
    probe.write_text("import pickle\nimport torch, yaml\nimport numpy as np\neval('1')\n"
                     "exec('x = 1')\ntorch.load('x')\ntorch.load('x', weights_only=True)\n"
                     "yaml.load('x')\nyaml.safe_load('x')\nnp.load('x', allow_pickle=True)\n"
                     "np.load('x')\n__import__('marshal')\n__import__('json')\n")
    assert [hit.split(" ", 1)[1] for hit in _unsafe_calls(probe)] == [
        "import pickle", "eval()", "exec()", "torch.load() without weights_only=True",
        "yaml.load()", "numpy.load(allow_pickle=True)", "__import__('marshal')"]
    observe(f"{len(sources)} files scanned, nothing found")


# =======================================================================================
# the report
# =======================================================================================
def _report_module():
    spec = importlib.util.spec_from_file_location("fault_report",
                                                  ROOT / "scripts" / "fault_report.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(sys.modules[spec.name])
    return sys.modules[spec.name]


def test_every_case_has_a_test():
    report = _report_module()
    for path in (Path(__file__), WIDGET_FILE):
        declared = [c.id for c in report.declared_cases(path)]
        assert len(declared) == len(set(declared)), f"duplicate case ids in {path.name}"
        assert set(declared) == report.tested_case_ids(path), path.name
    assert [c.id for c in report.declared_cases(Path(__file__))] == [c.id for c in CASES]


def test_report_lists_exactly_the_cases():
    report = _report_module()
    declared = [c.id for path in (Path(__file__), WIDGET_FILE)
                for c in report.declared_cases(path)]
    assert REPORT.is_file(), f"{REPORT} is missing: run python scripts/fault_report.py"
    listed = report.listed_case_ids(REPORT.read_text(encoding="utf-8"))
    assert listed == declared, (
        f"{REPORT.name} is out of date (run python scripts/fault_report.py): "
        f"missing {sorted(set(declared) - set(listed))}, "
        f"extra {sorted(set(listed) - set(declared))}")
