"""Image files for the command line and for scripts: TIFF, PNG and JPEG.

* :func:`read_image` reads a file into an :class:`ImageFile`: the pixels, one axis letter
  per dimension (``"YX"``, ``"YXS"`` for RGB, ``"ZYX"``, ``"TZCYX"``, ...), the TIFF
  metadata worth keeping (ImageJ axes, spacing and unit, resolution, photometric,
  compression) and the file's SHA-256.
* :func:`plan_layout` decides which axes one restoration sees (a 2-D frame or a 3-D
  volume, plus the channel axis) and splits a stack into such items and merges the
  results back.
* :func:`write_image` writes a result beside its input's metadata, atomically (a
  temporary name in the target folder, then :func:`os.replace`); :class:`OutputGroup`
  does the same for several files that must appear together (image, uncertainty map,
  JSON sidecar).
* :func:`load_config_file` reads a run configuration back from a JSON sidecar or a plain
  configuration file.

Nothing here imports napari or Qt.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageFile",
    "ImageReadError",
    "Layout",
    "OutputGroup",
    "find_inputs",
    "load_config_file",
    "output_suffix",
    "plan_layout",
    "read_image",
    "sha256_file",
    "to_json",
    "write_image",
    "write_json",
]

TIFF_SUFFIXES = (".tif", ".tiff")
PNG_SUFFIXES = (".png",)
JPEG_SUFFIXES = (".jpg", ".jpeg")
IMAGE_SUFFIXES = TIFF_SUFFIXES + PNG_SUFFIXES + JPEG_SUFFIXES
"""File suffixes that :func:`find_inputs` picks up in folders (case-insensitive)."""

STACK_MODES = ("auto", "frames", "volume")

# ImageJ metadata that describes the data rather than its dimensions (those follow from
# the array and its axes) and stays valid for a restored image.
_IMAGEJ_KEEP = (
    "spacing", "unit", "finterval", "fps", "loop", "xorigin", "yorigin", "zorigin",
    "cf", "c0", "c1", "vunit", "yunit", "zunit", "mode", "Labels", "Ranges", "LUTs",
    "Info", "Properties",
)


class ImageReadError(Exception):
    """A file could not be read as an image; the message names the file and the cause."""


# ---------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------
@dataclass
class TiffInfo:
    """What a TIFF output keeps from its input."""

    imagej: bool = False
    imagej_metadata: dict[str, Any] = field(default_factory=dict)
    resolution: tuple[float, float] | None = None
    resolutionunit: int | None = None
    photometric: str = "minisblack"
    planarconfig: str | None = None
    compression: str | None = None


@dataclass
class ImageFile:
    """An image read from a file (or wrapped around an array).

    Attributes
    ----------
    data : numpy.ndarray
        The pixels, in the file's dtype.
    axes : str
        One letter per dimension of ``data``: ``Y``/``X`` the plane, ``S`` samples of a
        colour pixel (RGB), ``C`` channels, ``Z`` depth, ``T`` time, ``I``/``Q`` other
        pages.
    format : str
        ``"tiff"``, ``"png"``, ``"jpeg"`` or ``"array"``.
    path : pathlib.Path or None
        The file read.
    sha256 : str or None
        SHA-256 of the file's bytes (of the array's bytes for ``"array"``).
    tiff : TiffInfo or None
        Metadata a TIFF output carries over (ImageJ axes, spacing and unit, resolution,
        photometric, compression); None for other formats.
    """

    data: np.ndarray
    axes: str
    format: str
    path: Path | None = None
    sha256: str | None = None
    tiff: TiffInfo | None = None

    @property
    def channel_axis(self) -> int | None:
        """The axis of channels: ``C`` if the file has one, else ``S`` (RGB samples)."""
        for letter in "CS":
            if letter in self.axes:
                return self.axes.index(letter)
        return None

    @classmethod
    def from_array(cls, data: Any, axes: str | None = None, channel_axis: int | None = None
                   ) -> "ImageFile":
        """Wrap an array (e.g. to write it with :func:`write_image`)."""
        arr = np.asarray(data)
        if axes is None:
            axes = default_axes(arr.shape, channel_axis)
        if len(axes) != arr.ndim:
            raise ValueError(f"axes: expected {arr.ndim} letters for shape {arr.shape}, "
                             f"got {axes!r}")
        digest = hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest()
        return cls(data=arr, axes=axes.upper(), format="array", sha256=digest)


def default_axes(shape: Sequence[int], channel_axis: int | None = None) -> str:
    """Axis letters for an array without metadata: ``...YX`` plus ``S`` at the channel axis."""
    ndim = len(shape)
    if ndim < 2:
        raise ValueError(f"expected an image with at least 2 dimensions, got shape {tuple(shape)}")
    letters = ["Q"] * ndim
    if channel_axis is not None:
        channel_axis = channel_axis % ndim
        letters[channel_axis] = "S"
    rest = [i for i in range(ndim) if i != channel_axis]
    if len(rest) < 2:
        raise ValueError(f"expected 2 axes besides the channels, got shape {tuple(shape)}")
    letters[rest[-2]], letters[rest[-1]] = "Y", "X"
    if len(rest) == 3:
        letters[rest[0]] = "Z"
    return "".join(letters)


def sha256_file(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def image_format(path: str | os.PathLike) -> str | None:
    """``"tiff"``, ``"png"`` or ``"jpeg"`` from a path's suffix; None if unsupported."""
    suffix = Path(path).suffix.lower()
    if suffix in TIFF_SUFFIXES:
        return "tiff"
    if suffix in PNG_SUFFIXES:
        return "png"
    if suffix in JPEG_SUFFIXES:
        return "jpeg"
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def read_image(path: str | os.PathLike) -> ImageFile:
    """Read a TIFF, PNG or JPEG file.

    TIFF files are read with tifffile (the first series: all pages of a stack, with the
    axes tifffile finds, e.g. ImageJ's ``TZCYX``); PNG and JPEG with imageio (RGB(A) as
    ``YXS``). Raises :class:`ImageReadError` naming the file when it is missing, of an
    unsupported kind or cannot be decoded.
    """
    path = Path(path)
    fmt = image_format(path)
    if fmt is None:
        raise ImageReadError(
            f"{path}: unsupported file type {path.suffix or '(no suffix)'!r}; expected one of "
            f"{', '.join(IMAGE_SUFFIXES)}"
        )
    if path.is_dir():
        raise ImageReadError(f"{path}: is a folder, not an image file")
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    try:
        digest = sha256_file(path)
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot read the file ({_first_line(exc)})") from None
    if fmt == "tiff":
        data, axes, info = _read_tiff(path)
    else:
        data, axes = _read_pillow(path, fmt)
        info = None
    if data.dtype.kind not in "biuf":
        raise ImageReadError(f"{path}: unsupported pixel type {data.dtype}")
    return ImageFile(data=data, axes=axes, format=fmt, path=path, sha256=digest, tiff=info)


