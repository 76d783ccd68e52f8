"""Where a command writes: checked before any training starts, never clobbered, never half-written.

A folder that already holds a run is refused unless ``--overwrite``; an output file may never be one
of the command's inputs; the folder must take a new file (probed by creating one) before any work
is done; and the hidden temporaries a killed write left there are removed (mtl_core.files).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Sequence

from mtl_core.files import remove_leftovers


def _writable(folder: Path, option: str) -> None:
    try:
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".mtl-probe.", suffix=".tmp")
    except OSError as error:
        raise OSError(f"{option} {folder}: cannot write there ({error.strerror})") from None
    os.close(handle)
    os.remove(probe)


def prepare_folder(folder: Path, outputs: Sequence[str], *, overwrite: bool, option: str = "--out", hint: str = "") -> list[Path]:
    """Create ``folder`` if needed and check it can take this run: a writable folder holding none of
    ``outputs`` (unless ``overwrite``). Returns the leftover temporaries of ``outputs`` it removed."""
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{option} {folder}: exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise OSError(f"{option} {folder}: cannot create the folder ({error.strerror})") from None
    existing = [name for name in outputs if (folder / name).exists()]
    if existing and not overwrite:
        raise ValueError(f"{option} {folder} already holds a run ({', '.join(existing)}): pass --overwrite to replace it{hint}")
    _writable(folder, option)
    return remove_leftovers(folder, outputs)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return a.resolve() == b.resolve()


def check_output_file(path: Path, inputs: Sequence[Path], *, overwrite: bool, option: str = "--out") -> None:
    """An output file must not be any input, must not exist unless ``overwrite``, and its folder must be writable."""
    for source in inputs:
        if _same_file(path, source) or path.resolve() == source.resolve():
            raise ValueError(f"{option} {path} is the input {source}: the output must not replace an input")
    if path.is_dir():
        raise ValueError(f"{option} {path} is a folder; give a file name")
    if path.exists() and not overwrite:
        raise ValueError(f"{option} {path} exists: pass --overwrite to replace it")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ValueError(f"{option} {path}: the folder {folder} does not exist")
    _writable(folder, option)
    remove_leftovers(folder, [path.name])
