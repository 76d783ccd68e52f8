"""Curricula: which rows of which tasks go into each training step of an epoch.

Both backends ask for the same schedule with the same seed, so they see the same batches in the
same order. A step is a dict {task name: row indices}; a task missing from a step is not trained
in it (its head gets no gradient).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Iterator, Mapping

import numpy as np

CURRICULA = ("round_robin", "max_size_cycle", "sequential", "proportional")

Step = dict[str, np.ndarray]


@dataclass(frozen=True)
class Curriculum:
    """A curriculum by name; ``temperature`` shapes ``proportional`` sampling (p ~ size ** (1/T))."""

    name: str = "round_robin"
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.name not in CURRICULA:
            raise ValueError(f"curriculum must be one of {CURRICULA}, got {self.name!r}")
        if not isinstance(self.temperature, numbers.Real) or not self.temperature > 0:
            raise ValueError(f"curriculum temperature must be a number > 0, got {self.temperature!r}")


def resolve_curriculum(curriculum: "str | Curriculum") -> Curriculum:
    if isinstance(curriculum, Curriculum):
        return curriculum
    if isinstance(curriculum, str):
        return Curriculum(curriculum)
    raise TypeError(f"curriculum must be a name in {CURRICULA} or a Curriculum, got {curriculum!r}")


def check_batch_size(batch_size) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    return int(batch_size)


def _batches(permutation: np.ndarray, batch_size: int) -> list[np.ndarray]:
    return [permutation[i : i + batch_size] for i in range(0, len(permutation), batch_size)]


class _Cycler:
    """Yields a task's batches forever, reshuffling each time its data run out."""

    def __init__(self, size: int, batch_size: int, rng: np.random.Generator):
        self.size, self.batch_size, self.rng = size, batch_size, rng
        self.pending: list[np.ndarray] = []

    def next(self) -> np.ndarray:
        if not self.pending:
            self.pending = _batches(self.rng.permutation(self.size), self.batch_size)
        return self.pending.pop(0)


def epoch_schedule(
    curriculum: "str | Curriculum",
    sizes: Mapping[str, int],
    batch_size: int,
    seed: int,
    epoch: int,
) -> list[Step]:
    """The steps of one epoch: a list of {task name: row indices (int64)}.

    round_robin: one batch of every task per step, stopping at the task with fewest batches (zip).
    max_size_cycle: as round_robin, but run to the task with most batches, cycling the others.
    sequential: every batch of the first task, then of the second, ... (one task per step).
    proportional: one task per step, drawn with probability ~ size ** (1/temperature), for as many
        steps as all tasks have batches; each task's batches cycle.
    """
    curriculum = resolve_curriculum(curriculum)
    batch_size = check_batch_size(batch_size)
    if not sizes:
        raise ValueError("a curriculum needs at least one task")
    for name, size in sizes.items():
        if size < 1:
            raise ValueError(f"task {name!r} is empty: a curriculum needs at least one row per task")
    # One independent stream per (seed, epoch): both backends draw exactly these permutations.
    rng = np.random.default_rng([int(seed), int(epoch)])
    names = list(sizes)
    if curriculum.name == "sequential":
        return [
            {name: rows}
            for name in names
            for rows in _batches(rng.permutation(sizes[name]), batch_size)
        ]
    cyclers = {name: _Cycler(sizes[name], batch_size, rng) for name in names}
    n_batches = {name: -(-sizes[name] // batch_size) for name in names}
    if curriculum.name == "proportional":
        weights = np.array([sizes[n] for n in names], dtype=np.float64) ** (1.0 / curriculum.temperature)
        picks = rng.choice(len(names), size=sum(n_batches.values()), p=weights / weights.sum())
        return [{names[i]: cyclers[names[i]].next()} for i in picks]
    count = min(n_batches.values()) if curriculum.name == "round_robin" else max(n_batches.values())
    return [{name: cyclers[name].next() for name in names} for _ in range(count)]


def same_task_runs(steps: list[Step], max_len: int) -> Iterator[list[Step]]:
    """Split steps into consecutive runs (at most ``max_len`` long) that train the same tasks."""
    run: list[Step] = []
    for step in steps:
        if run and (len(run) == max_len or step.keys() != run[0].keys()):
            yield run
            run = []
        run.append(step)
    if run:
        yield run
