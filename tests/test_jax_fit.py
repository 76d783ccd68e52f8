"""jax_impl.fit: the shared epoch loop driving scanned runs of the jitted step."""

import math

import jax
import numpy as np
import optax
import pytest

import jax_impl
import jax_impl.train as train
from jax_impl.layers import UNBLOCKED_ROWS
from jax_impl.step import run_steps
from mtl_core import TaskSpec
from mtl_core.data import TaskData

SETTINGS = dict(epochs=2, batch_size=16, lr=1e-2)  # one set of shapes: fits share compiled programs


@pytest.fixture(scope="module")
def module(helpers):
    return jax_impl.MultiTaskNetwork(helpers.tasks, helpers.hidden, "sigmoid")


@pytest.fixture(scope="module")
def initial(module, helpers):
    return jax_impl.init_params(module, jax.random.key(7), helpers.input_dim)


@pytest.fixture(scope="module")
def fitted(module, initial, reviews):
    """(params, history) of the reference fit from ``initial`` with eval data."""
    return jax_impl.fit(module, reviews[0], eval_data=reviews[1], params=initial, seed=0, **SETTINGS)


def fit(module, reviews, **kwargs):
    arguments = {**SETTINGS, "seed": 0, **kwargs}
    return jax_impl.fit(module, reviews[0], **arguments)


def exported(params):
    return jax_impl.export_params(params)


def same_params(a, b):
    a, b = exported(a), exported(b)
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_history_has_the_documented_keys_and_one_entry_per_epoch(fitted, helpers):
    _, history = fitted
    helpers.check_history(history, steps=[3, 3], with_eval=True)  # ceil(48 / 16): round robin stops at yelp
    assert all(g > 0 for values in history["grad_norm"].values() for g in values)
    assert history["loss_weights"] == {"movie": [1.0, 1.0], "yelp": [1.0, 1.0]}


def test_donated_params_and_state_train_to_the_same_result_without_a_copy(module, initial, reviews, helpers):
    settings = dict(eval_data=reviews[1], seed=0, return_opt_state=True, **SETTINGS)
    kept, kept_history, kept_state = jax_impl.fit(module, reviews[0], params=initial, **settings)
    given = jax_impl.init_params(module, jax.random.key(7), helpers.input_dim)  # equal to ``initial``
    opt_state = jax_impl.adam(SETTINGS["lr"]).init(given)
    donated, history, state = jax_impl.fit(module, reviews[0], params=given, opt_state=opt_state, donate=True, **settings)
    arrays = [leaf for leaf in jax.tree_util.tree_leaves((given, opt_state)) if leaf.ndim]  # not the scalars (counts, lr)
    assert all(leaf.is_deleted() for leaf in arrays)  # weights and moments handed over, not copied
    assert same_params(donated, kept) and history == kept_history
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(state), jax.tree_util.tree_leaves(kept_state)))


def test_fit_does_not_modify_or_invalidate_the_params_it_is_given(module, initial, fitted, helpers):
    reference = jax_impl.init_params(module, jax.random.key(7), helpers.input_dim)  # what ``initial`` was
    assert not any(leaf.is_deleted() for leaf in jax.tree_util.tree_leaves(initial))
    assert same_params(initial, reference)
    trained, _ = fitted
    assert not same_params(trained, initial)


def test_fit_without_eval_data_has_no_f1(module, initial, reviews, helpers):
    _, history = fit(module, reviews, params=initial)
    helpers.check_history(history, steps=[3, 3], with_eval=False)


def test_fit_is_deterministic_for_the_same_seed(module, reviews):
    (first, history), (again, history_again) = fit(module, reviews), fit(module, reviews)
    assert same_params(first, again) and history == history_again
    other, _ = fit(module, reviews, seed=1)
    assert not same_params(first, other)


def test_fit_from_given_params_continues_where_another_fit_stopped(module, initial, fitted, reviews):
    trained, history = fitted
    _, more = fit(module, reviews, params=trained, eval_data=reviews[1], epochs=1)
    assert more["total_loss"][0] < history["total_loss"][0]


def test_a_fit_resumed_from_its_opt_state_and_first_epoch_equals_the_uninterrupted_fit(module, initial, fitted, reviews):
    whole, _ = fitted
    halfway, _, opt_state = fit(module, reviews, params=initial, eval_data=reviews[1], epochs=1, return_opt_state=True)
    resumed, history = fit(module, reviews, params=halfway, opt_state=opt_state, eval_data=reviews[1], epochs=1, first_epoch=1)
    assert history["epoch"] == [2]
    assert same_params(resumed, whole)


def test_fit_lowers_the_training_loss(module, initial, reviews):
    _, history = fit(module, reviews, params=initial, epochs=6)
    assert history["total_loss"][-1] < history["total_loss"][0]


def test_sequential_fit_counts_every_batch_of_every_task(module, initial, reviews):
    _, history = fit(module, reviews, params=initial, epochs=1, curriculum="sequential")
    assert history["steps"] == [5 + 3]  # ceil(80 / 16) + ceil(48 / 16)


def test_fit_trains_only_the_tasks_in_the_data(module, initial, reviews):
    trained, history = jax_impl.fit(module, {"movie": reviews[0]["movie"]}, params=initial, epochs=1, batch_size=16)
    np.testing.assert_array_equal(exported(trained)["heads.yelp.kernel"], exported(initial)["heads.yelp.kernel"])
    assert math.isnan(history["loss"]["yelp"][0]) and history["grad_norm"]["heads.yelp"] == [0.0]


