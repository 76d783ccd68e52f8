"""The recipe's optimiser in optax, with its hyper-parameters carried in its state.

``optax.inject_hyperparams`` keeps lr, b1, b2 and eps inside the optimiser state, so a checkpoint
can record them and a resumed run continues with exactly the same Adam. The update itself is
``optax.adam``'s.
"""

from __future__ import annotations

import optax
from optax import ScaleByAdamState

from mtl_core.checkpoint import AdamHyper


def adam(lr: float = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> optax.GradientTransformation:
    """optax.adam with its hyper-parameters injected into the state (as torch.optim.Adam's defaults)."""
    return optax.inject_hyperparams(optax.adam)(learning_rate=lr, b1=b1, b2=b2, eps=eps)


def adam_states(opt_state) -> list[tuple[ScaleByAdamState, AdamHyper | None]]:
    """Every Adam state inside ``opt_state`` (one per parameter group), with its hyper-parameters."""
    found: list = []

    def walk(node, hyper):
        if isinstance(node, ScaleByAdamState):
            found.append((node, hyper))
            return
        hyperparams = getattr(node, "hyperparams", None)
        if isinstance(hyperparams, dict) and "learning_rate" in hyperparams:
            hyper = AdamHyper(*(float(hyperparams[k]) for k in ("learning_rate", "b1", "b2", "eps")))
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
