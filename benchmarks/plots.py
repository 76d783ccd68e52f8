"""PNG plots, one file per plot and device: samples/s against batch size (one line per variant) and
against the vocabulary (one line per backend and optimiser); for the scaling study samples/s against
devices, for the aggregator study the step time over sum against T.

matplotlib is optional (the GPU machine may lack it): without it no plot is drawn and the report
says so.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.aggregators import SUM, TARGETS
from benchmarks.analysis import sweep_points
from benchmarks.report import VOCAB_LINES


NO_MATPLOTLIB = "matplotlib is not installed here: no plot was drawn (results.json holds the figures)."


def _pyplot():
    """matplotlib's pyplot on the Agg backend, or None where matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def _errorbars(axes, x: list, records: list[dict], **style):
    """Median samples/s at ``x`` with min-max bars; returns the line drawn."""
    spreads = [r["samples_per_s"] for r in records]
    middle = [f["median"] for f in spreads]
    errors = [[m - f["min"] for m, f in zip(middle, spreads)], [f["max"] - m for m, f in zip(middle, spreads)]]
    return axes.errorbar(x, middle, yerr=errors, capsize=3, **{"marker": "o", **style})


def _log_axis_ticks(axes, ticks) -> None:
    """Plain numbers at ``ticks`` on a logarithmic x axis, and a light grid."""
    from matplotlib import ticker

    axes.set_xticks(sorted(ticks))
    axes.get_xaxis().set_major_formatter(ticker.ScalarFormatter())
    axes.get_xaxis().set_minor_formatter(ticker.NullFormatter())
    axes.grid(True, which="both", alpha=0.3)


RATIO_TICKS = (0.5, 1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64)


def _ratio_ticks(axes) -> None:
    """Ratios written 1x, 2x, ... on a logarithmic y axis."""
    from matplotlib import ticker

    axes.get_yaxis().set_major_locator(ticker.FixedLocator(RATIO_TICKS))
    axes.get_yaxis().set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}x"))
    axes.get_yaxis().set_minor_formatter(ticker.NullFormatter())


def _where(results: dict) -> str:
    return f"{results['device']['kind']} ({results['device'].get('name', results['environment']['machine']['cpu_model'])})"


