"""Pre-cut batches for the step variants, which measure the step alone (no data preparation).

Both backends cut the same rows; only the conversion to their tensors differs. Dense batches can
be large (4096 rows x 20,000 words x 2 tasks is 655 MB), so a step variant cycles through a
bounded pool of them: the work of a step does not depend on which batch it gets.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import scipy.sparse as sp

from mtl_core.data import TaskData
from benchmarks.context import Context

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


def pool_size(steps: int, max_steps: int, step_bytes: int | None) -> int:
    """How many distinct pre-cut steps to hold: one per step up to the data's ``max_steps``, fewer
    when dense ones would pass the memory budget; the step variants cycle through them."""
    count = min(steps, max_steps)
    if step_bytes is not None:
        count = min(count, max(1, DENSE_POOL_BYTES // step_bytes))
    return count


def dense_step_bytes(vocab_size: int, batch_size: int, num_tasks: int) -> int:
    return 4 * vocab_size * batch_size * num_tasks


def precut_steps(ctx: Context, steps: int, dense: bool) -> list[CsrStep]:
    """The CSR steps a step variant cycles through to run ``steps`` steps."""
    w = ctx.workload
    step_bytes = dense_step_bytes(w.vocab_size, w.batch_size, w.num_tasks) if dense else None
    return cut_steps(ctx.data, w.batch_size, pool_size(steps, ctx.max_steps, step_bytes), ctx.seed)


def cycle(step_fn: Callable[[object], None], pool: Sequence, steps: int) -> None:
    """Run ``steps`` steps over the pool's batches in turn."""
    for i in range(steps):
        step_fn(pool[i % len(pool)])
