"""``--device cpu|gpu|auto``: where each backend runs, chosen before any data is read or written.

A GPU that was asked for but is missing is an error (one line, exit 2), never a silent fall-back to
the CPU. On a GPU both backends run float32 matmuls in full float32 (jax would default to TF32 on
NVIDIA GPUs, torch does not), so that the two still train one model.
"""

from __future__ import annotations

DEVICES = ("auto", "cpu", "gpu")


def _torch_device(wanted: str) -> str:
    import torch

    available = torch.cuda.is_available()
    if wanted == "gpu" and not available:
        raise ValueError(f"--device gpu: torch {torch.__version__} sees no GPU (torch.cuda.is_available() is False)")
    if available and wanted != "cpu":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        return "cuda"
    return "cpu"


def _jax_device(wanted: str):
    import jax

    try:
        gpus = jax.devices("gpu")
    except RuntimeError:
        gpus = []
    if wanted == "gpu" and not gpus:
        raise ValueError(f"--device gpu: jax {jax.__version__} has no GPU backend (jax.devices('gpu') finds none)")
    if gpus and wanted != "cpu":
        jax.config.update("jax_default_matmul_precision", "highest")
        return gpus[0]
    return jax.devices("cpu")[0]


def resolve(wanted: str, backend: str):
    """The device ``backend`` ("torch" or "jax") runs on for ``--device wanted``: a torch device
    string or a jax Device. Raises ValueError when a GPU is asked for and there is none."""
    if wanted not in DEVICES:
        raise ValueError(f"--device must be one of {DEVICES}, got {wanted!r}")
    return _torch_device(wanted) if backend == "torch" else _jax_device(wanted)


def describe(device) -> str:
    """How reports name a device: "cpu", "cuda", or jax's platform and device kind ("gpu: NVIDIA H200");
    a kind that only repeats the platform (jax's CPU says "cpu") is left out."""
    if isinstance(device, str):
        return device
    return device.platform if device.device_kind == device.platform else f"{device.platform}: {device.device_kind}"
