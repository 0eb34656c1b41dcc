"""File input/output: reading and writing TIFF/PNG/JPEG, layouts of stacks, inputs,
atomic outputs and configuration files (no restoration runs here)."""

from __future__ import annotations

import json

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from napari_dip import io as dio


def _png(path, data):
    iio.imwrite(path, data, plugin="pillow", extension=".png")


def _roundtrip(tmp_path, name, data, **kwargs):
    src = tmp_path / f"{name}.tif"
    tifffile.imwrite(src, data, **kwargs)
    first = dio.read_image(src)
    out = tmp_path / f"{name}_out.tif"
    dio.write_image(out, first.data, like=first)
    return first, dio.read_image(out)


# -- TIFF ------------------------------------------------------------------------------
def test_uint16_tiff_roundtrip_keeps_dtype(tmp_path):
    data = (np.arange(24 * 32) * 80).astype(np.uint16).reshape(24, 32)
    first, second = _roundtrip(tmp_path, "u16", data, photometric="minisblack")
    assert first.format == "tiff" and first.axes == "YX" and first.channel_axis is None
    assert second.data.dtype == np.uint16
    np.testing.assert_array_equal(second.data, data)


def test_imagej_hyperstack_keeps_axes_spacing_unit_resolution(tmp_path):
    data = np.arange(4 * 2 * 24 * 24, dtype=np.uint16).reshape(4, 2, 24, 24)
    first, second = _roundtrip(
        tmp_path, "ij", data, imagej=True, resolution=(2.5, 2.5),
        metadata={"axes": "ZCYX", "spacing": 0.75, "unit": "um"})
    assert first.axes == "ZCYX" and first.channel_axis == 1
    assert second.axes == "ZCYX" and second.tiff.imagej
    assert second.tiff.imagej_metadata["spacing"] == 0.75
    assert second.tiff.imagej_metadata["unit"] == "um"
    assert second.tiff.resolution == pytest.approx((2.5, 2.5))
    np.testing.assert_array_equal(second.data, data)
    # a float32 map (e.g. the posterior std) written like the input stays an ImageJ stack
    std = dio.write_image(tmp_path / "std.tif", data.astype(np.float32), like=first)
    back = dio.read_image(std)
    assert back.axes == "ZCYX" and back.data.dtype == np.float32 and back.tiff.imagej


@pytest.mark.parametrize("shape, kwargs, axes", [
    ((24, 24, 3), dict(photometric="rgb"), "YXS"),
    ((3, 24, 24), dict(photometric="rgb", planarconfig="separate"), "SYX"),
    ((5, 24, 24), dict(photometric="minisblack", compression="zlib"), "QYX"),
    ((4, 24, 24), dict(photometric="minisblack", metadata={"axes": "TYX"}), "TYX"),
])
def test_tiff_layouts_roundtrip(tmp_path, shape, kwargs, axes):
    data = (np.arange(np.prod(shape)) % 251).astype(np.uint8).reshape(shape)
    first, second = _roundtrip(tmp_path, "x", data, **kwargs)
    assert first.axes == second.axes == axes
    np.testing.assert_array_equal(second.data, data)
    if "compression" in kwargs:
        assert second.tiff.compression == "zlib"
    if "S" in axes:  # float maps of colour images keep the shape (not as colours)
        path = dio.write_image(tmp_path / "f.tif", data.astype(np.float32), like=first)
        back = dio.read_image(path)
        assert back.data.shape == shape and back.data.dtype == np.float32


def test_corrupt_and_missing_files_raise_with_their_name(tmp_path):
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(dio.ImageReadError, match="broken.tif"):
        dio.read_image(bad)
    badpng = tmp_path / "broken.png"
    badpng.write_bytes(b"not an image at all")
    with pytest.raises(dio.ImageReadError, match="broken.png.*PNG"):
        dio.read_image(badpng)
    with pytest.raises(dio.ImageReadError, match="no such file"):
        dio.read_image(tmp_path / "missing.tif")
    with pytest.raises(dio.ImageReadError, match="unsupported file type"):
        dio.read_image(tmp_path / "notes.txt")


