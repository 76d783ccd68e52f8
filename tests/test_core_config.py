"""mtl_core.config: the one training configuration both fits and the CLI read."""

import dataclasses

import pytest

from mtl_core import TrainConfig
from mtl_core.config import training_config
from mtl_core.curricula import Curriculum
from mtl_core.weighting import DWA, Fixed, Sum


def test_the_defaults_are_the_blogs_recipe():
    config = TrainConfig()
    assert (config.epochs, config.batch_size, config.lr, config.seed) == (6, 64, 1e-3, 0)
    assert config.curriculum == Curriculum("round_robin") and config.weighting == Sum()


def test_names_and_mappings_become_checked_values():
    config = TrainConfig(curriculum="sequential", weighting={"a": 2, "b": 0.5})
    assert config.curriculum == Curriculum("sequential")
    assert isinstance(config.weighting, Fixed) and dict(config.weighting.weights) == {"a": 2.0, "b": 0.5}
    assert TrainConfig(weighting=DWA(temperature=3.0)).weighting.temperature == 3.0


def test_a_config_is_frozen_and_hashable_when_its_weighting_is():
    config = TrainConfig(epochs=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 3
    assert hash(config) == hash(TrainConfig(epochs=2))


def test_with_options_replaces_fields_and_names_unknown_ones():
    config = TrainConfig().with_options(epochs=1, lr=0.1)
    assert (config.epochs, config.lr) == (1, 0.1)
    with pytest.raises(TypeError, match=r"unknown training option\(s\) \['epoch'\]; TrainConfig's options are \['epochs'"):
        TrainConfig().with_options(epoch=1)


def test_training_config_merges_keywords_into_the_given_config():
    base = TrainConfig(epochs=3, seed=4)
    assert training_config(base, {"seed": 5}) == TrainConfig(epochs=3, seed=5)
    assert training_config(None, {}) == TrainConfig()
    with pytest.raises(TypeError, match=r"config must be a mtl_core.TrainConfig, got dict"):
        training_config({"epochs": 1}, {})


def test_as_dict_is_json_ready():
    assert TrainConfig(weighting="dwa").as_dict() == {
        "epochs": 6, "batch_size": 64, "lr": 1e-3, "seed": 0, "curriculum": "round_robin",
        "weighting": {"name": "dwa", "temperature": 2.0}, "aggregator": None, "grad_norm_every": 10, "first_epoch": 0,
    }
    assert TrainConfig(aggregator="cagrad").as_dict()["aggregator"] == {"name": "cagrad", "c": 0.4, "smoothing": 1e-4, "tol": 1e-4, "max_iter": 100}


@pytest.mark.parametrize(
    "options, error, pattern",
    [
        (dict(epochs=-1), ValueError, r"epochs must be an int >= 0, got -1"),
        (dict(epochs=2.0), ValueError, r"epochs must be an int >= 0, got 2\.0"),
        (dict(batch_size=0), ValueError, r"batch_size must be an int >= 1, got 0"),
        (dict(lr=float("nan")), ValueError, r"lr must be a finite number > 0, got nan"),
        (dict(seed=True), ValueError, r"seed must be an int >= 0, got True"),
        (dict(curriculum="zip"), ValueError, r"curriculum must be one of .* got 'zip'"),
        (dict(weighting="softmax"), ValueError, r"weighting must be one of .* got 'softmax'"),
        (dict(weighting={"a": -1.0}), ValueError, r"loss weight of task 'a' must be a finite number >= 0, got -1\.0"),
        (dict(grad_norm_every=0), ValueError, r"grad_norm_every must be an int >= 1, got 0"),
        (dict(first_epoch=-1), ValueError, r"first_epoch must be an int >= 0, got -1"),
        (dict(progress="yes"), TypeError, r"progress must be True or False, got 'yes'"),
    ],
)
def test_bad_settings_are_refused_naming_the_value(options, error, pattern):
    with pytest.raises(error, match=pattern):
        TrainConfig(**options)
