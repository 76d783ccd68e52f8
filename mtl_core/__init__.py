"""What both backends share and neither framework owns. Imports neither torch nor jax."""

from mtl_core.architecture import ACTIVATIONS, Architecture, check_architecture
from mtl_core.config import TrainConfig
from mtl_core.curricula import CURRICULA, Curriculum, epoch_schedule
from mtl_core.sparse import PaddedRows, pad_rows
from mtl_core.tasks import KINDS, TaskSpec, check_tasks, resolve_task_id
from mtl_core.weighting import WEIGHTINGS, Weighting, resolve_weighting

__all__ = [
    "ACTIVATIONS",
    "Architecture",
    "CURRICULA",
    "Curriculum",
    "KINDS",
    "PaddedRows",
    "TaskSpec",
    "TrainConfig",
    "WEIGHTINGS",
    "Weighting",
    "check_architecture",
    "check_tasks",
    "epoch_schedule",
    "pad_rows",
    "resolve_task_id",
    "resolve_weighting",
]
