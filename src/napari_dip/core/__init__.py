"""The restoration engine (no napari, Qt or magicgui imports here)."""

from .api import Result, iterate, resolve_config, restore, run_metadata, versions
from .config import (
    DIPConfig,
    SGLDConfig,
    config_from_dict,
    config_from_json,
    make_config,
)
from .device import resolve_device
from .engine import RunInfo, Snapshot, psnr

__all__ = [
    "DIPConfig",
    "Result",
    "RunInfo",
    "SGLDConfig",
    "Snapshot",
    "config_from_dict",
    "config_from_json",
    "iterate",
    "make_config",
    "psnr",
    "resolve_config",
    "resolve_device",
    "restore",
    "run_metadata",
    "versions",
]
