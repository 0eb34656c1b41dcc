"""Distributed runs on a real Dask ``LocalCluster`` (2 worker processes, 1 thread each):
the command line's ``--cluster``/``--scheduler``, ``restore_many``, tiles spread over
workers, retries, and a worker killed in the middle of a batch."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

distributed = pytest.importorskip("distributed")

import napari_dip  # noqa: E402
from napari_dip import distributed as nd  # noqa: E402
from napari_dip import io as dio  # noqa: E402
from napari_dip.cli import main  # noqa: E402
from napari_dip.io import read_image  # noqa: E402



def _fast(steps: int = 10, device: str = "cpu", quiet: bool = True) -> list[str]:
    """Tiny nets on the CPU, one thread per task: a seed repeats a run bit for bit."""
    return ["--preset", "fast", "--steps", str(steps), "--option", "width=8", "--option",
            "scales=2", "--device", device, "--seed", "0", "--threads", "1",
            *(["-q"] if quiet else [])]


FAST = _fast()
TINY = dict(preset="fast", steps=10, width=8, scales=2, device="cpu", seed=3)


@pytest.fixture(scope="module")
def client():
    # the preload loads the engine when a worker starts and ends its process quickly
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=None, host="127.0.0.1",
                                       scheduler_kwargs={"dashboard_address": ":0"},
                                       preload=["napari_dip.distributed"])
    c = distributed.Client(cluster)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


def _noisy(shape, dtype=np.uint8, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random(shape) * np.iinfo(dtype).max * 0.8).astype(dtype)


def _frames(folder: Path, n: int, shape=(16, 16)) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(n):
        iio.imwrite(folder / f"frame{i:02d}.png", _noisy(shape, seed=i), plugin="pillow",
                    extension=".png")
        names.append(f"frame{i:02d}")
    return names


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _check_outputs(out: Path, stems: list[str], method: str = "dip") -> None:
    """Every output present once, readable, and matching its sidecar."""
    names = sorted(p.name for p in out.iterdir())
    assert not [n for n in names if n.startswith(".")], names  # no temporary files left
    assert len(names) == len(set(names)) == 2 * len(stems), names
    for stem in stems:
        side = json.loads((out / f"{stem}_{method}.json").read_text())
        entry = side["outputs"]["image"]
        image = out / entry["file"]
        assert _sha(image) == entry["sha256"]
        assert list(read_image(image).data.shape) == entry["shape"]
        assert side["steps"] > 0 and side["stop_reason"]


# ------------------------------------------------------------------ without a cluster
def test_parse_cluster_values_and_errors(tmp_path):
    assert nd.parse_cluster(None).kind == "default"
    assert nd.parse_cluster("local") == nd.ClusterSpec("local")
    assert nd.parse_cluster("local:3") == nd.ClusterSpec("local", workers=3)
    assert nd.parse_cluster("tcp://10.0.0.1:8786").address == "tcp://10.0.0.1:8786"
    assert nd.parse_cluster("node7:8786").kind == "address"
    sched = tmp_path / "scheduler.json"
    sched.write_text("{}")
    assert nd.parse_cluster(str(sched)) == nd.ClusterSpec("file", address=str(sched))
    with pytest.raises(ValueError, match=r"cluster: expected 'local' or 'local:N'.*'local:0'"):
        nd.parse_cluster("local:0")
    with pytest.raises(ValueError, match=r"--cluster: expected .*'nowhere'"):
        nd.parse_cluster("nowhere", name="--cluster")
    with pytest.raises(ValueError, match="does not exist"):
        nd.parse_cluster(str(tmp_path / "missing.json"))
    with pytest.raises(TypeError, match="got int"):
        nd.parse_cluster(4)


def test_local_plan_splits_cores(monkeypatch):
    monkeypatch.setattr(nd, "_cpu_count", lambda: 16)
    assert nd.plan_local(device="cpu") == nd.LocalPlan(8, 2)
    assert nd.plan_local(device="cpu", threads=4) == nd.LocalPlan(4, 4)
    assert nd.plan_local(3, device="cpu") == nd.LocalPlan(3, 5)
    assert nd.plan_local(device="cpu", tasks=2) == nd.LocalPlan(2, 8)
    monkeypatch.setattr(nd, "_cpu_count", lambda: 2)
    assert nd.plan_local(device="cpu") == nd.LocalPlan(2, 1)
    with pytest.raises(ValueError, match="workers: expected a positive integer"):
        nd.plan_local(0)


def test_import_does_not_load_dask():
    code = ("import sys, napari_dip, napari_dip.cli\n"
            "assert 'distributed' not in sys.modules and 'dask' not in sys.modules\n"
            "assert callable(napari_dip.restore_many)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_missing_dask_is_a_usage_error_with_the_install_hint(tmp_path, monkeypatch, capsys):
    _frames(tmp_path / "in", 1)
    monkeypatch.setitem(sys.modules, "distributed", None)
    with pytest.raises(ImportError, match=r"napari-dip\[cluster\]"):
        nd._require_distributed()
    assert main([str(tmp_path / "in"), "-o", str(tmp_path / "out"), *FAST,
                 "--cluster", "local:2"]) == 2
    assert 'pip install "napari-dip[cluster]"' in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args, message", [
    (["--cluster", "elsewhere"], "--cluster: expected"),
    (["--cluster", "local:0"], "local:N"),
    (["--cluster", "tcp://127.0.0.1:8786"], "give a scheduler address to --scheduler"),
    (["--scheduler", "local:2"], "--scheduler: expected an address"),
    (["--cluster", "local", "--scheduler", "tcp://127.0.0.1:8786"], "not allowed with"),
    (["--cluster", "local", "--device", "tpu"], "device"),
])
def test_cluster_usage_errors(tmp_path, capsys, args, message):
    _frames(tmp_path / "in", 1)
    assert main([str(tmp_path / "in"), "-o", str(tmp_path / "out"), *args]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------ on the cluster
def test_cli_frames_on_scheduler_match_a_local_run(client, tmp_path, capsys):
    data = tmp_path / "in"
    stems = _frames(data, 3)
    tifffile.imwrite(data / "stack.tif", _noisy((3, 16, 16), np.uint16, seed=9), imagej=True,
                     metadata={"axes": "TYX", "spacing": 0.5, "unit": "um"})
    (data / "broken.tif").write_bytes(b"not a TIFF")
    here, there = tmp_path / "here", tmp_path / "there"
    assert main([str(data), "-o", str(here), *FAST]) == 1
    capsys.readouterr()
    status = main([str(data), "-o", str(there), *FAST, "--scheduler",
                   client.scheduler.address])
    err = capsys.readouterr().err
    assert status == 1 and "broken.tif" in err and "cannot read as TIFF" in err
    _check_outputs(there, [*stems, "stack"])
    for p in sorted(here.iterdir()):
        if p.suffix != ".json":
            assert p.read_bytes() == (there / p.name).read_bytes(), p.name  # bit for bit
    side = json.loads((there / "stack_dip.json").read_text())
    assert side["run"]["items"] == 3 and len(side["frames"]) == 3 and side["steps"] == 30
    assert side["cluster"]["scheduler"] == client.scheduler.address
    assert side["cluster"]["tasks"] == 3 and side["device"] == "cpu"
    workers = {w.split()[0] for w in side["cluster"]["workers"]}
    assert workers <= set(client.scheduler_info()["workers"])
    assert read_image(there / "stack_dip.tif").tiff.imagej_metadata["spacing"] == 0.5
    # --resume: nothing left to run, and no cluster is needed for that
    assert main([str(data / "frame00.png"), "-o", str(there), *FAST, "--resume",
                 "--scheduler", "tcp://127.0.0.1:1"]) == 0


def test_cli_sgld_tiles_spread_over_workers_match_a_tiled_local_run(client, tmp_path):
    data = tmp_path / "in"
    data.mkdir()
    tifffile.imwrite(data / "wide.tif", _noisy((40, 56), np.uint16, seed=5))
    args = [*FAST, "--method", "sgld", "--option", "burn_in=5", "--tile-size", "24",
            "--option", "tile_overlap=4"]
    here, there = tmp_path / "here", tmp_path / "there"
    assert main([str(data), "-o", str(here), *args]) == 0
    assert main([str(data), "-o", str(there), *args, "--scheduler",
                 client.scheduler.address]) == 0
    for name in ("wide_sgld.tif", "wide_sgld_std.tif"):
        np.testing.assert_array_equal(read_image(here / name).data,
                                      read_image(there / name).data)
    side = json.loads((there / "wide_sgld.json").read_text())
    assert side["cluster"]["tasks"] == 6 and side["tiling"]["tiles"] == 6
    assert side["tiling"]["distributed"] is True and side["config"]["tile_size"] == 24


def test_task_failing_on_the_workers_is_reported(client, tmp_path, capsys):
    stems = _frames(tmp_path / "in", 2)
    out = tmp_path / "out"
    # the workers have no GPU: every task fails (twice, with its retry) and is reported
    status = main([str(tmp_path / "in"), "-o", str(out), *_fast(device="cuda", quiet=False),
                   "--scheduler", client.scheduler.address])
    text = capsys.readouterr()
    assert status == 1
    for stem in stems:
        assert f"{stem}.png: device: 'cuda' was asked for but no CUDA GPU" in text.err
    assert "0 done, 0 skipped, 2 failed" in text.out
    assert list(out.iterdir()) == []


def _flaky(payload):
    """Fails on the first ``payload['fail']`` attempts, counting them in a file."""
    path = Path(payload["log"])
    with open(path, "a") as fh:
        fh.write(f"{os.getpid()}\n")
    attempts = len(path.read_text().splitlines())
    if attempts <= payload["fail"]:
        raise RuntimeError(f"attempt {attempts} failed")
    return attempts


def test_a_failed_task_is_retried_once(client, tmp_path):
    import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        conn = nd.Connection(client, "test", gpu=False, threads=1, device="cpu")
        tasks = [nd.Task(f"flaky-{fail}-{tmp_path.name}", _flaky,
                         {"log": str(tmp_path / f"log{fail}"), "fail": fail}, fail)
                 for fail in (1, 2)]
        outcome = {}
        for task, future in nd.Pipeline(conn, retries=1).run(tasks):
            try:
                outcome[task.tag] = future.result()
            except RuntimeError as exc:
                outcome[task.tag] = str(exc)
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert outcome == {1: 2, 2: "attempt 2 failed"}  # one retry, then the error
    assert len((tmp_path / "log2").read_text().splitlines()) == 2


def test_restore_many_in_order_and_as_completed(client, tmp_path):
    images = [_noisy((16, 16), seed=i) for i in range(3)]
    rgb = tmp_path / "rgb.png"
    iio.imwrite(rgb, _noisy((16, 16, 3), seed=7), plugin="pillow", extension=".png")
    results = napari_dip.restore_many([*images, str(rgb)], cluster=client, threads=1, **TINY)
    assert [r.image.shape for r in results] == [(16, 16)] * 3 + [(16, 16, 3)]
    assert all(r.info.seed == 3 and r.steps == 10 and len(r.losses) == 10 for r in results)
    for image, result in zip(images, results):
        np.testing.assert_array_equal(_restore_on_one_thread(image, **TINY).image, result.image)
    # cluster=None: the current client (the fixture's)
    seen = [i for i, _ in napari_dip.restore_as_completed(images, **TINY)]
    assert sorted(seen) == [0, 1, 2]
    # a bad image: raised with a note naming it, or returned in its place
    with pytest.raises(ValueError, match="spatial axes") as info:
        napari_dip.restore_many([images[0], np.zeros(5)], cluster=client, **TINY)
    assert "image 1 of 2" in " ".join(getattr(info.value, "__notes__", []))
    mixed = napari_dip.restore_many([np.zeros(5), images[1]], cluster=client, errors="return",
                                    **TINY)
    assert isinstance(mixed[0], ValueError) and mixed[1].image.shape == (16, 16)
    with pytest.raises(TypeError, match="wdth"):
        napari_dip.restore_many(images, cluster=client, wdth=8)
    with pytest.raises(TypeError, match="finish: not available for tasks on a cluster"):
        napari_dip.restore_many(images, cluster=client, finish=lambda: False, **TINY)
    with pytest.raises(ValueError, match="masks: expected one per image"):
        napari_dip.restore_many(images, cluster=client, masks=[None], **TINY)


def _restore_on_one_thread(image, **kwargs):
    """napari_dip.restore here with one torch thread, as the workers run."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return napari_dip.restore(image, **kwargs)
    finally:
        torch.set_num_threads(threads)