def _read_tiff(path: Path) -> tuple[np.ndarray, str, TiffInfo]:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            if not tf.series:
                raise ImageReadError(f"{path}: the TIFF file holds no image")
            series = tf.series[0]
            data = series.asarray()
            axes = str(series.axes).upper()
            page = tf.pages[0]
            info = TiffInfo()
            if tf.is_imagej and tf.imagej_metadata:
                info.imagej = True
                info.imagej_metadata = {k: v for k, v in tf.imagej_metadata.items()
                                        if k in _IMAGEJ_KEEP}
            info.resolution, info.resolutionunit = _resolution(page)
            photometric = int(page.photometric)
            info.photometric = {1: "minisblack", 0: "miniswhite", 2: "rgb"}.get(photometric,
                                                                              "minisblack")
            if "S" in axes:
                info.planarconfig = "separate" if int(page.planarconfig) == 2 else "contig"
            if int(page.compression) in (8, 32946):  # (Adobe) deflate: lossless, no codecs needed
                info.compression = "zlib"
    except ImageReadError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoding problem is reported per file
        raise ImageReadError(f"{path}: cannot read as TIFF ({_first_line(exc)})") from None
    if len(axes) != data.ndim:  # defensive: tifffile's axes always match, but be sure
        axes = default_axes(data.shape)
    return data, axes, info


