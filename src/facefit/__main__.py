"""``python -m facefit``: the ``facefit`` command."""

import sys

from facefit.cli import main

sys.exit(main())