def test_restore_many_tiles_match_a_tiled_restore(client):
    image = np.random.default_rng(1).random((40, 44)).astype(np.float32)
    mask = np.zeros(image.shape, bool)
    mask[18:23, 20:26] = True  # a hole across the tiles' overlaps
    tiled = dict(TINY, tile_size=24, tile_overlap=4, mask=mask, keep_known=True)
    (result,) = napari_dip.restore_many([image], cluster=client, threads=1, masks=mask,
                                        **{k: v for k, v in tiled.items() if k != "mask"})
    expected = _restore_on_one_thread(image, **tiled)
    np.testing.assert_array_equal(result.image, expected.image)  # same blend: no new seams
    np.testing.assert_array_equal(result.image[~mask], image[~mask])  # known pixels kept
    assert result.info.tiles["tiles"] == 4 and result.steps == 40


def test_restore_many_r2r_tiles_share_the_whole_images_strength(client):
    """R2R tiles cut on the client get the whole image's recorruption strength, as a
    tiled run on one machine gives them: the same result, bit for bit."""
    rng = np.random.default_rng(2)
    ramp = np.tile(np.linspace(0.0, 1.0, 44), (40, 1))
    image = (ramp + rng.normal(0, 0.3, ramp.shape)).astype(np.float32)  # ratio about 2
    tiled = dict(TINY, tile_size=24, tile_overlap=4)
    (result,) = napari_dip.restore_many([image], cluster=client, threads=1, **tiled)
    expected = _restore_on_one_thread(image, **tiled)
    alpha = result.info.config.r2r_alpha
    assert alpha is not None and 0.5 < alpha < 2.0  # set once, from the whole image
    assert f"tiles: R2R's alpha {alpha:.2g} for every tile" in " ".join(expected.info.notes)
    np.testing.assert_array_equal(result.image, expected.image)
    assert result.info.tiles["tiles"] == 4


