"""Steps with an aggregator (per-task gradients on the trunk) and the stateful or random weightings.

Each backend on its own, against definitions written out here; parity_tests compares the two.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import jax_impl
import torch_ref
from mtl_core import TrainConfig
from mtl_core.aggregation import MGDA, NashMTL, PCGrad, UPGrad, pcgrad_order
from mtl_core.weighting import FAMO, RLW, resolve_weighting

AGGREGATORS = ("pcgrad", "cagrad", "mgda", "mgda_ub", "imtlg", "nash_mtl", "upgrad")


def torch_step(helpers, aggregator, weighting="sum", lr=0.0, seed=0):
    """A torch step whose optimizer does not move the weights (lr 0), so .grad can be read after it."""
    torch.manual_seed(seed)
    model = torch_ref.MultiTaskNetwork(helpers.input_dim, helpers.tasks, helpers.hidden, "sigmoid")
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    return model, torch_ref.make_train_step(model, optimizer, weighting, aggregator=aggregator)


def trunk_gradient(model) -> torch.Tensor:
    return torch.cat([p.grad.reshape(-1) for p in model.trunk.parameters()])


def task_gradient(model, batches, name) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(trunk gradient flattened, head gradients) of one task's mean loss, by plain autograd."""
    index = [t.name for t in model.tasks].index(name)
    loss = _plain_loss(model, batches, name)
    trunk = list(model.trunk.parameters())
    head = list(model.heads[index].parameters())
    grads = torch.autograd.grad(loss, trunk + head)
    return torch.cat([g.reshape(-1) for g in grads[: len(trunk)]]), list(grads[len(trunk) :])


