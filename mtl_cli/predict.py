"""Predict one task's labels for new texts, with probabilities, from a checkpoint of ``mtl train``.

Binary and multilabel heads give sigmoid probabilities, multiclass heads softmax ones, regression
heads their raw value. Either backend reads a checkpoint written by either. Each prediction carries
its input's row (the data rows counted from 0) and, with ``--keep``, columns of the input; ``--out``
never replaces an input, nor an existing file without ``--overwrite``, and is written whole or not at all.
"""

from __future__ import annotations

import argparse
import csv
import functools
import sys
from pathlib import Path

import numpy as np
from scipy.special import expit, softmax

from mtl_core.checkpoint import Checkpoint, label_name_count
from mtl_core.data import vectorize_texts
from mtl_core.data.text import MULTILABEL_SEPARATOR, read_columns
from mtl_core.metrics import predict_labels
from mtl_core.tasks import TaskSpec
from mtl_core.files import atomic_write
from mtl_cli import devices
from mtl_cli.backends import BACKENDS, model_class
from mtl_cli.console import note_wordless
from mtl_cli.outputs import check_output_file
from mtl_cli.specs import INPUT_SPEC, parse_input

ROW = "row"  # the input's data row, counted from 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", type=Path, required=True, metavar="FILE", help="model.safetensors written by mtl train")
    parser.add_argument("--task", required=True, metavar="NAME", help="the task (head) to predict")
    parser.add_argument("input", metavar="INPUT", help=f"{INPUT_SPEC}: a CSV (or .tsv) file and the column holding the texts")
    parser.add_argument("--backend", choices=BACKENDS, default="torch", help="framework to run the model in (default torch)")
    parser.add_argument("--keep", metavar="COL[,COL]", help="columns of the input to copy into the predictions (to join them back)")
    parser.add_argument("--out", type=Path, metavar="OUT.csv", help="where to write the predictions (default: stdout)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out when it exists (it is never one of the inputs)")


def label_names(checkpoint: Checkpoint, spec: TaskSpec, path: Path) -> tuple[str, ...]:
    """The names of the head's labels (binary: negative then positive), numbered when the checkpoint has none."""
    wanted = label_name_count(spec)
    names = checkpoint.label_names.get(spec.name)
    if names is None:
        return tuple(str(i) for i in range(wanted)) if spec.kind != "regression" else tuple(f"value_{i}" for i in range(wanted))
    if len(names) != wanted:
        raise ValueError(f"{path}: task {spec.name!r} has {len(names)} label names for a {spec.kind} head that needs {wanted}")
    return tuple(names)


def prediction_table(spec: TaskSpec, names: tuple[str, ...], logits: np.ndarray) -> tuple[list[str], list[list]]:
    """CSV header and rows: predicted label(s), then a probability (or value) per label."""
    predicted = predict_labels(spec, logits)
    if spec.kind == "regression":
        return list(names), [[f"{v:.6g}" for v in values] for values in logits]
    if spec.kind == "binary":
        positive = expit(logits[:, 0])
        probabilities = np.stack([1.0 - positive, positive], axis=1)
        labels = [names[int(p)] for p in predicted[:, 0]]
    elif spec.kind == "multiclass":
        probabilities = softmax(logits, axis=1)
        labels = [names[int(p)] for p in predicted]
    else:
        probabilities = expit(logits)
        labels = [MULTILABEL_SEPARATOR.join(n for n, on in zip(names, row) if on) for row in predicted]
    header = ["labels" if spec.kind == "multilabel" else "label", *(f"prob_{name}" for name in names)]
    return header, [[label, *(f"{p:.6f}" for p in row)] for label, row in zip(labels, probabilities)]


def kept_columns(text: str | None) -> list[str]:
    """The input columns ``--keep`` names (COL[,COL])."""
    if text is None:
        return []
    columns = text.split(",")
    if not all(columns) or len(set(columns)) != len(columns):
        raise ValueError(f"--keep {text!r}: expected distinct column names, COL[,COL]")
    return columns


def kept_header(columns: list[str], header: list[str]) -> list[str]:
    """The kept columns' names in the predictions: their own, "input_" before one the predictions use."""
    return [f"input_{c}" if c in header or c == ROW else c for c in columns]


def input_columns(checkpoint, path):
    """texts -> the network's input rows, as the checkpoint's run made them: its vocabulary or hashing."""
    if checkpoint.hash_features is not None:
        return functools.partial(vectorize_texts, hash_features=checkpoint.hash_features)
    if checkpoint.vocabulary is None:
        raise ValueError(f"{path}: the checkpoint holds no vocabulary (write it with mtl train), so texts cannot be turned into inputs")
    if len(checkpoint.vocabulary) != checkpoint.arch.input_dim:
        raise ValueError(f"{path}: the vocabulary has {len(checkpoint.vocabulary)} words, the network reads {checkpoint.arch.input_dim}")
    return functools.partial(vectorize_texts, vocabulary=checkpoint.vocabulary)


def run(args: argparse.Namespace) -> int:
    path, column = parse_input(args.input)
    if args.out is not None:
        check_output_file(args.out, [path, args.checkpoint], overwrite=args.overwrite)
    model, checkpoint = model_class(args.backend).load(args.checkpoint, device=devices.resolve(args.device, args.backend))
    spec = next((t for t in model.tasks if t.name == args.task), None)
    if spec is None:
        names = [t.name for t in model.tasks]
        raise ValueError(f"{args.checkpoint}: no task named {args.task!r}; the checkpoint's tasks are {names}")
    texts_to_inputs = input_columns(checkpoint, args.checkpoint)
    names = label_names(checkpoint, spec, args.checkpoint)
    keep = kept_columns(args.keep)
    columns = read_columns(path, [column, *(c for c in keep if c != column)])
    inputs = texts_to_inputs(columns[column])
    note_wordless(str(path), [inputs], args.quiet)
    logits = model.logits(spec.name, inputs)
    header, rows = prediction_table(spec, names, logits)
    header, rows = [ROW, *kept_header(keep, header), *header], [[i, *(columns[c][i] for c in keep), *row] for i, row in enumerate(rows)]
    if args.out is None:
        _write_csv(sys.stdout, header, rows)
    else:
        atomic_write(args.out, lambda temporary: _write_file(temporary, header, rows))
    return 0


def _write_file(path: str, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as handle:
        _write_csv(handle, header, rows)


def _write_csv(handle, header: list[str], rows: list[list]) -> None:
    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
