"""``python -m wsline``: see :mod:`wsline.cli`."""

import sys

from .cli import main

sys.exit(main())
