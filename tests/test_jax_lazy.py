"""jax_impl.lazy_adam: SparseAdam's update on the first-layer kernel rows a step touches, Adam elsewhere.

The reference is written out here: the dense gradient of the summed loss by jax.grad of a hand
loss on dense inputs, the touched rows read off the scipy batches, mtl_core.lazy_adam.row_update
in numpy float64 on those rows and optax.adam on every other parameter whose group is present.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import scipy.sparse as sp

import jax_impl
from mtl_core.checkpoint import AdamHyper, read_checkpoint
from mtl_core.lazy_adam import row_update
from mtl_core.sparse import PaddedRows, pad_rows
from jax_impl.checkpoint import _adam_state
from jax_impl.jacobian import aggregated_gradients
from jax_impl.lazy import row_gradients
from jax_impl.step import StepSpec, jitted_train_step
from parity_tests.compare import assert_close_trees
from parity_tests.tolerances import tolerance

LR = 1e-2
TX = jax_impl.lazy_adam(LR)  # one transformation: the tests share its compiled programs
DENSE_TX = jax_impl.adam(LR)
WIDTH = 32  # every batch padded to it: one shape, one compile per task set
SHARED = 5  # a column both tasks touch in every step: its row's gradient sums over both
ZERO_ONLY = 7  # a column present only as stored zeros: it touches nothing
PADDED_ONLY = WIDTH - 1  # a column only padding slots point at (slot mod num_features): touches nothing
KERNEL = "trunk.0.kernel"
TRAJECTORY = tolerance("trajectory")
SETTINGS = dict(epochs=2, batch_size=16, lr=LR, seed=0)


@pytest.fixture(scope="module")
def module(helpers):
    return jax_impl.MultiTaskNetwork(helpers.tasks, helpers.hidden, "sigmoid")


@pytest.fixture(scope="module")
def initial(module, helpers):
    return jax_impl.init_params(module, jax.random.key(5), helpers.input_dim)


@pytest.fixture(scope="module")
def step(module):
    return jax_impl.make_train_step(module, TX)


def fresh(params):
    return jax.tree_util.tree_map(jnp.array, params)


def sparse_batches(helpers, seed, names=None):
    """(step batches {task: (PaddedRows, y)}, the same as dense arrays, the touched columns)."""
    batches, dense, touched = {}, {}, []
    for name, (x, y) in helpers.batches(seed=seed, names=names).items():
        x[:, SHARED], x[:, ZERO_ONLY], x[:, PADDED_ONLY] = 1.0, 0.0, 0.0
        rows, columns = np.nonzero(x)
        # one stored zero per row at ZERO_ONLY, kept by scipy as an explicit entry
        rows, columns = np.append(rows, np.arange(len(x))), np.append(columns, np.full(len(x), ZERO_ONLY))
        X = sp.csr_matrix((np.append(x[np.nonzero(x)], np.zeros(len(x), np.float32)), (rows, columns)), shape=x.shape)
        assert X.nnz == np.count_nonzero(x) + len(x)
        batches[name] = (pad_rows(X, width=WIDTH), y)
        dense[name] = (X.toarray(), y)
        touched.append(X.indices[X.data != 0])
    return batches, dense, np.unique(np.concatenate(touched))


def hand_total(module, params, dense):
    """The summed loss written out: BCE for movie, cross-entropy for yelp, on dense inputs."""
    total = 0.0
    for name, (x, y) in dense.items():
        logits = module.apply(params, jnp.asarray(x), task_id=name)
        if name == "yelp":
            total += optax.softmax_cross_entropy_with_integer_labels(logits, jnp.asarray(y)).mean()
        else:
            total += optax.sigmoid_binary_cross_entropy(logits, jnp.asarray(y, jnp.float32)).mean()
    return total


dense_gradient = jax.jit(jax.grad(hand_total, argnums=1), static_argnums=0)  # (module, params, dense) -> params' gradient
ADAM = optax.adam(LR)


@jax.jit
def adam_steps(gradient: dict, states: dict, params: dict) -> tuple[dict, dict]:
    """optax.adam's step of each named parameter on its own: (params, states) of the names in ``states``."""
    moved = {name: ADAM.update(gradient[name], state) for name, state in states.items()}
    return {name: optax.apply_updates(params[name], u) for name, (u, _) in moved.items()}, {name: s for name, (_, s) in moved.items()}


