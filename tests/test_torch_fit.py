"""torch_ref.fit: the shared epoch loop driving the PyTorch step."""

import math

import numpy as np
import pytest
import torch

import torch_ref
from mtl_core import TaskSpec
from mtl_core.data import TaskData

def new_model(helpers, seed=0):
    torch.manual_seed(seed)
    return torch_ref.MultiTaskNetwork(helpers.input_dim, helpers.tasks, helpers.hidden, "sigmoid")


def fit(helpers, reviews, **kwargs):
    arguments = {"epochs": 2, "batch_size": 16, "lr": 1e-2, "seed": 0, **kwargs}
    return torch_ref.fit(new_model(helpers), reviews[0], **arguments)


def params_equal(a, b):
    a, b = torch_ref.export_params(a), torch_ref.export_params(b)
    return all(np.array_equal(a[k], b[k]) for k in a)


def test_fit_returns_the_trained_model_itself_and_a_per_epoch_history(helpers, reviews):
    model = new_model(helpers)
    before = torch_ref.export_params(model)
    returned, history = torch_ref.fit(model, reviews[0], epochs=3, batch_size=16, eval_data=reviews[1])
    assert returned is model
    assert not np.array_equal(before["trunk.0.kernel"], torch_ref.export_params(model)["trunk.0.kernel"])
    helpers.check_history(history, steps=[3, 3, 3], with_eval=True)  # ceil(48 / 16): round robin stops at yelp
    assert all(g > 0 for values in history["grad_norm"].values() for g in values)


def test_fit_without_eval_data_has_no_f1(helpers, reviews):
    _, history = fit(helpers, reviews, epochs=1)
    helpers.check_history(history, steps=[3], with_eval=False)


def test_fit_is_deterministic_for_the_same_seed_and_initial_weights(helpers, reviews):
    (first, history), (again, history_again) = fit(helpers, reviews), fit(helpers, reviews)
    assert params_equal(first, again) and history == history_again
    other, _ = fit(helpers, reviews, seed=1)
    assert not params_equal(first, other)


def test_fit_lowers_the_training_loss(helpers, reviews):
    _, history = fit(helpers, reviews, epochs=6)
    assert history["total_loss"][-1] < history["total_loss"][0]


def test_sequential_fit_counts_every_batch_of_every_task(helpers, reviews):
    _, history = fit(helpers, reviews, epochs=1, curriculum="sequential")
    assert history["steps"] == [5 + 3]  # ceil(80 / 16) + ceil(48 / 16)


def test_fit_trains_only_the_tasks_in_the_data(helpers, reviews):
    model = new_model(helpers)
    yelp_head = torch_ref.export_params(model)["heads.yelp.kernel"]
    _, history = torch_ref.fit(model, {"movie": reviews[0]["movie"]}, epochs=1, batch_size=16)
    np.testing.assert_array_equal(torch_ref.export_params(model)["heads.yelp.kernel"], yelp_head)
    assert math.isnan(history["loss"]["yelp"][0]) and history["grad_norm"]["heads.yelp"] == [0.0]


def test_fit_uses_and_fills_a_given_optimizer(helpers, reviews):
    model = new_model(helpers)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    before = torch_ref.export_params(model)
    torch_ref.fit(model, reviews[0], epochs=1, optimizer=optimizer)
    after = torch_ref.export_params(model)
    assert all(np.array_equal(before[k], after[k]) for k in before)  # lr 0: the given optimizer did the steps


def test_uncertainty_fit_learns_log_variances_reported_as_loss_weights(helpers, reviews):
    model = new_model(helpers)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    _, history = torch_ref.fit(model, reviews[0], epochs=2, optimizer=optimizer, weighting="uncertainty")
    (group,) = [g for g in optimizer.param_groups if g.get("name") == "weighting.log_var"]
    s = group["params"][0].detach().numpy()
    assert np.all(s != 0)
    np.testing.assert_allclose([history["loss_weights"][n][-1] for n in ("movie", "yelp")], np.exp(-s), rtol=1e-6)


