"""Train one multi-task model on your CSV/TSV files and score it on a seeded held-out split.

Writes DIR/model.safetensors (weights, Adam's state, the vocabulary or hashing and the label names; either
backend reads it) and DIR/metrics.json (each task's held-out score, the recipe, the history) after
every epoch, each file whole or not at all: an interrupted run keeps its last finished epoch, and
``--resume DIR`` continues it to the same model an uninterrupted run ends with.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from mtl_core.files import write_text
from mtl_core.metrics import METRIC_NAMES
from mtl_core.weighting import resolve_weighting
from mtl_cli import devices
from mtl_cli.backends import BACKENDS, framework_versions, model_class
from mtl_cli.console import note, note_wordless, progress_bar
from mtl_cli.datasets import Tasks, add_feature_arguments, files_of, from_files, held_out_fraction
from mtl_cli.outputs import prepare_folder
from mtl_cli.recipe import Recipe, add_recipe_arguments, recipe_from, recipe_options_given
from mtl_cli.report import METRIC_LABELS, json_safe
from mtl_cli.specs import TASK_SPEC

CHECKPOINT = "model.safetensors"
METRICS = "metrics.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", action="append", metavar="SPEC",
                        help=f"{TASK_SPEC}: a task read from a CSV (or .tsv) file; repeat for each task. KIND is "
                        "binary (labels 0/1, true/false, yes/no), multiclass, multilabel ('|'-separated) or "
                        "regression; without it, binary labels are recognised and anything else is multiclass")
    parser.add_argument("--backend", choices=BACKENDS, help="framework to train with (default torch; with --resume, the run's)")
    add_recipe_arguments(parser)
    parser.add_argument("--test-fraction", type=held_out_fraction, metavar="F", default=0.2, help="held-out share of each file (default 0.2, seeded)")
    add_feature_arguments(parser)
    parser.add_argument("--out", type=Path, metavar="DIR", help=f"folder for {CHECKPOINT} and {METRICS} (default mtl-runs/model)")
    parser.add_argument("--overwrite", action="store_true", help="replace the run already in --out (refused otherwise)")
    parser.add_argument("--resume", type=Path, metavar="DIR",
                        help="continue the run in DIR (its files, recipe and backend) up to --epochs; DIR keeps its checkpoint after every epoch")


@dataclass
class Run:
    """What one training run needs beyond its model: data, recipe, where it writes, what it has done."""

    tasks: Tasks
    recipe: Recipe
    backend: str
    folder: Path
    command: str
    test_fraction: float
    device: str
    epochs_done: int = 0
    history: dict | None = None
    resumed_by: tuple[str, ...] = ()  # the --resume commands that continued it, oldest first


def scores(tasks, history: dict) -> dict[str, dict]:
    """metrics.json's "tasks": the last epoch's held-out score (None without held-out rows) and row counts."""
    rows = {}
    for row in tasks.sizes():
        f1 = history["f1"][row["name"]][-1] if row["n_test"] and history["f1"][row["name"]] else None
        rows[row["name"]] = {"f1": f1, "metric": METRIC_NAMES[row["kind"]], "n_train": row["n_train"], "n_test": row["n_test"]}
    return rows


def score_table(rows: dict[str, dict]) -> str:
    width = max(len("task"), *(len(name) for name in rows))
    lines = [f"{'task':<{width}}  {'metric':<9} {'held-out':>9} {'n_train':>8} {'n_test':>7}"]
    for name, row in rows.items():
        score = "-" if row["f1"] is None else f"{row['f1']:.4f}"
        lines.append(f"{name:<{width}}  {METRIC_LABELS[row['metric']]:<9} {score:>9} {row['n_train']:>8} {row['n_test']:>7}")
    return "\n".join(lines)


def _merged(history: dict | None, epoch: dict) -> dict:
    if history is None:
        return {"loss": dict(epoch["loss"]), "f1": dict(epoch.get("f1", {}))}
    return {key: {name: history[key].get(name, []) + values for name, values in epoch.get(key, {}).items()} for key in ("loss", "f1")}


def _features(tasks: Tasks) -> dict:
    """How the run's words became columns: what --resume reads back to make the same ones."""
    return {key: tasks.source[key] for key in ("max_features", "hash_features")}


