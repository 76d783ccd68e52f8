"""Train both backends from the same weights on the synthetic default, F1 side by side.

Both models start from the seed's canonical weights and see the same batches, so
their F1 differ only by float32 rounding (see parity_tests/ for the proof).
"""

from __future__ import annotations

import argparse

from mtl_core.metrics import METRIC_NAMES
from mtl_cli.backends import JaxModel, TorchModel
from mtl_cli.datasets import synthetic
from mtl_cli.recipe import Recipe
from mtl_cli.report import METRIC_LABELS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, default=6, help="training epochs (default 6, as the blog)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data, the weights and the batch order")


def run(args: argparse.Namespace) -> int:
    recipe = Recipe(epochs=args.epochs, seed=args.seed)
    tasks = synthetic(seed=args.seed)
    torch_model = TorchModel.build(tasks.input_dim, tasks.specs, recipe)
    jax_model = JaxModel.build(tasks.input_dim, tasks.specs, recipe)
    histories = [model.fit(tasks.train, tasks.test, recipe, progress=not args.quiet) for model in (torch_model, jax_model)]
    print(f"{'task':<8}{'metric':<10}{'torch_ref':>10}{'jax_impl':>10}")
    for task in tasks.specs:
        print(f"{task.name:<8}{METRIC_LABELS[METRIC_NAMES[task.kind]]:<10}" + "".join(f"{h['f1'][task.name][-1]:>10.4f}" for h in histories))
    return 0
