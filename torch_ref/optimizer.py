"""The recipe's optimiser in PyTorch: ``torch.optim.Adam``, fused where the device supports it."""

from __future__ import annotations

import torch

from torch_ref.model import MultiTaskNetwork


def adam(model: MultiTaskNetwork, lr: float = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> torch.optim.Adam:
    """Adam over the model's parameters, one fused kernel for all of them (torch's defaults otherwise).

    Pass it to ``fit(..., optimizer=...)`` to keep Adam's state across several fits.
    """
    if not isinstance(model, MultiTaskNetwork):
        raise TypeError(f"model must be a torch_ref.MultiTaskNetwork, got {type(model).__name__}")
    return torch.optim.Adam(model.parameters(), lr=lr, betas=(b1, b2), eps=eps, fused=True)
