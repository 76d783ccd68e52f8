"""jax_impl.make_train_step: the jitted, donating step with one optax state per parameter group."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jax_impl

LR = 1e-2


@pytest.fixture(scope="module")
def module(helpers):
    return jax_impl.MultiTaskNetwork(helpers.tasks, helpers.hidden, "sigmoid")


@pytest.fixture(scope="module")
def initial(module, helpers):
    """Initial params; never passed to a step itself (steps donate), only copies of it."""
    return jax_impl.init_params(module, jax.random.key(0), helpers.input_dim)


@pytest.fixture(scope="module")
def step(module):
    """The plain "sum" step, shared so that its programs compile once for the whole module."""
    return jax_impl.make_train_step(module, optax.adam(LR))


def fresh(params):
    """A copy of a params tree that a donating step may consume."""
    return jax.tree_util.tree_map(jnp.array, params)


def snapshot(tree):
    return jax.tree_util.tree_map(np.array, tree)


def trees_equal(a, b):
    leaves = jax.tree_util.tree_leaves(jax.tree_util.tree_map(lambda u, v: np.array_equal(u, v), a, b))
    return all(leaves)


def hand_losses(module, params, batches):
    """optax BCE / cross-entropy of each task's batch under ``params``."""
    losses = {}
    for name, (x, y) in batches.items():
        logits = module.apply(params, x, task_id=name)
        if name == "yelp":
            losses[name] = float(optax.softmax_cross_entropy_with_integer_labels(logits, jnp.asarray(y)).mean())
        else:
            losses[name] = float(optax.sigmoid_binary_cross_entropy(logits, jnp.asarray(y, jnp.float32)).mean())
    return losses


def test_the_step_reports_each_tasks_loss_before_the_update_and_their_sum(module, initial, step, helpers):
    batches = helpers.batches(seed=2)
    expected = hand_losses(module, initial, batches)
    params = fresh(initial)
    new_params, _, losses = step(params, step.init(params), batches)
    assert set(losses) == {"movie", "yelp", "total"}
    assert float(losses["movie"]) == pytest.approx(expected["movie"], rel=1e-6)
    assert float(losses["yelp"]) == pytest.approx(expected["yelp"], rel=1e-6)
    assert float(losses["total"]) == pytest.approx(expected["movie"] + expected["yelp"], rel=1e-6)
    assert not trees_equal(snapshot(new_params), snapshot(initial))


def test_repeated_steps_on_one_batch_lower_its_loss(initial, step, helpers):
    params = fresh(initial)
    opt_state = step.init(params)
    batches = helpers.batches(seed=3)
    totals = []
    for _ in range(15):
        params, opt_state, losses = step(params, opt_state, batches)
        totals.append(float(losses["total"]))
    assert totals[-1] < totals[0]


def test_the_step_donates_params_and_opt_state(initial, step, helpers):
    params = fresh(initial)
    opt_state = step.init(params)
    old_leaves = jax.tree_util.tree_leaves(params) + jax.tree_util.tree_leaves(opt_state)
    new_params, new_opt_state, _ = step(params, opt_state, helpers.batches(seed=4))
    assert all(leaf.is_deleted() for leaf in old_leaves)
    assert not any(leaf.is_deleted() for leaf in jax.tree_util.tree_leaves((new_params, new_opt_state)))
    with pytest.raises(RuntimeError, match=r"deleted"):
        np.asarray(params["params"]["trunk"]["0"]["kernel"])


def test_init_gives_one_optimizer_state_per_trunk_and_head(initial, step):
    opt_state = step.init(fresh(initial))
    assert set(opt_state.inner_states) == {"trunk", "heads.movie", "heads.yelp"}


def test_a_plain_optax_state_is_accepted_and_trains_like_the_grouped_one(initial, step, helpers):
    batches = helpers.batches(seed=5)
    params = fresh(initial)
    grouped_params, _, grouped_losses = step(params, step.init(params), batches)
    params = fresh(initial)
    plain_params, plain_state, plain_losses = step(params, optax.adam(LR).init(params), batches)
    assert float(plain_losses["total"]) == float(grouped_losses["total"])
    assert trees_equal(snapshot(plain_params), snapshot(grouped_params))
    assert set(plain_state.inner_states) == {"trunk", "heads.movie", "heads.yelp"}


def test_a_step_on_task_a_alone_leaves_task_bs_head_and_adam_state_untouched(initial, step, helpers):
    params = fresh(initial)
    params, opt_state, _ = step(params, step.init(params), helpers.batches(seed=6))
    params_before, state_before = snapshot(params), snapshot(opt_state)
    params, opt_state, _ = step(params, opt_state, helpers.batches(seed=7, names=["movie"]))
    params_after, state_after = snapshot(params), snapshot(opt_state)
    assert trees_equal(params_before["params"]["heads"]["yelp"], params_after["params"]["heads"]["yelp"])
    assert trees_equal(state_before.inner_states["heads.yelp"], state_after.inner_states["heads.yelp"])
    assert not trees_equal(params_before["params"]["trunk"], params_after["params"]["trunk"])
    assert not trees_equal(state_before.inner_states["heads.movie"], state_after.inner_states["heads.movie"])
    counts = {g: int(s.inner_state[0].count) for g, s in opt_state.inner_states.items()}
    assert counts == {"trunk": 2, "heads.movie": 2, "heads.yelp": 1}


