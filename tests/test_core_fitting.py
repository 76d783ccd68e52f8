"""mtl_core.fitting: the epoch loop both backends share, driven here by a scripted numpy trainer."""

import math

import numpy as np
import pytest

from mtl_core import TaskSpec, TrainConfig, check_architecture, epoch_schedule, resolve_weighting
from mtl_core.data import TaskData
from mtl_core.fitting import RunResult, check_task_data, fit_loop, new_history
from mtl_core.weighting import dwa_coefficients

TASKS = (TaskSpec("r1", "regression", 1), TaskSpec("r2", "regression", 1))
ARCH = check_architecture(TASKS, (4,), "tanh", input_dim=6)
SIZES = {"r1": 12, "r2": 20}
BATCH = 5
SEQUENTIAL_STEPS = 3 + 4  # ceil(12 / 5) + ceil(20 / 5)


def make_data(sizes=SIZES, input_dim=6, seed=0):
    rng = np.random.default_rng(seed)
    return {
        spec.name: TaskData(rng.random((sizes[spec.name], input_dim)), np.arange(1.0, sizes[spec.name] + 1), spec)
        for spec in TASKS
        if spec.name in sizes
    }


class ScriptedTrainer:
    """A Trainer without a framework: a batch's loss is decay[task] ** epoch * mean(y of the batch)."""

    def __init__(self, steps_per_epoch=1, decay=None):
        self.steps_per_epoch, self.decay = steps_per_epoch, decay or {}
        self.calls = []  # (steps, task_weights (K, T), record_norms (K,)) of every train_run
        self.step_count = 0

    def train_run(self, steps, plan):
        self.calls.append((steps, np.array(plan.task_weights), np.array(plan.record_norms)))
        epochs = (self.step_count + np.arange(len(steps))) // self.steps_per_epoch
        self.step_count += len(steps)
        losses = {
            name: np.array([self.decay.get(name, 1.0) ** e * step[name][1].mean(dtype=np.float64) for e, step in zip(epochs, steps)])
            for name in steps[0]
        }
        layers = len(ARCH.hidden_dims) + len(steps[0])
        norms = np.tile(np.arange(1.0, layers + 1), (len(steps), 1))  # trunk 1, then heads 2, 3, ...
        return RunResult(losses=losses, total=sum(losses.values()), grad_norms=norms)

    def predict_logits(self, task_index, X):
        return np.zeros((X.shape[0], TASKS[task_index].num_outputs))

    def weighting_state(self):
        return {}


LOOP_ARGUMENTS = ("eval_data", "run_length", "previous_losses")  # fit_loop's own; the rest is TrainConfig's


def run(trainer=None, *, data=None, weighting="sum", epochs=2, curriculum="sequential", **kwargs):
    trainer = trainer or ScriptedTrainer(SEQUENTIAL_STEPS)
    loop = {name: kwargs.pop(name) for name in LOOP_ARGUMENTS if name in kwargs}
    settings = dict(weighting=resolve_weighting(weighting, TASKS), epochs=epochs, batch_size=BATCH, seed=0, curriculum=curriculum)
    config = TrainConfig(**{**settings, **kwargs})
    history = fit_loop(trainer, arch=ARCH, config=config, data=make_data() if data is None else data, **loop)
    return trainer, history


def all_steps(trainer):
    return [step for steps, _, _ in trainer.calls for step in steps]


def test_history_has_the_documented_keys_and_one_entry_per_epoch():
    _, history = run(epochs=3, eval_data=make_data())
    assert set(history) == {"epoch", "steps", "loss", "total_loss", "grad_norm", "loss_weights", "f1"}
    assert history["epoch"] == [1, 2, 3] and history["steps"] == [SEQUENTIAL_STEPS] * 3
    assert set(history["grad_norm"]) == {"trunk.0", "heads.r1", "heads.r2"}
    for key in ("loss", "loss_weights", "f1"):
        assert set(history[key]) == {"r1", "r2"}
    lists = [history["total_loss"]] + [v for key in ("loss", "grad_norm", "loss_weights", "f1") for v in history[key].values()]
    assert all(len(values) == 3 and all(isinstance(v, float) for v in values) for values in lists)


def test_history_has_no_f1_without_eval_data_and_empty_lists_for_zero_epochs():
    _, history = run(epochs=0)
    assert "f1" not in history
    assert history == new_history(ARCH, with_eval=False)
    assert history["epoch"] == [] and history["loss"] == {"r1": [], "r2": []}


def test_fit_loop_trains_on_the_curriculums_batches_in_order():
    data = make_data()
    trainer, _ = run(curriculum="max_size_cycle", epochs=2, data=data)
    expected = epoch_schedule("max_size_cycle", SIZES, BATCH, 0, 0) + epoch_schedule("max_size_cycle", SIZES, BATCH, 0, 1)
    steps = all_steps(trainer)
    assert len(steps) == len(expected)
    for step, rows in zip(steps, expected):
        assert list(step) == list(rows)
        for name, (X, y) in step.items():
            np.testing.assert_array_equal(y, data[name].y[rows[name]])
            np.testing.assert_array_equal(X.toarray(), data[name].X[rows[name]].toarray())


