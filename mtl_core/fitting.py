"""The epoch loop both backends' ``fit`` share: schedule, batches, metrics and history.

Only the training step and the forward pass differ between the twins; they come in through a
small ``Trainer`` object. Sharing the loop is what makes the two ``fit``s see the same batches in
the same order and return histories of the same structure.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Mapping, Protocol, Sequence

import numpy as np
import scipy.sparse as sp

from mtl_core.architecture import Architecture
from mtl_core.config import TrainConfig
from mtl_core.curricula import epoch_schedule, same_task_runs
from mtl_core.data.task_data import TaskData
from mtl_core.metrics import task_metric
from mtl_core.plans import draw_step

EVAL_CHUNK = 4096

# One step's batches: {task name: (X rows as CSR, canonical labels)}.
StepBatches = dict[str, tuple[sp.csr_matrix, np.ndarray]]


@dataclass
class RunResult:
    """What a backend returns for a run of K steps that train the same tasks.

    losses: {task name: (K,)} mean loss of each step's batch; total: (K,) the combined loss;
    grad_norms: (K, layers) L2 norm of each layer's gradient (kernel and bias), rows where
    ``record_norms`` was False may hold anything; residuals: (K,) the aggregator's solver residual
    (None without an aggregator). Arrays may live on a device until the epoch ends.
    """

    losses: dict
    total: object
    grad_norms: object
    residuals: object = None


@dataclass
class RunPlan:
    """What the loop decides for a run of K steps: each step's loss weights, which steps record norms."""

    task_weights: np.ndarray  # (K, T) the c_t of each step over all model tasks (mtl_core.weighting)
    record_norms: np.ndarray  # (K,) bool
    orders: np.ndarray | None = None  # (K, n, n - 1) int32: PCGrad's task orders (mtl_core.plans), else None


class Trainer(Protocol):
    def train_run(self, steps: list[StepBatches], plan: RunPlan) -> RunResult:
        """Run one optimiser step per entry of ``steps``."""

    def predict_logits(self, task_index: int, X: sp.csr_matrix) -> np.ndarray:
        """Logits (n, num_outputs) of one task's head."""

    def weighting_state(self) -> dict[str, np.ndarray]:
        """The weighting's learnt log-variances ("log_var", uncertainty) and own state (e.g. FAMO's logits)."""


def check_task_data(data, arch: Architecture, what: str = "data", training: bool = True) -> dict[str, TaskData]:
    """Check a {task name: TaskData} mapping against the network; return it in the model's task order.

    Training data must hold two classes of every classification task; held-out data
    (``training=False``) may hold one, as a small split of a real column can.
    """
    if not isinstance(data, Mapping):
        raise TypeError(f"{what} must be a dict of task name -> TaskData, got {type(data).__name__}")
    if not data:
        raise ValueError(f"{what} must hold at least one task, got an empty dict")
    specs = {t.name: t for t in arch.tasks}
    for name, task_data in data.items():
        if name not in specs:
            raise ValueError(f"{what} names task {name!r}, which the model lacks; its tasks are {list(specs)}")
        if not isinstance(task_data, TaskData):
            raise TypeError(f"{what}[{name!r}] must be a TaskData, got {type(task_data).__name__}")
        if task_data.spec != specs[name]:
            raise ValueError(f"{what}[{name!r}] was built for {task_data.spec}, the model has {specs[name]}")
        if arch.input_dim is not None and task_data.input_dim != arch.input_dim:
            raise ValueError(
                f"{what}[{name!r}] has {task_data.input_dim} features, the model expects input_dim={arch.input_dim}"
            )
        if training and task_data.classes() == 1:
            raise ValueError(
                f"{what}[{name!r}] holds one class of its {task_data.spec.kind} labels: a classifier cannot learn from it"
            )
    return {t.name: data[t.name] for t in arch.tasks if t.name in data}


def _step_batches(step: dict[str, np.ndarray], data: Mapping[str, TaskData]) -> StepBatches:
    return {name: (data[name].X[rows], data[name].y[rows]) for name, rows in step.items()}


def predict_in_chunks(trainer: Trainer, task_index: int, X: sp.csr_matrix) -> np.ndarray:
    parts = [trainer.predict_logits(task_index, X[i : i + EVAL_CHUNK]) for i in range(0, X.shape[0], EVAL_CHUNK)]
    return np.concatenate(parts, axis=0)


