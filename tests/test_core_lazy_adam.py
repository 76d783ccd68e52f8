"""mtl_core.lazy_adam: the row update both backends apply, against torch.optim.SparseAdam's definition."""

import numpy as np
import pytest

from mtl_core.checkpoint import AdamHyper
from mtl_core.lazy_adam import row_update


def sparse_adam_reference(w, m, v, g, t, lr, b1, b2, eps):
    """The update as torch/optim/_functional.py's sparse_adam writes it, step by step."""
    old_m, old_v = m.copy(), v.copy()
    m_update = (g - old_m) * (1 - b1)
    v_update = (g**2 - old_v) * (1 - b2)
    numer = m_update + old_m
    denom = np.sqrt(v_update + old_v) + eps
    step_size = lr * np.sqrt(1 - b2**t) / (1 - b1**t)
    return w - step_size * numer / denom, old_m + m_update, old_v + v_update


@pytest.mark.parametrize("t", [1, 2, 50])
def test_row_update_is_sparse_adams(t):
    rng = np.random.default_rng(t)
    w, m, g = (rng.standard_normal((5, 3)) for _ in range(3))
    v = np.abs(rng.standard_normal((5, 3)))
    hyper = AdamHyper(lr=0.01, b1=0.8, b2=0.99, eps=1e-6)
    got = row_update(np, w, m, v, g, t, hyper)
    expected = sparse_adam_reference(w, m, v, g, t, hyper.lr, hyper.b1, hyper.b2, hyper.eps)
    for a, b in zip(got, expected):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)


def test_eps_is_added_to_the_raw_second_moment_root_not_the_bias_corrected_one():
    """What sets lazy Adam apart from dense Adam on a touched row (and why the two fits differ)."""
    hyper = AdamHyper(lr=1.0, b1=0.9, b2=0.999, eps=1e-3)
    w, m, v, g = np.zeros((1, 1)), np.zeros((1, 1)), np.zeros((1, 1)), np.full((1, 1), 1e-3)
    lazy, _, _ = row_update(np, w, m, v, g, 1, hyper)
    dense = -g / (np.abs(g) + hyper.eps)  # dense Adam at t = 1: m̂ = g, sqrt(v̂) = |g|
    sparse = -np.sqrt(1 - 0.999) / 0.1 * 0.1 * g / (np.sqrt(0.001) * np.abs(g) + hyper.eps)
    np.testing.assert_allclose(lazy, sparse, rtol=1e-12)
    assert not np.allclose(lazy, dense, rtol=1e-3)
