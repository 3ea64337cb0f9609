"""``python -m netdsl`` is ``netdsl``."""

import sys

from netdsl.cli import main

sys.exit(main())
