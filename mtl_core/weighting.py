"""Loss weightings: how a step's per-task losses become the objectives it differentiates.

A weighting is plain data (a frozen dataclass, hashable: a static jit argument), bound to the
model's task names by ``resolve_weighting``. Its maths is written once, against an ``ArrayOps``
(mtl_core.array_ops), so that both backends run the very same formulas:

``objectives(ops, losses, index, task_weights, state, log_var) -> f``: one objective f_i per task
present in the step. The summed step back-propagates sum_i f_i; an aggregator (mtl_core.aggregation)
combines the trunk gradients of the f_i instead, and every head gets the gradient of its own f_i.
``task_weights`` (T,) are the c_t the host decides for the step: the fixed weights, DWA's weights of
the epoch, RLW's draw. ``state`` is the weighting's own state between steps (``init_state``), which
``update_state`` advances after the optimiser step (FAMO).

sum          f_t = c_t L_t with c_t = 1 (the blog's recipe)
mean         f_t = c_t L_t / (number of tasks in the step)
fixed        f_t = c_t L_t with the user's c_t
uncertainty  f_t = exp(-s_t) L_t + s_t, s_t a learnable log-variance started at 0 (Kendall, Gal &
             Cipolla 2018); s lives with the parameters and is trained by the optimiser
dwa          c_t = T softmax(r / temperature)_t, r_t = L_t(e-1) / L_t(e-2) from the two previous
             epochs' mean training losses, c_t = 1 in the first two (Liu, Johns & Davison 2019)
famo         FAMO (Liu, Liu, Stone & Liu 2023, Algorithm 1): f_t = (z_t / C) log(L_t + eps) with
             z = softmax(xi) over the present tasks and C = sum_t z_t / (L_t + eps), both held
             constant under differentiation; after the step, xi <- xi - lr (J_z^T delta + decay xi)
             with delta_t = log(L_t + eps) - log(L_t' + eps), L' the losses of the same batches
             under the updated parameters
rlw          f_t = softmax(p)_t L_t over the present tasks, p ~ N(0, I) drawn afresh for every step
             from the seed (Lin et al. 2022, Random Loss Weighting)
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from mtl_core.array_ops import ArrayOps
from mtl_core.tasks import TaskSpec

WEIGHTINGS = ("sum", "mean", "fixed", "uncertainty", "dwa", "famo", "rlw")


def pick(values, index: Sequence[int]):
    """values[index] (a per-task array at the present tasks' positions); values itself when every
    task is present in order, the common case, which spares torch an indexing op per step."""
    index = list(index)
    return values if index == list(range(len(values))) else values[np.asarray(index)]


def _positive(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or not value > 0:
        raise ValueError(f"{what} must be a number > 0, got {value!r}")
    return float(value)


def _non_negative(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{what} must be a finite number >= 0, got {value!r}")
    return float(value)


def check_task_weights(values, num_tasks: int) -> np.ndarray:
    """A direct step's ``task_weights`` as float64 (T,): finite and >= 0, as a fixed weighting's must be
    (NaN or inf would turn the weights to NaN; a negative weight trains by gradient ascent)."""
    try:
        weights = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        shown = values.tolist() if isinstance(values, np.ndarray) else values
        raise TypeError(f"task_weights must be {num_tasks} numbers, got {shown!r}") from None
    if weights.shape != (num_tasks,):
        raise ValueError(f"task_weights must have shape ({num_tasks},), got {weights.shape}")
    if not np.all(np.isfinite(weights) & (weights >= 0)):
        raise ValueError(f"task_weights must be finite numbers >= 0, got {weights.tolist()}")
    return weights


@dataclass(frozen=True)
class Weighting:
    """The shared behaviour; subclasses set ``name`` and override what differs.

    ``task_names`` is empty until ``resolve_weighting`` binds the weighting to a model's tasks.
    """

    name: ClassVar[str]
    learnable: ClassVar[bool] = False  # has parameters the optimiser trains (uncertainty)
    stateful: ClassVar[bool] = False  # carries state from step to step (famo)
    uses_epoch_losses: ClassVar[bool] = False  # its weights follow the previous epochs' losses (dwa)
    random_weights: ClassVar[bool] = False  # draws its weights for every step (rlw)
    task_names: tuple[str, ...] = ()

    # -- what the host decides --------------------------------------------------------------------
    def initial_task_weights(self) -> np.ndarray:
        """The c_t (T,) before any training: the fixed weights, else all 1."""
        return np.ones(len(self.task_names))

    def epoch_task_weights(self, epoch_losses: Sequence[Mapping[str, float]]) -> np.ndarray:
        """The c_t (T,) of the next epoch, from the mean training losses of the epochs so far."""
        del epoch_losses
        return self.initial_task_weights()

    def step_task_weights(self, epoch_weights: np.ndarray, key: tuple[int, ...]) -> np.ndarray:
        """The c_t (T,) of the step drawn under ``key``: the epoch's, unless the weighting draws its own."""
        del key
        return epoch_weights

    def init_state(self) -> dict[str, np.ndarray]:
        """The weighting's state between steps (float64 numpy; backends cast it): none by default."""
        return {}

    # -- the maths of a step (ops: numpy, jax or torch) --------------------------------------------
    def objectives(self, ops: ArrayOps, losses, index: Sequence[int], task_weights, state: Mapping, log_var):
        """f (n,) for the losses (n,) of the tasks at model positions ``index`` in this step."""
        del ops, state, log_var
        return pick(task_weights, index) * losses

    def update_state(self, ops: ArrayOps, state: Mapping, index: Sequence[int], before, after) -> dict:
        """The state after a step whose present tasks had losses ``before`` and ``after`` the update."""
        del ops, index, before, after
        return dict(state)

    # -- reports ----------------------------------------------------------------------------------
    def effective(self, task_weights: np.ndarray, log_variances=None, state: Mapping | None = None) -> np.ndarray:
        """The c_t (T,) a step with every task applies, for histories and reports."""
        del log_variances, state
        return np.asarray(task_weights, dtype=np.float64)

    def config(self) -> dict:
        """JSON-safe description: the name and the options (checkpoints and reports)."""
        options = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "task_names"}
        return {"name": self.name, **{k: list(v) if isinstance(v, tuple) else v for k, v in options.items()}}

    def bind(self, names: tuple[str, ...]) -> "Weighting":
        """This weighting for a model whose tasks are ``names`` (checked)."""
        if self.task_names and self.task_names != names:
            raise ValueError(f"weighting was built for tasks {self.task_names}, the model has {names}")
        return self if self.task_names == names else dataclasses.replace(self, task_names=names)


