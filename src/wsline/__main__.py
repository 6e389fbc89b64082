"""``python -m wsline``: see :mod:`wsline.apps.cli`."""

import sys

from .apps.cli import main

sys.exit(main())