# -- PNG / JPEG ---------------------------------------------------------------------------
def test_png_and_jpeg_reading(tmp_path):
    rgb = (np.arange(24 * 24 * 3) % 256).astype(np.uint8).reshape(24, 24, 3)
    _png(tmp_path / "c.png", rgb)
    img = dio.read_image(tmp_path / "c.png")
    assert img.axes == "YXS" and img.channel_axis == 2 and img.format == "png"
    np.testing.assert_array_equal(img.data, rgb)
    gray16 = (np.arange(24 * 24) * 100).astype(np.uint16).reshape(24, 24)
    _png(tmp_path / "g.png", gray16)
    img = dio.read_image(tmp_path / "g.png")
    assert img.axes == "YX" and img.data.dtype == np.uint16
    iio.imwrite(tmp_path / "p.jpg", rgb, plugin="pillow", extension=".jpg")
    img = dio.read_image(tmp_path / "p.jpg")
    assert img.format == "jpeg" and img.axes == "YXS" and img.data.shape == (24, 24, 3)
    assert len(img.sha256) == 64


def test_output_suffix_and_png_limits(tmp_path):
    assert dio.output_suffix("tiff", ".TIFF") == ".tiff"
    assert dio.output_suffix("png", ".png") == ".png"
    assert dio.output_suffix("jpeg", ".jpg") == ".png"  # no second lossy compression
    assert dio.output_suffix("png", ".png", "float32") == ".tif"
    assert dio.png_writable(np.zeros((4, 4, 3), np.uint8))
    assert not dio.png_writable(np.zeros((4, 4, 3), np.uint16))
    with pytest.raises(ValueError, match="PNG cannot hold"):
        dio.write_image(tmp_path / "f.png", np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="JPEG"):
        dio.write_image(tmp_path / "f.jpg", np.zeros((4, 4), np.uint8))
    assert not list(tmp_path.iterdir())  # no temporary files left behind


# -- layouts -----------------------------------------------------------------------------
@pytest.mark.parametrize("shape, axes, channel_axis, stack, n_items, item_shape", [
    ((24, 24), "YX", None, "auto", 1, (24, 24)),
    ((24, 24, 3), "YXS", 2, "auto", 1, (24, 24, 3)),
    ((5, 24, 24), "QYX", None, "auto", 5, (24, 24)),
    ((5, 24, 24), "QYX", None, "volume", 1, (5, 24, 24)),
    ((6, 24, 24), "ZYX", None, "auto", 1, (6, 24, 24)),
    ((6, 24, 24), "ZYX", None, "frames", 6, (24, 24)),
    ((3, 24, 24), "ZYX", None, "auto", 3, (24, 24)),  # too thin for a volume
    ((2, 5, 3, 24, 24), "TZCYX", 2, "auto", 2, (5, 24, 24, 3)),
    ((2, 5, 3, 24, 24), "TZCYX", 2, "frames", 10, (24, 24, 3)),
    ((3, 24, 24), "SYX", 0, "auto", 1, (24, 24, 3)),
    ((24, 24, 3), "YXS", None, "auto", 3, (24, 24)),  # channels off: planes on their own
])
def test_layout_split_merge(shape, axes, channel_axis, stack, n_items, item_shape):
    layout = dio.plan_layout(shape, axes, channel_axis, stack)
    assert layout.n_items == n_items and layout.item_shape == item_shape
    data = np.random.default_rng(0).random(shape)
    items = layout.split(data)
    assert len(items) == n_items and all(it.shape == item_shape for it in items)
    np.testing.assert_array_equal(layout.merge(items), data)
    assert isinstance(layout.describe(), str)