def metrics_document(run: Run) -> dict:
    tasks, recipe = run.tasks, run.recipe
    return json_safe({
        "tasks": scores(tasks, run.history),
        "checkpoint": CHECKPOINT,
        "backend": run.backend,
        "device": run.device,
        "epochs_done": run.epochs_done,
        "config": {
            "command": run.command, "resumed_by": list(run.resumed_by), **recipe.as_config(), "test_fraction": run.test_fraction, **_features(tasks),
            "data": tasks.source, "versions": framework_versions((run.backend,)),
        },
        "vocabulary": {"size": tasks.input_dim, "found": tasks.words_found, **_features(tasks)},
        "label_names": {k: list(v) for k, v in tasks.label_names.items()},
        "history": run.history,
    })


def train_epochs(model, run: Run, quiet: bool) -> None:
    """Train up to the recipe's epochs, one at a time; after each, the checkpoint and metrics.json."""
    one_epoch = run.recipe.with_training(epochs=1)
    with progress_bar(total=run.recipe.train.epochs, initial=run.epochs_done, quiet=quiet, desc="epochs") as bar:
        while run.epochs_done < run.recipe.train.epochs:
            history = model.fit(run.tasks.train, run.tasks.test or None, one_epoch, progress=False)
            run.history, run.epochs_done = _merged(run.history, history), run.epochs_done + 1
            model.save(run.folder / CHECKPOINT, weighting=run.recipe.train.weighting, vocabulary=run.tasks.vocabulary,
                       hash_features=run.tasks.hash_features, label_names=run.tasks.label_names)
            write_text(run.folder / METRICS, json.dumps(metrics_document(run), indent=1, allow_nan=False) + "\n")
            bar.set_postfix(loss=f"{sum(v[-1] for v in history['loss'].values() if v):.4f}")
            bar.update(1)


def _report_features(tasks: Tasks, quiet: bool) -> None:
    if tasks.hash_features is not None:
        note(f"features: {tasks.words_found:,} distinct training words hashed into {tasks.hash_features:,} columns", quiet)
    elif tasks.words_found > len(tasks.vocabulary):
        note(f"vocabulary: the {len(tasks.vocabulary):,} most frequent of {tasks.words_found:,} training words "
             f"(--max-features {tasks.source['max_features']}); the other {tasks.words_found - len(tasks.vocabulary):,} are not read", quiet)


def new_run(args: argparse.Namespace) -> tuple[Run, object]:
    if not args.task:
        raise ValueError("train needs --task SPEC (one per task), or --resume DIR to continue a run")
    recipe = recipe_from(args)
    backend = args.backend or "torch"
    device = devices.resolve(args.device, backend)
    tasks = files_of(args, args.task, seed=recipe.train.seed)
    recipe = recipe.for_inputs(args.optimizer, tasks.input_dim)
    recipe.check_memory(tasks.input_dim)
    resolve_weighting(recipe.train.weighting, tasks.specs)  # a bad --weighting fails before training, not after
    folder = args.out or Path("mtl-runs/model")
    prepare_folder(folder, (CHECKPOINT, METRICS), overwrite=args.overwrite, hint=", or --resume it to continue")
    run = Run(tasks, recipe, backend, folder, "mtl " + " ".join(args.argv), args.test_fraction, devices.describe(device))
    return run, model_class(backend).build(tasks.input_dim, tasks.specs, recipe, device=device)


