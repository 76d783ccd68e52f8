"""The recipe's optimisers in PyTorch: ``torch.optim.Adam`` (fused where the device supports it) and
lazy Adam, whose first-layer kernel updates only the rows a step's sparse input touches."""

from __future__ import annotations

import torch

from mtl_core.checkpoint import AdamHyper
from mtl_core.config import check_adam
from mtl_core.lazy_adam import row_update
from torch_ref.model import MultiTaskNetwork
from torch_ref.params import _check_model


def holds_parameters_of(optimizer: torch.optim.Optimizer, model: MultiTaskNetwork) -> bool:
    """Whether ``optimizer`` holds any of ``model``'s parameters (a subset, e.g. frozen layers, is the user's choice)."""
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    return any(id(p) in held for p in model.parameters())


def adam(model: MultiTaskNetwork, lr: float = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> torch.optim.Adam:
    """Adam over the model's parameters, one fused kernel for all of them (torch's defaults otherwise).

    Pass it to ``fit(..., optimizer=...)`` to keep Adam's state across several fits.
    """
    _check_model(model)
    lr, b1, b2, eps = check_adam(lr, b1, b2, eps)
    return torch.optim.Adam(model.parameters(), lr=lr, betas=(b1, b2), eps=eps, fused=True)


def lazy_adam(model: MultiTaskNetwork, lr: float = 1e-3, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> "LazyAdam":
    """Adam whose first-layer kernel (V, H) updates only the rows a step touches (mtl_core.lazy_adam).

    For ``fit(..., optimizer=...)`` and ``make_train_step``: their steps give the kernel a sparse
    gradient of the touched rows, so a step costs what its batches hold, not V x H. Needs sparse input.
    """
    _check_model(model)
    return LazyAdam(model, *check_adam(lr, b1, b2, eps))


class LazyAdam(torch.optim.Adam):
    """Fused Adam on every parameter but the first layer's kernel, which gets SparseAdam's row update.

    The kernel's state is laid out as Adam's ("step" a float32 scalar tensor, dense (V, H)
    "exp_avg" and "exp_avg_sq"), so checkpoints and ``state_dict`` treat both optimisers alike.
    Its gradient must be sparse: the forward pass runs inside ``model.trunk[0].sparse_gradient()``,
    as torch_ref's steps do. ``step()`` is Adam's own; step hooks around it update the kernel's rows
    first and hide its gradient from the fused kernel (which rejects sparse gradients) until it is done.
    (Overriding ``step`` would run the optimiser's step hooks twice once torch has patched Adam.step.)
    """

    def __init__(self, model: MultiTaskNetwork, lr: float, b1: float, b2: float, eps: float):
        super().__init__(model.parameters(), lr=lr, betas=(b1, b2), eps=eps, fused=True)
        self.kernel = model.trunk[0].weight
        self._kernel_grad = None  # the kernel's gradient while Adam's step runs without it
        self.register_step_pre_hook(LazyAdam._before_step)
        self.register_step_post_hook(LazyAdam._after_step)

    @torch.no_grad()
    def _before_step(self, args, kwargs) -> None:
        if len(args) > 1 or kwargs.get("closure") is not None:
            raise ValueError("lazy Adam takes no closure: compute the loss and call backward() before step()")
        grad = self.kernel.grad  # None when the kernel had no part in the loss: left alone, as by Adam
        if grad is None:
            return
        if not grad.is_sparse:
            raise ValueError(
                "lazy Adam needs a sparse gradient of the first layer's kernel, got a dense one: train with "
                "torch_ref.fit or make_train_step, or run the forward pass inside `with model.trunk[0].sparse_gradient():`"
            )
        self._update_touched_rows(grad)
        self._kernel_grad, self.kernel.grad = grad, None

    def _after_step(self, args, kwargs) -> None:
        del args, kwargs
        if self._kernel_grad is not None:
            self.kernel.grad, self._kernel_grad = self._kernel_grad, None

    def _update_touched_rows(self, grad: torch.Tensor) -> None:
        """SparseAdam's update of the rows present in ``grad`` (sparse (V, H), duplicates summed here)."""
        kernel = self.kernel
        (group,) = [g for g in self.param_groups if any(p is kernel for p in g["params"])]
        rows, values = touched_rows(grad)  # (r,), (r, H)
        state = self.state[kernel]
        if not state:
            state["step"] = torch.zeros((), dtype=torch.float32, device=kernel.device)
            state["exp_avg"] = torch.zeros_like(kernel, memory_format=torch.preserve_format)
            state["exp_avg_sq"] = torch.zeros_like(kernel, memory_format=torch.preserve_format)
        state["step"] += 1
        b1, b2 = group["betas"]
        hyper = AdamHyper(group["lr"], b1, b2, group["eps"])
        step = state["step"].double()  # bias corrections in float64, as fused Adam and SparseAdam compute them
        targets = (kernel, state["exp_avg"], state["exp_avg_sq"])
        for block in _row_blocks(rows.numel(), kernel):
            block_rows = rows[block]  # (b,)
            moved = row_update(torch, *(torch.index_select(t, 0, block_rows) for t in targets), values[block], step, hyper)
            for target, value in zip(targets, moved):
                target.index_copy_(0, block_rows, value)


def touched_rows(grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(rows (r,), their values (r, H)) of a sparse (V, H) gradient, each row once.

    torch_ref's CPU first layer gives each row once and in order, but autograd hands the gradient
    over without its coalesced flag: checking the order spares ``coalesce()``'s sort and copy. (On
    an accelerator the rows come from embedding_bag, a row per non-zero: no check, no host sync.)
    """
    rows = grad._indices()[0]
    if grad.is_coalesced() or (rows.device.type == "cpu" and bool((rows[1:] > rows[:-1]).all())):
        return rows, grad._values()
    grad = grad.coalesce()
    return grad.indices()[0], grad.values()


CPU_BLOCK_ENTRIES = 2**17  # (rows x H) entries the CPU updates at once: 512 KiB of float32 per temporary


def _row_blocks(num_rows: int, kernel: torch.Tensor) -> list[slice]:
    """Slices of the touched rows, updated one after the other.

    On a CPU, row_update's temporaries of all the rows at once (several MiB each) are fresh pages
    for every operation, and faulting them in cost more than the arithmetic (measured: 5-20 ms a
    step at 5,000-7,000 rows x 200, against 3-6 ms in blocks); blocks stay in the cache and the
    allocator's heap. An accelerator takes all rows in one block: fewer kernel launches.
    """
    size = max(1, CPU_BLOCK_ENTRIES // kernel.shape[1]) if kernel.device.type == "cpu" else max(num_rows, 1)
    return [slice(start, start + size) for start in range(0, num_rows, size)]
