"""The measuring loop: per workload, every floor and variant warmed up, then timed interleaved.

A variant that fails is recorded with its error and the run goes on: one broken variant must not
cost the figures of all the others.
"""

from __future__ import annotations

import gc
import traceback
from dataclasses import dataclass

import jax

from benchmarks import analysis
from benchmarks.context import Context
from benchmarks.device import Device
from benchmarks.progress import Progress
from benchmarks.timing import Prepared, describe_error, prepare, time_interleaved
from benchmarks.variants import FLOORS, Variant
from benchmarks.workloads import DataPool, Workload

UNBOUNDED = 1_000_000  # floors need no data and step variants cycle their batches: only time bounds their steps


@dataclass(frozen=True)
class Settings:
    repeats: int
    repeat_seconds: float
    rows_per_task: int  # at least: a workload with large batches gets 4 batches' worth
    seed: int

    def rows_for(self, workload: Workload) -> int:
        return max(self.rows_per_task, 4 * workload.batch_size)


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
    )
    return record


def measure_workload(ctx: Context, variants: tuple[Variant, ...], settings: Settings, progress: Progress) -> list[dict]:
    """Records of the workload's floors and variants, in that order."""
    entries = [("floor", v) for v in FLOORS] + [("variant", v) for v in variants]
    records, prepared = [], []
    for kind, variant in entries:
        progress.start(f"{ctx.workload.name} {variant.name}")
        record = {"workload": ctx.workload.name, "variant": variant.name, "backend": variant.backend, "kind": kind, "error": None}
        try:
            prep = prepare(
                variant.setup(ctx),
                min_steps=variant.min_steps,
                max_steps=ctx.max_steps if variant.data_in_loop else UNBOUNDED,
                target_s=settings.repeat_seconds,
                device=ctx.device,
            )
        except Exception as error:  # recorded, reported, and the run goes on
            records.append(_failure(record, error))
            progress.warn(f"{ctx.workload.name} / {variant.name} failed: {record['error']}")
            progress.finish("failed")
            continue
        records.append(record)
        prepared.append((record, prep))
        progress.finish(f"warm-up {prep.warmup_s:.1f} s")
    progress.start(f"{ctx.workload.name}: timing {len(prepared)} x {settings.repeats} repeats")
    time_interleaved([prep for _, prep in prepared], settings.repeats)
    for record, prep in prepared:
        if prep.error is not None:
            record.update(error=prep.error, traceback=prep.traceback)
            progress.warn(f"{ctx.workload.name} / {record['variant']} failed while timed: {prep.error}")
        else:
            _record(record, prep, ctx)
    return records


def run_plan(jobs: list[tuple[Workload, tuple[Variant, ...]]], device: Device, settings: Settings, progress: Progress) -> list[dict]:
    """All measurements of each (workload, its variants); jax arrays live on the run's device."""
    pool = DataPool(settings.seed)
    records = []
    with jax.default_device(device.jax):
        for workload, variants in jobs:
            ctx = Context(workload, pool.train(workload, settings.rows_for(workload)), device, settings.seed)
            records += measure_workload(ctx, variants, settings, progress)
            gc.collect()
    analysis.add_comparisons(records)
    return records
