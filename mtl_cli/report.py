"""The experiment's report: report.json's document, the verdict on the blog's claims, report.md.

The markdown and the verdicts are computed from the JSON document alone, so a report can be
re-rendered (or checked) from report.json without rerunning anything.
"""

from __future__ import annotations

import math
import statistics

from mtl_core.metrics import METRIC_NAMES

METRIC_LABELS = {"f1": "F1", "macro_f1": "macro-F1", "micro_f1": "micro-F1", "mse": "MSE"}
FORGETTING_MARGIN = 0.02  # a drop smaller than this is within run-to-run noise, not forgetting


def task_rows(tasks) -> list[dict]:
    """config["tasks"]: each task's spec, row counts and the metric its "f1" lists hold."""
    return [{**row, "metric": METRIC_NAMES[row["kind"]]} for row in tasks.sizes()]


def json_safe(value):
    """NaN and inf become null: report.json stays strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _curves(history: dict, name: str) -> dict:
    return {"loss": history["loss"][name], "f1": history["f1"][name]}


def build(config: dict, runs: dict) -> dict:
    """report.json: config, per-epoch results of every model, the multi-task model's gradient norms."""
    names = [t["name"] for t in config["tasks"]]
    document = {
        "config": config,
        "results": {
            backend: {
                "multi": {name: _curves(run.multi, name) for name in names},
                "single": {name: _curves(run.single[name], name) for name in names},
            }
            for backend, run in runs.items()
        },
        "grad_norms": {backend: run.multi["grad_norm"] for backend, run in runs.items()},
        "loss_weights": {backend: run.multi["loss_weights"] for backend, run in runs.items()},
    }
    forgetting = {backend: _forgetting(run.forgetting) for backend, run in runs.items() if run.forgetting is not None}
    if forgetting:
        document["forgetting"] = forgetting
    document = json_safe(document)
    if len(runs) > 1:
        document["backend_agreement"] = agreement(document)
    document["claims"] = claims(document)
    return document


def _spread(per_backend: list[list]) -> float:
    """The largest gap between backends at the same epoch: per_backend holds one list of values per backend."""
    gaps = [max(values) - min(values) for values in zip(*per_backend) if None not in values]
    return max(gaps, default=0.0)


def agreement(document: dict) -> dict:
    """How far apart the backends' numbers are: the largest gap per quantity, over every model, task and epoch."""
    results = list(document["results"].values())
    names = [t["name"] for t in document["config"]["tasks"]]
    found = {
        quantity: max(_spread([r[kind][name][quantity] for r in results]) for kind in ("multi", "single") for name in names)
        for quantity in ("f1", "loss")
    }
    if "forgetting" in document:
        runs = list(document["forgetting"].values())
        found["forgetting_f1"] = max(
            _spread([run["phases"][i]["f1"][name] for run in runs]) for i in range(len(runs[0]["phases"])) for name in names
        )
    return {"backends": list(document["results"]), "max_abs_difference": found}


def _forgetting(phases: list[dict]) -> dict:
    first = phases[0]["trained"]
    own, last = phases[0]["f1"][first][-1], phases[-1]["f1"][first][-1]
    return {"first_task": first, "phases": phases, "after_own_phase": own, "after_last_phase": last, "drop": own - last}


def _higher_is_better(task: dict) -> bool:
    return task["metric"] != "mse"


def _gain(task: dict, new: float, old: float) -> float:
    """How much better ``new`` is than ``old`` (positive = better, whatever the metric's direction)."""
    return new - old if _higher_is_better(task) else old - new


def _weaker_task(document: dict) -> dict | None:
    """The classification task with the lowest final single-task score, averaged over backends."""
    results = document["results"]
    scored = [t for t in document["config"]["tasks"] if _higher_is_better(t)]
    if not scored:
        return None
    mean_final = lambda t: sum(r["single"][t["name"]]["f1"][-1] for r in results.values()) / len(results)  # noqa: E731
    return min(scored, key=mean_final)


def _claim(claim: str, blog: str, verdicts: dict) -> dict:
    return {"claim": claim, "blog": blog, "holds": {b: v[0] for b, v in verdicts.items()}, "evidence": {b: v[1] for b, v in verdicts.items()}}


