"""mtl_core.layout: the canonical {name: numpy array} weight layout and its checks."""

import numpy as np
import pytest

from mtl_core import TaskSpec, check_architecture
from mtl_core import layout
from mtl_core.layout import canonical_shapes, check_params, inferred_shapes

ARCH = check_architecture((TaskSpec("movie", "binary", 1), TaskSpec("yelp", "multiclass", 3)), (8, 4), "relu", 10)
EXPECTED = {
    "trunk.0.kernel": (10, 8),
    "trunk.0.bias": (8,),
    "trunk.1.kernel": (8, 4),
    "trunk.1.bias": (4,),
    "heads.movie.kernel": (4, 1),
    "heads.movie.bias": (1,),
    "heads.yelp.kernel": (4, 3),
    "heads.yelp.bias": (3,),
}


def zeros(shapes, dtype=np.float32):
    return {name: np.zeros(shape, dtype) for name, shape in shapes.items()}


def test_canonical_shapes_chain_the_trunk_and_give_every_head_in_out_kernels():
    shapes = canonical_shapes(ARCH)
    assert shapes == EXPECTED and list(shapes) == list(EXPECTED)


def test_canonical_shapes_need_the_input_dim():
    with pytest.raises(ValueError, match=r"needs the network's input_dim"):
        canonical_shapes(check_architecture(ARCH.tasks, (8,), "relu"))


def test_inferred_shapes_read_the_architecture_off_the_params():
    assert inferred_shapes(zeros(EXPECTED)) == EXPECTED


def test_inferred_shapes_expect_chained_widths():
    params = zeros({**EXPECTED, "trunk.1.kernel": (7, 4)})
    assert inferred_shapes(params)["trunk.1.kernel"] == (8, 4)
    with pytest.raises(ValueError, match=r"params\['trunk\.1\.kernel'\] has shape \(7, 4\), expected \(8, 4\)"):
        check_params(params, inferred_shapes(params))


def test_check_params_returns_numpy_arrays_for_array_likes():
    params = {name: np.ones(shape, np.float64).tolist() for name, shape in EXPECTED.items()}
    checked = check_params(params, EXPECTED)
    assert set(checked) == set(EXPECTED)
    assert all(isinstance(v, np.ndarray) and v.shape == EXPECTED[k] and v.dtype == np.float64 for k, v in checked.items())


@pytest.mark.parametrize(
    "edit, dtype, error, pattern",
    [
        (lambda p: p.pop("heads.yelp.bias"), None, ValueError, r"missing \['heads\.yelp\.bias'\], unexpected \[\]"),
        (lambda p: p.update({"heads.imdb.bias": np.zeros(1, np.float32)}), None, ValueError, r"missing \[\], unexpected \['heads\.imdb\.bias'\]"),
        (lambda p: p.update({"trunk.0.kernel": np.zeros((8, 10), np.float32)}), None, ValueError, r"'trunk\.0\.kernel'\] has shape \(8, 10\), expected \(10, 8\)"),
        (lambda p: p.update({"trunk.0.bias": np.zeros(8, np.int64)}), None, TypeError, r"'trunk\.0\.bias'\] has dtype int64, expected float32 or float64"),
        (lambda p: p.update({"trunk.0.bias": np.zeros(8, np.float64)}), np.float32, TypeError, r"has dtype float64, expected the model's float32"),
    ],
)
def test_check_params_rejects_missing_extra_misshapen_and_mistyped_entries(edit, dtype, error, pattern):
    params = zeros(EXPECTED)
    edit(params)
    with pytest.raises(error, match=pattern):
        check_params(params, EXPECTED, dtype=dtype)


@pytest.mark.parametrize(
    "params, error, pattern",
    [
        ([("trunk.0.kernel", np.zeros((2, 2)))], TypeError, r"params must be a dict .* got list"),
        ({"heads.a.kernel": np.zeros((2, 1))}, ValueError, r"no 'trunk\.0\.kernel'"),
        ({"trunk.0.kernel": np.zeros(3)}, ValueError, r"'trunk\.0\.kernel'\] must be 2-D \(in, out\), got shape \(3,\)"),
        ({"trunk.0.kernel": np.zeros((3, 2))}, ValueError, r"no 'heads\.\{task\}\.kernel' entry"),
        ({"trunk.0.kernel": np.zeros((3, 2)), "heads.a.kernel": np.zeros(2)}, ValueError, r"'heads\.a\.kernel'\] must be 2-D"),
    ],
)
def test_inferred_shapes_reject_what_is_not_a_canonical_dict(params, error, pattern):
    with pytest.raises(error, match=pattern):
        inferred_shapes(params)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_initial_params_drawn_in_blocks_are_the_whole_arrays_draw(monkeypatch, dtype):
    # The weights a seed gives must not depend on the block size (nor change from one version to the next).
    arch = check_architecture([TaskSpec("a", "binary", 1), TaskSpec("b", "multiclass", 3)], (5, 4), "sigmoid", input_dim=23)
    monkeypatch.setattr(layout, "DRAW_BLOCK", 7)  # blocks of one row of 5, and ragged ends
    blocked = layout.initial_params(arch, seed=3, dtype=dtype)
    rng = np.random.default_rng(3)
    for name, shape in canonical_shapes(arch).items():
        fan_in = shape[0] if name.endswith(".kernel") else canonical_shapes(arch)[name[: -len("bias")] + "kernel"][0]
        whole = rng.uniform(-1 / np.sqrt(fan_in), 1 / np.sqrt(fan_in), shape).astype(np.float32).astype(dtype)
        assert blocked[name].dtype == dtype and np.array_equal(blocked[name], whole), name
