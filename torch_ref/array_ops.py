"""``TORCH_OPS``: the shared maths' array operations in PyTorch, eager, on the tensors' device and dtype."""

from __future__ import annotations

import torch

from mtl_core.array_ops import ArrayOps, python_fori_loop, python_while_loop

TORCH_OPS = ArrayOps(
    xp=torch,
    asarray=lambda values, like: torch.as_tensor(values, dtype=like.dtype, device=like.device),
    eye=lambda n, like: torch.eye(n, dtype=like.dtype, device=like.device),
    solve=lambda a, b: torch.linalg.solve_ex(a, b).result,  # a singular system gives inf/NaN, never raises
    stop_gradient=lambda x: x.detach(),
    while_loop=python_while_loop,
    fori_loop=python_fori_loop,
)
