"""The baseline: the multi-task recipe of the seed blog post, as published, in our own words.

What it does, and what it costs: a ``Dataset`` that densifies one CSR row each time a row is read
(through int8, as the post does), one shuffling ``DataLoader`` per task, the loaders ``zip``ped so
that each step takes one batch of every task, a dense ``nn.Linear`` trunk with a sigmoid, one
Linear head per task, BCE-with-logits for binary tasks and cross-entropy against one-hot float
targets for the others, the summed loss, ``loss.item()`` logged every step, and the default
(for-each, not fused) ``torch.optim.Adam``. Data preparation is inside every timed step.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from mtl_core import TaskSpec
from mtl_core.data import TaskData


class RowDataset(Dataset):
    """One task's reviews; each row becomes a dense float vector (input_dim,) when it is read."""

    def __init__(self, X: sp.csr_matrix, targets: np.ndarray):
        if X.shape[0] != targets.shape[0]:
            raise ValueError(f"X has {X.shape[0]} rows but targets has {targets.shape[0]}")
        self.X = X
        self.targets = torch.from_numpy(targets).float()

    def __len__(self) -> int:
        return self.targets.shape[0]

    def __getitem__(self, index: int):
        row = torch.from_numpy(np.asarray(self.X[index].astype(np.int8).todense())).float().squeeze()
        return row, self.targets[index]


def float_targets(spec: TaskSpec, y: np.ndarray) -> np.ndarray:
    """The post's targets: a (n, 1) 0/1 column for a binary task, one-hot rows (n, k) otherwise."""
    if spec.kind == "multiclass":
        return np.eye(spec.num_outputs, dtype=np.float32)[y]
    return np.asarray(y, dtype=np.float32).reshape(len(y), -1)


class BlogNetwork(nn.Module):
    """hidden Linear (dense, input_dim -> hidden) -> sigmoid -> the Linear head of ``task_id``."""

    def __init__(self, input_dim: int, head_widths: list[int], hidden_dim: int = 200):
        super().__init__()
        self.hidden = nn.Linear(input_dim, hidden_dim)
        self.finals = nn.ModuleList([nn.Linear(hidden_dim, width) for width in head_widths])

    def forward(self, x: torch.Tensor, task_id: int) -> torch.Tensor:
        return self.finals[task_id](torch.sigmoid(self.hidden(x)))


class SeedRecipe:
    """The post's model, losses, Adam and loaders for ``data``; ``train_epoch`` is its loop."""

    def __init__(self, data: dict[str, TaskData], batch_size: int, hidden: int, lr: float, device: torch.device):
        specs = [task.spec for task in data.values()]
        self.device = device
        self.loaders = [
            DataLoader(RowDataset(task.X, float_targets(task.spec, task.y)), batch_size=batch_size, shuffle=True)
            for task in data.values()
        ]
        input_dim = next(iter(data.values())).input_dim
        self.model = BlogNetwork(input_dim, [s.num_outputs for s in specs], hidden).to(device)
        self.loss_fns = [nn.BCEWithLogitsLoss() if s.kind == "binary" else nn.CrossEntropyLoss() for s in specs]
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)
        self.losses: list[float] = []

    def train_epoch(self) -> int:
        """One pass of the zipped loaders; returns the number of optimiser steps taken."""
        steps = 0
        for batches in zip(*self.loaders):
            loss = sum(
                loss_fn(self.model(x.to(self.device), task_id), y.to(self.device))
                for task_id, ((x, y), loss_fn) in enumerate(zip(batches, self.loss_fns))
            )
            self.losses.append(loss.item())
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            steps += 1
        return steps
