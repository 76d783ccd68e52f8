"""mtl_core.checkpoint: the one safetensors file both backends write and read."""

import hashlib
import json
import re

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import save_file

from mtl_core import TaskSpec, check_architecture, resolve_weighting
from mtl_core.checkpoint import FORMAT, AdamHyper, AdamState, Checkpoint, digest, read_checkpoint, write_checkpoint
from mtl_core.layout import canonical_shapes

TASKS = (TaskSpec("movie", "binary", 1), TaskSpec("yelp", "multiclass", 3))
ARCH = check_architecture(TASKS, (8, 4), "tanh", input_dim=10)


def random_arrays(shapes, seed):
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}


def make_checkpoint(weighting="sum", with_adam=True):
    weighting = resolve_weighting(weighting, TASKS)
    shapes = canonical_shapes(ARCH)
    names = list(shapes) + (["weighting.log_var"] if weighting.learnable else [])
    adam_shapes = {**shapes, "weighting.log_var": (2,)}
    adam = AdamState(
        AdamHyper(lr=0.01, b1=0.8, b2=0.99, eps=1e-7),
        random_arrays({n: adam_shapes[n] for n in names}, 1),
        {n: np.abs(v) for n, v in random_arrays({n: adam_shapes[n] for n in names}, 2).items()},
        {n: i + 1 for i, n in enumerate(names)},
    )
    return Checkpoint(
        arch=ARCH,
        params=random_arrays(shapes, 0),
        weighting=weighting,
        log_variances=np.array([0.5, -0.25], np.float32) if weighting.learnable else None,
        adam=adam if with_adam else None,
        vocabulary=("bad", "dull", "film", "fine", "good", "long", "plot", "sad", "story", "worst"),  # ARCH's 10 columns
        label_names={"movie": ("no", "yes"), "yelp": ("high", "low", "mid")},
    )


def rewrite(path, edit_tensors=None, edit_metadata=None, sign=True):
    """Re-save a checkpoint file after editing its tensors and/or metadata in place; ``sign``: with
    the edited tensors' digests (a consistent file of the wrong content), else with the old ones."""
    with safe_open(str(path), framework="numpy") as handle:
        metadata = dict(handle.metadata())
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    (edit_tensors or (lambda t: None))(tensors)
    if sign:
        metadata["sha256"] = json.dumps({name: digest(value) for name, value in tensors.items()})
    (edit_metadata or (lambda m: None))(metadata)
    save_file(tensors, str(path), metadata=metadata)
    return path


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "model.safetensors"
    write_checkpoint(path, make_checkpoint())
    return path


@pytest.mark.parametrize("weighting", ["sum", "uncertainty", {"movie": 2.0, "yelp": 0.5}, "dwa"])
def test_a_checkpoint_round_trips_every_field(tmp_path, weighting):
    original = make_checkpoint(weighting)
    write_checkpoint(tmp_path / "c.safetensors", original)
    loaded = read_checkpoint(tmp_path / "c.safetensors")
    assert loaded.arch == original.arch and loaded.weighting == original.weighting
    assert loaded.params.keys() == original.params.keys()
    assert all(np.array_equal(loaded.params[k], original.params[k]) for k in original.params)
    assert loaded.vocabulary == original.vocabulary and loaded.label_names == original.label_names
    if original.log_variances is None:
        assert loaded.log_variances is None
    else:
        np.testing.assert_array_equal(loaded.log_variances, original.log_variances)
    assert loaded.adam.hyper == original.adam.hyper and loaded.adam.step == original.adam.step
    for moment in ("exp_avg", "exp_avg_sq"):
        saved_moments, loaded_moments = getattr(original.adam, moment), getattr(loaded.adam, moment)
        assert all(np.array_equal(saved_moments[k], loaded_moments[k]) for k in saved_moments)


@pytest.mark.parametrize("optimizer", ["adam", "lazy_adam"])
def test_the_optimizer_and_the_hashing_round_trip(tmp_path, optimizer):
    original = make_checkpoint()
    original.adam.optimizer, original.vocabulary, original.hash_features = optimizer, None, ARCH.input_dim
    write_checkpoint(tmp_path / "c.safetensors", original)
    loaded = read_checkpoint(tmp_path / "c.safetensors")
    assert (loaded.adam.optimizer, loaded.vocabulary, loaded.hash_features) == (optimizer, None, ARCH.input_dim)


