"""The results as people read them: the terminal table and report.md (table, targets, explanations)."""

from __future__ import annotations

import math

from benchmarks import analysis
from benchmarks.context import SEED_RECIPE as SEED

COLUMNS = ("workload", "variant", "steps/s", "min-max", "samples/s", "x seed", "% own floor", "% fastest floor", "warm-up s", "peak RSS MiB")


def number(value, digits: int = 0, percent: bool = False) -> str:
    if value is None:
        return "-"
    if percent:
        return f"{100 * value:.0f}%"
    return f"{value:,.{digits}f}"


def table_rows(records: list[dict]) -> list[tuple[str, ...]]:
    """One row per measurement, floors included, in run order."""
    rows = []
    for r in records:
        if r.get("error") is not None:
            rows.append((r["workload"], r["variant"], "failed", r["error"][:60], *("",) * (len(COLUMNS) - 4)))
            continue
        steps = r["steps_per_s"]
        fraction = r.get("fraction_of_floor") or {}
        rows.append((
            r["workload"],
            r["variant"],
            number(steps["median"], 1),
            f"{steps['min']:,.1f}-{steps['max']:,.1f}",
            number(r["samples_per_s"]["median"]),
            number(r.get("ratio_to_seed"), 1),
            number(fraction.get("own"), percent=True),
            number(fraction.get("fastest"), percent=True),
            number(r["warmup_s"], 2),
            number(r["memory"]["peak_rss_mib"]),
        ))
    return rows


def aligned_table(header, rows, left: int = 2) -> str:
    """A plain-text table: the first ``left`` columns aligned left, the figures right."""
    rows = [tuple(header)] + [tuple(row) for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i < left else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def text_table(records: list[dict]) -> str:
    return aligned_table(COLUMNS, table_rows(records))


def markdown_table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell).replace("|", "/") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(target: dict) -> str:
    if target["met"] is None:
        return "n/a"
    verdict = "met" if target["met"] else "NOT met"
    if target["goal_met"] is not None:
        verdict += ", goal met" if target["goal_met"] else ", goal not met"
    return verdict


def targets_table(targets: list[dict]) -> str:
    def value(t):
        if t["value"] is None:
            return "-"
        return f"{100 * t['value']:.0f}%" if t["threshold"] < 1 else f"{t['value']:.2f}x"

    def bound(t, key):
        if t[key] is None:
            return "-"
        return f"{100 * t[key]:.0f}%" if t["threshold"] < 1 else f"{t[key]:g}x"

    rows = [(t["name"], value(t), bound(t, "threshold"), bound(t, "goal"), verdict(t), t["note"]) for t in targets]
    return markdown_table(("target", "measured", "threshold", "goal", "verdict", "note"), rows)


PARTS = (("Adam floor", "floor_ms"), ("forward/backward", "compute_ms"), ("dense forward/backward", "dense_compute_ms"),
         ("batching in the loop", "batching_ms"))
# Which parts of the breakdown explain each jax-vs-torch pair.
PAIR_PARTS = {"jax_impl.fit": ("floor_ms", "compute_ms", "batching_ms"), "jax_impl.step": ("floor_ms", "compute_ms"),
              "jax_impl.step-dense": ("floor_ms", "dense_compute_ms")}


def _where_jax_costs_more(torch_parts: dict, jax_parts: dict, keys) -> list[tuple[str, float, float]]:
    """(part, jax ms, torch ms) of the parts where jax's step costs more, largest excess first."""
    worse = [(label, jax_parts[key], torch_parts[key]) for label, key in PARTS
             if key in keys and key in jax_parts and key in torch_parts and jax_parts[key] > torch_parts[key]]
    return sorted(worse, key=lambda part: part[2] - part[1])


def _breakdown_note(backend: str, p: dict) -> str | None:
    if not {"fit_ms", "compute_ms", "batching_ms"} <= set(p):
        return None
    note = (f"{backend} at the blog's shape: a fit step takes {p['fit_ms']:.2f} ms; the Adam floor is {p['floor_ms']:.2f} ms, "
            f"the step on pre-cut batches {p['step_ms']:.2f} ms (so {p['compute_ms']:.2f} ms of forward, backward and "
            "step bookkeeping)")
    if p["batching_ms"] >= 0:
        return note + f", and fit adds {p['batching_ms']:.2f} ms of cutting, converting and moving batches in its loop."
    return note + (f"; fit is {-p['batching_ms']:.2f} ms faster than a call of the step per batch: it runs several steps "
                   "per dispatch, and its batching overlaps the device's work.")