def test_jax_impl_adam_carries_its_hyper_parameters_and_updates_like_optax_adam(module, initial, helpers):
    step = jax_impl.make_train_step(module, jax_impl.adam(LR, b1=0.8, b2=0.99, eps=1e-7))
    params = fresh(initial)
    opt_state = step.init(params)
    hyper = opt_state.inner_states["trunk"].inner_state.hyperparams
    expected = {"learning_rate": LR, "b1": 0.8, "b2": 0.99, "eps": 1e-7}
    assert {k: float(hyper[k]) for k in expected} == pytest.approx(expected, rel=1e-6)  # stored in float32
    injected, _, _ = step(params, opt_state, helpers.batches(seed=13))
    plain_step = jax_impl.make_train_step(module, optax.adam(LR, b1=0.8, b2=0.99, eps=1e-7))
    params = fresh(initial)
    plain, _, _ = plain_step(params, plain_step.init(params), helpers.batches(seed=13))
    np.testing.assert_allclose(injected["params"]["trunk"]["0"]["kernel"], plain["params"]["trunk"]["0"]["kernel"], rtol=1e-6, atol=1e-7)


def test_task_weights_scale_each_tasks_loss_in_the_total(initial, step, helpers):
    params = fresh(initial)
    _, _, losses = step(params, step.init(params), helpers.batches(seed=8), task_weights=[3.0, 0.25])
    assert float(losses["total"]) == pytest.approx(3.0 * float(losses["movie"]) + 0.25 * float(losses["yelp"]), rel=1e-6)


def test_fixed_weights_scale_each_tasks_loss_in_the_total(module, initial, helpers):
    step = jax_impl.make_train_step(module, optax.adam(LR), {"movie": 2.0, "yelp": 0.5})
    params = fresh(initial)
    _, _, losses = step(params, step.init(params), helpers.batches(seed=9))
    assert float(losses["total"]) == pytest.approx(2.0 * float(losses["movie"]) + 0.5 * float(losses["yelp"]), rel=1e-6)


def test_mean_weighting_divides_by_the_tasks_present_in_the_step(module, initial, helpers):
    step = jax_impl.make_train_step(module, optax.adam(LR), "mean")
    params = fresh(initial)
    params, opt_state, both = step(params, step.init(params), helpers.batches(seed=9))
    assert float(both["total"]) == pytest.approx((float(both["movie"]) + float(both["yelp"])) / 2, rel=1e-6)
    _, _, alone = step(params, opt_state, helpers.batches(seed=9, names=["yelp"]))
    assert float(alone["total"]) == pytest.approx(float(alone["yelp"]), rel=1e-6)


def test_a_row_mask_restricts_the_loss_to_the_marked_rows(module, initial, step, helpers):
    x, y = helpers.batches(seed=10, names=["movie"])["movie"]
    mask = np.array([1, 0, 1, 1, 0, 0], np.float32)
    keep = mask == 1
    expected = hand_losses(module, initial, {"movie": (x[keep], y[keep])})["movie"]
    params = fresh(initial)
    _, _, losses = step(params, step.init(params), {"movie": (x, y, mask)})
    assert float(losses["movie"]) == pytest.approx(expected, rel=1e-6)


def test_uncertainty_adds_a_weighting_entry_to_params_and_learns_it(module, initial, helpers):
    step = jax_impl.make_train_step(module, optax.adam(0.1), "uncertainty")
    params = step.init_params(fresh(initial))
    assert set(params) == {"params", "weighting"}
    np.testing.assert_array_equal(params["weighting"]["log_var"], np.zeros(2, np.float32))
    opt_state = step.init(params)
    assert set(opt_state.inner_states) == {"trunk", "heads.movie", "heads.yelp", "weighting"}
    params, opt_state, first = step(params, opt_state, helpers.batches(seed=11))
    assert float(first["total"]) == pytest.approx(float(first["movie"]) + float(first["yelp"]), rel=1e-6)  # s = 0
    s = np.array(params["weighting"]["log_var"], np.float64)
    assert np.all(s != 0)
    _, _, losses = step(params, opt_state, helpers.batches(seed=12))
    expected = sum(np.exp(-s[i]) * float(losses[n]) + s[i] for i, n in enumerate(("movie", "yelp")))
    assert float(losses["total"]) == pytest.approx(expected, rel=1e-5)