def _save(plt, figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def samples_vs_batch(results: dict, out: Path) -> tuple[Path | None, str]:
    """Draw the batch plot into ``out``; return its path (or None) and a note for the report."""
    plt = _pyplot()
    if plt is None:
        return None, NO_MATPLOTLIB
    lines = sweep_points(results["results"], results["workloads"], "batch", "batch_size")
    if not lines:
        return None, "no batch-size sweep was measured: no batch plot was drawn."
    figure, axes = plt.subplots(figsize=(10, 5.5))
    for name, points in lines.items():
        is_floor = points[0][1]["kind"] == "floor"
        _errorbars(axes, [b for b, _ in points], [r for _, r in points], label=name, linestyle="--" if is_floor else "-")
    axes.set(xscale="log", yscale="log", xlabel="batch size per task", ylabel="samples/s (rows of all tasks)",
             title=f"samples/s vs batch size on {_where(results)}")
    _log_axis_ticks(axes, {b for points in lines.values() for b, _ in points})
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    path = _save(plt, figure, out / f"samples_vs_batch_{results['device']['kind']}.png")
    return path, f"![samples/s vs batch size]({path.name}) (floors dashed: an exact Adam step's ceiling; bars span min-max)."


def samples_vs_vocab(results: dict, out: Path) -> tuple[Path | None, str]:
    """The vocabulary sweep on log-log axes: one line per backend and optimiser (solid Adam, dashed
    lazy Adam), and the fastest exact-Adam floor dotted."""
    plt = _pyplot()
    if plt is None:
        return None, NO_MATPLOTLIB
    points = sweep_points(results["results"], results["workloads"], "vocab", "vocab_size")
    lines = {variant: (name, points[variant]) for variant, name in VOCAB_LINES if variant in points}
    if not lines:
        return None, "no fit of the vocabulary sweep was measured: no vocabulary plot was drawn."
    figure, axes = plt.subplots(figsize=(10, 5.5))
    colours = {"torch": "C0", "jax": "C1"}
    for variant, (name, line) in lines.items():
        backend, optimiser = name.split(", ")
        lazy = optimiser == "lazy Adam"
        _errorbars(axes, [v for v, _ in line], [r for _, r in line], label=f"{variant} ({optimiser})", color=colours[backend],
                   linestyle="--" if lazy else "-", marker="s" if lazy else "o")
    ceiling = _floor_ceiling(points)
    if ceiling:
        axes.plot(*zip(*ceiling), ":", color="grey", marker=".", label="fastest exact-Adam floor (samples/s)")
    axes.set(xscale="log", yscale="log", xlabel="vocabulary V (first-layer rows)", ylabel="samples/s (rows of all tasks)",
             title=f"samples/s vs vocabulary on {_where(results)}")
    _log_axis_ticks(axes, {v for _, line in lines.values() for v, _ in line})
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    path = _save(plt, figure, out / f"samples_vs_vocab_{results['device']['kind']}.png")
    return path, (f"![samples/s vs vocabulary]({path.name}) (solid: exact Adam, dashed: lazy Adam; dotted: the exact-Adam "
                  "ceiling; bars span min-max).")


def _floor_ceiling(points: dict[str, list[tuple[int, dict]]]) -> list[tuple[int, float]]:
    """(V, the fastest floor's samples/s) at every vocabulary where a floor was measured."""
    best: dict[int, float] = {}
    for line in points.values():
        for vocab, record in line:
            if record["kind"] == "floor":
                best[vocab] = max(best.get(vocab, 0.0), record["samples_per_s"]["median"])
    return sorted(best.items())


def variant_plots(results: dict, out: Path) -> tuple[list[Path], str]:
    """The variants study's plots (batch, vocabulary) and their notes for the report."""
    drawn = [samples_vs_batch(results, out), samples_vs_vocab(results, out)]
    return [path for path, _ in drawn if path is not None], " ".join(dict.fromkeys(note for _, note in drawn))


def samples_vs_devices(results: dict, out: Path) -> tuple[list[Path], str]:
    """The scaling study: samples/s against devices per fit (dotted: linear scaling from one device),
    and the efficiency beside it."""
    plt = _pyplot()
    if plt is None:
        return [], NO_MATPLOTLIB
    lines: dict[str, list[dict]] = {}
    for record in results["results"]:
        if record.get("error") is None:
            lines.setdefault(record["variant"], []).append(record)
    if not lines:
        return [], "every scaling measurement failed: no plot was drawn."
    figure, (rate, efficiency) = plt.subplots(1, 2, figsize=(11, 4.5))
    for name, records in lines.items():
        records.sort(key=lambda r: r["devices"])
        devices = [r["devices"] for r in records]
        drawn = _errorbars(rate, devices, records, label=name)
        single = next((r for r in records if r["devices"] == 1), None)
        if single is not None:
            color = drawn.lines[0].get_color()
            rate.plot(devices, [d * single["samples_per_s"]["median"] for d in devices], ":", color=color, label=f"{name}, linear")
            efficiency.plot(devices, [100 * r["efficiency"] for r in records], marker="o", color=color, label=name)
    counts = results["scaling"]["device_counts"]
    rate.set(xscale="log", yscale="log", xlabel="devices", ylabel="samples/s (rows of all tasks)",
             title=f"strong scaling, global batch {results['scaling']['global_batch_size']} per task")
    efficiency.set(xscale="log", xlabel="devices", ylabel="efficiency, % (speed-up / devices)", title=_where(results))
    efficiency.axhline(100, linestyle=":", color="grey")
    efficiency.set_ylim(bottom=0)
    for axes in (rate, efficiency):
        _log_axis_ticks(axes, counts)
        axes.legend(fontsize=8)
    path = _save(plt, figure, out / f"scaling_{results['device']['kind']}.png")
    return [path], (f"![samples/s vs devices]({path.name}) (left: median samples/s, bars span min-max, dotted: linear "
                  "scaling from one device; right: efficiency).")


def ratio_vs_tasks(results: dict, out: Path) -> tuple[list[Path], str]:
    """The aggregator study: each method's step time over the summed step against T, on log axes;
    one colour per method, solid for torch, dashed for jax, the targets dotted."""
    plt = _pyplot()
    if plt is None:
        return [], NO_MATPLOTLIB
    lines: dict[tuple[str, str], list[dict]] = {}
    for record in results["results"]:
        if record.get("ratio_to_sum") is not None and record["method"] != SUM:
            lines.setdefault((record["method"], record["backend"]), []).append(record)
    if not lines:
        return [], "no method got a ratio to sum: no plot was drawn."
    figure, axes = plt.subplots(figsize=(10, 5.5))
    colours = {method: f"C{i}" for i, method in enumerate(dict.fromkeys(m for m, _ in lines))}
    for (method, backend), records in lines.items():
        records.sort(key=lambda r: r["num_tasks"])
        tasks = [r["num_tasks"] for r in records]
        middle = [r["ratio_to_sum"] for r in records]
        errors = [[m - r["ratio_range"][0] for m, r in zip(middle, records)], [r["ratio_range"][1] - m for m, r in zip(middle, records)]]
        axes.errorbar(tasks, middle, yerr=errors, marker="o", capsize=3, color=colours[method],
                      linestyle="-" if backend == "torch" else "--", label=f"{method} ({backend})")
    measured = {r["num_tasks"] for records in lines.values() for r in records}
    for num_tasks, threshold in TARGETS.items():
        if num_tasks in measured:
            axes.plot([num_tasks], [threshold], marker="_", markersize=30, color="grey", linestyle="none")
    axes.axhline(1, linestyle=":", color="grey")
    axes.set(xscale="log", yscale="log", xlabel="tasks (T)", ylabel="step time / summed step (same backend, T)",
             title=f"cost of the aggregators on {_where(results)}")
    _log_axis_ticks(axes, measured)
    _ratio_ticks(axes)
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    path = _save(plt, figure, out / f"aggregators_{results['device']['kind']}.png")
    return [path], (f"![step time over sum vs tasks]({path.name}) (solid: torch, dashed: jax; bars span min/max to max/min; "
                  "grey ticks: the CPU targets, " + ", ".join(f"{x:g}x at T = {t}" for t, x in TARGETS.items()) + ").")
