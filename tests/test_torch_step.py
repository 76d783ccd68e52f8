"""torch_ref.make_train_step: per-task losses, their weighted sum, one optimiser step."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import torch_ref
from torch_ref.step import LOG_VARIANCE_GROUP


def new_step(helpers, weighting="sum", lr=1e-2, seed=0):
    torch.manual_seed(seed)
    model = torch_ref.MultiTaskNetwork(helpers.input_dim, helpers.tasks, helpers.hidden, "sigmoid")
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    return model, optimizer, torch_ref.make_train_step(model, optimizer, weighting)


def hand_losses(model, batches):
    """Mean BCE-with-logits / cross-entropy of each task's batch under the current weights."""
    losses = {}
    with torch.no_grad():
        for name, (x, y, *mask) in batches.items():
            logits = model(x, name)
            if name == "yelp":
                per_row = F.cross_entropy(logits, torch.as_tensor(y, dtype=torch.int64), reduction="none")
            else:
                per_row = F.binary_cross_entropy_with_logits(logits, torch.as_tensor(y, dtype=torch.float32), reduction="none")[:, 0]
            weights = torch.as_tensor(mask[0], dtype=torch.float32) if mask else torch.ones(len(per_row))
            losses[name] = float((per_row * weights).sum() / weights.sum())
    return losses


def snapshot(model, optimizer, layer):
    """Copies of a layer's parameters and of their Adam state."""
    params = [p.detach().clone() for p in layer.parameters()]
    state = [{k: v.clone() for k, v in optimizer.state[p].items()} for p in layer.parameters()]
    return params, state


def same_snapshot(a, b):
    (params_a, state_a), (params_b, state_b) = a, b
    return all(torch.equal(p, q) for p, q in zip(params_a, params_b)) and all(
        s.keys() == t.keys() and all(torch.equal(s[k], t[k]) for k in s) for s, t in zip(state_a, state_b)
    )


@pytest.fixture(scope="module")
def shared_step(helpers):
    return new_step(helpers)[2]


def test_the_step_reports_each_tasks_loss_before_the_update_and_their_sum(helpers):
    model, _, step = new_step(helpers)
    batches = helpers.batches(seed=2)
    expected = hand_losses(model, batches)
    losses = step(batches)
    assert set(losses) == {"movie", "yelp", "total"} and all(isinstance(v, float) for v in losses.values())
    assert losses["movie"] == pytest.approx(expected["movie"], rel=1e-6)
    assert losses["yelp"] == pytest.approx(expected["yelp"], rel=1e-6)
    assert losses["total"] == pytest.approx(expected["movie"] + expected["yelp"], rel=1e-6)


def test_repeated_steps_on_one_batch_lower_its_loss(helpers):
    _, _, step = new_step(helpers)
    batches = helpers.batches(seed=3)
    totals = [step(batches)["total"] for _ in range(15)]
    assert totals[-1] < totals[0]


def test_a_step_on_task_a_alone_leaves_task_bs_head_and_adam_state_untouched(helpers):
    model, optimizer, step = new_step(helpers)
    step(helpers.batches(seed=4))  # both tasks: every parameter now has Adam state
    yelp_before, trunk_before = snapshot(model, optimizer, model.heads[1]), snapshot(model, optimizer, model.trunk[0])
    step(helpers.batches(seed=5, names=["movie"]))
    assert same_snapshot(yelp_before, snapshot(model, optimizer, model.heads[1]))
    assert not same_snapshot(trunk_before, snapshot(model, optimizer, model.trunk[0]))
    assert int(optimizer.state[model.heads[1].weight]["step"]) == 1
    assert int(optimizer.state[model.heads[0].weight]["step"]) == 2


def test_a_head_never_trained_gets_no_adam_state(helpers):
    model, optimizer, step = new_step(helpers)
    step(helpers.batches(seed=4, names=["yelp"]))
    assert optimizer.state[model.heads[0].weight] == {} and optimizer.state[model.heads[1].weight] != {}


@pytest.mark.parametrize(
    "weighting, task_weights, combine",
    [
        ({"movie": 2.0, "yelp": 0.5}, None, lambda a, b: 2.0 * a + 0.5 * b),
        ("mean", None, lambda a, b: (a + b) / 2),
        ("sum", [3.0, 0.25], lambda a, b: 3.0 * a + 0.25 * b),
        # a tensor that requires grad (numpy() refuses it, as it refuses a CUDA one)
        ("sum", torch.tensor([3.0, 0.25], requires_grad=True), lambda a, b: 3.0 * a + 0.25 * b),
        ("dwa", None, lambda a, b: a + b),
    ],
)
def test_the_total_combines_task_losses_by_the_weighting(helpers, weighting, task_weights, combine):
    _, _, step = new_step(helpers, weighting)
    losses = step(helpers.batches(seed=6), task_weights=task_weights)
    assert losses["total"] == pytest.approx(combine(losses["movie"], losses["yelp"]), rel=1e-6)


