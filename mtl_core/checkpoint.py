"""The checkpoint file both backends write and read: one safetensors file, no pickle.

Tensors, all under canonical names (mtl_core.layout), kernels (in, out):
  "{name}"                    the network's weights (and "weighting.log_var" when learnt)
  "adam.exp_avg.{name}"       Adam's first moment,  "adam.exp_avg_sq.{name}" its second moment,
  "adam.step.{name}"          how many updates that parameter has had (int64 scalar)
  "weighting.state.{key}"     the loss weighting's own state between steps (e.g. FAMO's logits)
Metadata (strings): the format, the architecture (tasks, hidden_dims, activation, input_dim), the
weighting (its ``config()``), Adam's hyper-parameters and "optimizer" ("adam", or "lazy_adam", whose
first-layer kernel updates only the rows a step touches: mtl_core.lazy_adam; same state layout),
"sha256" (JSON {tensor: hex digest of its dtype, shape and bytes}, verified on every read, so
damaged bytes are named rather than loaded), and, from the CLI, "label_names" and how texts became
columns: a "vocabulary" or "hash_features" (JSON). Non-finite tensors are refused on writing and
reading. Files are written to a temporary name and renamed (mtl_core.files), so a crash never
leaves half a file in place.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file

from mtl_core.architecture import Architecture, check_architecture
from mtl_core.config import check_adam
from mtl_core.files import atomic_write
from mtl_core.layout import canonical_shapes, check_params
from mtl_core.tasks import TaskSpec
from mtl_core.weighting import Weighting, weighting_from_config

FORMAT = "mtl-twins-checkpoint/2"
FORMATS_WITHOUT_DIGESTS = ("mtl-twins-checkpoint/1",)  # read as before: no digests to verify
LOG_VARIANCE = "weighting.log_var"
WEIGHTING_STATE = "weighting.state."
MOMENTS = ("exp_avg", "exp_avg_sq")
OPTIMIZERS = ("adam", "lazy_adam")  # what the Adam state belongs to; the name of mtl_core.lazy_adam.LAZY_ADAM


@dataclass(frozen=True)
class AdamHyper:
    lr: float = 1e-3
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8


@dataclass
class AdamState:
    """Adam's state per canonical parameter name: moments shaped like the parameter, step counts."""

    hyper: AdamHyper
    exp_avg: dict[str, np.ndarray]
    exp_avg_sq: dict[str, np.ndarray]
    step: dict[str, int]
    optimizer: str = "adam"  # one of OPTIMIZERS: the optimiser a resumed run must rebuild


@dataclass
class Checkpoint:
    arch: Architecture
    params: dict[str, np.ndarray]
    weighting: Weighting
    log_variances: np.ndarray | None = None
    adam: AdamState | None = None
    vocabulary: tuple[str, ...] | None = None
    label_names: dict[str, tuple[str, ...]] = field(default_factory=dict)
    weighting_state: dict[str, np.ndarray] = field(default_factory=dict)  # the weighting's init_state() keys
    hash_features: int | None = None  # words hashed into this many columns (mtl_core.data.text), instead of a vocabulary


def label_name_count(spec: TaskSpec) -> int:
    """How many label names a task's head has: 2 for binary (negative, positive), else one per output."""
    return 2 if spec.kind == "binary" else spec.num_outputs


def _check_hashing(hashed, arch: Architecture, path: Path) -> None:
    if hashed is not None and (isinstance(hashed, bool) or not isinstance(hashed, (int, np.integer)) or hashed != arch.input_dim):
        raise ValueError(f"{path}: hash_features {hashed!r} is not the network's input_dim {arch.input_dim}")


def _check_text_columns(checkpoint: Checkpoint, path: Path) -> None:
    """Refuse, before writing, what reading the checkpoint back (or predicting with it) would refuse."""
    arch = checkpoint.arch
    if checkpoint.vocabulary is not None and checkpoint.hash_features is not None:
        raise ValueError(f"{path}: give a vocabulary or hash_features, not both: texts become columns one way")
    if checkpoint.vocabulary is not None and len(checkpoint.vocabulary) != arch.input_dim:
        raise ValueError(f"{path}: the vocabulary has {len(checkpoint.vocabulary)} words, the network reads {arch.input_dim} columns")
    _check_hashing(checkpoint.hash_features, arch, path)
    specs = {t.name: t for t in arch.tasks}
    for name, names in checkpoint.label_names.items():
        if name not in specs:
            raise ValueError(f"{path}: label_names names task {name!r}; the network's tasks are {list(specs)}")
        if len(names) != label_name_count(specs[name]):
            raise ValueError(f"{path}: task {name!r} has {len(names)} label names for a {specs[name].kind} head that needs "
                             f"{label_name_count(specs[name])}")


