"""Files written whole or not at all: a temporary file in the same folder, then a rename.

A crash mid-write leaves the old file in place and, at worst, a hidden ``.NAME.*.tmp`` beside it;
``remove_leftovers`` clears those when the next run writes into that folder.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

LEFTOVER = ".*.tmp"  # the suffix of our temporaries, after "." + the final file's name


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> None:
    """``write(temporary)`` fills a temporary file beside ``path``, which then replaces ``path`` at once."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder; give a file name in it")
    if not folder.is_dir():
        raise FileNotFoundError(f"{path}: no such folder {str(folder)!r}")
    handle, temporary = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        write(temporary)
        # mkstemp's 0600 (kept, or made anew by writers that replace the file, as safetensors does)
        # would hide the outputs from the user's group and others: the mode a new file gets.
        os.chmod(temporary, 0o666 & ~_umask())
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def _umask() -> int:
    """The process's umask (reading it means setting it: put straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write(path, lambda temporary: Path(temporary).write_text(text, encoding="utf-8"))


def remove_leftovers(folder: str | os.PathLike, names) -> list[Path]:
    """Remove the temporaries a killed write of any of ``names`` left in ``folder``; return them."""
    removed = []
    for name in names:
        for leftover in Path(folder).glob(f".{name}{LEFTOVER}"):
            if leftover.is_file():
                leftover.unlink()
                removed.append(leftover)
    return removed
