"""Running the aggregator study: one worker process per (backend, T, method), timed in turns with sum.

For each T the parent writes the training data once; for each backend it starts the ``sum`` worker
and keeps it alive while each method's worker runs beside it: the method's worker warms up (the sum
worker idles), then the two time one epoch each, alternately, ``repeats`` times, starting with the
other one each round, and the method's worker stops. So every ratio pairs a method with summed
epochs timed among its own, and a burst of other work on a shared machine hits both alike, while
each worker's peak memory is its own (a process's high-water mark never goes down, and memory that
one method freed would be reused unseen by the next in the same process).

Nothing here imports torch or jax: the parent only launches, asks and collects.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import aggregator_cost as cost
from benchmarks.analysis import rates
from benchmarks.aggregator_worker import MARKER
from benchmarks.progress import Progress
from benchmarks.scaling import save_data
from benchmarks.workloads import DataPool
from benchmarks.worker_process import WorkerFailed, WorkerProcess

ROOT = Path(__file__).resolve().parents[1]
WORKER_MODULE = "benchmarks.aggregator_worker"


def worker_command(backend: str, method: str, num_tasks: int, data: Path, device: str, settings: cost.CostSettings) -> list[str]:
    command = [sys.executable, "-m", WORKER_MODULE, backend, "--method", method, "--tasks", str(num_tasks), "--data", str(data),
               "--min-steps", str(cost.min_steps(num_tasks)), "--target-s", str(settings.repeat_seconds),
               "--seed", str(settings.seed), "--device", device, "--precision", settings.precision]
    if backend == "torch" and settings.torch_threads:
        command += ["--torch-threads", str(settings.torch_threads)]
    return command


def worker_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


class Measurement:
    """One (backend, T, method): its worker, the repeats it timed, and its record."""

    def __init__(self, backend: str, num_tasks: int, method: str, data: Path, device: str, settings: cost.CostSettings):
        shape = cost.workload(num_tasks)
        self.settings = settings
        self.record = {"workload": shape.name, "variant": cost.FITS[backend], "backend": backend, "method": method,
                       "num_tasks": num_tasks, "kind": "variant", "error": None, "rows_per_step": shape.rows_per_step}
        self.repeat_s: list[float] = []
        self.started = time.perf_counter()
        self.worker = WorkerProcess(worker_command(backend, method, num_tasks, data, device, settings), worker_env(), MARKER, ROOT)
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
                           warmup_s=self.ready["warmup_s"], memory=memory, threads=self.ready["threads"])
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
    return f"T={num_tasks} {cost.FITS[backend]} {method}"


def _finish(measurement: Measurement, progress: Progress) -> dict:
    record = measurement.finish()
    if record["error"] is not None:
        progress.warn(f"{_label(record['backend'], record['num_tasks'], record['method'])} failed: {record['error']}")
        progress.finish("failed")
    else:
        progress.finish(f"{record['ms_per_step']:.1f} ms/step")
    return record


def measure_backend(backend: str, num_tasks: int, data: Path, device: str, settings: cost.CostSettings, progress: Progress) -> list[dict]:
    """The records of every method of one backend at one T, sum first."""
    progress.start(_label(backend, num_tasks, cost.SUM))
    records = []
    with Measurement(backend, num_tasks, cost.SUM, data, device, settings) as summed:
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


def run_study(device: str, settings: cost.CostSettings, progress: Progress) -> list[dict]:
    """Every (backend, T, method) record, T-major, then backend, sum first; with their ratios to sum."""
    records = []
    with tempfile.TemporaryDirectory(prefix="mtl-aggregators-") as folder:
        for num_tasks in settings.task_counts:
            data = Path(folder) / f"train-T{num_tasks}.npz"
            save_data(DataPool(settings.seed).train(cost.workload(num_tasks), settings.rows_for(num_tasks)), data)
            for backend in cost.FITS:
                records += measure_backend(backend, num_tasks, data, device, settings, progress)
            data.unlink()
    cost.add_ratios(records)
    return records
