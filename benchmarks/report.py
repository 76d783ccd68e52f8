"""All the benchmark's prose: the terminal tables and verdict lines, and each study's report.md (the
set-up, the tables, the targets, and statements generated from the measured numbers: nothing here
states a finding that the run's own figures do not show)."""

from __future__ import annotations

import math

from benchmarks import aggregators as cost
from benchmarks import analysis
from benchmarks.analysis import index, median, samples_ratio
from benchmarks.workloads import HEADLINE, LEARNING_RATE, SEED_RECIPE as SEED

# --- shared by every report -----------------------------------------------------------------------


def number(value, digits: int = 0, percent: bool = False) -> str:
    if value is None:
        return "-"
    if percent:
        return f"{100 * value:.0f}%"
    return f"{value:,.{digits}f}"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'s' * (count != 1)}"


def aligned_table(header, rows, left: int = 2) -> str:
    """A plain-text table: the first ``left`` columns aligned left, the figures right."""
    rows = [tuple(header)] + [tuple(row) for row in rows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) if i < left else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths))) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell).replace("|", "/") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def verdict(target: dict) -> str:
    """"met" / "NOT met" (with the goal's, and "under load" where a measurement it uses was), or "not measured"."""
    if target["met"] is None:
        return "not measured"
    text = "met" if target["met"] else "NOT met"
    if target["goal_met"] is not None:
        text += ", goal met" if target["goal_met"] else ", goal not met"
    return text + (" (under load)" if target.get("load") else "")


def _as_ratio(target: dict, value) -> str:
    return f"{100 * value:.0f}%" if target["threshold"] < 1 else f"{value:.2f}x"


def measured(target: dict) -> str:
    return "-" if target["value"] is None else _as_ratio(target, target["value"])


def _bound(target: dict, key: str) -> str:
    return "-" if target[key] is None else f"{100 * target[key]:.0f}%" if target["threshold"] < 1 else f"{target[key]:g}x"


def _note(target: dict) -> str:
    return "; ".join(n for n in (target["note"], target.get("load")) if n)


def verdict_line(target: dict) -> str:
    """One terminal line: the verdict, the measured value, the target, and why / under what load."""
    note = _note(target)
    return f"{verdict(target):<34} {measured(target):>7}  {target['name']}" + (f"  [{note}]" if note else "")


def targets_table(targets: list[dict]) -> str:
    rows = [(t["name"], measured(t), _bound(t, "threshold"), _bound(t, "goal"), verdict(t), _note(t)) for t in targets]
    return markdown_table(("target", "measured", "threshold", "goal", "verdict", "note"), rows)


def setup_lines(results: dict, threads: str) -> list[str]:
    """The set-up lines every report opens with: command, device, machine, libraries, threads, precision."""
    env = results["environment"]
    return [
        f"- command: `{results['command']}` ({results['mode']} run, {results['duration_s']:.0f} s)",
        "- device: " + ", ".join(f"{k} {v}" for k, v in results["device"].items()),
        f"- machine: {env['machine']['cpu_model']}, {env['machine']['cpu_count']} cores "
        f"({env['machine']['usable_cores']} usable), load average {results['load_average']['start']:.2f} at start, "
        f"{results['load_average']['end']:.2f} at the end",
        "- libraries: " + ", ".join(f"{k} {v}" for k, v in env["libraries"].items()),
        f"- threads: {threads}",
        f"- float32 matmul precision: torch {env['precision']['torch']}, jax {env['precision']['jax']}",
    ]


def load_lines(records: list[dict], cores: int, advice: str = "") -> list[str]:
    """What other work there was on the machine during the measurements: per measurement where it
    was measured (other processes' CPU time on this process's cores), else from the load average."""
    measured_load = [r for r in records if r.get("other_load")]
    if measured_load:
        loaded = [r for r in measured_load if r["other_load"]["loaded"]]
        threshold = measured_load[0]["other_load"]["threshold"]
        most = max(r["other_load"]["cores"] for r in measured_load)
        how = ("- other work on the machine (the CPU time other processes took on the measuring process's cores during "
               "its timed repeats, from /proc/stat)")
        if not loaded:
            return [f"{how}: at most {most:.2f} cores on average during any measurement, under the {threshold:.2f} "
                    "that counts as load"]
        return [f"{how}: more than {threshold:.2f} cores on average during {len(loaded)} of {len(measured_load)} "
                f"measurements (up to {most:.2f}); they are marked under load in the tables, and so are the verdicts "
                f"that use them: read their min-max as noise{advice}"]
    noisy = [r for r in records if r.get("load_average") and max(r["load_average"]) > cores]
    if not noisy:
        return []
    return [f"- other work shared the machine during {len(noisy)} of {len(records)} measurements (1-minute load above "
            f"the core count): read min-max as noise{advice}"]


