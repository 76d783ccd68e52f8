"""Data-parallel jax_impl.fit over every device of one or several hosts.

One host, all its devices:           python examples/data_parallel_jax.py
CPU test of the same path:           XLA_FLAGS=--xla_force_host_platform_device_count=4 python examples/data_parallel_jax.py
Several hosts (run on each, i = 0..N-1, same coordinator):
    python examples/data_parallel_jax.py --coordinator HOST0:1234 --num-processes N --process-id i
Each process holds the same data and seed; jax.distributed.initialize joins them into one set of
devices, and fit shards every batch over a mesh spanning all of them.
"""

from __future__ import annotations

import argparse

import jax

import jax_impl
from mtl_core.data import DEFAULT_TASKS, synthetic_reviews


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--coordinator", help="HOST:PORT of process 0, for several processes")
    parser.add_argument("--num-processes", type=int, default=1)
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--cpu-collectives", action="store_true", help="gloo collectives between CPU processes")
    args = parser.parse_args()
    if args.coordinator:
        if args.cpu_collectives:
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(args.coordinator, num_processes=args.num_processes, process_id=args.process_id)
    mesh = jax.make_mesh((jax.device_count(),), ("data",))
    train, test = synthetic_reviews()
    module = jax_impl.MultiTaskNetwork(DEFAULT_TASKS)
    _, history = jax_impl.fit(module, train, epochs=args.epochs, eval_data=test, mesh=mesh, seed=0)
    if jax.process_index() == 0:
        print(f"{jax.device_count()} devices in {jax.process_count()} processes; final F1:",
              {task: round(values[-1], 4) for task, values in history["f1"].items()})


if __name__ == "__main__":
    main()
