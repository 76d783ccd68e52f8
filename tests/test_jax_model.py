"""jax_impl.MultiTaskNetwork, init_params and the canonical weight layout, on their own."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.sparse as sp
import scipy.special
import torch

import jax_impl
import torch_ref
from mtl_core import TaskSpec
from mtl_core.layout import canonical_shapes
from mtl_core.sparse import pad_rows
from jax_impl.layers import UNBLOCKED_ROWS, bag_of_words

ACTIVATIONS = {
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0),
    "silu": lambda z: z / (1 + np.exp(-z)),
    "gelu": lambda z: 0.5 * z * (1 + scipy.special.erf(z / np.sqrt(2.0))),  # the exact GELU, as torch's default
}


@pytest.fixture(scope="module")
def module(helpers):
    return jax_impl.MultiTaskNetwork(helpers.tasks, helpers.hidden, "sigmoid")


@pytest.fixture(scope="module")
def params(module, helpers):
    return jax_impl.init_params(module, jax.random.key(0), helpers.input_dim)


@pytest.fixture(scope="module")
def x(helpers):
    return helpers.dense_inputs(7, helpers.input_dim, np.random.default_rng(0))


@pytest.fixture(scope="module")
def apply_jit(module):
    return jax.jit(lambda params, x, task_id: module.apply(params, x, task_id=task_id), static_argnums=2)


def numpy_forward(params, x, task, activation, n_trunk):
    """act(x @ W + b) per trunk layer, then the task's head, in float64 numpy."""
    h = np.asarray(x, np.float64)
    for i in range(n_trunk):
        h = ACTIVATIONS[activation](h @ params[f"trunk.{i}.kernel"] + params[f"trunk.{i}.bias"])
    return h @ params[f"heads.{task}.kernel"] + params[f"heads.{task}.bias"]


def test_init_creates_every_head_whichever_task_it_traces(module, helpers, x):
    for kwargs in ({}, {"task_id": 1}, {"task_id": "movie"}):
        variables = module.init(jax.random.key(0), x, **kwargs)
        assert set(variables["params"]["heads"]) == {"movie", "yelp"}
        assert set(variables["params"]["trunk"]) == {"0"}


def test_init_params_have_canonical_shapes_float32_and_torch_like_bounds(module, params, helpers):
    exported = jax_impl.export_params(params)
    assert {k: v.shape for k, v in exported.items()} == canonical_shapes(module.arch.with_input_dim(helpers.input_dim))
    assert all(v.dtype == np.float32 for v in exported.values())
    for name, value in exported.items():
        fan_in = helpers.input_dim if name.startswith("trunk.0") else helpers.hidden[0]
        assert np.abs(value).max() <= 1 / np.sqrt(fan_in)


def test_init_params_is_the_same_for_the_same_key_and_differs_for_another(module, params, helpers):
    again = jax_impl.init_params(module, jax.random.key(0), helpers.input_dim)
    other = jax_impl.init_params(module, jax.random.key(1), helpers.input_dim)
    first, again, other = (jax_impl.export_params(p) for p in (params, again, other))
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert not np.array_equal(first["trunk.0.kernel"], other["trunk.0.kernel"])


def test_logits_have_one_row_per_example_and_the_heads_width(module, params, x):
    for index, task in enumerate(module.tasks):
        by_name = module.apply(params, x, task_id=task.name)
        assert by_name.shape == (7, task.num_outputs) and by_name.dtype == jnp.float32
        np.testing.assert_array_equal(by_name, module.apply(params, x, task_id=index))


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_each_activation_follows_its_formula_through_a_two_layer_trunk(helpers, x, activation):
    module = jax_impl.MultiTaskNetwork(helpers.tasks, (8, 5), activation)
    params = jax_impl.init_params(module, jax.random.key(2), helpers.input_dim)
    canonical = jax_impl.export_params(params)
    for task in helpers.tasks:
        expected = numpy_forward(canonical, x, task.name, activation, 2)
        np.testing.assert_allclose(module.apply(params, x, task_id=task.name), expected, rtol=1e-5, atol=1e-6)


def test_padded_sparse_rows_give_the_logits_of_dense_input(module, params, x):
    dense = module.apply(params, x, task_id="yelp")
    np.testing.assert_allclose(module.apply(params, pad_rows(sp.csr_matrix(x)), task_id="yelp"), dense, rtol=1e-5, atol=1e-6)


def test_jit_with_a_static_task_id_traces_once_per_task_id(module, params, x):
    traces = []

    def logits(params, x, task_id):
        traces.append(task_id)
        return module.apply(params, x, task_id=task_id)

    compiled = jax.jit(logits, static_argnums=2)
    first = compiled(params, x, 0)
    compiled(params, x, 0)
    compiled(params, x * 2, 0)
    assert traces == [0]  # a second call with the same id does not retrace
    compiled(params, x, 1)
    compiled(params, x, 1)
    assert traces == [0, 1]
    np.testing.assert_array_equal(first, module.apply(params, x, task_id=0))