def test_a_checkpoint_before_lazy_adam_holds_adam_and_a_vocabulary(saved):
    rewrite(saved, edit_metadata=lambda m: m.pop("optimizer"))
    loaded = read_checkpoint(saved)
    assert loaded.adam.optimizer == "adam" and loaded.hash_features is None and loaded.vocabulary == make_checkpoint().vocabulary


def test_a_checkpoint_without_optimizer_state_reads_back_without_one(tmp_path):
    write_checkpoint(tmp_path / "c.safetensors", make_checkpoint(with_adam=False))
    assert read_checkpoint(tmp_path / "c.safetensors").adam is None


def test_writing_leaves_only_the_checkpoint_and_replaces_an_older_one(tmp_path, saved):
    newer = make_checkpoint("uncertainty")
    write_checkpoint(saved, newer)
    assert [p.name for p in tmp_path.iterdir()] == ["model.safetensors"]
    assert read_checkpoint(saved).weighting.name == "uncertainty"


def test_write_rejects_params_that_do_not_fit_the_architecture(tmp_path):
    checkpoint = make_checkpoint()
    checkpoint.params["heads.yelp.bias"] = np.zeros(4, np.float32)
    with pytest.raises(ValueError, match=r"params\['heads\.yelp\.bias'\] has shape \(4,\), expected \(3,\)"):
        write_checkpoint(tmp_path / "c.safetensors", checkpoint)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "edit, pattern",
    [
        (lambda c: setattr(c, "vocabulary", ("bad", "good")), r"the vocabulary has 2 words, the network reads 10 columns"),
        (lambda c: (setattr(c, "vocabulary", None), setattr(c, "hash_features", 1024)), r"hash_features 1024 is not the network's input_dim 10"),
        (lambda c: setattr(c, "hash_features", 10), r"a vocabulary or hash_features, not both"),
        (lambda c: c.label_names.update(yelp=("low", "high")), r"task 'yelp' has 2 label names for a multiclass head that needs 3"),
        (lambda c: c.label_names.update(imdb=("no", "yes")), r"label_names names task 'imdb'"),
        (lambda c: setattr(c.adam, "hyper", AdamHyper(lr=-1.0)), r"Adam's lr must be a finite number > 0, got -1\.0"),
    ],
    ids=["vocabulary_of_another_width", "hashing_of_another_width", "vocabulary_and_hashing", "label_names_too_few",
         "label_names_of_an_unknown_task", "negative_lr"],
)
def test_write_refuses_what_reading_back_or_predicting_would_refuse(tmp_path, edit, pattern):
    checkpoint = make_checkpoint()
    edit(checkpoint)
    with pytest.raises(ValueError, match=pattern):
        write_checkpoint(tmp_path / "c.safetensors", checkpoint)
    assert list(tmp_path.iterdir()) == []


def test_read_rejects_a_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"absent\.safetensors: no such checkpoint file"):
        read_checkpoint(tmp_path / "absent.safetensors")
    with pytest.raises(IsADirectoryError, match=r": is a folder, not a checkpoint file"):
        read_checkpoint(tmp_path)
    with pytest.raises(TypeError, match=r"path must be a str or os\.PathLike naming a checkpoint file, got NoneType"):
        read_checkpoint(None)


def test_write_names_a_missing_folder_or_a_folder_given_as_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"c\.safetensors: no such folder '.*nowhere'"):
        write_checkpoint(tmp_path / "nowhere" / "c.safetensors", make_checkpoint())
    with pytest.raises(IsADirectoryError, match=r": is a folder; give a file name in it"):
        write_checkpoint(tmp_path, make_checkpoint())


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"\x08\x00\x00\x00\x00\x00\x00\x00{}"])
def test_read_rejects_files_that_are_not_safetensors(tmp_path, content):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"junk\.safetensors: not a"):
        read_checkpoint(path)


def test_read_rejects_a_truncated_checkpoint(saved):
    saved.write_bytes(saved.read_bytes()[:-40])
    with pytest.raises(ValueError, match=r"model\.safetensors: not a readable safetensors checkpoint"):
        read_checkpoint(saved)


def test_read_rejects_a_foreign_safetensors_file(tmp_path):
    path = tmp_path / "foreign.safetensors"
    save_file({"weight": np.zeros(3, np.float32)}, str(path))
    with pytest.raises(ValueError, match=rf"not an mtl-twins checkpoint \(format None, expected '{re.escape(FORMAT)}'\)"):
        read_checkpoint(path)


