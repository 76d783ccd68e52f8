"""Loss weighting: how the per-task losses of a step become the one loss that is back-propagated.

total = sum_t c_t * L_t (+ sum_t s_t for ``uncertainty``), over the tasks present in the step.

sum          c_t = 1 (the blog's recipe)
mean         c_t = 1 / (number of tasks in the step)
fixed        c_t = the user's weight for task t (given as a mapping {task name: weight})
uncertainty  c_t = exp(-s_t), plus s_t: Kendall, Gal & Cipolla (2018) with a learnable
             log-variance s_t = log sigma_t^2 per task, trained with the network, started at 0.
dwa          c_t = T * softmax(r / temperature)_t with r_t = L_t(e-1) / L_t(e-2), the ratio of
             the task's mean training loss in the two previous epochs (Liu, Johns & Davison 2019);
             c_t = 1 for the first two epochs. Computed here, once per epoch, for both backends.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from mtl_core.tasks import TaskSpec

WEIGHTINGS = ("sum", "mean", "fixed", "uncertainty", "dwa")


@dataclass(frozen=True)
class Weighting:
    """A checked weighting for a given tuple of tasks (hashable: a static jit argument)."""

    name: str
    task_names: tuple[str, ...]
    fixed: tuple[float, ...] | None = None
    temperature: float = 2.0

    @property
    def learnable(self) -> bool:
        return self.name == "uncertainty"

    def initial_task_weights(self) -> np.ndarray:
        """Per-task weights (T,) before any training: the fixed ones, else all 1.

        ``mean`` divides them by the number of tasks in each step; ``dwa`` replaces them every epoch.
        """
        if self.name == "fixed":
            return np.array(self.fixed, dtype=np.float64)
        return np.ones(len(self.task_names))

    def effective(self, task_weights: np.ndarray, log_variances: np.ndarray | None = None) -> np.ndarray:
        """The c_t (T,) a step with every task applies, for reports and histories."""
        if self.name == "uncertainty":
            return np.exp(-np.asarray(log_variances, dtype=np.float64))
        if self.name == "mean":
            return np.asarray(task_weights, dtype=np.float64) / len(self.task_names)
        return np.asarray(task_weights, dtype=np.float64)


def resolve_weighting(weighting, tasks: Sequence[TaskSpec], temperature: float = 2.0) -> Weighting:
    """Accept a name in WEIGHTINGS, a {task name: weight} mapping (fixed), or a Weighting."""
    names = tuple(t.name for t in tasks)
    if isinstance(weighting, Weighting):
        if weighting.task_names != names:
            raise ValueError(f"weighting was built for tasks {weighting.task_names}, the model has {names}")
        return weighting
    if isinstance(weighting, Mapping):
        unknown = [k for k in weighting if k not in names]
        missing = [n for n in names if n not in weighting]
        if unknown or missing:
            raise ValueError(
                f"fixed loss weights must name every task exactly once: unknown {unknown}, missing {missing}"
            )
        values = []
        for name in names:
            value = weighting[name]
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
                raise ValueError(f"the loss weight of task {name!r} must be a finite number >= 0, got {value!r}")
            values.append(float(value))
        return Weighting("fixed", names, fixed=tuple(values))
    if weighting == "fixed":
        raise ValueError("fixed weighting needs its weights: pass a mapping {task name: weight}")
    if not isinstance(weighting, str) or weighting not in WEIGHTINGS:
        raise ValueError(f"weighting must be one of {WEIGHTINGS} or a mapping of task weights, got {weighting!r}")
    if not isinstance(temperature, numbers.Real) or not temperature > 0:
        raise ValueError(f"the dwa temperature must be a number > 0, got {temperature!r}")
    return Weighting(weighting, names, temperature=float(temperature))


def dwa_coefficients(epoch_losses: Sequence[Mapping[str, float]], names: Sequence[str], temperature: float) -> np.ndarray:
    """DWA's c_t for the next epoch from the mean training losses of the epochs so far."""
    if len(epoch_losses) < 2:
        return np.ones(len(names))
    last, before = epoch_losses[-1], epoch_losses[-2]
    ratios = np.array([last[n] / before[n] if before[n] > 0 else 1.0 for n in names])
    scaled = np.exp((ratios - ratios.max()) / temperature)
    return len(names) * scaled / scaled.sum()