def torch_threads_advice(threads: int, cores: int) -> str:
    if threads <= 1:
        return ""
    return (f"; torch ran {threads} intra-op threads on {_plural(cores, 'usable core')}: a run with --torch-threads 1 leaves "
            "the other work a core of its own")


def worker_threads(records: list[dict]) -> list[int]:
    """The torch intra-op thread counts that the worker processes of a study reported, sorted."""
    return sorted({r["threads"]["torch_intra_op"] for r in records if r.get("threads") and r["backend"] == "torch"})


def bullets(notes: list[str]) -> str:
    return "\n".join(f"- {note}" for note in notes)


def close_report(sections: list[str], results: dict, name) -> str:
    """The report's text: the sections, then its failures (``name`` names a record) and plots."""
    failed = [r for r in results["results"] if r.get("error") is not None]
    if failed:
        sections.append("## Failures\n\n" + bullets([f"{name(r)}: {r['error']}" for r in failed]))
    if results.get("plots_note"):
        sections.append(f"## Plots\n\n{results['plots_note']}")
    return "\n\n".join(sections) + "\n"


# --- the variants study (the default run) -----------------------------------------------------------

COLUMNS = ("workload", "variant", "steps/s", "min-max", "samples/s", "x seed", "% own floor", "% fastest floor", "warm-up s",
           "peak RSS MiB", "other cores")


def _other_cores(record: dict) -> str:
    load = record.get("other_load")
    if not load:
        return "-"
    return f"{load['cores']:.2f}" + (" loaded" if load["loaded"] else "")


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
            _other_cores(r),
        ))
    return rows


def text_table(records: list[dict]) -> str:
    return aligned_table(COLUMNS, table_rows(records))


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
            f"the step on pre-cut batches {p['step_ms']:.2f} ms")
    if p["compute_ms"] < 0:
        note += (" (less than the floor alone: these two were not measured alike, see the other cores column and the "
                 "min-max)")
    else:
        note += f" (so {p['compute_ms']:.2f} ms of forward, backward and step bookkeeping)"
    if p["batching_ms"] >= 0:
        return note + f", and fit adds {p['batching_ms']:.2f} ms of cutting, converting and moving batches in its loop."
    return note + f"; fit's step is {-p['batching_ms']:.2f} ms shorter than one call of the step per pre-cut batch."


def _jax_versus_torch(records: list[dict]) -> list[str]:
    """One line per workload and pair: the ratio, and where jax is slower, which parts cost it more."""
    found = index(records)
    notes = []
    for workload in dict.fromkeys(r["workload"] for r in records):
        parts = analysis.breakdown(records, workload)
        for jax_name, torch_name in analysis.JAX_TORCH_PAIRS:
            ratio = samples_ratio(found.get((workload, jax_name)), found.get((workload, torch_name)))
            if ratio is None:
                continue
            line = f"{workload}: {jax_name} runs at {ratio:.2f}x the samples/s of {torch_name}"
            if ratio < 1 and {"jax", "torch"} <= set(parts):
                worse = _where_jax_costs_more(parts["torch"], parts["jax"], PAIR_PARTS[jax_name])
                line += "; jax costs more on " + ", ".join(
                    f"the {label} ({j:.2f} vs {t:.2f} ms per step, {j / t:.1f}x)" if t > 0 else f"the {label} ({j:.2f} vs {t:.2f} ms per step)"
                    for label, j, t in worse)
            notes.append(line + ".")
    return notes


def _ratio_note(records: list[dict], fast: str, slow: str, what: str) -> str | None:
    found = index(records)
    gains = [f"{samples_ratio(found[(w, fast)], found[(w, slow)]):.1f}x at {w}"
             for w in dict.fromkeys(r["workload"] for r in records) if (w, fast) in found and (w, slow) in found]
    return f"{what}: " + ", ".join(gains) + "." if gains else None


