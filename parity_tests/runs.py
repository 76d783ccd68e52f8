"""Training runs of each backend on a drawn stream of batches, read back as comparable trees."""

from __future__ import annotations

from dataclasses import dataclass

import jax
import numpy as np

import jax_impl
import torch_ref
from torch_ref.step import LOG_VARIANCE_GROUP

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
from parity_tests.strategies import AdamSettings, FitProblem, Problem, WeightingChoice

Steps = list  # [{task name: Batch}], one dict per step


@dataclass
class Outcome:
    """What a run of steps leaves: each step's reported losses, the weights, Adam's m, v and steps."""

    losses: list
    weights: dict
    adam: dict

    def tree(self) -> dict:
        return {"losses": self.losses, "weights": self.weights, "adam": self.adam}


class TorchRun:
    """torch_ref's step on a problem's initial weights, with its optimiser kept for inspection."""

    def __init__(self, problem: Problem, adam: AdamSettings, weighting: WeightingChoice, dtype, params=None):
        self.problem, self.weighting = problem, weighting
        self.model = torch_model(problem, problem.initial_params(dtype) if params is None else params)
        self.optimizer = torch_adam(adam, self.model.parameters())
        self.step = torch_ref.make_train_step(self.model, self.optimizer, weighting.weighting)

    def run(self, steps: Steps) -> list:
        weights = self.weighting.task_weights
        return [self.step(torch_batches(self.problem, batches), task_weights=weights) for batches in steps]

    def outcome(self, losses: list) -> Outcome:
        log_var = self.step.log_variances
        return Outcome(losses, torch_weights(self.model, log_var), torch_adam_state(self.model, self.optimizer, log_var))


class JaxRun:
    """jax_impl's jitted step on the same weights; sparse batches padded to one width per run."""

    def __init__(self, problem: Problem, adam: AdamSettings, weighting: WeightingChoice, dtype, params=None):
        self.problem, self.weighting = problem, weighting
        self.module = jax_module(problem)
        self.step = jax_impl.make_train_step(self.module, optax_adam(adam), weighting.weighting)
        start = problem.initial_params(dtype) if params is None else params
        self.params = self.step.init_params(jax_impl.import_params(start, self.module))
        self.opt_state = self.step.init(self.params)

    def run(self, steps: Steps, width: int | None = None) -> list:
        width = stream_width(steps) if width is None else width
        losses = []
        for batches in steps:
            self.params, self.opt_state, reported = self.step(
                self.params, self.opt_state, jax_batches(self.problem, batches, width), task_weights=self.weighting.task_weights
            )
            losses.append({name: float(value) for name, value in reported.items()})
        return losses

    def snapshot(self):
        """A copy of params and optimiser state: the step donates (invalidates) the ones it is given."""
        return jax.tree_util.tree_map(np.array, (self.params, self.opt_state))

    def outcome(self, losses: list) -> Outcome:
        return Outcome(losses, jax_canonical(self.params), jax_adam_state(self.opt_state))


def run_both(problem: Problem, steps: Steps, adam: AdamSettings, weighting: WeightingChoice, dtype, jax_adam=None):
    """(torch Outcome, jax Outcome) of the same steps from the same weights; ``jax_adam`` overrides jax's Adam."""
    torch_run = TorchRun(problem, adam, weighting, dtype)
    jax_run = JaxRun(problem, adam if jax_adam is None else jax_adam, weighting, dtype)
    return torch_run.outcome(torch_run.run(steps)), jax_run.outcome(jax_run.run(steps))


def torch_log_var(optimizer):
    """The log-variances torch_ref's step added to the optimizer (uncertainty weighting), else None."""
    return next((g["params"][0] for g in optimizer.param_groups if g.get("name") == LOG_VARIANCE_GROUP), None)


def fit_both(case: FitProblem, dtype) -> tuple[dict, dict]:
    """(torch, jax) {"history", "weights", "adam"} after ``fit`` on the case, from the same weights."""
    data, eval_data = case.data(0), case.data(1)
    problem, start = case.problem, case.problem.initial_params(dtype)
    arguments = dict(
        epochs=case.epochs, batch_size=case.batch_size, lr=case.lr, seed=problem.seed, curriculum=case.curriculum,
        eval_data=eval_data, weighting=case.weighting, grad_norm_every=case.grad_norm_every,
    )
    model = torch_model(problem, start)
    optimizer = torch_ref.adam(model, case.lr)
    _, torch_history = torch_ref.fit(model, data, optimizer=optimizer, **arguments)
    log_var = torch_log_var(optimizer)
    module = jax_module(problem)
    params, jax_history, opt_state = jax_impl.fit(
        module, data, params=jax_impl.import_params(start, module), return_opt_state=True, **arguments
    )
    return (
        {"history": torch_history, "weights": torch_weights(model, log_var), "adam": torch_adam_state(model, optimizer, log_var)},
        {"history": jax_history, "weights": jax_canonical(params), "adam": jax_adam_state(opt_state)},
    )
