"""Messages for the person at the terminal: on stderr, so stdout stays the command's result."""

from __future__ import annotations

import contextlib
import sys


def note(message: str, quiet: bool) -> None:
    """One line of progress on stderr, unless ``--quiet``."""
    if not quiet:
        print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def progress_bar(*, total: int, initial: int = 0, quiet: bool, desc: str):
    """A tqdm bar on stderr (a silent stand-in with ``quiet``), closed however the block ends, so an
    interrupt's message starts on a line of its own."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total, initial=initial, desc=desc, unit="epoch", disable=quiet)
    try:
        yield bar
    finally:
        bar.close()
