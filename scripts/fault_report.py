"""Run the fault matrix and write docs/FAULTS.md.

The cases are declared in ``tests/test_fault_matrix.py`` (Python API, command line, the
package) and ``tests/napari/test_fault_matrix_widget.py`` (the napari widget): each is a
``Case(id, front, done, expect, ...)`` record, and the test that checks it is parametrized
with it, so that its test id is the case id. This script runs both files with pytest,
collects the outcome of every case and what its test observed (the ``observed`` property
that the tests record), and writes the table.

    python scripts/fault_report.py            # run the cases, write docs/FAULTS.md
    python scripts/fault_report.py --list     # only list the declared cases

The exit status is 0 when every case passed (or was skipped), 1 otherwise. The test
``test_report_lists_exactly_the_cases`` in tests/test_fault_matrix.py fails when
docs/FAULTS.md does not list exactly the declared cases, so the report cannot silently
fall behind the tests.
"""

from __future__ import annotations

import argparse
import ast
import datetime as _dt
import platform
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MATRIX_FILES = (ROOT / "tests" / "test_fault_matrix.py",
                ROOT / "tests" / "napari" / "test_fault_matrix_widget.py")
REPORT = ROOT / "docs" / "FAULTS.md"

_ID_CELL = re.compile(r"^\|\s*`([^`]+)`\s*\|")


@dataclass(frozen=True)
class CaseInfo:
    """A declared case, as read from a test file's source."""

    id: str
    front: str
    done: str
    expect: str
    file: str


def _literal(node: ast.AST, what: str, path: Path) -> str:
    if not (isinstance(node, ast.Constant) and isinstance(node.value, str)):
        raise ValueError(f"{path.name}:{node.lineno}: the {what} of a Case must be a plain "
                         f"string literal")
    return node.value


