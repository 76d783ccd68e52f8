"""What the host decides for each step, drawn the same way for both backends.

A step's loss weights c_t (fixed, DWA's of the epoch, RLW's draw) and PCGrad's projection order are
decided outside the differentiated step, in numpy, from the weighting's and the aggregator's seeds
and a key: ``fit`` uses ``(epoch, step of the epoch)``, a direct call of a step ``(steps taken,)``.
Both backends call ``draw_step`` with the same key, so they train with the same choices.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from mtl_core.weighting import Weighting


class StepDraw(NamedTuple):
    task_weights: np.ndarray  # (T,) the c_t of the step, over all the model's tasks
    order: np.ndarray | None  # (n, n - 1) int32: PCGrad's projection order of the n present tasks, else None


def draw_step(weighting: Weighting, aggregator, base_weights: np.ndarray, key: tuple[int, ...], present: int) -> StepDraw:
    """The step's c_t (``base_weights`` unless the weighting draws its own) and the aggregator's order."""
    order = None if aggregator is None else aggregator.order(key, present)
    return StepDraw(weighting.step_task_weights(base_weights, key), None if order is None else np.asarray(order, np.int32))


def needs_key(weighting: Weighting, aggregator) -> bool:
    """Whether a step draws anything (RLW's weights, PCGrad's order): a direct call needs a key then."""
    return weighting.random_weights or (aggregator is not None and aggregator.random_order)
