"""mtl_core.curricula: which rows of which tasks each step of an epoch trains on."""

import numpy as np
import pytest

from mtl_core import CURRICULA, Curriculum, epoch_schedule
from mtl_core.curricula import same_task_runs

SIZES = {"a": 10, "b": 25, "c": 17}  # 3, 7 and 5 batches of 4
BATCH = 4


def schedule(name, sizes=SIZES, batch_size=BATCH, seed=0, epoch=0, **kwargs):
    return epoch_schedule(Curriculum(name, **kwargs), sizes, batch_size, seed, epoch)


def rows_of(steps, name):
    """The task's row indices in the order the steps visit them."""
    return np.concatenate([step[name] for step in steps if name in step])


def assert_passes_are_permutations(rows, size):
    """Each consecutive block of ``size`` rows (one pass over the task) holds every row once."""
    for start in range(0, len(rows) - size + 1, size):
        np.testing.assert_array_equal(np.sort(rows[start : start + size]), np.arange(size))
    tail = rows[len(rows) - len(rows) % size :]
    assert len(np.unique(tail)) == len(tail)


@pytest.mark.parametrize("name", CURRICULA)
def test_steps_hold_int64_batches_of_at_most_batch_size_rows_in_range(name):
    for step in schedule(name):
        assert step
        for task, rows in step.items():
            assert rows.dtype == np.int64 and 1 <= len(rows) <= BATCH
            assert rows.min() >= 0 and rows.max() < SIZES[task]


@pytest.mark.parametrize("name", CURRICULA)
def test_the_same_seed_and_epoch_give_the_same_schedule(name):
    first, again = schedule(name, seed=3, epoch=2), schedule(name, seed=3, epoch=2)
    assert [list(s) for s in first] == [list(s) for s in again]
    assert all(np.array_equal(a[k], b[k]) for a, b in zip(first, again) for k in a)


@pytest.mark.parametrize("name", CURRICULA)
@pytest.mark.parametrize("other", [dict(seed=1, epoch=0), dict(seed=0, epoch=1)])
def test_another_seed_or_epoch_shuffles_differently(name, other):
    first, second = rows_of(schedule(name), "b"), rows_of(schedule(name, **other), "b")
    n = min(len(first), len(second))
    assert not np.array_equal(first[:n], second[:n])


def test_round_robin_stops_at_the_shortest_task():
    steps = schedule("round_robin")
    assert len(steps) == 3  # ceil(10 / 4): task a's batches, like zip
    assert all(set(step) == {"a", "b", "c"} for step in steps)
    np.testing.assert_array_equal(np.sort(rows_of(steps, "a")), np.arange(10))
    for name in ("b", "c"):  # the longer tasks: full batches, no row twice
        assert all(len(step[name]) == BATCH for step in steps)
        assert len(np.unique(rows_of(steps, name))) == 3 * BATCH


def test_max_size_cycle_runs_to_the_longest_task_and_drops_none_of_its_rows():
    steps = schedule("max_size_cycle")
    assert len(steps) == 7  # ceil(25 / 4)
    assert all(set(step) == {"a", "b", "c"} for step in steps)
    np.testing.assert_array_equal(np.sort(rows_of(steps, "b")), np.arange(25))
    for name in ("a", "c"):  # the shorter tasks cycle: every row once per pass, then again
        rows = rows_of(steps, name)
        assert len(rows) > SIZES[name]
        assert_passes_are_permutations(rows, SIZES[name])


def test_sequential_does_all_of_task_0_then_all_of_task_1():
    steps = schedule("sequential")
    order = [next(iter(step)) for step in steps]
    assert all(len(step) == 1 for step in steps)
    assert order == ["a"] * 3 + ["b"] * 7 + ["c"] * 5
    for name, size in SIZES.items():
        np.testing.assert_array_equal(np.sort(rows_of(steps, name)), np.arange(size))


def test_proportional_trains_one_task_per_step_for_as_many_steps_as_all_batches():
    steps = schedule("proportional")
    assert len(steps) == 3 + 7 + 5
    assert all(len(step) == 1 for step in steps)
    for name, size in SIZES.items():
        assert_passes_are_permutations(rows_of(steps, name), size)


@pytest.mark.parametrize(
    "temperature, share_of_small",
    [(1.0, 100 / 400), (0.5, 100**2 / (100**2 + 300**2)), (1e9, 0.5)],
)
def test_proportional_picks_tasks_by_size_to_the_power_one_over_temperature(temperature, share_of_small):
    steps = schedule("proportional", sizes={"small": 100, "big": 300}, batch_size=1, temperature=temperature)
    share = np.mean(["small" in step for step in steps])
    sigma = np.sqrt(share_of_small * (1 - share_of_small) / len(steps))
    assert abs(share - share_of_small) < 4 * sigma


def test_a_task_is_absent_from_the_steps_of_other_tasks_in_one_task_curricula():
    for name in ("sequential", "proportional"):
        steps = schedule(name)
        assert any("a" not in step for step in steps)
        assert all(set(step) < set(SIZES) for step in steps)


def test_a_batch_size_larger_than_every_task_gives_whole_tasks():
    steps = schedule("round_robin", batch_size=1000)
    assert len(steps) == 1
    assert all(np.array_equal(np.sort(steps[0][n]), np.arange(s)) for n, s in SIZES.items())


def test_a_curriculum_accepts_its_name_as_a_string():
    a, b = epoch_schedule("sequential", SIZES, BATCH, 0, 0), schedule("sequential")
    assert all(np.array_equal(x[k], y[k]) for x, y in zip(a, b) for k in x)


def test_same_task_runs_split_where_the_tasks_change_or_the_run_is_full():
    steps = [{"a": 1}, {"a": 2}, {"a": 3}, {"b": 4}, {"a": 5, "b": 6}, {"a": 7, "b": 8}]
    runs = list(same_task_runs(steps, max_len=2))
    assert runs == [[{"a": 1}, {"a": 2}], [{"a": 3}], [{"b": 4}], [{"a": 5, "b": 6}, {"a": 7, "b": 8}]]
    assert list(same_task_runs([], max_len=3)) == []


@pytest.mark.parametrize(
    "make, error, pattern",
    [
        (lambda: Curriculum("zip"), ValueError, r"curriculum must be one of .* got 'zip'"),
        (lambda: Curriculum("proportional", temperature=0), ValueError, r"temperature must be a number > 0, got 0"),
        (lambda: Curriculum("proportional", temperature="hot"), ValueError, r"got 'hot'"),
        (lambda: epoch_schedule("zip", SIZES, 4, 0, 0), ValueError, r"got 'zip'"),
        (lambda: epoch_schedule(3, SIZES, 4, 0, 0), TypeError, r"name in .* or a Curriculum, got 3"),
        (lambda: epoch_schedule("round_robin", SIZES, 0, 0, 0), ValueError, r"batch_size must be an int >= 1, got 0"),
        (lambda: epoch_schedule("round_robin", SIZES, 2.5, 0, 0), ValueError, r"got 2\.5"),
        (lambda: epoch_schedule("round_robin", {}, 4, 0, 0), ValueError, r"at least one task"),
        (lambda: epoch_schedule("round_robin", {"a": 3, "b": 0}, 4, 0, 0), ValueError, r"task 'b' is empty"),
    ],
)
def test_bad_curricula_and_schedules_are_rejected(make, error, pattern):
    with pytest.raises(error, match=pattern):
        make()
