"""The "Deep Image Prior" dock widget.

Pick an image layer (and, to fill in missing pixels, a labels layer whose painted pixels
mark them), choose DIP or SGLD-DIP and a preset, press Run: the result layer appears at
the first snapshot and improves in place while the run goes on in a background thread.
With a Dask scheduler (advanced settings), the frames or slices of a stack are tasks on a
Dask cluster instead, and each one appears in the result layer when its task finishes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import napari
import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    LineEdit,
    PushButton,
    SpinBox,
)
from napari.layers import Image, Labels
from napari.utils import progress
from napari.utils.notifications import show_error, show_warning

from ..core import make_config, run_metadata
from ..core.api import noise_model_for_frames, r2r_alpha_for_frames
from ..core.device import device_name, resolve_device, resolve_seed
from . import layers as _layers
from .worker import (
    SCHEDULER_FIELD,
    ClusterStatus,
    Failure,
    RunRequest,
    Update,
    mask_for_frame,
    parse_scheduler,
    plan_frames,
    restore_frames,
    restore_frames_dask,
    start_worker,
)

log = logging.getLogger(__name__)

METHOD_CHOICES = [("DIP", "dip"), ("SGLD-DIP (uncertainty)", "sgld")]
PRESET_CHOICES = [("fast", "fast"), ("balanced", "balanced"), ("quality (papers)", "quality")]
CHANNEL_CHOICES = [("none", None), ("first axis", 0), ("last axis", -1)]
MODE_CHOICES = [
    ("whole image / volume", "whole"),
    ("frames along first axis", "frames"),
    ("2-D slices, one by one", "slices"),
]
MASK_HINT = "Painted pixels are missing and will be filled."

# advanced field name -> config field
ADVANCED_FIELDS = {
    "net_width": "width",
    "net_scales": "scales",
    "learning_rate": "lr",
    "jitter": "jitter",
    "ema": "ema",
    "burn_in": "burn_in",
    "thinning": "thinning",
    "gap_calibration": "calibration_share",
    "snapshot_every": "snapshot_every",
    "members": "members",
    "compile_net": "compile",
    "data_term": "loss",
    "second_stage": "refine",
    "gap_fill": "gap_blend",
}
NOISE_CHOICES = [("automatic", "auto"), ("Gaussian", "gaussian"),
                 ("Poisson-Gaussian (photon counts)", "poisson-gaussian")]
SGLD_ONLY = ("burn_in", "thinning", "gap_calibration")
DIP_ONLY = ("data_term", "second_stage", "gap_fill")
LOSS_CHOICES = [("squared error (fills masks)", "mse"), ("SURE (denoising)", "sure"),
                ("R2R (denoising)", "r2r"), ("hold-out (fills masks)", "holdout")]
REFINE_CHOICES = [("none", "off"), ("Wiener filter (denoising)", "wiener")]
GAP_FILL_CHOICES = [("network", "off"), ("network + biharmonic", "biharmonic")]


def device_choices() -> list[tuple[str, str]]:
    """Devices to offer; "auto" names the device it resolves to."""
    import torch

    choices = [(f"auto \u2192 {device_name(resolve_device('auto'))}", "auto"), ("cpu", "cpu")]
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            choices.append((f"cuda:{i} ({torch.cuda.get_device_name(i)})", f"cuda:{i}"))
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        choices.append(("mps", "mps"))
    return choices


def format_seconds(seconds: float) -> str:
    """``"12 s"``, ``"3:05"`` or ``"1:02:03"``."""
    s = max(0, int(round(seconds)))
    if s < 60:
        return f"{s} s"
    m, s = divmod(s, 60)
    if m < 60:
        return f"{m}:{s:02d}"
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}"


@dataclass
class _DaskRun:
    """The Dask side of a run whose pieces are tasks on a cluster."""

    requested: str  # the text of the Dask scheduler field
    stop: threading.Event = field(default_factory=threading.Event)
    description: str | None = None
    address: str | None = None
    connected: float | None = None  # perf_counter() when the cluster was ready


class _Pieces:
    """The frames (or their masks, ``masks=True``) of a run request as a sequence that is
    read by index, one piece at a time."""

    def __init__(self, request: RunRequest, masks: bool = False) -> None:
        self.request, self.masks = request, masks

    def __len__(self) -> int:
        return len(self.request.plan)

    def __getitem__(self, k: int) -> Any:
        r = self.request
        return (mask_for_frame(r.mask, r.shape, r.plan, k) if self.masks
                else r.frame_image(k))


@dataclass
class _Run:
    """State of the run in progress (main thread only)."""

    worker: Any
    steps: Any  # the restore_frames generator, closed when the worker finishes
    first: Any  # the engine generator of the first piece
    request: RunRequest
    layers: _layers.RunLayers
    source: Any
    mask: Any
    method: str
    mode: str
    pbar: Any
    seed: int
    started: float = field(default_factory=time.perf_counter)
    last: Update | None = None
    frames: dict[int, dict[str, Any]] = field(default_factory=dict)
    stop_requested: bool = False
    # Finish: the engine ends the fit at its next snapshot and completes the result
    finish_event: threading.Event = field(default_factory=threading.Event)
    cancelled: str | None = None  # why the run was abandoned (input removed, closed)
    failure: Failure | None = None
    finished: bool = False
    # napari's progress bar and notifications process Qt events, so a slot can run inside
    # another: updates are queued and handled in order, and the end waits for them
    pending: deque = field(default_factory=deque)
    draining: bool = False
    finish_pending: bool = False
    dask: _DaskRun | None = None  # set when the pieces run on a Dask cluster

    @property
    def n_frames(self) -> int:
        return len(self.request.plan)

    @property
    def frames_done(self) -> int:
        return sum(1 for r in self.frames.values() if r.get("complete"))


class DIPWidget(Container):
    """Deep Image Prior / SGLD-DIP restoration of an image layer.

    Parameters
    ----------
    napari_viewer : napari.viewer.Viewer
        The viewer whose layers are restored (passed by napari).
    """

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=False)
        self._viewer = napari_viewer
        self._run: _Run | None = None
        self._preset_values: dict[str, Any] = {}
        self._dip_auto_stop = True
        self._auto_burn_in: int | None = None
        self.last_worker: Any = None  # the latest run's worker (for scripts and tests)

        intro = Label(
            name="intro",
            value="Denoise an image, or fill in its missing pixels, with a network "
                  "fitted to that image alone (Deep Image Prior).",
        )
        intro.native.setWordWrap(True)

        self.image_layer = ComboBox(
            name="image_layer", label="image", annotation=Image, choices=self._image_choices,
            tooltip="The image layer to restore. Follows the selected image layer.")
        self.mask_layer = ComboBox(
            name="mask_layer", label="mask", annotation=Labels | None,
            choices=self._mask_choices, nullable=True,
            tooltip="Optional labels layer: " + MASK_HINT + " Leave at 'none' to denoise.")
        self.mask_layer.null_string = "none"
        self.mask_layer.reset_choices()
        self.mask_hint = Label(name="mask_hint", value=MASK_HINT, label=" ")
        self.mask_hint.native.setWordWrap(True)
        self.mask_hint.native.setStyleSheet("font-size: 90%; color: #9a9a9a;")

        self.method = ComboBox(
            name="method", label="method", choices=METHOD_CHOICES, value="dip",
            tooltip="DIP: Deep Image Prior (Ulyanov et al. 2018).\n"
                    "SGLD-DIP: its Bayesian variant (Cheng et al. 2019); also gives a "
                    "per-pixel uncertainty (posterior standard deviation).")
        self.preset = ComboBox(
            name="preset", label="preset", choices=PRESET_CHOICES, value="fast",
            tooltip="fast and balanced use smaller networks and fewer steps;\n"
                    "quality is the papers' configuration (slow without a GPU).")
        self.steps = SpinBox(
            name="steps", label="steps", min=1, max=1_000_000, step=100,
            tooltip="Maximum number of optimisation steps (set by the preset).")
        self.auto_stop = CheckBox(
            name="auto_stop", text="auto-stop", value=True,
            tooltip="DIP: stop once the estimate explains the image down to its noise level\n"
                    "(or, with a mask, when the output stops improving) and keep that\n"
                    "estimate. SGLD runs its full schedule.")
        self.channels = ComboBox(
            name="channels", label="channels", choices=CHANNEL_CHOICES, value=None,
            tooltip="Axis of colour channels, restored together. RGB layers use the last "
                    "axis.")
        self.mode = ComboBox(
            name="mode", label="process as", choices=MODE_CHOICES, value="whole",
            tooltip="whole: one 2-D image or 3-D volume.\n"
                    "frames along first axis: e.g. a time series; each frame is restored in "
                    "turn and appears when done.\n"
                    "2-D slices: every plane of a stack on its own.")
        self.time_limit = FloatSpinBox(
            name="time_limit", label="time limit", min=0, max=7 * 24 * 3600, step=10,
            tooltip="Seconds the fit may take; 0: no limit. At the limit the run finishes "
                    "as at its last step\n(the stop rule's estimate, the gap fill and the "
                    "second stage, a few seconds more).\nA tiled image shares it among its "
                    "tiles; each frame of a stack has a limit of its own.\nA run that "
                    "reaches it depends on the machine's speed: the seed no longer repeats "
                    "it.")
        self.time_limit.native.setDecimals(0)
        self.time_limit.native.setSpecialValueText("none")
        self.time_limit.native.setSuffix(" s")
        self.seed = LineEdit(
            name="seed", label="seed", value="0",
            tooltip="Makes a run repeatable. Leave empty for a random seed (reported in the "
                    "result's metadata).")
        self.seed.native.setPlaceholderText("random")
        self.seed.native.setValidator(_digits_validator(self.seed.native))
        self.device = ComboBox(
            name="device", label="device", choices=device_choices(), value="auto",
            tooltip="Where the network runs; 'auto' picks a CUDA GPU, then Apple MPS, then "
                    "the CPU.")
        self.keep_history = CheckBox(
            name="keep_history", text="keep snapshots (scrub with the slider)", value=False,
            tooltip="Also keep every snapshot in a '... history' layer, to step through the "
                    "optimisation with the slider.")
        self.show_advanced = CheckBox(
            name="show_advanced", text="show network and optimiser settings", value=False)

        self.net_width = SpinBox(name="net_width", label="width", min=1, max=4096,
                                 tooltip="Channels of every layer of the network. The "
                                 "balanced preset gives colour images 32 when this is left "
                                 "as it is.")
        self.net_scales = SpinBox(name="net_scales", label="scales", min=1, max=8,
                                  tooltip="Down/up-sampling levels of the network.")
        self.learning_rate = FloatSpinBox(name="learning_rate", label="learning rate",
                                          min=0.0001, max=1.0, step=0.001,
                                          tooltip="Adam learning rate.")
        self.jitter = FloatSpinBox(name="jitter", label="input jitter", min=0.0, max=1.0,
                                   step=0.005,
                                   tooltip="Noise added to the network's input at every "
                                           "step (regularises).")
        self.ema = FloatSpinBox(name="ema", label="averaging (EMA)", min=0.0, max=0.9999,
                                step=0.01,
                                tooltip="Weight of the moving average of the output "
                                        "(0 disables).")
        self.burn_in = SpinBox(name="burn_in", label="burn-in", min=0, max=1_000_000, step=100,
                               tooltip="SGLD: steps before posterior samples are kept.")
        self.thinning = SpinBox(name="thinning", label="thinning", min=1, max=100_000,
                                tooltip="SGLD: keep one sample every this many steps.")
        self.gap_calibration = FloatSpinBox(
            name="gap_calibration", label="gap calibration", min=0.0, max=0.5, step=0.01,
            tooltip="SGLD with a mask: the share of the known pixels held out of the fit "
                    "to calibrate the uncertainty in the gaps (the chain's own is too "
                    "small there: on test crops 82 % of the gaps' errors fell within 1.96 "
                    "std, 93 % with 5 % held out, for about 0.18 dB of the mean). 0 turns "
                    "it off.")
        self.snapshot_every = SpinBox(
            name="snapshot_every", label="update every", min=1, max=100_000,
            tooltip="Steps between updates of the layers (and checks of Stop).")
        self.members = SpinBox(
            name="members", label="nets / chains", min=1, max=16,
            tooltip="Independent networks fitted together (side by side in one pass on a "
                    "GPU): DIP averages "
                    "them (an ensemble, sharper), SGLD pools their samples (a better mean "
                    "and a better calibrated uncertainty). Costs about this many times the "
                    "time on a CPU, less on a GPU for small images.")
        self.compile_net = CheckBox(
            name="compile_net", text="compile the network (CUDA)", value=False,
            tooltip="Fuse the work between the convolutions into generated GPU code "
                    "(torch.compile): 1.4-1.7x faster steps, but the first run of each "
                    "image size waits about a minute for the compiler. Worth it for long "
                    "runs, stacks and repeated runs of one size. No effect on the CPU.")
        self.data_term = ComboBox(
            name="data_term", label="data term", choices=LOSS_CHOICES, value="mse",
            tooltip="Squared error: the papers' DIP, which maps a random code to the image "
                    "and needs the stop rule; it fills masked pixels.\n"
                    "SURE: the network denoises the image itself and minimises an unbiased "
                    "estimate of its error to the clean image, so it cannot overfit the "
                    "noise and needs no stop rule; several times faster on a CPU. Images "
                    "without a mask only.\n"
                    "R2R: the network denoises the image itself, fitting a re-noised copy "
                    "of it to another whose noise is independent; half the time per step "
                    "of SURE, and it stops by itself. Images without a mask only. The fast "
                    "and balanced presets use it where they can.")
        self.second_stage = ComboBox(
            name="second_stage", label="second stage", choices=REFINE_CHOICES, value="off",
            tooltip="Wiener filter: once the network is done, filter the noisy image again "
                    "on stacks of similar patches, with gains taken from the network's "
                    "estimate (as in BM3D's second step; the fast and balanced presets "
                    "filter a fifth of it with gains from a hard-thresholding estimate, "
                    "which keeps texture), and blend the two. A few seconds on a CPU for a "
                    "256x256 image; the fast and balanced presets use it to denoise. "
                    "Images without a mask only; the updates during the run show the "
                    "network's estimate.")
        self.gap_fill = ComboBox(
            name="gap_fill", label="gap fill", choices=GAP_FILL_CHOICES, value="off",
            tooltip="With a mask and the hold-out data term: blend the "
                    "network's estimate in the gaps with a biharmonic interpolation of the "
                    "known pixels, weighted by how well each predicts known pixels it was "
                    "not shown: mostly the network on texture, mostly the interpolation on "
                    "smooth images. The fast and balanced presets use it; the updates "
                    "during the run show the network's estimate.")
        self.noise_model = ComboBox(
            name="noise_model", label="noise", choices=NOISE_CHOICES, value="auto",
            tooltip="Poisson-Gaussian: for photon-counting data (fluorescence, low light); "
                    "the image is variance-stabilised before the fit and mapped back after "
                    "it, with gain and read noise estimated from the image. Automatic: "
                    "Poisson-Gaussian where a denoising run of the fast or balanced preset "
                    "finds the noise growing with the signal, Gaussian otherwise and where "
                    "a noise std is given.")
        self.noise_std = FloatSpinBox(
            name="noise_std", label="noise std", min=0, max=1e9, step=1, value=0,
            tooltip="The standard deviation of the image's Gaussian noise where it is "
                    "known, in the image's units (e.g. 25 for 8-bit data with noise of std "
                    "25); 0: estimated from the image.\nThe estimate reads fine texture "
                    "as noise at low noise levels, and the result then smooths it away.\n"
                    "Giving it also says the noise is Gaussian (not with Poisson-Gaussian).")
        self.noise_std.native.setDecimals(2)  # set for the image's units when it is chosen
        self.noise_std.native.setSpecialValueText("estimate")
        self.keep_known = CheckBox(
            name="keep_known", text="keep known pixels unchanged", value=False,
            tooltip="With a mask: copy the pixels that are not missing into the result "
                    "unchanged (for clean images); else they are denoised too.")
        self.dask_scheduler = LineEdit(
            name="dask_scheduler", label=SCHEDULER_FIELD, value="",
            tooltip="Frames and slices only: run each one as a task on a Dask cluster; each "
                    "appears when its task is done.\n"
                    "empty: run here, one after another;\n"
                    "local or local:N: start a cluster of N worker processes on this "
                    "machine (closed at the end);\n"
                    "tcp://host:8786 (or a scheduler file .json): a running scheduler.\n"
                    "Needs Dask: pip install \"napari-dip[cluster]\".")
        self.dask_scheduler.native.setPlaceholderText("run here (or local:N, tcp://\u2026)")
        for w in (self.learning_rate, self.jitter, self.ema):
            w.native.setDecimals(4)
        self.advanced = Container(
            name="advanced", labels=True,
            widgets=[self.net_width, self.net_scales, self.learning_rate, self.jitter,
                     self.ema, self.burn_in, self.thinning, self.gap_calibration,
                     self.snapshot_every,
                     self.members, self.compile_net, self.data_term, self.second_stage,
                     self.gap_fill, self.noise_model, self.noise_std,
                     self.keep_known,
                     self.dask_scheduler],
        )
        self.advanced.native.layout().setContentsMargins(16, 0, 0, 4)
        self.advanced.visible = False

        self.run_button = PushButton(name="run_button", text="Run")
        self.finish_button = PushButton(name="finish_button", text="Finish", enabled=False)
        self.stop_button = PushButton(name="stop_button", text="Stop", enabled=False)
        self.run_button.native.setToolTip("Start the restoration in the background.")
        self.finish_button.native.setToolTip(
            "End the fit at the next snapshot and finish the result as at its last step:\n"
            "the stop rule's estimate, then the gap fill and the second stage where they "
            "run (a few seconds).\nA tiled image fits its later tiles as far as this "
            "one; with several frames or slices,\nthose not started yet stay empty.")
        self.stop_button.native.setToolTip(
            "Stop after the current snapshot; the result layer keeps the latest estimate.")
        buttons = Container(name="buttons", layout="horizontal", labels=False,
                            widgets=[self.run_button, self.finish_button, self.stop_button])
        self.status = Label(name="status", value="Ready.")
        self.status.native.setWordWrap(True)
        self.status.native.setMinimumHeight(54)
        self.status.native.setAlignment(_align_top_left())

        form = Container(name="form", labels=True, widgets=[
            self.image_layer, self.mask_layer, self.mask_hint, self.method, self.preset,
            _row("steps", self.steps, self.auto_stop), self.time_limit, self.channels,
            self.mode, self.seed, self.device, _row("history", self.keep_history),
            _row("advanced", self.show_advanced),
        ])
        for c in (self, form, buttons):
            c.native.layout().setContentsMargins(0, 0, 0, 0)
        self.native.layout().setContentsMargins(6, 6, 6, 6)
        for text in (intro, self.mask_hint, self.status):
            _fill_width(text.native)
        self.extend([intro, form, self.advanced, buttons, self.status])
        # one label column per form; measured once napari's style sheet applies
        self._forms = (form, self.advanced)
        _later(self._align_labels)
        self.native.layout().addStretch()

        self.method.changed.connect(self._on_method_changed)
        self.preset.changed.connect(self._apply_preset)
        self.mask_layer.changed.connect(self._on_mask_changed)
        self.data_term.changed.connect(self._update_auto_stop)
        self.steps.changed.connect(self._on_steps_changed)
        self.image_layer.changed.connect(self._on_image_changed)
        self.mode.changed.connect(self._update_history_enabled)
        self.show_advanced.changed.connect(self._on_show_advanced)
        self.auto_stop.changed.connect(self._remember_auto_stop)
        self.run_button.changed.connect(self.run)
        self.finish_button.changed.connect(self.finish)
        self.stop_button.changed.connect(self.stop)

        events = self._viewer.layers.events
        events.removed.connect(self._on_layer_removed)
        self._viewer.layers.selection.events.active.connect(self._on_active_layer)
        # closing the dock widget or the viewer destroys the widget: stop a run still going
        self.native.destroyed.connect(self._on_destroyed)

        self._apply_preset()
        self._on_method_changed()
        active = self._viewer.layers.selection.active
        if isinstance(active, Image):
            self._select_image(active)
        self._on_image_changed()

    def _align_labels(self) -> None:
        """Give the labels of each form one width, so that the fields line up."""
        try:
            self._align_label_columns()
        except RuntimeError:  # the widget was deleted before the event loop came back
            pass

    def _align_label_columns(self) -> None:
        from qtpy.QtWidgets import QLabel

        for form in self._forms:
            layout = form.native.layout()
            labels = []
            for i in range(layout.count()):
                row = layout.itemAt(i).widget()
                inner = row.layout() if row is not None else None
                if inner is None or inner.count() < 2:
                    continue
                first = inner.itemAt(0).widget()
                if isinstance(first, QLabel):
                    labels.append(first)
            if not labels:
                continue
            for label in labels:
                label.ensurePolished()
            width = max(
                max(label.sizeHint().width(), label.fontMetrics().horizontalAdvance(label.text()))
                for label in labels)
            for label in labels:
                label.setMinimumWidth(width + 4)

    # -- choices --------------------------------------------------------------------------
    def _image_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return [(layer.name, layer) for layer in self._viewer.layers if isinstance(layer, Image)]

    def _mask_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return [(layer.name, layer) for layer in self._viewer.layers if isinstance(layer, Labels)]

    def _select_image(self, layer: Any) -> None:
        if layer not in self.image_layer.choices:
            self.image_layer.reset_choices()
        if layer in self.image_layer.choices:
            self.image_layer.value = layer

    # -- reactions to the user ------------------------------------------------------------
    def _on_active_layer(self, event: Any = None) -> None:
        layer = self._viewer.layers.selection.active
        if isinstance(layer, Image) and not _layers.is_plugin_layer(layer):
            self._select_image(layer)

    def _on_image_changed(self, *_: Any) -> None:
        layer = self.image_layer.value
        if layer is None:
            return
        if layer.rgb:
            self.channels.value = -1
            self.channels.enabled = False
            self.channels.tooltip = "RGB layer: its colour channels (last axis) are " \
                                    "restored together."
        else:
            if not self.channels.enabled:
                self.channels.value = None
            self.channels.enabled = True
        n_spatial = np.ndim(layer.data) - (self.channels.value is not None)
        self.mode.value = "whole" if n_spatial <= 3 else "frames"
        self._fit_noise_std_field(layer)
        self._update_history_enabled()

    def _fit_noise_std_field(self, layer: Image) -> None:
        """The noise std field's step and decimals for the image's units: steps of 1 for
        integer data, of about a hundredth of the value range for float data (from the
        layer's contrast limits range, so that lazy data are not read)."""
        if np.issubdtype(np.dtype(layer.dtype), np.integer):
            step = 1.0
        else:
            lo, hi = layer.contrast_limits_range
            span = float(hi) - float(lo)
            span = span if np.isfinite(span) and span > 0 else 1.0
            step = float(10.0 ** np.round(np.log10(span / 100.0)))
        native = self.noise_std.native
        native.setDecimals(int(min(10, max(0, -np.floor(np.log10(step))) + 2)))
        native.setSingleStep(step)

    def _on_method_changed(self, *_: Any) -> None:
        sgld = self.method.value == "sgld"
        # SGLD shows the box unticked; DIP gets back the user's last choice
        self.auto_stop.value = False if sgld else self._dip_auto_stop
        for name in SGLD_ONLY:
            getattr(self, name).enabled = sgld
        for name in DIP_ONLY:
            getattr(self, name).enabled = not sgld
        self._apply_preset()
        self._update_auto_stop()

    def _update_auto_stop(self, *_: Any) -> None:
        """The stop rule is for DIP with the squared error or R2R: SGLD's mean and SURE's
        fit do not overfit, so they run their steps."""
        sgld = self.method.value == "sgld"
        sure = not sgld and self.data_term.value == "sure"
        r2r = not sgld and self.data_term.value == "r2r"
        hold = not sgld and self.data_term.value == "holdout"
        self.auto_stop.enabled = not (sgld or sure)
        self.auto_stop.native.setToolTip(
            "SGLD's posterior mean does not overfit: it runs its full schedule." if sgld else
            "The SURE data term does not fit the noise: the run goes through its steps." if
            sure else
            "Stop where the network's outputs for the image and for re-noised copies of "
            "it drift apart at two checks in a row (it begins to overfit) and keep the "
            "estimate from before." if r2r
            else
            "Stop once the error on known pixels hidden from the network has not fallen "
            "for a while and keep the estimate with the lowest one." if hold
            else
            "Stop once the estimate explains the image down to its noise level (or, with a "
            "mask, when the output stops improving) and keep that estimate.")

    def _remember_auto_stop(self, value: bool) -> None:
        if self.method.value == "dip":
            self._dip_auto_stop = bool(value)

    def _apply_preset(self, *_: Any) -> None:
        """Fill steps and the advanced fields with the chosen preset's values."""
        self._masked = self.mask_layer.value is not None
        cfg = make_config(self.method.value, self.preset.value, masked=self._masked)
        self._preset_values = {}
        self.steps.value = cfg.steps
        values = {}
        for wname, fname in ADVANCED_FIELDS.items():
            w = getattr(self, wname)
            if not hasattr(cfg, fname):  # SGLD-only field with DIP: leave it as it is
                continue
            w.value = getattr(cfg, fname)
            values[wname] = w.value  # as displayed (rounded by the spin box)
        self._preset_values = values
        self._auto_burn_in = None

    def _on_mask_changed(self, *_: Any) -> None:
        """A mask on or off changes what the preset does (SURE denoising, or filling)."""
        if (self.mask_layer.value is not None) != getattr(self, "_masked", False):
            self._apply_preset()

    def _on_steps_changed(self, steps: int) -> None:
        """SGLD: scale an untouched burn-in with the steps, so that it stays below them."""
        if self.method.value != "sgld" or not self._preset_values:
            return
        if self.burn_in.value not in (self._preset_values.get("burn_in"), self._auto_burn_in):
            return  # the user chose a burn-in: keep it
        try:  # the engine's own rule for a preset run with another length
            self._auto_burn_in = make_config("sgld", self.preset.value, steps=int(steps)).burn_in
        except ValueError:  # too few steps for any burn-in; the run reports it
            return
        self.burn_in.value = self._auto_burn_in

    def _on_show_advanced(self, value: bool) -> None:
        self.advanced.visible = bool(value)

    def _update_history_enabled(self, *_: Any) -> None:
        single = self.mode.value == "whole"
        self.keep_history.enabled = single
        self.keep_history.native.setToolTip(
            "Also keep every snapshot in a '... history' layer, to step through the "
            "optimisation with the slider." if single else
            "History is kept for whole-image runs only.")

    # -- options --------------------------------------------------------------------------
    def _seed(self) -> int | None:
        text = str(self.seed.value).strip()
        if not text or text.lower() == "random":
            return None
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"seed: expected a whole number or empty (random), got {text!r}") \
                from None

    def run_options(self) -> dict[str, Any]:
        """Keyword arguments for :func:`napari_dip.iterate` from the widget's fields
        (without the image, mask and channel axis)."""
        method = self.method.value
        opts: dict[str, Any] = dict(
            method=method, preset=self.preset.value, steps=int(self.steps.value),
            auto_stop=bool(self.auto_stop.value) if method == "dip" else None,
            device=self.device.value, seed=self._seed(),
        )
        for wname, fname in ADVANCED_FIELDS.items():
            if (method != "sgld" and wname in SGLD_ONLY) or (method == "sgld" and
                                                             wname in DIP_ONLY):
                continue
            value = getattr(self, wname).value
            if value != self._preset_values.get(wname):
                opts[fname] = value
        if self.time_limit.value > 0:  # not a preset's setting: kept when the preset changes
            opts["time_limit"] = float(self.time_limit.value)
        if self.noise_model.value != "auto":
            opts["noise_model"] = self.noise_model.value
        if self.noise_std.value > 0:  # not a preset's setting: kept when the preset changes
            opts["noise_std"] = float(self.noise_std.value)
        if self.mask_layer.value is not None:
            opts["keep_known"] = bool(self.keep_known.value)
        return opts

    def scheduler(self) -> str | None:
        """The text of the Dask scheduler field, or None when it is empty (run here)."""
        text = str(self.dask_scheduler.value).strip()
        return text or None

    # -- run / stop -----------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._run is not None

    def run(self, *_: Any) -> Any:
        """Start a run with the current settings; returns the worker (or None)."""
        if self._run is not None:
            show_warning(f"A run on '{self._run.source.name}' is still going: press Stop "
                         "first, or wait for it to end.")
            return None
        source = self.image_layer.value
        if source is None:
            show_error("Deep Image Prior: choose an image layer first.")
            return None
        mask_layer = self.mask_layer.value
        try:
            if getattr(source, "multiscale", False):
                raise ValueError("multiscale (pyramid) layers are not supported; add the "
                                 "full-resolution level as a layer of its own.")
            opts = self.run_options()
            opts["seed"] = resolve_seed(opts["seed"])  # one seed for every frame, reported
            channel_axis = -1 if source.rgb else self.channels.value
            data = source.data
            plan = plan_frames(tuple(np.shape(data)), channel_axis, self.mode.value)
            scheduler = self.scheduler()
            # a cluster runs the pieces of a stack; a whole image stays here (live snapshots)
            spec = parse_scheduler(scheduler) if scheduler and plan.lead_axes else None
            mask = None
            if mask_layer is not None:
                mask = np.asarray(mask_layer.data) != 0  # a private copy
                mask_for_frame(mask, tuple(np.shape(data)), plan, 0)  # checks the shape
            finish_event = threading.Event()
            if spec is None:  # pieces on a cluster cannot be finished early
                opts["finish"] = finish_event.is_set
            request = RunRequest(data=data, mask=mask, plan=plan, options=opts)
            if len(plan) > 1:  # one noise model for every frame, decided once
                opts["noise_model"] = noise_model_for_frames(
                    _Pieces(request), masks=None if mask is None else _Pieces(request, True),
                    channel_axis=plan.frame_channel_axis, **opts)
                if mask is None:  # one R2R strength too (a strength given stays)
                    alpha = r2r_alpha_for_frames(_Pieces(request),
                                                 channel_axis=plan.frame_channel_axis, **opts)
                    if alpha is not None:
                        opts["r2r_alpha"] = alpha
            first = request.engine(0)  # checks every argument now
            if spec is not None:  # the tasks make their own engines
                first.close()
        except Exception as exc:  # noqa: BLE001 - bad settings or data: tell the user
            if not isinstance(exc, (ValueError, TypeError)):
                log.exception("napari-dip: could not start the run")
            show_error(f"Deep Image Prior: {exc}")
            self._set_status(f"Not started: {exc}")
            return None

        method = opts["method"]
        n = len(plan)
        max_steps = int(opts["steps"])
        unit = _unit(self.mode.value)
        pbar = progress(total=n if spec is not None else max_steps * n,
                        desc=f"{_layers.METHOD_TAGS[method]} on '{source.name}'")
        run_layers = _layers.RunLayers(self._viewer, source, method=method,
                                       frames=plan.indices,
                                       keep_history=bool(self.keep_history.value))
        self._run = run = _Run(
            worker=None, steps=None, first=first, request=request, layers=run_layers,
            source=source, mask=mask_layer, method=method, mode=self.mode.value, pbar=pbar,
            seed=opts["seed"], finish_event=finish_event,
        )
        if spec is None:
            run.steps = restore_frames(request, first)
        else:
            run.dask = _DaskRun(requested=str(scheduler))

            def should_stop() -> bool:  # polled in the worker thread
                return run.dask.stop.is_set() or bool(
                    getattr(run.worker, "abort_requested", False))

            run.steps = restore_frames_dask(request, spec, should_stop=should_stop)
        self.stop_button.enabled = True
        self.finish_button.enabled = spec is None
        text = (f"Starting {_layers.METHOD_TAGS[method]} on '{source.name}'"
                + (f" ({n} {unit}s)" if n > 1 else ""))
        if spec is not None:
            text += f" on the Dask scheduler '{scheduler}'"
        self._set_status(text + " \u2026" + (
            f"\n{SCHEDULER_FIELD}: used for frames and slices only; this run goes on here."
            if scheduler and spec is None else ""))
        run.worker = start_worker(run.steps, connect={
            "yielded": self._on_yielded,
            "returned": self._on_returned,
            "errored": self._on_errored,
            "finished": self._on_finished,
        })
        self.last_worker = run.worker
        return run.worker

    def finish(self, *_: Any) -> None:
        """End the fit at the next snapshot and let the engine finish the result (the
        stop rule's estimate, the gap fill and the second stage); frames not started yet
        are not restored."""
        run = self._run
        if run is None or run.finished or run.dask is not None or run.stop_requested:
            return
        run.finish_event.set()
        self.finish_button.enabled = False
        self._set_status("Finishing: the fit ends at the next snapshot, then the result is "
                         "completed \u2026")

    def stop(self, *_: Any) -> None:
        """Stop the run after the current snapshot; the result keeps the latest estimate."""
        run = self._run
        if run is None or run.finished:
            return
        run.stop_requested = True
        self.stop_button.enabled = False
        self.finish_button.enabled = False
        if run.dask is not None:
            # the worker thread cancels the tasks and closes its cluster itself
            run.dask.stop.set()
            self._set_status(f"Stopping: cancelling the {_unit(run.mode)}s not done yet "
                             "\u2026")
            return
        run.worker.quit()
        self._set_status("Stopping after the current snapshot \u2026")

    def _cancel(self, reason: str) -> None:
        """Abandon the run (its input went away): stop the worker, touch no layer."""
        run = self._run
        if run is None or run.finished:
            return
        run.cancelled = reason
        if run.dask is not None:  # the worker thread cancels the tasks, closes its cluster
            run.dask.stop.set()
            return
        run.worker.quit()

    def _on_destroyed(self, *_: Any) -> None:
        self._cancel("the widget was closed")
        try:
            self._viewer.layers.events.removed.disconnect(self._on_layer_removed)
            self._viewer.layers.selection.events.active.disconnect(self._on_active_layer)
        except Exception:  # noqa: BLE001 - the viewer may be half torn down already
            pass

    def _on_layer_removed(self, event: Any) -> None:
        run = self._run
        if run is None:
            return
        layer = event.value
        if layer == run.source or (run.mask is not None and layer == run.mask):
            what = "input" if layer == run.source else "mask"
            self._cancel(f"the {what} layer '{layer.name}' was removed")
            self._set_status(f"Stopping: the {what} layer was removed \u2026")

    # -- worker slots (main thread) --------------------------------------------------------
    def _on_yielded(self, update: Update) -> None:
        run = self._run
        if run is None or run.cancelled or run.finished:
            return
        run.pending.append(update)
        self._drain(run)

    def _drain(self, run: _Run) -> None:
        if run.draining:
            return
        run.draining = True
        try:
            while run.pending and not run.cancelled:
                item = run.pending.popleft()
                if isinstance(item, ClusterStatus):
                    self._show_cluster(run, item)
                else:
                    self._show(run, item)
        finally:
            run.draining = False
        if run.finish_pending:
            self._finish(run)

    def _show(self, run: _Run, update: Update) -> None:
        snap = update.snapshot
        run.last = update
        try:
            run.layers.show(update.frame, snap.image, snap.variance, snap.step)
        except Exception as exc:  # noqa: BLE001 - a layer problem must not kill the viewer
            log.exception("napari-dip: could not update the layers")
            self._cancel(f"the layers could not be updated ({exc})")
            show_error(f"Deep Image Prior: could not update the layers: {exc}")
            return
        run.frames[update.frame] = self._frame_record(run, update)
        self._store_metadata(run)
        if run.dask is not None:
            self._set_status(self._dask_progress_text(run, update))
            if run.pbar is not None:
                run.pbar.set_description(
                    f"{_layers.METHOD_TAGS[run.method]} on '{run.source.name}' (Dask)")
                run.pbar.update(max(0, run.frames_done - run.pbar.n))
            return
        self._set_status(self._progress_text(run, update))
        if run.pbar is not None:
            done = update.frame * snap.max_steps + (snap.max_steps if snap.done else snap.step)
            run.pbar.set_description(
                f"{_layers.METHOD_TAGS[run.method]} on '{run.source.name}': loss {snap.loss:.2e}")
            run.pbar.update(max(0, done - run.pbar.n))

    def _show_cluster(self, run: _Run, item: ClusterStatus) -> None:
        if item.description is None:
            self._set_status(item.text)
            return
        run.dask.description, run.dask.address = item.description, item.address
        run.dask.connected = time.perf_counter()
        n, unit = run.n_frames, _unit(run.mode)
        self._set_status(f"{_layers.METHOD_TAGS[run.method]} on '{run.source.name}' on "
                         f"{item.description}\n{run.frames_done}/{n} {unit}s done \u2026")

    def _on_returned(self, value: Any) -> None:
        if self._run is not None and isinstance(value, Failure):
            self._run.failure = value

    def _on_errored(self, exc: BaseException) -> None:
        if self._run is not None and self._run.failure is None:
            self._run.failure = Failure(-1, exc)

    def _on_finished(self) -> None:
        run = self._run
        if run is None:
            return
        run.finish_pending = True
        if not run.draining:
            self._finish(run)

    def _finish(self, run: _Run) -> None:
        if run.finished:
            return
        run.finished = True
        if self._run is run:
            self._run = None
        # free the engine (and device memory) whatever happened; a no-op when it ended
        for gen in (run.steps, run.first):
            try:
                gen.close()
            except Exception:  # noqa: BLE001
                log.exception("napari-dip: error while closing the run")
        if run.pbar is not None:
            run.pbar.close()
        elapsed = time.perf_counter() - run.started
        last = run.last
        # Stop pressed after the final snapshot of the last piece: the run is complete
        complete = last is not None and last.snapshot.done and last.frame == last.n_frames - 1
        unit = _unit(run.mode)
        if run.dask is not None:  # pieces finish in any order
            complete = run.frames_done == run.n_frames
            done_text = f"{run.frames_done} of {run.n_frames} {unit}s restored"

        if run.cancelled:
            text = f"Stopped: {run.cancelled}."
            if last is not None:  # the layers keep the latest estimate, marked as such
                kept = "latest estimate" if run.dask is None else done_text
                try:
                    self._finalise_stopped(run, f"stopped: {run.cancelled}; {kept}")
                except Exception:  # noqa: BLE001 - the viewer may be closing
                    log.debug("napari-dip: could not mark the layers", exc_info=True)
        elif run.failure is not None:
            msg = run.failure.message
            if run.dask is not None and run.failure.scope == "frame":
                msg = f"{unit} {run.failure.frame + 1}/{run.n_frames} on the cluster: {msg}"
            if run.failure.traceback:
                log.error("napari-dip run failed:\n%s", run.failure.traceback)
            if run.failure.frame >= 0:  # else napari has already shown the exception
                show_error(f"Deep Image Prior failed on '{run.source.name}': {msg}")
            text = f"Failed: {msg}"
            if run.layers.layers:  # no half-made result: the layers go back to before the run
                try:
                    run.layers.discard()
                    text += "\nThe layers are as they were before the run."
                except Exception:  # noqa: BLE001 - a layer problem must not kill the viewer
                    log.exception("napari-dip: could not remove the partial result")
                    self._finalise_stopped(run, f"failed: {msg}")
        elif run.stop_requested and not complete and run.dask is not None:
            if last is None:
                text = f"Stopped before any {unit} was done: no result."
            else:
                self._finalise_stopped(
                    run, f"stopped by the user with {done_text}; the others are empty")
                text = (f"Stopped after {format_seconds(elapsed)}: {done_text} in "
                        f"'{run.layers.result.name}'; the others were cancelled and are "
                        f"empty.")
        elif run.finish_event.is_set() and not run.stop_requested and not complete and \
                last is not None:  # the piece in progress finished, the rest not started
            done = sum(1 for r in run.frames.values() if r.get("complete"))
            unit = _unit(run.mode)
            self._finalise_stopped(
                run, f"finished early by the user: {done} of {run.n_frames} {unit}s "
                     f"restored; the others are empty")
            text = (f"Finished early after {format_seconds(elapsed)}: {done} of "
                    f"{run.n_frames} {unit}s restored in '{run.layers.result.name}'; the "
                    f"others are empty.")
        elif run.stop_requested and not complete:
            if last is None:
                text = "Stopped before the first snapshot: no result."
            else:
                snap = last.snapshot
                where = (f" in {_unit(run.mode)} {last.frame + 1}/{last.n_frames}"
                         if last.n_frames > 1 else "")
                self._finalise_stopped(
                    run, f"stopped by the user at step {snap.step}{where}; latest estimate")
                text = (f"Stopped at step {snap.step}{where} after {format_seconds(elapsed)}; "
                        f"'{run.layers.result.name}' holds the latest estimate.")
        elif last is not None:
            snap = last.snapshot
            total = sum(r["steps"] for r in run.frames.values())
            pieces = f" in {last.n_frames} {_unit(run.mode)}s" if last.n_frames > 1 else ""
            reason = snap.stop_reason if last.n_frames == 1 else \
                f"all {last.n_frames} {_unit(run.mode)}s restored"
            where = snap.info.device if run.dask is None else run.dask.description
            text = (f"Done in {format_seconds(elapsed)}: {total} steps{pieces} on "
                    f"{where}, seed {snap.info.seed}.\n{_sentence(reason)}")
            stabilised = snap.info.noise
            if stabilised and stabilised.get("model") == "poisson-gaussian":
                text += (f"\nPhoton counts: variance-stabilised (gain "
                         f"{stabilised['gain']:.3g}, read noise {stabilised['sigma']:.3g}, "
                         f"offset {stabilised['offset']:.4g}"
                         f"{'; estimated from the image' if stabilised.get('estimated') else ''}).")
            level = snap.info.noise_std  # None on stabilised data and where tiles read theirs
            if level is not None and last.n_frames == 1:
                text += (f"\nNoise std {level:.3g} (given)." if snap.info.config.noise_std > 0
                         else f"\nNoise std {level:.3g}, read from the image: where you know "
                              f"it, set 'noise std' (advanced).")
        else:
            text = "Finished without a result."
        self._set_status(text)
        try:
            self.stop_button.enabled = False
            self.finish_button.enabled = False
        except RuntimeError:  # the widget is gone (viewer closed)
            pass

    # -- helpers --------------------------------------------------------------------------
    @staticmethod
    def _frame_record(run: _Run, update: Update) -> dict[str, Any]:
        snap = update.snapshot
        rec: dict[str, Any] = {
            "steps": int(snap.step), "stop_reason": snap.stop_reason,
            "best_step": snap.best_step, "elapsed": float(snap.elapsed),
            "seed": snap.info.seed, "complete": bool(snap.done),
            "noise_std": snap.info.noise_std,
        }
        if snap.samples:
            rec["samples"] = int(snap.samples)
        if update.n_frames > 1:
            rec["position"] = list(run.request.plan.positions[update.frame])
        if update.worker is not None:
            rec["worker"] = update.worker
        return rec

    def _finalise_stopped(self, run: _Run, reason: str) -> None:
        last = run.last
        if last is None or not run.layers.layers:
            return
        rec = run.frames.setdefault(last.frame, self._frame_record(run, last))
        if not rec.get("stop_reason"):
            rec["stop_reason"] = reason
        self._store_metadata(run, overall_reason=reason)

    def _store_metadata(self, run: _Run, overall_reason: str | None = None) -> None:
        last = run.last
        if last is None:
            return
        snap = last.snapshot
        n = last.n_frames
        if n == 1:
            rec = run.frames.get(0, {})
            md = run_metadata(snap.info, steps=rec.get("steps", snap.step),
                              stop_reason=overall_reason or rec.get("stop_reason"),
                              best_step=rec.get("best_step"), elapsed=rec.get("elapsed"))
            if rec.get("samples"):
                md["samples"] = rec["samples"]
        else:
            frames = [dict(run.frames[k], index=k) for k in sorted(run.frames)]
            done = sum(1 for r in frames if r.get("complete"))
            reason = overall_reason or (
                f"all {n} {_unit(run.mode)}s restored" if done == n else None)
            md = run_metadata(
                snap.info, steps=sum(r["steps"] for r in frames), stop_reason=reason,
                elapsed=time.perf_counter() - run.started, frames=frames,
                frames_done=done, n_frames=n,
                frame_axes=list(run.request.plan.lead_axes),
            )
            md["frame_shape"] = md["input_shape"]
            md["input_shape"] = list(run.request.shape)
            if not snap.info.config.noise_std > 0:  # each frame read its own: see "frames"
                md.pop("noise_std", None)
        md["versions"] = {**md["versions"], "napari": napari.__version__}
        md.update(
            source_layer=str(run.source.name),
            mask_layer=None if run.mask is None else str(run.mask.name),
            mode=run.mode,
        )
        if run.dask is not None:
            md["cluster"] = {
                "requested": run.dask.requested, "scheduler": run.dask.address,
                "description": run.dask.description, "tasks": n,
                "workers": sorted({r["worker"] for r in run.frames.values()
                                   if r.get("worker")}),
            }
        std_md = dict(md, quantity="posterior standard deviation (input units)"
                      + (", RGB channels pooled" if run.layers.rgb else ""))
        hist_md = dict(md, quantity="snapshots along the first axis")
        run.layers.set_metadata(md, std_md, hist_md)

    @staticmethod
    def _progress_text(run: _Run, update: Update) -> str:
        snap = update.snapshot
        elapsed = time.perf_counter() - run.started
        per_step = snap.elapsed / max(snap.step, 1)
        this = per_step * (snap.max_steps - snap.step)  # the piece in progress
        each = per_step * snap.max_steps  # each piece not started
        limit = snap.info.config.time_limit
        bound = "at most " if (snap.info.config.auto_stop and run.method == "dip") else "about "
        if limit > 0:  # every fit ends at the limit
            each = min(each, limit)
            if limit < snap.elapsed + this:  # and finishing takes a few seconds more
                this = max(limit - snap.elapsed, 0.0)
                bound = "about "
        left = format_seconds(this + (update.n_frames - update.frame - 1) * each)
        piece = (f"{_unit(run.mode)} {update.frame + 1}/{update.n_frames} \u00b7 "
                 if update.n_frames > 1 else "")
        extra = ""
        if run.method == "sgld":
            extra = f" \u00b7 {snap.samples} samples" if snap.samples else " \u00b7 burn-in"
        if run.finish_event.is_set():
            extra += " \u00b7 finishing"
        return (f"{_layers.METHOD_TAGS[run.method]} on '{run.source.name}' "
                f"({snap.info.device})\n"
                f"{piece}step {snap.step}/{snap.max_steps} \u00b7 loss {snap.loss:.2e}{extra}\n"
                f"{format_seconds(elapsed)} elapsed \u00b7 {bound}{left} left")

    @staticmethod
    def _dask_progress_text(run: _Run, update: Update) -> str:
        n, done, unit = run.n_frames, run.frames_done, _unit(run.mode)
        now = time.perf_counter()
        elapsed = now - run.started
        working = now - (run.dask.connected or run.started)  # not counting the start-up
        left = format_seconds(working / max(done, 1) * (n - done))
        snap = update.snapshot
        return (f"{_layers.METHOD_TAGS[run.method]} on '{run.source.name}' on "
                f"{run.dask.description}\n"
                f"{done}/{n} {unit}s done \u00b7 last: {unit} {update.frame + 1} "
                f"({snap.step} steps, loss {snap.loss:.2e})\n"
                f"{format_seconds(elapsed)} elapsed \u00b7 about {left} left")

    def _set_status(self, text: str) -> None:
        try:
            self.status.value = text
        except RuntimeError:  # the widget is gone (viewer closed)
            pass


