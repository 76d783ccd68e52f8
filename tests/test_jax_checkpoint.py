"""jax_impl.save_checkpoint / load_checkpoint: params and the grouped Adam state in one file."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jax_impl
from mtl_core.checkpoint import AdamHyper
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


def test_params_without_opt_state_round_trip_bit_exactly(module, initial, helpers, tmp_path):
    words = tuple(f"word{i}" for i in range(helpers.input_dim))  # one per input column
    jax_impl.save_checkpoint(tmp_path / "m.safetensors", module, initial, vocabulary=list(words), label_names={"movie": ["no", "yes"]})
    loaded_module, params, opt_state, extras = jax_impl.load_checkpoint(tmp_path / "m.safetensors", with_extras=True)
    assert loaded_module == module and opt_state is None
    assert jax.tree_util.tree_structure(params) == jax.tree_util.tree_structure(initial)
    assert leaves_equal(params, initial)
    assert extras.vocabulary == words and extras.label_names == {"movie": ("no", "yes")}


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
        (lambda p: optax.adam(1e-2).init(p), r"plain optax\.adam, which does not carry its hyper-parameters: pass them, save_checkpoint\(\.\.\., adam=dict"),
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


@pytest.mark.parametrize("grouped", [False, True])
def test_a_plain_optax_adam_state_saves_with_its_hyper_parameters_and_resumes_as_jax_impl_adam(module, initial, helpers, tmp_path, grouped):
    tx = optax.adam(1e-2, b1=0.8)
    step = jax_impl.make_train_step(module, tx)
    params = jax.tree_util.tree_map(jnp.array, initial)
    state = step.init(params) if grouped else tx.init(params)
    params, state, _ = step(params, state, helpers.batches(seed=40))
    path = tmp_path / "m.safetensors"
    jax_impl.save_checkpoint(path, module, params, state, adam={"lr": 1e-2, "b1": 0.8})
    _, loaded, loaded_state, checkpoint = jax_impl.load_checkpoint(path, with_extras=True)
    assert checkpoint.adam.hyper == AdamHyper(lr=1e-2, b1=0.8) and set(checkpoint.adam.step.values()) == {1}
    # the loaded state fits jax_impl.adam with those hyper-parameters: one more step equals optax.adam's
    resumed = jax_impl.make_train_step(module, jax_impl.adam(1e-2, b1=0.8))
    after_load, _, _ = resumed(loaded, loaded_state, helpers.batches(seed=41))
    direct, _, _ = step(params, state, helpers.batches(seed=41))
    for a, b in zip(jax.tree_util.tree_leaves(after_load), jax.tree_util.tree_leaves(direct)):
        # jax_impl.adam holds b1 = 0.8 as float32 (0.80000001): updates differ by float32 rounding only
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_save_refuses_hyper_parameters_that_contradict_the_state(module, initial, tmp_path):
    state = jax_impl.make_train_step(module, jax_impl.adam(1e-2)).init(initial)
    with pytest.raises(ValueError, match=r"adam=AdamHyper\(lr=0\.5.* contradicts the hyper-parameters opt_state carries"):
        jax_impl.save_checkpoint(tmp_path / "m.safetensors", module, initial, state, adam={"lr": 0.5})
    with pytest.raises(TypeError, match=r"adam must be an AdamHyper or a dict with keys lr, b1, b2, eps, got \{'learning_rate'"):
        jax_impl.save_checkpoint(tmp_path / "m.safetensors", module, initial, state, adam={"learning_rate": 0.5})
