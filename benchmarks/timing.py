"""Measuring: warm-up (compilation) apart, steps sized to a minimum repeat time, the timed repeats of
all variants of a workload interleaved, the memory and the other work on the machine around them,
and a progress bar while the run goes.

The runner synchronises before it returns (block_until_ready, torch.cuda.synchronize), so a wall
clock around it measures the work and not its dispatch. The machine may be shared: interleaving
the repeats (round-robin over the variants, in a rotating order) spreads a burst of other work over
all variants alike instead of charging it to whichever was running, so ratios stay honest; and
each repeat notes the CPU time that other processes took on this process's cores meanwhile, so that
a measurement taken under load is flagged as such. Peak host memory is the kernel's high-water mark
of resident memory (VmHWM), reset before each variant's warm-up where Linux allows it.

A variant that fails is recorded with its error and the run goes on: one broken variant must not
cost the figures of all the others. Nothing here imports torch or jax at import time (the workers
of the studies use it too).
"""

from __future__ import annotations

import gc
import math
import os
import resource
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from benchmarks import analysis
from benchmarks.environment import available_memory_gib, usable_cores
from benchmarks.workloads import Context, DataPool, MakeRunner, Runner, Workload, row_density

if TYPE_CHECKING:
    from benchmarks.environment import Device
    from benchmarks.variants import Variant

PROBE_STEPS = 2
UNBOUNDED = 1_000_000  # floors need no data and step variants cycle their batches: only time bounds their steps
# A variant holds about this many copies of the first layer's kernel at once (weights, gradient, Adam's
# two moments, fit's copies): a workload's variants are set up side by side (and timed interleaved)
# only when all of theirs fit in half the memory free at its start, else one after the other.
KERNEL_COPIES = 6


# --- memory --------------------------------------------------------------------------------------


def _status_mib(key: str) -> float | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def resident_mib() -> float | None:
    """The process's resident memory now (VmRSS), None without /proc."""
    return _status_mib("VmRSS")


def reset_peak_rss() -> bool:
    """Reset the resident-memory high-water mark (Linux >= 4.0); False where that is impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")
        return True
    except OSError:
        return False


def peak_rss_mib() -> float:
    peak = _status_mib("VmHWM")
    if peak is None:  # no /proc: ru_maxrss is the process's peak, in KiB on Linux
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return peak


# --- other work on the machine -------------------------------------------------------------------


def _busy_cpu_s() -> float | None:
    """CPU seconds that this process's cores have been busy since boot (all processes), None without /proc/stat."""
    cores = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    try:
        with open("/proc/stat") as stat:
            lines = [line.split() for line in stat if line.startswith("cpu") and line[3:4].isdigit()]
    except OSError:
        return None
    ticks = 0
    for name, *counts in lines:
        if cores is None or int(name[3:]) in cores:
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, counts[:8])
            ticks += user + nice + system + irq + softirq + steal  # steal: a hypervisor gave the core to others
    return ticks / os.sysconf("SC_CLK_TCK")


def timed(runner: Runner) -> float:
    start = time.perf_counter()
    runner()
    return time.perf_counter() - start


def timed_with_load(runner: Runner) -> tuple[float, float | None]:
    """(wall seconds of ``runner``, CPU seconds other processes took on this process's cores meanwhile)."""
    busy, own = _busy_cpu_s(), time.process_time()
    seconds = timed(runner)
    after = _busy_cpu_s()
    if busy is None or after is None:
        return seconds, None
    return seconds, max(0.0, (after - busy) - (time.process_time() - own))


# --- a variant, warmed up and timed --------------------------------------------------------------


@dataclass
class Prepared:
    """A warmed-up variant, sized so that one call of ``runner`` takes about the target time."""

    runner: Runner
    steps: int
    warmup_s: float  # the first call: compilation, caches, lazy state
    memory: dict
    repeat_s: list[float] = field(default_factory=list)
    other_cpu_s: list[float | None] = field(default_factory=list)  # other processes' CPU time during each repeat
    load_average: list[float] = field(default_factory=list)  # 1-minute load around the timed repeats
    error: str | None = None  # set when a timed call failed; the variant is then left out
    traceback: str | None = None