def resumed_run(args: argparse.Namespace) -> tuple[Run, object]:
    """The run in ``--resume DIR`` and its model, its files read again and checked against its checkpoint."""
    folder = args.resume
    if not folder.is_dir():
        raise FileNotFoundError(f"--resume {folder}: no such folder")
    given = recipe_options_given(args.argv) - {"--epochs"}
    named = (("--task", args.task), ("--out", args.out), ("--overwrite", args.overwrite), ("--max-features", args.max_features),
             ("--hash-features", args.hash_features))
    clashes = sorted(given | {flag for flag, value in named if value})
    if clashes:
        raise ValueError(f"--resume continues {folder} with its own files and recipe: leave out {', '.join(clashes)}")
    try:
        saved = json.loads((folder / METRICS).read_text(encoding="utf-8"))
        config, epochs_done = saved["config"], int(saved["epochs_done"])
    except FileNotFoundError:
        raise FileNotFoundError(f"--resume {folder}: no {METRICS}: not a run of mtl train") from None
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"--resume {folder}: {METRICS} does not describe a run ({error})") from None
    recipe = Recipe.from_config(config)
    if "--epochs" in recipe_options_given(args.argv):
        recipe = recipe.with_training(epochs=args.epochs)
    if epochs_done >= recipe.train.epochs:
        raise ValueError(f"--resume {folder}: the run has done {epochs_done} epochs, --epochs asks for {recipe.train.epochs}")
    backend = args.backend or saved["backend"]
    device = devices.resolve(args.device, backend)
    specs = [f"{t['name']}={t['path']}:{t['text_column']}:{t['label_column']}" + (f":{t['kind']}" if t["kind"] else "") for t in config["data"]["tasks"]]
    tasks = from_files(specs, test_fraction=config["test_fraction"], seed=recipe.train.seed, max_features=config["max_features"],
                       hash_features=config.get("hash_features"))
    prepare_folder(folder, (), overwrite=True, option="--resume")
    model, checkpoint = model_class(backend).load(folder / CHECKPOINT, device=device)
    changed = [t["path"] for t, now in zip(config["data"]["tasks"], tasks.source["tasks"]) if t.get("sha256", now["sha256"]) != now["sha256"]]
    if changed:
        raise ValueError(f"--resume {folder}: the task files changed since the run began: {', '.join(changed)}")
    if (checkpoint.vocabulary, checkpoint.hash_features) != (tasks.vocabulary, tasks.hash_features):
        raise ValueError(f"--resume {folder}: the task files changed since the run began (their vocabulary is not the checkpoint's)")
    model.epochs_done, model.epoch_losses = epochs_done, {k: list(v) for k, v in saved["history"]["loss"].items()}
    resumed_by = (*config.get("resumed_by", ()), "mtl " + " ".join(args.argv))
    run = Run(tasks, recipe, backend, folder, config["command"], config["test_fraction"], devices.describe(device), epochs_done,
              saved["history"], resumed_by)
    return run, model


def run(args: argparse.Namespace) -> int:
    run, model = resumed_run(args) if args.resume is not None else new_run(args)  # everything checked: now train
    _report_features(run.tasks, args.quiet)
    for name in (t.name for t in run.tasks.specs):
        note_wordless(f"task {name!r}", [part[name].X for part in (run.tasks.train, run.tasks.test) if name in part], args.quiet)
    for name in (t.name for t in run.tasks.specs if t.name not in run.tasks.test):
        note(f"task {name!r} has no held-out rows (--test-fraction {run.test_fraction}): no score for it", args.quiet)
    batch = run.recipe.train.batch_size
    for name, rows in ((n, len(d)) for n, d in run.tasks.train.items() if len(d) < batch):
        note(f"task {name!r} trains on {rows} row{'s' if rows > 1 else ''}, fewer than one batch (--batch-size {batch}; "
             f"--test-fraction {run.test_fraction} holds out the rest)", args.quiet)
    first, last = run.epochs_done + 1, run.recipe.train.epochs
    note(f"[{run.backend} on {run.device}] training {', '.join(t.name for t in run.tasks.specs)} "
         f"for {f'epoch {last}' if first == last else f'epochs {first}-{last}'}", args.quiet)
    train_epochs(model, run, args.quiet)
    sys.stdout.write(score_table(scores(run.tasks, run.history)) + "\n")
    note(f"wrote {run.folder / CHECKPOINT} and {run.folder / METRICS}", args.quiet)
    return 0
