"""Messages for the person at the terminal: on stderr, so stdout stays the command's result."""

from __future__ import annotations

import contextlib
import sys

import numpy as np


def note(message: str, quiet: bool) -> None:
    """One line of progress on stderr, unless ``--quiet``."""
    if not quiet:
        print(message, file=sys.stderr, flush=True)


def note_wordless(what: str, matrices, quiet: bool) -> None:
    """Say how many texts (rows of the CSR ``matrices``) hold no word the model reads: it cannot tell
    them apart, so they all get one prediction. Empty text cells are read without complaint otherwise."""
    rows = sum(X.shape[0] for X in matrices)
    empty = sum(int(np.count_nonzero(np.diff(X.indptr) == 0)) for X in matrices)
    if empty:
        note(f"{what}: {empty:,} of {rows:,} texts hold no word the model reads (empty, or only words outside "
             "its vocabulary): they all get the same prediction", quiet)


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
