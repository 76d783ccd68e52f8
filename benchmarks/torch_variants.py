"""The torch_ref variants: its ``fit``, its step on pre-cut sparse or dense batches, and torch.compile."""

from __future__ import annotations

import torch

import torch_ref
from torch_ref.inputs import sparse_rows
from benchmarks.batches import CsrStep, cycle, precut_steps
from benchmarks.context import LEARNING_RATE, Context, MakeRunner, check_steps
from benchmarks.seed_recipe import SeedRecipe


def new_model(ctx: Context) -> torch_ref.MultiTaskNetwork:
    torch.manual_seed(ctx.seed)
    w = ctx.workload
    return torch_ref.MultiTaskNetwork(w.vocab_size, w.tasks, hidden_dims=(w.hidden,), activation="sigmoid").to(ctx.device.torch)


def fused_adam(parameters) -> torch.optim.Adam:
    """The Adam torch_ref.fit uses by default: one fused kernel over all parameters."""
    return torch.optim.Adam(parameters, lr=LEARNING_RATE, fused=True)


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


def fit(ctx: Context, aggregator: str | None = None) -> MakeRunner:
    """torch_ref.fit for one epoch of ``steps`` steps: batches cut from CSR inside the timed loop.

    ``aggregator``: a name of mtl_core.aggregation.AGGREGATORS (the aggregator study), None for the summed step.
    """
    model = new_model(ctx)

    def make(steps: int):
        data = ctx.first_rows(steps)

        def run():
            _, history = torch_ref.fit(model, data, epochs=1, batch_size=ctx.workload.batch_size, lr=LEARNING_RATE, seed=ctx.seed,
                                       aggregator=aggregator)
            ctx.device.torch_sync()
            check_steps("torch_ref.fit", history["steps"][0], steps)

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
