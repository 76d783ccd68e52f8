"""PNG plots: samples/s against batch size, one line per variant, one file per device.

matplotlib is optional (the GPU machine may lack it): without it no plot is drawn and the report
says so.
"""

from __future__ import annotations

from pathlib import Path


def batch_sweep(records: list[dict], workloads: list[dict]) -> dict[str, list[tuple[int, dict]]]:
    """{variant or floor: [(batch size, record), ...]} over the workloads of the batch sweep."""
    batch_of = {w["name"]: w["batch_size"] for w in workloads if "batch" in w["sweeps"]}
    lines: dict[str, list] = {}
    for record in records:
        if record.get("error") is None and record["workload"] in batch_of:
            lines.setdefault(record["variant"], []).append((batch_of[record["workload"]], record))
    return {name: sorted(points, key=lambda p: p[0]) for name, points in lines.items()}


def samples_vs_batch(results: dict, out: Path) -> tuple[Path | None, str]:
    """Draw the plot into ``out``; return its path (or None) and a note for the report."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib import ticker
    except ImportError:
        return None, "matplotlib is not installed here: no plot was drawn (results.json holds the figures)."
    lines = batch_sweep(results["results"], results["workloads"])
    if not lines:
        return None, "no batch-size sweep was measured: no plot was drawn."
    figure, axes = plt.subplots(figsize=(10, 5.5))
    for name, points in lines.items():
        batch = [b for b, _ in points]
        is_floor = points[0][1]["kind"] == "floor"
        spreads = [r["samples_per_s"] for _, r in points]
        middle = [f["median"] for f in spreads]
        errors = [[m - f["min"] for m, f in zip(middle, spreads)], [f["max"] - m for m, f in zip(middle, spreads)]]
        axes.errorbar(batch, middle, yerr=errors, marker="o", capsize=3, label=name, linestyle="--" if is_floor else "-")
    device = results["device"]["kind"]
    axes.set(xscale="log", yscale="log", xlabel="batch size per task", ylabel="samples/s (rows of all tasks)",
             title=f"samples/s vs batch size on {device} ({results['device'].get('name', results['environment']['machine']['cpu_model'])})")
    axes.set_xticks(sorted({b for points in lines.values() for b, _ in points}))
    axes.get_xaxis().set_major_formatter(ticker.ScalarFormatter())
    axes.get_xaxis().set_minor_formatter(ticker.NullFormatter())
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    figure.tight_layout()
    path = out / f"samples_vs_batch_{device}.png"
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path, f"![samples/s vs batch size]({path.name}) (floors dashed: an exact Adam step's ceiling; bars span min-max)."