def _fill_width(label: Any) -> None:
    """Let a word-wrapped label use the whole width of the dock."""
    from qtpy.QtWidgets import QSizePolicy

    label.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
    label.setMinimumWidth(50)


def _digits_validator(parent: Any) -> Any:
    from qtpy.QtCore import QRegularExpression
    from qtpy.QtGui import QRegularExpressionValidator

    return QRegularExpressionValidator(QRegularExpression(r"\d{0,18}"), parent)


def _later(func: Any) -> None:
    """Call ``func`` once the Qt event loop is back (after the widget is docked)."""
    from qtpy.QtCore import QTimer

    QTimer.singleShot(0, func)


def _row(label: str, *widgets: Any) -> Container:
    """Widgets side by side on one labelled row of a form."""
    row = Container(name=f"{label}_row", label=label, layout="horizontal", labels=False,
                    widgets=list(widgets))
    row.native.layout().setContentsMargins(0, 0, 0, 0)
    return row


def _unit(mode: str) -> str:
    return "slice" if mode == "slices" else "frame"


def _sentence(text: str | None) -> str:
    text = (text or "").strip()
    if not text:
        return ""
    text = text[0].upper() + text[1:]
    return text if text.endswith(".") else text + "."


def _align_top_left() -> Any:
    from qtpy.QtCore import Qt

    return Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop


__all__ = ["DIPWidget", "format_seconds"]
