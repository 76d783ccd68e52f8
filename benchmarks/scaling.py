"""The scaling study: data-parallel throughput of both backends' fit on 1, 2, 4, ... N devices.

``python benchmarks/run.py --devices N [--device cpu|gpu] [--quick]``

Strong scaling: the global batch (``SCALING.batch_size`` rows per task) is the same at every device
count, so d devices each get 1/d of it. Every (backend, d) runs in fresh processes of
this module run as ``python -m benchmarks.scaling`` (the worker, at the end of the file), which time
``fit`` as users call it, batching included:

- jax: one process, ``jax_impl.fit(..., mesh=<"data" axis over d devices>)``; on a CPU the devices
  are forced host devices (XLA_FLAGS, which XLA reads only at start-up: hence the process), on a
  GPU machine the first d GPUs;
- torch: d processes on 127.0.0.1 (a free port), joined by gloo on a CPU or nccl on GPUs (one GPU
  per process), where ``torch_ref.fit`` trains with DistributedDataParallel.

The parent writes the training data once; every process loads the same file and uses the same
seed. A process group that fails or outlives its time limit is killed, and its error comes back
as one line. Importing this module imports neither torch nor jax (the parent only launches and
collects; the worker imports its backend when it runs), and is cheap: run.py needs its constants
to check its arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import scipy.sparse as sp

from benchmarks import analysis
from benchmarks.environment import DEVICES, PRECISIONS, Device, DeviceUnavailable, jax_devices, pin_platform, set_precision, torch_device
from benchmarks.timing import Progress, describe_error, prepare, time_interleaved
from benchmarks.worker_process import ROOT, answer_of, child_env, one_line
from benchmarks.workloads import Context, DataPool, Workload

if TYPE_CHECKING:
    from mtl_core.data import TaskData

WORKER_MODULE = "benchmarks.scaling"
# The blog's shape (vocabulary 20,000, hidden 200, two tasks) with a larger global batch, so that
# there are rows to split: 64 per task and device at d = 4.
SCALING = Workload("scaling", vocab_size=20_000, batch_size=256, num_tasks=2, sweeps=("devices",))
BACKENDS = (("torch", "torch_ref.fit"), ("jax", "jax_impl.fit"))
VARIANT_OF = dict(BACKENDS)
# Rows per task: an epoch of fit is one timed repeat (steps = rows // batch size).
ROWS_PER_TASK = {"quick": 4096, "full": 8192, "gpu": 65536}
MAX_CPU_DEVICES = 64  # forced host devices and gloo processes are cheap to ask for, not to run
TIMEOUT_S = 300.0  # per measurement (all its processes), start-up and compilation included
GRACE_S = 20.0  # once a process of a group failed, the others get this long to stop by themselves
RESULT_KEY = "scaling_result"  # marks the worker's JSON line on its stdout
FAULTS = ("raise", "hang")  # injected by the tests: the last process of the largest group fails


def device_counts(n: int) -> list[int]:
    """1, 2, 4, ... below n, then n."""
    counts, d = [], 1
    while d < n:
        counts.append(d)
        d *= 2
    return counts + [n]


@dataclass(frozen=True)
class ScalingSettings:
    devices: int  # the largest device count
    repeats: int
    rows_per_task: int
    seed: int
    precision: str
    torch_threads: int | None  # intra-op threads per torch process; None: 1 on a CPU, torch's choice on a GPU
    timeout_s: float = TIMEOUT_S
    fault: str | None = None

    @property
    def steps(self) -> int:
        """Steps per timed repeat: one epoch of fit over the data."""
        return self.rows_per_task // SCALING.batch_size

    def threads_for(self, device: str) -> int | None:
        return self.torch_threads if self.torch_threads or device == "gpu" else 1


# --- the data every process trains on ------------------------------------------------------------


def save_data(data: dict[str, TaskData], path: Path) -> None:
    arrays = {}
    for name, task in data.items():
        X = task.X
        arrays.update({f"{name}/data": X.data, f"{name}/indices": X.indices, f"{name}/indptr": X.indptr,
                       f"{name}/shape": np.array(X.shape), f"{name}/y": task.y})
    np.savez(path, **arrays)


def load_data(path: Path, workload: Workload = SCALING) -> dict[str, TaskData]:
    from mtl_core.data import TaskData

    with np.load(path) as saved:
        return {
            spec.name: TaskData(
                sp.csr_matrix((saved[f"{spec.name}/data"], saved[f"{spec.name}/indices"], saved[f"{spec.name}/indptr"]),
                              shape=tuple(saved[f"{spec.name}/shape"])),
                saved[f"{spec.name}/y"],
                spec,
            )
            for spec in workload.tasks
        }


# --- running a group of processes ----------------------------------------------------------------


@dataclass
class Outcome:
    """How one process of a group ended: ``ended_s`` is None when it was killed."""

    returncode: int | None
    stdout: str
    stderr: str
    ended_s: float | None
    killed: bool


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now; rank 0 of the group binds it again (measure retries once if another took it)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        return server.getsockname()[1]


def _kill(process: subprocess.Popen) -> None:
    """Kill a process this module started, and whatever it started (its own process group)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def run_group(commands: list[list[str]], envs: list[dict], timeout_s: float, grace_s: float = GRACE_S) -> list[Outcome]:
    """Run the processes side by side until all have ended, never longer than ``timeout_s``.

    Once one has failed, the others get ``grace_s`` to stop by themselves (a torch rank whose peer
    died fails its next collective), then they are killed: a broken group never hangs the run.
    Output goes to temporary files, so a chatty process cannot block on a full pipe.
    """
    with contextlib.ExitStack() as stack:
        files = [tuple(stack.enter_context(tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace")) for _ in range(2))  # stdout, stderr
                 for _ in commands]
        processes, ended = [], {}
        start = time.monotonic()
        try:
            for command, env, (out, err) in zip(commands, envs, files):
                processes.append(subprocess.Popen(command, env=env, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=out,
                                                  stderr=err, start_new_session=True))
            failed_at = None
            while len(ended) < len(processes):
                now = time.monotonic()
                for i, process in enumerate(processes):
                    if i not in ended and process.poll() is not None:
                        ended[i] = now - start
                        if process.returncode != 0 and failed_at is None:
                            failed_at = now
                if now - start > timeout_s or (failed_at is not None and now - failed_at > grace_s):
                    break
                time.sleep(0.05)
        finally:
            for process in processes:
                _kill(process)
        outcomes = []
        for i, (process, (out, err)) in enumerate(zip(processes, files)):
            out.seek(0)
            err.seek(0)
            outcomes.append(Outcome(process.returncode, out.read(), err.read(), ended.get(i), i not in ended))
        return outcomes


def result_of(stdout: str) -> dict | None:
    """The worker's JSON line (the last one that parses), or None."""
    for line in reversed(stdout.splitlines()):
        found = answer_of(line, RESULT_KEY)
        if found is not None:
            return found
    return None


def _own_error(outcome: Outcome) -> str:
    """One line: the worker's error, else the last line of its stderr, else its exit status."""
    result = result_of(outcome.stdout)
    lines = [line.strip() for line in outcome.stderr.splitlines() if line.strip()]
    if result and result.get("error"):
        line = result["error"]
    else:
        line = lines[-1] if lines else f"exited with status {outcome.returncode} and printed nothing"
    return one_line(line)


def group_error(outcomes: list[Outcome], timeout_s: float) -> str | None:
    """None when every process succeeded; else one line saying which failed first, and why."""
    if all(o.returncode == 0 and result_of(o.stdout) for o in outcomes):
        return None
    prefix = (lambda i: f"process {i} of {len(outcomes)}: ") if len(outcomes) > 1 else (lambda i: "")
    failed = sorted((o.ended_s, i) for i, o in enumerate(outcomes) if o.ended_s is not None and o.returncode != 0)
    if failed:
        return prefix(failed[0][1]) + _own_error(outcomes[failed[0][1]])
    silent = [i for i, o in enumerate(outcomes) if o.returncode == 0 and not result_of(o.stdout)]
    if silent:
        return prefix(silent[0]) + "exited without printing its result line"
    hint = " (raise it with --worker-timeout)" if outcomes[0].killed else ""
    return f"timed out after {timeout_s:.0f} s and was killed{hint}"


# --- one measurement: a (backend, d) group -------------------------------------------------------


def _visible_gpus() -> list[str]:
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [gpu.strip() for gpu in listed.split(",") if gpu.strip()]
    import torch  # only on a GPU machine, after open_device("gpu") imported it anyway

    return [str(i) for i in range(torch.cuda.device_count())]


def forced_devices(xla_flags: str, count: int) -> str:
    """XLA_FLAGS with ``count`` forced host devices (any earlier count replaced)."""
    kept = [f for f in xla_flags.split() if not f.startswith("--xla_force_host_platform_device_count")]
    return " ".join(kept + [f"--xla_force_host_platform_device_count={count}"])


def worker_env(backend: str, devices: int, rank: int, device: str, gpus: list[str] | None) -> dict:
    env = child_env()
    if device == "cpu" and backend == "jax":
        env["XLA_FLAGS"] = forced_devices(env.get("XLA_FLAGS", ""), devices)
    if device == "gpu":  # jax: the first d GPUs; torch: one GPU per process
        env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus[:devices] if backend == "jax" else gpus[rank : rank + 1])
    return env


def worker_command(backend: str, devices: int, rank: int, port: int, device: str, data: Path, settings: ScalingSettings) -> list[str]:
    command = [sys.executable, "-m", WORKER_MODULE, backend, "--devices", str(devices), "--rank", str(rank),
               "--port", str(port), "--device", device, "--data", str(data), "--steps", str(settings.steps),
               "--repeats", str(settings.repeats), "--seed", str(settings.seed), "--precision", settings.precision,
               "--timeout-s", str(settings.timeout_s)]
    threads = settings.threads_for(device)
    if backend == "torch" and threads:
        command += ["--torch-threads", str(threads)]
    if settings.fault and devices == settings.devices:
        command += ["--fault", settings.fault]
    return command


def how(backend: str, devices: int, device: str) -> str:
    """Where the measurement ran, in words."""
    if backend == "jax":
        plural = "s" * (devices > 1)
        where = f"{devices} forced host CPU device{plural}" if device == "cpu" else f"the first {devices} GPU{plural}"
        return f"1 process, mesh over {where}"
    if devices == 1:
        return "1 process, no process group" + ("" if device == "cpu" else ", 1 GPU")
    return f"{devices} {'gloo' if device == 'cpu' else 'nccl'} processes" + ("" if device == "cpu" else ", 1 GPU each")


def _combine(record: dict, results: list[dict], settings: ScalingSettings) -> dict:
    """One record from its processes' results: a repeat lasts until its slowest process finished it."""
    steps = {r["steps"] for r in results}
    if len(steps) != 1:
        raise RuntimeError(f"the processes ran different steps per repeat: {sorted(steps)}")
    repeat_s = [max(r["repeat_s"][i] for r in results) for i in range(settings.repeats)]
    record.update(analysis.rates(steps.pop(), repeat_s, SCALING.rows_per_step))
    record.update(
        steps_per_repeat=results[0]["steps"],
        rows_per_step=SCALING.rows_per_step,
        rows_per_device_per_task=math.ceil(SCALING.batch_size / record["devices"]),
        repeat_s=repeat_s,
        warmup_s=max(r["warmup_s"] for r in results),
        memory=results[0]["memory"],
        load_average=results[0]["load_average"],
        threads=results[0]["threads"],
        placement=results[0]["placement"],
    )
    if len(results) > 1:
        record["process_repeat_s"] = [r["repeat_s"] for r in results]
        record["process_memory"] = [r["memory"] for r in results]
    return record


def measure(backend: str, devices: int, device: str, data: Path, settings: ScalingSettings, gpus: list[str] | None = None) -> dict:
    """The record of one (backend, d): its figures, or its error in one line."""
    record = {"workload": SCALING.name, "variant": VARIANT_OF[backend], "backend": backend, "devices": devices,
              "processes": devices if backend == "torch" else 1, "how": how(backend, devices, device), "error": None}
    ranks = record["processes"]
    started = time.perf_counter()
    for attempt in range(2):  # a free port can be taken between its choice and its use: one more try
        port = free_port() if ranks > 1 else 0
        commands = [worker_command(backend, devices, rank, port, device, data, settings) for rank in range(ranks)]
        envs = [worker_env(backend, devices, rank, device, gpus) for rank in range(ranks)]
        outcomes = run_group(commands, envs, settings.timeout_s)
        error = group_error(outcomes, settings.timeout_s)
        if not (error and attempt == 0 and ranks > 1 and "address already in use" in error.lower()):
            break
    record["wall_s"] = time.perf_counter() - started
    if error is None:
        try:
            return _combine(record, [result_of(o.stdout) for o in outcomes], settings)
        except (KeyError, IndexError, TypeError, RuntimeError) as bad:
            error = f"unusable result lines: {type(bad).__name__}: {bad}"
    record["error"] = error
    record["stderr_tail"] = [o.stderr[-2000:] for o in outcomes]
    return record


def add_speedups(records: list[dict]) -> None:
    """Speed-up over the same backend on one device (medians; the range from min-max), efficiency = speed-up / d."""
    single = {r["backend"]: r for r in records if r["devices"] == 1 and r["error"] is None}
    for record in records:
        one = single.get(record["backend"])
        if record["error"] is not None or one is None:
            record.update(speedup=None, speedup_range=None, efficiency=None)
            continue
        mine, base = record["samples_per_s"], one["samples_per_s"]
        record["speedup"] = mine["median"] / base["median"]
        record["speedup_range"] = [mine["min"] / base["max"], mine["max"] / base["min"]]
        record["efficiency"] = record["speedup"] / record["devices"]


def run_study(device: str, settings: ScalingSettings, progress: Progress) -> list[dict]:
    """Every (backend, d) record, by backend then device count; d-major order of measurement, so
    that a burst of other work on a shared machine hits both backends alike."""
    counts = device_counts(settings.devices)
    gpus = _visible_gpus() if device == "gpu" else None
    records = []
    with tempfile.TemporaryDirectory(prefix="mtl-scaling-") as folder:
        data = Path(folder) / "train.npz"
        save_data(DataPool(settings.seed).train(SCALING, settings.rows_per_task), data)
        for devices in counts:
            for backend, variant in BACKENDS:
                label = f"{variant} on {devices} device{'s' * (devices > 1)}"
                progress.start(label)
                record = measure(backend, devices, device, data, settings, gpus)
                records.append(record)
                if record["error"] is not None:
                    progress.warn(f"{label} failed: {record['error']}")
                    progress.finish("failed")
                else:
                    progress.finish(f"{record['samples_per_s']['median']:,.0f} samples/s")
    order = [b for b, _ in BACKENDS]
    records.sort(key=lambda r: (order.index(r["backend"]), r["devices"]))
    add_speedups(records)
    return records


# --- the worker: one process of a measurement, one per torch rank ----------------------------------
# python -m benchmarks.scaling jax   --devices D --device cpu|gpu --data TRAIN.npz --steps S --repeats R
# python -m benchmarks.scaling torch --devices D --rank I --port P ... (D processes, I = 0..D-1)
# Times ``fit`` over one epoch of S steps (warm-up and a probe first, then R repeats) with the
# harness's timing code, and prints one JSON line: its timings, or its error. jax sees the devices
# its environment gives it (XLA_FLAGS forced host devices, or CUDA_VISIBLE_DEVICES); a torch rank
# joins a gloo (CPU) or nccl (GPU) group on 127.0.0.1:P when D > 1.


def parse_worker_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scaling", description=__doc__.split("\n")[0])
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


def worker_main(argv: list[str] | None = None) -> int:
    """One process of a measurement: its timings, or its error, as one JSON line on stdout."""
    args = parse_worker_args(argv)
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
    sys.exit(worker_main())
