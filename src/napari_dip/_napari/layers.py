"""The layers a run shows: the restored image, the SGLD uncertainty and the history.

Everything here runs in the main (Qt) thread, called from the worker's ``yielded`` slot.
The result layer appears at the first snapshot and is then updated in place. A run that
fails leaves no half-made layer: :meth:`RunLayers.discard` removes the layers it added and
gives the layers of an earlier run that it reused their earlier contents back.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Key of ``layer.metadata`` that marks the layers made by this plugin (value: the role,
#: "result", "std" or "history").
ROLE_KEY = "napari_dip"

METHOD_TAGS = {"dip": "DIP", "sgld": "SGLD"}


def result_name(source_name: str, method: str) -> str:
    """``"<image> [DIP]"`` or ``"<image> [SGLD]"``."""
    return f"{source_name} [{METHOD_TAGS[method]}]"


def std_name(source_name: str) -> str:
    """``"<image> [SGLD std]"``: the posterior standard deviation."""
    return f"{source_name} [SGLD std]"


def history_name(source_name: str, method: str) -> str:
    """``"<image> [DIP] history"``: one plane per snapshot."""
    return f"{result_name(source_name, method)} history"


def is_plugin_layer(layer: Any) -> bool:
    """Whether ``layer`` was made by this plugin (a result, uncertainty or history)."""
    md = getattr(layer, "metadata", None)
    return isinstance(md, dict) and ROLE_KEY in md


def std_from_variance(variance: np.ndarray, rgb: bool) -> np.ndarray:
    """Posterior standard deviation for display; RGB channels are pooled into one map."""
    var = np.asarray(variance, dtype=np.float32)
    if rgb:
        var = var.mean(axis=-1)
    return np.sqrt(np.maximum(var, 0.0)).astype(np.float32)


class RunLayers:
    """Creates and updates the layers of one run.

    Parameters
    ----------
    viewer : napari.Viewer
        Where the layers go.
    source : napari.layers.Image
        The input layer: its name, shape, scale, translate and display settings are used.
    method : {"dip", "sgld"}
        Names the layers.
    frames : list of tuple
        Index of every frame into the source array (``[()]`` for one whole image).
    keep_history : bool
        Also keep every snapshot in a "history" layer (single-image runs only).
    """

    def __init__(self, viewer: Any, source: Any, *, method: str, frames: list[tuple],
                 keep_history: bool = False) -> None:
        self.viewer = viewer
        self.source_name = str(source.name)
        self.shape = tuple(np.shape(source.data))
        self.rgb = bool(source.rgb)
        self.scale = tuple(np.asarray(source.scale, dtype=float))
        self.translate = tuple(np.asarray(source.translate, dtype=float))
        self.units = getattr(source, "units", None)
        self.contrast_limits = tuple(source.contrast_limits)
        self.colormap = None if self.rgb else source.colormap
        self.method = method
        self.frames = frames
        self.multi = frames != [()]
        self.keep_history = bool(keep_history) and not self.multi

        self.result: Any = None
        self.std: Any = None
        self.history: Any = None
        self._buffer: np.ndarray | None = None
        self._std_buffer: np.ndarray | None = None
        self._hist_buffer: np.ndarray | None = None
        self.history_steps: list[int] = []
        # layers of an earlier run that this run reuses, with what they held before it
        self._earlier: list[tuple[Any, dict[str, Any]]] = []

    # -- public --------------------------------------------------------------------------
    def show(self, frame: int, image: np.ndarray, variance: np.ndarray | None,
             step: int) -> None:
        """Show a snapshot of frame number ``frame`` (its ``image`` and ``variance``)."""
        index = self.frames[frame]
        if self.multi:
            if self._buffer is None:
                self._buffer = np.zeros(self.shape, dtype=image.dtype)
            self._buffer[index] = image
            data = self._buffer
        else:
            data = image
        self.result = self._put(
            self.result, data, result_name(self.source_name, self.method), "result",
            contrast_limits=self.contrast_limits, colormap=self.colormap, rgb=self.rgb,
        )

        if variance is not None:
            std = std_from_variance(variance, self.rgb)
            if self.multi:
                if self._std_buffer is None:
                    full = self.shape[:-1] if self.rgb else self.shape
                    self._std_buffer = np.zeros(full, dtype=np.float32)
                self._std_buffer[index[:self._std_buffer.ndim]] = std
                std_data = self._std_buffer
            else:
                std_data = std
            hi = float(np.max(std_data)) if std_data.size else 0.0
            limits = (0.0, hi if hi > 0 else 1.0)
            new = self.std is None or self.std not in self.viewer.layers
            self.std = self._put(self.std, std_data, std_name(self.source_name), "std",
                                 contrast_limits=limits, colormap="magma", rgb=False)
            self.std.contrast_limits = limits
            if new:  # below the result, so that the restoration stays in view
                self._move_below(self.std, self.result)

        if self.keep_history:
            self._append_history(image, step)

    def set_metadata(self, result: dict[str, Any], std: dict[str, Any] | None = None,
                     history: dict[str, Any] | None = None) -> None:
        """Store provenance in the layers' metadata (each dict is copied)."""
        if self.result is not None:
            self.result.metadata = {**result, ROLE_KEY: "result"}
        if self.std is not None and std is not None:
            self.std.metadata = {**std, ROLE_KEY: "std"}
        if self.history is not None and history is not None:
            self.history.metadata = {**history, ROLE_KEY: "history",
                                     "history_steps": list(self.history_steps)}

    @property
    def layers(self) -> list[Any]:
        return [x for x in (self.result, self.std, self.history) if x is not None]

    def discard(self) -> None:
        """Take back what this run did to the viewer (after a failure): remove the layers
        it added, and give the layers of an earlier run that it reused what they held
        before."""
        layers = self.viewer.layers
        for layer in (self.history, self.std, self.result):
            if layer is None or layer not in layers:
                continue
            earlier = next((state for old, state in self._earlier if old is layer), None)
            if earlier is None:
                layers.remove(layer)
            else:
                for name, value in earlier.items():  # the data first, then its settings
                    setattr(layer, name, value)
        self.result = self.std = self.history = None
        self._earlier = []

    # -- helpers -------------------------------------------------------------------------
    def _put(self, layer: Any, data: np.ndarray, name: str, role: str, *, scale=None,
             translate=None, **kwargs: Any) -> Any:
        """Update ``layer`` with ``data``, or find/add the layer when there is none yet."""
        layers = self.viewer.layers
        rgb = bool(kwargs.get("rgb", False))
        if layer is not None and layer in layers:
            if layer.data is data:
                layer.refresh()
            else:
                layer.data = data
            return layer
        scale = self.scale if scale is None else scale
        translate = self.translate if translate is None else translate
        ndim = data.ndim - (1 if rgb else 0)
        # reuse the layer of an earlier run on the same image (same name, role and axes)
        for old in layers:
            if (old.name == name and old.metadata.get(ROLE_KEY) == role
                    and bool(getattr(old, "rgb", False)) == rgb and np.ndim(old.data) == data.ndim):
                if not any(layer is old for layer, _ in self._earlier):
                    self._earlier.append((old, {
                        "data": old.data, "scale": tuple(old.scale),
                        "translate": tuple(old.translate),
                        "contrast_limits": tuple(old.contrast_limits),
                        "metadata": dict(old.metadata)}))
                old.data = data
                old.scale = _fit_len(scale, ndim, 1.0)
                old.translate = _fit_len(translate, ndim, 0.0)
                if kwargs.get("contrast_limits") is not None:
                    old.contrast_limits = kwargs["contrast_limits"]
                return old
        extra: dict[str, Any] = {}
        if self.units is not None and len(self.units) == ndim:
            extra["units"] = self.units
        kwargs = {k: v for k, v in kwargs.items() if v is not None}
        return self.viewer.add_image(
            data, name=name, scale=_fit_len(scale, ndim, 1.0),
            translate=_fit_len(translate, ndim, 0.0),
            metadata={ROLE_KEY: role}, **extra, **kwargs,
        )

    def _append_history(self, image: np.ndarray, step: int) -> None:
        n = len(self.history_steps)
        buf = self._hist_buffer
        if buf is None or buf.shape[1:] != image.shape or buf.dtype != image.dtype:
            buf = np.zeros((8, *image.shape), dtype=image.dtype)
            n = 0
            self.history_steps = []
        elif n == buf.shape[0]:  # grow by doubling: appends stay cheap
            grown = np.zeros((2 * n, *image.shape), dtype=image.dtype)
            grown[:n] = buf
            buf = grown
        buf[n] = image
        self._hist_buffer = buf
        self.history_steps.append(int(step))

        world_axis = None
        follow = True
        if self.history is not None and self.history in self.viewer.layers:
            world_axis = self.viewer.dims.ndim - self.history.ndim
            follow = int(self.viewer.dims.current_step[world_axis]) >= n - 1
        new = self.history is None or self.history not in self.viewer.layers
        self.history = self._put(
            self.history, buf[: n + 1], history_name(self.source_name, self.method), "history",
            scale=(1.0, *self.scale), translate=(0.0, *self.translate),
            contrast_limits=self.contrast_limits, colormap=self.colormap, rgb=self.rgb,
        )
        if new:
            self._move_above(self.history, self.result)
            world_axis = self.viewer.dims.ndim - self.history.ndim
        if follow and world_axis is not None:
            self.viewer.dims.set_current_step(world_axis, n)

    def _move_below(self, layer: Any, other: Any) -> None:
        layers = self.viewer.layers
        if other is None or other not in layers or layer not in layers:
            return
        i, j = layers.index(layer), layers.index(other)
        if i > j:
            layers.move(i, j)

    def _move_above(self, layer: Any, other: Any) -> None:
        layers = self.viewer.layers
        if other is None or other not in layers or layer not in layers:
            return
        i, j = layers.index(layer), layers.index(other)
        if i < j:
            layers.move(i, j + 1)


def _fit_len(values: tuple[float, ...], ndim: int, fill: float) -> tuple[float, ...]:
    """The last ``ndim`` values, padded in front with ``fill``."""
    values = tuple(values)
    if len(values) >= ndim:
        return values[len(values) - ndim:]
    return (fill,) * (ndim - len(values)) + values