def test_restore_many_tiles_share_a_given_noise_std(client):
    """A known noise level reaches the tiles cut on the client in their own (normalised)
    units, as a tiled run on one machine gives it: the same result, bit for bit."""
    rng = np.random.default_rng(4)
    ramp = np.tile(np.linspace(0.0, 200.0, 44), (40, 1))
    image = (ramp + rng.normal(0, 20.0, ramp.shape)).astype(np.float32)
    tiled = dict(TINY, tile_size=24, tile_overlap=4, noise_std=20.0)
    (result,) = napari_dip.restore_many([image], cluster=client, threads=1, **tiled)
    expected = _restore_on_one_thread(image, **tiled)
    np.testing.assert_array_equal(result.image, expected.image)
    assert result.info.tiles["tiles"] == 4 and result.info.tiles["distributed"] is True
    assert result.info.noise_std == 20.0 == expected.info.noise_std  # as given
    span = float(image.max() - image.min())
    assert f"noise std {20.0 / span:.3g} of the data range (given: noise_std)" in " ".join(
        expected.info.notes)


# ------------------------------------------------------- a worker killed mid-batch
def _spawned_children() -> set[int]:
    import psutil

    out = set()
    for child in psutil.Process().children():
        try:
            if any("spawn_main" in part for part in child.cmdline()):
                out.add(child.pid)
        except psutil.Error:
            pass
    return out


