"""The ``napari-dip`` command on real files (tiny images and nets, 10 steps)."""

from __future__ import annotations

import hashlib
import json
import os
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from napari_dip.cli import main
from napari_dip.io import read_image

# tiny and on the CPU, where a seed repeats a run bit for bit
FAST = ["--preset", "fast", "--steps", "10", "--option", "width=8", "--option", "scales=2",
        "--threads", "1", "--device", "cpu"]


def _png(path, data):
    iio.imwrite(path, data, plugin="pillow", extension=".png")


def _noisy(shape, dtype=np.uint8, seed=0):
    rng = np.random.default_rng(seed)
    hi = np.iinfo(dtype).max
    return (rng.random(shape) * hi * 0.8).astype(dtype)


@pytest.fixture
def folder(tmp_path):
    """Two small images and a corrupt one."""
    data = tmp_path / "data"
    data.mkdir()
    _png(data / "a.png", _noisy((24, 24)))
    tifffile.imwrite(data / "b.tif", _noisy((24, 32), np.uint16, seed=1), photometric="minisblack")
    (data / "broken.tif").write_bytes(b"this is not a TIFF file")
    return data


def _mtimes(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted(folder.iterdir())}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_batch_with_corrupt_file_resume_and_overwrite(folder, tmp_path, capsys):
    out = tmp_path / "out"
    before = {p.name: _sha(p) for p in folder.iterdir()}
    assert main([str(folder), "-o", str(out), *FAST]) == 1
    captured = capsys.readouterr()
    assert "broken.tif" in captured.err and "cannot read as TIFF" in captured.err
    assert "2 done, 0 skipped, 1 failed" in captured.out
    assert sorted(p.name for p in out.iterdir()) == ["a_dip.json", "a_dip.png", "b_dip.json",
                                                     "b_dip.tif"]  # no temporary files left
    assert {p.name: _sha(p) for p in folder.iterdir()} == before  # inputs untouched

    side = json.loads((out / "b_dip.json").read_text())
    assert side["method"] == "dip" and side["config"]["method"] == "dip"
    assert side["config"]["steps"] == 10 and side["config"]["width"] == 8
    assert isinstance(side["seed"], int) and side["device"] == "cpu"
    assert side["steps"] == 10 and side["stop_reason"]
    assert side["input"]["sha256"] == _sha(folder / "b.tif")
    assert side["outputs"]["image"] == {"file": "b_dip.tif", "sha256": _sha(out / "b_dip.tif"),
                                        "shape": [24, 32], "dtype": "uint16"}
    assert {"napari-dip", "torch", "numpy", "tifffile"} <= set(side["versions"])
    restored = read_image(out / "b_dip.tif").data
    assert restored.dtype == np.uint16 and restored.shape == (24, 32)
    assert read_image(out / "a_dip.png").data.dtype == np.uint8

    # --resume: nothing to do (the corrupt file fails again)
    stamps = _mtimes(out)
    assert main([str(folder), "-o", str(out), *FAST, "--resume"]) == 1
    assert "0 done, 2 skipped, 1 failed" in capsys.readouterr().out
    assert _mtimes(out) == stamps

    # without --resume or --overwrite: existing outputs are skipped, with the hint
    assert main([str(folder / "a.png"), "-o", str(out), *FAST]) == 0
    text = capsys.readouterr().out
    assert "0 done, 1 skipped, 0 failed" in text and "--overwrite" in text
    assert _mtimes(out) == stamps

    # an incomplete output (no sidecar) is not replaced by --resume alone ...
    (out / "b_dip.json").unlink()
    assert main([str(folder / "a.png"), str(folder / "b.tif"), "-o", str(out), *FAST,
                 "--resume"]) == 0
    text = capsys.readouterr().out
    assert "incomplete" in text and "0 done, 2 skipped" in text
    # ... but by --overwrite, which redoes only what --resume does not skip
    assert main([str(folder / "a.png"), str(folder / "b.tif"), "-o", str(out), *FAST,
                 "--resume", "--overwrite", "--seed", "3"]) == 0
    assert "1 done, 1 skipped" in capsys.readouterr().out
    assert json.loads((out / "b_dip.json").read_text())["seed"] == 3
    assert (out / "a_dip.png").stat().st_mtime_ns == stamps["a_dip.png"]
    assert main([str(folder / "a.png"), "-o", str(out), *FAST, "--overwrite", "-q"]) == 0
    assert capsys.readouterr().out == ""
    assert (out / "a_dip.png").stat().st_mtime_ns != stamps["a_dip.png"]