def test_a_fit_resumed_with_its_optimizer_and_first_epoch_equals_the_uninterrupted_fit(helpers, reviews):
    whole, _ = fit(helpers, reviews, epochs=2)
    model = new_model(helpers)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2, fused=True)  # fit's default optimizer
    torch_ref.fit(model, reviews[0], epochs=1, batch_size=16, optimizer=optimizer)
    _, history = torch_ref.fit(model, reviews[0], epochs=1, batch_size=16, optimizer=optimizer, first_epoch=1)
    assert history["epoch"] == [2]
    assert params_equal(model, whole)


def test_fixed_weighting_is_reported_in_the_history(helpers, reviews):
    _, history = fit(helpers, reviews, epochs=1, weighting={"movie": 0.25, "yelp": 4.0})
    assert history["loss_weights"] == {"movie": [0.25], "yelp": [4.0]}


def test_fit_rejects_bad_settings(helpers, reviews, bad_fit_setting):
    kwargs, error, pattern = bad_fit_setting
    with pytest.raises(error, match=pattern):
        fit(helpers, reviews, **kwargs)


def test_fit_rejects_data_of_another_width_or_task(helpers, reviews):
    narrow = TaskData(np.ones((4, helpers.input_dim - 1)), np.array([0, 1, 0, 1]), helpers.tasks[0])
    with pytest.raises(ValueError, match=r"data\['movie'\] has 119 features, the model expects input_dim=120"):
        torch_ref.fit(new_model(helpers), {"movie": narrow}, epochs=1)
    other = TaskData(np.ones((4, helpers.input_dim)), np.array([0, 1, 0, 1]), TaskSpec("imdb", "binary", 1))
    with pytest.raises(ValueError, match=r"data names task 'imdb', which the model lacks"):
        torch_ref.fit(new_model(helpers), {"imdb": other}, epochs=1)


def test_fit_rejects_a_model_of_another_class(reviews):
    with pytest.raises(TypeError, match=r"torch_ref\.MultiTaskNetwork, got Linear"):
        torch_ref.fit(torch.nn.Linear(2, 2), reviews[0])


def test_a_train_config_and_the_same_keywords_give_the_same_fit(helpers, reviews):
    from mtl_core import TrainConfig

    by_keywords, history = fit(helpers, reviews)
    by_config, config_history = torch_ref.fit(new_model(helpers), reviews[0], TrainConfig(epochs=2, batch_size=16, lr=1e-2, seed=0))
    assert params_equal(by_keywords, by_config) and history == config_history
    with pytest.raises(TypeError, match=r"unknown training option\(s\) \['epoch'\]"):
        torch_ref.fit(new_model(helpers), reviews[0], epoch=1)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_models_fit_on_sparse_rows_and_report_numpy_histories(helpers, reviews, dtype):
    # scipy holds no half floats: their first layer keeps embedding_bag's backward; numpy has no
    # bfloat16: the history gets float32 copies of the losses.
    model = new_model(helpers).to(dtype)
    before = model.trunk[0].weight.detach().clone()
    _, history = torch_ref.fit(model, reviews[0], epochs=1, batch_size=16, lr=1e-2, seed=0, eval_data=reviews[1])
    assert model.trunk[0].weight.dtype == dtype and not torch.equal(model.trunk[0].weight, before)
    assert all(math.isfinite(loss) for losses in history["loss"].values() for loss in losses)
    assert all(0.0 <= f1 <= 1.0 for scores in history["f1"].values() for f1 in scores)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="host syncs of a CUDA device: make gpu-check runs this on the GPU")
def test_the_fits_batches_reach_a_cuda_device_without_a_host_sync(helpers, reviews):
    # A blocking copy from pageable memory waits for all the GPU's queued work: once per batch array.
    from torch_ref.train import TorchTrainer

    model = new_model(helpers).cuda()
    trainer = TorchTrainer(torch_ref.make_train_step(model, torch_ref.adam(model)))
    batches = {name: (data.X[:16], data.y[:16]) for name, data in reviews[0].items()}
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        prepared = trainer._prepare(batches)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    host_model = new_model(helpers)
    on_host = TorchTrainer(torch_ref.make_train_step(host_model, torch_ref.adam(host_model)))._prepare(batches)
    for gpu, cpu in zip(prepared, on_host):
        assert gpu.x.indices.is_cuda and torch.equal(gpu.y.cpu(), cpu.y)
        for name in ("indices", "offsets", "values"):
            assert torch.equal(getattr(gpu.x, name).cpu(), getattr(cpu.x, name))
