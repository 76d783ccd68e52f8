"""Both backends' Adam constructors check their hyper-parameters alike (mtl_core.config.check_adam).

Unchecked, jax's optimisers trained on with a negative lr (diverging losses) or a NaN one, and a
module passed where the lr goes failed deep inside flax during fit.
"""

import math

import pytest
import torch

import jax_impl
import torch_ref

BAD = [
    ({"lr": -1.0}, r"Adam's lr must be a finite number > 0, got -1.0"),
    ({"lr": 0.0}, r"Adam's lr must be a finite number > 0, got 0.0"),
    ({"lr": math.nan}, r"Adam's lr must be a finite number > 0, got nan"),
    ({"lr": "abc"}, r"Adam's lr must be a finite number > 0, got 'abc'"),
    ({"lr": True}, r"Adam's lr must be a finite number > 0, got True"),
    ({"b1": 1.0}, r"Adam's b1 must be a number in \[0, 1\), got 1.0"),
    ({"b2": -0.1}, r"Adam's b2 must be a number in \[0, 1\), got -0.1"),
    ({"eps": -1e-8}, r"Adam's eps must be a finite number >= 0, got -1e-08"),
]


def constructors(helpers):
    torch.manual_seed(0)
    model = torch_ref.MultiTaskNetwork(helpers.input_dim, helpers.tasks, helpers.hidden)
    return {
        "torch_ref.adam": lambda **kw: torch_ref.adam(model, **kw),
        "torch_ref.lazy_adam": lambda **kw: torch_ref.lazy_adam(model, **kw),
        "jax_impl.adam": jax_impl.adam,
        "jax_impl.lazy_adam": jax_impl.lazy_adam,
    }


@pytest.mark.parametrize("name", ["torch_ref.adam", "torch_ref.lazy_adam", "jax_impl.adam", "jax_impl.lazy_adam"])
@pytest.mark.parametrize("arguments, message", BAD)
def test_bad_hyper_parameters_are_refused_naming_the_value(helpers, name, arguments, message):
    with pytest.raises(ValueError, match=message):
        constructors(helpers)[name](**arguments)


def test_a_module_passed_as_jax_lr_is_refused_at_once(helpers):
    module = jax_impl.MultiTaskNetwork(helpers.tasks, helpers.hidden)  # torch's calling style, lazy_adam(model)
    with pytest.raises(ValueError, match=r"Adam's lr must be a finite number > 0, got MultiTaskNetwork"):
        jax_impl.lazy_adam(module)


@pytest.mark.parametrize("name", ["torch_ref.adam", "torch_ref.lazy_adam", "jax_impl.adam", "jax_impl.lazy_adam"])
def test_edge_values_are_accepted(helpers, name):
    constructors(helpers)[name](lr=1e-3, b1=0.0, b2=0.0, eps=0.0)
