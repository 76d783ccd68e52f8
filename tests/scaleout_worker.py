"""Runs the scale-out checks in a fresh process: forced host devices for jax, gloo ranks for torch.

python tests/scaleout_worker.py jax OUT [--fault drop_shard]
python tests/scaleout_worker.py torch OUT --rank R --world W --port P [--fault drop_shard|raise]
Writes the trained weights and histories of every configuration to OUT (a .npz file).
"""

from __future__ import annotations

import argparse
import json
import os
import sys

# Before jax is imported: four CPU devices to shard over, and float64 for tight comparisons.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")

import numpy as np

from mtl_core import TaskSpec
from mtl_core.data import synthetic_reviews

TASKS = (TaskSpec("a", "binary", 1), TaskSpec("b", "multiclass", 3), TaskSpec("c", "regression", 2))
# 203, 150 and 97 rows in batches of 30 leave ragged last batches, and 30 rows split unevenly over 4 devices.
SIZES = {"a": 203, "b": 150, "c": 97}
# (curriculum, weighting, aggregator): aggregators all-reduce every task's gradient, not their sum.
CONFIGS = [
    ("round_robin", "dwa", None),
    ("sequential", "uncertainty", None),
    ("round_robin", "sum", "nash_mtl"),
    ("round_robin", "famo", "pcgrad"),
    ("proportional", "uncertainty", "mgda_ub"),
]
FIT = dict(epochs=3, batch_size=30, seed=0)


def problem():
    train, test = synthetic_reviews(TASKS, n_train=SIZES, n_test=40, vocab_size=300, review_length=20, signal_words=20)
    return train, test


def save(path: str, results: dict) -> None:
    arrays = {f"{config}/{name}": value for config, (params, _) in results.items() for name, value in params.items()}
    histories = {config: history for config, (_, history) in results.items()}
    np.savez(path, histories=json.dumps(histories), **arrays)


def run_jax(out: str, fault: str | None) -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax_impl
    from jax_impl.step import TrainStep

    if fault == "drop_shard":  # the negative control: the first device's rows stop counting
        place = TrainStep.place_batches

        def dropping(self, batches, row_axis=0):
            placed = {}
            for name, (x, y, mask) in batches.items():
                dropped = np.array(mask)
                dropped[..., : dropped.shape[-1] // self.mesh.shape["data"]] = 0.0
                # A batch that lay wholly in the first shard keeps its rows (no 0/0 loss).
                placed[name] = (x, y, np.where(dropped.sum(-1, keepdims=True) > 0, dropped, mask))
            return place(self, placed, row_axis)

        TrainStep.place_batches = dropping
    train, test = problem()
    module = jax_impl.MultiTaskNetwork(TASKS, hidden_dims=(16, 8))
    start = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), jax_impl.init_params(module, jax.random.key(0), 300))
    meshes = {"single": None, "data4": jax.make_mesh((4,), ("data",))}
    if fault is None:
        meshes["data2_model2"] = jax.make_mesh((2, 2), ("data", "model"))
    results = {}
    for mesh_name, mesh in meshes.items():
        for curriculum, weighting, aggregator in CONFIGS:
            params, history = jax_impl.fit(
                module, train, eval_data=test, params=start, mesh=mesh, curriculum=curriculum, weighting=weighting,
                aggregator=aggregator, **FIT,
            )
            results[f"{mesh_name}/{curriculum}/{weighting}/{aggregator}"] = (jax_impl.export_params(params), history)
    save(out, results)


def run_torch(out: str, rank: int, world: int, port: int, fault: str | None) -> None:
    from datetime import timedelta

    import torch
    import torch.distributed as dist

    import torch_ref
    from torch_ref import distributed, train as train_module

    if world > 1:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world, timeout=timedelta(seconds=120))
    if fault == "drop_shard" and rank == 1:  # the negative control: rank 1's rows stop counting
        shard = distributed.shard
        train_module.shard = lambda *args: (lambda X, y, mask, d: (X, y, 0.0 * mask, d))(*shard(*args))
    if fault == "raise" and rank == 1:
        run = train_module.TorchTrainer.train_run
        calls = []

        def failing(self, *args):
            calls.append(1)
            if len(calls) == 3:
                raise ValueError("rank 1 failed on purpose")
            return run(self, *args)

        train_module.TorchTrainer.train_run = failing
    train, test = problem()
    results = {}
    for curriculum, weighting, aggregator in CONFIGS:
        torch.manual_seed(0)
        model = torch_ref.MultiTaskNetwork(300, TASKS, hidden_dims=(16, 8)).double()
        model, history = torch_ref.fit(
            model, train, eval_data=test, curriculum=curriculum, weighting=weighting, aggregator=aggregator, **FIT
        )
        results[f"world{world}/{curriculum}/{weighting}/{aggregator}"] = (torch_ref.export_params(model), history)
    if rank == 0:
        save(out, results)
    if world > 1:
        dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("backend", choices=["jax", "torch"])
    parser.add_argument("out")
    parser.add_argument("--rank", type=int, default=0)
    parser.add_argument("--world", type=int, default=1)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--fault", choices=["drop_shard", "raise"])
    args = parser.parse_args()
    if args.backend == "jax":
        run_jax(args.out, args.fault)
    else:
        run_torch(args.out, args.rank, args.world, args.port, args.fault)


if __name__ == "__main__":
    sys.exit(main())
