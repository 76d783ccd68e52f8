"""torch_ref.MultiTaskNetwork and the canonical weight layout, on their own."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from torch import nn

import torch_ref
from mtl_core import TaskSpec
from mtl_core.layout import canonical_shapes

pytestmark = pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta:UserWarning")

ACTIVATIONS = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "relu": torch.relu,
    "gelu": lambda z: 0.5 * z * (1 + torch.erf(z / np.sqrt(2.0))),
    "silu": lambda z: z * torch.sigmoid(z),
}


def new_model(helpers, hidden=None, activation="sigmoid", seed=0, dtype=torch.float32):
    torch.manual_seed(seed)
    model = torch_ref.MultiTaskNetwork(helpers.input_dim, helpers.tasks, hidden or helpers.hidden, activation)
    return model.to(dtype)


@pytest.fixture(scope="module")
def model(helpers):
    return new_model(helpers)


@pytest.fixture(scope="module")
def x(helpers):
    return helpers.dense_inputs(7, helpers.input_dim, np.random.default_rng(0))


def manual_forward(params, x, task, activation, n_trunk):
    """act(x @ W + b) per trunk layer, then the task's head, from canonical arrays."""
    h = torch.as_tensor(x, dtype=torch.float64)
    for i in range(n_trunk):
        h = ACTIVATIONS[activation](h @ torch.as_tensor(params[f"trunk.{i}.kernel"]) + torch.as_tensor(params[f"trunk.{i}.bias"]))
    return h @ torch.as_tensor(params[f"heads.{task}.kernel"]) + torch.as_tensor(params[f"heads.{task}.bias"])


def test_logits_have_one_row_per_example_and_the_heads_width(model, x):
    for index, task in enumerate(model.tasks):
        by_name, by_index = model(x, task.name), model(x, index)
        assert by_name.shape == (7, task.num_outputs) and by_name.dtype == torch.float32
        assert torch.equal(by_name, by_index)


def test_blog_network_equals_a_hand_written_linear_sigmoid_linear(helpers, x):
    model = new_model(helpers, hidden=(200,), dtype=torch.float64)
    torch.manual_seed(1)
    first, head = nn.Linear(helpers.input_dim, 200).double(), nn.Linear(200, 3).double()
    params = torch_ref.export_params(model)
    params.update({
        "trunk.0.kernel": first.weight.detach().numpy().T, "trunk.0.bias": first.bias.detach().numpy(),
        "heads.yelp.kernel": head.weight.detach().numpy().T, "heads.yelp.bias": head.bias.detach().numpy(),
    })
    torch_ref.import_params(model, params)
    with torch.no_grad():
        expected = head(torch.sigmoid(first(torch.from_numpy(x).double())))
        torch.testing.assert_close(model(x, "yelp"), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_each_activation_follows_its_formula_through_a_two_layer_trunk(helpers, x, activation):
    model = new_model(helpers, hidden=(12, 5), activation=activation, dtype=torch.float64)
    params = torch_ref.export_params(model)
    with torch.no_grad():
        for task in helpers.tasks:
            torch.testing.assert_close(model(x, task.name), manual_forward(params, x, task.name, activation, 2), rtol=1e-12, atol=1e-12)


def test_dense_scipy_sparse_and_torch_sparse_inputs_give_the_same_logits(helpers, x):
    model = new_model(helpers, dtype=torch.float64)
    with torch.no_grad():
        dense = model(torch.from_numpy(x), "yelp")
        for other in (x, sp.csr_matrix(x), sp.coo_matrix(x), torch.from_numpy(x).to_sparse_csr()):
            torch.testing.assert_close(model(other, "yelp"), dense, rtol=1e-12, atol=1e-12)


def test_sparse_rows_hold_the_csr_arrays_and_feed_the_model(helpers, x):
    X = sp.csr_matrix(x)
    rows = torch_ref.sparse_rows(X)
    assert isinstance(rows, torch_ref.SparseRows) and (rows.num_rows, rows.num_features) == X.shape
    assert rows.indices.dtype == rows.offsets.dtype == torch.int64 and rows.values.dtype == torch.float32
    np.testing.assert_array_equal(rows.indices.numpy(), X.indices)
    np.testing.assert_array_equal(rows.offsets.numpy(), X.indptr[:-1])
    np.testing.assert_array_equal(rows.values.numpy(), X.data)
    model = new_model(helpers, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model(rows, 1), model(x, 1), rtol=1e-12, atol=1e-12)


def test_sparse_input_with_empty_rows_gives_the_bias_path(helpers, model):
    X = sp.csr_matrix((3, helpers.input_dim), dtype=np.float32)
    with torch.no_grad():
        torch.testing.assert_close(model(X, 0), model(torch.zeros(3, helpers.input_dim), 0), rtol=0, atol=0)


def test_initialisation_is_seeded_and_uniform_within_one_over_sqrt_fan_in(helpers):
    first, again, other = (torch_ref.export_params(new_model(helpers, seed=s)) for s in (3, 3, 4))
    assert all(np.array_equal(first[k], again[k]) for k in first)
    assert not np.array_equal(first["trunk.0.kernel"], other["trunk.0.kernel"])
    for name, value in first.items():
        fan_in = helpers.input_dim if name.startswith("trunk.0") else helpers.hidden[0]
        assert np.abs(value).max() <= 1 / np.sqrt(fan_in)


def test_task_names_with_dots_get_their_own_heads(helpers, x):
    tasks = (TaskSpec("imdb.v2", "binary", 1), TaskSpec("yelp", "multiclass", 3))
    model = torch_ref.MultiTaskNetwork(helpers.input_dim, tasks, (4,))
    assert model(x, "imdb.v2").shape == (7, 1)
    assert "heads.imdb.v2.kernel" in torch_ref.export_params(model)


def test_the_model_rejects_bad_task_ids(model, x, bad_task_id):
    task_id, error, pattern = bad_task_id
    with pytest.raises(error, match=pattern):
        model(x, task_id)


@pytest.mark.parametrize(
    "make, error, pattern",
    [
        (lambda d: torch.ones(2, d + 1), ValueError, r"shape \(n, 120\), got \(2, 121\)"),
        (lambda d: np.ones((2, d - 1), np.float32), ValueError, r"got \(2, 119\)"),
        (lambda d: torch.ones(d), ValueError, r"got \(120,\)"),
        (lambda d: sp.csr_matrix(np.ones((2, d + 1))), ValueError, r"input has 121 features, the model expects input_dim=120"),
        (lambda d: torch.ones(2, d + 1).to_sparse_csr(), ValueError, r"input has 121 features"),
        (lambda d: [[1.0] * d], TypeError, r"got list"),
        (lambda d: torch.ones(2, d, dtype=torch.complex64), TypeError, r"real numbers, got dtype torch\.complex64"),
        (lambda d: np.full((2, d), "a"), TypeError, r"real numbers, got dtype <U1"),
    ],
)
def test_the_model_rejects_inputs_of_the_wrong_width_or_type(model, helpers, make, error, pattern):
    with pytest.raises(error, match=pattern):
        model(make(helpers.input_dim), 0)


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        (dict(tasks=(TaskSpec("a", "binary", 1), TaskSpec("a", "regression", 1))), ValueError, r"duplicates \['a'\]"),
        (dict(tasks=()), ValueError, r"at least one TaskSpec"),
        (dict(activation="softmax"), ValueError, r"got 'softmax'"),
        (dict(hidden_dims=()), ValueError, r"at least one trunk layer"),
        (dict(input_dim=0), ValueError, r"input_dim must be >= 1, got 0"),
    ],
)
def test_the_constructor_rejects_bad_architectures(helpers, kwargs, error, pattern):
    arguments = dict(input_dim=helpers.input_dim, tasks=helpers.tasks, hidden_dims=(4,), activation="tanh")
    arguments.update(kwargs)
    with pytest.raises(error, match=pattern):
        torch_ref.MultiTaskNetwork(**arguments)


