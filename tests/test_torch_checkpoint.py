"""torch_ref.save_checkpoint / load_checkpoint: the model and Adam's state in one file."""

import numpy as np
import pytest
import torch

import torch_ref


def new_model(helpers, seed=0):
    torch.manual_seed(seed)
    return torch_ref.MultiTaskNetwork(helpers.input_dim, helpers.tasks, helpers.hidden, "tanh")


def trained(helpers, weighting="sum", steps=3):
    """A model, its fused Adam and step after a few steps (the yelp head trained once less)."""
    model = new_model(helpers)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, fused=True)
    step = torch_ref.make_train_step(model, optimizer, weighting)
    for seed in range(steps):
        step(helpers.batches(seed=seed))
    step(helpers.batches(seed=steps, names=["movie"]))
    return model, optimizer, step


def params_equal(a, b):
    a, b = torch_ref.export_params(a), torch_ref.export_params(b)
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_a_model_without_optimizer_round_trips_bit_exactly(helpers, tmp_path):
    model = new_model(helpers)
    words = tuple(f"word{i}" for i in range(helpers.input_dim))  # one per input column
    torch_ref.save_checkpoint(tmp_path / "m.safetensors", model, vocabulary=list(words), label_names={"yelp": ["x", "y", "z"]})
    loaded, optimizer, extras = torch_ref.load_checkpoint(tmp_path / "m.safetensors", with_extras=True)
    assert optimizer is None and loaded.arch == model.arch
    assert params_equal(loaded, model)
    assert extras.vocabulary == words and extras.label_names == {"yelp": ("x", "y", "z")}


def test_a_float64_model_comes_back_as_float64(helpers, tmp_path):
    model = new_model(helpers).double()
    torch_ref.save_checkpoint(tmp_path / "m.safetensors", model)
    loaded, _ = torch_ref.load_checkpoint(tmp_path / "m.safetensors")
    assert loaded.trunk[0].weight.dtype == torch.float64 and params_equal(loaded, model)


def test_adam_state_round_trips_and_training_continues_identically(helpers, tmp_path):
    model, optimizer, step = trained(helpers)
    torch_ref.save_checkpoint(tmp_path / "m.safetensors", model, optimizer)
    loaded, restored = torch_ref.load_checkpoint(tmp_path / "m.safetensors")
    for original, copy in zip(model.parameters(), loaded.parameters()):
        state, restored_state = optimizer.state[original], restored.state[copy]
        assert int(state["step"]) == int(restored_state["step"])
        assert torch.equal(state["exp_avg"], restored_state["exp_avg"]) and torch.equal(state["exp_avg_sq"], restored_state["exp_avg_sq"])
    assert restored.param_groups[0]["lr"] == 1e-2
    batches = helpers.batches(seed=20)
    step(batches)
    torch_ref.make_train_step(loaded, restored)(batches)
    assert params_equal(loaded, model)


def test_uncertainty_log_variances_round_trip_in_their_named_group(helpers, tmp_path):
    model, optimizer, step = trained(helpers, "uncertainty")
    torch_ref.save_checkpoint(tmp_path / "m.safetensors", model, optimizer)
    loaded, restored, extras = torch_ref.load_checkpoint(tmp_path / "m.safetensors", with_extras=True)
    assert extras.weighting.name == "uncertainty"
    (group,) = [g for g in restored.param_groups if g.get("name") == "weighting.log_var"]
    assert torch.equal(group["params"][0].detach(), step.log_variances.detach())
    assert torch_ref.make_train_step(loaded, restored, "uncertainty").log_variances is group["params"][0]


@pytest.mark.parametrize(
    "make_optimizer, kwargs, error, pattern",
    [
        (lambda p: torch.optim.SGD(p, lr=0.1), {}, TypeError, r"checkpoints hold Adam's state; got a SGD"),
        (lambda p: torch.optim.Adam(p, lr=0.1, weight_decay=0.1), {}, ValueError, r"plain Adam \(no weight_decay"),
        (lambda p: None, {"weighting": "uncertainty"}, ValueError, r"no 'weighting\.log_var' group to save"),
        (lambda p: None, {"weighting": "softmax"}, ValueError, r"got 'softmax'"),
    ],
)
def test_save_rejects_what_a_checkpoint_cannot_hold(helpers, tmp_path, make_optimizer, kwargs, error, pattern):
    model = new_model(helpers)
    with pytest.raises(error, match=pattern):
        torch_ref.save_checkpoint(tmp_path / "m.safetensors", model, make_optimizer(model.parameters()), **kwargs)
    assert list(tmp_path.iterdir()) == []


def test_save_rejects_the_optimizer_of_another_model(helpers, tmp_path):
    model = new_model(helpers)
    copy = new_model(helpers)  # the same weights, other parameters: its Adam state would be saved as zeros
    with pytest.raises(ValueError, match=r"the optimizer holds none of the model's parameters"):
        torch_ref.save_checkpoint(tmp_path / "m.safetensors", copy, torch_ref.adam(model))
    assert list(tmp_path.iterdir()) == []


def test_save_rejects_a_model_of_another_class(tmp_path):
    with pytest.raises(TypeError, match=r"torch_ref\.MultiTaskNetwork, got Linear"):
        torch_ref.save_checkpoint(tmp_path / "m.safetensors", torch.nn.Linear(2, 2))


def test_load_rejects_a_file_that_is_not_a_checkpoint(tmp_path):
    (tmp_path / "m.safetensors").write_bytes(b"garbage")
    with pytest.raises(ValueError, match=r"m\.safetensors: not a readable safetensors checkpoint"):
        torch_ref.load_checkpoint(tmp_path / "m.safetensors")