class Reference:
    """Lazy Adam written out: float64 SparseAdam on the touched kernel rows, optax.adam on the rest."""

    def __init__(self, params):
        self.params = jax_impl.export_params(params)
        self.params[KERNEL] = self.params[KERNEL].astype(np.float64)
        self.m, self.v, self.t = np.zeros_like(self.params[KERNEL]), np.zeros_like(self.params[KERNEL]), 0
        self.states = {name: ADAM.init(jnp.asarray(p)) for name, p in self.params.items() if name != KERNEL}

    def jax_params(self):
        return jax_impl.import_params({name: np.asarray(p, np.float32) for name, p in self.params.items()})

    def step(self, gradient: dict, touched: np.ndarray, names) -> None:
        """One step from ``gradient`` (canonical names -> dense arrays) of the tasks ``names``."""
        self.t += 1
        p, m, v = (a[touched] for a in (self.params[KERNEL], self.m, self.v))
        p, m, v = row_update(np, p, m, v, np.asarray(gradient[KERNEL], np.float64)[touched], self.t, AdamHyper(lr=LR))
        self.params[KERNEL][touched], self.m[touched], self.v[touched] = p, m, v
        # the parameters whose group is in the step: the trunk's, and the present tasks' heads
        present = {name: s for name, s in self.states.items() if name.startswith("trunk.") or name.split(".")[1] in names}
        params, states = adam_steps({k: gradient[k] for k in present}, present, {k: self.params[k] for k in present})
        self.params.update({k: np.asarray(v) for k, v in params.items()})
        self.states.update(states)


def kernel_state(opt_state):
    """(exp_avg, exp_avg_sq, step) of the first layer's kernel, as a checkpoint records them."""
    adam = _adam_state(opt_state, None)
    return adam.exp_avg[KERNEL], adam.exp_avg_sq[KERNEL], adam.step[KERNEL]


def assert_matches(params, opt_state, reference: Reference, what: str) -> None:
    got = jax_impl.export_params(params)
    assert_close_trees(got, {k: np.asarray(v, np.float32) for k, v in reference.params.items()}, TRAJECTORY, what)
    exp_avg, exp_avg_sq, t = kernel_state(opt_state)
    assert t == reference.t
    assert_close_trees({"exp_avg": exp_avg, "exp_avg_sq": exp_avg_sq}, {"exp_avg": reference.m, "exp_avg_sq": reference.v}, TRAJECTORY, what)


def test_row_gradients_are_the_dense_gradients_touched_rows_each_once():
    rng = np.random.default_rng(0)
    X = sp.random(7, 50, density=0.2, format="csr", random_state=1, dtype=np.float32)
    X = sp.vstack([X, X[:2]], format="csr")  # rows repeated: their columns' entries sum
    X.data[:3] = 0.0  # stored zeros
    delta = rng.standard_normal((X.shape[0], 4)).astype(np.float32)
    x = pad_rows(X, width=16)
    rows, grads = (np.asarray(a) for a in row_gradients(PaddedRows(jnp.asarray(x.indices), jnp.asarray(x.values), 50), jnp.asarray(delta)))
    used = rows < 50
    assert sorted(rows[used]) == sorted(set(X.indices[X.data != 0]))  # each touched row once, no other
    np.testing.assert_array_equal(grads[~used], 0.0)
    dense = X.toarray().astype(np.float64).T @ delta
    np.testing.assert_allclose(grads[used], dense[rows[used]], rtol=1e-5, atol=1e-6)


