"""The PyTorch reference implementation: the blog's recipe, generalised to any number of tasks."""

from torch_ref.aggregate import aggregate
from torch_ref.checkpoint import load_checkpoint, save_checkpoint
from torch_ref.inputs import SparseRows, sparse_rows
from torch_ref.model import MultiTaskNetwork
from torch_ref.optimizer import adam, lazy_adam
from torch_ref.params import export_params, import_params
from torch_ref.step import TrainStep, make_train_step
from torch_ref.train import fit

__all__ = [
    "aggregate",
    "MultiTaskNetwork",
    "SparseRows",
    "TrainStep",
    "adam",
    "export_params",
    "fit",
    "import_params",
    "lazy_adam",
    "load_checkpoint",
    "make_train_step",
    "save_checkpoint",
    "sparse_rows",
]
