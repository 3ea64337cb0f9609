"""``python -m netdsl`` is ``netdsl``."""

from netdsl.cli import entry

entry()