def _resolution(page: Any) -> tuple[tuple[float, float] | None, int | None]:
    """X/Y resolution (pixels per unit) and the unit code of a TIFF page, if tagged."""
    tags = page.tags
    if "XResolution" not in tags or "YResolution" not in tags:
        return None, None

    def ratio(value: Any) -> float:
        if isinstance(value, (tuple, list)) and len(value) == 2:
            return float(value[0]) / float(value[1]) if value[1] else float(value[0])
        return float(value)

    unit = tags["ResolutionUnit"].value if "ResolutionUnit" in tags else 2  # TIFF default: inch
    return ((ratio(tags["XResolution"].value), ratio(tags["YResolution"].value)), int(unit))


def _read_pillow(path: Path, fmt: str) -> tuple[np.ndarray, str]:
    import imageio.v3 as iio

    try:
        data = np.asarray(iio.imread(path, plugin="pillow"))
    except Exception as exc:  # noqa: BLE001 - any decoding problem is reported per file
        raise ImageReadError(
            f"{path}: cannot read as {fmt.upper()} ({_first_line(exc)})") from None
    if data.ndim == 2:
        axes = "YX"
    elif data.ndim == 3 and data.shape[-1] in (2, 3, 4):
        axes = "YXS"
    else:
        raise ImageReadError(f"{path}: unexpected {fmt.upper()} image of shape {data.shape}")
    return data, axes


# ---------------------------------------------------------------------------------------
# which axes one restoration sees
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Layout:
    """How an array is cut into the images that the engine restores one at a time.

    Every item has the axes ``([Z,] Y, X[, C])``: a 2-D frame or a 3-D volume, with the
    channels (if any) last. ``loop_axes`` are iterated over (frames, time points, ...).
    """

    shape: tuple[int, ...]
    axes: str
    channel_axis: int | None
    y_axis: int
    x_axis: int
    z_axis: int | None
    loop_axes: tuple[int, ...]

    @property
    def order(self) -> tuple[int, ...]:
        tail = (self.z_axis,) if self.z_axis is not None else ()
        chan = (self.channel_axis,) if self.channel_axis is not None else ()
        return (*self.loop_axes, *tail, self.y_axis, self.x_axis, *chan)

    @property
    def n_items(self) -> int:
        return int(np.prod([self.shape[a] for a in self.loop_axes], dtype=np.int64))

    @property
    def item_shape(self) -> tuple[int, ...]:
        return tuple(self.shape[a] for a in self.order[len(self.loop_axes):])

    @property
    def item_spatial_shape(self) -> tuple[int, ...]:
        shape = self.item_shape
        return shape[:-1] if self.channel_axis is not None else shape

    @property
    def item_channel_axis(self) -> int | None:
        """The ``channel_axis`` to pass to the engine for every item."""
        return -1 if self.channel_axis is not None else None

    @property
    def kind(self) -> str:
        """``"volume"`` or ``"frame"``."""
        return "volume" if self.z_axis is not None else "frame"

    def describe(self) -> str:
        """E.g. ``"5 frames (T) of 64x64"`` or ``"1 volume of 16x64x64 with 3 channels"``."""
        spatial = "x".join(str(s) for s in self.item_spatial_shape)
        n = self.n_items
        what = f"{n} {self.kind}{'s' if n != 1 else ''}"
        if self.loop_axes:
            what += f" ({''.join(self.axes[a] for a in self.loop_axes)})"
        text = f"{what} of {spatial}"
        if self.channel_axis is not None:
            text += f" with {self.shape[self.channel_axis]} channels"
        return text

    def split(self, array: np.ndarray) -> list[np.ndarray]:
        """The items of an array of this layout's shape, in order."""
        if tuple(array.shape) != self.shape:
            raise ValueError(f"expected shape {self.shape}, got {array.shape}")
        moved = np.transpose(array, self.order)
        flat = moved.reshape((self.n_items, *self.item_shape))
        return [flat[i] for i in range(self.n_items)]

    def merge(self, items: Sequence[np.ndarray]) -> np.ndarray:
        """Inverse of :meth:`split`: put restored items back into the original axes."""
        if len(items) != self.n_items:
            raise ValueError(f"expected {self.n_items} items, got {len(items)}")
        stacked = np.stack([np.asarray(it) for it in items])
        if stacked.shape[1:] != self.item_shape:
            raise ValueError(f"expected items of shape {self.item_shape}, got {stacked.shape[1:]}")
        moved_shape = tuple(self.shape[a] for a in self.order)
        return np.transpose(stacked.reshape(moved_shape), np.argsort(self.order))

    def split_mask(self, mask: Any) -> list[np.ndarray]:
        """Cut a mask (nonzero = missing) to the items.

        Accepted shapes: the whole image's, the image's without the channel axis, one
        item's (with or without channels; used for every item), or a 2-D ``(Y, X)`` mask
        for volumes (used for every slice). RGB(A) masks (e.g. a painted PNG) count a pixel
        as missing when any colour is nonzero.
        """
        m = np.asarray(mask)
        if m.dtype.kind not in "biuf":
            raise ValueError(f"mask: expected a numeric array, got dtype {m.dtype}")
        spatial_full = tuple(s for i, s in enumerate(self.shape) if i != self.channel_axis)
        yx = (self.shape[self.y_axis], self.shape[self.x_axis])
        if (m.shape not in (self.shape, spatial_full, self.item_shape, self.item_spatial_shape)
                and m.ndim == 3 and m.shape[-1] in (3, 4) and m.shape[:2] == yx):
            m = (m[..., :3] != 0).any(axis=-1).astype(np.uint8)
        if m.shape == self.shape:
            return self.split(m)
        if m.shape == spatial_full and spatial_full != self.shape:
            no_c = Layout(
                shape=spatial_full, axes="".join(a for i, a in enumerate(self.axes)
                                                 if i != self.channel_axis),
                channel_axis=None, **_shift_axes(self))
            return no_c.split(m)
        if m.shape in (self.item_shape, self.item_spatial_shape):
            return [m] * self.n_items
        if self.z_axis is not None and m.shape == yx:
            depth = self.shape[self.z_axis]
            return [np.broadcast_to(m, (depth, *yx))] * self.n_items
        raise ValueError(
            f"mask: shape {m.shape} does not fit the image of shape {self.shape} (axes "
            f"{self.axes}); expected {self.shape}, {spatial_full}, {self.item_spatial_shape}"
            + (f" or {yx}" if self.z_axis is not None else "")
        )


