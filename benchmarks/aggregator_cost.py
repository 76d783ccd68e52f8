"""The cost of the gradient-conflict methods: what ``--workloads aggregators`` measures, and its figures.

For T = 2, 8 and 32 tasks at the blog's shape, each backend's ``fit`` runs one epoch per timed
repeat with every method of mtl_core.aggregation (and ``sum``: no aggregator, the summed step),
each in a process of its own (benchmarks/aggregator_runs.py). A method's cost is its step time
over the summed step's, of the same backend and T, timed in turns with it.

Pure figures on the plain record dicts of results.json (no torch, no jax), so that run.py can check
its arguments against these names before importing either, and a saved run can be re-analysed.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from mtl_core.aggregation import AGGREGATORS, describe
from benchmarks.workloads import AGGREGATOR_SET, HEADLINE, Workload

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
RUN_LENGTH = 16
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


def _target(name: str, value, threshold: float, met, note: str) -> dict:
    """A target in the shape of benchmarks.analysis's (a ratio that must stay at or under ``threshold``)."""
    return {"name": name, "value": value, "threshold": threshold, "goal": None, "met": met, "goal_met": None, "note": note}


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
                result.append(_target(name, None, threshold, None, "a CPU target: run with --device cpu"))
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
            result.append(_target(f"{name} (worst{of}: {top['method']}, {top['ratio_to_sum']:.2f}x)", top["ratio_to_sum"],
                                  threshold, top["ratio_to_sum"] <= threshold, "; ".join(notes)))
    return result