def test_the_model_rejects_bad_task_ids_eagerly(module, params, x, bad_task_id):
    task_id, error, pattern = bad_task_id
    with pytest.raises(error, match=pattern):
        module.apply(params, x, task_id=task_id)


def test_the_model_rejects_bad_static_task_ids_at_trace_time(apply_jit, params, x, bad_task_id):
    task_id, error, pattern = bad_task_id
    with pytest.raises(error, match=pattern):
        apply_jit.trace(params, x, task_id)  # tracing alone raises: nothing is compiled or run
    with pytest.raises(error, match=pattern):
        apply_jit(params, x, task_id)


def test_a_traced_task_id_is_rejected_as_not_static(module, params, x):
    with pytest.raises(TypeError, match=r"static, not an array"):
        jax.jit(lambda p, x, t: module.apply(p, x, task_id=t))(params, x, 1)


def test_apply_needs_a_task_id(module, params, x):
    with pytest.raises(ValueError, match=r"task_id is required"):
        module.apply(params, x)


@pytest.mark.parametrize(
    "make",
    [
        lambda d: np.ones((3, d + 1), np.float32),
        lambda d: pad_rows(sp.csr_matrix(np.ones((3, d + 1)))),
    ],
    ids=["dense", "padded_sparse"],
)
def test_the_model_rejects_inputs_of_the_wrong_width_eagerly_and_under_jit(module, params, apply_jit, helpers, make):
    bad = make(helpers.input_dim)
    with pytest.raises(ValueError, match=r"input has 121 features, layer '0' expects 120"):
        module.apply(params, bad, task_id=0)
    with pytest.raises(ValueError, match=r"input has 121 features"):
        apply_jit(params, bad, 0)


@pytest.mark.parametrize(
    "make, error, pattern",
    [
        (lambda d: np.ones(d, np.float32), ValueError, r"input must have shape \(n, input_dim\), got \(120,\)"),
        (lambda d: np.ones((2, 3, d), np.float32), ValueError, r"input must have shape \(n, input_dim\), got \(2, 3, 120\)"),
        (lambda d: [[1.0] * d], TypeError, r"input must be an array \(n, input_dim\) or PaddedRows, got list"),
    ],
    ids=["one_row_as_a_vector", "three_dimensional", "list"],
)
def test_a_direct_apply_rejects_input_that_is_not_a_matrix(module, params, helpers, make, error, pattern):
    with pytest.raises(error, match=pattern):  # a vector or a stack would broadcast through the layers
        module.apply(params, make(helpers.input_dim), task_id=0)


def test_init_params_wants_a_random_key(module, helpers):
    with pytest.raises(TypeError, match=r"key must be a jax random key \(jax\.random\.key\(seed\)\), got 0"):
        jax_impl.init_params(module, 0, helpers.input_dim)


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        (dict(tasks=(TaskSpec("a", "binary", 1), TaskSpec("a", "regression", 1))), ValueError, r"duplicates \['a'\]"),
        (dict(activation="softmax"), ValueError, r"got 'softmax'"),
        (dict(hidden_dims=(4, 0)), ValueError, r"hidden_dims\[1\] must be >= 1, got 0"),
        (dict(tasks="movie"), TypeError, r"got 'movie'"),
    ],
)
def test_the_constructor_rejects_bad_architectures(helpers, kwargs, error, pattern):
    arguments = dict(tasks=helpers.tasks, hidden_dims=(4,), activation="tanh")
    arguments.update(kwargs)
    with pytest.raises(error, match=pattern):
        jax_impl.MultiTaskNetwork(**arguments)


def test_the_module_is_hashable_with_tuple_fields_for_jit(helpers):
    a = jax_impl.MultiTaskNetwork(list(helpers.tasks), [4], "tanh")
    b = jax_impl.MultiTaskNetwork(helpers.tasks, (4,), "tanh")
    assert a.hidden_dims == (4,) and a.tasks == helpers.tasks
    assert hash(a) == hash(b) and a == b


@pytest.mark.parametrize(
    "call, error, pattern",
    [
        (lambda m, d: jax_impl.init_params(m, jax.random.key(0), 0), ValueError, r"input_dim must be >= 1, got 0"),
        (lambda m, d: jax_impl.init_params(object(), jax.random.key(0), d), TypeError, r"jax_impl\.MultiTaskNetwork, got object"),
    ],
)
def test_init_params_rejects_bad_arguments(module, helpers, call, error, pattern):
    with pytest.raises(error, match=pattern):
        call(module, helpers.input_dim)


def test_export_import_round_trip_is_bit_exact(module, params, x):
    exported = jax_impl.export_params(params)
    for imported in (jax_impl.import_params(exported), jax_impl.import_params(exported, module)):
        again = jax_impl.export_params(imported)
        assert set(again) == set(exported) and all(np.array_equal(exported[k], again[k]) for k in exported)
        np.testing.assert_array_equal(module.apply(imported, x, task_id=1), module.apply(params, x, task_id=1))