class _EpochLog:
    """Sums of one epoch's step results, turned into means once the epoch ends."""

    def __init__(self, arch: Architecture):
        self.arch = arch
        self.runs: list[tuple[list[StepBatches], np.ndarray, RunResult]] = []

    def add(self, steps, record, result: RunResult) -> None:
        self.runs.append((steps, record, result))

    def residuals(self) -> np.ndarray:
        """(steps,) the aggregator's solver residual of each step of the epoch."""
        return np.concatenate([np.asarray(result.residuals, np.float64) for _, _, result in self.runs] or [np.zeros(0)])

    def summary(self) -> tuple[dict[str, float], float, np.ndarray, int]:
        loss_sum: dict[str, float] = {}
        rows: dict[str, int] = {}
        totals: list[np.ndarray] = []
        layer_index = {name: i for i, name in enumerate(self.arch.layer_names)}
        norm_sum, norm_count = np.zeros(len(layer_index)), np.zeros(len(layer_index))
        for steps, record, result in self.runs:
            for name, values in result.losses.items():
                counts = np.array([step[name][1].shape[0] for step in steps], dtype=np.float64)
                loss_sum[name] = loss_sum.get(name, 0.0) + float(np.dot(np.asarray(values, np.float64), counts))
                rows[name] = rows.get(name, 0) + int(counts.sum())
            totals.append(np.asarray(result.total, np.float64))
            if record.any():
                columns = [layer_index[layer] for layer in self._run_layers(steps[0])]
                norm_sum[columns] += np.asarray(result.grad_norms, np.float64)[record].sum(axis=0)
                norm_count[columns] += record.sum()
        means = {name: loss_sum[name] / rows[name] for name in loss_sum}
        n_steps = sum(len(t) for t in totals)
        total = float(np.concatenate(totals).mean()) if n_steps else math.nan
        # A layer's norm: its mean over the recorded steps that trained it (0 if none did: no gradient).
        norms = np.divide(norm_sum, norm_count, out=np.zeros_like(norm_sum), where=norm_count > 0)
        return means, total, norms, n_steps

    def _run_layers(self, step: StepBatches) -> list[str]:
        """Layers whose norms a run reports: the trunk, then the heads of its tasks in model order."""
        trunk = [f"trunk.{i}" for i in range(len(self.arch.hidden_dims))]
        return trunk + [f"heads.{t.name}" for t in self.arch.tasks if t.name in step]


def norm_steps(schedule: list[dict], every: int) -> np.ndarray:
    """Which steps of an epoch record gradient norms: every ``every``-th step from the first, and
    the first step of each task not yet recorded in the epoch, so that every head trained in an
    epoch has a norm (one task per step, as in ``sequential``, could otherwise miss a head)."""
    record = np.zeros(len(schedule), dtype=bool)
    seen: set[str] = set()
    for i, step in enumerate(schedule):
        if i % every == 0 or not step.keys() <= seen:
            record[i] = True
            seen |= step.keys()
    return record


def new_history(arch: Architecture, with_eval: bool, with_solver: bool = False) -> dict:
    """The history both backends return: per-epoch lists, keyed by task and by layer.

    With an aggregator, "solver" holds its largest residual and its unconverged steps per epoch.
    """
    history = {
        "epoch": [],
        "steps": [],
        "loss": {t.name: [] for t in arch.tasks},
        "total_loss": [],
        "grad_norm": {layer: [] for layer in arch.layer_names},
        "loss_weights": {t.name: [] for t in arch.tasks},
    }
    if with_eval:
        history["f1"] = {t.name: [] for t in arch.tasks}
    if with_solver:
        history["solver"] = {"max_residual": [], "unconverged_steps": []}
    return history


