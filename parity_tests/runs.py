"""Training runs of each backend on a drawn stream of batches, read back as comparable trees."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import numpy as np
import scipy.sparse as sp

import jax_impl
import torch_ref
from torch_ref.step import LOG_VARIANCE_GROUP, WEIGHTING_STATE_GROUP

from parity_tests.backends import (
    jax_adam_state,
    jax_batches,
    jax_canonical,
    jax_module,
    optax_adam,
    stream_width,
    torch_adam,
    torch_adam_state,
    torch_batches,
    torch_model,
    torch_weights,
)
from mtl_core.data import TaskData
from mtl_core.tasks import SOLVER_RESIDUAL, TOTAL
from parity_tests.strategies import AdamSettings, FitProblem, Problem, WeightingChoice

Steps = list  # [{task name: Batch}], one dict per step


@dataclass
class Outcome:
    """What a run of steps leaves: each step's reported losses, the weights, Adam's m, v and steps, the
    weighting's own state (FAMO's logits), and each step's solver residual (aggregators; not compared:
    rounding-level numbers whose verdict, not value, must agree)."""

    losses: list
    weights: dict
    adam: dict
    weighting: dict
    residuals: list

    def tree(self) -> dict:
        return {"losses": self.losses, "weights": self.weights, "adam": self.adam, "weighting": self.weighting}


class TorchRun:
    """torch_ref's step on a problem's initial weights, with its optimiser kept for inspection."""

    def __init__(self, problem: Problem, adam: AdamSettings, weighting: WeightingChoice, dtype, params=None, aggregator=None):
        self.problem, self.weighting = problem, weighting
        self.model = torch_model(problem, problem.initial_params(dtype) if params is None else params)
        self.optimizer = torch_adam(adam, self.model.parameters())
        self.step = torch_ref.make_train_step(self.model, self.optimizer, weighting.weighting, aggregator=aggregator)
        self.residuals: list = []

    def run(self, steps: Steps) -> list:
        """Step i draws its random choices under the key (i,) of the run, as JaxRun's."""
        weights, losses = self.weighting.task_weights, []
        for i, batches in enumerate(steps, start=self.step.steps_done):
            report = self.step(torch_batches(self.problem, batches), task_weights=weights, key=(i,))
            self.residuals.append(report.pop(SOLVER_RESIDUAL, 0.0))
            losses.append(report)
        return losses

    def outcome(self, losses: list) -> Outcome:
        log_var = self.step.log_variances
        state = {key: value.detach().numpy().copy() for key, value in self.step.weighting_state.items()}
        return Outcome(losses, torch_weights(self.model, log_var), torch_adam_state(self.model, self.optimizer, log_var), state, self.residuals)


class JaxRun:
    """jax_impl's jitted step (the state-passing form) on the same weights; sparse batches padded to one width per run."""

    def __init__(self, problem: Problem, adam: AdamSettings, weighting: WeightingChoice, dtype, params=None, aggregator=None):
        self.problem, self.weighting = problem, weighting
        self.module = jax_module(problem)
        self.step = jax_impl.make_train_step(self.module, optax_adam(adam), weighting.weighting, aggregator=aggregator)
        start = problem.initial_params(dtype) if params is None else params
        self.state = self.step.init_state(jax_impl.import_params(start, self.module))
        self.residuals: list = []

    def run(self, steps: Steps, width: int | None = None) -> list:
        """Step i draws under the key (i,). The params-passing call (which checks its report's keys)
        serves every weighting but FAMO, whose logits only the state-passing ``apply`` carries."""
        width = stream_width(steps) if width is None else width
        losses = []
        for i, batches in enumerate(steps, start=int(self.state.step)):
            prepared, weights = jax_batches(self.problem, batches, width), self.weighting.task_weights
            if self.step.weighting.stateful:
                self.state, metrics = self.step.apply(self.state, prepared, task_weights=weights, key=(i,))
                report = {**metrics.losses, TOTAL: metrics.total, SOLVER_RESIDUAL: metrics.residual}
            else:
                params, opt_state, report = self.step(self.state.params, self.state.opt_state, prepared, task_weights=weights, key=(i,))
                self.state = self.state._replace(params=params, opt_state=opt_state, step=self.state.step + 1)
            self.residuals.append(float(report.pop(SOLVER_RESIDUAL, 0.0)))
            losses.append({name: float(value) for name, value in report.items()})
        return losses

    def snapshot(self):
        """A copy of the state: the step donates (invalidates) the one it is given."""
        return jax.tree_util.tree_map(np.array, self.state)

    def outcome(self, losses: list) -> Outcome:
        state = {key: np.array(value) for key, value in self.state.weighting.items()}
        return Outcome(losses, jax_canonical(self.state.params), jax_adam_state(self.state.opt_state), state, self.residuals)


