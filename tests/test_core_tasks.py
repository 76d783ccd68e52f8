"""mtl_core.tasks and mtl_core.architecture: task specs, task ids, the network's checked shape."""

import numpy as np
import pytest

from mtl_core import ACTIVATIONS, KINDS, Architecture, TaskSpec, check_architecture, check_tasks, resolve_task_id

MOVIE = TaskSpec("movie", "binary", 1)
YELP = TaskSpec("yelp", "multiclass", 3)


def test_taskspec_is_frozen_hashable_and_equal_by_value():
    assert TaskSpec("movie", "binary", 1) == MOVIE
    assert hash(TaskSpec("movie", "binary", 1)) == hash(MOVIE)
    with pytest.raises(AttributeError):
        MOVIE.name = "other"


def test_taskspec_stores_num_outputs_as_a_python_int():
    spec = TaskSpec("r", "regression", np.int64(2))
    assert type(spec.num_outputs) is int and spec.num_outputs == 2


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_is_accepted(kind):
    outputs = {"binary": 1, "multiclass": 4, "multilabel": 3, "regression": 2}[kind]
    assert TaskSpec("t", kind, outputs).kind == kind


@pytest.mark.parametrize(
    "args, error, pattern",
    [
        (("movie", "ordinal", 1), ValueError, r"kind must be one of .* got 'ordinal'"),
        (("r", "regression", 0), ValueError, r"num_outputs must be >= 1, got 0"),
        (("r", "regression", -3), ValueError, r"num_outputs must be >= 1, got -3"),
        (("r", "regression", 2.0), TypeError, r"num_outputs must be an int, got 2\.0"),
        (("r", "regression", True), TypeError, r"num_outputs must be an int, got True"),
        (("", "binary", 1), ValueError, r"non-empty string, got ''"),
        (("  ", "binary", 1), ValueError, r"non-empty string, got '  '"),
        ((3, "binary", 1), ValueError, r"non-empty string, got 3"),
        (("movie", "binary", 2), ValueError, r"num_outputs=2 for task 'movie'"),
        (("yelp", "multiclass", 1), ValueError, r"num_outputs >= 2 classes, got 1 for task 'yelp'"),
    ],
)
def test_taskspec_rejects_bad_fields_naming_them(args, error, pattern):
    with pytest.raises(error, match=pattern):
        TaskSpec(*args)


def test_check_tasks_returns_a_tuple_in_the_given_order():
    assert check_tasks([YELP, MOVIE]) == (YELP, MOVIE)
    assert check_tasks(t for t in (MOVIE,)) == (MOVIE,)


@pytest.mark.parametrize(
    "tasks, error, pattern",
    [
        ((), ValueError, r"at least one TaskSpec"),
        ((MOVIE, YELP, TaskSpec("movie", "regression", 1)), ValueError, r"duplicates \['movie'\]"),
        (MOVIE, TypeError, r"sequence of TaskSpec"),
        ("movie", TypeError, r"sequence of TaskSpec, got 'movie'"),
        ((MOVIE, "yelp"), TypeError, r"every task must be a TaskSpec, got 'yelp'"),
        (None, TypeError, r"got None"),
    ],
)
def test_check_tasks_rejects_bad_task_lists(tasks, error, pattern):
    with pytest.raises(error, match=pattern):
        check_tasks(tasks)


@pytest.mark.parametrize("task_id, index", [(0, 0), (1, 1), ("movie", 0), ("yelp", 1), (np.int64(1), 1)])
def test_resolve_task_id_maps_names_and_indices_to_the_index(task_id, index):
    resolved = resolve_task_id((MOVIE, YELP), task_id)
    assert resolved == index and type(resolved) is int


def test_resolve_task_id_rejects_bad_ids(bad_task_id):
    task_id, error, pattern = bad_task_id
    with pytest.raises(error, match=pattern):
        resolve_task_id((MOVIE, YELP), task_id)


def test_resolve_task_id_rejects_an_array_naming_static_ids():
    with pytest.raises(TypeError, match=r"static, not an array"):
        resolve_task_id((MOVIE, YELP), np.array([1]))


def test_check_architecture_normalises_to_tuples():
    arch = check_architecture([MOVIE, YELP], [8, np.int64(4)], "relu", input_dim=10)
    assert arch == Architecture((MOVIE, YELP), (8, 4), "relu", 10)
    assert all(type(d) is int for d in arch.hidden_dims)


def test_architecture_layer_names_list_trunk_then_heads():
    arch = check_architecture((MOVIE, YELP), (8, 4), "tanh")
    assert arch.layer_names == ("trunk.0", "trunk.1", "heads.movie", "heads.yelp")


def test_with_input_dim_returns_a_checked_copy():
    arch = check_architecture((MOVIE,), (8,), "tanh")
    assert arch.input_dim is None
    assert arch.with_input_dim(7).input_dim == 7 and arch.input_dim is None
    with pytest.raises(ValueError, match=r"input_dim must be >= 1, got 0"):
        arch.with_input_dim(0)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_activation_is_accepted(activation):
    assert check_architecture((MOVIE,), (4,), activation).activation == activation


@pytest.mark.parametrize(
    "hidden_dims, activation, input_dim, error, pattern",
    [
        ((), "relu", None, ValueError, r"at least one trunk layer"),
        ((8, 0), "relu", None, ValueError, r"hidden_dims\[1\] must be >= 1, got 0"),
        ((8, 2.5), "relu", None, TypeError, r"hidden_dims\[1\] must be an int, got 2\.5"),
        (8, "relu", None, TypeError, r"hidden_dims must be a sequence of ints, got 8"),
        ("8", "relu", None, TypeError, r"got '8'"),
        ((8,), "softmax", None, ValueError, r"activation must be one of .* got 'softmax'"),
        ((8,), "relu", -5, ValueError, r"input_dim must be >= 1, got -5"),
        ((8,), "relu", 3.0, TypeError, r"input_dim must be an int, got 3\.0"),
    ],
)
def test_check_architecture_rejects_bad_hyper_parameters(hidden_dims, activation, input_dim, error, pattern):
    with pytest.raises(error, match=pattern):
        check_architecture((MOVIE,), hidden_dims, activation, input_dim)
