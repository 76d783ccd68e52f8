"""The workloads: the blog's shape as the headline, and the batch, vocabulary and task sweeps.

Every variant of a workload trains the same model (one trunk of ``hidden`` units, one head per
task, summed loss, Adam) on the same synthetic reviews.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mtl_core import TaskSpec

if TYPE_CHECKING:  # mtl_core.data loads scipy.stats: imported where data is made, so that run.py refuses bad arguments fast
    from mtl_core.data import TaskData

HIDDEN = 200  # the blog's hidden width


@dataclass(frozen=True)
class Workload:
    """One shape to measure; ``sweeps`` names the sweeps (plots, tables) it belongs to."""

    name: str
    vocab_size: int
    batch_size: int
    num_tasks: int
    hidden: int = HIDDEN
    sweeps: tuple[str, ...] = ()

    @property
    def tasks(self) -> tuple[TaskSpec, ...]:
        """The blog's binary and 3-class tasks, then more of each kind, alternating."""
        from mtl_core.data import DEFAULT_TASKS

        extra = tuple(
            TaskSpec(f"task{i}", "binary", 1) if i % 2 == 0 else TaskSpec(f"task{i}", "multiclass", 3)
            for i in range(len(DEFAULT_TASKS), self.num_tasks)
        )
        return (DEFAULT_TASKS + extra)[: self.num_tasks]

    @property
    def rows_per_step(self) -> int:
        """Samples one step processes: a batch of every task."""
        return self.batch_size * self.num_tasks

    def describe(self) -> dict:
        return {
            "name": self.name,
            "vocab_size": self.vocab_size,
            "hidden": self.hidden,
            "batch_size": self.batch_size,
            "num_tasks": self.num_tasks,
            "tasks": [f"{t.name}:{t.kind}:{t.num_outputs}" for t in self.tasks],
            "sweeps": list(self.sweeps),
        }


HEADLINE = Workload("headline", vocab_size=20_000, batch_size=64, num_tasks=2, sweeps=("batch", "vocab", "tasks"))
SWEEPS = (
    Workload("batch256", 20_000, 256, 2, sweeps=("batch",)),
    Workload("batch1024", 20_000, 1024, 2, sweeps=("batch",)),
    Workload("batch4096", 20_000, 4096, 2, sweeps=("batch",)),
    Workload("vocab5k", 5_000, 64, 2, sweeps=("vocab",)),
    Workload("vocab100k", 100_000, 64, 2, sweeps=("vocab",)),
    Workload("tasks8", 20_000, 64, 8, sweeps=("tasks",)),
)
QUICK_SWEEPS = ("batch256",)  # --quick: the headline plus one more batch size, so the plot has a line
WORKLOADS = {w.name: w for w in (HEADLINE,) + SWEEPS}
# A workload set measured as a study of its own (a process per measurement, its own report), and only
# when asked for: the cost of the gradient-conflict methods, benchmarks/aggregator_cost.py.
AGGREGATOR_SET = "aggregators"


def _check_known(names: list[str]) -> None:
    unknown = [n for n in names if n not in WORKLOADS and n != AGGREGATOR_SET]
    if unknown:
        raise ValueError(f"unknown workloads {unknown}; choose from {[*WORKLOADS, AGGREGATOR_SET]}")


def wants_aggregators(names: list[str] | None) -> bool:
    """Whether ``names`` asks for the aggregator study; ValueError for unknown names, or for the study
    mixed with other workloads (it writes a report of its own)."""
    if not names:
        return False
    _check_known(names)
    others = [n for n in names if n != AGGREGATOR_SET]
    if AGGREGATOR_SET in names and others:
        raise ValueError(f"{AGGREGATOR_SET!r} is a study of its own (a process per measurement, its own report): "
                         f"run --workloads {AGGREGATOR_SET} alone, not with {others}")
    return AGGREGATOR_SET in names


def plan(quick: bool, names: list[str] | None = None) -> list[Workload]:
    """The workloads of a run, headline first; ``names`` picks some (checked)."""
    if names:
        _check_known(names)
        return [WORKLOADS[n] for n in WORKLOADS if n in names]
    if quick:
        return [HEADLINE] + [WORKLOADS[n] for n in QUICK_SWEEPS]
    return [HEADLINE, *SWEEPS]


class DataPool:
    """Synthetic training data per (vocabulary, tasks), generated once and sliced per workload."""

    def __init__(self, seed: int):
        self.seed = seed
        self._made: dict[tuple, dict[str, TaskData]] = {}

    def train(self, workload: Workload, rows_per_task: int) -> dict[str, TaskData]:
        """{task name: TaskData} with ``rows_per_task`` reviews of ~100 words per task."""
        from mtl_core.data import synthetic_reviews

        key = (workload.vocab_size, workload.tasks)
        made = self._made.get(key)
        if made is None or len(next(iter(made.values()))) < rows_per_task:
            made, _ = synthetic_reviews(
                workload.tasks, n_train=rows_per_task, n_test=1, vocab_size=workload.vocab_size, seed=self.seed
            )
            self._made[key] = made
        return {name: data if len(data) == rows_per_task else data.subset(slice(0, rows_per_task)) for name, data in made.items()}
