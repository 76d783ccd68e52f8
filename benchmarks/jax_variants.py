"""The jax side of the variants: jax_impl's ``fit`` with Adam or lazy Adam, its jitted donated step on
pre-cut sparse or dense batches, and the optax-Adam floor (see torch_variants for what a floor is).

Arrays land on the run's jax device: the harness runs every variant inside
``jax.default_device(device.jax)``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax

import jax_impl
from mtl_core.sparse import PaddedRows, bucket_width, max_row_nnz, pad_rows
from benchmarks.workloads import FLOOR_GRADIENT, LEARNING_RATE, Context, CsrStep, MakeRunner, check_steps, cycle, precut_steps


def new_module(ctx: Context) -> jax_impl.MultiTaskNetwork:
    return jax_impl.MultiTaskNetwork(ctx.workload.tasks, hidden_dims=(ctx.workload.hidden,), activation="sigmoid")


def new_params(ctx: Context, module: jax_impl.MultiTaskNetwork) -> dict:
    return jax_impl.init_params(module, jax.random.key(ctx.seed), ctx.workload.vocab_size)


def fit(ctx: Context, mesh=None, aggregator: str | None = None) -> MakeRunner:
    """jax_impl.fit for one epoch of ``steps`` steps: padding, stacking and transfers in the timed loop
    (with an aggregator, also the host's per-step plan: K = X Xᵀ of the step's rows, PCGrad's orders);
    every call starts from the same params with a fresh optax.adam state (fit's default).

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


class _Carried:
    """Params and optimiser state handed from one call of fit to the next, as over the epochs of one training."""

    def __init__(self, params):
        self.params, self.opt_state = params, None


def fit_lazy(ctx: Context) -> MakeRunner:
    """jax_impl.fit with lazy Adam: the transformation made once, params and its state carried across calls
    and donated to each (as the epochs of one training: no copy of the (V, H) kernel and moments per call)."""
    module = new_module(ctx)
    tx = jax_impl.lazy_adam(LEARNING_RATE)
    carried = _Carried(new_params(ctx, module))

    def make(steps: int):
        data = ctx.first_rows(steps)

        def run():
            carried.params, history, carried.opt_state = jax_impl.fit(
                module, data, epochs=1, batch_size=ctx.workload.batch_size, lr=LEARNING_RATE, seed=ctx.seed,
                params=carried.params, tx=tx, opt_state=carried.opt_state, return_opt_state=True, donate=True,
            )
            jax.block_until_ready(carried.params)
            check_steps("jax_impl.fit+lazy", history["steps"][0], steps)

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


@functools.partial(jax.jit, static_argnums=0, donate_argnums=(1, 2))
def _adam_update(tx: optax.GradientTransformation, params, opt_state, grads):
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


class _OptaxFloor:
    def __init__(self, params):
        self.tx = optax.adam(LEARNING_RATE)
        self.params, self.opt_state = params, self.tx.init(params)
        self.grads = jax.tree_util.tree_map(lambda p: jnp.full_like(p, FLOOR_GRADIENT), params)

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self.params, self.opt_state = _adam_update(self.tx, self.params, self.opt_state, self.grads)
        jax.block_until_ready(self.params)


def optax_adam_floor(ctx: Context) -> MakeRunner:
    """The floor: a jitted optax.adam update (params and state donated) over the jax model's parameters."""
    floor = _OptaxFloor(new_params(ctx, new_module(ctx)))
    return lambda steps: lambda: floor.run(steps)
