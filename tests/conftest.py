"""Shared fixtures of the unit tests: small tasks and data, bad inputs both backends must reject.

Helpers are handed out as fixtures (not imported from this file), so that another conftest.py
elsewhere in the repository can never shadow them.
"""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.sparse as sp

from cli_support import review, mtl, task_args, write_table
from parity_tests import numerics
from mtl_core import TaskSpec
from mtl_core.data import synthetic_reviews

TASKS = (TaskSpec("movie", "binary", 1), TaskSpec("yelp", "multiclass", 3))
INPUT_DIM = 120
HIDDEN = (16,)
BATCH_ROWS = 6
FRAMEWORKS = ("torch", "jax", "flax", "optax")


def pytest_configure(config):
    numerics.pin()  # full float32 matmuls and deterministic sums on a GPU too (parity_tests/numerics.py)


def _random_labels(spec: TaskSpec, n: int, rng: np.random.Generator) -> np.ndarray:
    if spec.kind == "multiclass":
        return rng.integers(0, spec.num_outputs, n).astype(np.int64)
    if spec.kind in ("binary", "multilabel"):
        return rng.integers(0, 2, (n, spec.num_outputs)).astype(np.float32)
    return rng.standard_normal((n, spec.num_outputs)).astype(np.float32)


def _dense_inputs(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """Sparse-looking non-negative counts, dense float32 (n, dim)."""
    return (rng.random((n, dim)) < 0.1).astype(np.float32) * rng.integers(1, 4, (n, dim)).astype(np.float32)


def _batches(seed: int = 0, names=None, n: int = BATCH_ROWS, dim: int = INPUT_DIM) -> dict:
    """A step's {task name: (x, y)} for TASKS (or the named subset), dense x."""
    rng = np.random.default_rng(seed)
    chosen = [t for t in TASKS if names is None or t.name in names]
    return {t.name: (_dense_inputs(n, dim, rng), _random_labels(t, n, rng)) for t in chosen}


def _frameworks_loaded_by(*modules: str) -> list[str]:
    """The deep-learning frameworks that importing ``modules`` in a fresh interpreter loads."""
    code = (
        "import importlib, sys\n"
        f"for name in {list(modules)!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(','.join(m for m in {FRAMEWORKS!r} if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    return [m for m in out.split(",") if m]


HISTORY_KEYS = {"epoch", "steps", "loss", "total_loss", "grad_norm", "loss_weights"}


def _check_history(history: dict, steps: list[int], with_eval: bool) -> None:
    """Assert a fit history over TASKS with one trunk layer has the documented keys, one entry per epoch."""
    epochs = len(steps)
    assert set(history) == HISTORY_KEYS | ({"f1"} if with_eval else set())
    assert history["epoch"] == list(range(1, epochs + 1)) and history["steps"] == steps
    assert set(history["grad_norm"]) == {"trunk.0"} | {f"heads.{t.name}" for t in TASKS}
    per_task = ("loss", "loss_weights") + (("f1",) if with_eval else ())
    for key in per_task:
        assert set(history[key]) == {t.name for t in TASKS}
    lists = [history["total_loss"], *history["grad_norm"].values()] + [v for key in per_task for v in history[key].values()]
    assert all(len(values) == epochs and all(isinstance(v, float) for v in values) for values in lists)
    if with_eval:
        assert all(0.0 <= f <= 1.0 for values in history["f1"].values() for f in values)


@pytest.fixture(scope="session")
def helpers():
    """Small builders shared by the test modules."""
    return SimpleNamespace(
        tasks=TASKS,
        input_dim=INPUT_DIM,
        hidden=HIDDEN,
        batch_rows=BATCH_ROWS,
        batches=_batches,
        dense_inputs=_dense_inputs,
        random_labels=_random_labels,
        frameworks_loaded_by=_frameworks_loaded_by,
        check_history=_check_history,
    )


@pytest.fixture(scope="session")
def reviews():
    """(train, test) TaskData of TASKS over INPUT_DIM words; the two tasks differ in size."""
    return synthetic_reviews(
        TASKS,
        n_train={"movie": 80, "yelp": 48},
        n_test=24,
        vocab_size=INPUT_DIM,
        review_length=12,
        signal_words=6,
        seed=0,
    )


def _with(array: np.ndarray, row: int, value: float) -> np.ndarray:
    array[row, 1] = value
    return array


# Bad batch dicts a training step of either backend must reject, with the text the error must hold.
def _bad_batches():
    good = _batches(seed=1)
    (x_movie, y_movie), (x_yelp, _) = good["movie"], good["yelp"]
    n = BATCH_ROWS
    wide = np.ones((n, INPUT_DIM + 1), np.float32)
    return {
        "unknown_task": ({"netflix": (x_movie, y_movie)}, ValueError, r"\['netflix'\] that the model lacks"),
        "multiclass_labels_of_wrong_shape": ({"yelp": (x_yelp, np.zeros((n, 2)))}, ValueError, rf"shape \(n,\), got \({n}, 2\)"),
        "class_id_out_of_range": ({"yelp": (x_yelp, np.array([0, 1, 2, 3, 0, 1]))}, ValueError, r"\[0, 3\), got 3 at row 3"),
        "negative_class_id": ({"yelp": (x_yelp, np.array([0, -1, 2, 1, 0, 1]))}, ValueError, r"got -1 at row 1"),
        "binary_label_2": ({"movie": (x_movie, np.array([0, 1, 2, 1, 0, 1.0]))}, ValueError, r"0 or 1, got \[2\.\] at row 2"),
        "binary_labels_of_wrong_shape": ({"movie": (x_movie, np.zeros((n, 2)))}, ValueError, rf"\(n,\) or \(n, 1\), got \({n}, 2\)"),
        "nan_label": ({"movie": (x_movie, np.array([0, 1, np.nan, 1, 0, 1]))}, ValueError, r"NaN or inf \(first at row 2\)"),
        "inf_label": ({"movie": (x_movie, np.array([0, 1, 1, np.inf, 0, 1]))}, ValueError, r"NaN or inf \(first at row 3\)"),
        "string_labels": ({"yelp": (x_yelp, np.array(list("abcdef")))}, TypeError, r"must be numeric, got dtype <U1"),
        "fewer_labels_than_rows": ({"movie": (x_movie, y_movie[:-1])}, ValueError, rf"{n} rows of x but {n - 1} labels"),
        "dense_input_of_wrong_width": ({"movie": (wide, y_movie)}, ValueError, rf"\b{INPUT_DIM + 1}\b"),
        "sparse_input_of_wrong_width": ({"movie": (sp.csr_matrix(wide), y_movie)}, ValueError, rf"{INPUT_DIM + 1} features"),
        "empty_batch": ({"movie": (x_movie[:0], y_movie[:0])}, ValueError, r"task 'movie' is empty"),
        "nan_in_dense_input": ({"movie": (_with(np.ones((n, INPUT_DIM), np.float32), 2, np.nan), y_movie)}, ValueError,
                               r"x of task 'movie' holds NaN or inf \(first at row 2\)"),
        "inf_in_sparse_input": ({"movie": (sp.csr_matrix(_with(np.ones((n, INPUT_DIM), np.float32), 3, np.inf)), y_movie)}, ValueError,
                                r"x of task 'movie' holds NaN or inf \(first at row 3\)"),
        "batch_not_a_pair": ({"movie": x_movie}, ValueError, r"must be \(x, y\) or \(x, y, row_mask\)"),
        "empty_dict": ({}, ValueError, r"non-empty dict"),
    }


_BAD_BATCHES = _bad_batches()


# task_weights a direct step of either backend must refuse: (weights, exception type, message pattern).
_BAD_TASK_WEIGHTS = {
    "wrong_length": ([1.0, 1.0, 1.0], ValueError, r"task_weights must have shape \(2,\), got \(3,\)"),
    "nan": ([float("nan"), 1.0], ValueError, r"task_weights must be finite numbers >= 0, got \[nan, 1\.0\]"),
    "inf": ([1.0, float("inf")], ValueError, r"finite numbers >= 0, got \[1\.0, inf\]"),
    "negative": ([-1.0, 1.0], ValueError, r"finite numbers >= 0, got \[-1\.0, 1\.0\]"),
    "not_numbers": (["a", "b"], TypeError, r"task_weights must be 2 numbers, got \['a', 'b'\]"),
}


@pytest.fixture(params=sorted(_BAD_TASK_WEIGHTS))
def bad_task_weights(request):
    return _BAD_TASK_WEIGHTS[request.param]


@pytest.fixture(params=sorted(_BAD_BATCHES))
def bad_batch(request):
    """(batches, exception type, message pattern) of one bad batch dict."""
    return _BAD_BATCHES[request.param]


# Task ids a model must refuse: (task_id, exception type, message pattern).
_BAD_TASK_IDS = {
    "unknown_name": ("netflix", ValueError, r"unknown task name 'netflix'"),
    "index_past_the_end": (2, ValueError, r"task_id 2 is out of range"),
    "negative_index": (-1, ValueError, r"task_id -1 is out of range"),
    "float_index": (1.0, TypeError, r"got 1\.0"),
    "bool_index": (True, TypeError, r"got True"),
}


@pytest.fixture(params=sorted(_BAD_TASK_IDS))
def bad_task_id(request):
    return _BAD_TASK_IDS[request.param]


# Corruptions of a canonical params dict that import_params must refuse (for TASKS, HIDDEN, INPUT_DIM).
_BAD_PARAMS = {
    "missing_head_bias": (lambda p: {k: v for k, v in p.items() if k != "heads.yelp.bias"}, ValueError, r"missing \['heads\.yelp\.bias'\]"),
    "extra_entry": (lambda p: {**p, "bogus.weight": np.zeros(3, np.float32)}, ValueError, r"unexpected \['bogus\.weight'\]"),
    "misshapen_bias": (lambda p: {**p, "trunk.0.bias": np.zeros(HIDDEN[0] + 1, np.float32)}, ValueError, rf"trunk\.0\.bias.*\({HIDDEN[0] + 1},\)"),
    "integer_kernel": (lambda p: {**p, "heads.movie.kernel": p["heads.movie.kernel"].astype(np.int32)}, TypeError, r"heads\.movie\.kernel'\] has dtype int32"),
    "not_a_dict": (lambda p: list(p.items()), TypeError, r"got list"),
}


@pytest.fixture(params=sorted(_BAD_PARAMS))
def bad_params(request):
    """(corrupt: canonical dict -> bad one, exception type, message pattern)."""
    return _BAD_PARAMS[request.param]


# Row masks a step must refuse for a 6-row batch of "movie": (mask, message pattern).
_BAD_ROW_MASKS = {
    "too_short": (np.array([1, 0, 1]), rf"row mask of task 'movie' must be 0/1 of shape \({BATCH_ROWS},\)"),
    "not_0_or_1": (np.array([1, 0, 2, 1, 0, 1]), r"row mask of task 'movie' must be 0/1"),
    "all_zero": (np.zeros(BATCH_ROWS), r"with a 1"),
}


@pytest.fixture(params=sorted(_BAD_ROW_MASKS))
def bad_row_mask(request):
    return _BAD_ROW_MASKS[request.param]


# fit settings both backends must refuse before training: (kwargs, exception type, message pattern).
_BAD_FIT_SETTINGS = {
    "unknown_curriculum": (dict(curriculum="zip"), ValueError, r"curriculum must be one of .* got 'zip'"),
    "unknown_weighting": (dict(weighting="softmax"), ValueError, r"weighting must be one of .* got 'softmax'"),
    "fixed_weights_missing_a_task": (dict(weighting={"movie": 1.0}), ValueError, r"missing \['yelp'\]"),
    "zero_lr": (dict(lr=0.0), ValueError, r"lr must be a finite number > 0, got 0\.0"),
    "negative_epochs": (dict(epochs=-1), ValueError, r"epochs must be an int >= 0, got -1"),
    "zero_batch_size": (dict(batch_size=0), ValueError, r"batch_size must be an int >= 1, got 0"),
    "negative_seed": (dict(seed=-1), ValueError, r"seed must be an int >= 0, got -1"),
    "seed_beyond_int64": (dict(seed=2**63), ValueError, r"seed must be an int in \[0, 2\*\*63\) .* got 9223372036854775808"),
    "previous_losses_of_an_unknown_task": (dict(previous_losses={"imdb": [0.5]}), ValueError,
                                           r"previous_losses names tasks \['imdb'\] that the model lacks"),
    "previous_losses_not_numbers": (dict(previous_losses={"movie": ["a"], "yelp": [0.5]}), TypeError, r"previous_losses must hold numbers"),
    "eval_data_of_an_unknown_task": (dict(eval_data={"imdb": None}), ValueError, r"eval_data names task 'imdb'"),
}


@pytest.fixture(params=sorted(_BAD_FIT_SETTINGS))
def bad_fit_setting(request):
    return _BAD_FIT_SETTINGS[request.param]


# -- the mtl command's tests (helpers in cli_support.py) ----------------------------------------------------
@pytest.fixture(scope="module")
def files(tmp_path_factory) -> SimpleNamespace:
    """A binary task in CSV (labels yes/no) and a 3-class task in TSV (labels 1/3/5), plus new texts."""
    folder = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    movie = [[review(rng, s), "yes" if s > 0 else "no"] for s in rng.choice([-1, 1], 60)]
    yelp = [[review(rng, s), {-1: 1, 0: 3, 1: 5}[s]] for s in rng.choice([-1, 0, 1], 60)]
    new = [[i, review(rng, s)] for i, s in enumerate(rng.choice([-1, 0, 1], 12))]
    return SimpleNamespace(
        movie=write_table(folder / "movie.csv", ["text", "label"], movie),
        yelp=write_table(folder / "yelp.tsv", ["review", "stars"], yelp, delimiter="\t"),
        new=write_table(folder / "new.csv", ["id", "body"], new),
        folder=folder,
    )


@pytest.fixture(scope="module")
def trained(files) -> dict[str, SimpleNamespace]:
    """One model trained per backend on the same files (mtl train --epochs 2)."""
    runs = {}
    for backend in ("torch", "jax"):
        out = files.folder / f"model-{backend}"
        runs[backend] = mtl("--quiet", "train", *task_args(files), "--backend", backend, "--epochs", "2", "--out", out)
        runs[backend].folder = out
    return runs