def _seed_note(found: dict, workload: str) -> str | None:
    """The recipe's step time, and how much of it a dense step on pre-cut batches accounts for."""
    seed = found.get((workload, SEED))
    if seed is None:
        return None
    note = f"The seed recipe takes {seed['ms_per_step']:.1f} ms per step at {workload}"
    dense = found.get((workload, "torch_ref.step-dense"))
    if dense is None or dense["ms_per_step"] >= seed["ms_per_step"]:
        return note + "."
    rest = seed["ms_per_step"] - dense["ms_per_step"]
    return (note + f"; torch_ref.step-dense, which multiplies the same dense (batch x vocabulary) inputs on pre-cut batches, "
            f"takes {dense['ms_per_step']:.1f} ms: the other {rest:.1f} ms ({100 * rest / seed['ms_per_step']:.0f}%) are what "
            "the recipe does beyond it (densifying rows one at a time in its DataLoaders, for-each Adam, loss.item()).")


def _gpu_note(results: dict, workload: str) -> str | None:
    """On a GPU: jax's forward/backward against torch's, with the jax versions that compiled it."""
    parts = analysis.breakdown(results["results"], workload)
    if results["device"]["kind"] != "gpu" or not {"jax", "torch"} <= set(parts):
        return None
    jax_ms, torch_ms = parts["jax"].get("compute_ms"), parts["torch"].get("compute_ms")
    if jax_ms is None or torch_ms is None or torch_ms <= 0:
        return None
    versions = {k: v for k, v in results["environment"]["libraries"].items() if k == "jaxlib" or "cuda" in k}
    return (f"GPU: jax's forward/backward at {workload} takes {jax_ms:.2f} ms per step, {jax_ms / torch_ms:.1f}x torch's "
            f"{torch_ms:.2f} ms (" + ", ".join(f"{k} {v}" for k, v in versions.items()) + ").")


def explanations(results: dict, workload: str = HEADLINE.name) -> list[str]:
    """Short statements computed from the run: where the step's time goes, and how variants compare."""
    records = results["results"]
    found = index(records)
    notes = [_breakdown_note(backend, p) for backend, p in analysis.breakdown(records, workload).items()]
    notes += _jax_versus_torch(records)
    notes.append(_ratio_note(records, "torch_ref.step", "torch_ref.step-dense", "torch: the sparse first layer over the dense one"))
    notes.append(_ratio_note(records, "jax_impl.step", "jax_impl.step-dense", "jax: the sparse first layer over the dense one"))
    notes.append(_ratio_note(records, "torch_ref.step+compile", "torch_ref.step", "torch.compile (sparse path, dynamic shapes) over the eager step"))
    compiled = found.get((workload, "torch_ref.step+compile"))
    if compiled:
        notes.append(f"torch.compile's first call (compilation) took {compiled['warmup_s']:.1f} s at {workload}.")
    notes.append(_gpu_note(results, workload))
    notes.append(_seed_note(found, workload))
    return [note for note in notes if note]


# The vocabulary sweep: one line per backend and optimiser.
VOCAB_LINES = (("torch_ref.fit", "torch, Adam"), ("torch_ref.fit+lazy", "torch, lazy Adam"),
               ("jax_impl.fit", "jax, Adam"), ("jax_impl.fit+lazy", "jax, lazy Adam"))


def _sweep_cell(results: dict, workload: str, variant: str) -> str:
    """Median samples/s of one measurement of the sweep, or why there is none."""
    for r in results["results"]:
        if r["workload"] == workload and r["variant"] == variant:
            if r.get("error") is not None:
                return "failed"
            return number(median(r, "samples_per_s")) + (" (loaded)" if analysis.is_loaded(r) else "")
    if any(s["workload"] == workload and s["variant"] == variant for s in results.get("skipped", [])):
        return "left out"
    return "-"


def vocab_sweep_workloads(results: dict) -> list[dict]:
    """The measured workloads of the vocabulary sweep, by vocabulary."""
    measured = {r["workload"] for r in results["results"]}
    return sorted((w for w in results["workloads"] if "vocab" in w["sweeps"] and w["name"] in measured), key=lambda w: w["vocab_size"])