def _shift_axes(layout: Layout) -> dict[str, Any]:
    """Axis indices of ``layout`` once its channel axis is removed."""
    c = layout.channel_axis

    def shift(a: int | None) -> int | None:
        return None if a is None else (a - 1 if c is not None and a > c else a)

    return dict(y_axis=shift(layout.y_axis), x_axis=shift(layout.x_axis),
                z_axis=shift(layout.z_axis), loop_axes=tuple(shift(a) for a in layout.loop_axes))


def plan_layout(
    shape: Sequence[int],
    axes: str | None = None,
    channel_axis: int | None = None,
    stack: str = "auto",
) -> Layout:
    """Decide how an image of ``shape`` (with axis letters ``axes``) is restored.

    Parameters
    ----------
    shape : tuple of int
        The array's shape.
    axes : str, optional
        One letter per axis (``read_image`` gives them); guessed from the shape when None.
    channel_axis : int, optional
        The axis of channels, or None for none.
    stack : {"auto", "frames", "volume"}
        What to do with axes beyond Y, X and the channels. ``"frames"``: restore every
        2-D plane on its own. ``"volume"``: restore 3-D volumes, the depth being the ``Z``
        axis (else the axis just before Y); any further axes are looped over.
        ``"auto"``: a volume when the file has a ``Z`` axis (of at least 4 planes), else
        frames.
    """
    shape = tuple(int(s) for s in shape)
    ndim = len(shape)
    if stack not in STACK_MODES:
        raise ValueError(f"stack: expected one of {', '.join(map(repr, STACK_MODES))}, "
                         f"got {stack!r}")
    if channel_axis is not None:
        if not -ndim <= channel_axis < ndim:
            raise ValueError(f"channel_axis: expected an axis in [{-ndim}, {ndim - 1}] for shape "
                             f"{shape}, got {channel_axis}")
        channel_axis %= ndim
    if axes is None:
        axes = default_axes(shape, channel_axis)
    axes = axes.upper()
    if len(axes) != ndim:
        raise ValueError(f"axes: expected {ndim} letters for shape {shape}, got {axes!r}")
    rest = [i for i in range(ndim) if i != channel_axis]
    if len(rest) < 2:
        raise ValueError(f"expected at least 2 axes besides the channels, got shape {shape} "
                         f"with channel axis {channel_axis}")
    if "Y" in axes and "X" in axes and axes.index("Y") in rest and axes.index("X") in rest:
        y, x = axes.index("Y"), axes.index("X")
    else:
        y, x = rest[-2], rest[-1]
    others = [i for i in rest if i not in (y, x)]
    z = None
    if others:
        z_candidates = [i for i in others if axes[i] == "Z"]
        if stack == "volume":
            z = z_candidates[0] if z_candidates else others[-1]
        elif stack == "auto" and z_candidates and shape[z_candidates[0]] >= 4:
            z = z_candidates[0]
    loop = tuple(i for i in others if i != z)
    return Layout(shape=shape, axes=axes, channel_axis=channel_axis, y_axis=y, x_axis=x,
                  z_axis=z, loop_axes=loop)


