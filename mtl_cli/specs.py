"""Parsing the command line's compact specs: ``--task``, predict's ``INPUT`` and ``--weighting``.

Each parser turns one string into library objects or raises a ValueError that quotes the string
and says what was expected, so a malformed spec is one clear line, not a traceback.
"""

from __future__ import annotations

import math
from pathlib import Path

from mtl_core.data import TextTaskSource
from mtl_core.tasks import KINDS
from mtl_core.weighting import WEIGHTINGS

TASK_SPEC = "NAME=PATH:TEXT_COL:LABEL_COL[:KIND]"
INPUT_SPEC = "PATH:TEXT_COL"
FIXED_SPEC = "fixed:TASK=WEIGHT,TASK=WEIGHT,..."


def parse_task(spec: str) -> TextTaskSource:
    """``NAME=PATH:TEXT_COL:LABEL_COL[:KIND]`` -> TextTaskSource (a path may hold ':' when KIND is given)."""
    name, equals, rest = spec.partition("=")
    if not equals or not name.strip():
        raise ValueError(f"--task {spec!r}: expected {TASK_SPEC}, e.g. movie=reviews.csv:text:label")
    parts = rest.split(":")
    if len(parts) < 3:
        raise ValueError(f"--task {spec!r}: expected {TASK_SPEC}; got {len(parts)} of the ':'-separated fields")
    kind = None
    if len(parts) >= 4:
        if parts[-1] in KINDS:
            kind, parts = parts[-1], parts[:-1]
        elif not Path(":".join(parts[:-2])).exists():
            raise ValueError(f"--task {spec!r}: KIND {parts[-1]!r} is not one of {', '.join(KINDS)}")
    path, text_column, label_column = ":".join(parts[:-2]), parts[-2], parts[-1]
    empty = [what for what, value in (("PATH", path), ("TEXT_COL", text_column), ("LABEL_COL", label_column)) if not value]
    if empty:
        raise ValueError(f"--task {spec!r}: {' and '.join(empty)} must not be empty ({TASK_SPEC})")
    return TextTaskSource(name.strip(), path, text_column, label_column, kind)


def parse_input(spec: str) -> tuple[Path, str]:
    """``PATH:TEXT_COL`` -> (path, text column); the last ':' separates them."""
    path, colon, column = spec.rpartition(":")
    if not colon or not path or not column:
        raise ValueError(f"input {spec!r}: expected {INPUT_SPEC}, e.g. new_reviews.csv:text")
    return Path(path), column


def parse_weighting(value: str) -> str | dict[str, float]:
    """A weighting name in WEIGHTINGS, or ``fixed:TASK=WEIGHT,...`` -> {task: weight}."""
    if value in WEIGHTINGS and value != "fixed":
        return value
    head, colon, body = value.partition(":")
    if head != "fixed" or not colon:
        names = ", ".join(w for w in WEIGHTINGS if w != "fixed")
        raise ValueError(f"--weighting {value!r}: expected one of {names} or {FIXED_SPEC}")
    weights: dict[str, float] = {}
    for item in body.split(","):
        task, equals, number = item.partition("=")
        try:
            weight = float(number)
        except ValueError:
            weight = math.nan
        if not equals or not task.strip() or not math.isfinite(weight) or weight < 0:
            raise ValueError(f"--weighting {value!r}: {item!r} is not TASK=WEIGHT with a finite weight >= 0 ({FIXED_SPEC})")
        if task.strip() in weights:
            raise ValueError(f"--weighting {value!r}: task {task.strip()!r} is weighted twice")
        weights[task.strip()] = weight
    return weights
