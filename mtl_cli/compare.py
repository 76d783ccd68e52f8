"""``mtl experiment --compare``: loss weightings and gradient-conflict methods side by side, over seeds.

For each seed (``--seed``, ``--seed + 1``, ...: data, split, initial weights and batch order) every
method trains one multi-task model from the seed's canonical weights, and each task gets its own
single-task model (the recipe's, plain sum). A method is a loss weighting (sum, mean, uncertainty,
dwa, famo, rlw) or an aggregator (pcgrad, cagrad, mgda, mgda_ub, imtlg, nash_mtl, upgrad; combined
with ``--weighting``). The table reports each task's final held-out score per seed, Δm and the
time per training step.

Δm (Maninis et al. 2019, as MTL papers report it) = mean over tasks of ±(M_method - M_single) /
M_single x 100, with M the task's score averaged over the seeds (+ when higher is better, - for
MSE): the table's own means give it back. Step time: wall time of each epoch of training (its
evaluation excluded) over its steps; the median over the epochs after the first (which compiles
jax's programs) and over the seeds.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import numpy as np

from mtl_core.aggregation import AGGREGATORS
from mtl_core.metrics import task_metric
from mtl_core.weighting import WEIGHTINGS
from mtl_cli.backends import initial_weights
from mtl_cli.console import note
from mtl_cli.recipe import Recipe, weighting_label

METHOD_NAMES = tuple(w for w in WEIGHTINGS if w != "fixed") + tuple(AGGREGATORS)


@dataclass(frozen=True)
class Method:
    """One column of the comparison: a name and the training options it changes."""

    name: str
    weighting: object  # a weighting the TrainConfig accepts
    aggregator: str | None


def parse_methods(text: str, weighting) -> list[Method]:
    """``sum,pcgrad,famo`` -> Methods; aggregators are combined with the experiment's ``weighting``."""
    names = [name.strip() for name in text.split(",")]
    unknown = [name for name in names if name not in METHOD_NAMES]
    if unknown or not all(names):
        raise ValueError(f"--compare {text!r}: unknown methods {unknown or ['']}; choose from {', '.join(METHOD_NAMES)}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"--compare {text!r}: {repeated} named more than once")
    return [Method(n, weighting, n) if n in AGGREGATORS else Method(n, n, None) for n in names]


def seeds_of(first: int, count: int) -> list[int]:
    if count < 1:
        raise ValueError(f"--seeds must be >= 1, got {count}")
    return list(range(first, first + count))


def _score(model, spec, tasks) -> float:
    """The task's held-out score (the metric of its kind) under the model as it is."""
    return task_metric(spec, model.logits(spec.name, tasks.test[spec.name].X), tasks.test[spec.name].y)


def timed_fit(model, data, recipe: Recipe) -> tuple[list[float], dict]:
    """Fit epoch by epoch (the same training as one fit); (ms per step of each epoch, solver report)."""
    one_epoch = recipe.with_training(epochs=1)
    step_ms, solver = [], {"max_residual": [], "unconverged_steps": []}
    for _ in range(recipe.train.epochs):
        start = time.perf_counter()
        history = model.fit(data, None, one_epoch, progress=False)
        step_ms.append(1e3 * (time.perf_counter() - start) / max(history["steps"][0], 1))
        for key, values in history.get("solver", {}).items():
            solver[key] += values
    return step_ms, solver


def train_method(build, tasks, recipe: Recipe, method: Method) -> dict:
    """One multi-task model of ``method`` from the recipe's seed: scores, step times, solver report."""
    recipe = recipe.with_training(weighting=method.weighting, aggregator=method.aggregator)
    model = build(tasks.input_dim, tasks.specs, recipe)
    step_ms, solver = timed_fit(model, tasks.train, recipe)
    scores = {spec.name: _score(model, spec, tasks) for spec in tasks.specs}
    return {"scores": scores, "step_ms": step_ms[1:] or step_ms, "solver": solver}


def train_singles(build, tasks, recipe: Recipe) -> dict[str, float]:
    """Each task's single-task model (the recipe with sum weighting, no aggregator): its final score."""
    recipe = recipe.with_training(weighting="sum", aggregator=None)
    start = initial_weights(tasks.input_dim, tasks.specs, recipe)
    scores = {}
    for spec in tasks.specs:
        own = {k: v for k, v in start.items() if k.startswith("trunk.") or k.startswith(f"heads.{spec.name}.")}
        model = build(tasks.input_dim, (spec,), recipe, params=own)
        model.fit({spec.name: tasks.train[spec.name]}, None, recipe, progress=False)
        scores[spec.name] = _score(model, spec, tasks)
    return scores


def delta_m(method: dict[str, list[float]], single: dict[str, list[float]], higher_is_better: dict[str, bool]) -> float:
    """Δm in % from per-seed scores: the mean over tasks of the signed relative gain of the seed means."""
    gains = []
    for name, scores in method.items():
        base = float(np.mean(single[name]))
        gain = (float(np.mean(scores)) - base) / base
        gains.append(gain if higher_is_better[name] else -gain)
    return 100.0 * float(np.mean(gains))


def identical_results(comparison: dict) -> dict[str, list[str]]:
    """{method: [other methods with exactly the same scores for every task and seed]}: said, never hidden."""
    same = {}
    for name, result in comparison.items():
        twins = [other for other, r in comparison.items() if other != name and r["f1"] == result["f1"]]
        if twins:
            same[name] = twins
    return same


def run_comparison(build, backend: str, load_tasks, recipe: Recipe, methods: list[Method], seeds: list[int], *, quiet: bool) -> dict:
    """report.json's "comparison", "comparison_single" and how they were made."""
    runs: dict[str, list[dict]] = {m.name: [] for m in methods}
    singles: dict[str, list[float]] = {}
    for seed in seeds:
        tasks = load_tasks(seed)
        seeded = recipe.with_training(seed=seed)
        note(f"[{backend}] seed {seed}: single-task models", quiet)
        for name, score in train_singles(build, tasks, seeded).items():
            singles.setdefault(name, []).append(score)
        for method in methods:
            note(f"[{backend}] seed {seed}: {method.name}", quiet)
            runs[method.name].append(train_method(build, tasks, seeded, method))
    higher = {t.name: t.kind != "regression" for t in tasks.specs}
    comparison = {}
    for method in methods:
        per_seed = runs[method.name]
        f1 = {name: [run["scores"][name] for run in per_seed] for name in singles}
        comparison[method.name] = {
            "f1": f1,
            "delta_m": delta_m(f1, singles, higher),
            "step_ms": statistics.median(ms for run in per_seed for ms in run["step_ms"]),
            "weighting": weighting_label(recipe.with_training(weighting=method.weighting).train.weighting),
            "aggregator": method.aggregator,
            "unconverged_steps": sum(sum(run["solver"]["unconverged_steps"]) for run in per_seed),
        }
    return {
        "comparison": comparison,
        "comparison_single": singles,
        "comparison_setup": {
            "backend": backend,
            "seeds": seeds,
            "metric": {t.name: t.kind for t in tasks.specs},
            "identical_results": identical_results(comparison),
        },
    }
