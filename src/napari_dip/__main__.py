"""``python -m napari_dip``: the ``napari-dip`` command line."""

import sys

from .cli import main

sys.exit(main())
