"""Where a command's tasks come from: the user's CSV/TSV files, or the embedded synthetic reviews."""

from __future__ import annotations

import argparse
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from mtl_core.data import DEFAULT_TASKS, TaskData, load_text_tasks, synthetic_reviews
from mtl_core.tasks import TaskSpec
from mtl_cli.recipe import LAZY_FROM
from mtl_cli.specs import parse_task


@dataclass(frozen=True)
class Tasks:
    """Train and held-out data per task, with what a report or checkpoint needs to describe them."""

    train: dict[str, TaskData]
    test: dict[str, TaskData]
    source: dict  # how the data was made, for report.json's config
    vocabulary: tuple[str, ...] | None = None  # files read into a vocabulary
    label_names: dict[str, tuple[str, ...]] = field(default_factory=dict)
    words_found: int = 0  # distinct training words before --max-features (files only)
    hash_features: int | None = None  # files hashed into this many columns (--hash-features)

    @property
    def specs(self) -> tuple[TaskSpec, ...]:
        return tuple(data.spec for data in self.train.values())

    @property
    def input_dim(self) -> int:
        return next(iter(self.train.values())).input_dim

    def sizes(self) -> list[dict]:
        """Each task's spec and row counts (n_test 0 when it has no held-out rows)."""
        return [
            {"name": t.name, "kind": t.kind, "num_outputs": t.num_outputs,
             "n_train": len(self.train[t.name]), "n_test": len(self.test[t.name]) if t.name in self.test else 0}
            for t in self.specs
        ]


DEFAULT_MAX_FEATURES = 20_000


def held_out_fraction(text: str) -> float:
    """--test-fraction: a share of each file's rows in [0, 1) (argparse names the option in its error)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid number: {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1) (a share of each file's rows), got {text}")
    return value


def add_feature_arguments(parser: argparse.ArgumentParser) -> None:
    """--max-features and --hash-features: how the words of --task files become the network's columns."""
    features = parser.add_mutually_exclusive_group()
    features.add_argument("--max-features", type=int, metavar="N",
                          help=f"keep the N most frequent training words (default {DEFAULT_MAX_FEATURES:,}); the run reports how "
                          "many there were")
    features.add_argument("--hash-features", type=int, metavar="N",
                          help="hash words into N columns instead of keeping a vocabulary (scikit-learn's HashingVectorizer): "
                          "every word counts, nothing to store, any N (e.g. 262144 = 2^18); with N >= "
                          f"{LAZY_FROM:,}, lazy Adam is the default --optimizer")


def files_of(args: argparse.Namespace, specs: Sequence[str], *, seed: int) -> "Tasks":
    """The tasks of --task specs as --max-features / --hash-features ask (checked first)."""
    for flag, value in (("--max-features", args.max_features), ("--hash-features", args.hash_features)):
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be >= 1, got {value}")
    return from_files(specs, test_fraction=args.test_fraction, seed=seed, max_features=args.max_features, hash_features=args.hash_features)


def from_files(specs: Sequence[str], *, test_fraction: float, seed: int, max_features: int | None = None,
               hash_features: int | None = None) -> Tasks:
    """Tasks read from ``NAME=PATH:TEXT_COL:LABEL_COL[:KIND]`` specs: one shared vocabulary of the
    ``max_features`` (default DEFAULT_MAX_FEATURES) most frequent words, or ``hash_features`` hashed columns."""
    sources = [parse_task(spec) for spec in specs]
    if hash_features is None and max_features is None:
        max_features = DEFAULT_MAX_FEATURES
    loaded = load_text_tasks(sources, test_fraction=test_fraction, seed=seed, max_features=max_features, hash_features=hash_features)
    source = {
        "kind": "files",
        "test_fraction": test_fraction,
        "vocabulary_size": None if loaded.vocabulary is None else len(loaded.vocabulary),
        "max_features": None if hash_features is not None else max_features,
        "hash_features": hash_features,
        "words_found": loaded.words_found,
        "tasks": [
            {"name": s.name, "path": str(Path(s.path).resolve()), "text_column": s.text_column, "label_column": s.label_column, "kind": s.kind,
             "sha256": file_digest(s.path)}
            for s in sources
        ],
    }
    return Tasks(loaded.train, loaded.test, source, loaded.vocabulary, loaded.label_names, loaded.words_found, hash_features)


def file_digest(path) -> str:
    """SHA-256 of a file's bytes: --resume refuses files that changed since the run began."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def synthetic(*, seed: int, n_train: int | None = None, n_test: int | None = None, vocab_size: int | None = None) -> Tasks:
    """The embedded synthetic reviews (mtl_core.data.synthetic), the generator's defaults unless overridden."""
    overrides = {k: v for k, v in (("n_train", n_train), ("n_test", n_test), ("vocab_size", vocab_size)) if v is not None}
    train, test = synthetic_reviews(DEFAULT_TASKS, seed=seed, **overrides)
    source = {"kind": "synthetic", "generator": "mtl_core.data.synthetic_reviews", "seed": seed, **overrides}
    return Tasks(train, test, source)
