"""The jax step's state: params, the grouped optimiser state, the loss weighting's own state.

The optimiser state is kept per parameter group (the trunk, each head, the loss weighting's
learnable part) with ``optax.multi_transform``, so that a head left out of a step keeps its
parameters *and* its Adam moments and step count, exactly as ``torch.optim.Adam`` skips a
parameter that has no gradient. With ``jax_impl.lazy_adam`` the first layer's kernel has a group
of its own, "rows", whose state is Adam's but whose update the step makes (jax_impl.lazy): the
group also tells a checkpoint that the state is lazy Adam's.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from mtl_core.tasks import TaskSpec
from mtl_core.weighting import Weighting
from jax_impl.model import MultiTaskNetwork
from jax_impl.optimizer import LazyAdam
from jax_impl.params import check_variables

WEIGHTING = "weighting"  # params["weighting"]: the learnable part of a loss weighting
ROWS = "rows"  # lazy Adam's group: the first layer's kernel alone


class TrainState(NamedTuple):
    """Everything a step reads and writes; a pytree, donated to the jitted step."""

    params: dict  # flax variables {"params": ...}, plus {"weighting": {"log_var": (T,)}} when learnt
    opt_state: Any  # optax.multi_transform's state: one tx state per group (see group_of)
    weighting: dict  # the weighting's state between steps, e.g. FAMO's {"logits": (T,)}; {} for most
    step: jax.Array  # () int32: steps taken; a direct call draws its random choices under the key (step,)


def group_of(path, lazy: bool = False) -> str:
    """The optimiser group of a parameter: "trunk", "heads.{task}", "weighting" (or "rows" if ``lazy``)."""
    keys = [getattr(entry, "key", entry) for entry in path]
    if keys[0] == WEIGHTING:
        return WEIGHTING
    if lazy and keys[1:] == ["trunk", "0", "kernel"]:
        return ROWS
    return "trunk" if keys[1] == "trunk" else f"heads.{keys[2]}"


def group_labels(params, lazy: bool = False):
    return jax.tree_util.tree_map_with_path(lambda path, _: group_of(path, lazy), params)


def group_names(tasks: tuple[TaskSpec, ...], weighting: Weighting, lazy: bool = False) -> list[str]:
    return ([ROWS] if lazy else []) + ["trunk"] + [f"heads.{t.name}" for t in tasks] + ([WEIGHTING] if weighting.learnable else [])


def is_lazy(tx: optax.GradientTransformation) -> bool:
    return isinstance(tx, LazyAdam)


def is_lazy_state(opt_state) -> bool:
    """Whether ``opt_state`` is a grouped lazy Adam state (it has the "rows" group)."""
    return ROWS in getattr(opt_state, "inner_states", {})


def grouped(tx: optax.GradientTransformation, tasks: tuple[TaskSpec, ...], weighting: Weighting) -> optax.GradientTransformation:
    """``tx`` applied to each group on its own: a group without gradient in a step can be left as it was."""
    lazy = is_lazy(tx)
    return optax.multi_transform({group: tx for group in group_names(tasks, weighting, lazy)}, lambda params: group_labels(params, lazy))


def with_weighting_params(params, weighting: Weighting) -> dict:
    """``params`` with the weighting's learnable log-variances added (at 0) when it has them."""
    params = dict(params)
    if weighting.learnable and WEIGHTING not in params:
        dtype = params["params"]["trunk"]["0"]["kernel"].dtype
        params[WEIGHTING] = {"log_var": jnp.zeros(len(weighting.task_names), dtype)}
    return params


def check_params(module: MultiTaskNetwork, weighting: Weighting, params) -> None:
    """Raise a clear error unless ``params`` are the module's, with the weighting's entry if it learns one."""
    check_variables(module, params)
    if weighting.learnable and WEIGHTING not in params:
        raise ValueError("uncertainty weighting learns log-variances: pass step.init_params(params)")


def grouped_opt_state(tx: optax.GradientTransformation, grouped_tx: optax.GradientTransformation, opt_state, params):
    """``opt_state`` as the grouped state: given as is, or split from a plain ``tx.init(params)`` state."""
    template = jax.eval_shape(grouped_tx.init, params)
    if jax.tree_util.tree_structure(opt_state) == jax.tree_util.tree_structure(template):
        return opt_state
    labels = group_labels(params, is_lazy(tx))
    try:
        inner = {
            label: type(template.inner_states[label])(
                inner_state=optax.tree_map_params(
                    tx,
                    lambda leaf, own, label=label: leaf if own == label else optax.MaskedNode(),
                    opt_state,
                    labels,
                    # every group gets its own copy of the step count: the step donates them all
                    transform_non_params=jnp.array,
                )
            )
            for label in template.inner_states
        }
    except Exception as error:  # any mismatch between the state and params
        raise TypeError(
            "opt_state must come from step.init(params) (or tx.init(params) for the same params and tx; "
            "a state from jax_impl.load_checkpoint fits jax_impl.adam, or jax_impl.lazy_adam when the checkpoint "
            f"says lazy_adam, with the checkpoint's hyper-parameters), but its structure does not fit params: {error}"
        ) from None
    return template._replace(inner_states=inner)


def weighting_state(weighting: Weighting, dtype) -> dict:
    """The weighting's initial state (mtl_core's numpy arrays) as jax arrays of the params' dtype."""
    return {name: jnp.asarray(value, dtype) for name, value in weighting.init_state().items()}
