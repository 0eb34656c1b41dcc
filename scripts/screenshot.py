"""Make docs/images/widget.png: the Deep Image Prior widget after a short run on a sample.

Run it with a display, or headless with::

    xvfb-run -a python scripts/screenshot.py

It opens the noisy camera sample, docks the widget, runs a short SGLD-DIP restoration
(CPU is fine, about a minute or two) and saves a screenshot of the whole window with the
noisy input, the restoration and its uncertainty side by side.
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
    parser.add_argument("--method", choices=("dip", "sgld"), default="sgld")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--size", type=int, nargs=2, default=(1500, 950),
                        metavar=("WIDTH", "HEIGHT"), help="window size in pixels")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait")
    args = parser.parse_args(argv)

    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(title="napari-dip", show=True)
    viewer.window.resize(*args.size)
    viewer.open_sample("napari-dip", "noisy_image")
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-dip", "Deep Image Prior")

    widget.method.value = args.method
    widget.preset.value = "fast"
    widget.steps.value = args.steps
    widget.snapshot_every.value = 25
    if args.method == "sgld":
        widget.burn_in.value = args.steps // 2
        widget.thinning.value = 5
    widget.seed.value = "0"
    widget.show_advanced.value = True

    app = QApplication.instance()
    worker = widget.run()
    if worker is None:
        print("the run did not start; see the notification", file=sys.stderr)
        return 1
    t0 = time.perf_counter()
    while widget.running:
        app.processEvents()
        time.sleep(0.02)
        if time.perf_counter() - t0 > args.timeout:
            widget.stop()
            print("timed out; stopping the run", file=sys.stderr)
    for _ in range(20):  # let the last updates and the final status paint
        app.processEvents()
        time.sleep(0.02)

    viewer.grid.enabled = True
    viewer.reset_view()
    for _ in range(10):
        app.processEvents()
        time.sleep(0.02)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(args.out), canvas_only=False, flash=False)
    print(f"saved {args.out} after {time.perf_counter() - t0:.0f} s: {widget.status.value}")
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