def test_mean_weighting_divides_by_the_tasks_present_in_the_step(helpers):
    _, _, step = new_step(helpers, "mean")
    losses = step(helpers.batches(seed=6, names=["yelp"]))
    assert losses["total"] == pytest.approx(losses["yelp"], rel=1e-6)


def test_a_row_mask_restricts_the_loss_to_the_marked_rows(helpers):
    model, _, step = new_step(helpers)
    x, y = helpers.batches(seed=7, names=["movie"])["movie"]
    mask = np.array([1, 0, 1, 1, 0, 0], np.float32)
    expected = hand_losses(model, {"movie": (x, y, mask)})["movie"]
    assert step({"movie": (x, y, mask)})["movie"] == pytest.approx(expected, rel=1e-6)
    assert expected != pytest.approx(hand_losses(model, {"movie": (x, y)})["movie"], rel=1e-3)


def test_torch_tensor_labels_are_accepted_like_numpy_ones(helpers):
    batches = helpers.batches(seed=8)
    as_tensors = {n: (torch.from_numpy(x), torch.from_numpy(y)) for n, (x, y) in batches.items()}
    assert new_step(helpers)[2](as_tensors) == new_step(helpers)[2](batches)


def test_uncertainty_adds_a_named_log_variance_group_once(helpers):
    model, optimizer, step = new_step(helpers, "uncertainty")
    names = [group.get("name") for group in optimizer.param_groups]
    assert names.count(LOG_VARIANCE_GROUP) == 1 and LOG_VARIANCE_GROUP == "weighting.log_var"
    (group,) = [g for g in optimizer.param_groups if g.get("name") == LOG_VARIANCE_GROUP]
    assert group["params"] == [step.log_variances] and torch.equal(step.log_variances, torch.zeros(2))
    again = torch_ref.make_train_step(model, optimizer, "uncertainty")
    assert again.log_variances is step.log_variances
    assert len(optimizer.param_groups) == len(names)


def test_uncertainty_total_is_sum_of_exp_minus_s_times_loss_plus_s(helpers):
    _, _, step = new_step(helpers, "uncertainty", lr=0.1)
    first = step(helpers.batches(seed=9))
    assert first["total"] == pytest.approx(first["movie"] + first["yelp"], rel=1e-6)  # s = 0
    s = step.log_variances.detach().clone().double().numpy()
    assert np.all(s != 0)
    losses = step(helpers.batches(seed=10))
    expected = sum(np.exp(-s[i]) * losses[n] + s[i] for i, n in enumerate(("movie", "yelp")))
    assert losses["total"] == pytest.approx(expected, rel=1e-5)


def test_the_step_rejects_bad_batches(shared_step, bad_batch):
    batches, error, pattern = bad_batch
    with pytest.raises(error, match=pattern):
        shared_step(batches)


def test_the_step_rejects_bad_row_masks(shared_step, helpers, bad_row_mask):
    mask, pattern = bad_row_mask
    x, y = helpers.batches(names=["movie"])["movie"]
    with pytest.raises(ValueError, match=pattern):
        shared_step({"movie": (x, y, mask)})


def test_the_step_rejects_bad_task_weights(shared_step, helpers, bad_task_weights):
    weights, error, pattern = bad_task_weights
    with pytest.raises(error, match=pattern):
        shared_step(helpers.batches(), task_weights=weights)


@pytest.mark.parametrize(
    "args, error, pattern",
    [
        (("model", None, "sum"), TypeError, r"model must be a torch_ref\.MultiTaskNetwork, got str"),
        ((None, "adam", "sum"), TypeError, r"optimizer must be a torch\.optim\.Optimizer, got str"),
        ((None, None, "softmax"), ValueError, r"weighting must be one of .* got 'softmax'"),
        ((None, None, {"movie": 1.0}), ValueError, r"missing \['yelp'\]"),
        # an optimizer of another model: the step would train nothing
        ((None, torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))]), "sum"), ValueError, r"holds none of the model's parameters"),
    ],
)
def test_make_train_step_rejects_bad_arguments(helpers, args, error, pattern):
    model, optimizer, _ = new_step(helpers)
    model_arg, optimizer_arg, weighting = args
    with pytest.raises(error, match=pattern):
        torch_ref.make_train_step(model_arg or model, optimizer_arg or optimizer, weighting)


def test_an_optimizer_of_part_of_the_model_trains_that_part_alone(helpers):
    # Freezing layers is the user's choice: only an optimizer holding none of the model is refused.
    model, _, _ = new_step(helpers)
    trunk = [p.detach().clone() for p in model.trunk.parameters()]
    heads = [p.detach().clone() for p in model.heads.parameters()]
    torch_ref.make_train_step(model, torch.optim.Adam(model.heads.parameters(), lr=1e-2))(helpers.batches(seed=2))
    assert all(torch.equal(a, b) for a, b in zip(trunk, model.trunk.parameters()))
    assert not any(torch.equal(a, b) for a, b in zip(heads, model.heads.parameters()))
