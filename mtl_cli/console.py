"""Messages for the person at the terminal: on stderr, so stdout stays the command's result."""

from __future__ import annotations

import sys


def note(message: str, quiet: bool) -> None:
    """One line of progress on stderr, unless ``--quiet``."""
    if not quiet:
        print(message, file=sys.stderr, flush=True)
