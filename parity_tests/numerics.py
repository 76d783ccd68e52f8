"""The numerics every test session pins, so that GPU runs check what CPU runs check.

- jax's float32 matmuls at full precision (``highest``), as torch's default: on NVIDIA GPUs jax
  would use TF32-class products, which the 1e-5 tolerances (tolerances.py) would not survive.
- Deterministic reductions: tests compare reruns and resumed runs bit for bit, and a GPU's
  scatter-add (the first layer's gradient) or cuBLAS may otherwise sum in a different order each
  time. XLA's ``--xla_gpu_deterministic_ops`` and torch's deterministic algorithms (warnings only,
  for ops without a deterministic kernel) with the cuBLAS workspace setting they need.
All of it changes nothing on a CPU. It must run before either framework touches a device.
"""

from __future__ import annotations

import os

DETERMINISTIC_XLA = "--xla_gpu_deterministic_ops=true"


def pin() -> None:
    flags = os.environ.get("XLA_FLAGS", "")
    if DETERMINISTIC_XLA not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {DETERMINISTIC_XLA}".strip()
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    import jax
    import torch

    jax.config.update("jax_default_matmul_precision", "highest")
    torch.use_deterministic_algorithms(True, warn_only=True)