def test_lazy_steps_follow_sparse_adam_on_the_touched_rows_and_adam_elsewhere(module, initial, step, helpers):
    reference = Reference(initial)
    params = fresh(initial)
    opt_state = step.init(params)
    assert set(opt_state.inner_states) == {"rows", "trunk", "heads.movie", "heads.yelp"}
    never_touched = np.ones(helpers.input_dim, bool)
    for seed, names in ((0, None), (1, ["movie"]), (2, None)):
        batches, dense, touched = sparse_batches(helpers, seed, names)
        gradient = dense_gradient(module, reference.jax_params(), dense)
        reference.step(jax_impl.export_params(gradient), touched, list(dense))
        before = np.array(params["params"]["trunk"]["0"]["kernel"]), kernel_state(opt_state)
        params, opt_state, _ = step(params, opt_state, batches)
        assert_matches(params, opt_state, reference, f"step {seed}")
        # rows the step did not touch keep their weights and moments, bit for bit
        untouched = np.setdiff1d(np.arange(helpers.input_dim), touched)
        after = np.array(params["params"]["trunk"]["0"]["kernel"]), kernel_state(opt_state)
        np.testing.assert_array_equal(after[0][untouched], before[0][untouched])
        for old, new in zip(before[1][:2], after[1][:2]):
            np.testing.assert_array_equal(new[untouched], old[untouched])
        never_touched[touched] = False
    assert never_touched[ZERO_ONLY] and never_touched[PADDED_ONLY]
    kernel = np.array(params["params"]["trunk"]["0"]["kernel"])
    np.testing.assert_array_equal(kernel[never_touched], np.array(initial["params"]["trunk"]["0"]["kernel"])[never_touched])


def test_the_touched_rows_gradient_norm_is_the_dense_gradients(module, initial, step, helpers):
    batches, dense, _ = sparse_batches(helpers, seed=4)
    state = step.init_state(fresh(initial))
    prepared = step.prepare(batches)
    plan = step.plan(prepared)._replace(record_norms=jnp.asarray(True))
    _, metrics = jitted_train_step(step.spec, state, prepared, plan)
    gradient = dense_gradient(module, initial, dense)["params"]
    expected = [jnp.sqrt(sum(jnp.sum(g**2) for g in jax.tree_util.tree_leaves(gradient[part][name]))) for part, name in (("trunk", "0"), ("heads", "movie"), ("heads", "yelp"))]
    assert_close_trees(np.asarray(metrics.grad_norms), np.asarray(expected), tolerance("gradients"), "layer norms")


def test_an_aggregated_lazy_step_follows_the_dense_aggregated_gradient(module, initial, helpers):
    lazy = jax_impl.make_train_step(module, TX, aggregator="upgrad")
    dense = jax_impl.make_train_step(module, jax_impl.adam(LR), aggregator="upgrad")
    reference = Reference(initial)
    params = fresh(initial)
    opt_state = lazy.init(params)
    for seed in (6, 7):
        batches, _, touched = sparse_batches(helpers, seed)
        prepared = dense.prepare(batches)
        _, _, gradient, _ = jax.jit(aggregated_gradients, static_argnums=0)(dense.spec, reference.jax_params(), prepared, dense.plan(prepared), {})
        reference.step(jax_impl.export_params(gradient), touched, list(batches))
        params, opt_state, _ = lazy(params, opt_state, batches)
        assert_matches(params, opt_state, reference, f"aggregated step {seed}")


def whole_array_ops(hlo: str, shape: str) -> list[str]:
    """The instructions of an HLO module that compute an array of ``shape`` element by element (arithmetic,
    broadcasts, copies): anything but taking it in, passing it on, or scattering rows into it."""
    passing = {"parameter", "scatter", "get-tuple-element", "tuple", "bitcast", "fusion", "while", "conditional", "call"}
    found = re.findall(rf"^\s*(?:ROOT )?%\S+ = {re.escape(shape)}\{{[^}}]*\}} ([a-z-]+)\(", hlo, flags=re.MULTILINE)
    return [op for op in found if op not in passing]


@pytest.fixture(scope="module")
def compiled(module, helpers):
    """compiled(tx, V): the compiled jitted step of ``tx`` for a model over V columns, on sparse_batches(0)."""
    programs = {}

    def compile_step(tx, num_features: int):
        if (tx, num_features) not in programs:
            step = jax_impl.make_train_step(module, tx)
            params = jax_impl.init_params(module, jax.random.key(0), num_features)
            batches, _, _ = sparse_batches(helpers, 0)
            prepared = step.prepare({n: (PaddedRows(x.indices, x.values, num_features), y) for n, (x, y) in batches.items()})
            programs[tx, num_features] = jitted_train_step.lower(step.spec, step.init_state(params), prepared, step.plan(prepared)).compile()
        return programs[tx, num_features]

    return compile_step