def test_config_sidecar_reproduces_bit_for_bit(folder, tmp_path):
    first, again = tmp_path / "first", tmp_path / "again"
    image = str(folder / "a.png")
    # no --seed: the drawn seed is saved in the sidecar and reused from it
    assert main([image, "-o", str(first), *FAST, "--option", "lr=0.03", "-q"]) == 0
    side = first / "a_dip.json"
    assert main([image, "-o", str(again), "--config", str(side), "--threads", "1", "-q",
                 "--device", "cpu"]) == 0
    assert (first / "a_dip.png").read_bytes() == (again / "a_dip.png").read_bytes()
    one, two = json.loads(side.read_text()), json.loads((again / "a_dip.json").read_text())
    assert one["seed"] == two["seed"] and one["config"] == two["config"]
    assert two["config"]["lr"] == 0.03
    # the same from Python: config and seed of the sidecar repeat the run
    import torch

    import napari_dip

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the command above (--threads 1)
    try:
        result = napari_dip.restore(read_image(folder / "a.png").data, config=one["config"],
                                    seed=one["seed"], device="cpu")
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(result.image, read_image(first / "a_dip.png").data)
    # a plain configuration file works too; --seed then makes it repeatable
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({k: v for k, v in one["config"].items()}))
    assert main([image, "-o", str(tmp_path / "p"), "--config", str(plain), "--seed",
                 str(one["seed"]), "--threads", "1", "-q", "--device", "cpu"]) == 0
    assert (tmp_path / "p" / "a_dip.png").read_bytes() == (first / "a_dip.png").read_bytes()