# ---------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------
def png_writable(data: np.ndarray) -> bool:
    """Whether a PNG stores ``data`` exactly: uint8 gray/gray+alpha/RGB/RGBA, or uint16 gray."""
    if data.dtype == np.uint8:
        return data.ndim == 2 or (data.ndim == 3 and data.shape[-1] in (2, 3, 4))
    return data.dtype == np.uint16 and data.ndim == 2


def output_suffix(input_format: str, input_suffix: str = "", dtype: Any = None) -> str:
    """The suffix of a restored image: TIFF stays TIFF (``.tif``/``.tiff`` as the input),
    PNG stays PNG, JPEG becomes PNG (lossless, no second compression); any dtype that a
    PNG cannot hold (e.g. float32 or int16) becomes TIFF."""
    if input_format == "tiff":
        return input_suffix.lower() if input_suffix.lower() in TIFF_SUFFIXES else ".tif"
    if input_format in ("png", "jpeg", "array"):
        if dtype is None or np.dtype(dtype) in (np.dtype(np.uint8), np.dtype(np.uint16)):
            return ".png"
    return ".tif"


def temp_path(path: str | os.PathLike) -> Path:
    """A hidden temporary name in ``path``'s folder that keeps its suffix."""
    path = Path(path)
    return path.with_name(f".{path.stem}.{secrets.token_hex(4)}.part{path.suffix}")


def _write_tiff(target: Path, data: np.ndarray, axes: str | None, like: ImageFile | None) -> None:
    import tifffile

    info = like.tiff if like is not None and like.tiff is not None else TiffInfo()
    if axes is None:
        if like is not None and len(like.axes) == data.ndim:
            axes = like.axes
        else:
            axes = default_axes(data.shape)
    axes = axes.upper()
    kwargs: dict[str, Any] = {}
    if info.resolution is not None:
        kwargs["resolution"] = info.resolution
        kwargs["resolutionunit"] = info.resolutionunit
    if info.compression:
        kwargs["compression"] = info.compression
    rgb = (info.photometric == "rgb" and "S" in axes and data.shape[axes.index("S")] in (3, 4)
           and data.dtype.kind in "ui")
    photometric = "rgb" if rgb else ("miniswhite" if info.photometric == "miniswhite"
                                     else "minisblack")
    if "S" in axes:
        planar = info.planarconfig
        if planar is None:
            planar = "separate" if axes.index("S") < axes.index("Y") else "contig"
        if planar == "contig" and axes.index("S") != data.ndim - 1:
            planar = "separate"
        kwargs["planarconfig"] = planar
    imagej_ok = (
        info.imagej
        and data.dtype.char in "BHhf"
        and _imagej_order(axes)
        and ("S" not in axes or (rgb and data.dtype == np.uint8 and axes.endswith("YXS")))
    )
    if imagej_ok:
        meta = dict(info.imagej_metadata)
        meta["axes"] = axes
        tifffile.imwrite(target, data, imagej=True, photometric=photometric, metadata=meta,
                         **kwargs)
    else:  # a plain TIFF whose description records the shape and axes
        tifffile.imwrite(target, data, photometric=photometric, metadata={"axes": axes},
                         **kwargs)