def test_the_compiled_lazy_step_computes_nothing_on_whole_kernel_sized_arrays(compiled, helpers):
    shape = f"f32[5003,{helpers.hidden[0]}]"
    assert whole_array_ops(compiled(TX, 5003).as_text(), shape) == []
    dense = whole_array_ops(compiled(DENSE_TX, 5003).as_text(), shape)
    assert {"multiply", "sqrt"} <= set(dense)  # the check can fail: dense Adam's update is (V, H) arithmetic


def test_the_compiled_lazy_steps_flops_do_not_grow_with_the_number_of_features(compiled):
    def flops(tx, num_features):
        analysis = compiled(tx, num_features).cost_analysis()
        return (analysis[0] if isinstance(analysis, list) else analysis)["flops"]

    assert flops(TX, 80_000) == flops(TX, 5003)
    assert flops(DENSE_TX, 80_000) > 10 * flops(DENSE_TX, 5003)  # the measure can tell


def test_a_lazy_step_refuses_dense_input(initial, step, helpers):
    params = fresh(initial)
    with pytest.raises(ValueError, match=r"lazy_adam needs sparse input .* got dense arrays for tasks \['movie', 'yelp'\]"):
        step(params, step.init(params), helpers.batches(seed=0))


def test_lazy_adam_refuses_a_mesh(module, reviews):
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("data",))
    with pytest.raises(ValueError, match=r"lazy_adam does not support a mesh"):
        jax_impl.make_train_step(module, TX, mesh=mesh)
    with pytest.raises(ValueError, match=r"lazy_adam does not support a mesh"):
        jax_impl.fit(module, reviews[0], tx=TX, mesh=mesh, **SETTINGS)


def test_a_lazy_spec_is_not_equal_to_a_dense_spec_of_the_same_functions(module, step):
    dense = StepSpec(module, optax.GradientTransformationExtraArgs(*TX), step.weighting)
    assert dense.tx == step.spec.tx  # as tuples (init, update)
    assert dense != step.spec and not dense.lazy and step.spec.lazy


@pytest.fixture(scope="module")
def lazy_fit(module, initial, reviews):
    return jax_impl.fit(module, reviews[0], params=initial, tx=TX, **SETTINGS)


def test_a_lazy_fit_lowers_the_loss_and_differs_from_a_dense_fit(module, initial, reviews, lazy_fit):
    params, history = lazy_fit
    assert history["total_loss"][-1] < history["total_loss"][0]
    dense, _ = jax_impl.fit(module, reviews[0], params=initial, **SETTINGS)
    kernel, dense_kernel = (jax_impl.export_params(p)[KERNEL] for p in (params, dense))
    assert not np.allclose(kernel, dense_kernel, rtol=1e-3, atol=1e-4)


def test_a_fit_resumed_from_a_lazy_checkpoint_equals_the_uninterrupted_fit(module, initial, reviews, lazy_fit, tmp_path):
    halfway, _, opt_state = jax_impl.fit(module, reviews[0], params=initial, tx=TX, return_opt_state=True, **{**SETTINGS, "epochs": 1})
    path = tmp_path / "lazy.safetensors"
    jax_impl.save_checkpoint(path, module, halfway, opt_state)
    assert read_checkpoint(path).adam.optimizer == "lazy_adam"
    _, params, loaded_state = jax_impl.load_checkpoint(path)
    assert "rows" in loaded_state.inner_states
    resumed, history = jax_impl.fit(module, reviews[0], params=params, opt_state=loaded_state, first_epoch=1, **{**SETTINGS, "epochs": 1})
    assert history["epoch"] == [2]
    whole, expected = jax_impl.export_params(lazy_fit[0]), jax_impl.export_params(resumed)
    assert all(np.array_equal(whole[k], expected[k]) for k in whole)


def test_a_lazy_optimizer_state_does_not_fit_a_dense_step(module, initial, step, helpers):
    params = fresh(initial)
    dense = jax_impl.make_train_step(module, jax_impl.adam(LR))
    with pytest.raises(TypeError, match=r"or jax_impl\.lazy_adam when the checkpoint says lazy_adam"):
        dense(params, step.init(params), helpers.batches(seed=0))