def test_uncertainty_refuses_params_without_the_weighting_entry(module, initial, helpers):
    step = jax_impl.make_train_step(module, optax.adam(LR), "uncertainty")
    params = fresh(initial)
    with pytest.raises(ValueError, match=r"pass step\.init_params\(params\)"):
        step(params, step.init(params), helpers.batches())


def test_the_step_rejects_bad_batches(initial, step, bad_batch):
    batches, error, pattern = bad_batch
    params = fresh(initial)
    with pytest.raises(error, match=pattern):
        step(params, step.init(params), batches)


def test_the_step_rejects_bad_row_masks(initial, step, helpers, bad_row_mask):
    mask, pattern = bad_row_mask
    x, y = helpers.batches(names=["movie"])["movie"]
    params = fresh(initial)
    with pytest.raises(ValueError, match=pattern):
        step(params, step.init(params), {"movie": (x, y, mask)})


def test_the_step_rejects_bad_task_weights(initial, step, helpers, bad_task_weights):
    weights, error, pattern = bad_task_weights
    params = fresh(initial)
    with pytest.raises(error, match=pattern):
        step(params, step.init(params), helpers.batches(), task_weights=weights)


def test_the_step_rejects_params_of_another_architecture(initial, step, helpers):
    canonical = jax_impl.export_params(initial)
    canonical.update({"heads.yelp.kernel": np.zeros((16, 4), np.float32), "heads.yelp.bias": np.zeros(4, np.float32)})
    params = jax_impl.import_params(canonical)
    with pytest.raises(ValueError, match=r"wrongly shaped \['heads\.yelp\.kernel: \(16, 4\) \(expected \(16, 3\)\)'"):
        step(params, step.init(params), helpers.batches())


def test_the_step_rejects_an_optimizer_state_of_another_transformation(initial, step, helpers):
    params = fresh(initial)
    with pytest.raises(TypeError, match=r"opt_state must come from step\.init\(params\)"):
        step(params, optax.sgd(LR, momentum=0.9).init(params), helpers.batches())


@pytest.mark.parametrize(
    "args, error, pattern",
    [
        (("module", optax.adam(LR), "sum"), TypeError, r"module must be a jax_impl\.MultiTaskNetwork, got str"),
        ((None, "adam", "sum"), TypeError, r"tx must be an optax\.GradientTransformation, got str"),
        ((None, optax.adam(LR), "softmax"), ValueError, r"weighting must be one of .* got 'softmax'"),
        ((None, optax.adam(LR), {"movie": 1.0, "imdb": 1.0}), ValueError, r"unknown \['imdb'\], missing \['yelp'\]"),
    ],
)
def test_make_train_step_rejects_bad_arguments(module, args, error, pattern):
    module_arg, tx, weighting = args
    with pytest.raises(error, match=pattern):
        jax_impl.make_train_step(module_arg or module, tx, weighting)


def test_train_step_is_pure_and_runs_without_jit_as_the_jitted_step_does(initial, step, helpers):
    batches = helpers.batches(seed=14)
    state = step.init_state(fresh(initial))
    before = snapshot(state)
    prepared = step.prepare(batches)
    eager_state, eager = jax_impl.train_step(step.spec, state, prepared, step.plan(prepared))
    assert trees_equal(snapshot(state), before)  # nothing of the input changed, nothing was donated
    jitted_state, jitted = step.apply(step.init_state(fresh(initial)), batches)
    assert isinstance(jitted_state, jax_impl.TrainState) and set(jitted.losses) == {"movie", "yelp"}
    np.testing.assert_allclose(float(eager.total), float(jitted.total), rtol=1e-6)
    for a, b in zip(jax.tree_util.tree_leaves(eager_state.params), jax.tree_util.tree_leaves(jitted_state.params)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


def test_loss_fn_gives_the_weighted_total_and_each_tasks_loss(module, initial, step, helpers):
    batches = helpers.batches(seed=15)
    expected = hand_losses(module, initial, batches)
    total, losses = jax_impl.loss_fn(step.spec, initial, step.prepare(batches), jnp.array([2.0, 0.5]), {})
    assert float(losses["movie"]) == pytest.approx(expected["movie"], rel=1e-6)
    assert float(total) == pytest.approx(2.0 * expected["movie"] + 0.5 * expected["yelp"], rel=1e-6)


def test_the_state_passing_step_compiles_once_for_repeated_shapes(initial, step, helpers):
    from jax_impl.step import jitted_train_step

    state, _ = step.apply(step.init_state(fresh(initial)), helpers.batches(seed=16))
    compiled = jitted_train_step._cache_size()
    state, _ = step.apply(state, helpers.batches(seed=17))
    assert jitted_train_step._cache_size() == compiled


def test_apply_refuses_anything_but_a_train_state(initial, step, helpers):
    params = fresh(initial)
    with pytest.raises(TypeError, match=r"state must be a jax_impl\.TrainState .* got tuple"):
        step.apply((params, step.init(params)), helpers.batches())
