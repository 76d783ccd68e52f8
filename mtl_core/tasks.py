"""Task specifications: what each head predicts and how its labels look."""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Iterable, Sequence

KINDS = ("binary", "multiclass", "multilabel", "regression")


@dataclass(frozen=True)
class TaskSpec:
    """One task: its name, the kind of labels it has, and the width of its head.

    Frozen and hashable, so a tuple of specs can be a static argument of ``jax.jit``.
    """

    name: str
    kind: str
    num_outputs: int

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"TaskSpec.name must be a non-empty string, got {self.name!r}")
        if self.kind not in KINDS:
            raise ValueError(f"TaskSpec.kind must be one of {KINDS}, got {self.kind!r}")
        if isinstance(self.num_outputs, bool) or not isinstance(self.num_outputs, numbers.Integral):
            raise TypeError(f"TaskSpec.num_outputs must be an int, got {self.num_outputs!r}")
        object.__setattr__(self, "num_outputs", int(self.num_outputs))
        if self.num_outputs < 1:
            raise ValueError(f"TaskSpec.num_outputs must be >= 1, got {self.num_outputs}")
        if self.kind == "binary" and self.num_outputs != 1:
            raise ValueError(
                f"a binary task has one output (the logit of the positive class), "
                f"got num_outputs={self.num_outputs} for task {self.name!r}"
            )
        if self.kind == "multiclass" and self.num_outputs < 2:
            raise ValueError(
                f"a multiclass task needs num_outputs >= 2 classes, got {self.num_outputs} "
                f"for task {self.name!r}"
            )


def check_tasks(tasks: Iterable[TaskSpec]) -> tuple[TaskSpec, ...]:
    """Return ``tasks`` as a tuple after checking it is a non-empty set of distinct TaskSpecs."""
    if isinstance(tasks, (TaskSpec, str)) or not isinstance(tasks, Iterable):
        raise TypeError(f"tasks must be a sequence of TaskSpec, got {tasks!r}")
    tasks = tuple(tasks)
    if not tasks:
        raise ValueError("tasks must hold at least one TaskSpec, got an empty sequence")
    for task in tasks:
        if not isinstance(task, TaskSpec):
            raise TypeError(f"every task must be a TaskSpec, got {task!r}")
    names = [t.name for t in tasks]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"task names must be distinct, got duplicates {duplicates}")
    return tasks


TOTAL = "total"  # the key of the combined loss in the dict a train step returns
SOLVER_RESIDUAL = "solver_residual"  # ... and of the aggregator's solver residual, when it has one


def check_step_report(names, aggregator=None) -> None:
    """Refuse a train step whose report would hide a task's loss under one of its own keys.

    Any task name is valid, "total" too: ``fit`` keeps the combined loss apart from the tasks'.
    """
    for key in (TOTAL,) + ((SOLVER_RESIDUAL,) if aggregator is not None else ()):
        if key in names:
            raise ValueError(
                f"a task named {key!r} collides with the {'combined loss' if key == TOTAL else 'solver residual'} in the "
                "dict a train step returns; rename the task, or train it with fit, which reports it separately"
            )


def resolve_task_id(tasks: Sequence[TaskSpec], task_id: int | str) -> int:
    """Map a task index or name to its index, raising a clear error for anything else.

    Called at trace time in ``jax_impl``, so ``task_id`` must be a Python value, not an array.
    """
    if isinstance(task_id, str):
        for index, task in enumerate(tasks):
            if task.name == task_id:
                return index
        raise ValueError(f"unknown task name {task_id!r}; the model's tasks are {[t.name for t in tasks]}")
    if isinstance(task_id, bool) or not isinstance(task_id, numbers.Integral):
        raise TypeError(
            f"task_id must be a Python int index or a task name (static, not an array), got {task_id!r}"
        )
    if not 0 <= task_id < len(tasks):
        raise ValueError(f"task_id {task_id} is out of range: the model has {len(tasks)} tasks (0..{len(tasks) - 1})")
    return int(task_id)
