"""The cost of the gradient-conflict methods: what ``--workloads aggregators`` measures, how, and its figures.

For T = 2, 8 and 32 tasks at the blog's shape, each backend's ``fit`` runs one epoch per timed
repeat with every method of mtl_core.aggregation (and ``sum``: no aggregator, the summed step),
each in a worker process of its own: this module run as ``python -m benchmarks.aggregators``. A
method's cost is its step time over the summed step's, of the same backend and T, timed in turns
with it.

For each T the parent writes the training data once; for each backend it starts the ``sum`` worker
and keeps it alive while each method's worker runs beside it: the method's worker warms up (the sum
worker idles), then the two time one epoch each, alternately, ``repeats`` times, starting with the
other one each round, and the method's worker stops. So every ratio pairs a method with summed
epochs timed among its own, and a burst of other work on a shared machine hits both alike, while
each worker's peak memory is its own (a process's high-water mark never goes down, and memory that
one method freed would be reused unseen by the next in the same process).

The figures are pure functions of the plain record dicts of results.json (a saved run can be
re-analysed), and importing this module imports neither torch nor jax: run.py checks its arguments
against these names before importing either, and the parent only launches, asks and collects.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from mtl_core.aggregation import AGGREGATORS, describe
from benchmarks.analysis import load_note, other_load, rates
from benchmarks.environment import DEVICES, PRECISIONS, Device, jax_devices, pin_platform, set_precision, torch_device, usable_cores
from benchmarks.scaling import load_data, save_data
from benchmarks.timing import Progress, describe_error, peak_rss_mib, prepare, reset_peak_rss, resident_mib, timed_with_load
from benchmarks.worker_process import ROOT, WorkerFailed, WorkerProcess, child_env
from benchmarks.workloads import AGGREGATOR_SET, HEADLINE, RUN_LENGTH, Context, DataPool, Workload

SUM = "sum"  # no aggregator: the summed step, every ratio's baseline
METHODS = (SUM, *AGGREGATORS)
TASK_COUNTS = (2, 8, 32)
# --quick: T = 32 (a minute per method and backend) left out, and of the methods only the three that
# cost most in this study's first measurements (upgrad and nash_mtl at T = 8, pcgrad at T = 32), so
# that its verdicts judge the likely worst cases in a few minutes.
QUICK_TASK_COUNTS = (2, 8)
QUICK_METHODS = (SUM, "pcgrad", "nash_mtl", "upgrad")
MAX_TASKS = 64  # each task is a batch of 64 rows per step: past this a CPU run takes hours
FITS = {"torch": "torch_ref.fit", "jax": "jax_impl.fit"}
# The project's targets (CPU): every method's fit step at most this many times the summed step.
TARGETS = {2: 3.0, 8: 4.0}
# Both fits hand their loop RUN_LENGTH steps at a time (torch_ref.train, jax_impl.train). A repeat runs
# two such runs, as benchmarks.variants.FIT_MIN_STEPS, so that fit's per-call costs weigh as in a real
# epoch; from LONG_STEP_TASKS tasks on a step is long enough that one run is, and halves the run.
LONG_STEP_TASKS = 16


def workload(num_tasks: int) -> Workload:
    """The blog's shape (vocabulary 20,000, hidden 200, 64 rows per task) with ``num_tasks`` tasks."""
    return Workload(f"{AGGREGATOR_SET}-T{num_tasks}", HEADLINE.vocab_size, HEADLINE.batch_size, num_tasks, sweeps=(AGGREGATOR_SET,))


def min_steps(num_tasks: int) -> int:
    """The fewest steps in a timed repeat of fit at ``num_tasks`` tasks (see RUN_LENGTH)."""
    return 2 * RUN_LENGTH if num_tasks < LONG_STEP_TASKS else RUN_LENGTH


