"""``python -m atlas_validator PATH``: the same as the ``atlas-validate`` command."""

import sys

from .cli import main

sys.exit(main())
