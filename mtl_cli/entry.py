"""The ``mtl`` console script: Ctrl-C is one clean line from the very first import on.

Importing torch and jax takes seconds; an interrupt then would print a traceback. This module is
all the script imports before the handler below is in place; ``mtl_cli.main`` replaces it with
Python's own (KeyboardInterrupt) once it can close progress bars and report cleanly itself.
"""

from __future__ import annotations

import os
import signal
import sys

INTERRUPTED = 130  # 128 + SIGINT, as shells report it


def _interrupted_while_starting(signum, frame) -> None:
    del signum, frame
    sys.stderr.write("mtl: interrupted\n")
    sys.stderr.flush()
    os._exit(INTERRUPTED)  # nothing is open or written yet: no cleanup to run


def main() -> int:
    signal.signal(signal.SIGINT, _interrupted_while_starting)
    from mtl_cli.main import main as run

    return run()
