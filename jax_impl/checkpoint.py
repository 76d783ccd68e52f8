"""Checkpoints in the shared safetensors format (mtl_core.checkpoint): params and Adam state.

The grouped optimiser state of ``TrainStep`` maps onto PyTorch's per-parameter Adam state: each
group's moments are stored under the canonical names of its parameters, and its step count is
every one of those parameters' step. A lazy Adam state (its "rows" group, jax_impl.state) is laid
out alike and recorded as "lazy_adam", so that loading it rebuilds lazy Adam's state.
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from mtl_core.checkpoint import AdamHyper, AdamState, Checkpoint, read_checkpoint, write_checkpoint
from mtl_core.lazy_adam import LAZY_ADAM
from mtl_core.weighting import resolve_weighting
from jax_impl.model import MultiTaskNetwork
from jax_impl.optimizer import adam, adam_states, lazy_adam
from jax_impl.params import canonical_name, check_variables, export_params, import_params
from jax_impl.state import group_of, is_lazy_state
from jax_impl.step import TrainStep


def _adam_state(opt_state, adam: AdamHyper | None) -> AdamState:
    found = adam_states(opt_state)
    if not found:
        raise ValueError("opt_state holds no Adam state (optax.scale_by_adam): checkpoints hold Adam's state")
    hypers = {hyper for _, hyper in found}
    if None in hypers:
        if adam is None:
            raise ValueError(
                "opt_state comes from a plain optax.adam, which does not carry its hyper-parameters: pass them, "
                "save_checkpoint(..., adam=dict(lr=..., b1=0.9, b2=0.999, eps=1e-8)), or build the optimiser "
                "with jax_impl.adam(lr) (optax.inject_hyperparams(optax.adam)), as fit does"
            )
        hypers = {adam}
    elif adam is not None and hypers != {adam}:
        raise ValueError(f"adam={adam} contradicts the hyper-parameters opt_state carries {hypers.pop()}")
    if len(hypers) != 1:
        raise ValueError(f"opt_state holds several Adam settings {hypers}; a checkpoint holds one")
    exp_avg, exp_avg_sq, steps = {}, {}, {}
    for state, _ in found:  # one per group; masked-out leaves (other groups') are not leaves at all
        for (path, mu), nu in zip(jax.tree_util.tree_flatten_with_path(state.mu)[0], jax.tree_util.tree_leaves(state.nu)):
            name = canonical_name(path)
            exp_avg[name], exp_avg_sq[name], steps[name] = np.asarray(mu), np.asarray(nu), int(state.count)
    return AdamState(hypers.pop(), exp_avg, exp_avg_sq, steps, LAZY_ADAM if is_lazy_state(opt_state) else "adam")


def _hyper(adam) -> AdamHyper | None:
    if adam is None or isinstance(adam, AdamHyper):
        return adam
    if not isinstance(adam, dict) or not set(adam) <= {"lr", "b1", "b2", "eps"}:
        raise TypeError(f"adam must be an AdamHyper or a dict with keys lr, b1, b2, eps, got {adam!r}")
    try:
        return AdamHyper(**{k: float(v) for k, v in adam.items()})
    except (TypeError, ValueError):
        raise TypeError(f"adam's hyper-parameters must be numbers, got {adam!r}") from None


def save_checkpoint(
    path: str | os.PathLike,
    module: MultiTaskNetwork,
    params,
    opt_state=None,
    *,
    weighting=None,
    weighting_state=None,
    adam=None,
    vocabulary=None,
    label_names=None,
    hash_features=None,
) -> None:
    """Write ``params`` (and Adam's state when ``opt_state`` is given) to one safetensors file.

    ``opt_state``: any state holding optax Adam states, grouped by a TrainStep or plain from
    ``tx.init(params)``. ``jax_impl.adam`` carries its hyper-parameters; for a plain ``optax.adam``
    state give them as ``adam={"lr": ..., "b1": ..., "b2": ..., "eps": ...}`` (an AdamHyper or a dict).
    A TrainStep's state of ``jax_impl.lazy_adam`` is recorded as "lazy_adam".
    ``vocabulary`` or ``hash_features`` (the number of hashed columns): how texts became columns.

    ``weighting`` defaults to "uncertainty" when params hold learnt log-variances, else "sum";
    ``weighting_state`` is a TrainState's ``weighting`` (FAMO's logits), by default its initial state.
    """
    if not isinstance(module, MultiTaskNetwork):
        raise TypeError(f"module must be a jax_impl.MultiTaskNetwork, got {type(module).__name__}")
    check_variables(module, params)
    log_var = params.get("weighting", {}).get("log_var")
    weighting = resolve_weighting(weighting or ("uncertainty" if log_var is not None else "sum"), module.tasks)
    if weighting.learnable and log_var is None:
        raise ValueError("uncertainty weighting: params hold no ['weighting']['log_var'] to save")
    canonical = export_params(params)
    write_checkpoint(
        path,
        Checkpoint(
            arch=module.arch.with_input_dim(canonical["trunk.0.kernel"].shape[0]),
            params=canonical,
            weighting=weighting,
            log_variances=None if log_var is None else np.array(log_var),
            adam=None if opt_state is None else _adam_state(opt_state, _hyper(adam)),
            vocabulary=None if vocabulary is None else tuple(vocabulary),
            label_names={k: tuple(v) for k, v in (label_names or {}).items()},
            weighting_state={k: np.array(v) for k, v in (weighting_state or weighting.init_state()).items()},
            hash_features=hash_features,
        ),
    )


def load_checkpoint(path: str | os.PathLike, *, with_extras: bool = False):
    """``(module, params, opt_state)`` from a checkpoint written by either backend.

    ``opt_state`` (None when none was saved) fits one optimiser: ``jax_impl.adam(lr, b1, b2, eps)``
    with the checkpoint's hyper-parameters (in the state itself), or ``jax_impl.lazy_adam(...)`` when
    the checkpoint says "lazy_adam", grouped as a ``TrainStep`` groups it; so
    ``fit(..., params=params, opt_state=opt_state)`` (tx left to its default, which follows the state)
    or ``make_train_step(module, jax_impl.adam(...))`` (``lazy_adam``) resumes training. Another
    ``tx`` cannot use it.
    With ``with_extras=True`` the mtl_core ``Checkpoint`` is returned as a fourth value (its
    ``weighting_state`` resumes FAMO: ``fit(..., weighting_state=checkpoint.weighting_state)``).
    """
    checkpoint = read_checkpoint(path)
    arch = checkpoint.arch
    module = MultiTaskNetwork(arch.tasks, arch.hidden_dims, arch.activation)
    params = import_params(checkpoint.params, module)
    if checkpoint.weighting.learnable:
        params["weighting"] = {"log_var": jnp.asarray(checkpoint.log_variances)}
    opt_state = None if checkpoint.adam is None else _restore_adam(module, params, checkpoint)
    return (module, params, opt_state, checkpoint) if with_extras else (module, params, opt_state)


def _restore_adam(module: MultiTaskNetwork, params, checkpoint: Checkpoint):
    saved = checkpoint.adam
    hyper = saved.hyper
    lazy = saved.optimizer == LAZY_ADAM
    step = TrainStep(module, (lazy_adam if lazy else adam)(hyper.lr, hyper.b1, hyper.b2, hyper.eps), checkpoint.weighting)
    template = step.init(params)
    group_steps: dict[str, set] = {}
    for path, _ in jax.tree_util.tree_flatten_with_path(params)[0]:
        group_steps.setdefault(group_of(path, lazy), set()).add(saved.step[canonical_name(path)])
    for group, steps in group_steps.items():
        if len(steps) != 1:
            raise ValueError(f"the parameters of group {group!r} have different Adam step counts {sorted(steps)}")

    def restore(path, leaf):
        fields = [getattr(entry, "name", None) for entry in path]
        group = str(path[1].key)  # PartitionState.inner_states[group]
        if "mu" in fields or "nu" in fields:
            at = fields.index("mu") if "mu" in fields else fields.index("nu")
            source = saved.exp_avg if fields[at] == "mu" else saved.exp_avg_sq
            return jnp.asarray(source[canonical_name(path[at + 1 :])], leaf.dtype)
        if fields[-1] == "count":
            return jnp.asarray(group_steps[group].copy().pop(), leaf.dtype)
        return leaf

    return jax.tree_util.tree_map_with_path(restore, template)