def fit_loop(
    trainer: Trainer,
    *,
    arch: Architecture,
    config: TrainConfig,
    data: Mapping[str, TaskData],
    eval_data: Mapping[str, TaskData] | None = None,
    run_length: int = 1,
    previous_losses: Mapping[str, Sequence[float]] | None = None,
) -> dict:
    """Train for ``config.epochs`` epochs and return the history (see ``new_history``).

    ``config.weighting`` must be bound to ``arch.tasks`` (mtl_core.weighting.resolve_weighting).
    Epochs are numbered from ``config.first_epoch``: a run resumed from a checkpoint after k epochs
    passes k and draws exactly the batches the uninterrupted run would have drawn.
    ``previous_losses`` ({task: per-epoch training losses}, the earlier run's ``history["loss"]``)
    lets ``dwa`` weighting resume with the weights the uninterrupted run would have used (an empty
    dict: a new training run that starts at a later epoch, with no earlier losses). Step
    ``i`` of epoch ``e`` draws its random choices (RLW's weights) under the key ``(e, i)``.
    """
    data = check_task_data(data, arch)
    eval_data = None if eval_data is None else check_task_data(eval_data, arch, "eval_data", training=False)
    weighting = config.weighting
    sizes = {name: len(task_data) for name, task_data in data.items()}
    names = [t.name for t in arch.tasks]
    history = new_history(arch, eval_data is not None, config.aggregator is not None)
    epoch_losses = _previous_losses(previous_losses, names)
    if weighting.uses_epoch_losses and config.first_epoch >= 2 and previous_losses is None:
        raise ValueError(
            f"{weighting.name} weighting sets each epoch's loss weights from the two previous epochs' training losses; "
            f"a run resumed at first_epoch={config.first_epoch} needs them: pass previous_losses=<the earlier history['loss']>"
        )
    bar = _progress_bar(config.epochs, config.progress)
    for epoch in range(config.first_epoch, config.first_epoch + config.epochs):
        epoch_weights = weighting.epoch_task_weights(epoch_losses)
        log = _EpochLog(arch)
        step_index, weights = 0, epoch_weights  # weights: the last step's, for the history
        schedule = epoch_schedule(config.curriculum, sizes, config.batch_size, config.seed, epoch)
        record_all = norm_steps(schedule, config.grad_norm_every)
        for run in same_task_runs(schedule, run_length):
            indices = range(step_index, step_index + len(run))
            draws = [draw_step(weighting, config.aggregator, epoch_weights, (epoch, i), len(run[0])) for i in indices]
            plan = RunPlan(
                task_weights=np.stack([d.task_weights for d in draws]),
                record_norms=record_all[step_index : step_index + len(run)],
                orders=None if draws[0].order is None else np.stack([d.order for d in draws]),
            )
            steps = [_step_batches(step, data) for step in run]
            log.add(steps, plan.record_norms, trainer.train_run(steps, plan))
            step_index += len(run)
            weights = plan.task_weights[-1]
        means, total, norms, n_steps = log.summary()
        epoch_losses.append({name: means.get(name, math.nan) for name in names})
        history["epoch"].append(epoch + 1)
        history["steps"].append(n_steps)
        history["total_loss"].append(total)
        for name in names:
            history["loss"][name].append(means.get(name, math.nan))
        for layer, value in zip(arch.layer_names, norms):
            history["grad_norm"][layer].append(float(value))
        if config.aggregator is not None:
            _record_solver(history["solver"], log.residuals(), config.aggregator.tol)
        state = trainer.weighting_state()
        for name, value in zip(names, weighting.effective(weights, state.get("log_var"), state)):
            history["loss_weights"][name].append(float(value))
        if eval_data is not None:
            for index, task in enumerate(arch.tasks):
                score = math.nan
                if task.name in eval_data:
                    logits = predict_in_chunks(trainer, index, eval_data[task.name].X)
                    score = task_metric(task, logits, eval_data[task.name].y)
                history["f1"][task.name].append(score)
        if bar is not None:
            bar.set_postfix(loss=f"{total:.4f}")
            bar.update(1)
    if bar is not None:
        bar.close()
    if config.aggregator is not None:
        _warn_unconverged(history["solver"], config.aggregator)
    return history


def _record_solver(solver: dict, residuals: np.ndarray, tol: float) -> None:
    """One epoch's solver report: the largest residual and how many steps missed the tolerance."""
    solver["max_residual"].append(float(residuals.max(initial=0.0)) if not np.isnan(residuals).any() else math.nan)
    solver["unconverged_steps"].append(int(np.sum(~(residuals <= tol))))


def _warn_unconverged(solver: dict, aggregator) -> None:
    """Say it when an aggregator's solver missed its tolerance: those steps used its last iterate."""
    missed = sum(solver["unconverged_steps"])
    if missed:
        warnings.warn(
            f"{aggregator.name}: the solver missed its tolerance {aggregator.tol:g} in {missed} steps "
            f"(largest residual per epoch {solver['max_residual']}); those steps used its last iterate, "
            "see history['solver']",
            RuntimeWarning,
            stacklevel=3,
        )


def _previous_losses(previous: Mapping[str, Sequence[float]] | None, names: list[str]) -> list[dict[str, float]]:
    """Per-epoch {task: loss} from a history's "loss" entry (tasks it lacks count as NaN)."""
    if previous is None:
        return []
    if not isinstance(previous, Mapping):
        raise TypeError(f"previous_losses must be a dict of task name -> per-epoch losses, got {type(previous).__name__}")
    unknown = [name for name in previous if name not in names]
    if unknown:
        raise ValueError(f"previous_losses names tasks {unknown} that the model lacks; its tasks are {names}")
    lengths = {len(values) for values in previous.values()}
    if len(lengths) > 1:
        raise ValueError(f"previous_losses must hold as many epochs for every task, got lengths {sorted(lengths)}")
    epochs = lengths.pop() if lengths else 0
    try:
        return [{name: float(previous[name][e]) if name in previous else math.nan for name in names} for e in range(epochs)]
    except (TypeError, ValueError):
        raise TypeError(f"previous_losses must hold numbers (an earlier history['loss']), got {dict(previous)!r:.120}") from None


def _progress_bar(epochs: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=epochs, desc="epochs", unit="epoch")