def vocab_table(results: dict) -> str | None:
    """samples/s per vocabulary for each backend and optimiser, lazy over exact Adam, and the exact-Adam ceiling."""
    sweep = vocab_sweep_workloads(results)
    if not sweep:
        return None
    found = index(results["results"])
    header = ("V", "workload", "non-zeros per row, mean (max)", *(name for _, name in VOCAB_LINES), "lazy / Adam, torch",
              "lazy / Adam, jax", "exact-Adam ceiling (fastest floor)")
    rows = []
    for w in sweep:
        density = w.get("nnz_per_row")
        lazy_gain = [samples_ratio(found.get((w["name"], lazy)), found.get((w["name"], dense)))
                     for dense, lazy in (("torch_ref.fit", "torch_ref.fit+lazy"), ("jax_impl.fit", "jax_impl.fit+lazy"))]
        fastest = analysis.floors_of(found, w["name"]).get("fastest")
        rows.append((
            f"{w['vocab_size']:,}", w["name"], "-" if density is None else f"{density['mean']:.1f} ({density['max']})",
            *(_sweep_cell(results, w["name"], variant) for variant, _ in VOCAB_LINES),
            *("-" if g is None else f"{g:.2f}x" for g in lazy_gain),
            "-" if fastest is None else number(fastest * w["batch_size"] * w["num_tasks"]),
        ))
    return markdown_table(header, rows)


def vocab_notes(results: dict) -> list[str]:
    """Each line's samples/s from the smallest to the largest vocabulary measured, and the floor's fall."""
    points = analysis.sweep_points(results["results"], results["workloads"], "vocab", "vocab_size")
    notes = []
    for variant, name in VOCAB_LINES:
        line = points.get(variant, [])
        if len(line) < 2:
            continue
        (v0, first), (v1, last) = line[0], line[-1]
        notes.append(f"{variant} ({name}): {number(median(first, 'samples_per_s'))} samples/s at V = {v0:,}, "
                     f"{number(median(last, 'samples_per_s'))} at V = {v1:,} ({samples_ratio(last, first):.2g}x).")
    found = index(results["results"])
    floors = [(w["vocab_size"], analysis.floors_of(found, w["name"]).get("fastest")) for w in vocab_sweep_workloads(results)]
    floors = [(v, f) for v, f in floors if f]
    if len(floors) >= 2:
        (v0, f0), (v1, f1) = floors[0], floors[-1]
        notes.append(f"The fastest exact-Adam floor runs {f0:,.1f} steps/s at V = {v0:,} and {f1:,.1f} at V = {v1:,} "
                     f"({f1 / f0:.3f}x for {v1 / v0:,.0f}x the first-layer weights): the ceiling of every exact-Adam step.")
    return notes


def vocab_section(results: dict) -> str | None:
    table = vocab_table(results)
    if table is None:
        return None
    text = ("## Vocabulary sweep: exact Adam against lazy Adam\n\nsamples/s of each fit (median; \"(loaded)\": measured under "
            "load; \"left out\": see Left out below). Lazy Adam updates only the first-layer rows a step's batches touch; "
            "the exact-Adam ceiling is the fastest floor's steps/s times the rows of a step.\n\n" + table)
    notes = vocab_notes(results)
    return text + ("\n\n" + bullets(notes) if notes else "")


def density_line(results: dict) -> str | None:
    headline = next((w for w in results["workloads"] if w["name"] == HEADLINE.name and w.get("nnz_per_row")), None)
    shown = headline or next((w for w in results["workloads"] if w.get("nnz_per_row")), None)
    if shown is None:
        return None
    density = shown["nnz_per_row"]
    return (f"- data: synthetic reviews of about 100 words (Poisson lengths, Zipf word frequencies) as CSR word counts: "
            f"{density['mean']:.1f} non-zeros per row on average, {density['max']} at most, over the {density['rows']:,} rows "
            f"of {shown['name']} (V = {shown['vocab_size']:,}); every workload's figures are in results.json "
            "(workloads[].nnz_per_row)")


def left_out_section(results: dict) -> str | None:
    """The variants left out of workloads, grouped by reason."""
    by_reason: dict[str, dict[str, list[str]]] = {}
    for s in results.get("skipped", []):
        by_reason.setdefault(s["reason"], {}).setdefault(s["workload"], []).append(s["variant"])
    if not by_reason:
        return None
    lines = []
    for reason, workloads in by_reason.items():
        where = "; ".join(f"{', '.join(variants)} at {workload}" for workload, variants in workloads.items())
        lines.append(f"{where}: {reason}.")
    return "## Left out\n\n" + bullets(lines)


