"""The data side of the benchmark: the workloads (the blog's shape as the headline, and the batch,
vocabulary and task sweeps), their synthetic data, what every variant is given (``Context``), and
the pre-cut batches of the step variants.

Every variant of a workload trains the same model (one trunk of ``hidden`` units, one head per
task, summed loss, Adam or lazy Adam) on the same synthetic reviews. Nothing here imports torch or
jax: run.py checks its arguments against these names first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import numpy as np
import scipy.sparse as sp

from mtl_core import TaskSpec

if TYPE_CHECKING:  # mtl_core.data loads scipy.stats: imported where data is made, so that run.py refuses bad arguments fast
    from mtl_core.data import TaskData
    from benchmarks.environment import Device

HIDDEN = 200  # the blog's hidden width
LEARNING_RATE = 1e-3  # the blog's
FLOOR_GRADIENT = 1e-3  # the floors' fixed gradient: Adam's cost does not depend on its values
SEED_RECIPE = "seed-recipe"  # the baseline every ratio is taken against
RUN_LENGTH = 16  # steps both fits hand their loop at a time (torch_ref.train, jax_impl.train)


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

    @property
    def first_layer_weights(self) -> int:
        """Weights of the first layer's kernel (V, H): what an exact Adam step reads and writes."""
        return self.vocab_size * self.hidden

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
    Workload("vocab128k", 2**17, 64, 2, sweeps=("vocab",)),
    Workload("vocab256k", 2**18, 64, 2, sweeps=("vocab",)),
    Workload("vocab1m", 2**20, 64, 2, sweeps=("vocab",)),
    Workload("tasks8", 20_000, 64, 8, sweeps=("tasks",)),
)
# --quick: the headline plus one more batch size, so the batch plot has a line, and V = 2^18 for
# lazy Adam's target (V = 2^18 against V = 20,000)
QUICK_SWEEPS = ("batch256", "vocab256k")
LAZY_TARGET_VOCAB = 2**18
WORKLOADS = {w.name: w for w in (HEADLINE,) + SWEEPS}
# A workload set measured as a study of its own (a process per measurement, its own report), and only
# when asked for: the cost of the gradient-conflict methods, benchmarks/aggregators.py.
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


def row_density(data: dict[str, TaskData]) -> dict:
    """Non-zeros (distinct words) per row over all tasks' rows: mean and max, and the rows counted."""
    counts = np.concatenate([np.diff(task.X.indptr) for task in data.values()])
    return {"mean": float(counts.mean()), "max": int(counts.max()), "rows": int(counts.size)}


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


# --- what every variant is given ----------------------------------------------------------------

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


# --- pre-cut batches for the step variants, which measure the step alone (no data preparation) ---
# Both backends cut the same rows; only the conversion to their tensors differs. Dense batches can
# be large (4096 rows x 20,000 words x 2 tasks is 655 MB), so a step variant cycles through a
# bounded pool of them: the work of a step does not depend on which batch it gets.

DENSE_POOL_BYTES = 1 << 30

# One step's batches before conversion: {task name: (CSR rows, canonical labels)}.
CsrStep = dict[str, tuple[sp.csr_matrix, np.ndarray]]


def cut_steps(data: dict[str, TaskData], batch_size: int, count: int, seed: int) -> list[CsrStep]:
    """``count`` steps of one shuffled batch per task (rows of each task drawn without repeats)."""
    rng = np.random.default_rng(seed)
    order = {name: rng.permutation(len(task)) for name, task in data.items()}
    steps = []
    for i in range(count):
        step = {}
        for name, task in data.items():
            rows = order[name][i * batch_size : (i + 1) * batch_size]
            step[name] = (task.X[rows], task.y[rows])
        steps.append(step)
    return steps


def dense_batch_bytes(workload: Workload) -> int:
    """Bytes of one step's dense float32 inputs: (batch, V) per task."""
    return 4 * workload.vocab_size * workload.rows_per_step


def pool_size(steps: int, max_steps: int, step_bytes: int | None) -> int:
    """How many distinct pre-cut steps to hold: one per step up to the data's ``max_steps``, fewer
    when dense ones would pass the memory budget; the step variants cycle through them."""
    count = min(steps, max_steps)
    if step_bytes is not None:
        count = min(count, max(1, DENSE_POOL_BYTES // step_bytes))
    return count


def precut_steps(ctx: Context, steps: int, dense: bool) -> list[CsrStep]:
    """The CSR steps a step variant cycles through to run ``steps`` steps."""
    step_bytes = dense_batch_bytes(ctx.workload) if dense else None
    return cut_steps(ctx.data, ctx.workload.batch_size, pool_size(steps, ctx.max_steps, step_bytes), ctx.seed)


def cycle(step_fn: Callable[[object], None], pool: Sequence, steps: int) -> None:
    """Run ``steps`` steps over the pool's batches in turn."""
    for i in range(steps):
        step_fn(pool[i % len(pool)])
