"""The recipe's optimisers in optax, with their hyper-parameters carried in their state.

``optax.inject_hyperparams`` keeps lr, b1, b2 and eps inside the optimiser state, so a checkpoint
can record them and a resumed run continues with exactly the same Adam. The update itself is
``optax.adam``'s. ``lazy_adam`` is the same transformation marked for a TrainStep, which then
updates only the first-layer kernel rows a step touches (jax_impl.lazy).
"""

from __future__ import annotations

import optax
from optax import ScaleByAdamState

from mtl_core.checkpoint import AdamHyper
from mtl_core.config import check_adam

HYPER_PARAMETERS = ("learning_rate", "b1", "b2", "eps")  # AdamHyper's fields under optax's names


def adam(lr: float = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> optax.GradientTransformation:
    """optax.adam with its hyper-parameters injected into the state (as torch.optim.Adam's defaults)."""
    lr, b1, b2, eps = check_adam(lr, b1, b2, eps)
    return optax.inject_hyperparams(optax.adam)(learning_rate=lr, b1=b1, b2=b2, eps=eps)


class LazyAdam(optax.GradientTransformationExtraArgs):
    """``lazy_adam``'s transformation: ``adam``'s init and update, marked as lazy.

    A TrainStep given one puts the first layer's kernel in an optimiser group of its own and
    updates only the rows each step touches (jax_impl.lazy); every other parameter gets this
    update. Called directly, ``update`` is dense Adam's: the rows are the step's to find.
    """

    __slots__ = ()


def lazy_adam(lr: float = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> LazyAdam:
    """Adam whose first-layer kernel updates only the rows a step's sparse input touches.

    For ``fit(tx=...)`` and ``make_train_step``; mtl_core.lazy_adam gives the row update (SparseAdam's).
    Needs sparse input (scipy sparse or PaddedRows) and no mesh.
    """
    return LazyAdam(*adam(lr, b1, b2, eps))


def adam_states(opt_state, as_numbers: bool = True) -> list[tuple[ScaleByAdamState, AdamHyper | None]]:
    """Every Adam state inside ``opt_state`` (one per parameter group), with its hyper-parameters.

    ``as_numbers=False`` leaves the hyper-parameters as the state's arrays (for use under jit).
    """
    found: list = []

    def walk(node, hyper):
        if isinstance(node, ScaleByAdamState):
            found.append((node, hyper))
            return
        hyperparams = getattr(node, "hyperparams", None)
        if isinstance(hyperparams, dict) and "learning_rate" in hyperparams:
            hyper = AdamHyper(*(float(hyperparams[k]) if as_numbers else hyperparams[k] for k in HYPER_PARAMETERS))
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, (tuple, list)):
            children = node
        else:
            return
        for child in children:
            walk(child, hyper)

    walk(opt_state, None)
    return found
