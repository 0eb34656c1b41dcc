"""Packaging checks: the npe2 manifest, the version, the metadata that napari's plugin
manager and the napari hub read, the README as PyPI shows it, and the wheel's contents.

These run without a display and without network access. The full install check (a fresh
virtual environment, napari with PyQt6, a viewer under Xvfb) is ``scripts/check_install.sh``.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
README = ROOT / "README.md"
MANIFEST_FILE = ROOT / "src" / "napari_dip" / "napari.yaml"
DIST_NAME = "napari-dip"
QT_BINDINGS = ("pyqt5", "pyqt6", "pyside2", "pyside6")

# npe2's pydantic models use pydantic's deprecated json_encoders; not this package's concern.
pytestmark = pytest.mark.filterwarnings("ignore:.*json_encoders.*:DeprecationWarning")


@pytest.fixture(scope="module")
def pyproject() -> dict:
    return tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))


def _repo_file(relative: str) -> Path:
    """A file of the source checkout that the sdist does not ship: skipped there."""
    path = ROOT / relative
    if not path.exists() and not (ROOT / ".git").exists():
        pytest.skip(f"{relative} is not part of the source distribution")
    return path


def _import_python_name(python_name: str):
    module_name, _, attr = python_name.partition(":")
    module = importlib.import_module(module_name)
    obj = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


# --------------------------------------------------------------------------- manifest


def _check_manifest(mf) -> None:
    assert mf.name == DIST_NAME
    assert mf.display_name
    assert mf.visibility == "public"

    commands = {c.id: c for c in mf.contributions.commands or []}
    for cid, cmd in commands.items():
        assert cid.startswith(f"{DIST_NAME}."), cid
        target = _import_python_name(cmd.python_name)
        assert callable(target), cmd.python_name

    widgets = mf.contributions.widgets or []
    assert len(widgets) == 1
    assert widgets[0].command in commands
    assert widgets[0].display_name

    samples = mf.contributions.sample_data or []
    assert len(samples) == 4
    assert len({s.key for s in samples}) == 4
    for s in samples:
        assert s.command in commands, s.key
        assert s.display_name


def test_manifest_file_validates():
    from npe2 import PluginManifest

    mf = PluginManifest.from_file(MANIFEST_FILE)
    _check_manifest(mf)


def test_installed_manifest_validates():
    """The manifest that napari finds through the ``napari.manifest`` entry point."""
    from npe2 import PluginManifest

    mf = PluginManifest.from_distribution(DIST_NAME)
    _check_manifest(mf)
    assert mf.package_version == metadata.version(DIST_NAME)


def test_sample_functions_return_layer_data():
    """Each sample command gives napari layer-data tuples (no network, no GUI)."""
    from npe2 import PluginManifest

    mf = PluginManifest.from_file(MANIFEST_FILE)
    commands = {c.id: c for c in mf.contributions.commands or []}
    for s in mf.contributions.sample_data or []:
        layers = _import_python_name(commands[s.command].python_name)()
        assert layers, s.key
        for item in layers:
            data, kwargs, layer_type = item
            assert layer_type in {"image", "labels"}, s.key
            assert isinstance(kwargs, dict)
            assert data.size > 0


# ---------------------------------------------------------------------------- version


def test_version_matches_distribution():
    import napari_dip

    assert napari_dip.__version__ == metadata.version(DIST_NAME)


def test_version_file_is_the_dynamic_version(pyproject):
    assert "version" in pyproject["project"]["dynamic"]
    attr = pyproject["tool"]["setuptools"]["dynamic"]["version"]["attr"]
    assert attr == "napari_dip._version.__version__"
    text = (ROOT / "src" / "napari_dip" / "_version.py").read_text(encoding="utf-8")
    found = re.search(r'^__version__\s*=\s*["\']([^"\']+)["\']', text, re.M)
    assert found, "_version.py must assign __version__ a literal string"
    import napari_dip

    assert found.group(1) == napari_dip.__version__


# ------------------------------------------------------------------- package metadata


def test_pyproject_napari_metadata(pyproject):
    project = pyproject["project"]
    assert project["name"] == DIST_NAME
    assert "Framework :: napari" in project["classifiers"]
    assert project["readme"] == "README.md"
    # The plugin manager installs into an environment that already has a Qt binding:
    # the base requirements must not name one (nor napari[...] extras that pull one in).
    for req in project["dependencies"]:
        low = req.lower().replace("_", "-")
        assert not low.startswith(QT_BINDINGS), req
        assert not low.startswith("napari["), req
    eps = project["entry-points"]["napari.manifest"]
    assert eps == {DIST_NAME: "napari_dip:napari.yaml"}
    assert project["scripts"][DIST_NAME] == "napari_dip.cli:main"
    assert "napari.yaml" in pyproject["tool"]["setuptools"]["package-data"]["napari_dip"]
    urls = project["urls"]
    assert any(u.startswith("https://github.com/") for u in urls.values())


def test_installed_metadata_has_framework_classifier():
    classifiers = metadata.metadata(DIST_NAME).get_all("Classifier") or []
    assert "Framework :: napari" in classifiers


# ----------------------------------------------------------------------------- README

_MD_LINK = re.compile(r"(!?)\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HTML_SRC = re.compile(r"""<(?:img|source)\b[^>]*?\bsrc\s*=\s*["']([^"']+)["']""", re.I)
_REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)


def _strip_code(text: str) -> str:
    """Drop fenced code blocks and inline code spans (their brackets are not links)."""
    text = re.sub(r"^(```|~~~).*?^\1[^\n]*$", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def _relative_links(text: str) -> list[str]:
    text = _strip_code(text)
    targets = [m.group(2) for m in _MD_LINK.finditer(text)]
    targets += _HTML_SRC.findall(text)
    targets += _REF_DEF.findall(text)
    return [t for t in targets if not re.match(r"^(https?://|mailto:|#)", t)]


def test_link_checker_finds_relative_links():
    sample = (
        "![a](docs/a.png) [b](https://x.org) ![c](https://x.org/c.png) [d](#sec) "
        '<img src="img/e.png"> `![not](code.png)`\n[ref]: ./f.md\n'
    )
    assert _relative_links(sample) == ["docs/a.png", "img/e.png", "./f.md"]


def test_readme_has_no_relative_links():
    """PyPI and the napari hub render the README away from the repository: relative
    image paths and links break there."""
    text = README.read_text(encoding="utf-8")
    assert _relative_links(text) == []


def test_readme_test_command_block():
    """.ci/run runs the line two lines below the marker (the line after the fence)."""
    lines = README.read_text(encoding="utf-8").splitlines()
    marks = [i for i, line in enumerate(lines) if "<!-- test-command -->" in line]
    assert len(marks) == 1, "README.md needs exactly one <!-- test-command --> marker"
    i = marks[0]
    assert lines[i + 1].strip().startswith("```"), "a code fence must follow the marker"
    command = lines[i + 2].strip()
    assert "pytest" in command
    assert lines[i + 3].strip() == "```", "the test command block holds one line"
    ci = _repo_file(".ci/run").read_text(encoding="utf-8")
    assert "test-command" in ci


# ------------------------------------------------------------------------- napari hub


def test_napari_hub_files():
    import yaml

    description = _repo_file(".napari-hub/DESCRIPTION.md").read_text(encoding="utf-8")
    assert _relative_links(description) == []
    flat = " ".join(description.split())
    for cited in ("Deep Image Prior", "A Bayesian Perspective on the Deep Image Prior",
                  "Early Stopping for Deep Image Prior"):
        assert cited in flat

    config = yaml.safe_load(_repo_file(".napari-hub/config.yml").read_text(encoding="utf-8"))
    assert config.get("visibility", "public") in {"public", "hidden", "disabled"}
    labels = config.get("labels")
    if labels:
        assert labels["ontology"].startswith("EDAM-BIOIMAGING")
        assert all(isinstance(t, str) and t for t in labels["terms"])
    # Links given to the hub point to the same repository as pyproject's URLs.
    urls = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["urls"]
    repo = urls["Source Code"].rstrip("/")
    for value in (config.get("project_urls") or {}).values():
        assert value.startswith(repo), value


# -------------------------------------------------------------------------- the wheel


def _can_build_wheel_offline() -> bool:
    try:
        import setuptools
    except ImportError:
        return False
    major, minor = (int(x) for x in re.findall(r"\d+", setuptools.__version__)[:2])
    if (major, minor) >= (70, 1):  # setuptools ships bdist_wheel itself
        return True
    return importlib.util.find_spec("wheel") is not None


@pytest.mark.skipif(not _can_build_wheel_offline(), reason="setuptools (>=70.1) or wheel needed")
def test_wheel_contents(tmp_path):
    """Build the wheel from a copy of the source (no build isolation, no network) and
    check what it ships."""
    src = tmp_path / "src_copy"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(ROOT / name, src / name)
    if (ROOT / "MANIFEST.in").exists():
        shutil.copy2(ROOT / "MANIFEST.in", src / "MANIFEST.in")
    shutil.copytree(ROOT / "src", src / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    out = tmp_path / "wheelhouse"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "-q", "-w", str(out), str(src)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    wheels = list(out.glob("napari_dip-*.whl"))
    assert len(wheels) == 1

    import napari_dip

    version = napari_dip.__version__
    assert wheels[0].name == f"napari_dip-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheels[0]) as zf:
        names = zf.namelist()
        info = f"napari_dip-{version}.dist-info"
        assert {n.split("/")[0] for n in names} == {"napari_dip", info}
        assert "napari_dip/napari.yaml" in names
        assert "napari_dip/_napari/widgets.py" in names
        assert not [n for n in names if "/tests/" in f"/{n}" or "/benchmarks/" in f"/{n}"]
        eps = zf.read(f"{info}/entry_points.txt").decode()
        assert "[napari.manifest]" in eps
        assert "napari-dip = napari_dip:napari.yaml" in eps
        meta = zf.read(f"{info}/METADATA").decode()
        assert f"\nVersion: {version}\n" in meta
        assert "Classifier: Framework :: napari" in meta
        assert "Description-Content-Type: text/markdown" in meta
