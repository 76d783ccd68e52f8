"""What every variant is given, and what it gives back to the timing harness."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from mtl_core.data import TaskData
from benchmarks.device import Device
from benchmarks.workloads import Workload

LEARNING_RATE = 1e-3  # the blog's
SEED_RECIPE = "seed-recipe"  # the baseline every ratio is taken against

# A runner performs a fixed number of optimiser steps and returns once the device has finished them;
# the harness calls it repeatedly. A variant's setup returns a ``MakeRunner``: steps -> runner, which
# does, untimed, whatever must happen before the timed steps (cutting batches, slicing the data).
Runner = Callable[[], None]
MakeRunner = Callable[[int], Runner]


@dataclass(frozen=True)
class Context:
    """A workload's data on a device; ``data`` holds ``rows_per_task`` rows of every task."""

    workload: Workload
    data: dict[str, TaskData]
    device: Device
    seed: int

    @property
    def rows_per_task(self) -> int:
        return len(next(iter(self.data.values())))

    @property
    def max_steps(self) -> int:
        """The most steps one epoch over ``data`` holds (round robin: every task's batch each step)."""
        return self.rows_per_task // self.workload.batch_size

    def first_rows(self, steps: int) -> dict[str, TaskData]:
        """The data for exactly ``steps`` full steps of every task (an epoch of fit)."""
        rows = steps * self.workload.batch_size
        if rows > self.rows_per_task:
            raise ValueError(f"{steps} steps need {rows} rows per task, the data hold {self.rows_per_task}")
        return {name: task.subset(slice(0, rows)) for name, task in self.data.items()}


def check_steps(variant: str, done: int, expected: int) -> None:
    """Fail loudly when a variant trained a different number of steps than it is credited with."""
    if done != expected:
        raise RuntimeError(f"{variant} ran {done} steps per repeat, the harness asked for {expected}")
