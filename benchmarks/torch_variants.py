"""The torch side of the variants: the seed blog's recipe (the baseline), torch_ref's ``fit`` with
Adam or lazy Adam, its step on pre-cut sparse or dense batches, torch.compile, and the fused-Adam floor.

The floor is an optimiser-only Adam update over the model's parameter shapes: every exact Adam step
reads and writes all parameters, gradients and both moments, so no training step can be faster
than the fastest floor (this one, or jax_variants' optax one). A variant's "fraction of the floor"
is floor step time / its step time.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

import torch_ref
from mtl_core import TaskSpec
from mtl_core.data import TaskData
from torch_ref.inputs import sparse_rows
from benchmarks.workloads import FLOOR_GRADIENT, LEARNING_RATE, Context, CsrStep, MakeRunner, check_steps, cycle, precut_steps


def new_model(ctx: Context) -> torch_ref.MultiTaskNetwork:
    torch.manual_seed(ctx.seed)
    w = ctx.workload
    return torch_ref.MultiTaskNetwork(w.vocab_size, w.tasks, hidden_dims=(w.hidden,), activation="sigmoid").to(ctx.device.torch)


def fused_adam(parameters) -> torch.optim.Adam:
    """The Adam torch_ref.fit uses by default: one fused kernel over all parameters."""
    return torch.optim.Adam(parameters, lr=LEARNING_RATE, fused=True)


# --- the baseline: the seed blog's recipe, as published, in our own words -------------------------
# What it does, and what it costs: a ``Dataset`` that densifies one CSR row each time a row is read
# (through int8, as the post does), one shuffling ``DataLoader`` per task, the loaders ``zip``ped so
# that each step takes one batch of every task, a dense ``nn.Linear`` trunk with a sigmoid, one
# Linear head per task, BCE-with-logits for binary tasks and cross-entropy against one-hot float
# targets for the others, the summed loss, ``loss.item()`` logged every step, and the default
# (for-each, not fused) ``torch.optim.Adam``. Data preparation is inside every timed step.


class RowDataset(Dataset):
    """One task's reviews; each row becomes a dense float vector (input_dim,) when it is read."""

    def __init__(self, X: sp.csr_matrix, targets: np.ndarray):
        if X.shape[0] != targets.shape[0]:
            raise ValueError(f"X has {X.shape[0]} rows but targets has {targets.shape[0]}")
        self.X = X
        self.targets = torch.from_numpy(targets).float()

    def __len__(self) -> int:
        return self.targets.shape[0]

    def __getitem__(self, index: int):
        row = torch.from_numpy(np.asarray(self.X[index].astype(np.int8).todense())).float().squeeze()
        return row, self.targets[index]


def float_targets(spec: TaskSpec, y: np.ndarray) -> np.ndarray:
    """The post's targets: a (n, 1) 0/1 column for a binary task, one-hot rows (n, k) otherwise."""
    if spec.kind == "multiclass":
        return np.eye(spec.num_outputs, dtype=np.float32)[y]
    return np.asarray(y, dtype=np.float32).reshape(len(y), -1)


class BlogNetwork(nn.Module):
    """hidden Linear (dense, input_dim -> hidden) -> sigmoid -> the Linear head of ``task_id``."""

    def __init__(self, input_dim: int, head_widths: list[int], hidden_dim: int = 200):
        super().__init__()
        self.hidden = nn.Linear(input_dim, hidden_dim)
        self.finals = nn.ModuleList([nn.Linear(hidden_dim, width) for width in head_widths])

    def forward(self, x: torch.Tensor, task_id: int) -> torch.Tensor:
        return self.finals[task_id](torch.sigmoid(self.hidden(x)))


class SeedRecipe:
    """The post's model, losses, Adam and loaders for ``data``; ``train_epoch`` is its loop."""

    def __init__(self, data: dict[str, TaskData], batch_size: int, hidden: int, lr: float, device: torch.device):
        specs = [task.spec for task in data.values()]
        self.device = device
        self.loaders = [
            DataLoader(RowDataset(task.X, float_targets(task.spec, task.y)), batch_size=batch_size, shuffle=True)
            for task in data.values()
        ]
        input_dim = next(iter(data.values())).input_dim
        self.model = BlogNetwork(input_dim, [s.num_outputs for s in specs], hidden).to(device)
        self.loss_fns = [nn.BCEWithLogitsLoss() if s.kind == "binary" else nn.CrossEntropyLoss() for s in specs]
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.losses: list[float] = []

    def train_epoch(self) -> int:
        """One pass of the zipped loaders; returns the number of optimiser steps taken."""
        steps = 0
        for batches in zip(*self.loaders):
            loss = sum(
                loss_fn(self.model(x.to(self.device), task_id), y.to(self.device))
                for task_id, ((x, y), loss_fn) in enumerate(zip(batches, self.loss_fns))
            )
            self.losses.append(loss.item())
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            steps += 1
        return steps


