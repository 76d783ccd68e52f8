"""One measurement of the aggregator study (started by benchmarks/aggregator_runs.py): one backend's
fit with one method at one task count, alone in its process, so that the process's peak memory is
the measurement's own.

python -m benchmarks.aggregator_worker torch|jax --method M --tasks T --data TRAIN.npz --min-steps S --target-s X

It notes its resident memory (the baseline: interpreter, framework, data), builds the model, warms
up and sizes its epoch with the harness's code and answers "ready"; then it times one epoch of fit
for every "repeat" line on its stdin; "memory" answers its memory figures so far, "stop" answers
them and ends it. Each answer
is one JSON line on stdout, marked with MARKER; an error is answered the same way, then it exits 1.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from pathlib import Path

from benchmarks.aggregator_cost import METHODS, SUM, workload
from benchmarks.device import DEVICES, PRECISIONS, Device, jax_devices, pin_platform, set_precision, torch_device
from benchmarks.scaling import load_data
from benchmarks.timing import describe_error, peak_rss_mib, prepare, reset_peak_rss, resident_mib, timed

MARKER = "aggregator_worker"
REQUESTS = ("repeat", "memory", "stop")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.aggregator_worker", description=__doc__.split("\n")[0])
    parser.add_argument("backend", choices=["torch", "jax"])
    parser.add_argument("--method", choices=METHODS, required=True)
    parser.add_argument("--tasks", type=int, required=True)
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--min-steps", type=int, required=True)
    parser.add_argument("--target-s", type=float, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=DEVICES, default="cpu")
    parser.add_argument("--precision", choices=PRECISIONS, default="highest")
    parser.add_argument("--torch-threads", type=int)
    return parser.parse_args(argv)


def answer(**fields) -> None:
    print(json.dumps({MARKER: 1, **fields}), flush=True)


def open_backend(backend: str, kind: str, precision: str, torch_threads: int | None) -> Device:
    """The device of one backend only: the other framework is never imported here."""
    set_precision(precision, (backend,))
    if backend == "jax":
        return Device(kind, torch=None, jax=jax_devices(kind)[0], precision=precision)
    import torch

    if torch_threads:
        torch.set_num_threads(torch_threads)
    where = torch_device(kind)
    if where.type == "cuda":
        torch.cuda.set_device(where)
    return Device(kind, torch=where, jax=None, precision=precision)


def threads(backend: str) -> dict:
    if backend == "torch":
        import torch

        return {"torch_intra_op": torch.get_num_threads()}
    return {"XLA_FLAGS": os.environ.get("XLA_FLAGS")}


def memory(device: Device, backend: str, baseline: float, warmup_peak: float, timed_scope: bool, resident: list[float]) -> dict:
    """MiB: host peaks over the baseline (warm-up with compilation; timed repeats, where the high-water
    mark could be reset after the warm-up; whole), the resident memory after each timed repeat (a
    rise at every repeat is memory that the method never gives back), device peaks, and ``peak_mib``,
    the figure the report shows: the device's peak on a GPU, the host's growth on a CPU."""
    last_peak = peak_rss_mib()
    timed_peak = last_peak if timed_scope else None
    peak = max(warmup_peak, last_peak)
    found = {
        "baseline_rss_mib": baseline,
        "peak_rss_mib": peak,
        "peak_growth_mib": peak - baseline,
        "warmup_peak_growth_mib": warmup_peak - baseline,
        "timed_peak_growth_mib": None if timed_peak is None else timed_peak - baseline,
        "rss_after_repeats_mib": list(resident),
        **device.memory(),
    }
    if device.is_gpu:
        found.update(peak_mib=found[f"{backend}_peak_mib"], peak_of=f"{backend}'s device peak")
    else:
        found.update(peak_mib=found["peak_growth_mib"], peak_of="peak RSS over the baseline")
    return found


def measure(args: argparse.Namespace) -> int:
    """The worker's life after its arguments: its backend's device, then ``serve``."""
    device = open_backend(args.backend, args.device, args.precision, args.torch_threads)
    if args.backend == "jax":
        import jax

        from benchmarks.jax_variants import fit

        with jax.default_device(device.jax):  # jax's arrays on the measured device, as in the harness
            return serve(args, device, fit)
    from benchmarks.torch_variants import fit

    return serve(args, device, fit)


def serve(args: argparse.Namespace, device: Device, fit) -> int:
    """Set-up and warm-up of ``fit`` (a variant's setup), then the requests until "stop"."""
    from benchmarks.context import Context

    shape = workload(args.tasks)
    ctx = Context(shape, load_data(args.data, shape), device, args.seed)
    gc.collect()
    baseline = resident_mib() or peak_rss_mib()
    make_runner = fit(ctx, aggregator=None if args.method == SUM else args.method)
    prep = prepare(make_runner, min_steps=args.min_steps, max_steps=ctx.max_steps, target_s=args.target_s, device=device)
    warmup_peak = peak_rss_mib()
    timed_scope = reset_peak_rss()  # from here the high-water mark is the timed repeats'
    answer(event="ready", steps=prep.steps, warmup_s=prep.warmup_s, rows_per_task=ctx.rows_per_task, pid=os.getpid(),
           threads=threads(args.backend))
    resident: list[float] = []
    for line in sys.stdin:
        request = line.strip()
        if request == "repeat":
            seconds = timed(prep.runner)
            resident.append(resident_mib() or 0.0)
            answer(event="repeat", seconds=seconds)
        elif request in ("memory", "stop"):
            answer(event=request, memory=memory(device, args.backend, baseline, warmup_peak, timed_scope, resident))
            if request == "stop":
                return 0
        else:
            raise ValueError(f"unknown request {request!r}; expected one of {REQUESTS}")
    raise RuntimeError("stdin closed before a stop request")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    pin_platform(args.device)  # before jax is imported
    try:
        return measure(args)
    except Exception as error:  # answered in one line, to the parent
        import traceback

        traceback.print_exc()
        answer(event="error", error=describe_error(error))
        return 1


if __name__ == "__main__":
    sys.exit(main())
