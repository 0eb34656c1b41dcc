"""napari-dip: Deep Image Prior and SGLD-DIP restoration for napari and the command line.

The engine (:mod:`napari_dip.core`) needs no GUI; the napari widgets live in
:mod:`napari_dip._napari` and are imported only by napari.
"""

from ._version import __version__
from .core import (
    DIPConfig,
    Result,
    SGLDConfig,
    Snapshot,
    config_from_dict,
    config_from_json,
    iterate,
    make_config,
    restore,
    versions,
)

__all__ = [
    "DIPConfig",
    "Result",
    "SGLDConfig",
    "Snapshot",
    "__version__",
    "config_from_dict",
    "config_from_json",
    "iterate",
    "make_config",
    "restore",
    "restore_as_completed",
    "restore_many",
    "versions",
]

_DISTRIBUTED = ("restore_many", "restore_as_completed")


def __getattr__(name: str):
    # imported on first use: napari_dip.distributed needs Dask, which is optional
    if name in _DISTRIBUTED:
        from . import distributed

        return getattr(distributed, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