def _jax_versus_torch(records: list[dict], device: str) -> list[str]:
    """One line per workload and pair: the ratio, and where jax is slower, which parts cost it."""
    found = analysis.index(records)
    notes = []
    for workload in dict.fromkeys(r["workload"] for r in records):
        parts = analysis.breakdown(records, workload)
        for jax_name, torch_name in analysis.JAX_TORCH_PAIRS:
            a, b = found.get((workload, jax_name)), found.get((workload, torch_name))
            if not (a and b):
                continue
            ratio = analysis.median(a, "samples_per_s") / analysis.median(b, "samples_per_s")
            line = f"{workload}: {jax_name} runs at {ratio:.2f}x the samples/s of {torch_name}"
            if ratio < 1 and {"jax", "torch"} <= set(parts):
                worse = _where_jax_costs_more(parts["torch"], parts["jax"], PAIR_PARTS[jax_name])
                line += "; jax costs more on " + ", ".join(f"the {label} ({j:.2f} vs {t:.2f} ms per step)" for label, j, t in worse)
                if device == "cpu" and worse and worse[0][0] == "forward/backward":
                    line += (". On the CPU the gradient of jax's gather-based sparse layer is a scatter-add that XLA runs "
                             "as a serial loop, where torch's EmbeddingBag backward is a sorted, vectorised kernel")
            notes.append(line + ".")
    return notes


def _ratio_note(records: list[dict], fast: str, slow: str, what: str) -> str | None:
    found = analysis.index(records)
    gains = [
        f"{analysis.median(found[(w, fast)], 'samples_per_s') / analysis.median(found[(w, slow)], 'samples_per_s'):.1f}x at {w}"
        for w in dict.fromkeys(r["workload"] for r in records)
        if (w, fast) in found and (w, slow) in found
    ]
    return f"{what}: " + ", ".join(gains) + "." if gains else None


def explanations(records: list[dict], device: str, workload: str = "headline") -> list[str]:
    """Short, measured statements: where the step's time goes, and why one variant beats another."""
    found = analysis.index(records)
    notes = [_breakdown_note(backend, p) for backend, p in analysis.breakdown(records, workload).items()]
    notes += _jax_versus_torch(records, device)
    notes.append(_ratio_note(records, "torch_ref.step", "torch_ref.step-dense", "torch: the sparse first layer over the dense one"))
    notes.append(_ratio_note(records, "jax_impl.step", "jax_impl.step-dense", "jax: the sparse first layer over the dense one"))
    notes.append(_ratio_note(records, "torch_ref.step+compile", "torch_ref.step", "torch.compile (sparse path, dynamic shapes) over the eager step"))
    compiled = found.get((workload, "torch_ref.step+compile"))
    if compiled:
        notes.append(f"torch.compile's first call (compilation) took {compiled['warmup_s']:.1f} s at {workload}.")
    if device == "gpu":
        notes.append(
            "GPU: some jaxlib releases around 0.10-0.11 compile the float32 scatter-add of the sparse layer's gradient "
            "to a slow retry loop; the jaxlib and CUDA plugin versions are in the set-up above."
        )
    seed = found.get((workload, SEED))
    if seed:
        notes.append(
            f"The seed recipe spends its step densifying rows one at a time and multiplying dense (batch x vocabulary) "
            f"inputs: {seed['ms_per_step']:.1f} ms per step at {workload}."
        )
    return [note for note in notes if note]


def setup_lines(results: dict, threads: str) -> list[str]:
    """The set-up lines every report opens with: command, device, machine, libraries, threads, precision."""
    env = results["environment"]
    return [
        f"- command: `{results['command']}` ({results['mode']} run, {results['duration_s']:.0f} s)",
        "- device: " + ", ".join(f"{k} {v}" for k, v in results["device"].items()),
        f"- machine: {env['machine']['cpu_model']}, {env['machine']['cpu_count']} cores "
        f"({env['machine']['usable_cores']} usable), load average {results['load_average']['start']:.2f} at start, "
        f"{results['load_average']['end']:.2f} at the end",
        f"- libraries: " + ", ".join(f"{k} {v}" for k, v in env["libraries"].items()),
        f"- threads: {threads}",
        f"- float32 matmul precision: torch {env['precision']['torch']}, jax {env['precision']['jax']}",
    ]


