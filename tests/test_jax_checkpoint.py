"""jax_impl.save_checkpoint / load_checkpoint: params and the grouped Adam state in one file."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jax_impl
from jax_impl.optimizer import adam_states


@pytest.fixture(scope="module")
def module(helpers):
    return jax_impl.MultiTaskNetwork(helpers.tasks, helpers.hidden, "tanh")


@pytest.fixture(scope="module")
def initial(module, helpers):
    return jax_impl.init_params(module, jax.random.key(3), helpers.input_dim)


@pytest.fixture(scope="module")
def adam_step(module):
    return jax_impl.make_train_step(module, jax_impl.adam(1e-2))


def trained(step, initial, helpers):
    """params and grouped Adam state after two steps of both tasks and one of movie alone."""
    params = step.init_params(jax.tree_util.tree_map(jnp.array, initial))
    opt_state = step.init(params)
    for seed, names in ((0, None), (1, None), (2, ["movie"])):
        params, opt_state, _ = step(params, opt_state, helpers.batches(seed=seed, names=names))
    return params, opt_state


def leaves_equal(a, b):
    a, b = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


def test_params_without_opt_state_round_trip_bit_exactly(module, initial, tmp_path):
    jax_impl.save_checkpoint(tmp_path / "m.safetensors", module, initial, vocabulary=["a"], label_names={"movie": ["no", "yes"]})
    loaded_module, params, opt_state, extras = jax_impl.load_checkpoint(tmp_path / "m.safetensors", with_extras=True)
    assert loaded_module == module and opt_state is None
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(initial)
    assert leaves_equal(params, initial)
    assert extras.vocabulary == ("a",) and extras.label_names == {"movie": ("no", "yes")}


@pytest.fixture
def reloaded(module, initial, adam_step, helpers, tmp_path):
    """(params, opt_state) after a few steps, and the same read back from a checkpoint."""
    params, opt_state = trained(adam_step, initial, helpers)
    jax_impl.save_checkpoint(tmp_path / "m.safetensors", module, params, opt_state)
    _, loaded_params, loaded_state = jax_impl.load_checkpoint(tmp_path / "m.safetensors")
    return params, opt_state, loaded_params, loaded_state


def test_grouped_adam_state_round_trips_with_per_group_step_counts(reloaded):
    params, opt_state, loaded_params, loaded_state = reloaded
    assert jax.tree_util.tree_structure(loaded_state) == jax.tree_util.tree_structure(opt_state)
    assert leaves_equal(loaded_state, opt_state) and leaves_equal(loaded_params, params)
    counts = {g: int(adam_states(s)[0][0].count) for g, s in loaded_state.inner_states.items()}
    assert counts == {"trunk": 3, "heads.movie": 3, "heads.yelp": 2}


def test_training_continues_identically_after_a_reload(reloaded, adam_step, helpers):
    params, opt_state, loaded_params, loaded_state = reloaded
    batches = helpers.batches(seed=9)
    continued, _, _ = adam_step(params, opt_state, batches)
    reloaded, _, _ = adam_step(loaded_params, loaded_state, batches)
    assert leaves_equal(continued, reloaded)


def test_uncertainty_log_variances_round_trip(module, initial, helpers, tmp_path):
    step = jax_impl.make_train_step(module, jax_impl.adam(0.1), "uncertainty")
    params, opt_state = trained(step, initial, helpers)
    jax_impl.save_checkpoint(tmp_path / "m.safetensors", module, params, opt_state)
    _, loaded, loaded_state, extras = jax_impl.load_checkpoint(tmp_path / "m.safetensors", with_extras=True)
    assert extras.weighting.name == "uncertainty"
    np.testing.assert_array_equal(loaded["weighting"]["log_var"], params["weighting"]["log_var"])
    assert "weighting" in loaded_state.inner_states


@pytest.mark.parametrize(
    "make_state, pattern",
    [
        (lambda p: optax.adam(1e-2).init(p), r"does not carry Adam's hyper-parameters: build the optimiser with jax_impl\.adam"),
        (lambda p: optax.sgd(1e-2).init(p), r"holds no Adam state"),
    ],
)
def test_save_rejects_optimizer_states_a_checkpoint_cannot_hold(module, initial, tmp_path, make_state, pattern):
    with pytest.raises(ValueError, match=pattern):
        jax_impl.save_checkpoint(tmp_path / "m.safetensors", module, initial, make_state(initial))
    assert list(tmp_path.iterdir()) == []


def test_save_rejects_uncertainty_without_log_variances(module, initial, tmp_path):
    with pytest.raises(ValueError, match=r"params hold no \['weighting'\]\['log_var'\] to save"):
        jax_impl.save_checkpoint(tmp_path / "m.safetensors", module, initial, weighting="uncertainty")


def test_save_rejects_params_of_another_architecture(initial, helpers, tmp_path):
    other = jax_impl.MultiTaskNetwork(helpers.tasks, (8,), "tanh")
    with pytest.raises(ValueError, match=r"wrongly shaped \['trunk\.0\.kernel: \(120, 16\) \(expected \(120, 8\)\)'"):
        jax_impl.save_checkpoint(tmp_path / "m.safetensors", other, initial)


def test_save_rejects_a_module_of_another_class(initial, tmp_path):
    with pytest.raises(TypeError, match=r"module must be a jax_impl\.MultiTaskNetwork, got str"):
        jax_impl.save_checkpoint(tmp_path / "m.safetensors", "module", initial)
