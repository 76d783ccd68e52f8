"""The experiment's plots, drawn from report.json's document with matplotlib's Agg renderer.

Single-task curves are dashed with hollow markers and multi-task curves solid with filled ones,
in every plot; colour tells the backend (or the layer), so the two stay apart in black and white.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.ticker import FuncFormatter
from matplotlib.figure import Figure

from mtl_core.files import atomic_write
from mtl_cli.report import METRIC_LABELS

BACKEND_COLOURS = {"torch": "tab:red", "jax": "tab:blue"}
STYLES = {
    "single": dict(linestyle="--", marker="o", markerfacecolor="white"),
    "multi": dict(linestyle="-", marker="s"),
}
# The backends usually draw the same curve (they train one model): torch's is wide and pale
# underneath, jax's thin with small markers on top, so both stay visible where they coincide.
BACKEND_STYLES = {
    "torch": dict(linewidth=4.0, alpha=0.45, markersize=9, zorder=2),
    "jax": dict(linewidth=1.3, alpha=1.0, markersize=4, zorder=3),
}
LABELS = {"single": "single-task", "multi": "multi-task"}


def _figure(columns: int) -> tuple[Figure, list]:
    figure = Figure(figsize=(5.2 * columns, 4.2), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, [figure.add_subplot(1, columns, i + 1) for i in range(columns)]


def _epochs(values: list) -> list[int]:
    return list(range(1, len(values) + 1))


def _integer_epochs(axis, epochs: int) -> None:
    axis.set_xlabel("epoch")
    axis.set_xticks(range(1, epochs + 1))
    axis.grid(alpha=0.3)


def _model_curves(document: dict, quantity: str, title: str, ylabel) -> Figure:
    """One panel per task: ``quantity`` ("f1" or "loss") per epoch, single vs multi, per backend."""
    tasks = document["config"]["tasks"]
    figure, axes = _figure(len(tasks))
    for axis, task in zip(axes, tasks):
        for backend, result in document["results"].items():
            for kind in ("single", "multi"):
                values = result[kind][task["name"]][quantity]
                axis.plot(_epochs(values), values, color=BACKEND_COLOURS[backend], label=f"{LABELS[kind]} ({backend})",
                          **STYLES[kind], **BACKEND_STYLES.get(backend, {}))
        axis.set_title(f"{task['name']} ({task['kind']})")
        axis.set_ylabel(ylabel(task))
        _integer_epochs(axis, document["config"]["epochs"])
        axis.legend(fontsize="small")
    figure.suptitle(title)
    return figure


def f1_figure(document: dict) -> Figure:
    return _model_curves(
        document, "f1", "Held-out score per epoch: single-task vs multi-task models",
        lambda task: f"{METRIC_LABELS.get(task['metric'], task['metric'])} (held-out)",
    )


def loss_figure(document: dict) -> Figure:
    return _model_curves(
        document, "loss", "Training loss per epoch (mean over the epoch's batches)",
        lambda task: f"training loss ({'cross-entropy' if task['kind'] != 'regression' else 'MSE'})",
    )


def grad_norm_figure(document: dict) -> Figure:
    """Per-layer gradient norms of the multi-task model, one panel per backend, log scale."""
    backends = list(document["grad_norms"])
    figure, axes = _figure(len(backends))
    for axis, backend in zip(axes, backends):
        for layer, values in document["grad_norms"][backend].items():
            shared = layer.startswith("trunk.")
            axis.plot(_epochs(values), values, marker="o", linestyle="-" if shared else "--",
                      label=f"{layer} ({'shared' if shared else 'task head'})")
        axis.set_yscale("log")
        plain = FuncFormatter(lambda value, _: f"{value:g}")
        axis.yaxis.set_major_formatter(plain)
        axis.yaxis.set_minor_formatter(plain)
        axis.set_title(f"{backend}")
        axis.set_ylabel("gradient L2 norm (epoch mean)")
        _integer_epochs(axis, document["config"]["epochs"])
        axis.legend(fontsize="small")
    figure.suptitle("Gradient norm per layer of the multi-task model")
    return figure


def forgetting_figure(document: dict) -> Figure:
    """Each task's score while the tasks are trained one after another, phases shaded."""
    forgetting = document["forgetting"]
    tasks = document["config"]["tasks"]
    epochs = document["config"]["epochs"]
    figure, axes = _figure(len(forgetting))
    for axis, (backend, run) in zip(axes, forgetting.items()):
        for number, phase in enumerate(run["phases"]):
            start = number * epochs
            if number % 2:
                axis.axvspan(start + 0.5, start + epochs + 0.5, color="grey", alpha=0.12, linewidth=0)
            axis.text(start + (epochs + 1) / 2, 1.01, f"training {phase['trained']} only", ha="center", va="bottom",
                      transform=axis.get_xaxis_transform(), fontsize="small")
        for task in tasks:
            values = [v for phase in run["phases"] for v in phase["f1"][task["name"]]]
            axis.plot(_epochs(values), values, marker="o", label=f"{task['name']} ({METRIC_LABELS.get(task['metric'], task['metric'])})")
        total = epochs * len(run["phases"])
        own = run["after_own_phase"]
        if own is not None and run["after_last_phase"] is not None:
            axis.axhline(own, color="grey", linestyle=":", linewidth=1)
            axis.annotate("", xy=(total, run["after_last_phase"]), xytext=(total, own),
                          arrowprops=dict(arrowstyle="->", color="black"))
            axis.text(total, min(own, run["after_last_phase"]) - 0.03, f"{run['first_task']}: {-run['drop']:+.3f}",
                      ha="center", va="top", fontsize="small", bbox=dict(facecolor="white", edgecolor="none", alpha=0.8))
        axis.set_xlabel("epoch (all phases)")
        axis.set_xticks(range(1, epochs * len(run["phases"]) + 1))
        axis.grid(alpha=0.3)
        axis.set_ylabel("held-out score")
        axis.set_title(backend, pad=18)
        axis.legend(fontsize="small")
    figure.suptitle("Forgetting run: held-out scores while the tasks\nare trained one after another (fresh Adam per phase)")
    return figure