def test_uncertainty_fit_returns_learnt_log_variances_reported_as_loss_weights(module, initial, reviews):
    trained, history = fit(module, reviews, params=initial, weighting="uncertainty")
    s = np.asarray(trained["weighting"]["log_var"], np.float64)
    assert np.all(s != 0)
    np.testing.assert_allclose([history["loss_weights"][n][-1] for n in ("movie", "yelp")], np.exp(-s), rtol=1e-6)


def test_fit_accepts_a_plain_optax_state_for_its_tx(module, initial, reviews):
    tx = optax.adam(1e-2)
    _, history = fit(module, reviews, params=initial, tx=tx, opt_state=tx.init(initial), epochs=1)
    assert history["epoch"] == [1]


def test_fit_rejects_bad_settings(module, initial, reviews, bad_fit_setting):
    kwargs, error, pattern = bad_fit_setting
    with pytest.raises(error, match=pattern):
        fit(module, reviews, params=initial, **kwargs)


def test_fit_rejects_a_tx_that_is_not_an_optax_transformation(module, initial, reviews):
    with pytest.raises(TypeError, match=r"tx must be an optax\.GradientTransformation, got str"):
        fit(module, reviews, params=initial, tx="adam")
    with pytest.raises(TypeError, match=r"donate must be True or False, got 'yes'"):
        fit(module, reviews, params=initial, donate="yes")


def test_fit_rejects_data_of_another_width_or_task(module, initial, helpers):
    narrow = TaskData(np.ones((4, helpers.input_dim - 1)), np.array([0, 1, 0, 1]), helpers.tasks[0])
    wide = TaskData(np.ones((4, helpers.input_dim)), np.array([0, 1, 2, 1]), helpers.tasks[1])
    with pytest.raises(ValueError, match=r"data\['yelp'\] has 120 features, the model expects input_dim=119"):
        jax_impl.fit(module, {"movie": narrow, "yelp": wide}, params=initial, epochs=1)
    other = TaskData(np.ones((4, helpers.input_dim)), np.array([0, 1, 0, 1]), TaskSpec("imdb", "binary", 1))
    with pytest.raises(ValueError, match=r"data names task 'imdb', which the model lacks"):
        jax_impl.fit(module, {"imdb": other}, epochs=1)


def test_fit_rejects_params_of_another_width_than_the_data(module, initial, helpers):
    narrow = TaskData(np.ones((4, helpers.input_dim - 1)), np.array([0, 1, 0, 1]), helpers.tasks[0])
    with pytest.raises(ValueError, match=r"input has 119 features, layer '0' expects 120"):
        jax_impl.fit(module, {"movie": narrow}, params=initial, epochs=1)


def test_fit_rejects_a_module_of_another_class(reviews):
    with pytest.raises(TypeError, match=r"module must be a jax_impl\.MultiTaskNetwork, got str"):
        jax_impl.fit("module", reviews[0])


def test_a_train_config_and_the_same_keywords_give_the_same_fit(module, initial, reviews, fitted):
    from mtl_core import TrainConfig

    params, history = jax_impl.fit(module, reviews[0], TrainConfig(seed=0, **SETTINGS), eval_data=reviews[1], params=initial)
    assert history == fitted[1] and same_params(params, fitted[0])
    with pytest.raises(TypeError, match=r"unknown training option\(s\) \['epoch'\]"):
        jax_impl.fit(module, reviews[0], epoch=1)


@pytest.mark.parametrize("batch_size", [SETTINGS["batch_size"], UNBLOCKED_ROWS // 2 + 1], ids=["one_gather", "row_blocks"])
@pytest.mark.parametrize("make_tx", [jax_impl.adam, jax_impl.lazy_adam], ids=["adam", "lazy_adam"])
def test_the_scanned_run_copies_no_first_layer_sized_array(module, initial, reviews, monkeypatch, make_tx, batch_size):
    # Some jaxlib versions copy a lax.cond's operands inside a scan: the whole carry (weights and both
    # Adam moments) on every step. The compiled program of fit's scanned run must hold no copy of an
    # array of the kernel's shape; compiled without donation, its copies of the carry show the check sees them.
    # Steps of two tasks' batches of more than UNBLOCKED_ROWS / 2 rows gather in a loop of row blocks on a CPU.
    runs = []
    scanned = train.jitted_run_steps
    monkeypatch.setattr(train, "jitted_run_steps", lambda *args: runs.append(args) or scanned(*args))
    jax_impl.fit(module, reviews[0], params=initial, seed=0, tx=make_tx(1e-2), **{**SETTINGS, "epochs": 1, "batch_size": batch_size})
    kernel = np.shape(initial["params"]["trunk"]["0"]["kernel"])
    shape = f"f32[{kernel[0]},{kernel[1]}]"

    def copies(donate: tuple) -> int:
        program = jax.jit(run_steps, static_argnums=0, donate_argnums=donate).lower(*runs[0]).compile().as_text()
        return sum(f"{shape}{{" in line and " copy(" in line for line in program.splitlines())

    assert copies(donate=(1,)) == 0
    assert copies(donate=()) >= 3  # the kernel and its two moments, copied into the carry