def test_worker_killed_mid_batch_every_output_once(tmp_path, capsys, monkeypatch):
    stems = _frames(tmp_path / "in", 8)
    out = tmp_path / "out"
    commits: list[str] = []
    commit = dio.OutputGroup.commit

    def counting_commit(self):
        done = commit(self)
        commits.extend(p.name for p in done if p.suffix == ".json")
        return done

    monkeypatch.setattr(dio.OutputGroup, "commit", counting_commit)
    before = _spawned_children()
    killed: list[int] = []

    def kill_one_worker():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            workers = _spawned_children() - before
            if len(workers) == 2 and out.is_dir() and list(out.glob("*.json")):
                pid = min(workers)
                os.kill(pid, signal.SIGKILL)  # as by hand: kill -9 PID
                killed.append(pid)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_one_worker, daemon=True)
    killer.start()
    status = main([str(tmp_path / "in"), "-o", str(out), *_fast(steps=20, quiet=False),
                   "--cluster", "local:2"])
    killer.join(timeout=5)
    captured = capsys.readouterr()
    assert killed, "no worker was killed while the batch ran"
    assert status == 0, captured.err
    assert "8 done, 0 skipped, 0 failed" in captured.out
    assert "local cluster, 2 workers" in captured.out
    _check_outputs(out, stems)
    assert sorted(commits) == sorted(f"{s}_dip.json" for s in stems)  # each written once


def test_images_with_a_noise_model_go_to_one_worker_whole():
    from napari_dip.core.config import make_config
    from napari_dip.distributed import tiles_wanted

    cfg = make_config("dip", "fast", tile_size=32, tile_overlap=8)
    assert not tiles_wanted(cfg, (64, 64))  # "auto" with no image to decide on: whole
    assert tiles_wanted(cfg, (64, 64), {"noise_model": "gaussian"})
    assert not tiles_wanted(cfg, (64, 64), {"noise_model": "poisson-gaussian"})
    assert not tiles_wanted(cfg, (32, 32))
    # the default model decides on the image itself, as the run will
    rng = np.random.default_rng(0)
    ramp = np.tile(np.linspace(0.0, 1.0, 64), (64, 1))
    counts = 100 + 2.0 * rng.poisson(100 * ramp) + rng.normal(0, 3, ramp.shape)
    gauss = ramp + rng.normal(0, 0.1, ramp.shape)
    assert not tiles_wanted(cfg, (64, 64), {}, image=counts)
    assert tiles_wanted(cfg, (64, 64), {}, image=gauss)
    assert tiles_wanted(cfg, (64, 64), {"noise_model": "gaussian"}, image=counts)
    assert not tiles_wanted(cfg, (64, 64), {"gain": 2.0}, image=gauss)  # given: stabilised
    # with a mask, or the papers' loss, the run keeps the raw values: tiles
    hole = np.zeros((64, 64), bool)
    hole[:4, :4] = True
    assert tiles_wanted(cfg, (64, 64), {"mask": hole}, image=counts)
    assert tiles_wanted(make_config("dip", "fast", tile_size=32, tile_overlap=8, loss="mse"),
                        (64, 64), {}, image=counts)