def shared_machine_lines(records: list[dict], cores: int, advice: str = "") -> list[str]:
    """A set-up line when other work loaded the machine during some measurements, else none."""
    noisy = [r for r in records if r.get("load_average") and max(r["load_average"]) > cores]
    if not noisy:
        return []
    return [f"- other work shared the machine during {len(noisy)} of {len(records)} measurements (1-minute load above "
            f"the core count): read min-max as noise{advice}"]


def markdown(results: dict) -> str:
    """report.md: the set-up, the table, the targets and the explanations."""
    records, env = results["results"], results["environment"]
    threads = env["threads"]
    setup = setup_lines(results, f"torch {threads['torch_intra_op']} intra-op / {threads['torch_inter_op']} inter-op, "
                                 f"XLA {threads['xla_eigen']} Eigen threads; BLAS of {threads['blas']}") + [
        f"- timing: median and min-max of {results['settings']['repeats']} repeats of >= "
        f"{results['settings']['repeat_seconds']} s after warm-up; warm-up (compilation included) reported apart; "
        "samples/s counts the rows of all tasks; fractions of the floor are floor step time / variant step time",
        "- peak RSS: the process's resident high-water mark while the variant warmed up (reset before it): it includes "
        "the interpreter, both frameworks, the data and the variants of the workload set up before it; results.json "
        "also holds the growth over the resident size before the variant (0 where it reused freed memory)",
        "- data preparation inside the timed loop: "
        + ", ".join(v["name"] for v in results["variants"] if v["data_in_loop"])
        + "; the step variants get pre-cut batches already on the device",
    ]
    if results["mode"] == "quick":
        setup.append("- quick run: short repeats, and only the fits and the recipe beyond the headline: the figures are "
                     "indicative; judge the targets on a full run")
    advice = (": torch's OpenMP threads spin-wait at every parallel op and suffer most (compare a run with "
              "--torch-threads 1)") if threads["torch_intra_op"] > 1 else ""
    setup += shared_machine_lines(records, env["machine"]["usable_cores"], advice)
    sections = [
        "# Benchmark report",
        "\n".join(setup),
        "## Results\n\n" + markdown_table(COLUMNS, table_rows(records)),
        "## Targets\n\n" + targets_table(results["targets"]),
        "## Where the time goes\n\n" + "\n".join(f"- {note}" for note in explanations(records, results["device"]["kind"])),
        "## Variants\n\n" + "\n".join(f"- `{v['name']}`: {v['about']}" for v in results["variants"] + results["floors"]),
    ]
    return close_report(sections, results, lambda r: f"{r['workload']} / {r['variant']}")


def close_report(sections: list[str], results: dict, name) -> str:
    """The report's text: the sections, then its failures (``name`` names a record) and plots."""
    failed = [r for r in results["results"] if r.get("error") is not None]
    if failed:
        sections.append("## Failures\n\n" + "\n".join(f"- {name(r)}: {r['error']}" for r in failed))
    if results.get("plots_note"):
        sections.append(f"## Plots\n\n{results['plots_note']}")
    return "\n\n".join(sections) + "\n"


# --- the scaling study (--devices N) --------------------------------------------------------------

SCALING_COLUMNS = ("fit", "devices", "how", "samples/s", "min-max", "speed-up", "efficiency", "warm-up s", "wall s")


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'s' * (count != 1)}"


def scaling_rows(records: list[dict]) -> list[tuple[str, ...]]:
    """One row per (backend, device count), failures included."""
    rows = []
    for r in records:
        if r.get("error") is not None:
            rows.append((r["variant"], str(r["devices"]), r["how"], "failed", r["error"][:80], "", "", "", number(r.get("wall_s"), 1)))
            continue
        samples, span = r["samples_per_s"], r.get("speedup_range")
        speedup = "-" if r["speedup"] is None else f"{r['speedup']:.2f}x ({span[0]:.2f}-{span[1]:.2f})"
        rows.append((
            r["variant"],
            str(r["devices"]),
            r["how"],
            number(samples["median"]),
            f"{samples['min']:,.0f}-{samples['max']:,.0f}",
            speedup,
            number(r["efficiency"], percent=True),
            number(r["warmup_s"], 2),
            number(r["wall_s"], 1),
        ))
    return rows


def scaling_text_table(records: list[dict]) -> str:
    return aligned_table(SCALING_COLUMNS, scaling_rows(records), left=3)


