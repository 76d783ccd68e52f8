"""Both backends built from one drawn problem, and their state read back in the canonical layout.

The readers here are the tests' own, written from the layout's definition (kernels (in, out);
``nn.Linear.weight`` is (out, in), ``SparseLinear.weight`` already (in, out)) rather than taken
from the library's exporters, so that the suite checks those exporters instead of trusting them.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Mapping

import jax
import numpy as np
import optax
import torch
from torch import nn

import jax_impl
import torch_ref
from jax_impl.losses import task_loss as jax_task_loss
from torch_ref.inputs import as_labels
from torch_ref.losses import task_loss as torch_task_loss
from mtl_core import pad_rows
from mtl_core.sparse import bucket_width, max_row_nnz
from parity_tests.strategies import AdamSettings, Batch, Problem

TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float64): torch.float64}
# The suite's own jitted wrappers (forward passes, loss gradients) compile at XLA's lowest backend
# optimisation level: five times faster to compile, and still IEEE float32/float64 arithmetic (only
# the summation order of reductions may differ, which the tolerances cover). The library's own
# programs (TrainStep, fit) compile with the defaults users get.
TEST_JIT_OPTIONS = {"xla_backend_optimization_level": 0}


@contextmanager
def precision(dtype):
    """jax x64 on for float64 (off for float32), restored afterwards: other tests share the process."""
    with jax.enable_x64(np.dtype(dtype) == np.float64):
        yield


# -- building -----------------------------------------------------------------------------------------
def torch_model(problem: Problem, params: Mapping[str, np.ndarray]) -> torch_ref.MultiTaskNetwork:
    """A torch_ref network in the params' dtype, holding ``params``."""
    model = torch_ref.MultiTaskNetwork(problem.input_dim, problem.tasks, problem.hidden_dims, problem.activation)
    model.to(TORCH_DTYPES[next(iter(params.values())).dtype])
    torch_ref.import_params(model, params)
    return model


def jax_module(problem: Problem) -> jax_impl.MultiTaskNetwork:
    return jax_impl.MultiTaskNetwork(problem.tasks, problem.hidden_dims, problem.activation)


def torch_adam(settings: AdamSettings, parameters) -> torch.optim.Adam:
    return torch.optim.Adam(parameters, lr=settings.lr, betas=(settings.b1, settings.b2), eps=settings.eps, fused=settings.fused)


def optax_adam(settings: AdamSettings) -> optax.GradientTransformation:
    return optax.adam(settings.lr, b1=settings.b1, b2=settings.b2, eps=settings.eps)


# -- inputs ---------------------------------------------------------------------------------------------
def torch_batches(problem: Problem, batches: Mapping[str, Batch]) -> dict:
    """{task: (x, y[, mask])} for torch_ref: CSR for the problem's sparse tasks, else dense numpy."""
    sparse = dict(zip(problem.names, problem.sparse))
    return {name: _with_mask(b.csr() if sparse[name] else b.x, b) for name, b in batches.items()}


def jax_batches(problem: Problem, batches: Mapping[str, Batch], width: int | None = None) -> dict:
    """{task: (x, y[, mask])} for jax_impl: padded rows (of ``width``) for sparse tasks, else dense."""
    sparse = dict(zip(problem.names, problem.sparse))
    return {name: _with_mask(pad_rows(b.csr(), width) if sparse[name] else b.x, b) for name, b in batches.items()}


def _with_mask(x, batch: Batch) -> tuple:
    return (x, batch.y) if batch.mask is None else (x, batch.y, batch.mask)


def stream_width(batches: list[Mapping[str, Batch]]) -> int:
    """One padded width for every sparse batch of a stream, so that its steps share a program."""
    return bucket_width(max((max_row_nnz(b.csr()) for step in batches for b in step.values()), default=0))


# -- reading state back in the canonical layout ---------------------------------------------------------
def _torch_parameters(model: torch_ref.MultiTaskNetwork, log_var=None):
    """[(canonical name, parameter, stored transposed?)]: nn.Linear keeps kernels (out, in)."""
    layers = [(f"trunk.{i}", layer) for i, layer in enumerate(model.trunk)]
    layers += [(f"heads.{task.name}", head) for task, head in zip(model.tasks, model.heads)]
    named = []
    for name, layer in layers:
        named += [(f"{name}.kernel", layer.weight, isinstance(layer, nn.Linear)), (f"{name}.bias", layer.bias, False)]
    return named + ([("weighting.log_var", log_var, False)] if log_var is not None else [])


def torch_canonical(model, read: Callable[[torch.Tensor], torch.Tensor | None], log_var=None) -> dict:
    """{canonical name: read(parameter) as numpy, in (in, out) layout}; a None read becomes zeros."""
    out = {}
    for name, parameter, transposed in _torch_parameters(model, log_var):
        value = read(parameter)
        value = torch.zeros_like(parameter) if value is None else value.detach()
        out[name] = (value.T if transposed else value).cpu().numpy().copy()
    return out


