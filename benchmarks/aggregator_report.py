"""The aggregator study as people read it: a table with one row per method and, per backend and T,
ms per step with the ratio to sum and the peak memory; the verdicts; what was measured and how."""

from __future__ import annotations

from benchmarks import aggregator_cost as cost
from benchmarks.context import LEARNING_RATE
from benchmarks.report import (aligned_table, close_report, markdown_table, number, setup_lines, shared_machine_lines,
                               targets_table, worker_threads)

FAILED = "failed"


def columns(results: dict) -> list[tuple[str, int]]:
    """(backend, T) of the table's column pairs, in run order."""
    counts = [w["num_tasks"] for w in results["workloads"]]
    return [(backend, t) for backend in cost.FITS for t in counts]


def _cells(record: dict | None) -> tuple[str, str]:
    """'ms (ratio x)' and the peak MiB of one measurement; '-' where there is none."""
    if record is None:
        return "-", "-"
    if record.get("error") is not None:
        return FAILED, "-"
    ratio = record.get("ratio_to_sum")
    time = f"{record['ms_per_step']:.1f}" + ("" if ratio is None else f" ({ratio:.2f}x)")
    return time, number(record["memory"]["peak_mib"])


def header(results: dict) -> list[str]:
    found = ["method"]
    for backend, t in columns(results):
        found += [f"{backend} T={t} ms (x sum)", f"{backend} T={t} MiB"]
    return found


def rows(results: dict) -> list[tuple[str, ...]]:
    """One row per method, sum first."""
    found = {(r["backend"], r["num_tasks"], r["method"]): r for r in results["results"]}
    table = []
    for method in (m["method"] for m in results["methods"]):
        row = [method]
        for backend, t in columns(results):
            row += _cells(found.get((backend, t, method)))
        table.append(tuple(row))
    return table


def text_table(results: dict) -> str:
    return aligned_table(header(results), rows(results), left=1)


def _memory_line(results: dict) -> str:
    if results["device"]["kind"] == "gpu":
        return ("- peak memory (MiB): the worker's device peak: torch.cuda.max_memory_allocated for torch, jax's "
                "memory_stats()['peak_bytes_in_use'] for jax (which cannot reset it: a fresh process per measurement is "
                "what makes it the measurement's own); results.json also holds the host's peak RSS")
    return ("- peak memory (MiB): how far the worker's peak resident memory (VmHWM, as getrusage's ru_maxrss) rose over "
            "its resident memory before the model was built (interpreter, one framework, the data): the model, Adam, "
            "fit's batches, the method's per-task buffers and K = X Xᵀ, and for jax XLA's compilation. A process of its "
            "own per measurement, because a process's high-water mark never goes down, and memory one method freed would "
            "be reused unseen by the next in the same process (tracemalloc sees neither torch's nor XLA's allocations). "
            "The sum worker's figure is taken after its first repeats, as many as a method's. results.json holds the "
            "warm-up (compilation) and timed-repeat peaks apart")