@dataclass(frozen=True)
class Sum(Weighting):
    name: ClassVar[str] = "sum"


@dataclass(frozen=True)
class Mean(Weighting):
    name: ClassVar[str] = "mean"

    def objectives(self, ops, losses, index, task_weights, state, log_var):
        return super().objectives(ops, losses, index, task_weights, state, log_var) / len(index)

    def effective(self, task_weights, log_variances=None, state=None):
        return np.asarray(task_weights, dtype=np.float64) / len(self.task_names)


@dataclass(frozen=True)
class Fixed(Weighting):
    """The user's weight per task: ``weights`` {task name: weight >= 0} (held as sorted pairs)."""

    name: ClassVar[str] = "fixed"
    weights: tuple[tuple[str, float], ...] | Mapping[str, float] = ()

    def __post_init__(self):
        pairs = self.weights.items() if isinstance(self.weights, Mapping) else self.weights
        checked = []
        for task, value in pairs:
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value) or value < 0:
                raise ValueError(f"the loss weight of task {task!r} must be a finite number >= 0, got {value!r}")
            checked.append((task, float(value)))
        object.__setattr__(self, "weights", tuple(checked))

    @property
    def fixed(self) -> tuple[float, ...]:
        """The weights in the model's task order (once bound)."""
        given = dict(self.weights)
        return tuple(given[name] for name in self.task_names)

    def initial_task_weights(self) -> np.ndarray:
        return np.array(self.fixed, dtype=np.float64)

    def config(self) -> dict:
        return {"name": self.name, "weights": dict(self.weights)}

    def bind(self, names):
        if self.task_names:
            return super().bind(names)
        given = dict(self.weights)
        unknown = [k for k in given if k not in names]
        missing = [n for n in names if n not in given]
        if unknown or missing:
            raise ValueError(f"fixed loss weights must name every task exactly once: unknown {unknown}, missing {missing}")
        return Fixed(task_names=names, weights=tuple((n, given[n]) for n in names))


@dataclass(frozen=True)
class Uncertainty(Weighting):
    name: ClassVar[str] = "uncertainty"
    learnable: ClassVar[bool] = True

    def objectives(self, ops, losses, index, task_weights, state, log_var):
        s = pick(log_var, index)
        return ops.xp.exp(-s) * losses + s

    def effective(self, task_weights, log_variances=None, state=None):
        return np.exp(-np.asarray(log_variances, dtype=np.float64))


@dataclass(frozen=True)
class DWA(Weighting):
    name: ClassVar[str] = "dwa"
    uses_epoch_losses: ClassVar[bool] = True
    temperature: float = 2.0

    def __post_init__(self):
        object.__setattr__(self, "temperature", _positive(self.temperature, "the dwa temperature"))

    def epoch_task_weights(self, epoch_losses):
        return dwa_coefficients(epoch_losses, self.task_names, self.temperature)


def dwa_coefficients(epoch_losses: Sequence[Mapping[str, float]], names: Sequence[str], temperature: float) -> np.ndarray:
    """DWA's c_t for the next epoch from the mean training losses of the epochs so far."""
    if len(epoch_losses) < 2:
        return np.ones(len(names))
    last, before = epoch_losses[-1], epoch_losses[-2]
    ratios = np.array([last[n] / before[n] if before[n] > 0 else 1.0 for n in names])
    scaled = np.exp((ratios - ratios.max()) / temperature)
    return len(names) * scaled / scaled.sum()


def _softmax(ops: ArrayOps, logits):
    scaled = ops.xp.exp(logits - ops.xp.amax(logits, axis=0))
    return scaled / ops.xp.sum(scaled, axis=0)


