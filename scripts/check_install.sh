#!/usr/bin/env bash
# Build napari-dip's sdist and wheel, then install the wheel into a fresh virtual
# environment the way napari's plugin manager does, and check that it works there.
#
# Usage:  bash scripts/check_install.sh
#
# Settings (environment variables):
#   PYTHON              interpreter that builds and creates the venv (default: python3)
#   CHECK_INSTALL_DIR   work folder (default: a new folder under /tmp)
#   KEEP_WORKDIR=1      keep the work folder (venv, logs, dist) at the end
#   TORCH_SPEC          torch requirement installed first (default: torch==2.13.0, the
#                       CPU build; an open range would pull a multi-GB CUDA build)
#   NAPARI_SPEC         napari requirement (default: napari[pyqt6])
#
# Needs: network access to PyPI, xvfb-run (Debian/Ubuntu package xvfb) and the usual
# Qt/OpenGL system libraries (see .ci/run). Takes several minutes on two cores.
# Exit status: 0 when every check passed, 1 otherwise.

set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
NAPARI_SPEC="${NAPARI_SPEC:-napari[pyqt6]}"
DIST_NAME="napari-dip"
MODULE="napari_dip"
QT_BINDINGS_RE='^(pyqt5|pyqt6|pyside2|pyside6)=='

if [ -n "${CHECK_INSTALL_DIR:-}" ]; then
    WORK="$CHECK_INSTALL_DIR"
    mkdir -p "$WORK"
else
    WORK="$(mktemp -d /tmp/napari-dip-check.XXXXXX)"
fi
WORK="$(cd "$WORK" && pwd)"
LOGS="$WORK/logs"
DIST="$WORK/dist"
VENV="$WORK/venv"
rm -rf "$LOGS" "$DIST" "$VENV"
mkdir -p "$LOGS" "$DIST"

# Expected version, read from the source without importing the package.
EXPECTED_VERSION="$(sed -n 's/^__version__ *= *["'"'"']\([^"'"'"']*\)["'"'"'].*/\1/p' \
    "$ROOT/src/$MODULE/_version.py")"

# Keep napari's settings and caches of this run out of the user's home folder.
export NAPARI_CONFIG="$WORK/napari-settings.yaml"
export XDG_CACHE_HOME="$WORK/cache"
export XDG_CONFIG_HOME="$WORK/config"
export XDG_DATA_HOME="$WORK/data"
# No stray imports from the source tree or a user site.
unset PYTHONPATH
export PYTHONNOUSERSITE=1
export PIP_DISABLE_PIP_VERSION_CHECK=1

NAMES=()
RESULTS=()
TIMES=()
FAILED=0
STEP_NO=0

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }

# record NAME STATUS SECONDS
record() {
    NAMES+=("$1")
    RESULTS+=("$2")
    TIMES+=("$3")
    [ "$2" = PASS ] || FAILED=1
}

# step NAME FUNCTION [ARGS...]: run FUNCTION with its output in a log file; PASS when it
# returns 0. On failure the end of the log is printed.
step() {
    local name="$1"
    shift
    STEP_NO=$((STEP_NO + 1))
    local log
    log="$LOGS/$(printf '%02d' "$STEP_NO")-$(echo "$name" | tr -c 'A-Za-z0-9\n' '_' | cut -c1-50).log"
    printf '==> %-58s ' "$name"
    local t0 t1 rc
    t0="$(now)"
    "$@" >"$log" 2>&1
    rc=$?
    t1="$(now)"
    local secs
    secs="$(elapsed "$t0" "$t1")"
    if [ "$rc" -eq 0 ]; then
        printf 'PASS  (%ss)\n' "$secs"
        record "$name" PASS "$secs"
    else
        printf 'FAIL  (%ss, exit %s)\n' "$secs" "$rc"
        record "$name" FAIL "$secs"
        echo "    --- last lines of $log ---"
        tail -n 25 "$log" | sed 's/^/    | /'
    fi
    return "$rc"
}

skip() {
    printf '==> %-58s SKIP  (%s)\n' "$1" "$2"
    record "$1" SKIP 0
}