def setup(results: dict) -> list[str]:
    """What was measured, how, and what a quick run leaves out."""
    records, settings, env = results["results"], results["settings"], results["environment"]
    threads = worker_threads(records)
    shape = results["workloads"][0]
    rows_per_task = {r["num_tasks"]: r["rows_per_task"] for r in records if r.get("rows_per_task")}
    lines = setup_lines(results, f"torch {'/'.join(map(str, threads)) or '-'} intra-op thread(s) per worker (--torch-threads; "
                                 "on a CPU 1 by default: other work on a shared machine makes more swing torch's figures "
                                 "many-fold); jax: XLA's own pool") + [
        f"- workload: the blog's shape (vocabulary {shape['vocab_size']:,}, hidden {shape['hidden']}, "
        f"{shape['batch_size']} review-like rows of ~100 words per task and step, Adam {LEARNING_RATE:g}) with "
        f"T = {', '.join(str(w['num_tasks']) for w in results['workloads'])} tasks, binary and 3-class alternating; "
        "rows per task (one epoch): " + ", ".join(f"{n:,} at T = {t}" for t, n in sorted(rows_per_task.items())),
        "- a step: one optimiser step of fit as users call it (a timed repeat is one epoch; its time / its steps): "
        "cutting the batches from CSR and converting them (jax: padding, stacking 16 steps and the transfer, and with an "
        "aggregator the host's per-step plan: K = X Xᵀ of the step's rows with scipy, PCGrad's task orders), the "
        "forward pass, every task's gradient on the shared trunk, their Gramian, the method's solver, the combined "
        "backward, Adam, and fit's per-call costs spread over the epoch; sum: the same fit with no aggregator "
        "(one backward of the summed loss)",
        f"- timing: each (backend, T, method) in a process of its own; median of {settings['repeats']} repeats of >= "
        f"{settings['repeat_seconds']} s (and >= 32 steps, 16 from T = {cost.LONG_STEP_TASKS}) after a warm-up "
        "(compilation) and a sizing probe; each method's repeats alternate with repeats of the same backend's sum, "
        "whose process stays up beside it, so both meet the same load",
        "- x sum: the method's median step time over the median of the sum repeats timed in turns with it (results.json: "
        "ratio_range, min/max to max/min), so that a change of load between methods cancels out (a method's ms and its "
        "ratio need not rank alike then); the sum row's time is the median of all its repeats",
        _memory_line(results),
    ]
    if results["mode"] == "quick":
        left_out = [m for m in cost.METHODS if m not in settings["methods"]]
        lines.append(f"- quick run: T = {', '.join(map(str, settings['task_counts']))}"
                     + (f"; not measured: {', '.join(left_out)}" if left_out else "")
                     + "; short repeats: the figures are indicative, judge the targets on a full run")
    lines.append(f"- not part of the default run (a full run of this study takes an estimated 15-20 minutes on 2 cores, "
                 "most of it at T = 32): "
                 f"python benchmarks/run.py --workloads {cost.AGGREGATOR_SET} [--quick] [--device gpu]")
    advice = (": torch's OpenMP threads spin-wait and suffer most (compare a run with --torch-threads 1)"
              if max(threads, default=1) > 1 else "")
    return lines + shared_machine_lines(records, env["machine"]["usable_cores"], advice)


def notes(results: dict) -> list[str]:
    """Per backend and T the cheapest and dearest method, and the largest memory; T without a target said so."""
    found = []
    for backend, t in columns(results):
        top, _ = cost.worst(results["results"], backend, t)
        measured = [r for r in results["results"] if r["backend"] == backend and r["num_tasks"] == t and r.get("ratio_to_sum")
                    and r["method"] != cost.SUM]
        if top is None:
            continue
        cheapest = min(measured, key=lambda r: r["ratio_to_sum"])
        roomiest = max(measured, key=lambda r: r["memory"]["peak_mib"])
        summed = next(r for r in results["results"] if r["backend"] == backend and r["num_tasks"] == t and r["method"] == cost.SUM)
        target = "no target" if t not in cost.TARGETS else f"target <= {cost.TARGETS[t]:g}x"
        found.append(f"{cost.FITS[backend]} at T = {t} ({target}): sum {summed['ms_per_step']:.1f} ms per step; dearest "
                     f"{top['method']} {top['ratio_to_sum']:.2f}x, cheapest {cheapest['method']} {cheapest['ratio_to_sum']:.2f}x; "
                     f"most memory {roomiest['method']} {roomiest['memory']['peak_mib']:,.0f} MiB "
                     f"(sum {summed['memory']['peak_mib']:,.0f} MiB).")
    return found


def growth_notes(results: dict) -> list[str]:
    """The measurements whose resident memory rose at every timed repeat: their peak depends on how long they ran."""
    grown = [(r, cost.growth_per_repeat(r)) for r in results["results"] if r.get("error") is None]
    named = [f"{cost.FITS[r['backend']]} at T = {r['num_tasks']} with {r['method']} +{mib:,.0f} MiB per repeat of "
             f"{r['steps_per_repeat']} steps" for r, mib in grown if mib is not None]
    if not named:
        return []
    return ["Resident memory rose at every timed repeat, so these peaks grow with the length of the run (memory that "
            "is never given back): " + "; ".join(named) + "."]


def markdown(results: dict) -> str:
    """report.md of the aggregator study."""
    sections = [
        "# Aggregator cost report",
        "\n".join(setup(results)),
        "## Step time and peak memory\n\n" + markdown_table(header(results), rows(results)),
        "## Targets\n\n" + targets_table(results["targets"]),
        "## Notes\n\n" + "\n".join(f"- {note}" for note in notes(results) + growth_notes(results)),
        "## Methods\n\n" + "\n".join(
            f"- `{m['method']}`: " + (", ".join(f"{k} {v}" for k, v in m.items() if k != "method") or "no aggregator")
            for m in results["methods"]),
    ]
    return close_report(sections, results, lambda r: f"{cost.FITS[r['backend']]} at T = {r['num_tasks']} with {r['method']}")
