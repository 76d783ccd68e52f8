"""The JAX twin: Flax linen + optax, pure functions, heads picked by a static task id."""

from jax_impl.aggregate import aggregate
from jax_impl.checkpoint import load_checkpoint, save_checkpoint
from jax_impl.model import MultiTaskNetwork
from jax_impl.optimizer import adam, lazy_adam
from jax_impl.params import export_params, import_params, init_params
from jax_impl.state import TrainState
from jax_impl.step import StepPlan, StepSpec, TrainStep, loss_fn, make_train_step, train_step
from jax_impl.train import fit

__all__ = [
    "aggregate",
    "MultiTaskNetwork",
    "adam",
    "StepPlan",
    "StepSpec",
    "TrainState",
    "TrainStep",
    "export_params",
    "fit",
    "import_params",
    "init_params",
    "lazy_adam",
    "load_checkpoint",
    "loss_fn",
    "make_train_step",
    "save_checkpoint",
    "train_step",
]
