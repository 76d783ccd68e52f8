"""mtl_core.files: whole-or-nothing writes whose files get the permissions any other file would."""

import os
import stat

import numpy as np
import pytest
from safetensors.numpy import save_file

from mtl_core.files import atomic_write, write_text


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002], ids=["022", "077", "002"])
def test_a_written_file_has_the_mode_the_umask_gives_a_new_file(tmp_path, mask):
    previous = os.umask(mask)
    try:
        write_text(tmp_path / "ours.txt", "x")
        atomic_write(tmp_path / "weights.safetensors", lambda temporary: save_file({"w": np.zeros(2)}, temporary))
        (tmp_path / "plain.txt").write_text("x")  # as open() creates a file
    finally:
        os.umask(previous)
    mode = lambda name: stat.S_IMODE((tmp_path / name).stat().st_mode)  # noqa: E731
    assert mode("ours.txt") == mode("weights.safetensors") == mode("plain.txt") == 0o666 & ~mask  # safetensors makes the file anew


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "model.bin"
    path.write_text("old")

    def fail(temporary):
        open(temporary, "w").write("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(path, fail)
    assert path.read_text() == "old" and os.listdir(tmp_path) == ["model.bin"]