def test_sgld_writes_std_map_and_repeats(folder, tmp_path):
    out, again = tmp_path / "out", tmp_path / "again"
    image = str(folder / "b.tif")
    args = [image, *FAST, "--method", "sgld", "--option", "burn_in=4", "--option", "thinning=2",
            "-q"]
    assert main([*args, "-o", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["b_sgld.json", "b_sgld.tif",
                                                     "b_sgld_std.tif"]
    mean, std = read_image(out / "b_sgld.tif"), read_image(out / "b_sgld_std.tif")
    assert mean.data.dtype == np.uint16 and mean.data.shape == (24, 32)
    assert std.data.dtype == np.float32 and std.data.shape == (24, 32)
    assert np.isfinite(std.data).all() and std.data.max() > 0
    side = json.loads((out / "b_sgld.json").read_text())
    assert side["method"] == "sgld" and side["outputs"]["std"]["file"] == "b_sgld_std.tif"
    assert main([image, "-o", str(again), "--config", str(out / "b_sgld.json"), "-q",
                 "--threads", "1", "--device", "cpu"]) == 0
    for name in ("b_sgld.tif", "b_sgld_std.tif"):
        np.testing.assert_array_equal(read_image(out / name).data, read_image(again / name).data)


def _write_config(tmp_path, name, obj):
    path = tmp_path / name
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return str(path)


@pytest.mark.parametrize("make_args, message", [
    (lambda d, t: [str(d)], "required: -o"),
    (lambda d, t: ["-o", str(t / "out")], "no INPUT"),
    (lambda d, t: [str(t / "nothing*.png"), "-o", str(t / "out")], "no images match"),
    (lambda d, t: [str(d), "-o", str(t / "out"), "--bogus"], "unrecognized arguments"),
    (lambda d, t: [str(d), "-o", str(t / "out"), "--option", "width"], "KEY=VALUE"),
    (lambda d, t: [str(d), "-o", str(t / "out"), "--option", "wdth=8"], "'wdth'"),
    (lambda d, t: [str(d), "-o", str(t / "out"), "--steps", "0"], "positive"),
    (lambda d, t: [str(d), "-o", str(t / "out"), "--method", "sgld", "--auto-stop"],
     "auto_stop"),
    (lambda d, t: [str(d), "-o", str(t / "out"), "--output-dtype", "bool"], "dtype"),
    (lambda d, t: [str(d), "-o", str(t / "out"), "--sample"], "--sample"),
    (lambda d, t: [str(d), "-o", str(t / "out"), "--device", "tpu"], "device"),
    (lambda d, t: [str(d), "-o", str(t / "out"), "--mask", str(t / "none.png")], "--mask"),
    (lambda d, t: [str(d), "-o", str(t / "out"), "--config",
                   _write_config(t, "c.json", {"method": "dip", "bogus": 1})], "'bogus'"),
    (lambda d, t: [str(d), "-o", str(t / "out"), "--config",
                   _write_config(t, "c.json", {"width": "wide"})], "width"),
    (lambda d, t: [str(d), "-o", str(t / "out"), "--config",
                   _write_config(t, "c.json", "{oops")], "not valid JSON"),
    (lambda d, t: [str(d), "-o", str(t / "out"), "--method", "sgld", "--config",
                   _write_config(t, "c.json", {"method": "dip"})], "conflicts"),
])
def test_usage_errors_exit_2(folder, tmp_path, capsys, make_args, message):
    assert main(make_args(folder, tmp_path)) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()  # nothing written


def test_multipage_tiff_frames_and_volume(tmp_path, capsys):
    src = tmp_path / "stack.tif"
    data = _noisy((4, 24, 24), np.uint16, seed=2)
    tifffile.imwrite(src, data, imagej=True, resolution=(2.0, 2.0),
                     metadata={"axes": "ZYX", "spacing": 0.5, "unit": "um"})
    results = {}
    for stack in ("frames", "volume", "auto"):
        out = tmp_path / stack
        assert main([str(src), "-o", str(out), *FAST, "--stack", stack, "-q", "--seed", "1"]) == 0
        side = json.loads((out / "stack_dip.json").read_text())
        restored = read_image(out / "stack_dip.tif")
        assert restored.data.shape == (4, 24, 24) and restored.data.dtype == np.uint16
        assert restored.axes == "ZYX" and restored.tiff.imagej
        assert restored.tiff.imagej_metadata["spacing"] == 0.5
        assert restored.tiff.imagej_metadata["unit"] == "um"
        assert restored.tiff.resolution == pytest.approx((2.0, 2.0))
        results[stack] = (side, restored.data)
    frames, volume, auto = (results[k][0] for k in ("frames", "volume", "auto"))
    assert frames["run"]["items"] == 4 and frames["run"]["item_shape"] == [24, 24]
    assert len(frames["frames"]) == 4 and frames["steps"] == 40
    assert volume["run"]["items"] == 1 and volume["run"]["item_shape"] == [4, 24, 24]
    assert "frames" not in volume and volume["steps"] == 10
    assert auto["run"]["item_shape"] == [4, 24, 24]  # ImageJ Z axis: a volume
    np.testing.assert_array_equal(results["auto"][1], results["volume"][1])
    # the sidecar repeats the layout too
    again = tmp_path / "again"
    assert main([str(src), "-o", str(again), "--config",
                 str(tmp_path / "frames" / "stack_dip.json"), "-q", "--threads", "1",
                 "--device", "cpu"]) == 0
    np.testing.assert_array_equal(read_image(again / "stack_dip.tif").data, results["frames"][1])


def test_the_frames_of_a_stack_share_one_r2r_strength(tmp_path):
    """Frames restored one by one get one R2R strength, from the median of their
    signal-to-noise ratios: a sharp frame among faint ones is smoothed like them."""
    from skimage import data as skdata

    from napari_dip import make_config
    from napari_dip.core.api import choose_r2r_alpha_for_frames

    cam = skdata.camera()[180:244, 200:264].astype(np.float64)
    rng = np.random.default_rng(0)
    sharp = np.clip(cam + rng.normal(0, 25, cam.shape), 0, 255)
    faint = np.clip(128 + 0.1 * (cam - cam.mean()) + rng.normal(0, 25, cam.shape), 0, 255)
    stack = np.stack([faint, faint, sharp]).astype(np.float32)
    cfg = make_config("dip", "fast", steps=10, width=8, scales=2)
    assert choose_r2r_alpha_for_frames([sharp, sharp], cfg) == 0.5  # alone: 0.5
    assert choose_r2r_alpha_for_frames(list(stack), cfg) == 2.0
    tifffile.imwrite(tmp_path / "mix.tif", stack, photometric="minisblack")
    assert main([str(tmp_path / "mix.tif"), "-o", str(tmp_path / "out"), *FAST,
                 "--stack", "frames", "-q"]) == 0
    side = json.loads((tmp_path / "out" / "mix_dip.json").read_text())
    assert side["run"]["items"] == 3 and side["config"]["r2r_alpha"] == 2.0
    # a strength given is kept
    assert main([str(tmp_path / "mix.tif"), "-o", str(tmp_path / "given"), *FAST,
                 "--stack", "frames", "-q", "--option", "r2r_alpha=0.7"]) == 0
    side = json.loads((tmp_path / "given" / "mix_dip.json").read_text())
    assert side["config"]["r2r_alpha"] == 0.7


def test_rgb_png_jpeg_and_float_output(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    _png(data / "rgba.png", _noisy((24, 24, 4)))
    iio.imwrite(data / "photo.jpg", _noisy((24, 24, 3)), plugin="pillow", extension=".jpg")
    out = tmp_path / "out"
    assert main([str(data), "-o", str(out), *FAST, "-q"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["photo_dip.json", "photo_dip.png",
                                                     "rgba_dip.json", "rgba_dip.png"]
    side = json.loads((out / "photo_dip.json").read_text())
    assert side["channel_axis"] == 2 and side["run"]["item_axes"] == "YXS"
    rgba = read_image(out / "rgba_dip.png").data
    np.testing.assert_array_equal(rgba[..., 3], read_image(data / "rgba.png").data[..., 3])
    out2 = tmp_path / "float"
    assert main([str(data / "photo.jpg"), "-o", str(out2), *FAST, "-q", "--output-dtype",
                 "float32"]) == 0
    restored = read_image(out2 / "photo_dip.tif")
    assert restored.data.dtype == np.float32 and restored.data.shape == (24, 24, 3)


def test_mask_keep_known(tmp_path):
    image = _noisy((24, 24), seed=4)
    _png(tmp_path / "img.png", image)
    mask = np.zeros((24, 24), np.uint8)
    mask[8:14, 6:12] = 1
    tifffile.imwrite(tmp_path / "mask.tif", mask)
    out = tmp_path / "out"
    assert main([str(tmp_path / "img.png"), "-o", str(out), *FAST, "-q", "--mask",
                 str(tmp_path / "mask.tif"), "--keep-known"]) == 0
    restored = read_image(out / "img_dip.png").data
    np.testing.assert_array_equal(restored[mask == 0], image[mask == 0])
    side = json.loads((out / "img_dip.json").read_text())
    assert side["mask"]["sha256"] == _sha(tmp_path / "mask.tif")


def test_output_folder_equal_to_input_folder(folder, capsys):
    (folder / "broken.tif").unlink()
    assert main([str(folder), "-o", str(folder), *FAST, "-q"]) == 0
    # the second run does not take its own outputs for inputs
    assert main([str(folder), "-o", str(folder), *FAST]) == 0
    text = capsys.readouterr().out
    assert "0 done, 2 skipped" in text and "_dip_dip" not in text
    assert not list(folder.glob("*_dip_dip*"))


def test_python_m_version(capsys, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["napari_dip", "--version"])
    with pytest.raises(SystemExit) as exc:
        runpy.run_module("napari_dip", run_name="__main__")
    assert exc.value.code == 0
    assert "napari-dip" in capsys.readouterr().out


def test_console_script_sample(tmp_path):
    script = shutil.which("napari-dip", path=os.pathsep.join(
        [str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    if script is None:
        pytest.skip("the napari-dip console script is not installed")
    out = tmp_path / "out"
    proc = subprocess.run(
        [script, "--sample", "-o", str(out), "--preset", "fast", "--steps", "5", "--option",
         "width=8", "--option", "scales=2", "--seed", "0", "--threads", "1", "--device", "cpu"],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "1 done, 0 skipped, 0 failed" in proc.stdout
    assert sorted(p.name for p in out.iterdir()) == ["noisy_camera_dip.json",
                                                     "noisy_camera_dip.png"]
    side = json.loads((out / "noisy_camera_dip.json").read_text())
    assert side["input"]["sample"] == "noisy_camera" and side["seed"] == 0
    assert set(side["psnr"]) == {"input", "output"}
    assert read_image(out / "noisy_camera_dip.png").data.shape == (256, 256)


def test_tile_size_and_memory_budget(tmp_path, capsys):
    src = tmp_path / "wide.tif"
    tifffile.imwrite(src, _noisy((24, 64), np.uint16), photometric="minisblack")
    out = tmp_path / "out"
    assert main([str(src), "-o", str(out), *FAST, "--seed", "0", "--tile-size", "32",
                 "--option", "tile_overlap=8"]) == 0
    side = json.loads((out / "wide_dip.json").read_text())
    assert side["tiling"] == {"tiles": 3, "tile_shape": [24, 32], "overlap": 8}
    assert side["config"]["tile_size"] == 32
    restored = tifffile.imread(out / "wide_dip.tif")
    assert restored.shape == (24, 64) and restored.dtype == np.uint16
    # the budget reaches the engine: a generous one keeps the image whole ...
    out2 = tmp_path / "out2"
    assert main([str(src), "-o", str(out2), *FAST, "--memory-budget", "4"]) == 0
    side = json.loads((out2 / "wide_dip.json").read_text())
    assert "tiling" not in side and side["run"]["memory_budget_gib"] == 4
    # ... an impossible one fails the image with a message naming it; a bad value is a
    # usage error
    capsys.readouterr()
    assert main([str(src), "-o", str(tmp_path / "out3"), *FAST, "--memory-budget",
                 "0.000001"]) == 1
    assert "memory_budget" in capsys.readouterr().err
    assert main([str(src), "-o", str(tmp_path / "out4"), *FAST, "--memory-budget", "0"]) == 2
    assert "--memory-budget" in capsys.readouterr().err


def test_compile_flag_reaches_the_config_and_the_sidecar(tmp_path, monkeypatch):
    from napari_dip.core import engine

    monkeypatch.setitem(engine.COMPILE_BACKENDS, "cpu", "aot_eager")  # CUDA: inductor
    src = tmp_path / "a.tif"
    tifffile.imwrite(src, _noisy((32, 32), np.uint16), photometric="minisblack")
    assert main([str(src), "-o", str(tmp_path / "out"), *FAST, "--compile"]) == 0
    side = json.loads((tmp_path / "out" / "a_dip.json").read_text())
    assert side["config"]["compile"] is True
    assert "compile: aot_eager" in side["notes"]


def test_poisson_gaussian_noise_model(tmp_path, capsys):
    rng = np.random.default_rng(0)
    raw = (100 + 2 * rng.poisson(20, (32, 32)) + rng.normal(0, 3, (32, 32))).astype(np.uint16)
    src = tmp_path / "cells.tif"
    tifffile.imwrite(src, raw, photometric="minisblack")
    out = tmp_path / "out"
    assert main([str(src), "-o", str(out), *FAST, "--noise-model", "poisson-gaussian",
                 "--gain", "2", "--read-noise", "3"]) == 0
    side = json.loads((out / "cells_dip.json").read_text())
    assert side["noise_model"]["model"] == "poisson-gaussian" and side["noise_model"]["gain"] == 2
    restored = tifffile.imread(out / "cells_dip.tif")
    assert restored.dtype == np.uint16 and abs(float(restored.mean()) - raw.mean()) < 10
    capsys.readouterr()
    assert main([str(src), "-o", str(tmp_path / "o2"), *FAST, "--noise-model", "gaussian",
                 "--gain", "2"]) == 2
    assert "--gain" in capsys.readouterr().err


def test_the_noise_model_choices_are_the_engines():
    # the command line keeps its own copy (it must not import torch to parse arguments)
    from napari_dip import cli
    from napari_dip.core.api import NOISE_MODELS

    assert cli.NOISE_MODELS == NOISE_MODELS


def test_photon_counts_are_stabilised_by_default(tmp_path):
    """The default noise model ("auto") reads shot noise in a file and stabilises it;
    ``--noise-model gaussian`` keeps the raw values."""
    rng = np.random.default_rng(0)
    ramp = np.tile(np.linspace(0.0, 1.0, 48), (48, 1))
    raw = (100 + 2 * rng.poisson(100 * ramp) + rng.normal(0, 3, ramp.shape)).astype(np.uint16)
    src = tmp_path / "counts.tif"
    tifffile.imwrite(src, raw, photometric="minisblack")
    assert main([str(src), "-o", str(tmp_path / "auto"), *FAST]) == 0
    side = json.loads((tmp_path / "auto" / "counts_dip.json").read_text())
    assert side["run"]["noise_model"] == "auto"
    assert side["noise_model"]["model"] == "poisson-gaussian"
    assert sorted(side["noise_model"]["estimated"]) == ["gain", "offset", "sigma"]
    assert any("chose 'poisson-gaussian'" in n for n in side["notes"])
    assert side["config"]["loss"] == "r2r"
    assert main([str(src), "-o", str(tmp_path / "gauss"), *FAST, "--noise-model",
                 "gaussian"]) == 0
    side = json.loads((tmp_path / "gauss" / "counts_dip.json").read_text())
    assert side["run"]["noise_model"] == "gaussian" and "noise_model" not in side
    # a rerun from that sidecar keeps its choice
    assert main([str(src), "-o", str(tmp_path / "again"), "--config",
                 str(tmp_path / "gauss" / "counts_dip.json"), "--threads", "1"]) == 0
    side = json.loads((tmp_path / "again" / "counts_dip.json").read_text())
    assert side["run"]["noise_model"] == "gaussian" and "noise_model" not in side
    # the frames of a stack share one choice: the majority of its frames
    flat = (100 + 2 * rng.poisson(20, ramp.shape) + rng.normal(0, 3, ramp.shape))
    stack = np.stack([raw, raw, flat.astype(np.uint16)])
    tifffile.imwrite(tmp_path / "stack.tif", stack, photometric="minisblack")
    assert main([str(tmp_path / "stack.tif"), "-o", str(tmp_path / "st"), *FAST,
                 "--stack", "frames"]) == 0
    side = json.loads((tmp_path / "st" / "stack_dip.json").read_text())
    assert side["noise_model"]["model"] == "poisson-gaussian"
    assert tifffile.imread(src).tolist() == raw.tolist()  # the input is left as it was