def save(figure: Figure, path: Path) -> None:
    """A PNG written whole or not at all (mtl_core.files)."""
    atomic_write(path, lambda temporary: figure.savefig(temporary, format="png", dpi=110))


def write_all(document: dict, folder: Path) -> dict[str, str]:
    """Write every plot the document supports as PNG into ``folder``; return {file name: caption}."""
    figures = {
        "f1.png": ("Held-out score per epoch, single-task vs multi-task", f1_figure),
        "grad_norms.png": ("Gradient norm per layer of the multi-task model", grad_norm_figure),
        "loss.png": ("Training loss per epoch", loss_figure),
    }
    if "forgetting" in document:
        figures["forgetting.png"] = ("Forgetting run: one task after another on one model", forgetting_figure)
    written = {}
    for name, (caption, draw) in figures.items():
        save(draw(document), Path(folder) / name)
        written[name] = caption
    return written


def comparison_figure(document: dict) -> Figure:
    """Each task's held-out score (mean over seeds, bars: min-max) against the time per step, one point per method."""
    comparison, single = document["comparison"], document["comparison_single"]
    tasks = [t for t in document["config"]["tasks"] if t["name"] in single]
    figure, axes = _figure(len(tasks))
    for axis, task in zip(axes, tasks):
        name = task["name"]
        for method, row in comparison.items():
            scores = row["f1"][name]
            mean = sum(scores) / len(scores)
            axis.errorbar(row["step_ms"], mean, yerr=[[mean - min(scores)], [max(scores) - mean]], marker="o", capsize=3)
            axis.annotate(method, (row["step_ms"], mean), textcoords="offset points", xytext=(5, 4), fontsize="small")
        base = sum(single[name]) / len(single[name])
        axis.axhline(base, color="grey", linestyle=":", linewidth=1, label="single-task (mean)")
        axis.set_xscale("log")
        axis.set_xlabel("time per training step (ms, log scale)")
        axis.set_ylabel(f"{METRIC_LABELS.get(task['metric'], task['metric'])} (held-out, mean over seeds)")
        axis.set_title(f"{name} ({task['kind']})")
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
    figure.suptitle("Multi-task methods: held-out score against cost")
    return figure


def write_comparison(document: dict, folder: Path) -> dict[str, str]:
    """comparison.png into ``folder``; returns {file name: caption}."""
    save(comparison_figure(document), Path(folder) / "comparison.png")
    return {"comparison.png": "Held-out score against time per step, one point per method"}