def declared_cases(path: Path) -> list[CaseInfo]:
    """The ``Case(id, front, done, expect, ...)`` records of a test file, in order (read
    from its source: nothing is imported, so napari is not needed to list them)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                and node.func.id == "Case" and len(node.args) >= 4):
            values = [_literal(arg, what, path) for arg, what in
                      zip(node.args[:4], ("id", "front end", "action", "expectation"))]
            found.append((node.lineno, node.col_offset, CaseInfo(*values, file=path.name)))
    return [info for *_, info in sorted(found, key=lambda t: (t[0], t[1]))]


def tested_case_ids(path: Path) -> set[str]:
    """The case ids that the tests of a file are parametrized with (``@cases(...)``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    ids = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and \
                node.func.id == "cases":
            ids.update(_literal(arg, "id", path) for arg in node.args)
    return ids


def listed_case_ids(markdown: str) -> list[str]:
    """The case ids in the first column of the report's table, in order."""
    return [m.group(1) for line in markdown.splitlines() if (m := _ID_CELL.match(line))]


class _Collector:
    """A pytest plugin that keeps the outcome and the observations of every case."""

    def __init__(self) -> None:
        self.results: dict[str, dict] = {}

    def pytest_runtest_logreport(self, report) -> None:
        m = re.search(r"\[([^\[\]]+)\]$", report.nodeid)
        if not m:
            return
        entry = self.results.setdefault(m.group(1), {"outcome": "passed", "detail": "",
                                                     "observed": "", "seconds": 0.0})
        entry["seconds"] += report.duration
        observed = dict(report.user_properties).get("observed")
        if observed:
            entry["observed"] = observed
        if report.failed:
            entry["outcome"] = "failed"
            crash = getattr(report.longrepr, "reprcrash", None)
            text = crash.message if crash is not None else str(report.longrepr)
            entry["detail"] = text.strip().splitlines()[0] if text.strip() else ""
        elif report.skipped and entry["outcome"] == "passed":
            entry["outcome"] = "skipped"
            reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else ""
            entry["detail"] = str(reason).removeprefix("Skipped: ")


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _versions() -> str:
    parts = [f"Python {platform.python_version()}"]
    for name, module in (("napari-dip", "napari_dip"), ("PyTorch", "torch"),
                         ("NumPy", "numpy"), ("napari", "napari")):
        try:
            parts.append(f"{name} {__import__(module).__version__}")
        except Exception:  # noqa: BLE001 - a missing library is reported as such
            parts.append(f"{name} (not installed)")
    try:
        import torch

        device = (f"CUDA: {torch.cuda.get_device_name(0)}" if torch.cuda.is_available()
                  else "no GPU")
    except Exception:  # noqa: BLE001
        device = "no GPU"
    return f"{', '.join(parts)}; {platform.system()} {platform.machine()}, " \
           f"{_cpu_count()} CPU cores, {device}"


def _cpu_count() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


_POLICY = """\
## What a fault leaves behind

* **Python API.** Closing the generator of `iterate()` stops the run at once and frees
  its memory; an error inside the engine (or a `KeyboardInterrupt`) reaches the caller
  unchanged and leaves no state behind: the next run with the same seed gives the same
  result. Bad arguments and bad configurations raise `TypeError`/`ValueError` naming the
  argument or key before anything runs.
* **napari widget.** *Stop* (or removing the input layer) keeps the latest snapshot in the
  result layers, whole, and their metadata says where and why the run stopped (`frames_done`
  counts the frames that are complete; frames not reached stay zero); Stop before the first
  snapshot leaves no layer. An **error inside the engine** is shown as a notification and in
  the status line, and the layers are put back as they were before the run: the layers it
  added are removed, and a result layer of an earlier run that it was updating gets its
  earlier data and metadata back. The input layer is never modified. Closing the viewer
  stops the worker.
* **Command line.** Outputs are written under hidden temporary names and renamed when
  complete, the sidecar last; an interruption (Ctrl-C, SIGTERM) removes every unfinished
  file and exits with 130, and an interruption while the files are renamed takes back the
  ones already renamed, so a sidecar always describes the files beside it. An input that
  cannot be read or fails is reported with its name and the reason, leaves no file, and
  the batch goes on (exit 1). Usage and configuration errors (exit 2) name the option or
  the key, and are found before any restoration. Configuration files are plain JSON:
  nothing is unpickled or evaluated.
"""


def write_report(cases: list[CaseInfo], results: dict[str, dict], seconds: float,
                 path: Path = REPORT) -> str:
    counts = {k: 0 for k in ("passed", "failed", "skipped", "not run")}
    rows = []
    for case in cases:
        res = results.get(case.id, {"outcome": "not run", "detail": "", "observed": ""})
        counts[res["outcome"]] += 1
        outcome = {"passed": "pass", "failed": "**FAIL**", "skipped": "skipped",
                   "not run": "**not run**"}[res["outcome"]]
        observed = res["observed"]
        if res["detail"]:
            observed = f"{observed}; {res['detail']}" if observed else res["detail"]
        rows.append(f"| `{case.id}` | {case.front} | {_cell(case.done)} | "
                    f"{_cell(case.expect)} | {outcome} | {_cell(observed)} |")
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    files = " and ".join(f"`{p.relative_to(ROOT)}`" for p in MATRIX_FILES)
    text = "\n".join([
        "# Fault matrix",
        "",
        f"Bad inputs, bad configurations, interruptions and errors inside a run, tried "
        f"against the Python API, the napari widget and the command line. Every row is a "
        f"case declared in {files} and checked by the test parametrized with it; this file is "
        f"written by `python scripts/fault_report.py`, and "
        f"`tests/test_fault_matrix.py::test_report_lists_exactly_the_cases` fails when its "
        f"rows and the declared cases differ.",
        "",
        f"Last run: {stamp}, {seconds:.0f} s; {_versions()}.",
        "",
        f"**{len(cases)} cases: {counts['passed']} passed, {counts['failed']} failed, "
        f"{counts['skipped']} skipped"
        + (f", {counts['not run']} not run" if counts["not run"] else "") + ".**",
        "",
        _POLICY,
        "## Cases",
        "",
        "| case | front end | what is done | what must happen | outcome | observed |",
        "| --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
    ])
    path.write_text(text, encoding="utf-8")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--list", action="store_true", help="list the declared cases and stop")
    parser.add_argument("--output", type=Path, default=REPORT,
                        help=f"where to write the report (default: {REPORT.relative_to(ROOT)})")
    args = parser.parse_args(argv)

    cases = [c for path in MATRIX_FILES for c in declared_cases(path)]
    if args.list:
        for c in cases:
            print(f"{c.id:32} {c.front:8} {c.file}")
        return 0

    import pytest

    collector = _Collector()
    t0 = time.perf_counter()
    status = pytest.main([*map(str, MATRIX_FILES), "-q", "-p", "no:cacheprovider",
                          "-k", "not test_report_lists_exactly_the_cases"],
                         plugins=[collector])
    seconds = time.perf_counter() - t0
    write_report(cases, collector.results, seconds, args.output)
    bad = [c.id for c in cases
           if collector.results.get(c.id, {}).get("outcome", "not run") in ("failed", "not run")]
    print(f"wrote {args.output} ({len(cases)} cases, {len(bad)} failed or not run, "
          f"pytest exit status {int(status)})")
    return 1 if bad or int(status) not in (0, 5) else 0


if __name__ == "__main__":
    sys.exit(main())
