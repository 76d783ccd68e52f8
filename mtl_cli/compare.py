"""``mtl compare``: train both backends from the same weights on the synthetic default, side by side."""

from __future__ import annotations

import argparse

import jax_impl
import torch
import torch_ref
from mtl_core.data import DEFAULT_TASKS, synthetic_reviews


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=int, default=6, help="training epochs (default 6, as the blog)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and the batch order")


def run(args: argparse.Namespace) -> int:
    train, test = synthetic_reviews(seed=args.seed)
    torch.manual_seed(args.seed)
    model = torch_ref.MultiTaskNetwork(train["movie"].input_dim, DEFAULT_TASKS)
    start = jax_impl.import_params(torch_ref.export_params(model))  # both twins start from these weights
    _, torch_history = torch_ref.fit(model, train, epochs=args.epochs, seed=args.seed, eval_data=test, progress=not args.quiet)
    _, jax_history = jax_impl.fit(
        jax_impl.MultiTaskNetwork(DEFAULT_TASKS), train, epochs=args.epochs, seed=args.seed, eval_data=test,
        params=start, progress=not args.quiet,
    )
    print(f"{'task':<8}{'metric':<10}{'torch_ref':>10}{'jax_impl':>10}")
    for task in DEFAULT_TASKS:
        print(f"{task.name:<8}{'F1':<10}{torch_history['f1'][task.name][-1]:>10.4f}{jax_history['f1'][task.name][-1]:>10.4f}")
    return 0