def test_export_gives_canonical_names_shapes_and_the_models_dtype(helpers):
    for dtype, np_dtype in ((torch.float32, np.float32), (torch.float64, np.float64)):
        model = new_model(helpers, hidden=(12, 5), dtype=dtype)
        params = torch_ref.export_params(model)
        assert {k: v.shape for k, v in params.items()} == canonical_shapes(model.arch)
        assert all(v.dtype == np_dtype for v in params.values())


def test_exported_kernels_are_the_transposed_linear_weights(model):
    params = torch_ref.export_params(model)
    np.testing.assert_array_equal(params["heads.yelp.kernel"], model.heads[1].weight.detach().numpy().T)
    np.testing.assert_array_equal(params["trunk.0.kernel"], model.trunk[0].weight.detach().numpy())


def test_export_import_round_trip_is_bit_exact(helpers, x):
    source, target = new_model(helpers, hidden=(12, 5), seed=1), new_model(helpers, hidden=(12, 5), seed=2)
    params = torch_ref.export_params(source)
    torch_ref.import_params(target, params)
    again = torch_ref.export_params(target)
    assert all(np.array_equal(params[k], again[k]) for k in params)
    with torch.no_grad():
        assert torch.equal(source(x, "yelp"), target(x, "yelp"))


def test_exported_arrays_are_copies(model):
    params = torch_ref.export_params(model)
    params["trunk.0.bias"][:] = 123.0
    assert not torch.any(model.trunk[0].bias == 123.0)


def test_import_rejects_missing_extra_misshapen_and_mistyped_entries(helpers, bad_params):
    corrupt, error, pattern = bad_params
    model = new_model(helpers)
    before = torch_ref.export_params(model)
    with pytest.raises(error, match=pattern):
        torch_ref.import_params(model, corrupt(torch_ref.export_params(new_model(helpers, seed=5))))
    after = torch_ref.export_params(model)
    assert all(np.array_equal(before[k], after[k]) for k in before)  # nothing half-loaded


def test_import_rejects_float64_weights_into_a_float32_model(helpers, model):
    params = {k: v.astype(np.float64) for k, v in torch_ref.export_params(model).items()}
    with pytest.raises(TypeError, match=r"has dtype float64, expected the model's float32"):
        torch_ref.import_params(model, params)


@pytest.mark.parametrize("function", [torch_ref.export_params, lambda m: torch_ref.import_params(m, {})])
def test_params_functions_reject_other_modules(function):
    with pytest.raises(TypeError, match=r"torch_ref\.MultiTaskNetwork, got Linear"):
        function(nn.Linear(2, 2))
