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
    "versions",
]