def test_epoch_loss_is_the_row_weighted_mean_of_step_losses():
    # Sequential visits every row once; batches of 5, 5, 2 rows: only row weighting gives mean(y).
    _, history = run(epochs=1)
    assert history["loss"]["r1"][0] == pytest.approx(np.mean(np.arange(1.0, 13)), rel=1e-14)
    assert history["loss"]["r2"][0] == pytest.approx(np.mean(np.arange(1.0, 21)), rel=1e-14)


def test_total_loss_is_the_mean_over_steps_of_the_step_totals():
    trainer, history = run(epochs=1, curriculum="round_robin")
    totals = [sum(step[n][1].mean(dtype=np.float64) for n in step) for step in all_steps(trainer)]
    assert history["total_loss"][0] == pytest.approx(np.mean(totals), rel=1e-14)
    assert history["steps"] == [len(totals)] == [3]


def test_a_task_absent_from_the_data_gets_nan_loss_and_nan_metric():
    data = make_data({"r1": 12})
    trainer, history = run(ScriptedTrainer(3), data=data, epochs=1, eval_data=data)
    assert all(set(step) == {"r1"} for step in all_steps(trainer))
    assert math.isnan(history["loss"]["r2"][0]) and math.isnan(history["f1"]["r2"][0])
    assert history["grad_norm"]["heads.r2"] == [0.0]  # no gradient reached the absent head


def test_eval_metric_is_the_tasks_metric_of_the_trainers_logits():
    _, history = run(epochs=1, eval_data=make_data())
    # zero logits for regression labels 1..n: MSE = mean(y ** 2)
    assert history["f1"]["r1"] == [pytest.approx(np.mean(np.arange(1.0, 13) ** 2))]


@pytest.mark.parametrize("every", [1, 3, 100])
def test_gradient_norms_are_recorded_every_grad_norm_every_steps(every):
    trainer, history = run(epochs=1, grad_norm_every=every, curriculum="round_robin")
    record = np.concatenate([r for _, _, r in trainer.calls])
    np.testing.assert_array_equal(record, np.arange(len(record)) % every == 0)
    # round robin: every step has both heads, reported in model order after the trunk
    assert {k: v[0] for k, v in history["grad_norm"].items()} == {"trunk.0": 1.0, "heads.r1": 2.0, "heads.r2": 3.0}


def test_runs_hold_at_most_run_length_steps_of_the_same_tasks():
    trainer, _ = run(epochs=1, run_length=2)
    assert [len(steps) for steps, _, _ in trainer.calls] == [2, 1, 2, 2]
    assert all(len({tuple(step) for step in steps}) == 1 for steps, _, _ in trainer.calls)


def test_fixed_and_mean_weightings_reach_the_trainer_and_the_history():
    trainer, history = run(weighting={"r1": 2.0, "r2": 0.5}, epochs=1)
    assert all(np.all(weights == [2.0, 0.5]) for _, weights, _ in trainer.calls)
    assert history["loss_weights"] == {"r1": [2.0], "r2": [0.5]}
    _, history = run(weighting="mean", epochs=1)
    assert history["loss_weights"] == {"r1": [0.5], "r2": [0.5]}


def test_dwa_weights_follow_the_loss_ratios_of_the_two_previous_epochs():
    trainer = ScriptedTrainer(SEQUENTIAL_STEPS, decay={"r1": 0.5, "r2": 1.0})
    _, history = run(trainer, weighting="dwa", epochs=4)
    expected = dwa_coefficients([{"r1": 2.0, "r2": 1.0}, {"r1": 1.0, "r2": 1.0}], ["r1", "r2"], 2.0)
    assert expected[0] < 1.0 < expected[1]  # r1 learns faster, so r2 weighs more
    for epoch, weights in enumerate([np.ones(2), np.ones(2), expected, expected]):
        used = np.concatenate([w for _, w, _ in trainer.calls[epoch * SEQUENTIAL_STEPS : (epoch + 1) * SEQUENTIAL_STEPS]])
        np.testing.assert_allclose(used, np.tile(weights, (SEQUENTIAL_STEPS, 1)), rtol=1e-14)
        np.testing.assert_allclose([history["loss_weights"][n][epoch] for n in ("r1", "r2")], weights, rtol=1e-14)


def test_a_resumed_run_numbers_its_epochs_and_draws_the_batches_of_the_uninterrupted_run():
    whole, _ = run(curriculum="proportional", epochs=3)
    resumed, history = run(ScriptedTrainer(SEQUENTIAL_STEPS), curriculum="proportional", epochs=1, first_epoch=2)
    assert history["epoch"] == [3]
    tail = all_steps(whole)[-len(all_steps(resumed)) :]
    assert [list(s) for s in tail] == [list(s) for s in all_steps(resumed)]
    assert all(np.array_equal(a[n][1], b[n][1]) for a, b in zip(tail, all_steps(resumed)) for n in a)


