"""The registry: every variant and floor the harness measures, with what each includes."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable

from benchmarks import floor, jax_variants, torch_variants
from benchmarks.context import SEED_RECIPE as SEED
from benchmarks.context import Context, MakeRunner

# fit pays fixed costs per call (optimiser state, copies of the weights, jax's first dispatch):
# a repeat of fit runs at least two of jax_impl's 16-step runs, so that they weigh as in a real epoch.
FIT_MIN_STEPS = 32


@dataclass(frozen=True)
class Variant:
    """A way to train the workload's model; ``setup`` builds it (untimed) for a context.

    ``data_in_loop``: the timed loop prepares the batches (as a user pays), else it gets them pre-cut;
    ``min_steps``: the fewest steps in a timed repeat.
    """

    name: str
    backend: str  # "torch" or "jax"
    first_layer: str  # "sparse", "dense", or "-" for a floor
    data_in_loop: bool
    min_steps: int
    setup: Callable[[Context], MakeRunner]
    about: str

    def describe(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "setup"}


VARIANTS = (
    Variant(SEED, "torch", "dense", True, 1, torch_variants.seed_recipe,
            "the blog's recipe: per-row densifying Dataset, zipped shuffling DataLoaders, dense nn.Linear, "
            "BCE / CE with one-hot targets, summed loss, loss.item() per step, torch.optim.Adam (for-each)"),
    Variant("torch_ref.fit", "torch", "sparse", True, FIT_MIN_STEPS, torch_variants.fit,
            "torch_ref.fit: CSR batches cut per step, EmbeddingBag first layer, fused Adam"),
    Variant("torch_ref.step", "torch", "sparse", False, 1, torch_variants.step_sparse,
            "torch_ref.make_train_step on pre-cut SparseRows batches"),
    Variant("torch_ref.step-dense", "torch", "dense", False, 1, torch_variants.step_dense,
            "torch_ref.make_train_step on pre-cut dense tensors"),
    Variant("torch_ref.step+compile", "torch", "sparse", False, 1, torch_variants.step_compiled,
            "torch_ref.make_train_step with model.forward_tasks under torch.compile(dynamic=True), pre-cut SparseRows "
            "batches (the sparse path compiles: it is index/offset/value tensors, not torch sparse tensors)"),
    Variant("jax_impl.step", "jax", "sparse", False, 1, jax_variants.step_sparse,
            "jax_impl.make_train_step (jitted, donated) on pre-cut PaddedRows batches"),
    Variant("jax_impl.step-dense", "jax", "dense", False, 1, jax_variants.step_dense,
            "jax_impl.make_train_step on pre-cut dense arrays"),
    Variant("jax_impl.fit", "jax", "sparse", True, FIT_MIN_STEPS, jax_variants.fit,
            "jax_impl.fit: batches padded and stacked per run of 16 steps, one lax.scan dispatch per run"),
)

FLOORS = (
    Variant("floor:torch-fused-adam", "torch", "-", False, 1, floor.torch_fused_adam,
            "fused torch.optim.Adam step alone over the model's parameters"),
    Variant("floor:optax-adam", "jax", "-", False, 1, floor.optax_adam,
            "jitted optax.adam update alone, params and state donated"),
)

VARIANT_NAMES = tuple(v.name for v in VARIANTS)
# What --quick measures beyond the headline: the library's fits against the recipe (and the floors).
QUICK_SWEEP = (SEED, "torch_ref.fit", "jax_impl.fit")


def select(names: list[str] | None) -> tuple[Variant, ...]:
    """The variants to run (all by default); the seed recipe and floors always come along."""
    if not names:
        return VARIANTS
    unknown = [n for n in names if n not in VARIANT_NAMES]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; choose from {list(VARIANT_NAMES)}")
    return tuple(v for v in VARIANTS if v.name == SEED or v.name in names)


def quick_sweep(chosen: tuple[Variant, ...]) -> tuple[Variant, ...]:
    """The chosen variants that --quick also runs on its sweep workloads."""
    return tuple(v for v in chosen if v.name in QUICK_SWEEP)