def claims(document: dict) -> list[dict]:
    """The blog's claims, each judged per backend: holds (True/False, None if untestable) and the numbers."""
    tasks = document["config"]["tasks"]
    results = document["results"]
    epochs = document["config"]["epochs"]
    found = []

    verdicts = {}
    for backend, result in results.items():
        curves = {t["name"]: result["multi"][t["name"]]["f1"] for t in tasks}
        evidence = ", ".join(f"{t['name']} {curves[t['name']][0]:.3f} → {curves[t['name']][-1]:.3f}" for t in tasks)
        holds = None if epochs < 2 else all(_gain(t, curves[t["name"]][-1], curves[t["name"]][0]) > 0 for t in tasks)
        verdicts[backend] = (holds, evidence + (" (one epoch: nothing to compare)" if epochs < 2 else ""))
    found.append(_claim("The multi-task model learns every task at once: each task's score improves over the epochs.",
                        "performance for both tasks improves over time", verdicts))

    verdicts = {}
    for backend, result in results.items():
        parts, holds = [], True
        for t in tasks:
            multi, single = result["multi"][t["name"]]["f1"][-1], result["single"][t["name"]]["f1"][-1]
            holds &= _gain(t, multi, single) >= 0
            parts.append(f"{t['name']} {multi:.3f} multi vs {single:.3f} single ({multi - single:+.3f})")
        verdicts[backend] = (holds, ", ".join(parts))
    found.append(_claim("At the last epoch the multi-task model scores at least as well as the single-task models, on every task.",
                        "final F1 .82 (movie) and .67 (yelp), marginally better than single-task", verdicts))

    weak = _weaker_task(document)
    if weak is not None:
        verdicts = {}
        for backend, result in results.items():
            multi, single = result["multi"][weak["name"]]["f1"][0], result["single"][weak["name"]]["f1"][0]
            evidence = f"{weak['name']} after epoch 1: {multi:.3f} multi vs {single:.3f} single ({multi - single:+.3f})"
            verdicts[backend] = (multi > single, evidence)
        claim = (f"The weaker task ({weak['name']}) starts higher in the multi-task model: "
                 "its score after the first epoch beats the single-task model's.")
        found.append(_claim(claim, "Yelp begins at .6 multi-task, close to .4 single-task", verdicts))

    verdicts = {}
    for backend, norms in document["grad_norms"].items():
        smallest = min(((min(v), layer) for layer, v in norms.items() if v and None not in v), default=(None, None))
        holds = all(v and None not in v and min(v) > 0 for v in norms.values())
        evidence = f"smallest per-epoch norm {smallest[0]:.3g} ({smallest[1]})" if smallest[0] is not None else "no norms recorded"
        verdicts[backend] = (holds, evidence)
    found.append(_claim("Every layer learns: the shared trunk and every head get a non-zero gradient in every epoch.",
                        "learning is happening for all layers", verdicts))

    if "forgetting" in document:
        verdicts = {}
        for backend, f in document["forgetting"].items():
            task = next(t for t in tasks if t["name"] == f["first_task"])
            later = ", ".join(p["trained"] for p in f["phases"][1:])
            loss = _gain(task, f["after_own_phase"], f["after_last_phase"])
            verdicts[backend] = (loss > FORGETTING_MARGIN, f"{task['name']} {f['after_own_phase']:.3f} after its own phase, "
                                                           f"{f['after_last_phase']:.3f} after training {later} ({-f['drop']:+.3f})")
        found.append(_claim("Training the tasks one after another makes the model forget the first one (catastrophic forgetting): "
                            f"its score drops by more than {FORGETTING_MARGIN} once the later tasks are trained.",
                            "the model would immediately forget what it learned after training on one of the tasks", verdicts))
    return found


def _verdict_cell(holds, evidence: str) -> str:
    word = {True: "**holds**", False: "**does not hold**", None: "not testable"}[holds]
    return f"{word}: {evidence}"


def _metric_label(task: dict) -> str:
    return METRIC_LABELS.get(task["metric"], task["metric"])


def final_table(document: dict) -> str:
    """The last epoch's single-task and multi-task scores, one row per backend and task (markdown)."""
    epoch = document["config"]["epochs"]
    lines = [
        f"| backend | task | metric (held-out, epoch {epoch}) | single-task | multi-task | multi − single |",
        "|---|---|---|---:|---:|---:|",
    ]
    for backend, result in document["results"].items():
        for t in document["config"]["tasks"]:
            single, multi = result["single"][t["name"]]["f1"][-1], result["multi"][t["name"]]["f1"][-1]
            lines.append(f"| {backend} | {t['name']} | {_metric_label(t)} | {single:.4f} | {multi:.4f} | {multi - single:+.4f} |")
    return "\n".join(lines)