def markdown(results: dict) -> str:
    """report.md: the set-up, the table, the targets, the explanations and the vocabulary sweep."""
    records, env = results["results"], results["environment"]
    threads = env["threads"]
    cores = env["machine"]["usable_cores"]
    setup = setup_lines(results, f"torch {threads['torch_intra_op']} intra-op / {threads['torch_inter_op']} inter-op, "
                                 f"XLA {threads['xla_eigen']} Eigen threads; BLAS of {threads['blas']}") + [
        f"- timing: median and min-max of {results['settings']['repeats']} repeats of >= "
        f"{results['settings']['repeat_seconds']} s after warm-up; warm-up (compilation included) reported apart; "
        "samples/s counts the rows of all tasks; fractions of the floor are floor step time / variant step time; a "
        "repeat of a fit is one call of fit for one epoch of at least 32 steps (16 for exact Adam at V >= 2^20)",
        "- peak RSS: the process's resident high-water mark while the variant warmed up (reset before it): it includes "
        "the interpreter, both frameworks, the data and the variants of the workload set up before it; results.json "
        "also holds the growth over the resident size before the variant (0 where it reused freed memory)",
        "- data preparation inside the timed loop: "
        + ", ".join(v["name"] for v in results["variants"] if v["data_in_loop"])
        + "; the step variants get pre-cut batches already on the device",
    ]
    setup.append(density_line(results))
    alone = sorted({r["workload"] for r in records if r.get("timed") == "alone"})
    if alone:
        setup.append(f"- timed one variant after another, not interleaved: {', '.join(alone)} (their variants' weights would "
                     "not fit in memory together), so a change of load between variants there is not shared out")
    if results["mode"] == "quick":
        setup.append("- quick run: short repeats, and beyond the headline only the fits and the recipe at batch 256 and lazy "
                     "Adam's fits at V = 2^18: the figures are indicative; judge the targets on a full run")
    setup += load_lines(records, cores, torch_threads_advice(threads["torch_intra_op"], cores))
    sections = [
        "# Benchmark report",
        "\n".join(line for line in setup if line),
        "## Results\n\n" + markdown_table(COLUMNS, table_rows(records)),
        "## Targets\n\n" + targets_table(results["targets"]),
        "## Where the time goes\n\n" + bullets(explanations(results)),
        vocab_section(results),
        left_out_section(results),
        "## Variants\n\n" + bullets([f"`{v['name']}`: {v['about']}" for v in results["variants"] + results["floors"]]),
    ]
    return close_report([s for s in sections if s], results, analysis.label)


# --- the scaling study (--devices N) --------------------------------------------------------------

SCALING_COLUMNS = ("fit", "devices", "how", "samples/s", "min-max", "speed-up", "efficiency", "warm-up s", "wall s")


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
    """The interpretation: each backend's speed-up at its largest device count, and what the set-up lets it measure."""
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
                "at the start, other work included), so more devices bring no more compute: these figures measure what "
                "splitting each batch costs (one program per device, the gradient all-reduce, for torch the traffic "
                "between processes), not how fit scales over real devices.")
        if largest > cores:
            note += f" From {cores + 1} devices on, the devices also take turns on the cores."
        notes.append(note)
    else:
        notes.append(f"Each device is its own GPU; at {largest} GPUs a step has "
                     f"{_plural(math.ceil(results['scaling']['global_batch_size'] / largest), 'row')} per task and GPU, and "
                     "besides each GPU's share of the work it still pays the gradient all-reduce and the host's batching.")
    return notes


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
    setup += load_lines(records, results["environment"]["machine"]["usable_cores"])
    sections = [
        "# Scaling report",
        "\n".join(setup),
        "## Data-parallel throughput\n\n" + markdown_table(SCALING_COLUMNS, scaling_rows(records)) + "\n\n" + bullets(scaling_notes(results)),
    ]
    return close_report(sections, results, lambda r: f"{r['variant']} on {_plural(r['devices'], 'device')}")


# --- the aggregator study (--workloads aggregators) ------------------------------------------------
# A table with one row per method and, per backend and T, ms per step with the ratio to sum and the
# peak memory; the verdicts; what was measured and how.

FAILED = "failed"


def aggregator_columns(results: dict) -> list[tuple[str, int]]:
    """(backend, T) of the table's column pairs, in run order."""
    counts = [w["num_tasks"] for w in results["workloads"]]
    return [(backend, t) for backend in cost.FITS for t in counts]


