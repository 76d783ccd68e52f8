"""Compare single-task models with the multi-task model, trained alike; write a report and plots.

Every model starts from one draw of weights (each single-task model takes the multi-task model's
trunk and its own head), sees the same data and follows the same recipe, so the multi-task model's
lift is the only difference. The draw is made in numpy from the seed (``initial_weights``) and
imported by each backend: with both, the two train one model from one start on the same batches,
and their numbers differ only by float32 rounding. Writes report.json (the configuration and
every per-epoch number), report.md (the final table and the verdict on the blog's claims) and PNG
plots. With --curriculum sequential it also trains the tasks one after another on one model and
reports how much the first task is forgotten.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from mtl_core.files import write_text
from mtl_core.weighting import resolve_weighting
from mtl_cli import devices, plots, report
from mtl_cli.backends import BACKENDS, builder, framework_versions
from mtl_cli.compare import METHOD_NAMES, parse_methods, run_comparison, seeds_of
from mtl_cli.console import note
from mtl_cli.datasets import Tasks, add_feature_arguments, files_of, held_out_fraction, synthetic
from mtl_cli.outputs import prepare_folder
from mtl_cli.recipe import Recipe, add_recipe_arguments, recipe_from
from mtl_cli.specs import TASK_SPEC

SINGLE_TASK_WEIGHTING = "sum"  # one loss: there is nothing to weigh
INITIALISATION = (
    "drawn in numpy from the seed (uniform in +-1/sqrt(fan_in), PyTorch's nn.Linear default) and imported by every "
    "backend; each single-task model takes the multi-task model's trunk and its own head"
)
GRAD_NORM_EVERY = 1  # every step: with one task per step (sequential), sampling could miss a head
REPORT_FILES = ("report.json", "report.md")  # a folder holding these holds a run: --overwrite to replace it


@dataclass
class BackendRun:
    """The fit histories of one backend: the multi-task model, each single-task model, the forgetting phases."""

    multi: dict
    single: dict[str, dict]
    forgetting: list[dict] | None = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=BACKENDS + ("both",), default="torch", help="framework(s) to train with (default torch)")
    add_recipe_arguments(parser)
    parser.add_argument("--task", action="append", metavar="SPEC",
                        help=f"a task from a CSV/TSV file, {TASK_SPEC} (repeat for each task); "
                        "without --task: the embedded synthetic movie/yelp reviews")
    parser.add_argument("--test-fraction", type=held_out_fraction, metavar="F", default=0.2,
                        help="held-out share of each --task file (default 0.2)")
    parser.add_argument("--out", type=Path, metavar="DIR", default=Path("mtl-runs/experiment"),
                        help="folder for report.json, report.md and plots")
    parser.add_argument("--overwrite", action="store_true", help="replace the report already in --out (refused otherwise)")
    add_feature_arguments(parser)
    comparing = parser.add_argument_group("comparing methods (instead of single- vs multi-task curves)")
    comparing.add_argument("--compare", metavar="METHODS",
                           help=f"comma-separated methods to train side by side, e.g. sum,pcgrad,cagrad,mgda,nash_mtl,upgrad,famo; "
                           f"choose from {', '.join(METHOD_NAMES)} (aggregators use --weighting)")
    comparing.add_argument("--seeds", type=int, metavar="N", default=1,
                           help="with --compare: seeds --seed, --seed+1, ... (default 1)")
    synthetic_options = parser.add_argument_group("synthetic default (to shrink it, e.g. for tests)")
    synthetic_options.add_argument("--n-train", type=int, metavar="N", help="training rows per task")
    synthetic_options.add_argument("--n-test", type=int, metavar="N", help="held-out rows per task")
    synthetic_options.add_argument("--vocab-size", type=int, metavar="V", help="vocabulary size")


def load_tasks(args: argparse.Namespace, seed: int | None = None) -> Tasks:
    """The tasks of the run (for ``seed``, by default ``--seed``: the synthetic draw or the held-out split)."""
    seed = args.seed if seed is None else seed
    if args.task:
        sizes = (("--n-train", args.n_train), ("--n-test", args.n_test), ("--vocab-size", args.vocab_size))
        shrunk = [flag for flag, value in sizes if value is not None]
        if shrunk:
            raise ValueError(f"{', '.join(shrunk)} size the synthetic default; with --task the files decide")
        return files_of(args, args.task, seed=seed)
    given = [flag for flag, value in (("--max-features", args.max_features), ("--hash-features", args.hash_features)) if value is not None]
    if given:
        raise ValueError(f"{', '.join(given)} turns the words of --task files into columns; the synthetic default has no words")
    return synthetic(seed=seed, n_train=args.n_train, n_test=args.n_test, vocab_size=args.vocab_size)


def check_experiment(tasks: Tasks, recipe: Recipe) -> None:
    """Refuse, before any training, what would make the comparison meaningless or fail midway."""
    if len(tasks.specs) < 2:
        raise ValueError(
            f"an experiment compares single-task and multi-task models: it needs at least two tasks, got {len(tasks.specs)}"
        )
    untested = [t.name for t in tasks.specs if t.name not in tasks.test]
    if untested:
        raise ValueError(f"tasks {untested} have no held-out rows to evaluate on: raise --test-fraction or add rows")
    resolve_weighting(recipe.train.weighting, tasks.specs)


def train_backend(backend: str, device, tasks: Tasks, recipe: Recipe, *, quiet: bool) -> BackendRun:
    """Train the multi-task model, one single-task model per task and, for ``sequential``, the forgetting run."""
    build = builder(backend, device)
    multi = build(tasks.input_dim, tasks.specs, recipe)
    start = multi.params()
    note(f"[{backend}] multi-task model: {', '.join(t.name for t in tasks.specs)}", quiet)
    multi_history = multi.fit(tasks.train, tasks.test, recipe, progress=not quiet)
    single_recipe = recipe.with_training(weighting=SINGLE_TASK_WEIGHTING)
    singles = {}
    for spec in tasks.specs:
        own = {k: v for k, v in start.items() if k.startswith("trunk.") or k.startswith(f"heads.{spec.name}.")}
        model = build(tasks.input_dim, (spec,), single_recipe, params=own)
        note(f"[{backend}] single-task model: {spec.name}", quiet)
        own_train, own_test = {spec.name: tasks.train[spec.name]}, {spec.name: tasks.test[spec.name]}
        singles[spec.name] = model.fit(own_train, own_test, single_recipe, progress=not quiet)
    forgetting = None
    if recipe.train.curriculum.name == "sequential":
        fresh = build(tasks.input_dim, tasks.specs, recipe, params=start)
        forgetting = train_one_task_after_another(fresh, tasks, recipe, backend, quiet)
    return BackendRun(multi_history, singles, forgetting)


def train_one_task_after_another(model, tasks: Tasks, recipe: Recipe, backend: str, quiet: bool) -> list[dict]:
    """Train each task alone for the recipe's epochs, in order, on one model.

    Each phase is a new training run of the library's ``fit`` (a fresh Adam), as when a trained
    model is fine-tuned on a new task. Every phase evaluates every task, so the first task's score
    after its own phase and after the later ones measures how much the model forgot it.
    """
    phases = []
    for spec in tasks.specs:
        note(f"[{backend}] forgetting run, phase {len(phases) + 1}: {spec.name} only", quiet)
        model.reset_optimizer()
        history = model.fit({spec.name: tasks.train[spec.name]}, tasks.test, recipe, progress=not quiet)
        phases.append({"trained": spec.name, "steps": sum(history["steps"]), "loss": history["loss"][spec.name], "f1": history["f1"]})
    return phases


def run(args: argparse.Namespace) -> int:
    recipe = recipe_from(args).with_training(grad_norm_every=GRAD_NORM_EVERY)
    backends = BACKENDS if args.backend == "both" else (args.backend,)
    methods = seeds = None
    if args.compare is not None:
        if args.backend == "both":
            raise ValueError("--compare trains every method in one backend: pass --backend torch or --backend jax")
        if args.aggregator is not None:
            raise ValueError(f"--aggregator {args.aggregator} with --compare: name the aggregators to compare in --compare")
        methods, seeds = parse_methods(args.compare, recipe.train.weighting), seeds_of(args.seed, args.seeds)
    placed = {backend: devices.resolve(args.device, backend) for backend in backends}
    tasks = load_tasks(args)
    recipe = recipe.for_inputs(args.optimizer, tasks.input_dim)
    recipe.check_memory(tasks.input_dim)
    check_experiment(tasks, recipe)
    prepare_folder(args.out, REPORT_FILES, overwrite=args.overwrite)  # everything checked: from here on, work
    config = {
        "command": "mtl " + " ".join(args.argv),
        "backends": list(backends),
        "devices": {backend: devices.describe(device) for backend, device in placed.items()},
        **recipe.as_config(),
        "single_task_weighting": SINGLE_TASK_WEIGHTING,
        "initialisation": INITIALISATION,
        "data": tasks.source,
        "tasks": report.task_rows(tasks),
        "versions": framework_versions(backends),
    }
    if methods is not None:
        build = builder(args.backend, placed[args.backend])
        comparison = run_comparison(build, args.backend, lambda seed: load_tasks(args, seed), recipe, methods, seeds, quiet=args.quiet)
        document = report.json_safe({"config": config, **comparison})
        return write_report(args, document, plots.write_comparison, report.comparison_markdown, report.comparison_table)
    runs = {backend: train_backend(backend, placed[backend], tasks, recipe, quiet=args.quiet) for backend in backends}
    return write_report(args, report.build(config, runs), plots.write_all, report.markdown, report.final_table)


def write_report(args: argparse.Namespace, document: dict, draw, markdown, table) -> int:
    """report.json, the plots ``draw`` makes, report.md from ``markdown`` (each whole or not at all); the ``table`` on stdout."""
    write_text(args.out / "report.json", json.dumps(document, indent=1, allow_nan=False) + "\n")
    figures = draw(document, args.out)
    write_text(args.out / "report.md", markdown(document, figures))
    sys.stdout.write(table(document) + "\n")
    note(f"wrote {args.out / 'report.json'}, {args.out / 'report.md'} and {len(figures)} plot(s)", args.quiet)
    return 0