def _epoch_table(document: dict, backend: str) -> str:
    tasks = document["config"]["tasks"]
    result = document["results"][backend]
    header = "| epoch | " + " | ".join(f"{t['name']} single | {t['name']} multi" for t in tasks) + " |"
    lines = [header, "|---:|" + "---:|" * (2 * len(tasks))]
    for e in range(document["config"]["epochs"]):
        cells = [f"{result[kind][t['name']]['f1'][e]:.4f}" for t in tasks for kind in ("single", "multi")]
        lines.append(f"| {e + 1} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _forgetting_section(document: dict) -> list[str]:
    if "forgetting" not in document:
        return []
    c = document["config"]
    first = next(iter(document["forgetting"].values()))
    phases = first["phases"]
    described = ", then ".join(f"{p['trained']} alone for {_epochs(c['epochs'])} ({p['steps']} steps)" for p in phases)
    task = first["first_task"]
    lines = [
        "## Forgetting run (one task after another)",
        "",
        f"One model, from the same initial weights as the models above, trained on {described}, each phase a",
        "new run of `fit` with a fresh Adam (as when a trained model is fine-tuned on a new task); every task is",
        f"evaluated on its held-out data after every epoch. The first phase is the single-task {task} model's training",
        f"(same weights, same batches), so “after its own phase” is that model's score. **Drop** = {task}'s held-out",
        "score at the end of its own phase minus its score at the end of the last phase (positive: forgotten);",
        f"the claim holds when the drop exceeds {FORGETTING_MARGIN}.",
        "",
        "| backend | first task | after its own phase | after the last phase | drop |",
        "|---|---|---:|---:|---:|",
    ]
    for backend, f in document["forgetting"].items():
        lines.append(f"| {backend} | {f['first_task']} | {f['after_own_phase']:.4f} | {f['after_last_phase']:.4f} | {f['drop']:+.4f} |")
    return lines + [""]


def _epochs(count: int) -> str:
    return f"{count} epoch{'' if count == 1 else 's'}"


def _agreement_section(document: dict) -> list[str]:
    if "backend_agreement" not in document:
        return []
    gaps = document["backend_agreement"]["max_abs_difference"]
    backends = " and ".join(document["backend_agreement"]["backends"])
    where = "every model, task and epoch" + (", the forgetting run included" if "forgetting_f1" in gaps else "")
    score_gap = max(v for k, v in gaps.items() if k != "loss")
    scores = "are identical" if score_gap == 0 else f"differ by at most {score_gap:.2g}"
    losses = "are identical" if gaps["loss"] == 0 else f"differ by at most {gaps['loss']:.2g} (float32 rounding, compounded over the steps)"
    return [
        "## One model, two frameworks",
        "",
        f"{backends} start from the same weights ({document['config']['initialisation']}) and draw the same",
        f"batches, so they train one model: over {where}, their held-out scores {scores}",
        f"and their training losses {losses}.",
        "",
    ]


def _describe_data(config: dict) -> str:
    data = config["data"]
    sizes = ", ".join(f"{t['name']} ({t['kind']}, {t['n_train']} train / {t['n_test']} held-out)" for t in config["tasks"])
    origin = "synthetic reviews (mtl_core.data.synthetic_reviews)" if data["kind"] == "synthetic" else "CSV/TSV files"
    return f"{origin}: {sizes}"


def markdown(document: dict, figures: dict[str, str]) -> str:
    """report.md: the configuration, the final table, the per-epoch scores, the verdicts, the plots."""
    c = document["config"]
    backends = list(document["results"])
    lines = [
        "# Single-task vs multi-task: experiment report",
        "",
        f"`{c['command']}`",
        "",
        f"- data: {_describe_data(c)}",
        f"- recipe: {_epochs(c['epochs'])}, seed {c['seed']}, curriculum `{c['curriculum']}`, weighting `{c['weighting']}` "
        f"(single-task models: `{c['single_task_weighting']}`), Adam lr {c['lr']}, batch {c['batch_size']}, "
        f"trunk {c['hidden_dims']} {c['activation']}",
        "- backends: " + ", ".join(f"{b} {c['versions'].get(b, '')} on {c.get('devices', {}).get(b, 'cpu')}".strip() for b in backends),
        "",
        "## Final scores",
        "",
        final_table(document),
        "",
        "## The blog's claims",
        "",
        "| claim | " + " | ".join(backends) + " |",
        "|---|" + "---|" * len(backends),
    ]
    for claim in document["claims"]:
        cells = [_verdict_cell(claim["holds"][b], claim["evidence"][b]) for b in backends]
        lines.append(f"| {claim['claim']} (blog: “{claim['blog']}”) | " + " | ".join(cells) + " |")
    lines += ["", "One seed is one draw: rerun with other `--seed` values before trusting differences of a point or two.", ""]
    lines += _agreement_section(document)
    lines += _forgetting_section(document)
    lines += ["## Scores per epoch (held-out data)", ""]
    for backend in backends:
        lines += [f"### {backend}", "", _epoch_table(document, backend), ""]
    lines += ["## Plots", ""]
    lines += [f"![{caption}]({name})" for name, caption in figures.items()]
    return "\n".join(lines) + "\n"


def _mean_std(values: list) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return f"{sum(values) / len(values):.4f}" + (f" ± {statistics.stdev(values):.4f}" if len(values) > 1 else "")


def comparison_table(document: dict) -> str:
    """The methods' table: each task's held-out score (mean ± std over the seeds), Δm, step time (markdown)."""
    comparison, single = document["comparison"], document["comparison_single"]
    names = list(single)
    metrics = {t["name"]: _metric_label(t) for t in document["config"]["tasks"]}
    lines = [
        "| method | " + " | ".join(f"{n} ({metrics[n]})" for n in names) + " | Δm % | ms / step | unconverged steps |",
        "|---|" + "---:|" * (len(names) + 3),
        "| single-task | " + " | ".join(_mean_std(single[n]) for n in names) + " | 0 | | |",
    ]
    for method, row in comparison.items():
        scores = " | ".join(_mean_std(row["f1"][n]) for n in names)
        lines.append(f"| {method} | {scores} | {row['delta_m']:+.2f} | {row['step_ms']:.2f} | {row['unconverged_steps']} |")
    return "\n".join(lines)


def comparison_markdown(document: dict, figures: dict[str, str]) -> str:
    """report.md of ``mtl experiment --compare``: the setup, the table, what it cannot tell apart, the plot."""
    c, setup = document["config"], document["comparison_setup"]
    seeds = setup["seeds"]
    lines = [
        "# Multi-task methods compared",
        "",
        f"`{c['command']}`",
        "",
        f"- data: {_describe_data(c)}",
        f"- recipe: {_epochs(c['epochs'])}, curriculum `{c['curriculum']}`, Adam lr {c['lr']}, batch {c['batch_size']}, "
        f"trunk {c['hidden_dims']} {c['activation']}; backend {setup['backend']} {c['versions'].get(setup['backend'], '')} "
        f"on {c.get('devices', {}).get(setup['backend'], 'cpu')}",
        f"- seeds {', '.join(map(str, seeds))}: each seed draws the data, the split, the initial weights and the batch order;"
        " within a seed every method starts from the same weights",
        "- Δm: the mean over tasks of the relative gain of the method's seed-mean score over the single-task models'"
        " (sign flipped for MSE), in %; ms / step: median wall time of a training step "
        + ("(epochs after the first)" if c["epochs"] > 1 else "(the one epoch, its start-up and compilation included)"),
        "",
        comparison_table(document),
        "",
    ]
    twins = setup["identical_results"]
    if twins:
        lines += ["Methods with identical scores on every task and seed (each trained its own models; here they coincide):", ""]
        lines += [f"- {name}: same as {', '.join(others)}" for name, others in twins.items()]
        lines.append("")
    unconverged = {m: r["unconverged_steps"] for m, r in document["comparison"].items() if r["unconverged_steps"]}
    if unconverged:
        lines += [f"Solver tolerance missed (steps used the last iterate): {unconverged}.", ""]
    if len(seeds) < 3:
        lines += ["Fewer than three seeds: differences of a point or two are within seed-to-seed noise.", ""]
    lines += ["## Plot", ""] + [f"![{caption}]({name})" for name, caption in figures.items()]
    return "\n".join(lines) + "\n"
