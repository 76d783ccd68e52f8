"""Data in the library's one format: a task's CSR inputs and canonical labels."""

from mtl_core.data.synthetic import DEFAULT_TASKS, synthetic_reviews
from mtl_core.data.task_data import TaskData
from mtl_core.data.text import TextTaskSource, TextTasks, load_text_tasks, vectorize_texts

__all__ = [
    "DEFAULT_TASKS",
    "TaskData",
    "TextTaskSource",
    "TextTasks",
    "load_text_tasks",
    "synthetic_reviews",
    "vectorize_texts",
]