def test_exported_arrays_are_numpy_copies(params):
    exported = jax_impl.export_params(params)
    assert all(type(v) is np.ndarray for v in exported.values())
    exported["trunk.0.bias"][:] = 123.0
    assert not np.any(np.asarray(params["params"]["trunk"]["0"]["bias"]) == 123.0)


def test_export_leaves_out_the_loss_weighting_state(params):
    with_weighting = {**params, "weighting": {"log_var": jnp.zeros(2)}}
    assert set(jax_impl.export_params(with_weighting)) == set(jax_impl.export_params(params))


@pytest.mark.parametrize("with_module", [True, False], ids=["with_module", "without_module"])
def test_import_rejects_missing_extra_misshapen_and_mistyped_entries(module, params, bad_params, with_module):
    corrupt, error, pattern = bad_params
    with pytest.raises(error, match=pattern):
        jax_impl.import_params(corrupt(jax_impl.export_params(params)), module if with_module else None)


def test_import_with_a_module_rejects_weights_of_another_architecture(params):
    other = jax_impl.MultiTaskNetwork((TaskSpec("movie", "binary", 1), TaskSpec("yelp", "multiclass", 4)), (16,), "sigmoid")
    with pytest.raises(ValueError, match=r"params\['heads\.yelp\.kernel'\] has shape \(16, 3\), expected \(16, 4\)"):
        jax_impl.import_params(jax_impl.export_params(params), other)


def test_import_rejects_float64_weights_while_x64_is_off(params):
    assert not jax.config.jax_enable_x64
    as_float64 = {k: v.astype(np.float64) for k, v in jax_impl.export_params(params).items()}
    with pytest.raises(TypeError, match=r"is float64 but jax x64 is off"):
        jax_impl.import_params(as_float64)


def test_import_rejects_a_module_of_another_class(params):
    with pytest.raises(TypeError, match=r"module must be a jax_impl\.MultiTaskNetwork, got str"):
        jax_impl.import_params(jax_impl.export_params(params), "module")


def test_torch_weights_imported_into_jax_give_the_same_logits(module, helpers, x):
    # A smoke check only: parity_tests/ owns cross-backend equality.
    torch.manual_seed(0)
    model = torch_ref.MultiTaskNetwork(helpers.input_dim, helpers.tasks, helpers.hidden, "sigmoid")
    params = jax_impl.import_params(torch_ref.export_params(model), module)
    with torch.no_grad():
        np.testing.assert_allclose(module.apply(params, x, task_id="yelp"), model(x, "yelp").numpy(), rtol=1e-5, atol=1e-6)


def test_task_names_with_dots_get_their_own_heads(helpers, x):
    tasks = (TaskSpec("imdb.v2", "binary", 1), TaskSpec("yelp", "multiclass", 3), TaskSpec("imdb", "regression", 2))
    module = jax_impl.MultiTaskNetwork(tasks, (4,))
    params = jax_impl.init_params(module, jax.random.key(1), helpers.input_dim)
    assert module.apply(params, x, task_id="imdb.v2").shape == (7, 1) and module.apply(params, x, task_id="imdb").shape == (7, 2)
    canonical = jax_impl.export_params(params)
    assert {"heads.imdb.v2.kernel", "heads.imdb.kernel"} <= set(canonical)
    expected = numpy_forward(canonical, x, "imdb.v2", "sigmoid", 1)
    np.testing.assert_allclose(module.apply(params, x, task_id="imdb.v2"), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("rows", [UNBLOCKED_ROWS, UNBLOCKED_ROWS + 69])
def test_many_sparse_rows_are_summed_in_blocks_on_a_cpu_as_in_one_gather(rows):
    rng = np.random.default_rng(1)
    kernel = jnp.asarray(rng.standard_normal((50, 7)), jnp.float32)
    indices = jnp.asarray(rng.integers(0, 50, (rows, 6)), jnp.int32)
    values = jnp.asarray(rng.standard_normal((rows, 6)) * (rng.random((rows, 6)) < 0.7), jnp.float32)
    cotangent = jnp.asarray(rng.standard_normal((rows, 7)), jnp.float32)
    program = jax.jit(bag_of_words).lower(kernel, indices, values).compile().as_text()
    assert ("while" in program) == (rows > UNBLOCKED_ROWS)  # blocks only for many rows
    out, vjp = jax.vjp(lambda k: bag_of_words(k, indices, values), kernel)
    expected_out, expected_vjp = jax.vjp(lambda k: jnp.einsum("nw,nwo->no", values, k[indices]), kernel)
    np.testing.assert_allclose(out, expected_out, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(vjp(cotangent)[0], expected_vjp(cotangent)[0], rtol=1e-6, atol=1e-6)