# ---------------------------------------------------------------------------- checks

build_dists() {
    cd "$ROOT" || return 1
    "$PY" -m build --version || "$PY" -m pip install build || return 1
    # sdist first, then the wheel from the sdist (python -m build's default): the wheel
    # is built from what the sdist ships.
    "$PY" -m build --outdir "$DIST" . || return 1
    ls -l "$DIST"
}

twine_check() {
    "$PY" -m twine --version >/dev/null 2>&1 || "$PY" -m pip install twine || return 1
    "$PY" -m twine check --strict "$DIST"/*
}

check_wheel_contents() {
    "$PY" - "$WHEEL" "$SDIST" "$EXPECTED_VERSION" <<'PYEOF'
import sys
import tarfile
import zipfile

wheel, sdist, version = sys.argv[1:4]
problems = []
with zipfile.ZipFile(wheel) as zf:
    names = zf.namelist()
    print(f"{wheel}: {len(names)} files")
    for n in names:
        print("   ", n)
    tops = sorted({n.split("/", 1)[0] for n in names})
    print("top-level entries:", tops)
    for bad in ("tests", "benchmarks", "docs", "scripts"):
        if any(n.split("/")[0] == bad or f"/{bad}/" in f"/{n}" for n in names):
            problems.append(f"the wheel contains a {bad}/ folder")
    allowed = {"napari_dip", f"napari_dip-{version}.dist-info"}
    if set(tops) - allowed:
        problems.append(f"unexpected top-level entries: {sorted(set(tops) - allowed)}")
    if "napari_dip/napari.yaml" not in names:
        problems.append("napari_dip/napari.yaml is missing")
    if any(n.endswith((".pyc", ".pyo")) or "__pycache__" in n for n in names):
        problems.append("the wheel contains compiled files or __pycache__")
    info = f"napari_dip-{version}.dist-info"
    try:
        eps = zf.read(f"{info}/entry_points.txt").decode()
    except KeyError:
        eps = ""
        problems.append("entry_points.txt is missing")
    print("entry_points.txt:\n" + eps)
    if "[napari.manifest]" not in eps or "napari-dip = napari_dip:napari.yaml" not in eps:
        problems.append("no napari.manifest entry point 'napari-dip = napari_dip:napari.yaml'")
    if "napari-dip = napari_dip.cli:main" not in eps:
        problems.append("no console script napari-dip")
    meta = zf.read(f"{info}/METADATA").decode()
    if f"\nVersion: {version}\n" not in meta:
        problems.append(f"METADATA does not say Version: {version}")
    if "Classifier: Framework :: napari" not in meta:
        problems.append("METADATA lacks the classifier 'Framework :: napari'")
    for req in meta.splitlines():
        if req.startswith("Requires-Dist:") and "extra ==" not in req:
            low = req.lower()
            if any(q in low for q in ("pyqt5", "pyqt6", "pyside2", "pyside6", "napari[")):
                problems.append(f"a Qt binding or napari[...] in the base requirements: {req}")

with tarfile.open(sdist) as tf:
    snames = tf.getnames()
print(f"{sdist}: {len(snames)} entries")
root = snames[0].split("/")[0]
for need in ("pyproject.toml", "README.md", "LICENSE", "src/napari_dip/napari.yaml",
             "src/napari_dip/_version.py"):
    if f"{root}/{need}" not in snames:
        problems.append(f"the sdist lacks {need}")

for p in problems:
    print("PROBLEM:", p)
sys.exit(1 if problems else 0)
PYEOF
}

make_venv() {
    "$PY" -m venv "$VENV" || return 1
    "$VPY" -m pip --version
}

install_torch() {
    "$VPY" -m pip install "$TORCH_SPEC" || return 1
    "$VPY" -c "import torch; print('torch', torch.__version__)"
}

install_napari() {
    "$VPY" -m pip install "$NAPARI_SPEC" || return 1
    "$VPY" -c "import napari; print('napari', napari.__version__)"
}

# The plugin manager's pip installer (napari-plugin-manager, PipInstallerTool) runs
#   <python> -m pip install -c <constraints file: napari==<running version>> <packages>
# with PIP_USER_AGENT_USER_DATA set; a dropped file or a path is passed as the package.
plugin_manager_install() {
    "$VPY" -m pip list --format=freeze | sort -f >"$WORK/pip-before.txt" || return 1
    local napari_version
    napari_version="$("$VPY" -c 'import napari; print(napari.__version__)')" || return 1
    printf 'napari==%s\n' "$napari_version" >"$WORK/napari-constraints.txt"
    echo "+ PIP_USER_AGENT_USER_DATA=... $VPY -m pip install -c $WORK/napari-constraints.txt $WHEEL"
    PIP_USER_AGENT_USER_DATA='{"napari": "'"$napari_version"'", "check_install": true}' \
        "$VPY" -m pip install -c "$WORK/napari-constraints.txt" "$WHEEL" || return 1
    "$VPY" -m pip list --format=freeze | sort -f >"$WORK/pip-after.txt"
}

compare_pip_lists() {
    "$PY" - "$WORK/pip-before.txt" "$WORK/pip-after.txt" <<'PYEOF'
import re
import sys


def read(path):
    out = {}
    for line in open(path):
        line = line.strip()
        if "==" in line:
            name, ver = line.split("==", 1)
            out[re.sub(r"[-_.]+", "-", name).lower()] = ver
    return out


before, after = read(sys.argv[1]), read(sys.argv[2])
added = sorted(set(after) - set(before))
removed = sorted(set(before) - set(after))
changed = sorted(n for n in set(before) & set(after) if before[n] != after[n])
print("added:  ", ", ".join(f"{n}=={after[n]}" for n in added) or "-")
print("removed:", ", ".join(removed) or "-")
print("changed:", ", ".join(f"{n} {before[n]} -> {after[n]}" for n in changed) or "-")
problems = []
qt = {"pyqt5", "pyqt6", "pyside2", "pyside6"}
for n in added:
    if n in qt or n.startswith(("pyqt5-", "pyside2-", "pyside6-", "shiboken")):
        problems.append(f"installing the plugin added the Qt package {n}")
bindings = sorted(qt & set(after))
print("Qt bindings after the install:", bindings)
if len(bindings) != 1:
    problems.append(f"expected exactly one Qt binding, found {bindings}")
for n in ("napari", "pyqt6", "pyqt6-qt6", "torch", "numpy"):
    if n in changed:
        problems.append(f"installing the plugin changed {n}: {before[n]} -> {after[n]}")
if removed:
    problems.append(f"installing the plugin removed {removed}")
if "napari-dip" not in added:
    problems.append("napari-dip is not in the pip list after the install")
for p in problems:
    print("PROBLEM:", p)
sys.exit(1 if problems else 0)
PYEOF
}

pip_check() {
    "$VPY" -m pip check
}

installed_from_wheel() {
    cd "$WORK" || return 1
    "$VPY" - "$EXPECTED_VERSION" <<'PYEOF'
import sys
from importlib.metadata import distribution

import napari_dip

version = sys.argv[1]
dist = distribution("napari-dip")
print("module:", napari_dip.__file__)
print("napari_dip.__version__:", napari_dip.__version__, " distribution:", dist.version)
ok = True
if "site-packages" not in napari_dip.__file__:
    print("PROBLEM: napari_dip is not imported from the venv's site-packages")
    ok = False
if not (napari_dip.__version__ == dist.version == version):
    print(f"PROBLEM: versions differ (expected {version})")
    ok = False
if (dist.read_text("direct_url.json") or "").find('"editable": true') >= 0:
    print("PROBLEM: an editable install")
    ok = False
sys.exit(0 if ok else 1)
PYEOF
}

npe2_list() {
    cd "$WORK" || return 1
    "$VENV/bin/npe2" list -f json --fields name,version,npe2 >"$WORK/npe2-list.json" || return 1
    cat "$WORK/npe2-list.json"
    "$VPY" - "$WORK/npe2-list.json" "$DIST_NAME" "$EXPECTED_VERSION" <<'PYEOF'
import json
import sys

path, name, version = sys.argv[1:4]
rows = json.loads(open(path).read())
found = [r for r in rows if r.get("name") == name]
if not found:
    sys.exit(f"PROBLEM: npe2 list does not show {name}")
row = found[0]
if row.get("version") != version or not row.get("npe2"):
    sys.exit(f"PROBLEM: npe2 list shows {row}, expected version {version}, npe2 true")
print(f"npe2 list: {row}")

# The same through the API that napari uses.
from npe2 import PluginManager

pm = PluginManager.instance()
pm.discover()
mf = pm.get_manifest(name)
print("manifest:", mf.name, mf.package_version, mf.display_name, mf.visibility)
if mf.package_version != version:
    sys.exit(f"PROBLEM: npe2 API reports version {mf.package_version}")
PYEOF
}

npe2_validate() {
    cd "$WORK" || return 1
    "$VENV/bin/npe2" validate "$DIST_NAME" || return 1
    # --imports imports every python_name of the manifest.
    "$VENV/bin/npe2" validate --imports "$DIST_NAME"
}

viewer_samples_widget() {
    cd "$WORK" || return 1
    command -v xvfb-run >/dev/null || { echo "PROBLEM: xvfb-run not found (apt-get install xvfb)"; return 1; }
    cat >"$WORK/viewer_check.py" <<'PYEOF'
"""Open every sample of napari-dip and dock every widget in a real (virtual-screen) viewer."""
import sys

import napari
from npe2 import PluginManager
from qtpy.QtWidgets import QApplication

NAME = "napari-dip"
pm = PluginManager.instance()
pm.discover()
mf = pm.get_manifest(NAME)
samples = list(mf.contributions.sample_data or [])
widgets = list(mf.contributions.widgets or [])
print(f"{NAME} {mf.package_version}: {len(samples)} samples, {len(widgets)} widgets")
problems = []
if not samples:
    problems.append("the manifest lists no sample data")
if not widgets:
    problems.append("the manifest lists no widgets")

viewer = napari.Viewer(show=True)
app = QApplication.instance()
print("Qt platform:", app.platformName())
for s in samples:
    before = len(viewer.layers)
    try:
        viewer.open_sample(NAME, s.key)
    except Exception as exc:  # noqa: BLE001
        problems.append(f"sample {s.key!r} failed: {exc!r}")
        continue
    app.processEvents()
    new = list(viewer.layers)[before:]
    if not new:
        problems.append(f"sample {s.key!r} added no layer")
    for layer in new:
        shape = getattr(layer.data, "shape", None)
        print(f"  sample {s.key!r}: {type(layer).__name__} {layer.name!r} "
              f"shape={shape} dtype={getattr(layer.data, 'dtype', None)}")
        if not shape or 0 in shape:
            problems.append(f"sample {s.key!r}: layer {layer.name!r} is empty")

for w in widgets:
    try:
        dock, widget = viewer.window.add_plugin_dock_widget(NAME, w.display_name)
    except Exception as exc:  # noqa: BLE001
        problems.append(f"widget {w.display_name!r} failed to dock: {exc!r}")
        continue
    app.processEvents()
    print(f"  widget {w.display_name!r}: {type(widget).__name__} in {type(dock).__name__}, "
          f"visible={dock.isVisible()}")
    if widget is None:
        problems.append(f"widget {w.display_name!r} is None")

viewer.close()
app.processEvents()
for p in problems:
    print("PROBLEM:", p)
print("viewer check:", "failed" if problems else "ok")
sys.exit(1 if problems else 0)
PYEOF
    timeout 300 xvfb-run -a -s "-screen 0 1280x1024x24" "$VPY" "$WORK/viewer_check.py"
}

cli_version() {
    cd "$WORK" || return 1
    local out
    out="$("$VENV/bin/napari-dip" --version 2>&1)" || { echo "$out"; return 1; }
    echo "napari-dip --version: $out"
    case "$out" in
        *"$EXPECTED_VERSION"*) ;;
        *) echo "PROBLEM: expected version $EXPECTED_VERSION"; return 1 ;;
    esac
    out="$("$VPY" -m napari_dip --version 2>&1)" || { echo "$out"; return 1; }
    echo "python -m napari_dip --version: $out"
}

cli_help() {
    cd "$WORK" || return 1
    "$VENV/bin/napari-dip" --help >"$WORK/cli-help.txt" 2>&1 || { cat "$WORK/cli-help.txt"; return 1; }
    cat "$WORK/cli-help.txt"
    grep -qi "usage" "$WORK/cli-help.txt" || { echo "PROBLEM: no usage line"; return 1; }
}

# ------------------------------------------------------------------------------- run

echo "napari-dip install check"
echo "  source:   $ROOT (version $EXPECTED_VERSION)"
echo "  work dir: $WORK"
echo "  python:   $("$PY" --version 2>&1) ($PY)"
echo "  torch:    $TORCH_SPEC   napari: $NAPARI_SPEC"
T_START="$(now)"

WHEEL=""
SDIST=""
VPY="$VENV/bin/python"

if step "build sdist and wheel (python -m build)" build_dists; then
    WHEEL="$(ls "$DIST"/*.whl 2>/dev/null | head -n1)"
    SDIST="$(ls "$DIST"/*.tar.gz 2>/dev/null | head -n1)"
fi

if [ -n "$WHEEL" ] && [ -n "$SDIST" ]; then
    step "twine check --strict" twine_check
    step "wheel contents (no tests/benchmarks, napari.yaml, entry points)" check_wheel_contents
else
    skip "twine check --strict" "no build"
    skip "wheel contents (no tests/benchmarks, napari.yaml, entry points)" "no build"
fi

INSTALLED=0
if [ -n "$WHEEL" ] \
    && step "fresh venv" make_venv \
    && step "install $TORCH_SPEC" install_torch \
    && step "install $NAPARI_SPEC" install_napari \
    && step "install the wheel as the plugin manager does (pip -c napari==...)" plugin_manager_install; then
    INSTALLED=1
fi

if [ "$INSTALLED" = 1 ]; then
    step "pip list before/after: no second Qt binding, napari kept" compare_pip_lists
    step "pip check" pip_check
    step "napari_dip imported from the wheel, versions agree" installed_from_wheel
    step "npe2 list finds $DIST_NAME $EXPECTED_VERSION" npe2_list
    step "npe2 validate $DIST_NAME (and --imports)" npe2_validate
    step "viewer under xvfb-run: open every sample, dock the widget" viewer_samples_widget
    step "napari-dip --version" cli_version
    step "napari-dip --help" cli_help
else
    for n in "pip list before/after: no second Qt binding, napari kept" "pip check" \
        "napari_dip imported from the wheel, versions agree" \
        "npe2 list finds $DIST_NAME $EXPECTED_VERSION" "npe2 validate $DIST_NAME (and --imports)" \
        "viewer under xvfb-run: open every sample, dock the widget" "napari-dip --version" \
        "napari-dip --help"; do
        skip "$n" "install failed"
    done
fi

T_END="$(now)"
echo
echo "================================ summary ================================"
for i in "${!NAMES[@]}"; do
    printf '%-4s  %7ss  %s\n' "${RESULTS[$i]}" "${TIMES[$i]}" "${NAMES[$i]}"
done
echo "-------------------------------------------------------------------------"
echo "total $(elapsed "$T_START" "$T_END")s; logs in $LOGS"
if [ "$FAILED" = 0 ]; then
    echo "RESULT: PASS"
else
    echo "RESULT: FAIL"
fi

if [ "${KEEP_WORKDIR:-0}" != 1 ] && [ -z "${CHECK_INSTALL_DIR:-}" ]; then
    if [ "$FAILED" = 0 ]; then
        rm -rf "$WORK"
    else
        echo "(work folder kept for inspection: $WORK)"
    fi
fi
exit "$FAILED"