@dataclass(frozen=True)
class FAMO(Weighting):
    """FAMO's Algorithm 1, with the official code's defaults (lr 0.025, decay 0.01, eps 1e-8).

    The logits xi update with the paper's plain gradient step (the official code uses Adam for
    them); only the present tasks' logits move. ``eps`` keeps log(L) finite at L = 0.
    """

    name: ClassVar[str] = "famo"
    stateful: ClassVar[bool] = True
    lr: float = 0.025
    decay: float = 0.01
    eps: float = 1e-8

    def __post_init__(self):
        object.__setattr__(self, "lr", _positive(self.lr, "the famo lr"))
        object.__setattr__(self, "decay", _non_negative(self.decay, "the famo decay"))
        object.__setattr__(self, "eps", _positive(self.eps, "the famo eps"))

    def init_state(self):
        return {"logits": np.zeros(len(self.task_names))}

    def objectives(self, ops, losses, index, task_weights, state, log_var):
        shifted = losses + self.eps
        z = _softmax(ops, pick(state["logits"], index))
        scale = ops.stop_gradient(z / ops.xp.sum(z / shifted, axis=0))
        return scale * ops.xp.log(shifted)

    def update_state(self, ops, state, index, before, after):
        logits = state["logits"]
        z = _softmax(ops, pick(logits, index))
        delta = ops.xp.log(before + self.eps) - ops.xp.log(after + self.eps)
        step = z * (delta - ops.xp.sum(z * delta, axis=0)) + self.decay * pick(logits, index)  # softmax's Jacobian is symmetric
        present = pick(ops.eye(len(self.task_names), logits), index)  # (n, T): scatter without in-place writes
        return {"logits": logits - self.lr * (step @ present)}

    def effective(self, task_weights, log_variances=None, state=None):
        logits = np.asarray(state["logits"], dtype=np.float64)
        z = np.exp(logits - logits.max())
        return z / z.sum()


@dataclass(frozen=True)
class RLW(Weighting):
    """Random loss weighting: every step draws p ~ N(0, I_T) from ``(seed, *key)`` in numpy, so both
    backends use the same weights; the present tasks weigh softmax(p) over themselves."""

    name: ClassVar[str] = "rlw"
    random_weights: ClassVar[bool] = True
    seed: int = 0

    def __post_init__(self):
        if isinstance(self.seed, bool) or not isinstance(self.seed, numbers.Integral) or self.seed < 0:
            raise ValueError(f"the rlw seed must be an int >= 0, got {self.seed!r}")

    def step_task_weights(self, epoch_weights, key):
        del epoch_weights
        return np.random.default_rng([self.seed, *key]).standard_normal(len(self.task_names))

    def objectives(self, ops, losses, index, task_weights, state, log_var):
        return _softmax(ops, pick(task_weights, index)) * losses

    def effective(self, task_weights, log_variances=None, state=None):
        p = np.asarray(task_weights, dtype=np.float64)
        return np.exp(p - p.max()) / np.exp(p - p.max()).sum()


_BY_NAME = {cls.name: cls for cls in (Sum, Mean, Fixed, Uncertainty, DWA, FAMO, RLW)}


def resolve_weighting(weighting: Any, tasks: Sequence[TaskSpec], **options) -> Weighting:
    """A Weighting bound to ``tasks`` from a name in WEIGHTINGS (``options`` go to its class), a
    {task name: weight} mapping (fixed), or a Weighting (unbound, or bound to the same tasks)."""
    names = tuple(t.name for t in tasks)
    return as_weighting(weighting, **options).bind(names)


def as_weighting(weighting: Any, **options) -> Weighting:
    """A Weighting, not yet bound to tasks, from any of the forms ``resolve_weighting`` accepts."""
    if isinstance(weighting, Weighting):
        return weighting
    if isinstance(weighting, Mapping):
        return Fixed(weights=weighting)
    if weighting == "fixed":
        raise ValueError("fixed weighting needs its weights: pass a mapping {task name: weight}")
    if not isinstance(weighting, str) or weighting not in _BY_NAME:
        raise ValueError(f"weighting must be one of {WEIGHTINGS} or a mapping of task weights, got {weighting!r}")
    return _BY_NAME[weighting](**options)


def weighting_from_config(config: Mapping, tasks: Sequence[TaskSpec]) -> Weighting:
    """The inverse of ``Weighting.config()``, bound to ``tasks``; unknown names raise ValueError."""
    name = config.get("name")
    if name == "fixed":  # checkpoints before the weights were named held them as a list in task order
        weights = config["weights"] if "weights" in config else dict(zip((t.name for t in tasks), config["fixed"]))
        return resolve_weighting(weights, tasks)
    cls = _BY_NAME.get(name)
    if cls is None:
        raise ValueError(f"unknown weighting {name!r}; known: {WEIGHTINGS}")
    fields = {f.name for f in dataclasses.fields(cls)} - {"task_names"}
    return resolve_weighting(name, tasks, **{k: v for k, v in config.items() if k in fields})