@pytest.mark.parametrize("aggregator", [PCGrad(seed=3), MGDA(), UPGrad(), NashMTL()])
def test_the_trunk_gets_the_aggregate_of_the_tasks_own_gradients_and_each_head_its_own(helpers, aggregator):
    model, step = torch_step(helpers, aggregator)
    batches = helpers.batches(seed=21)
    rows, heads = zip(*(task_gradient(model, batches, name) for name in ("movie", "yelp")))
    expected = torch_ref.aggregate(torch.stack(rows), aggregator, order=aggregator.order((0,), 2))
    step(batches)
    torch.testing.assert_close(trunk_gradient(model), expected, rtol=1e-5, atol=1e-7)
    for index, own in enumerate(heads):
        for parameter, grad in zip(model.heads[index].parameters(), own):
            torch.testing.assert_close(parameter.grad, grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("aggregator", ["pcgrad", "mgda", "mgda_ub", "imtlg", "nash_mtl", "upgrad"])
def test_with_one_task_present_an_aggregated_step_is_the_summed_step(helpers, aggregator):
    # One row: every method (CAGrad aside, which scales it by 1 + c) returns the task's own gradient.
    batches = helpers.batches(seed=22, names=["yelp"])
    summed, summed_step = torch_step(helpers, None)
    aggregated, aggregated_step = torch_step(helpers, aggregator)
    assert summed_step(batches)["yelp"] == aggregated_step(batches)["yelp"]
    for a, b in zip(summed.parameters(), aggregated.parameters()):
        if a.grad is not None or b.grad is not None:
            torch.testing.assert_close(b.grad, a.grad, rtol=1e-5, atol=1e-8)


def test_mgda_ub_weighs_each_task_by_the_inverse_of_its_representation_gradient(helpers):
    # The tasks' batches are disjoint rows of the trunk's output, so the Gramian of the gradients
    # with respect to it is diagonal and MGDA's min-norm weights are w_i ∝ 1 / ||dL_i/dz||^2.
    model, step = torch_step(helpers, "mgda_ub")
    batches = helpers.batches(seed=23)
    squares, rows = [], []
    for name in ("movie", "yelp"):
        x, y = batches[name]
        z = model.features(torch.as_tensor(x)).detach().requires_grad_(True)
        index = [t.name for t in model.tasks].index(name)
        loss = _loss_of(model.heads[index](z), y, name)
        squares.append(float(torch.autograd.grad(loss, z)[0].square().sum()))
        rows.append(task_gradient(model, batches, name)[0])
    weights = (1 / np.array(squares)) / (1 / np.array(squares)).sum()
    step(batches)
    torch.testing.assert_close(trunk_gradient(model), sum(float(w) * r for w, r in zip(weights, rows)), rtol=1e-4, atol=1e-7)


def test_a_solver_that_misses_its_tolerance_is_reported_and_warned(helpers, reviews):
    model = torch_ref.MultiTaskNetwork(helpers.input_dim, helpers.tasks, helpers.hidden, "sigmoid")
    with pytest.warns(RuntimeWarning, match=r"nash_mtl: the solver missed its tolerance .* in \d+ steps"):
        _, history = torch_ref.fit(model, reviews[0], TrainConfig(epochs=1, batch_size=16, aggregator=NashMTL(max_iter=1)))
    assert history["solver"]["unconverged_steps"][0] > 0 and history["solver"]["max_residual"][0] > 1e-4


def test_a_converged_fit_reports_its_solver_without_warning(helpers, reviews):
    model = torch_ref.MultiTaskNetwork(helpers.input_dim, helpers.tasks, helpers.hidden, "sigmoid")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, history = torch_ref.fit(model, reviews[0], epochs=1, batch_size=16, aggregator="nash_mtl")
    assert history["solver"] == {"max_residual": [pytest.approx(history["solver"]["max_residual"][0])], "unconverged_steps": [0]}
    assert history["solver"]["max_residual"][0] <= NashMTL().tol


def test_pcgrad_steps_draw_their_order_from_the_seed_and_the_step_count(helpers):
    model, step = torch_step(helpers, PCGrad(seed=5))
    batches = helpers.batches(seed=24)
    rows = torch.stack([task_gradient(model, batches, name)[0] for name in ("movie", "yelp")])
    step(batches)
    assert step.steps_done == 1
    expected = torch_ref.aggregate(rows, PCGrad(seed=5), order=pcgrad_order(5, (0,), 2))
    torch.testing.assert_close(trunk_gradient(model), expected, rtol=1e-5, atol=1e-7)


def test_famo_moves_its_logits_by_algorithm_1(helpers):
    torch.manual_seed(0)
    model = torch_ref.MultiTaskNetwork(helpers.input_dim, helpers.tasks, helpers.hidden, "sigmoid")
    step = torch_ref.make_train_step(model, torch.optim.Adam(model.parameters(), lr=0.05), FAMO(lr=0.5, decay=0.1))
    batches = helpers.batches(seed=25)
    before = step(batches)
    logits = step.weighting_state["logits"].clone().numpy()
    after = step(batches)  # its losses are those of the updated weights on the same batches
    delta = np.log([before["movie"] + 1e-8, before["yelp"] + 1e-8]) - np.log([after["movie"] + 1e-8, after["yelp"] + 1e-8])
    z = np.array([0.5, 0.5])  # softmax of the initial logits 0
    np.testing.assert_allclose(logits, -0.5 * (z * (delta - z @ delta) + 0.1 * 0.0), rtol=1e-4, atol=1e-8)
    assert logits[0] != 0.0
    (group,) = [g for g in step.optimizer.param_groups if g.get("name") == "weighting.state.logits"]
    assert group["params"][0] is step.weighting_state["logits"]  # a resumed fit's optimizer carries them


def test_famo_weighs_the_log_losses_by_softmax_over_their_inverse_sum():
    from mtl_core import TaskSpec
    from mtl_core.array_ops import NUMPY_OPS

    weighting = resolve_weighting("famo", (TaskSpec("a", "regression", 1), TaskSpec("b", "regression", 1)))
    losses, logits = np.array([0.5, 2.0]), np.array([0.3, -0.3])
    f = weighting.objectives(NUMPY_OPS, losses, [0, 1], np.ones(2), {"logits": logits}, None)
    z = np.exp(logits) / np.exp(logits).sum()
    c = np.sum(z / (losses + 1e-8))
    np.testing.assert_allclose(f, z / c * np.log(losses + 1e-8), rtol=1e-12)


def test_rlw_draws_softmax_weights_of_the_present_tasks_from_seed_and_key(helpers):
    weighting = resolve_weighting(RLW(seed=4), helpers.tasks)
    p = np.random.default_rng([4, 2, 7]).standard_normal(2)
    np.testing.assert_array_equal(weighting.step_task_weights(np.ones(2), (2, 7)), p)
    from mtl_core.array_ops import NUMPY_OPS

    f = weighting.objectives(NUMPY_OPS, np.array([1.0, 1.0]), [0, 1], p, {}, None)
    np.testing.assert_allclose(f, np.exp(p) / np.exp(p).sum(), rtol=1e-12)
    alone = weighting.objectives(NUMPY_OPS, np.array([3.0]), [1], p, {}, None)
    np.testing.assert_allclose(alone, [3.0], rtol=1e-12)  # one present task weighs 1


# -- jax --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def module(helpers):
    return jax_impl.MultiTaskNetwork(helpers.tasks, helpers.hidden, "sigmoid")


def fresh(helpers, module, seed=0):
    return jax_impl.init_params(module, jax.random.key(seed), helpers.input_dim)


def test_jax_pcgrad_needs_a_key_in_the_params_call_and_counts_steps_in_the_state(helpers, module):
    step = jax_impl.make_train_step(module, optax.sgd(0.1), aggregator=PCGrad())
    params = fresh(helpers, module)
    with pytest.raises(ValueError, match=r"pass key=\(step number,\), or use step\.apply"):
        step(params, step.init(params), helpers.batches())
    state = step.init_state(fresh(helpers, module))
    state, metrics = step.apply(state, helpers.batches(seed=26))
    assert int(state.step) == 1 and float(metrics.residual) == 0.0
    params = fresh(helpers, module)
    _, _, report = step(params, step.init(params), helpers.batches(seed=26), key=(0,))
    assert set(report) == {"movie", "yelp", "total", "solver_residual"}


def test_jax_aggregated_step_compiles_once_and_matches_its_unjitted_self(helpers, module):
    from jax_impl.step import jitted_train_step

    step = jax_impl.make_train_step(module, optax.adam(1e-2), aggregator="upgrad")
    batches = step.prepare(helpers.batches(seed=27))
    eager_state, eager = jax_impl.train_step(step.spec, step.init_state(fresh(helpers, module)), batches, step.plan(batches))
    state, metrics = step.apply(step.init_state(fresh(helpers, module)), helpers.batches(seed=27))
    for a, b in zip(jax.tree_util.tree_leaves(eager_state.params), jax.tree_util.tree_leaves(state.params)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    compiled = jitted_train_step._cache_size()
    step.apply(state, helpers.batches(seed=28))
    assert jitted_train_step._cache_size() == compiled


def test_jax_famo_refuses_the_params_call_and_keeps_its_logits_in_the_state(helpers, module):
    step = jax_impl.make_train_step(module, optax.adam(0.05), weighting="famo")
    params = fresh(helpers, module)
    with pytest.raises(ValueError, match=r"famo weighting keeps state from step to step: use state = step\.init_state"):
        step(params, step.init(params), helpers.batches())
    state = step.init_state(fresh(helpers, module))
    np.testing.assert_array_equal(state.weighting["logits"], np.zeros(2, np.float32))
    state, _ = step.apply(state, helpers.batches(seed=29))
    assert not np.allclose(np.asarray(state.weighting["logits"]), 0.0)
    np.testing.assert_allclose(float(jnp.sum(state.weighting["logits"])), 0.0, atol=1e-7)  # decay 0.01 * 0 + zero-sum step


def test_the_summed_step_is_adam_on_the_gradient_of_the_summed_loss_in_both_backends(helpers, module):
    # aggregator=None is the step the library had before aggregators: autograd of sum_i L_i, then Adam.
    batches = helpers.batches(seed=30)
    torch.manual_seed(0)
    model = torch_ref.MultiTaskNetwork(helpers.input_dim, helpers.tasks, helpers.hidden, "sigmoid")
    reference = torch_ref.MultiTaskNetwork(helpers.input_dim, helpers.tasks, helpers.hidden, "sigmoid")
    reference.load_state_dict(model.state_dict())
    step = torch_ref.make_train_step(model, torch.optim.Adam(model.parameters(), lr=1e-2))
    adam = torch.optim.Adam(reference.parameters(), lr=1e-2)
    step(batches)
    sum(task_loss for task_loss in (_plain_loss(reference, batches, name) for name in ("movie", "yelp"))).backward()
    adam.step()
    for a, b in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)
    params = fresh(helpers, module)
    jax_step = jax_impl.make_train_step(module, optax.adam(1e-2))
    tx = optax.adam(1e-2)
    grads = jax.grad(lambda p: sum(_jax_plain_loss(module, p, batches, n) for n in ("movie", "yelp")))(params)
    updates, _ = tx.update(grads, tx.init(params), params)
    expected = optax.apply_updates(params, updates)
    trained, _, _ = jax_step(jax.tree_util.tree_map(jnp.array, params), jax_step.init(params), batches)
    for a, b in zip(jax.tree_util.tree_leaves(trained), jax.tree_util.tree_leaves(expected)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def _plain_loss(model, batches, name):
    x, y = batches[name]
    return _loss_of(model(x, name), y, name)


def _loss_of(logits, y, name):
    """The helpers' tasks: movie binary (BCE with logits), yelp 3-class (cross-entropy)."""
    if name == "yelp":
        return torch.nn.functional.cross_entropy(logits, torch.as_tensor(y).long())
    return torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.as_tensor(y).float().reshape(logits.shape))


def _jax_plain_loss(module, params, batches, name):
    x, y = batches[name]
    logits = module.apply(params, jnp.asarray(x), task_id=name)
    if name == "yelp":
        return optax.softmax_cross_entropy_with_integer_labels(logits, jnp.asarray(y)).mean()
    return optax.sigmoid_binary_cross_entropy(logits, jnp.asarray(y, jnp.float32).reshape(logits.shape)).mean()