def _imagej_order(axes: str) -> bool:
    """ImageJ hyperstacks hold the axes ``TZCYXS`` in this order (any subset with YX)."""
    order = "TZCYXS"
    if "Y" not in axes or "X" not in axes or any(a not in order for a in axes):
        return False
    pos = [order.index(a) for a in axes]
    return pos == sorted(pos) and len(set(axes)) == len(axes)


def _write_pillow(target: Path, data: np.ndarray) -> None:
    import imageio.v3 as iio

    if not png_writable(data):
        raise ValueError(f"PNG cannot hold {data.dtype} data of shape {data.shape}; write a "
                         ".tif instead")
    iio.imwrite(target, data, plugin="pillow", extension=".png")


def _write_to(target: Path, fmt: str, data: np.ndarray, axes: str | None,
              like: ImageFile | None) -> None:
    if fmt == "tiff":
        _write_tiff(target, data, axes, like)
    elif fmt == "png":
        _write_pillow(target, data)
    else:
        raise ValueError(f"cannot write {target.name}: expected a .tif, .tiff or .png name "
                         "(JPEG would compress the result a second time)")


def write_image(path: str | os.PathLike, data: Any, *, like: ImageFile | None = None,
                axes: str | None = None) -> Path:
    """Write ``data`` to ``path`` (.tif/.tiff or .png), atomically.

    The file appears complete or not at all: it is written to a temporary name in the
    same folder and renamed. ``like`` (the :class:`ImageFile` the data came from) gives
    the TIFF axes and metadata to keep (ImageJ axes, spacing and unit, resolution);
    ``axes`` overrides the axis letters.
    """
    path = Path(path)
    data = np.asarray(data)
    fmt = image_format(path)
    tmp = temp_path(path)
    try:
        _write_to(tmp, fmt or "", data, axes, like)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def to_json(obj: Any, **kwargs: Any) -> str:
    """Plain JSON (numpy scalars and arrays become numbers and lists; NaN and inf null)."""
    return json.dumps(_plain(obj), allow_nan=False, **kwargs)


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, np.generic):
        return _plain(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as indented plain JSON, atomically (see :func:`write_image`)."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        tmp.write_text(to_json(obj, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


class OutputGroup:
    """Files that must appear together: all are written to temporary names first, then
    renamed in the order they were added (put the JSON sidecar last, so that its presence
    means the group is complete). Leaving the ``with`` block without :meth:`commit`
    (e.g. on an error) removes the temporary files.

    Example::

        with OutputGroup() as group:
            group.add_image(out / "a_dip.tif", restored, like=image_file)
            group.add_json(out / "a_dip.json", metadata)
            group.commit()
    """

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path]] = []
        self.committed = False

    def add_image(self, path: str | os.PathLike, data: Any, *, like: ImageFile | None = None,
                  axes: str | None = None) -> Path:
        path = Path(path)
        fmt = image_format(path)
        tmp = temp_path(path)
        self._staged.append((tmp, path))
        _write_to(tmp, fmt or "", np.asarray(data), axes, like)
        return tmp

    def add_json(self, path: str | os.PathLike, obj: Any) -> Path:
        path = Path(path)
        tmp = temp_path(path)
        self._staged.append((tmp, path))
        tmp.write_text(to_json(obj, indent=2) + "\n", encoding="utf-8")
        return tmp

    def temp_file(self, path: str | os.PathLike) -> Path:
        """The temporary file that will become ``path``."""
        for tmp, final in self._staged:
            if final == Path(path):
                return tmp
        raise KeyError(path)

    def commit(self) -> list[Path]:
        """Rename the files into place, the last one (the sidecar) last. An earlier version
        of the last file is removed first, and if the renaming stops part-way (an error,
        Ctrl-C) the files already renamed are removed: the last file never stands beside
        files that are not its own group's."""
        if self._staged and self._staged[-1][1].exists():
            self._staged[-1][1].unlink()
        done: list[Path] = []
        try:
            for tmp, final in self._staged:
                os.replace(tmp, final)
                done.append(final)
        except BaseException:
            for final in done:
                try:
                    final.unlink()
                except OSError:
                    pass
            raise
        self.committed = True
        return [final for _, final in self._staged]

    def discard(self) -> None:
        for tmp, _ in self._staged:
            try:
                tmp.unlink()
            except FileNotFoundError:
                pass
        self._staged = []

    def __enter__(self) -> "OutputGroup":
        return self

    def __exit__(self, *exc: Any) -> None:
        if not self.committed:
            self.discard()