def run_both(problem: Problem, steps: Steps, adam: AdamSettings, weighting: WeightingChoice, dtype, jax_adam=None, aggregator=None, jax_aggregator=None):
    """(torch Outcome, jax Outcome) of the same steps from the same weights; ``jax_adam`` and
    ``jax_aggregator`` override jax's Adam and aggregator (negative controls)."""
    torch_run = TorchRun(problem, adam, weighting, dtype, aggregator=aggregator)
    jax_run = JaxRun(problem, adam if jax_adam is None else jax_adam, weighting, dtype, aggregator=jax_aggregator or aggregator)
    return torch_run.outcome(torch_run.run(steps)), jax_run.outcome(jax_run.run(steps))


def torch_log_var(optimizer):
    """The log-variances torch_ref's step added to the optimizer (uncertainty weighting), else None."""
    return next((g["params"][0] for g in optimizer.param_groups if g.get("name") == LOG_VARIANCE_GROUP), None)


def torch_weighting_state(optimizer) -> dict:
    """The weighting's state torch_ref's step keeps in the optimizer (FAMO's logits), else {}."""
    groups = [g for g in optimizer.param_groups if str(g.get("name", "")).startswith(WEIGHTING_STATE_GROUP)]
    return {g["name"][len(WEIGHTING_STATE_GROUP) :]: g["params"][0].detach().numpy().copy() for g in groups}


def solver_verdicts(history: dict) -> dict:
    """A fit's history without the solver's residuals (rounding-level numbers), keeping its verdicts."""
    history = dict(history)
    solver = history.pop("solver", None)
    return history if solver is None else {**history, "unconverged_steps": solver["unconverged_steps"]}


def fit_both(case: FitProblem, dtype, lazy: bool = False) -> tuple[dict, dict]:
    """(torch, jax) {"history", "weights", "adam", "weighting"} after ``fit`` on the case, from the same weights.

    ``lazy``: both fit with lazy Adam (torch_ref.lazy_adam, jax_impl.lazy_adam) on the data as scipy CSR.
    """
    data, eval_data = case.data(0), case.data(1)
    if lazy:
        data = {name: TaskData(sp.csr_matrix(d.X), d.y, d.spec) for name, d in data.items()}
    problem, start = case.problem, case.problem.initial_params(dtype)
    arguments = dict(
        epochs=case.epochs, batch_size=case.batch_size, lr=case.lr, seed=problem.seed, curriculum=case.curriculum,
        eval_data=eval_data, weighting=case.weighting, grad_norm_every=case.grad_norm_every, aggregator=case.aggregator,
    )
    model = torch_model(problem, start)
    optimizer = (torch_ref.lazy_adam if lazy else torch_ref.adam)(model, case.lr)
    _, torch_history = torch_ref.fit(model, data, optimizer=optimizer, **arguments)
    log_var = torch_log_var(optimizer)
    module = jax_module(problem)
    tx = jax_impl.lazy_adam(case.lr) if lazy else None
    params, jax_history, state = jax_impl.fit(
        module, data, params=jax_impl.import_params(start, module), return_state=True, tx=tx, **arguments
    )
    return (
        {
            "history": solver_verdicts(torch_history),
            "weights": torch_weights(model, log_var),
            "adam": torch_adam_state(model, optimizer, log_var),
            "weighting": torch_weighting_state(optimizer),
        },
        {
            "history": solver_verdicts(jax_history),
            "weights": jax_canonical(params),
            "adam": jax_adam_state(state.opt_state),
            "weighting": {key: np.array(value) for key, value in state.weighting.items()},
        },
    )