def scaling_notes(results: dict) -> list[str]:
    """The interpretation: each backend's speed-up at its largest device count, and what limits it here."""
    records, machine = results["results"], results["environment"]["machine"]
    notes = []
    for variant in dict.fromkeys(r["variant"] for r in records):
        done = [r for r in records if r["variant"] == variant and r.get("speedup") is not None]
        one = next((r for r in done if r["devices"] == 1), None)
        top = max(done, key=lambda r: r["devices"], default=None)
        if one is not None and top is not None and top is not one:
            notes.append(f"{variant}: {one['samples_per_s']['median']:,.0f} samples/s on one device, "
                         f"{top['samples_per_s']['median']:,.0f} on {top['devices']}: a speed-up of {top['speedup']:.2f}x, "
                         f"{100 * top['efficiency']:.0f}% efficiency.")
    largest = results["scaling"]["device_counts"][-1]
    cores = machine["usable_cores"]
    if largest == 1:
        notes.append("Only one device was measured: run with --devices 2 or more to see the scaling.")
    elif results["device"]["kind"] == "cpu":
        note = (f"On a CPU the devices are not extra hardware: jax's forced host devices and torch's gloo processes all "
                f"share this machine's {_plural(cores, 'usable core')} (load average {results['load_average']['start']:.1f} "
                "at the start, other work included), so more devices bring no more compute, and an efficiency well "
                "below 100% is expected: these figures measure what splitting each batch costs (one program per device, "
                "the gradient all-reduce, for torch the traffic between processes), not how fit scales over real devices.")
        if largest > cores:
            note += f" From {cores + 1} devices on, the devices also take turns on the cores."
        notes.append(note)
    else:
        notes.append(f"Each device is its own GPU. Efficiency below 100% is the gradient all-reduce and the per-step work "
                     f"that does not shrink with the per-device batch (batching on the host, launches): at "
                     f"{_plural(math.ceil(results['scaling']['global_batch_size'] / largest), 'row')} per task and GPU on "
                     f"{largest} GPUs, a step is short.")
    return notes


def worker_threads(records: list[dict]) -> list[int]:
    """The torch intra-op thread counts that the worker processes of a study reported, sorted."""
    return sorted({r["threads"]["torch_intra_op"] for r in records if r.get("threads") and r["backend"] == "torch"})


def scaling_markdown(results: dict) -> str:
    """report.md of a scaling study: the set-up, the table, its interpretation, how each point ran."""
    records, study, settings = results["results"], results["scaling"], results["settings"]
    batch = study["global_batch_size"]
    setup = setup_lines(results, f"torch {'/'.join(map(str, worker_threads(records))) or '-'}"
                        " intra-op thread(s) per process (--torch-threads; on a CPU 1 by default, as torchrun sets); "
                        "jax: XLA's own pool, shared by the forced host devices") + [
        f"- workload: vocabulary {results['workloads'][0]['vocab_size']:,}, hidden {results['workloads'][0]['hidden']}, "
        f"{results['workloads'][0]['num_tasks']} tasks; global batch {batch} rows per task ({study['rows_per_step']} samples "
        "per step) at every device count",
        f"- strong scaling: the global batch stays fixed and is split over d devices ({batch}/d rows per task on each)",
        f"- timing: each (fit, d) runs in fresh processes; a repeat is one epoch of fit ({study['steps_per_repeat']} steps, "
        f"batching included, as users call it); median and min-max of {settings['repeats']} repeats after a warm-up "
        "(compilation) and a probe epoch; with several processes a repeat lasts until the slowest has finished it",
        "- speed-up: samples/s over the same fit's on one device (in brackets: its range from the min-max); "
        "efficiency = speed-up / d",
        "- every process loads the same training data and uses the same seed; samples/s counts the rows of all tasks",
    ]
    if results["mode"] == "quick":
        setup.append("- quick run: shorter epochs; the figures are indicative")
    setup += shared_machine_lines(records, results["environment"]["machine"]["usable_cores"])
    sections = [
        "# Scaling report",
        "\n".join(setup),
        "## Data-parallel throughput\n\n" + markdown_table(SCALING_COLUMNS, scaling_rows(records))
        + "\n\n" + "\n".join(f"- {note}" for note in scaling_notes(results)),
    ]
    return close_report(sections, results, lambda r: f"{r['variant']} on {_plural(r['devices'], 'device')}")
