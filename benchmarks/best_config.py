"""Print the best configuration of a ``bench_cpu_target.py`` JSON as bench_quality options.

    python benchmarks/best_config.py sweep.json        # -> "balanced loss=sure,width=64,..."

The best is the configuration with the highest mean PSNR at the budget over the images that
every configuration ran on. Used by gpu_sure.sh to
carry the winner of the time-budget sweep into the quality benchmark.
"""

from __future__ import annotations

import json
import sys

import numpy as np


def best(rows):
    by_name = {}
    for r in rows:
        if not r["name"].startswith("BM3D"):
            by_name.setdefault(r["name"], {})[r["image"]] = r
    if not by_name:
        raise SystemExit("best_config: no configuration in the file")
    # the images every configuration ran on (a sweep cut short misses the last ones)
    images = set.intersection(*(set(rs) for rs in by_name.values()))
    if not images:
        raise SystemExit("best_config: no image that every configuration ran on")
    name = max(by_name, key=lambda n: np.mean([by_name[n][i]["psnr_budget"] for i in images]))
    r = by_name[name][next(iter(images))]
    return name, r["preset"], r["options"]


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0]) as fh:
        rows = json.load(fh)["rows"]
    name, preset, options = best(rows)
    print(name, file=sys.stderr)
    print(preset, ",".join(f"{k}={v}" for k, v in options.items()))


if __name__ == "__main__":
    main()