def seed_recipe(ctx: Context) -> MakeRunner:
    """The blog's loop over a per-row Dataset; a repeat is one epoch of ``steps`` steps."""

    def make(steps: int):
        torch.manual_seed(ctx.seed)
        recipe = SeedRecipe(ctx.first_rows(steps), ctx.workload.batch_size, ctx.workload.hidden, LEARNING_RATE, ctx.device.torch)

        def run():
            check_steps("seed-recipe", recipe.train_epoch(), steps)
            ctx.device.torch_sync()

        return run

    return make


# --- torch_ref -----------------------------------------------------------------------------------


def fit(ctx: Context, aggregator: str | None = None) -> MakeRunner:
    """torch_ref.fit for one epoch of ``steps`` steps: batches cut from CSR inside the timed loop, a
    fresh fused Adam per call (fit's default).

    ``aggregator``: a name of mtl_core.aggregation.AGGREGATORS (the aggregator study), None for the summed step.
    """
    return _fit_runner(ctx, new_model(ctx), "torch_ref.fit", aggregator=aggregator)


def fit_lazy(ctx: Context) -> MakeRunner:
    """torch_ref.fit with lazy Adam, made once here and carried across calls (its state with it)."""
    model = new_model(ctx)
    return _fit_runner(ctx, model, "torch_ref.fit+lazy", optimizer=torch_ref.lazy_adam(model, lr=LEARNING_RATE))


def _fit_runner(ctx: Context, model: torch_ref.MultiTaskNetwork, name: str, **options) -> MakeRunner:
    def make(steps: int):
        data = ctx.first_rows(steps)

        def run():
            _, history = torch_ref.fit(model, data, epochs=1, batch_size=ctx.workload.batch_size, lr=LEARNING_RATE, seed=ctx.seed,
                                       **options)
            ctx.device.torch_sync()
            check_steps(name, history["steps"][0], steps)

        return run

    return make


def _as_tensors(step: CsrStep, device: torch.device, dense: bool) -> dict:
    batches = {}
    for name, (X, y) in step.items():
        if dense:
            x = torch.from_numpy(X.toarray()).to(device)
        else:
            rows = sparse_rows(X)
            x = rows._replace(indices=rows.indices.to(device), offsets=rows.offsets.to(device), values=rows.values.to(device))
        batches[name] = (x, torch.from_numpy(y).to(device))
    return batches


def _step_runner(ctx: Context, model: torch_ref.MultiTaskNetwork, dense: bool) -> MakeRunner:
    step = torch_ref.make_train_step(model, fused_adam(model.parameters()))

    def make(steps: int):
        pool = [_as_tensors(s, ctx.device.torch, dense) for s in precut_steps(ctx, steps, dense)]

        def run():
            cycle(step, pool, steps)
            ctx.device.torch_sync()

        return run

    return make


def step_sparse(ctx: Context) -> MakeRunner:
    """torch_ref.make_train_step called on pre-cut sparse batches (SparseRows on the device)."""
    return _step_runner(ctx, new_model(ctx), dense=False)


def step_dense(ctx: Context) -> MakeRunner:
    """The same step on pre-cut dense (batch, vocab) tensors: what the sparse first layer saves."""
    return _step_runner(ctx, new_model(ctx), dense=True)


def step_compiled(ctx: Context) -> MakeRunner:
    """The sparse step with the model's multi-task forward under torch.compile (its backward too).

    Dynamic shapes: every batch has its own number of non-zeros. The call counter proves that the
    step really went through the compiled function.
    """
    model = new_model(ctx)
    compiled = torch.compile(model.forward_tasks, dynamic=True)
    calls = [0]

    def counted(*args, **kwargs):
        calls[0] += 1
        return compiled(*args, **kwargs)

    model.forward_tasks = counted
    make_plain = _step_runner(ctx, model, dense=False)

    def make(steps: int):
        plain = make_plain(steps)

        def run():
            before = calls[0]
            plain()
            check_steps("torch_ref.step+compile (compiled calls)", calls[0] - before, steps)

        return run

    return make


def fused_adam_floor(ctx: Context) -> MakeRunner:
    """The floor: ``optimizer.step()`` of fused Adam on the torch model's parameters, gradients held fixed."""
    parameters = list(new_model(ctx).parameters())
    for p in parameters:
        p.grad = torch.full_like(p, FLOOR_GRADIENT)
    optimizer = fused_adam(parameters)

    def make(steps: int):
        def run():
            for _ in range(steps):
                optimizer.step()
            ctx.device.torch_sync()

        return run

    return make