def describe_error(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"


def prepare(make_runner: MakeRunner, *, min_steps: int, max_steps: int, target_s: float, device=None) -> Prepared:
    """Warm up, then choose the steps per call so that a call takes >= ``target_s``, within [min_steps, max_steps]."""
    gc.collect()
    rss_before = _status_mib("VmRSS") or 0.0
    scope = "variant" if reset_peak_rss() else "process"
    if device is not None:
        device.reset_peak_memory()
    steps = min(max(PROBE_STEPS, min_steps), max_steps)
    runner = make_runner(steps)
    warmup_s = timed(runner)
    per_step = timed(runner) / steps
    for _ in range(2):  # a second sizing when the first estimate was off (e.g. fit's fixed per-call costs)
        wanted = min(max_steps, max(min_steps, math.ceil(1.2 * target_s / max(per_step, 1e-9))))
        if wanted <= steps:
            break
        steps, runner = wanted, None  # drop the old runner's batches before cutting new ones
        runner = make_runner(steps)
        elapsed = timed(runner)  # warm-up of the new size, excluded
        per_step = elapsed / steps
        if elapsed >= target_s:
            break
    peak = peak_rss_mib()
    memory = {"peak_rss_mib": peak, "rss_growth_mib": peak - rss_before, "peak_rss_scope": scope}
    if device is not None:
        memory.update(device.memory())
    return Prepared(runner=runner, steps=steps, warmup_s=warmup_s, memory=memory)


def time_interleaved(prepared: list[Prepared], repeats: int) -> None:
    """Time ``repeats`` calls of every runner, round-robin, starting one later each round."""
    for prep in prepared:
        prep.load_average.append(os.getloadavg()[0])
    for round_ in range(repeats):
        for i in range(len(prepared)):
            prep = prepared[(round_ + i) % len(prepared)]
            if prep.error is not None:
                continue
            try:
                seconds, other = timed_with_load(prep.runner)
            except Exception as error:  # recorded; the other variants go on
                prep.error, prep.traceback = describe_error(error), traceback.format_exc()
                continue
            prep.repeat_s.append(seconds)
            prep.other_cpu_s.append(other)
    for prep in prepared:
        prep.load_average.append(os.getloadavg()[0])


# --- progress ------------------------------------------------------------------------------------


class Progress:
    """A progress bar while the run goes: tqdm where installed, one plain line per measurement otherwise."""

    def __init__(self, total: int, enabled: bool = True):
        self.total, self.done, self.enabled = total, 0, enabled
        self.bar = None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                tqdm = None
            if tqdm is not None:
                self.bar = tqdm(total=total, unit="measurement", file=sys.stderr, dynamic_ncols=True)

    def start(self, label: str) -> None:
        if self.bar is not None:
            self.bar.set_description(label)
        elif self.enabled:
            print(f"[{self.done + 1}/{self.total}] {label}", file=sys.stderr, flush=True)

    def finish(self, note: str = "") -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.set_postfix_str(note)
            self.bar.update(1)

    def warn(self, message: str) -> None:
        (self.bar.write if self.bar is not None else lambda m: print(m, file=sys.stderr))(message)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


# --- the variants study: every workload's floors and variants -------------------------------------


@dataclass(frozen=True)
class Settings:
    repeats: int
    repeat_seconds: float
    rows_per_task: int  # at least: a workload with large batches gets 4 batches' worth, long fits their steps
    seed: int

    def rows_for(self, workload: Workload, variants: tuple[Variant, ...]) -> int:
        fewest = max((v.steps_floor(workload) for v in variants if v.data_in_loop), default=1)
        return max(self.rows_per_task, 4 * workload.batch_size, fewest * workload.batch_size)


def _failure(record: dict, error: Exception) -> dict:
    record["error"], record["traceback"] = describe_error(error), traceback.format_exc()
    return record


def _record(record: dict, prep: Prepared, ctx: Context) -> dict:
    record.update(analysis.rates(prep.steps, prep.repeat_s, ctx.workload.rows_per_step))
    record.update(
        steps_per_repeat=prep.steps,
        rows_per_step=ctx.workload.rows_per_step,
        repeat_s=prep.repeat_s,
        warmup_s=prep.warmup_s,
        memory=prep.memory,
        load_average=prep.load_average,
        other_load=analysis.other_load(prep.repeat_s, prep.other_cpu_s, usable_cores()),
    )
    return record


def _prepare_entry(ctx: Context, kind: str, variant: Variant, settings: Settings, progress: Progress) -> tuple[dict, Prepared | None]:
    """The variant's record (its error filled if it failed) and its warmed-up runner."""
    progress.start(f"{ctx.workload.name} {variant.name}")
    record = {"workload": ctx.workload.name, "variant": variant.name, "backend": variant.backend, "kind": kind, "error": None}
    try:
        prep = prepare(
            variant.setup(ctx),
            min_steps=variant.steps_floor(ctx.workload),
            max_steps=ctx.max_steps if variant.data_in_loop else UNBOUNDED,
            target_s=settings.repeat_seconds,
            device=ctx.device,
        )
    except Exception as error:  # recorded, reported, and the run goes on
        _failure(record, error)
        progress.warn(f"{ctx.workload.name} / {variant.name} failed: {record['error']}")
        progress.finish("failed")
        return record, None
    progress.finish(f"warm-up {prep.warmup_s:.1f} s")
    return record, prep


def _time_group(ctx: Context, group: list[tuple[dict, Prepared]], settings: Settings, progress: Progress, how: str) -> None:
    progress.start(f"{ctx.workload.name}: timing {len(group)} x {settings.repeats} repeats")
    time_interleaved([prep for _, prep in group], settings.repeats)
    for record, prep in group:
        record["timed"] = how
        if prep.error is not None:
            record.update(error=prep.error, traceback=prep.traceback)
            progress.warn(f"{ctx.workload.name} / {record['variant']} failed while timed: {prep.error}")
        else:
            _record(record, prep, ctx)


def fit_together(workload: Workload, count: int) -> bool:
    """Whether ``count`` variants of ``workload`` can be held at once (see KERNEL_COPIES)."""
    free = available_memory_gib()
    return free is None or count * KERNEL_COPIES * 4 * workload.first_layer_weights <= 0.5 * free * 2**30


def measure_workload(ctx: Context, entries: list[tuple[str, Variant]], settings: Settings, progress: Progress) -> list[dict]:
    """Records of the workload's ("floor" or "variant", Variant) entries, in that order: all set up,
    then timed interleaved; or, when they would not fit in memory together, each alone in turn."""
    records = []
    if fit_together(ctx.workload, len(entries)):
        group = []
        for kind, variant in entries:
            record, prep = _prepare_entry(ctx, kind, variant, settings, progress)
            records.append(record)
            if prep is not None:
                group.append((record, prep))
        _time_group(ctx, group, settings, progress, "interleaved")
        return records
    for kind, variant in entries:
        record, prep = _prepare_entry(ctx, kind, variant, settings, progress)
        records.append(record)
        if prep is not None:
            _time_group(ctx, [(record, prep)], settings, progress, "alone")
        del prep
        gc.collect()
    return records


def run_plan(jobs: list[tuple[Workload, tuple[Variant, ...]]], floors: tuple[Variant, ...], device: Device, settings: Settings,
             progress: Progress) -> tuple[list[dict], dict[str, dict]]:
    """All measurements of each (workload, its variants), floors first, with their comparisons; and
    each workload's row density. jax arrays live on the run's device."""
    import jax

    pool = DataPool(settings.seed)
    records, density = [], {}
    with jax.default_device(device.jax):
        for workload, variants in jobs:
            data = pool.train(workload, settings.rows_for(workload, variants))
            density[workload.name] = row_density(data)
            ctx = Context(workload, data, device, settings.seed)
            records += measure_workload(ctx, [("floor", v) for v in floors] + [("variant", v) for v in variants], settings, progress)
            gc.collect()
    analysis.add_comparisons(records)
    return records, density


def other_cores_now(seconds: float = 0.5) -> float | None:
    """Cores' worth of CPU time that other processes take on this process's cores, over ``seconds`` from now."""
    _, other = timed_with_load(lambda: time.sleep(seconds))
    return None if other is None else other / seconds
