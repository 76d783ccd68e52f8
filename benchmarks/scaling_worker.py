"""One process of a scaling measurement (started by benchmarks/scaling.py, one per torch rank).

python -m benchmarks.scaling_worker jax   --devices D --device cpu|gpu --data TRAIN.npz --steps S --repeats R
python -m benchmarks.scaling_worker torch --devices D --rank I --port P ... (D processes, I = 0..D-1)

Times ``fit`` over one epoch of S steps (warm-up and a probe first, then R repeats) with the
harness's timing code, and prints one JSON line: its timings, or its error. jax sees the devices
its environment gives it (XLA_FLAGS forced host devices, or CUDA_VISIBLE_DEVICES); a torch rank
joins a gloo (CPU) or nccl (GPU) group on 127.0.0.1:P when D > 1.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from datetime import timedelta
from pathlib import Path

from benchmarks.device import DEVICES, PRECISIONS, Device, DeviceUnavailable, jax_devices, pin_platform, set_precision, torch_device
from benchmarks.scaling import FAULTS, RESULT_KEY, SCALING, load_data
from benchmarks.timing import describe_error


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaling_worker", description=__doc__.split("\n")[0])
    parser.add_argument("backend", choices=["jax", "torch"])
    parser.add_argument("--devices", type=int, required=True)
    parser.add_argument("--rank", type=int, default=0)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--device", choices=DEVICES, default="cpu")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--repeats", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--precision", choices=PRECISIONS, default="highest")
    parser.add_argument("--torch-threads", type=int)
    parser.add_argument("--timeout-s", type=float, default=300.0, help="torch.distributed's collective timeout")
    parser.add_argument("--fault", choices=FAULTS, help="fail on purpose (tests): raise, or hang until killed")
    return parser.parse_args(argv)


def _maybe_fail(args: argparse.Namespace, last_rank: int) -> None:
    if args.fault and args.rank == last_rank:
        if args.fault == "hang":
            time.sleep(10 * args.timeout_s)
        who = f"torch process {args.rank} of {args.devices}" if args.backend == "torch" else f"the jax process ({args.devices} devices)"
        raise RuntimeError(f"{who} failed on purpose (--fault {args.fault})")


def _time(make_runner, args: argparse.Namespace, device: Device, barrier=None) -> dict:
    """Warm-up, a probe and the timed repeats of one epoch of ``args.steps`` steps, with the
    harness's timing code (the step count is fixed: every rank must run the same steps)."""
    from benchmarks.context import Context
    from benchmarks.timing import prepare, time_interleaved

    ctx = Context(SCALING, load_data(args.data), device, args.seed)
    prep = prepare(make_runner(ctx), min_steps=args.steps, max_steps=args.steps, target_s=0.0, device=device)
    if barrier is not None:  # all ranks start the timed repeats together
        barrier()
    time_interleaved([prep], args.repeats)
    if prep.error is not None:
        print(prep.traceback, file=sys.stderr)
        raise RuntimeError(prep.error)
    return {"steps": prep.steps, "repeat_s": prep.repeat_s, "warmup_s": prep.warmup_s, "memory": prep.memory,
            "load_average": prep.load_average}


def run_jax(args: argparse.Namespace) -> dict:
    import jax
    import numpy as np
    from jax.sharding import Mesh

    from benchmarks import jax_variants

    set_precision(args.precision, ("jax",))
    found = jax_devices(args.device)
    if len(found) < args.devices:
        raise DeviceUnavailable(f"jax sees {len(found)} {args.device} device(s), {args.devices} are needed "
                                f"(XLA_FLAGS={os.environ.get('XLA_FLAGS')!r}, CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r})")
    used = found[: args.devices]
    mesh = Mesh(np.array(used), ("data",))
    _maybe_fail(args, last_rank=0)
    device = Device(args.device, torch=None, jax=used[0], precision=args.precision)
    with jax.default_device(used[0]):
        timings = _time(lambda ctx: jax_variants.fit(ctx, mesh=mesh), args, device)
    return {**timings, "threads": {"XLA_FLAGS": os.environ.get("XLA_FLAGS")},
            "placement": {"mesh": {"data": args.devices}, "devices": [str(d) for d in used]}}


def run_torch(args: argparse.Namespace) -> dict:
    import torch
    import torch.distributed as dist

    from benchmarks import torch_variants

    set_precision(args.precision, ("torch",))
    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    where = torch_device(args.device)
    if where.type == "cuda":
        torch.cuda.set_device(where)
    backend = "gloo" if args.device == "cpu" else "nccl"
    grouped = args.devices > 1
    if grouped:
        dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{args.port}", rank=args.rank,
                                world_size=args.devices, timeout=timedelta(seconds=args.timeout_s))
    try:
        _maybe_fail(args, last_rank=args.devices - 1)
        device = Device(args.device, torch=where, jax=None, precision=args.precision)
        timings = _time(torch_variants.fit, args, device, barrier=dist.barrier if grouped else None)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    return {**timings, "threads": {"torch_intra_op": torch.get_num_threads()},
            "placement": {"process_group": backend if grouped else None, "world_size": args.devices, "device": str(where),
                          "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES")}}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pin_platform(args.device)  # before jax is imported
    result = {RESULT_KEY: 1, "backend": args.backend, "devices": args.devices, "rank": args.rank, "pid": os.getpid(), "error": None}
    try:
        result.update((run_jax if args.backend == "jax" else run_torch)(args))
    except Exception as error:  # reported on stdout, in one line, to the parent
        traceback.print_exc()
        result["error"] = " ".join(describe_error(error).split())
    print(json.dumps(result), flush=True)
    return 0 if result["error"] is None else 1


if __name__ == "__main__":
    sys.exit(main())