def torch_weights(model, log_var=None) -> dict:
    return torch_canonical(model, lambda p: p, log_var)


def torch_gradients(model, log_var=None) -> dict:
    return torch_canonical(model, lambda p: p.grad, log_var)


def torch_adam_state(model, optimizer: torch.optim.Optimizer, log_var=None) -> dict:
    """Adam's m, v and step count per parameter (zeros and 0 where Adam has not touched it yet)."""
    state = {key: torch_canonical(model, lambda p, key=key: optimizer.state.get(p, {}).get(key), log_var) for key in ("exp_avg", "exp_avg_sq")}
    steps = {
        name: np.int64(float(optimizer.state.get(parameter, {}).get("step", 0)))
        for name, parameter, _ in _torch_parameters(model, log_var)
    }
    return {"m": state["exp_avg"], "v": state["exp_avg_sq"], "step": steps}


def _canonical_name(path) -> str:
    keys = [str(getattr(entry, "key", entry)) for entry in path]
    return ".".join(keys[1:] if keys[0] == "params" else keys)


def jax_canonical(tree) -> dict:
    """{canonical name: numpy} of a params-shaped tree (params, grads, Adam moments; masked leaves skipped)."""
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {_canonical_name(path): np.array(leaf) for path, leaf in leaves}


def _find_adam(state) -> optax.ScaleByAdamState:
    """The ScaleByAdamState inside one group's state (optax.adam is a chain; inject_hyperparams wraps it)."""
    if isinstance(state, optax.ScaleByAdamState):
        return state
    children = state.values() if isinstance(state, Mapping) else state if isinstance(state, tuple) else ()
    found = [adam for child in children if (adam := _find_adam(child)) is not None]
    return found[0] if found else None


def jax_adam_state(opt_state) -> dict:
    """Adam's m, v and count per canonical name, from the step's per-group optax states."""
    out: dict = {"m": {}, "v": {}, "step": {}}
    for group_state in opt_state.inner_states.values():
        adam = _find_adam(group_state)
        means = jax_canonical(adam.mu)
        out["m"].update(means)
        out["v"].update(jax_canonical(adam.nu))
        out["step"].update({name: np.int64(adam.count) for name in means})
    return out


# -- forward passes and losses --------------------------------------------------------------------------
def jax_logits(module, params, calls: list[tuple[str, object]]) -> list:
    """Logits of each (task name, dense array or PaddedRows) call, all in one jitted program."""
    names = [name for name, _ in calls]
    program = jax.jit(
        lambda p, xs: [module.apply(p, x, task_id=name) for name, x in zip(names, xs)], compiler_options=TEST_JIT_OPTIONS
    )
    return program(params, [x for _, x in calls])


def torch_losses(model: torch_ref.MultiTaskNetwork, batches: Mapping[str, tuple]):
    """(summed loss, {task: loss}) of torch_ref's own loss functions on {task: (x, y[, mask])}."""
    specs = {t.name: t for t in model.tasks}
    losses = {}
    for name, (x, y, *mask) in batches.items():
        labels = as_labels(y, specs[name], torch.device("cpu"))
        row_mask = torch.as_tensor(mask[0]) if mask else None
        losses[name] = torch_task_loss(specs[name], model(x, task_id=name), labels, row_mask)
    return sum(losses.values()), losses


def _jax_loss_inputs(module, batches: Mapping[str, tuple]):
    """The summed-loss function of jax_impl's own losses, and its arguments (numpy, passed to jit as is)."""
    specs = {t.name: t for t in module.tasks}
    names = list(batches)

    def loss(p, xs, ys, masks):
        losses = {}
        for name, x, y, mask in zip(names, xs, ys, masks):
            losses[name] = jax_task_loss(specs[name], module.apply(p, x, task_id=name), y, mask)
        return sum(losses.values()), losses

    masks = [b[2] if len(b) == 3 else np.ones(len(b[1]), np.float32) for b in batches.values()]
    return loss, ([b[0] for b in batches.values()], [b[1] for b in batches.values()], masks)


def jax_losses(module, params, batches: Mapping[str, tuple]):
    """(summed loss, {task: loss}) of jax_impl's own loss functions on {task: (x, y[, mask])}."""
    loss, args = _jax_loss_inputs(module, batches)
    return jax.jit(loss, compiler_options=TEST_JIT_OPTIONS)(params, *args)


def jax_gradients(module, params, batches: Mapping[str, tuple]):
    """Gradients (a params-shaped tree) of the summed loss of ``jax_losses``."""
    loss, args = _jax_loss_inputs(module, batches)
    return jax.jit(jax.grad(lambda *a: loss(*a)[0]), compiler_options=TEST_JIT_OPTIONS)(params, *args)
