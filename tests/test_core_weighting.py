"""mtl_core.weighting: how per-task losses combine (sum, mean, fixed, uncertainty, dwa)."""

import numpy as np
import pytest

from mtl_core import WEIGHTINGS, TaskSpec, resolve_weighting
from mtl_core.weighting import Sum, dwa_coefficients

TASKS = (TaskSpec("movie", "binary", 1), TaskSpec("yelp", "multiclass", 3), TaskSpec("score", "regression", 1))
NAMES = ("movie", "yelp", "score")


@pytest.mark.parametrize("name", [w for w in WEIGHTINGS if w != "fixed"])
def test_named_weightings_resolve_to_all_ones_for_the_tasks(name):
    weighting = resolve_weighting(name, TASKS)
    assert weighting.name == name and weighting.task_names == NAMES
    np.testing.assert_array_equal(weighting.initial_task_weights(), np.ones(3))
    assert weighting.learnable == (name == "uncertainty")


def test_a_mapping_gives_fixed_weights_in_model_task_order():
    weighting = resolve_weighting({"score": 0.25, "movie": 2, "yelp": 0}, TASKS)
    assert weighting.name == "fixed" and weighting.fixed == (2.0, 0.0, 0.25)
    np.testing.assert_array_equal(weighting.initial_task_weights(), [2.0, 0.0, 0.25])


def test_a_weighting_is_hashable_and_passes_through_for_the_same_tasks():
    weighting = resolve_weighting({"movie": 1, "yelp": 2, "score": 3}, TASKS)
    assert resolve_weighting(weighting, TASKS) is weighting
    assert hash(weighting) == hash(resolve_weighting({"movie": 1, "yelp": 2, "score": 3}, TASKS))


def test_effective_weights_per_kind():
    weights = np.array([2.0, 1.0, 0.5])
    np.testing.assert_array_equal(resolve_weighting("sum", TASKS).effective(weights), weights)
    np.testing.assert_array_equal(resolve_weighting("mean", TASKS).effective(weights), weights / 3)
    log_var = np.array([0.0, np.log(2.0), -1.0])
    np.testing.assert_allclose(resolve_weighting("uncertainty", TASKS).effective(weights, log_var), [1.0, 0.5, np.e], rtol=1e-15)


def test_dwa_gives_ones_for_the_first_two_epochs():
    np.testing.assert_array_equal(dwa_coefficients([], NAMES, 2.0), np.ones(3))
    np.testing.assert_array_equal(dwa_coefficients([{"movie": 1, "yelp": 2, "score": 3}], NAMES, 2.0), np.ones(3))


def test_dwa_is_t_times_softmax_of_loss_ratios_over_temperature():
    losses = [{"movie": 1.0, "yelp": 2.0, "score": 4.0}, {"movie": 0.5, "yelp": 2.0, "score": 6.0}]
    ratios = np.array([0.5, 1.0, 1.5])
    expected = 3 * np.exp(ratios / 2.0) / np.exp(ratios / 2.0).sum()
    coefficients = dwa_coefficients(losses, NAMES, temperature=2.0)
    np.testing.assert_allclose(coefficients, expected, rtol=1e-14)
    assert coefficients.sum() == pytest.approx(3.0, rel=1e-14)
    assert coefficients[0] < coefficients[1] < coefficients[2]  # the slowest-learning task weighs most


def test_dwa_uses_only_the_last_two_epochs_and_equal_ratios_give_ones():
    losses = [{"movie": 9.0, "yelp": 0.1, "score": 3.0}, {"movie": 1.0, "yelp": 2.0, "score": 4.0}, {"movie": 2.0, "yelp": 4.0, "score": 8.0}]
    np.testing.assert_allclose(dwa_coefficients(losses, NAMES, 2.0), np.ones(3), rtol=1e-15)


def test_dwa_temperature_flattens_the_weights():
    losses = [{"movie": 1.0, "yelp": 1.0, "score": 1.0}, {"movie": 0.1, "yelp": 1.0, "score": 3.0}]
    sharp, flat = dwa_coefficients(losses, NAMES, 0.5), dwa_coefficients(losses, NAMES, 50.0)
    assert np.ptp(flat) < np.ptp(sharp)
    np.testing.assert_allclose(flat, np.ones(3), atol=0.05)


@pytest.mark.parametrize(
    "weighting, kwargs, pattern",
    [
        ("softmax", {}, r"weighting must be one of .* got 'softmax'"),
        (3, {}, r"got 3"),
        ("fixed", {}, r"fixed weighting needs its weights"),
        ({"movie": 1.0, "yelp": 1.0}, {}, r"unknown \[\], missing \['score'\]"),
        ({"movie": 1.0, "yelp": 1.0, "score": 1.0, "imdb": 1.0}, {}, r"unknown \['imdb'\], missing \[\]"),
        ({"movie": -1.0, "yelp": 1.0, "score": 1.0}, {}, r"loss weight of task 'movie' must be a finite number >= 0, got -1\.0"),
        ({"movie": 1.0, "yelp": float("nan"), "score": 1.0}, {}, r"task 'yelp' .* got nan"),
        ({"movie": 1.0, "yelp": "2", "score": 1.0}, {}, r"task 'yelp' .* got '2'"),
        ({"movie": True, "yelp": 1.0, "score": 1.0}, {}, r"task 'movie' .* got True"),
        ("dwa", {"temperature": 0.0}, r"dwa temperature must be a number > 0, got 0\.0"),
        (Sum(task_names=("movie", "yelp")), {}, r"built for tasks \('movie', 'yelp'\)"),
    ],
)
def test_bad_weightings_are_rejected_naming_the_bad_value(weighting, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        resolve_weighting(weighting, TASKS, **kwargs)