def _trained_names(arch: Architecture, weighting: Weighting) -> list[str]:
    return list(canonical_shapes(arch)) + ([LOG_VARIANCE] if weighting.learnable else [])


def write_checkpoint(path: str | os.PathLike, checkpoint: Checkpoint) -> None:
    """Write ``checkpoint`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    arch = checkpoint.arch
    _check_text_columns(checkpoint, Path(path))
    if checkpoint.adam is not None:
        check_adam(**vars(checkpoint.adam.hyper))
    tensors = dict(check_params(checkpoint.params, canonical_shapes(arch)))
    if checkpoint.weighting.learnable:
        tensors[LOG_VARIANCE] = np.asarray(checkpoint.log_variances)
    tensors.update({WEIGHTING_STATE + key: np.asarray(value) for key, value in checkpoint.weighting_state.items()})
    if checkpoint.adam is not None:
        for name in _trained_names(arch, checkpoint.weighting):
            for moment in MOMENTS:
                tensors[f"adam.{moment}.{name}"] = np.asarray(getattr(checkpoint.adam, moment)[name])
            tensors[f"adam.step.{name}"] = np.asarray([checkpoint.adam.step[name]], dtype=np.int64)
    w = checkpoint.weighting
    metadata = {
        "format": FORMAT,
        "tasks": json.dumps([[t.name, t.kind, t.num_outputs] for t in arch.tasks]),
        "hidden_dims": json.dumps(list(arch.hidden_dims)),
        "activation": arch.activation,
        "input_dim": str(arch.input_dim),
        "weighting": json.dumps(w.config()),
        "label_names": json.dumps({k: list(v) for k, v in checkpoint.label_names.items()}),
    }
    if checkpoint.adam is not None:
        metadata["adam"] = json.dumps(vars(checkpoint.adam.hyper))
        metadata["optimizer"] = checkpoint.adam.optimizer
    if checkpoint.vocabulary is not None:
        metadata["vocabulary"] = json.dumps(list(checkpoint.vocabulary))
    if checkpoint.hash_features is not None:
        metadata["hash_features"] = json.dumps(int(checkpoint.hash_features))
    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    _check_finite(tensors, Path(path))
    metadata["sha256"] = json.dumps({name: digest(value) for name, value in tensors.items()})
    atomic_write(path, lambda temporary: save_file(tensors, temporary, metadata=metadata))


def digest(array: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and bytes (hex)."""
    value = np.ascontiguousarray(array)
    hashed = hashlib.sha256(f"{value.dtype.str}{value.shape}".encode())
    hashed.update(memoryview(value.reshape(-1)).cast("B"))  # the bytes in place: no copy of a GB-sized kernel
    return hashed.hexdigest()


def _check_finite(tensors: dict, path: Path) -> None:
    for name, value in tensors.items():
        if np.issubdtype(value.dtype, np.floating) and not np.all(np.isfinite(value)):
            raise ValueError(f"{path}: tensor {name!r} holds NaN or inf: a checkpoint must hold usable numbers")


def _verify(tensors: dict, metadata: dict, path: Path) -> None:
    """Every tensor matches its recorded digest (files of the format before digests have none)."""
    if metadata.get("format") in FORMATS_WITHOUT_DIGESTS:
        return
    recorded = _metadata_json(metadata, "sha256", path)
    if set(recorded) != set(tensors):
        raise ValueError(f"{path}: the file's tensors {sorted(tensors)} are not the ones its digests list {sorted(recorded)}")
    for name, value in tensors.items():
        if digest(value) != recorded[name]:
            raise ValueError(f"{path}: tensor {name!r} does not match its SHA-256 digest: the file is damaged")


