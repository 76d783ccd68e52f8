"""Data-parallel torch_ref.fit with DistributedDataParallel, one process per device.

CPU, 2 processes (gloo):         torchrun --nproc-per-node=2 examples/data_parallel_torch.py
All GPUs of one host (nccl):     torchrun --nproc-per-node=gpu examples/data_parallel_torch.py
Several hosts (run on each):     torchrun --nnodes=N --nproc-per-node=gpu --rdzv-backend=c10d \
                                     --rdzv-endpoint=HOST0:29500 examples/data_parallel_torch.py
Every rank builds the same model and data with the same seed; once the process group is
initialised, fit shards each batch over the ranks and returns the single-process result.
"""

from __future__ import annotations

import argparse
import os
from datetime import timedelta

import torch
import torch.distributed as dist

import torch_ref
from mtl_core.data import DEFAULT_TASKS, synthetic_reviews


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    use_cuda = torch.cuda.is_available()
    # A short timeout bounds how long a rank waits for a peer that died without closing its connection.
    dist.init_process_group("nccl" if use_cuda else "gloo", timeout=timedelta(minutes=2))
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    train, test = synthetic_reviews()
    torch.manual_seed(0)
    model = torch_ref.MultiTaskNetwork(train["movie"].input_dim, DEFAULT_TASKS).to(device)
    _, history = torch_ref.fit(model, train, epochs=args.epochs, eval_data=test, seed=0)
    if dist.get_rank() == 0:
        print(f"{dist.get_world_size()} ranks; final F1:", {task: round(v[-1], 4) for task, v in history["f1"].items()})
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
