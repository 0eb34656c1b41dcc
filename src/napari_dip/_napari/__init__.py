"""napari integration: the dock widget, its background worker and the sample data.

Only napari imports this package (through ``napari.yaml``); the rest of ``napari_dip``
never imports napari or Qt.
"""

from .widgets import DIPWidget

__all__ = ["DIPWidget"]
