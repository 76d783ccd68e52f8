"""Evaluation metrics per kind of task, computed from logits in numpy with scikit-learn.

binary: F1 of the positive class; multiclass: macro-F1; multilabel: micro-F1; regression: MSE.
(The history calls the number "f1" for every kind, as the blog's charts do; for regression it is MSE.)
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import f1_score, mean_squared_error

from mtl_core.tasks import TaskSpec

METRIC_NAMES = {"binary": "f1", "multiclass": "macro_f1", "multilabel": "micro_f1", "regression": "mse"}


def predict_labels(spec: TaskSpec, logits: np.ndarray) -> np.ndarray:
    """Hard predictions in the canonical label form of the task's kind."""
    logits = np.asarray(logits)
    if spec.kind == "multiclass":
        return logits.argmax(axis=1).astype(np.int32)
    if spec.kind in ("binary", "multilabel"):
        return (logits > 0).astype(np.float32)
    return logits


def task_metric(spec: TaskSpec, logits: np.ndarray, y: np.ndarray) -> float:
    """The task's metric for ``logits`` (n, num_outputs) against canonical labels ``y``."""
    predicted = predict_labels(spec, logits)
    if spec.kind == "binary":
        y, predicted = np.ravel(y), np.ravel(predicted)
    if spec.kind == "regression":
        return float(mean_squared_error(y, predicted))
    average = {"binary": "binary", "multiclass": "macro", "multilabel": "micro"}[spec.kind]
    labels = list(range(spec.num_outputs)) if spec.kind == "multiclass" else None
    return float(f1_score(y, predicted, average=average, labels=labels, zero_division=0.0))