@pytest.mark.parametrize(
    "edit_tensors, edit_metadata, pattern",
    [
        (lambda t: t.pop("heads.movie.bias"), None, r"missing \['heads\.movie\.bias'\]"),
        (lambda t: t.update({"trunk.0.kernel": np.zeros((10, 7), np.float32)}), None, r"'trunk\.0\.kernel'\] has shape \(10, 7\), expected \(10, 8\)"),
        (lambda t: t.pop("adam.exp_avg.trunk.1.bias"), None, r"the optimizer state lacks \['adam\.exp_avg\.trunk\.1\.bias'\]"),
        (lambda t: t.update({"adam.exp_avg_sq.heads.yelp.kernel": np.zeros((4, 2), np.float32)}), None, r"Adam moments of 'heads\.yelp\.kernel' do not have the parameter's shape \(4, 3\)"),
        (lambda t: t.update({"adam.step.trunk.0.bias": np.zeros(2, np.int64)}), None, r"step counts must be int64 arrays of shape \(1,\)"),
        (None, lambda m: m.update({"tasks": "[[oops"}), r"metadata 'tasks' is not valid JSON"),
        (None, lambda m: m.pop("hidden_dims"), r"checkpoint metadata lacks 'hidden_dims'"),
        (None, lambda m: m.update({"activation": "softmax"}), r"does not describe a network .*got 'softmax'"),
        (None, lambda m: m.update({"weighting": '{"name": "uncertainty", "fixed": null, "temperature": 2.0}'}), r"needs 'weighting\.log_var' of shape \(2,\)"),
        (None, lambda m: m.update({"optimizer": "sgd"}), r"unknown optimizer 'sgd' in the checkpoint, expected one of \('adam', 'lazy_adam'\)"),
        (None, lambda m: m.update({"hash_features": "12"}), r"hash_features 12 is not the network's input_dim 10"),
    ],
)
def test_read_rejects_corrupted_contents_naming_what_is_wrong(saved, edit_tensors, edit_metadata, pattern):
    rewrite(saved, edit_tensors, edit_metadata)
    with pytest.raises(ValueError, match=pattern):
        read_checkpoint(saved)


def test_damaged_tensor_bytes_are_named_on_reading(saved):
    def damage(tensors):
        tensors["trunk.0.bias"] = tensors["trunk.0.bias"].copy()
        tensors["trunk.0.bias"][1] += 1.0

    rewrite(saved, damage, sign=False)
    with pytest.raises(ValueError, match=r"model\.safetensors: tensor 'trunk\.0\.bias' does not match its SHA-256 digest"):
        read_checkpoint(saved)


def test_a_nan_weight_is_refused_even_with_matching_digests(saved):
    def poison(tensors):
        tensors["heads.yelp.bias"] = tensors["heads.yelp.bias"].copy()
        tensors["heads.yelp.bias"][0] = np.nan

    rewrite(saved, poison)
    with pytest.raises(ValueError, match=r"tensor 'heads\.yelp\.bias' holds NaN or inf"):
        read_checkpoint(saved)


def test_writing_refuses_non_finite_weights(tmp_path):
    checkpoint = make_checkpoint()
    checkpoint.params["trunk.1.kernel"][0, 0] = np.inf
    with pytest.raises(ValueError, match=r"params\['trunk\.1\.kernel'\] holds 1 NaN or inf values"):
        write_checkpoint(tmp_path / "m.safetensors", checkpoint)
    assert not list(tmp_path.iterdir())  # nothing written, not even a temporary


def test_a_checkpoint_of_the_format_before_digests_still_reads(saved):
    rewrite(saved, edit_metadata=lambda m: (m.pop("sha256"), m.update(format="mtl-twins-checkpoint/1")))
    assert read_checkpoint(saved).arch == ARCH


@pytest.mark.parametrize(
    "array",
    [np.arange(12, dtype=np.float32).reshape(3, 4), np.zeros((0, 3)), np.array(2.5), np.arange(9, dtype=np.int64)[::2],
     np.asfortranarray(np.ones((3, 2), np.float32)), np.array([True, False])],
    ids=["matrix", "empty", "scalar", "strided", "fortran", "bool"],
)
def test_a_digest_is_the_sha256_of_dtype_shape_and_bytes_as_files_record_it(array):
    # The recorded digests of files already written must keep verifying, however the bytes are read.
    value = np.ascontiguousarray(array)
    assert digest(array) == hashlib.sha256(f"{value.dtype.str}{value.shape}".encode() + value.tobytes()).hexdigest()
