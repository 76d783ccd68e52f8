"""What the tests of the ``mtl`` command share: running it in-process, and small CSV/TSV task files.

Their fixtures (``files``, ``trained``) live in conftest.py.
"""

from __future__ import annotations

import csv
import io
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from mtl_cli.main import main

POSITIVE = "good great lovely superb fun".split()
NEGATIVE = "bad awful dull poor boring".split()
FILLER = "the a film plot food service and it was very quite".split()
TINY_SYNTHETIC = ["--n-train", "96", "--n-test", "48", "--vocab-size", "400"]


def mtl(*argv) -> SimpleNamespace:
    """Run ``mtl ARGV`` in-process: exit code, stdout and stderr."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as exit:  # argparse exits on usage errors and --help
            code = exit.code
    return SimpleNamespace(code=code, out=out.getvalue(), err=err.getvalue())


def review(rng: np.random.Generator, sentiment: int) -> str:
    """A short text: filler words plus words of the sentiment (-1, 0 or 1; 0 mixes both)."""
    words = list(rng.choice(FILLER, 6))
    if sentiment >= 0:
        words += list(rng.choice(POSITIVE, 2 if sentiment > 0 else 1))
    if sentiment <= 0:
        words += list(rng.choice(NEGATIVE, 2 if sentiment < 0 else 1))
    rng.shuffle(words)
    return " ".join(words)


def write_table(path: Path, header: list[str], rows: list[list], delimiter: str = ",") -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def read_csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def task_args(files) -> list[str]:
    return ["--task", f"movie={files.movie}:text:label", "--task", f"yelp={files.yelp}:review:stars"]
