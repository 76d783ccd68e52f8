"""The floor: an optimiser-only Adam update over the model's parameter shapes, in each backend.

Every exact Adam step reads and writes all parameters, gradients and both moments, so no training
step can be faster than the fastest of these: torch's fused Adam, or a jitted optax.adam update with
donated buffers. A variant's "fraction of the floor" is floor step time / its step time.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
import torch

from benchmarks.context import LEARNING_RATE, Context, MakeRunner
from benchmarks.jax_variants import new_module, new_params
from benchmarks.torch_variants import fused_adam, new_model

GRADIENT = 1e-3  # any fixed gradient: Adam's cost does not depend on its values


def torch_fused_adam(ctx: Context) -> MakeRunner:
    """``optimizer.step()`` of fused Adam on the torch model's parameters, gradients held fixed."""
    parameters = list(new_model(ctx).parameters())
    for p in parameters:
        p.grad = torch.full_like(p, GRADIENT)
    optimizer = fused_adam(parameters)

    def make(steps: int):
        def run():
            for _ in range(steps):
                optimizer.step()
            ctx.device.torch_sync()

        return run

    return make


@functools.partial(jax.jit, static_argnums=0, donate_argnums=(1, 2))
def _adam_update(tx: optax.GradientTransformation, params, opt_state, grads):
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state


class _OptaxFloor:
    def __init__(self, params):
        self.tx = optax.adam(LEARNING_RATE)
        self.params, self.opt_state = params, self.tx.init(params)
        self.grads = jax.tree_util.tree_map(lambda p: jnp.full_like(p, GRADIENT), params)

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self.params, self.opt_state = _adam_update(self.tx, self.params, self.opt_state, self.grads)
        jax.block_until_ready(self.params)


def optax_adam(ctx: Context) -> MakeRunner:
    """A jitted optax.adam update (params and state donated) over the jax model's parameters."""
    floor = _OptaxFloor(new_params(ctx, new_module(ctx)))
    return lambda steps: lambda: floor.run(steps)
