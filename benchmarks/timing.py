"""Timing variants: warm-up (compilation) apart, steps sized to a minimum repeat time, and the timed
repeats of all variants of a workload interleaved.

The runner synchronises before it returns (block_until_ready, torch.cuda.synchronize), so a wall
clock around it measures the work and not its dispatch. The machine may be shared: interleaving
the repeats (round-robin over the variants, in a rotating order) spreads a burst of other work over
all variants alike instead of charging it to whichever was running, so ratios stay honest.
Peak host memory is the kernel's high-water mark of resident memory (VmHWM), reset before each
variant's warm-up where Linux allows it; its growth over the resident size before the variant is
that variant's own footprint.
"""

from __future__ import annotations

import gc
import math
import os
import resource
import time
import traceback
from dataclasses import dataclass, field

from benchmarks.context import MakeRunner, Runner

PROBE_STEPS = 2


@dataclass
class Prepared:
    """A warmed-up variant, sized so that one call of ``runner`` takes about the target time."""

    runner: Runner
    steps: int
    warmup_s: float  # the first call: compilation, caches, lazy state
    memory: dict
    repeat_s: list[float] = field(default_factory=list)
    load_average: list[float] = field(default_factory=list)  # 1-minute load around the timed repeats
    error: str | None = None  # set when a timed call failed; the variant is then left out
    traceback: str | None = None


def describe_error(error: Exception) -> str:
    return f"{type(error).__name__}: {error}"


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


def timed(runner: Runner) -> float:
    start = time.perf_counter()
    runner()
    return time.perf_counter() - start


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
                prep.repeat_s.append(timed(prep.runner))
            except Exception as error:  # recorded; the other variants go on
                prep.error, prep.traceback = describe_error(error), traceback.format_exc()
    for prep in prepared:
        prep.load_average.append(os.getloadavg()[0])
