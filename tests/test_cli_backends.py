"""mtl_cli's jax model: its epoch-by-epoch fits hand their weights and Adam state over to the next
(donated, not copied: a 2^20-feature kernel and its moments took about a second per epoch to copy)
and still train as one fit of all the epochs."""

import jax
import numpy as np

import jax_impl
from mtl_cli.backends import JaxModel
from mtl_cli.recipe import Recipe
from mtl_core.data import DEFAULT_TASKS, synthetic_reviews


def kernel(tree) -> jax.Array:
    return tree["params"]["trunk"]["0"]["kernel"]


def test_epoch_by_epoch_jax_fits_donate_their_state_and_train_as_one_fit():
    train, _ = synthetic_reviews(DEFAULT_TASKS, n_train=96, n_test=1, vocab_size=300, seed=0)
    one_epoch = Recipe().with_training(epochs=1, batch_size=32, seed=0)
    model = JaxModel.build(300, DEFAULT_TASKS, one_epoch)
    first_weights = kernel(model.variables)
    model.fit(train, None, one_epoch, progress=False)
    assert first_weights.is_deleted()  # handed to the fit
    first_state = jax.tree_util.tree_leaves(model.opt_state)
    model.fit(train, None, one_epoch, progress=False)
    assert all(leaf.is_deleted() for leaf in first_state if isinstance(leaf, jax.Array) and leaf.size > 1)

    two_epochs = one_epoch.with_training(epochs=2)
    whole = JaxModel.build(300, DEFAULT_TASKS, two_epochs)
    whole.fit(train, None, two_epochs, progress=False)
    for name, value in jax_impl.export_params(whole.variables).items():
        np.testing.assert_array_equal(jax_impl.export_params(model.variables)[name], value, err_msg=name)
