"""mtl_core.batches: the batch checks both steps share (the steps' own tests feed them bad input too)."""

import numpy as np
import pytest

from mtl_core import TaskSpec
from mtl_core.batches import check_batches

TASKS = (TaskSpec("movie", "binary", 1), TaskSpec("yelp", "multiclass", 3))


def dense(x):
    return np.asarray(x), len(x)


def test_batches_come_back_in_model_order_with_canonical_labels_and_masks():
    batches = {"yelp": (np.ones((2, 4)), [2, 0], [1, 0]), "movie": (np.zeros((3, 4)), [1, 0, 1])}
    checked = check_batches(batches, TASKS, dense)
    assert [b.spec.name for b in checked] == ["movie", "yelp"] and [b.index for b in checked] == [0, 1]
    assert checked[0].y.dtype == np.float32 and checked[0].y.shape == (3, 1) and checked[0].mask is None
    assert checked[1].y.dtype == np.int32 and checked[1].mask.dtype == np.float32
    np.testing.assert_array_equal(checked[1].mask, [1.0, 0.0])


def test_the_backends_converters_read_inputs_labels_and_masks():
    seen = []

    def as_input(x):
        seen.append(("x", x))
        return "converted", 2

    def to_numpy(value):
        seen.append(("numpy", value))
        return np.asarray(value)

    checked = check_batches({"movie": ("raw", [1, 0], [0, 1])}, TASKS, as_input, to_numpy)
    assert checked[0].x == "converted" and seen == [("x", "raw"), ("numpy", [1, 0]), ("numpy", [0, 1])]


@pytest.mark.parametrize(
    "batches, pattern",
    [
        ({"movie": (np.ones((2, 4)), [1, 0]), "imdb": (np.ones((2, 4)), [1, 0])}, r"\['imdb'\] that the model lacks"),
        ({"movie": (np.ones((2, 4)), [1, 0, 1])}, r"task 'movie' has 2 rows of x but 3 labels"),
        ({"movie": (np.ones((2, 4)), [1, 0], [0, 0])}, r"row mask of task 'movie' must be 0/1 of shape \(2,\) with a 1"),
        ({"movie": [np.ones((2, 4))]}, r"must be \(x, y\) or \(x, y, row_mask\), got list"),
        ([], r"non-empty dict"),
    ],
)
def test_bad_batches_are_refused_naming_the_task(batches, pattern):
    with pytest.raises(ValueError, match=pattern):
        check_batches(batches, TASKS, dense)
