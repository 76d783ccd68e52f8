"""The jax_impl variants: its ``fit``, and its jitted donated step on pre-cut sparse or dense batches.

Arrays land on the run's jax device: the harness runs every variant inside
``jax.default_device(device.jax)``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

import jax_impl
from mtl_core.sparse import PaddedRows, bucket_width, max_row_nnz, pad_rows
from benchmarks.batches import CsrStep, cycle, precut_steps
from benchmarks.context import LEARNING_RATE, Context, MakeRunner, check_steps


def new_module(ctx: Context) -> jax_impl.MultiTaskNetwork:
    return jax_impl.MultiTaskNetwork(ctx.workload.tasks, hidden_dims=(ctx.workload.hidden,), activation="sigmoid")


def new_params(ctx: Context, module: jax_impl.MultiTaskNetwork) -> dict:
    return jax_impl.init_params(module, jax.random.key(ctx.seed), ctx.workload.vocab_size)


def fit(ctx: Context, mesh=None, aggregator: str | None = None) -> MakeRunner:
    """jax_impl.fit for one epoch of ``steps`` steps: padding, stacking and transfers in the timed loop
    (with an aggregator, also the host's per-step plan: K = X Xᵀ of the step's rows, PCGrad's orders).

    ``mesh``: a mesh with a "data" axis, to train data-parallel (the scaling study); ``aggregator``: a
    name of mtl_core.aggregation.AGGREGATORS (the aggregator study), None for the summed step.
    """
    module = new_module(ctx)
    params = new_params(ctx, module)

    def make(steps: int):
        data = ctx.first_rows(steps)

        def run():
            trained, history = jax_impl.fit(
                module, data, epochs=1, batch_size=ctx.workload.batch_size, lr=LEARNING_RATE, seed=ctx.seed, params=params,
                mesh=mesh, aggregator=aggregator,
            )
            jax.block_until_ready(trained)
            check_steps("jax_impl.fit", history["steps"][0], steps)

        return run

    return make


def _as_arrays(steps: list[CsrStep], dense: bool) -> list[dict]:
    """jax arrays of pre-cut steps; sparse rows all padded to one width, so the step compiles once."""
    width = bucket_width(max(max_row_nnz(X) for step in steps for X, _ in step.values()))
    converted = []
    for step in steps:
        batches = {}
        for name, (X, y) in step.items():
            if dense:
                x = jnp.asarray(X.toarray())
            else:
                padded = pad_rows(X, width=width)
                x = PaddedRows(jnp.asarray(padded.indices), jnp.asarray(padded.values), padded.num_features)
            batches[name] = (x, jnp.asarray(y))
        converted.append(batches)
    return converted


class _Trainer:
    """Holds params and optimiser state across calls of the donating step."""

    def __init__(self, step: jax_impl.TrainStep, params):
        self.step, self.params, self.opt_state = step, params, step.init(params)

    def __call__(self, batches: dict) -> None:
        self.params, self.opt_state, _ = self.step(self.params, self.opt_state, batches)


def _step_runner(ctx: Context, dense: bool) -> MakeRunner:
    module = new_module(ctx)
    trainer = _Trainer(jax_impl.make_train_step(module, optax.adam(LEARNING_RATE)), new_params(ctx, module))

    def make(steps: int):
        pool = _as_arrays(precut_steps(ctx, steps, dense), dense)

        def run():
            cycle(trainer, pool, steps)
            jax.block_until_ready(trainer.params)

        return run

    return make


def step_sparse(ctx: Context) -> MakeRunner:
    """jax_impl.make_train_step (jitted, params and state donated) on pre-cut PaddedRows batches."""
    return _step_runner(ctx, dense=False)


def step_dense(ctx: Context) -> MakeRunner:
    """The same step on pre-cut dense (batch, vocab) arrays: what the sparse gather saves."""
    return _step_runner(ctx, dense=True)