def _aggregator_cells(record: dict | None) -> tuple[str, str]:
    """'ms (ratio x)' and the peak MiB of one measurement; '-' where there is none."""
    if record is None:
        return "-", "-"
    if record.get("error") is not None:
        return FAILED, "-"
    ratio = record.get("ratio_to_sum")
    time = f"{record['ms_per_step']:.1f}" + ("" if ratio is None else f" ({ratio:.2f}x)")
    return time + (" loaded" if analysis.is_loaded(record) else ""), number(record["memory"]["peak_mib"])


def aggregator_header(results: dict) -> list[str]:
    found = ["method"]
    for backend, t in aggregator_columns(results):
        found += [f"{backend} T={t} ms (x sum)", f"{backend} T={t} MiB"]
    return found


def aggregator_rows(results: dict) -> list[tuple[str, ...]]:
    """One row per method, sum first."""
    found = {(r["backend"], r["num_tasks"], r["method"]): r for r in results["results"]}
    table = []
    for method in (m["method"] for m in results["methods"]):
        row = [method]
        for backend, t in aggregator_columns(results):
            row += _aggregator_cells(found.get((backend, t, method)))
        table.append(tuple(row))
    return table


def aggregator_text_table(results: dict) -> str:
    return aligned_table(aggregator_header(results), aggregator_rows(results), left=1)


def _aggregator_memory_line(results: dict) -> str:
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


def aggregator_setup(results: dict) -> list[str]:
    """What was measured, how, and what a quick run leaves out."""
    records, settings, env = results["results"], results["settings"], results["environment"]
    threads = worker_threads(records)
    shape = results["workloads"][0]
    rows_per_task = {r["num_tasks"]: r["rows_per_task"] for r in records if r.get("rows_per_task")}
    lines = setup_lines(results, f"torch {'/'.join(map(str, threads)) or '-'} intra-op thread(s) per worker (--torch-threads; "
                                 "on a CPU 1 by default, so that torch's spin-waiting OpenMP threads do not contend with other "
                                 "work for the cores); jax: XLA's own pool") + [
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
        _aggregator_memory_line(results),
    ]
    if results["mode"] == "quick":
        left_out = [m for m in cost.METHODS if m not in settings["methods"]]
        lines.append(f"- quick run: T = {', '.join(map(str, settings['task_counts']))}"
                     + (f"; not measured: {', '.join(left_out)}" if left_out else "")
                     + "; short repeats: the figures are indicative, judge the targets on a full run")
    lines.append(f"- not part of the default run (a full run of this study takes an estimated 15-20 minutes on 2 cores, "
                 "most of it at T = 32): "
                 f"python benchmarks/run.py --workloads {cost.AGGREGATOR_SET} [--quick] [--device gpu]")
    cores = env["machine"]["usable_cores"]
    return lines + load_lines(records, cores, torch_threads_advice(max(threads, default=1), cores))


def aggregator_notes(results: dict) -> list[str]:
    """Per backend and T the cheapest and dearest method, and the largest memory; T without a target said so."""
    found = []
    for backend, t in aggregator_columns(results):
        top, _ = cost.worst(results["results"], backend, t)
        measured_here = [r for r in results["results"] if r["backend"] == backend and r["num_tasks"] == t and r.get("ratio_to_sum")
                         and r["method"] != cost.SUM]
        if top is None:
            continue
        cheapest = min(measured_here, key=lambda r: r["ratio_to_sum"])
        roomiest = max(measured_here, key=lambda r: r["memory"]["peak_mib"])
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


def aggregator_markdown(results: dict) -> str:
    """report.md of the aggregator study."""
    sections = [
        "# Aggregator cost report",
        "\n".join(aggregator_setup(results)),
        "## Step time and peak memory\n\n" + markdown_table(aggregator_header(results), aggregator_rows(results)),
        "## Targets\n\n" + targets_table(results["targets"]),
        "## Notes\n\n" + bullets(aggregator_notes(results) + growth_notes(results)),
        "## Methods\n\n" + bullets([
            f"`{m['method']}`: " + (", ".join(f"{k} {v}" for k, v in m.items() if k != "method") or "no aggregator")
            for m in results["methods"]]),
    ]
    return close_report(sections, results, lambda r: f"{cost.FITS[r['backend']]} at T = {r['num_tasks']} with {r['method']}")