def test_a_resumed_dwa_run_without_its_earlier_losses_is_refused():
    # Epoch 3 of a dwa run weighs tasks by the loss ratios of epochs 1 and 2: without them a resumed
    # run must refuse, not quietly fall back to all-ones weights.
    with pytest.raises(ValueError, match=r"dwa .* first_epoch=2 needs them: pass previous_losses"):
        run(ScriptedTrainer(SEQUENTIAL_STEPS), weighting="dwa", epochs=1, first_epoch=2)


def test_a_resumed_dwa_run_given_its_earlier_losses_uses_the_uninterrupted_weights():
    whole = ScriptedTrainer(SEQUENTIAL_STEPS, decay={"r1": 0.5, "r2": 1.0})
    _, whole_history = run(whole, weighting="dwa", epochs=3)
    first = ScriptedTrainer(SEQUENTIAL_STEPS, decay={"r1": 0.5, "r2": 1.0})
    _, first_history = run(first, weighting="dwa", epochs=2)
    resumed = ScriptedTrainer(SEQUENTIAL_STEPS, decay={"r1": 0.5, "r2": 1.0})
    resumed.step_count = 2 * SEQUENTIAL_STEPS  # its losses continue where the first two epochs stopped
    run(resumed, weighting="dwa", epochs=1, first_epoch=2, previous_losses=first_history["loss"])
    assert not np.allclose(whole.calls[2 * SEQUENTIAL_STEPS][1], 1.0)  # the weights really moved
    np.testing.assert_allclose(resumed.calls[0][1], whole.calls[2 * SEQUENTIAL_STEPS][1], rtol=1e-14)


def test_check_task_data_returns_the_data_in_model_task_order():
    data = make_data()
    checked = check_task_data({"r2": data["r2"], "r1": data["r1"]}, ARCH)
    assert list(checked) == ["r1", "r2"] and checked["r1"] is data["r1"]


@pytest.mark.parametrize(
    "data, error, pattern",
    [
        ([1, 2], TypeError, r"data must be a dict of task name -> TaskData, got list"),
        ({}, ValueError, r"at least one task, got an empty dict"),
        ({"r3": None}, ValueError, r"data names task 'r3', which the model lacks"),
        ({"r1": (np.ones((2, 6)), np.ones(2))}, TypeError, r"data\['r1'\] must be a TaskData, got tuple"),
        ({"r1": TaskData(np.ones((2, 6)), np.ones((2, 2)), TaskSpec("r1", "regression", 2))}, ValueError, r"data\['r1'\] was built for"),
        ({"r1": TaskData(np.ones((2, 7)), np.ones(2), TASKS[0])}, ValueError, r"data\['r1'\] has 7 features, the model expects input_dim=6"),
    ],
)
def test_check_task_data_rejects_data_unfit_for_the_model(data, error, pattern):
    with pytest.raises(error, match=pattern):
        check_task_data(data, ARCH)


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        (dict(epochs=-1), ValueError, r"epochs must be an int >= 0, got -1"),
        (dict(epochs=1.5), ValueError, r"epochs must be an int >= 0, got 1\.5"),
        (dict(seed=-2), ValueError, r"seed must be an int >= 0, got -2"),
        (dict(grad_norm_every=0), ValueError, r"grad_norm_every must be an int >= 1, got 0"),
        (dict(curriculum="zip"), ValueError, r"curriculum must be one of .* got 'zip'"),
        (dict(batch_size=0), ValueError, r"batch_size must be an int >= 1, got 0"),
        (dict(eval_data={"r9": None}), ValueError, r"eval_data names task 'r9'"),
        (dict(first_epoch=-1), ValueError, r"first_epoch must be an int >= 0, got -1"),
    ],
)
def test_fit_loop_rejects_bad_settings(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        run(ScriptedTrainer(), **{"epochs": 1, **kwargs})


def test_every_head_trained_in_an_epoch_gets_a_gradient_norm_even_when_sampling_is_sparse():
    # sequential: r1's 3 steps, then r2's 4; sampling every 100th step alone would miss r2's head
    trainer, history = run(curriculum="sequential", epochs=2, grad_norm_every=100)
    recorded = np.concatenate([record for _, _, record in trainer.calls]).astype(int).tolist()
    assert recorded == [1, 0, 0, 1, 0, 0, 0] * 2  # the first step of each task, each epoch
    assert history["grad_norm"] == {"trunk.0": [1.0, 1.0], "heads.r1": [2.0, 2.0], "heads.r2": [2.0, 2.0]}


def test_a_head_with_no_step_in_an_epoch_has_gradient_norm_zero():
    _, history = run(data=make_data({"r1": 12}), curriculum="sequential", epochs=1, grad_norm_every=1)
    assert history["grad_norm"]["heads.r2"] == [0.0] and history["grad_norm"]["heads.r1"] == [2.0]