# ---------------------------------------------------------------------------------------
# inputs and configurations
# ---------------------------------------------------------------------------------------
def _has_magic(text: str) -> bool:
    return glob.has_magic(text)


def _listed_outputs(folder: Path) -> set[str]:
    """Names of files that sidecars in ``folder`` list as outputs (restored images)."""
    names: set[str] = set()
    for js in folder.glob("*.json"):
        try:
            data = json.loads(js.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        outputs = data.get("outputs") if isinstance(data, dict) else None
        if isinstance(outputs, dict):
            for entry in outputs.values():
                name = entry.get("file") if isinstance(entry, dict) else entry
                if isinstance(name, str):
                    names.add(Path(name).name)
    return names


def find_inputs(patterns: Iterable[str | os.PathLike]) -> tuple[list[Path], list[str]]:
    """Expand files, folders and glob patterns into a sorted, duplicate-free list.

    A folder contributes its images (suffixes in :data:`IMAGE_SUFFIXES`, not recursive;
    ``**`` in a pattern recurses). Hidden files and images that a sidecar in the same
    folder lists as an output of this program are left out; a file named explicitly is
    always taken. Returns ``(files, unmatched)``: the patterns that matched nothing are in
    ``unmatched``.
    """
    found: list[Path] = []
    unmatched: list[str] = []
    seen: set[Path] = set()
    outputs_cache: dict[Path, set[str]] = {}

    def is_output(p: Path) -> bool:
        folder = p.parent.resolve()
        if folder not in outputs_cache:
            outputs_cache[folder] = _listed_outputs(folder)
        return p.name in outputs_cache[folder]

    def wanted(p: Path) -> bool:
        return (p.is_file() and not p.name.startswith(".")
                and p.suffix.lower() in IMAGE_SUFFIXES and not is_output(p))

    for pattern in patterns:
        text = os.path.expanduser(os.fspath(pattern))
        p = Path(text)
        if p.is_dir():
            matches = sorted(q for q in p.iterdir() if wanted(q))
        elif p.exists() or not _has_magic(text):
            matches = [p] if p.exists() else []
        else:
            hits = sorted(Path(h) for h in glob.glob(text, recursive=True))
            matches = []
            for h in hits:
                if h.is_dir():
                    matches.extend(sorted(q for q in h.iterdir() if wanted(q)))
                elif wanted(h):
                    matches.append(h)
        if not matches:
            unmatched.append(os.fspath(pattern))
        for m in matches:
            key = m.resolve()
            if key not in seen:
                seen.add(key)
                found.append(m)
    return found, unmatched


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read a run configuration from JSON: a sidecar written by the command line, or a
    plain configuration (the fields of ``DIPConfig``/``SGLDConfig`` and ``"method"``,
    optionally ``"seed"``).

    Returns ``{"config": dict, "seed": int or None, "run": dict}`` after checking the
    configuration with :func:`napari_dip.config_from_dict` (unknown keys and wrong types
    raise errors that name the key). Raises ``ValueError``/``TypeError`` naming the file.
    """
    from .core import config_from_dict

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"{path}: cannot read the file ({_first_line(exc)})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not valid JSON (not UTF-8 text; binary files such as "
                         "pickles are never loaded)") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise TypeError(f"{path}: expected a JSON object, got {type(data).__name__}")
    run: dict[str, Any] = {}
    if isinstance(data.get("config"), dict):  # a sidecar
        config = dict(data["config"])
        seed = data.get("seed")
        if isinstance(data.get("run"), dict):
            run = dict(data["run"])
    else:
        config = dict(data)
        seed = config.pop("seed", None)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise TypeError(f"{path}: seed: expected a non-negative integer, got {seed!r}")
    if seed is not None and seed >= 2**63:
        raise ValueError(f"{path}: seed: expected an integer in [0, 2**63), got {seed}")
    try:
        config_from_dict(config)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{path}: {exc}") from None
    return {"config": config, "seed": seed, "run": run}