def _metadata_json(metadata: dict, key: str, path: Path, default=None):
    if key not in metadata:
        if default is not None:
            return default
        raise ValueError(f"{path}: checkpoint metadata lacks {key!r}")
    try:
        return json.loads(metadata[key])
    except json.JSONDecodeError:
        raise ValueError(f"{path}: checkpoint metadata {key!r} is not valid JSON") from None


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read and check a checkpoint; corrupted, truncated or foreign files raise ValueError."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike naming a checkpoint file, got {type(path).__name__}")
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path}: is a folder, not a checkpoint file")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint file")
    try:
        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except (SafetensorError, OSError, ValueError) as error:
        raise ValueError(f"{path}: not a readable safetensors checkpoint ({error})") from None
    if metadata.get("format") not in (FORMAT,) + FORMATS_WITHOUT_DIGESTS:
        raise ValueError(f"{path}: not an mtl-twins checkpoint (format {metadata.get('format')!r}, expected {FORMAT!r})")
    _verify(tensors, metadata, path)
    _check_finite(tensors, path)
    try:
        tasks = [TaskSpec(name, kind, int(n)) for name, kind, n in _metadata_json(metadata, "tasks", path)]
        arch = check_architecture(tasks, _metadata_json(metadata, "hidden_dims", path), metadata.get("activation"), int(metadata.get("input_dim", "0")))
        weighting = weighting_from_config(_metadata_json(metadata, "weighting", path), tasks)
    except (TypeError, ValueError, KeyError) as error:
        raise ValueError(f"{path}: checkpoint metadata does not describe a network ({error})") from None
    names = _trained_names(arch, weighting)
    params = {name: tensors[name] for name in canonical_shapes(arch) if name in tensors}
    try:
        params = check_params(params, canonical_shapes(arch))
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    log_variances = tensors.get(LOG_VARIANCE) if weighting.learnable else None
    if weighting.learnable and (log_variances is None or log_variances.shape != (len(tasks),)):
        raise ValueError(f"{path}: uncertainty weighting needs {LOG_VARIANCE!r} of shape ({len(tasks)},)")
    adam = None
    if "adam" in metadata:
        hyper = AdamHyper(**_metadata_json(metadata, "adam", path))
        optimizer = metadata.get("optimizer", "adam")  # files before lazy Adam hold Adam's state
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"{path}: unknown optimizer {optimizer!r} in the checkpoint, expected one of {OPTIMIZERS}")
        missing = [f"adam.{kind}.{n}" for n in names for kind in MOMENTS + ("step",) if f"adam.{kind}.{n}" not in tensors]
        if missing:
            raise ValueError(f"{path}: the optimizer state lacks {missing[:3]}{'...' if len(missing) > 3 else ''}")
        if any(tensors[f"adam.step.{n}"].shape != (1,) for n in names):
            raise ValueError(f"{path}: Adam step counts must be int64 arrays of shape (1,)")
        adam = AdamState(
            hyper,
            *({n: tensors[f"adam.{kind}.{n}"] for n in names} for kind in MOMENTS),
            {n: int(tensors[f"adam.step.{n}"][0]) for n in names},
            optimizer,
        )
        for n in names:
            shape = params[n].shape if n in params else (len(tasks),)
            if adam.exp_avg[n].shape != shape or adam.exp_avg_sq[n].shape != shape:
                raise ValueError(f"{path}: Adam moments of {n!r} do not have the parameter's shape {shape}")
    vocabulary = _metadata_json(metadata, "vocabulary", path, default=[]) or None
    label_names = {k: tuple(v) for k, v in _metadata_json(metadata, "label_names", path, default={}).items()}
    state = _weighting_state(tensors, weighting, path)
    hash_features = _metadata_json(metadata, "hash_features", path) if "hash_features" in metadata else None
    _check_hashing(hash_features, arch, path)
    vocabulary = None if vocabulary is None else tuple(vocabulary)
    return Checkpoint(arch, params, weighting, log_variances, adam, vocabulary, label_names, state, hash_features)


def _weighting_state(tensors: dict, weighting: Weighting, path: Path) -> dict[str, np.ndarray]:
    """The saved state of the weighting, checked against the state it starts from (keys and shapes)."""
    expected = weighting.init_state()
    found = {key[len(WEIGHTING_STATE) :]: value for key, value in tensors.items() if key.startswith(WEIGHTING_STATE)}
    if found.keys() != expected.keys() or any(found[k].shape != expected[k].shape for k in expected):
        shapes = {k: tuple(v.shape) for k, v in expected.items()}
        raise ValueError(f"{path}: {weighting.name} weighting needs the state {shapes}, the file holds {sorted(found)}")
    return found
