"""Make docs/images/widget.png: the Deep Image Prior widget after runs on a sample.

Run it with a display, or headless with::

    xvfb-run -a python scripts/screenshot.py

It opens the noisy camera sample (a 128 x 128 crop by default, so that it takes a few
minutes on a CPU), docks the widget, runs DIP and then SGLD-DIP with the "fast" preset,
and saves a screenshot of the whole window with the noisy input, both restorations and
SGLD's uncertainty in a grid. ``--quick`` makes a rough picture in seconds (for checking
the layout).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images" / "widget.png")
    parser.add_argument("--crop", type=int, default=128,
                        help="restore the central CROP x CROP pixels of the sample; 0 keeps "
                             "the whole 256 x 256 image")
    parser.add_argument("--quick", action="store_true",
                        help="a few dozen steps only: a rough picture for checking the layout")
    parser.add_argument("--threads", type=int, default=1,
                        help="PyTorch CPU threads (1 suits small machines and keeps the GUI "
                             "responsive; 0 keeps PyTorch's default)")
    parser.add_argument("--size", type=int, nargs=2, default=(1800, 960),
                        metavar=("WIDTH", "HEIGHT"), help="window size in pixels")
    parser.add_argument("--timeout", type=float, default=1200.0,
                        help="seconds to wait for each run before pressing Stop")
    args = parser.parse_args(argv)

    import napari
    import torch
    from qtpy.QtWidgets import QApplication

    if args.threads > 0:
        torch.set_num_threads(args.threads)

    # The window is shown only for the screenshot: painting it during the runs (software
    # OpenGL under Xvfb) would slow them down.
    viewer = napari.Viewer(title="napari-dip", show=False)
    viewer.open_sample("napari-dip", "noisy_image")
    source = viewer.layers["noisy camera"]
    if args.crop:
        h, w = source.data.shape
        c = min(args.crop, h, w)
        y0, x0 = max((h - c) // 2 - h // 8, 0), (w - c) // 2
        source.data = source.data[y0:y0 + c, x0:x0 + c].copy()
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-dip", "Deep Image Prior")
    app = QApplication.instance()

    def run(method: str) -> bool:
        widget.image_layer.value = source
        widget.method.value = method
        widget.preset.value = "fast"
        widget.seed.value = "0"
        if args.quick:
            widget.steps.value = 40
            widget.snapshot_every.value = 10
            if method == "sgld":
                widget.burn_in.value = 20
                widget.thinning.value = 2
        if widget.run() is None:
            print(f"the {method} run did not start; see the notification", file=sys.stderr)
            return False
        t0, last = time.perf_counter(), ""
        while widget.running:
            app.processEvents()
            time.sleep(0.02)
            line = str(widget.status.value).replace("\n", " | ")
            if line != last:
                print(line, flush=True)
                last = line
            if time.perf_counter() - t0 > args.timeout:
                widget.stop()
        print(str(widget.status.value).replace("\n", " | "), flush=True)
        return True

    if not (run("dip") and run("sgld")):
        return 1
    widget.show_advanced.value = True

    viewer.window.show()
    viewer.window.resize(*args.size)
    std = [x for x in viewer.layers if x.name.endswith("[SGLD std]")]
    if std:  # grid order: input, DIP, SGLD, uncertainty
        viewer.layers.move(viewer.layers.index(std[0]), len(viewer.layers))
    viewer.canvas.grid.shape = (2, 2)
    viewer.canvas.grid.spacing = 0.05
    viewer.canvas.grid.enabled = True
    viewer.layers.selection.active = viewer.layers[-1]
    viewer.reset_view()
    for _ in range(25):  # let everything paint
        app.processEvents()
        time.sleep(0.02)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(args.out), canvas_only=False, flash=False)
    print(f"saved {args.out}")
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