def test_layout_masks():
    layout = dio.plan_layout((5, 3, 24, 24), "ZCYX", 1, "auto")  # one volume, channels last
    full = np.zeros((5, 3, 24, 24), np.uint8)
    assert layout.split_mask(full)[0].shape == (5, 24, 24, 3)
    assert layout.split_mask(np.zeros((5, 24, 24)))[0].shape == (5, 24, 24)
    assert layout.split_mask(np.zeros((24, 24)))[0].shape == (5, 24, 24)
    frames = dio.plan_layout((4, 24, 24), "QYX", None, "frames")
    masks = frames.split_mask(np.zeros((24, 24)))
    assert len(masks) == 4 and masks[0].shape == (24, 24)
    painted = np.zeros((24, 24, 3), np.uint8)
    painted[2, 3, 1] = 255  # a colour PNG mask: any nonzero colour is missing
    (m,) = dio.plan_layout((24, 24), "YX").split_mask(painted)
    assert m.shape == (24, 24) and m[2, 3] and m.sum() == 1
    with pytest.raises(ValueError, match="mask: shape"):
        frames.split_mask(np.zeros((10, 10)))


def test_plan_layout_errors():
    with pytest.raises(ValueError, match="stack"):
        dio.plan_layout((4, 4), "YX", None, "cube")
    with pytest.raises(ValueError, match="channel_axis"):
        dio.plan_layout((4, 4), "YX", 5)


# -- inputs ------------------------------------------------------------------------------
def test_find_inputs(tmp_path):
    (tmp_path / "d").mkdir()
    for name in ("b.png", "a.TIF", "notes.txt", ".hidden.png", "c_dip.png"):
        (tmp_path / "d" / name).write_bytes(b"x")
    sidecar = {"outputs": {"image": {"file": "c_dip.png"}}}
    (tmp_path / "d" / "c_dip.json").write_text(json.dumps(sidecar))
    files, unmatched = dio.find_inputs([tmp_path / "d"])
    assert [f.name for f in files] == ["a.TIF", "b.png"]
    assert unmatched == []
    files, unmatched = dio.find_inputs([
        str(tmp_path / "d" / "*.png"), str(tmp_path / "d" / "b.png"),  # duplicate
        str(tmp_path / "d" / "c_dip.png"),  # named explicitly: taken
        str(tmp_path / "none*.tif"),
    ])
    assert [f.name for f in files] == ["b.png", "c_dip.png"]
    assert unmatched == [str(tmp_path / "none*.tif")]
    files, _ = dio.find_inputs([str(tmp_path / "**" / "*.png")])  # hidden and outputs left out
    assert [f.name for f in files] == ["b.png"]


# -- outputs -----------------------------------------------------------------------------
def test_output_group_is_all_or_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with dio.OutputGroup() as group:
            group.add_image(tmp_path / "a.tif", np.zeros((4, 4), np.uint16))
            group.add_json(tmp_path / "a.json", {"x": 1})
            raise RuntimeError("fails before the commit")
    assert not list(tmp_path.iterdir())
    with dio.OutputGroup() as group:
        tmp = group.add_image(tmp_path / "a.tif", np.zeros((4, 4), np.uint16))
        assert tmp.name.startswith(".") and tmp.exists()
        group.add_json(tmp_path / "a.json", {"value": np.float32(1.5), "nan": float("nan")})
        group.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "a.tif"]
    assert json.loads((tmp_path / "a.json").read_text()) == {"value": 1.5, "nan": None}


# -- configuration files ----------------------------------------------------------------
def test_load_config_file(tmp_path):
    side = tmp_path / "side.json"
    side.write_text(json.dumps({"method": "dip", "config": {"method": "sgld", "steps": 50,
                                                            "burn_in": 10}, "seed": 7,
                                "run": {"stack": "frames"}}))
    loaded = dio.load_config_file(side)
    assert loaded["config"]["method"] == "sgld" and loaded["seed"] == 7
    assert loaded["run"] == {"stack": "frames"}
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps({"method": "dip", "width": 16, "seed": 3}))
    assert dio.load_config_file(plain) == {"config": {"method": "dip", "width": 16}, "seed": 3,
                                           "run": {}}
    for text, match in [('{"method": "dip", "bogus": 1}', "bogus"),
                        ('{"width": "wide"}', "width"),
                        ("{not json", "not valid JSON"),
                        ("[1, 2]", "JSON object"),
                        ('{"config": {}, "seed": -1}', "seed")]:
        plain.write_text(text)
        with pytest.raises((TypeError, ValueError), match=match):
            dio.load_config_file(plain)
    with pytest.raises(ValueError, match="cannot read"):
        dio.load_config_file(tmp_path / "missing.json")
