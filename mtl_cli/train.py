"""Train one multi-task model on your CSV/TSV files and score it on a seeded held-out split.

Writes DIR/model.safetensors (weights, Adam's state, the vocabulary and the label names; either
backend reads it) and DIR/metrics.json (each task's held-out score and row counts).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from mtl_core.metrics import METRIC_NAMES
from mtl_core.weighting import resolve_weighting
from mtl_cli.backends import BACKENDS, framework_versions, model_class
from mtl_cli.console import note
from mtl_cli.datasets import from_files
from mtl_cli.recipe import add_recipe_arguments, recipe_from
from mtl_cli.report import METRIC_LABELS, json_safe
from mtl_cli.specs import TASK_SPEC

CHECKPOINT = "model.safetensors"
METRICS = "metrics.json"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", action="append", required=True, metavar="SPEC",
                        help=f"{TASK_SPEC}: a task read from a CSV (or .tsv) file; repeat for each task. KIND is "
                        "binary (labels 0/1, true/false, yes/no), multiclass, multilabel ('|'-separated) or "
                        "regression; without it, binary labels are recognised and anything else is multiclass")
    parser.add_argument("--backend", choices=BACKENDS, default="torch", help="framework to train with (default torch)")
    add_recipe_arguments(parser)
    parser.add_argument("--test-fraction", type=float, metavar="F", default=0.2, help="held-out share of each file (default 0.2, seeded)")
    parser.add_argument("--out", type=Path, metavar="DIR", default=Path("mtl-runs/model"), help=f"folder for {CHECKPOINT} and {METRICS}")


def scores(tasks, history: dict) -> dict[str, dict]:
    """metrics.json's "tasks": the last epoch's held-out score (None without held-out rows) and row counts."""
    rows = {}
    for row in tasks.sizes():
        f1 = history["f1"][row["name"]][-1] if row["n_test"] else None
        rows[row["name"]] = {"f1": f1, "metric": METRIC_NAMES[row["kind"]], "n_train": row["n_train"], "n_test": row["n_test"]}
    return rows


def score_table(rows: dict[str, dict]) -> str:
    width = max(len("task"), *(len(name) for name in rows))
    lines = [f"{'task':<{width}}  {'metric':<9} {'held-out':>9} {'n_train':>8} {'n_test':>7}"]
    for name, row in rows.items():
        score = "-" if row["f1"] is None else f"{row['f1']:.4f}"
        lines.append(f"{name:<{width}}  {METRIC_LABELS[row['metric']]:<9} {score:>9} {row['n_train']:>8} {row['n_test']:>7}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    recipe = recipe_from(args)
    tasks = from_files(args.task, test_fraction=args.test_fraction, seed=args.seed)
    resolve_weighting(recipe.train.weighting, tasks.specs)  # a bad --weighting fails before training, not after
    args.out.mkdir(parents=True, exist_ok=True)
    for name in (t.name for t in tasks.specs if t.name not in tasks.test):
        note(f"task {name!r} has no held-out rows (--test-fraction {args.test_fraction}): no score for it", args.quiet)
    model = model_class(args.backend).build(tasks.input_dim, tasks.specs, recipe)
    note(f"[{args.backend}] training {', '.join(t.name for t in tasks.specs)} for {recipe.train.epochs} epochs", args.quiet)
    history = model.fit(tasks.train, tasks.test or None, recipe, progress=not args.quiet)
    model.save(args.out / CHECKPOINT, weighting=recipe.train.weighting, vocabulary=tasks.vocabulary, label_names=tasks.label_names)
    rows = scores(tasks, history)
    metrics = {
        "tasks": rows,
        "checkpoint": CHECKPOINT,
        "backend": args.backend,
        "config": {"command": "mtl " + " ".join(args.argv), **recipe.as_config(), "test_fraction": args.test_fraction,
                   "data": tasks.source, "versions": framework_versions((args.backend,))},
        "label_names": {k: list(v) for k, v in tasks.label_names.items()},
        "history": {"loss": history["loss"], "f1": history.get("f1", {})},
    }
    (args.out / METRICS).write_text(json.dumps(json_safe(metrics), indent=1, allow_nan=False) + "\n")
    sys.stdout.write(score_table(rows) + "\n")
    note(f"wrote {args.out / CHECKPOINT} and {args.out / METRICS}", args.quiet)
    return 0
