"""The registry: every variant and floor the harness measures, with what each includes, and which
variants each workload runs (and why the others are left out)."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Callable

from benchmarks import jax_variants, torch_variants
from benchmarks.analysis import FITS, LAZY_FITS
from benchmarks.workloads import (HEADLINE, LAZY_TARGET_VOCAB, RUN_LENGTH, SEED_RECIPE as SEED, Context, MakeRunner, Workload,
                                  dense_batch_bytes)

# fit pays fixed costs per call (optimiser state, copies of the weights, jax's first dispatch):
# a repeat of fit runs at least two of the fits' 16-step runs, so that they weigh as in a real epoch.
FIT_MIN_STEPS = 2 * RUN_LENGTH
# From this vocabulary on, an exact Adam step of fit reads and writes 4 x 210M floats (seconds on a
# few cores): one 16-step run per repeat, or a measurement takes many minutes.
HUGE_VOCAB = 2**20
# Dense (batch, V) inputs past this vocabulary: 256 MiB per task and step at 2^20, and a dense
# matmul over the whole kernel: left out, and said so in the report.
DENSE_INPUT_MAX_VOCAB = 2**18


@dataclass(frozen=True)
class Variant:
    """A way to train the workload's model; ``setup`` builds it (untimed) for a context.

    ``optimizer``: "adam" (exact: every weight every step), "lazy_adam" (the first layer's touched
    rows only), "-" for a floor; ``data_in_loop``: the timed loop prepares the batches (as a user
    pays), else it gets them pre-cut; ``min_steps``: the fewest steps in a timed repeat.
    """

    name: str
    backend: str  # "torch" or "jax"
    first_layer: str  # "sparse", "dense", or "-" for a floor
    optimizer: str
    data_in_loop: bool
    min_steps: int
    setup: Callable[[Context], MakeRunner]
    about: str

    def steps_floor(self, workload: Workload) -> int:
        """The fewest steps in a timed repeat on ``workload`` (fewer for exact Adam at a huge vocabulary)."""
        if self.optimizer == "adam" and workload.vocab_size >= HUGE_VOCAB:
            return min(self.min_steps, RUN_LENGTH)
        return self.min_steps

    def describe(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "setup"}


LAZY_ABOUT = ("made once, untimed, with its state carried from repeat to repeat as over the epochs of one training: its "
              "(V, H) moments are not re-made per call")
VARIANTS = (
    Variant(SEED, "torch", "dense", "adam", True, 1, torch_variants.seed_recipe,
            "the blog's recipe: per-row densifying Dataset, zipped shuffling DataLoaders, dense nn.Linear, "
            "BCE / CE with one-hot targets, summed loss, loss.item() per step, torch.optim.Adam (for-each)"),
    Variant("torch_ref.fit", "torch", "sparse", "adam", True, FIT_MIN_STEPS, torch_variants.fit,
            "torch_ref.fit: CSR batches cut per step, EmbeddingBag first layer (on a CPU its kernel gradient X^T @ delta, "
            "written into the previous step's memory), fused Adam (a fresh one per call, "
            "as fit makes by default)"),
    Variant("torch_ref.fit+lazy", "torch", "sparse", "lazy_adam", True, FIT_MIN_STEPS, torch_variants.fit_lazy,
            "torch_ref.fit with optimizer=torch_ref.lazy_adam(model): SparseAdam's row update of the first layer's "
            "touched rows, fused Adam for the rest; the optimiser " + LAZY_ABOUT),
    Variant("torch_ref.step", "torch", "sparse", "adam", False, 1, torch_variants.step_sparse,
            "torch_ref.make_train_step on pre-cut SparseRows batches"),
    Variant("torch_ref.step-dense", "torch", "dense", "adam", False, 1, torch_variants.step_dense,
            "torch_ref.make_train_step on pre-cut dense tensors"),
    Variant("torch_ref.step+compile", "torch", "sparse", "adam", False, 1, torch_variants.step_compiled,
            "torch_ref.make_train_step with model.forward_tasks under torch.compile(dynamic=True), pre-cut SparseRows "
            "batches (the sparse path compiles: it is index/offset/value tensors, not torch sparse tensors)"),
    Variant("jax_impl.step", "jax", "sparse", "adam", False, 1, jax_variants.step_sparse,
            "jax_impl.make_train_step (jitted, donated) on pre-cut PaddedRows batches"),
    Variant("jax_impl.step-dense", "jax", "dense", "adam", False, 1, jax_variants.step_dense,
            "jax_impl.make_train_step on pre-cut dense arrays"),
    Variant("jax_impl.fit", "jax", "sparse", "adam", True, FIT_MIN_STEPS, jax_variants.fit,
            "jax_impl.fit: batches padded and stacked per run of 16 steps, one lax.scan dispatch per run, "
            "optax.adam (a fresh state per call)"),
    Variant("jax_impl.fit+lazy", "jax", "sparse", "lazy_adam", True, FIT_MIN_STEPS, jax_variants.fit_lazy,
            "jax_impl.fit with tx=jax_impl.lazy_adam(): the first layer's touched rows only, optax.adam for the rest; the "
            "transformation " + LAZY_ABOUT + " (params too, donated to each call: fit(..., donate=True) copies neither)"),
)

FLOORS = (
    Variant("floor:torch-fused-adam", "torch", "-", "-", False, 1, torch_variants.fused_adam_floor,
            "fused torch.optim.Adam step alone over the model's parameters"),
    Variant("floor:optax-adam", "jax", "-", "-", False, 1, jax_variants.optax_adam_floor,
            "jitted optax.adam update alone, params and state donated"),
)

VARIANT_NAMES = tuple(v.name for v in VARIANTS)
# What --quick measures beyond the headline: the library's fits against the recipe (and the floors),
# and at V = 2^18 lazy Adam's fits alone.
QUICK_SWEEP = (SEED, *FITS)
# What the vocabulary sweep measures beyond the headline's vocabulary (unless --variants names more).
VOCAB_SWEEP = (SEED, *FITS, *LAZY_FITS)


def select(names: list[str] | None) -> tuple[Variant, ...]:
    """The variants to run (all by default); the seed recipe and floors always come along."""
    if not names:
        return VARIANTS
    unknown = [n for n in names if n not in VARIANT_NAMES]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; choose from {list(VARIANT_NAMES)}")
    return tuple(v for v in VARIANTS if v.name == SEED or v.name in names)


def left_out(variant: Variant, workload: Workload, quick: bool, chosen_by_name: bool) -> str | None:
    """Why ``variant`` does not run on ``workload`` (None: it runs).

    Too large to run comes first; then what --quick leaves out; then, unless --variants named
    them, the sweeps' own limits (large vocabularies: the fits and the recipe; lazy Adam: the
    vocabulary sweep only).
    """
    if variant.first_layer == "dense" and workload.vocab_size > DENSE_INPUT_MAX_VOCAB:
        return (f"dense (batch, V) inputs of {dense_batch_bytes(workload) / 2**20:,.0f} MiB per step and a dense "
                f"matmul over all {workload.first_layer_weights / 1e6:,.0f}M first-layer weights: minutes per repeat")
    if workload.name == HEADLINE.name:
        return None
    if quick:
        if workload.vocab_size == LAZY_TARGET_VOCAB:
            return None if variant.name in LAZY_FITS else "--quick measures lazy Adam's fits alone at V = 2^18"
        return None if variant.name in QUICK_SWEEP else "--quick measures only the fits and the seed recipe beyond the headline"
    if chosen_by_name:
        return None
    if variant.optimizer == "lazy_adam" and "vocab" not in workload.sweeps:
        return "lazy Adam is measured in the vocabulary sweep"
    if workload.vocab_size > HEADLINE.vocab_size and variant.name not in VOCAB_SWEEP:
        return "past V = 20,000 the vocabulary sweep measures the fits (dense and lazy) and the seed recipe"
    return None


def for_workload(chosen: tuple[Variant, ...], workload: Workload, quick: bool, chosen_by_name: bool
                 ) -> tuple[tuple[Variant, ...], list[dict]]:
    """The chosen variants that run on ``workload``, and a {workload, variant, reason} for each left out."""
    runs, skipped = [], []
    for variant in chosen:
        reason = left_out(variant, workload, quick, chosen_by_name)
        if reason is None:
            runs.append(variant)
        else:
            skipped.append({"workload": workload.name, "variant": variant.name, "reason": reason})
    return tuple(runs), skipped