@dataclass(frozen=True)
class CostSettings:
    """What run.py's arguments say of a run of the study; ``methods`` starts with ``sum``."""

    task_counts: tuple[int, ...]
    methods: tuple[str, ...]
    repeats: int
    repeat_seconds: float
    rows_per_task: int  # at T = 2; fewer at larger T unless ``fixed_rows`` (see rows_for)
    fixed_rows: bool  # --rows-per-task given: exactly that many at every T
    seed: int
    precision: str
    # torch's intra-op threads per worker; run.py gives 1 on a CPU, as the scaling study: on a shared
    # machine torch's spin-waiting OpenMP threads made its step times swing up to 20-fold (139 ms for
    # the summed step at T = 2, against 6.6 ms with one thread), while jax's were unmoved.
    torch_threads: int | None
    timeout_s: float  # for each answer of a worker: its start-up and warm-up, or one repeat

    def __post_init__(self) -> None:
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods or self.methods[0] != SUM:
            raise ValueError(f"methods must start with {SUM!r} and name only {list(METHODS)}, got {list(self.methods)}")
        bad = [t for t in self.task_counts if not 2 <= t <= MAX_TASKS]
        if bad or not self.task_counts:
            raise ValueError(f"task counts must be from 2 to {MAX_TASKS}, got {list(self.task_counts)}")

    def rows_for(self, num_tasks: int) -> int:
        """Rows per task at T tasks: by default the rows of all tasks stay those of T = 2 (the data
        would grow 16-fold at T = 32 for steps that are long anyway), but never below a repeat's fewest steps."""
        if self.fixed_rows:
            return self.rows_per_task
        return max(self.rows_per_task * 2 // num_tasks, min_steps(num_tasks) * HEADLINE.batch_size)


def chosen_methods(names: list[str] | None, quick: bool) -> tuple[str, ...]:
    """The methods to measure, ``sum`` first and always; ValueError naming any unknown one."""
    if not names:
        return QUICK_METHODS if quick else METHODS
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {list(METHODS)}")
    return tuple(m for m in METHODS if m == SUM or m in names)


def method_settings(method: str) -> dict:
    """The settings a method ran with (its defaults), for the report."""
    return {"method": method} if method == SUM else {"method": method, **describe(AGGREGATORS[method])}


# --- the figures --------------------------------------------------------------------------------


def per_step_ms(repeat_s: list[float], steps: int) -> list[float]:
    return [1e3 * s / steps for s in repeat_s]


def add_ratios(records: list[dict]) -> None:
    """Each method's median step time over the summed step's, from the sum repeats timed in turns
    with it (``sum_repeat_s``), with the range min/max .. max/min; None where either failed.

    The pairs come from the same backend and T by construction; a method whose (backend, T) has
    no successful sum record gets no ratio.
    """
    sums = {(r["backend"], r["num_tasks"]) for r in records if r["method"] == SUM and r.get("error") is None}
    for record in records:
        record["ratio_to_sum"], record["ratio_range"] = None, None
        if record.get("error") is not None or (record["backend"], record["num_tasks"]) not in sums:
            continue
        if record["method"] == SUM:
            record["ratio_to_sum"] = 1.0
            continue
        if not record.get("sum_repeat_s"):
            continue
        own = per_step_ms(record["repeat_s"], record["steps_per_repeat"])
        base = per_step_ms(record["sum_repeat_s"], record["sum_steps_per_repeat"])
        record["ratio_to_sum"] = statistics.median(own) / statistics.median(base)
        record["ratio_range"] = [min(own) / max(base), max(own) / min(base)]


GROWTH_MIB = 4.0  # resident memory rising by more than this at every timed repeat is reported as never given back


def growth_per_repeat(record: dict) -> float | None:
    """MiB by which the worker's resident memory rose per timed repeat, when it rose at every one
    by more than GROWTH_MIB (memory the method never gives back: its peak grows with the run); else None."""
    resident = (record.get("memory") or {}).get("rss_after_repeats_mib") or []
    rises = [b - a for a, b in zip(resident, resident[1:])]
    if len(rises) < 2 or min(rises) <= GROWTH_MIB:
        return None
    return (resident[-1] - resident[0]) / len(rises)


def _target(name: str, value, threshold: float, met, note: str, load: str | None = None) -> dict:
    """A target in the shape of benchmarks.analysis's (a ratio that must stay at or under ``threshold``)."""
    return {"name": name, "value": value, "threshold": threshold, "goal": None, "met": met, "goal_met": None, "note": note,
            "load": load}


def worst(records: list[dict], backend: str, num_tasks: int) -> tuple[dict | None, list[dict]]:
    """The measured method with the largest ratio to sum, and the methods that got no ratio."""
    methods = [r for r in records if r["backend"] == backend and r["num_tasks"] == num_tasks and r["method"] != SUM]
    measured = [r for r in methods if r.get("ratio_to_sum") is not None]
    return max(measured, key=lambda r: r["ratio_to_sum"], default=None), [r for r in methods if r.get("ratio_to_sum") is None]


def targets(records: list[dict], device: str, methods: tuple[str, ...]) -> list[dict]:
    """Per backend and target T: met when every measured method's ratio is <= the threshold. When
    some method was not judged (it failed, or quick left it out) the name says how many were, and the
    note which were not."""
    left_out = [m for m in METHODS if m not in methods]
    result = []
    for backend, fit in FITS.items():
        for num_tasks, threshold in TARGETS.items():
            name = f"CPU: every aggregator's {fit} step <= {threshold:g}x the summed step at T = {num_tasks}"
            if device != "cpu":
                result.append(_target(name, None, threshold, None, "CPU target: not measured on this run (run with --device cpu)"))
                continue
            top, unjudged = worst(records, backend, num_tasks)
            if top is None:
                result.append(_target(name, None, threshold, None, "not measured in this run"))
                continue
            notes = [f"no ratio for {', '.join(r['method'] for r in unjudged)} (failed)"] if unjudged else []
            if left_out:
                notes.append(f"not measured: {', '.join(left_out)}")
            judged = len(METHODS) - 1 - len(unjudged) - len(left_out)
            of = f" of {judged} measured" if notes else ""
            summed = [r for r in records if r["backend"] == backend and r["num_tasks"] == num_tasks and r["method"] == SUM]
            result.append(_target(f"{name} (worst{of}: {top['method']}, {top['ratio_to_sum']:.2f}x)", top["ratio_to_sum"],
                                  threshold, top["ratio_to_sum"] <= threshold, "; ".join(notes), load_note([top, *summed])))
    return result


# --- running the study: one worker per (backend, T, method), timed in turns with sum --------------

WORKER_MODULE = "benchmarks.aggregators"
MARKER = "aggregator_worker"  # marks the worker's answers on its stdout
REQUESTS = ("repeat", "memory", "stop")


def worker_command(backend: str, method: str, num_tasks: int, data: Path, device: str, settings: CostSettings) -> list[str]:
    command = [sys.executable, "-m", WORKER_MODULE, backend, "--method", method, "--tasks", str(num_tasks), "--data", str(data),
               "--min-steps", str(min_steps(num_tasks)), "--target-s", str(settings.repeat_seconds),
               "--seed", str(settings.seed), "--device", device, "--precision", settings.precision]
    if backend == "torch" and settings.torch_threads:
        command += ["--torch-threads", str(settings.torch_threads)]
    return command


class Measurement:
    """One (backend, T, method): its worker, the repeats it timed, and its record."""

    def __init__(self, backend: str, num_tasks: int, method: str, data: Path, device: str, settings: CostSettings):
        shape = workload(num_tasks)
        self.settings = settings
        self.record = {"workload": shape.name, "variant": FITS[backend], "backend": backend, "method": method,
                       "num_tasks": num_tasks, "kind": "variant", "error": None, "rows_per_step": shape.rows_per_step}
        self.repeat_s: list[float] = []
        self.other_cpu_s: list[float | None] = []  # other processes' CPU time during each repeat
        self.started = time.perf_counter()
        self.worker = WorkerProcess(worker_command(backend, method, num_tasks, data, device, settings), child_env(), MARKER, ROOT)
        self.ready: dict | None = None
        self.memory: dict | None = None  # taken before the worker stops (the sum's, after its first repeats)

    @property
    def failed(self) -> bool:
        return self.record["error"] is not None

    def _ask(self, request: str | None) -> dict | None:
        """The worker's answer, or None when it failed (its error then in the record, the worker gone)."""
        if self.failed:
            return None
        try:
            return self.worker.ask(request, self.settings.timeout_s)
        except WorkerFailed as error:
            self.record["error"] = str(error)
            return None

    def wait_ready(self) -> bool:
        self.ready = self._ask(None)
        self.record["load_average"] = [os.getloadavg()[0]]
        return self.ready is not None

    def repeat(self) -> float | None:
        answer = self._ask("repeat")
        if answer is not None:
            self.repeat_s.append(answer["seconds"])
            self.other_cpu_s.append(answer["other_cpu_s"])
        return None if answer is None else answer["seconds"]

    def take_memory(self) -> None:
        """Keep the worker's memory figures as they are now, for its record."""
        answer = self._ask("memory")
        if answer is not None:
            self.memory = answer["memory"]

    def finish(self) -> dict:
        """Stop the worker; the record with its timings and memory (or its error)."""
        if not self.failed:
            try:
                stopped = self.worker.stop("stop", self.settings.timeout_s)
            except WorkerFailed as error:
                self.record["error"] = str(error)
            else:
                self._fill(self.memory or stopped["memory"])
        self.worker.close()
        self.record["wall_s"] = time.perf_counter() - self.started
        return self.record

    def __enter__(self) -> Measurement:
        return self

    def __exit__(self, *exc) -> None:
        self.worker.close()  # on an error (or an interrupt) too: no worker outlives its measurement

    def _fill(self, memory: dict) -> None:
        steps = self.ready["steps"]
        self.record.update(rates(steps, self.repeat_s, self.record["rows_per_step"]))
        self.record.update(steps_per_repeat=steps, rows_per_task=self.ready["rows_per_task"], repeat_s=self.repeat_s,
                           warmup_s=self.ready["warmup_s"], memory=memory, threads=self.ready["threads"],
                           other_load=other_load(self.repeat_s, self.other_cpu_s, usable_cores()))
        self.record["load_average"].append(os.getloadavg()[0])


def time_in_turns(method: Measurement, summed: Measurement | None, repeats: int) -> None:
    """``repeats`` repeats of the method, each beside one of the sum's (first one, then the other)."""
    pair_s: list[float] = []
    for round_ in range(repeats):
        order = [method, summed] if round_ % 2 == 0 else [summed, method]
        for measurement in order:
            if measurement is None or measurement.failed:
                continue
            seconds = measurement.repeat()
            if measurement is summed and seconds is not None:
                pair_s.append(seconds)
    if summed is not None and not summed.failed and len(pair_s) == repeats:
        method.record.update(sum_repeat_s=pair_s, sum_steps_per_repeat=summed.ready["steps"])


def _label(backend: str, num_tasks: int, method: str) -> str:
    return f"T={num_tasks} {FITS[backend]} {method}"


def _finish(measurement: Measurement, progress: Progress) -> dict:
    record = measurement.finish()
    if record["error"] is not None:
        progress.warn(f"{_label(record['backend'], record['num_tasks'], record['method'])} failed: {record['error']}")
        progress.finish("failed")
    else:
        progress.finish(f"{record['ms_per_step']:.1f} ms/step")
    return record


def measure_backend(backend: str, num_tasks: int, data: Path, device: str, settings: CostSettings, progress: Progress) -> list[dict]:
    """The records of every method of one backend at one T, sum first."""
    progress.start(_label(backend, num_tasks, SUM))
    records = []
    with Measurement(backend, num_tasks, SUM, data, device, settings) as summed:
        summed.wait_ready()
        for method in settings.methods[1:]:
            progress.start(_label(backend, num_tasks, method))
            with Measurement(backend, num_tasks, method, data, device, settings) as measurement:
                if measurement.wait_ready():
                    time_in_turns(measurement, None if summed.failed else summed, settings.repeats)
                records.append(_finish(measurement, progress))
            if summed.memory is None and len(summed.repeat_s) >= settings.repeats:
                summed.take_memory()  # after as many repeats as a method's: its later ones would add heap growth
        if not summed.repeat_s:  # no method was timed beside it: the sum is timed alone
            for _ in range(settings.repeats):
                summed.repeat()
        records.insert(0, _finish(summed, progress))
    return records


def run_study(device: str, settings: CostSettings, progress: Progress) -> list[dict]:
    """Every (backend, T, method) record, T-major, then backend, sum first; with their ratios to sum."""
    records = []
    with tempfile.TemporaryDirectory(prefix="mtl-aggregators-") as folder:
        for num_tasks in settings.task_counts:
            data = Path(folder) / f"train-T{num_tasks}.npz"
            save_data(DataPool(settings.seed).train(workload(num_tasks), settings.rows_for(num_tasks)), data)
            for backend in FITS:
                records += measure_backend(backend, num_tasks, data, device, settings, progress)
            data.unlink()
    add_ratios(records)
    return records


# --- the worker: one measurement alone in its process ---------------------------------------------
# python -m benchmarks.aggregators torch|jax --method M --tasks T --data TRAIN.npz --min-steps S --target-s X
# It notes its resident memory (the baseline: interpreter, framework, data), builds the model, warms
# up and sizes its epoch with the harness's code and answers "ready"; then it times one epoch of fit
# for every "repeat" line on its stdin; "memory" answers its memory figures so far, "stop" answers
# them and ends it. Each answer is one JSON line on stdout, marked with MARKER; an error is answered
# the same way, then it exits 1.


def parse_worker_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.aggregators", description=__doc__.split("\n")[0])
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


def open_and_serve(args: argparse.Namespace) -> int:
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
            seconds, other_cpu_s = timed_with_load(prep.runner)
            resident.append(resident_mib() or 0.0)
            answer(event="repeat", seconds=seconds, other_cpu_s=other_cpu_s)
        elif request in ("memory", "stop"):
            answer(event=request, memory=memory(device, args.backend, baseline, warmup_peak, timed_scope, resident))
            if request == "stop":
                return 0
        else:
            raise ValueError(f"unknown request {request!r}; expected one of {REQUESTS}")
    raise RuntimeError("stdin closed before a stop request")


def worker_main(argv: list[str] | None = None) -> int:
    """One measurement's worker: it answers each request on its stdin with one JSON line on stdout."""
    args = parse_worker_args(argv)
    pin_platform(args.device)  # before jax is imported
    try:
        return open_and_serve(args)
    except Exception as error:  # answered in one line, to the parent
        traceback.print_exc()
        answer(event="error", error=describe_error(error))
        return 1


if __name__ == "__main__":
    sys.exit(worker_main())
