"""Hypothesis strategies for whole multi-task problems: the one source of every test's inputs.

A drawn problem is small plain data (specs, sizes, seeds); its arrays (weights, batches) are made
from the seeds with numpy on demand, so that failures print short and shrink well. Every array
value is a float32 number, also in float64 tests, so that dense, sparse and float64 paths see the
very same inputs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from hypothesis import strategies as st

from mtl_core import ACTIVATIONS, CURRICULA, KINDS, WEIGHTINGS, TaskSpec, check_architecture, epoch_schedule
from mtl_core.data import TaskData
from mtl_core.layout import initial_params
from mtl_core.tasks import TOTAL
from parity_tests.tolerances import adam_domain

INPUT_KINDS = ("counts", "normal", "zeros", "large")
LARGE = 1e3  # |x| up to this: logits saturate, which tests the losses' numerical stability
MAX_TASKS, MAX_LAYERS, MAX_WIDTH, MAX_INPUT_DIM, MAX_BATCH = 5, 3, 64, 300, 40
# Names that have broken weight-naming schemes before: dots, layout words, spaces, non-ASCII.
TRICKY_NAMES = ("a.b", ".", "heads.0", "trunk.0.kernel", "kernel", "bias", " x ", "0", "ü", "名前", "a/b", "weighting", "total")


class Batch(NamedTuple):
    """One task's batch: x (n, input_dim) dense float32-valued, labels (canonical), 0/1 row mask or None."""

    x: np.ndarray
    y: np.ndarray
    mask: np.ndarray | None

    def csr(self) -> sp.csr_matrix:
        return sp.csr_matrix(self.x)


def _inputs(rng: np.random.Generator, kind: str, n: int, d: int) -> np.ndarray:
    if kind == "counts":  # bag-of-words counts: mostly zeros, small integers
        present = rng.random((n, d)) < rng.uniform(0.02, 0.5)
        return (present * rng.integers(1, 6, (n, d))).astype(np.float32)
    if kind == "normal":
        return rng.standard_normal((n, d)).astype(np.float32)
    if kind == "large":
        return rng.uniform(-LARGE, LARGE, (n, d)).astype(np.float32)
    if kind == "reviews":  # the blog's reviews: about 5-150 words each out of a large vocabulary
        present = rng.random((n, d)) < rng.uniform(5, 150) / d
        return (present * rng.integers(1, 4, (n, d))).astype(np.float32)
    return np.zeros((n, d), np.float32)


def labels(rng: np.random.Generator, spec: TaskSpec, n: int) -> np.ndarray:
    """Valid canonical labels of ``n`` rows for the task's kind."""
    k = spec.num_outputs
    if spec.kind == "multiclass":
        return rng.integers(0, k, n).astype(np.int32)
    if spec.kind == "regression":
        return rng.standard_normal((n, k)).astype(np.float32)
    return rng.integers(0, 2, (n, k)).astype(np.float32)  # binary (k = 1) and multilabel


@dataclass(frozen=True)
class Problem:
    """A network and the shape of its data; every array comes from ``seed``."""

    tasks: tuple[TaskSpec, ...]
    input_dim: int
    hidden_dims: tuple[int, ...]
    activation: str
    batch_sizes: tuple[int, ...]  # rows of each task's batches
    input_kinds: tuple[str, ...]  # one of INPUT_KINDS per task
    sparse: tuple[bool, ...]  # per task: batches go to the backends as CSR (else dense)
    masked: bool  # batches carry a 0/1 row mask
    seed: int

    @property
    def arch(self):
        return check_architecture(self.tasks, self.hidden_dims, self.activation, self.input_dim)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.tasks)

    def initial_params(self, dtype=np.float32) -> dict[str, np.ndarray]:
        """Canonical weights, uniform in +-1/sqrt(fan_in) like both backends' own initialisation."""
        return initial_params(self.arch, [self.seed, 0], dtype)

    def batch(self, task: int, step: int = 0, dtype=np.float32) -> Batch:
        """Task ``task``'s batch of step ``step`` (the same for the same arguments)."""
        rng = np.random.default_rng([self.seed, 1, task, step])
        n, spec = self.batch_sizes[task], self.tasks[task]
        x = _inputs(rng, self.input_kinds[task], n, self.input_dim).astype(dtype)
        y = labels(rng, spec, n)
        mask = None
        if self.masked:
            mask = (rng.random(n) < 0.7).astype(np.float32)
            mask[rng.integers(n)] = 1.0  # a mask must keep at least one row
        return Batch(x, y, mask)

    def restricted(self, names) -> "Problem":
        """The same problem with only the tasks ``names`` (their batches must come from ``self``)."""
        keep = [i for i, name in enumerate(self.names) if name in names]
        pick = lambda values: tuple(values[i] for i in keep)  # noqa: E731 - one rule for every per-task field
        return replace(
            self, tasks=pick(self.tasks), batch_sizes=pick(self.batch_sizes), input_kinds=pick(self.input_kinds), sparse=pick(self.sparse)
        )

    def batches(self, step: int = 0, tasks=None, dtype=np.float32) -> dict[str, Batch]:
        """{task name: Batch} for the tasks named in ``tasks`` (default: all), in model order."""
        chosen = self.names if tasks is None else tasks
        return {name: self.batch(i, step, dtype) for i, name in enumerate(self.names) if name in chosen}


def task_names(count: int, reserved=()):
    """``count`` distinct task names: any non-blank strings (TaskSpec rejects blank ones) but ``reserved``."""
    name = st.one_of(st.sampled_from(TRICKY_NAMES), st.text(min_size=1, max_size=8).filter(str.strip))
    return st.lists(name.filter(lambda n: n not in reserved), min_size=count, max_size=count, unique=True)


@st.composite
def task_spec(draw, name: str, kinds=KINDS) -> TaskSpec:
    kind = draw(st.sampled_from(kinds))
    if kind == "binary":
        outputs = 1
    else:
        outputs = draw(st.integers(2 if kind == "multiclass" else 1, 6))
    return TaskSpec(name, kind, outputs)


@st.composite
def problems(
    draw,
    min_tasks: int = 1,
    max_tasks: int = MAX_TASKS,
    input_kinds=INPUT_KINDS,
    max_input_dim: int = MAX_INPUT_DIM,
    max_width: int = MAX_WIDTH,
    max_batch: int = MAX_BATCH,
    masked=None,
    stepped: bool = False,
    min_input_dim: int = 1,
    min_width: int = 1,
) -> Problem:
    """A whole problem: 1-5 tasks of every kind, a 1-3 layer trunk, any activation, inputs of any kind.

    ``stepped``: for ``make_train_step``, whose report keeps "total" for the combined loss.
    """
    count = draw(st.integers(min_tasks, max_tasks))
    names = draw(task_names(count, reserved=(TOTAL,) if stepped else ()))
    tasks = tuple(draw(task_spec(name)) for name in names)
    return Problem(
        tasks=tasks,
        input_dim=draw(st.integers(min_input_dim, max_input_dim)),
        hidden_dims=tuple(draw(st.lists(st.integers(min_width, max_width), min_size=1, max_size=MAX_LAYERS))),
        activation=draw(st.sampled_from(ACTIVATIONS)),
        batch_sizes=tuple(draw(st.integers(1, max_batch)) for _ in tasks),
        input_kinds=tuple(draw(st.sampled_from(input_kinds)) for _ in tasks),
        sparse=tuple(draw(st.booleans()) for _ in tasks),
        masked=draw(st.booleans()) if masked is None else masked,
        seed=draw(st.integers(0, 2**32 - 1)),
    )


def four_kinds_problem(seed: int = 0, hidden_dims=(64, 32), input_dim: int = 300) -> Problem:
    """The fixed problem of the independent check: four tasks, one of each kind, sparse counts."""
    tasks = (
        TaskSpec("movie", "binary", 1),
        TaskSpec("yelp", "multiclass", 5),
        TaskSpec("tags", "multilabel", 4),
        TaskSpec("stars", "regression", 2),
    )
    return Problem(tasks, input_dim, tuple(hidden_dims), "sigmoid", (32, 17, 40, 9), ("counts",) * 4, (True,) * 4, False, seed)


@dataclass(frozen=True)
class AdamSettings:
    """One Adam configuration, given to torch.optim.Adam and optax.adam alike."""

    lr: float = 1e-3
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    fused: bool = True  # torch only: the fused kernel (fit's default) or the foreach one


def adam_settings(lrs=(1e-4, 1e-3, 1e-2)):
    return st.builds(
        AdamSettings,
        lr=st.sampled_from(lrs),
        b1=st.sampled_from((0.9, 0.8, 0.0)),
        b2=st.sampled_from((0.999, 0.99)),
        eps=st.sampled_from((1e-8, 1e-6)),
        fused=st.booleans(),
    )


@dataclass(frozen=True)
class WeightingChoice:
    """A loss weighting as both backends take it, plus the per-task weights a step is given."""

    weighting: object  # a name in WEIGHTINGS, or a {task name: weight} mapping for "fixed"
    task_weights: tuple[float, ...] | None = field(default=None)  # dwa's per-epoch c_t, for steps


@st.composite
def weightings(draw, names: tuple[str, ...], choices=WEIGHTINGS) -> WeightingChoice:
    """Any loss weighting for tasks ``names``; ``fixed`` draws its weights, ``dwa`` its step weights."""
    name = draw(st.sampled_from(choices))
    if name == "fixed":
        weights = draw(st.lists(st.floats(0.0, 3.0), min_size=len(names), max_size=len(names)))
        return WeightingChoice(dict(zip(names, weights)))
    if name == "dwa":  # c_t = T * softmax(...): positive, summing to T
        raw = np.array(draw(st.lists(st.floats(-2.0, 2.0), min_size=len(names), max_size=len(names))))
        return WeightingChoice("dwa", tuple(len(names) * np.exp(raw) / np.exp(raw).sum()))
    return WeightingChoice(name)


@dataclass(frozen=True)
class Stream:
    """A problem and the tasks present in each of its steps (the order a curriculum gives)."""

    problem: Problem
    schedule: tuple[tuple[str, ...], ...]

    def steps(self, dtype=np.float32) -> list[dict[str, Batch]]:
        """{task name: Batch} of every step, in order."""
        return [self.problem.batches(i, tasks, dtype) for i, tasks in enumerate(self.schedule)]


def curriculum_schedule(curriculum: str, names: tuple[str, ...], batch_counts: list[int], steps: int, seed: int):
    """The task sets of ``steps`` consecutive steps under the library's ``curriculum``."""
    sizes = dict(zip(names, batch_counts))
    schedule: list[tuple[str, ...]] = []
    epoch = 0
    while len(schedule) < steps:
        schedule += [tuple(step) for step in epoch_schedule(curriculum, sizes, 1, seed, epoch)]
        epoch += 1
    return tuple(schedule[:steps])


@st.composite
def streams(draw, problem_strategy=None, max_steps: int = 50, curricula=CURRICULA) -> Stream:
    """A problem and 1..max_steps steps whose task sets follow one of the library's curricula."""
    problem = draw(problem_strategy if problem_strategy is not None else problems())
    curriculum = draw(st.sampled_from(curricula))
    steps = draw(st.integers(1, max_steps))
    counts = [draw(st.integers(1, 4)) for _ in problem.tasks]
    return Stream(problem, curriculum_schedule(curriculum, problem.names, counts, steps, problem.seed))


@dataclass(frozen=True)
class FitProblem:
    """Everything two ``fit`` runs share: the network, the data sizes and the fit arguments."""

    problem: Problem
    rows: tuple[int, ...]  # training rows per task
    epochs: int
    batch_size: int
    lr: float
    curriculum: str
    weighting: object
    grad_norm_every: int
    aggregator: object = None  # None, or a method of mtl_core.aggregation (an instance or its name)

    def data(self, split: int = 0) -> dict[str, TaskData]:
        """{task name: TaskData}; split 0 trains, split 1 evaluates. Classification tasks hold both
        classes 0 and 1 (fit refuses training data of one class)."""
        out = {}
        for i, spec in enumerate(self.problem.tasks):
            rng = np.random.default_rng([self.problem.seed, 2, split, i])
            x = _inputs(rng, self.problem.input_kinds[i], self.rows[i], self.problem.input_dim)
            y = labels(rng, spec, self.rows[i])
            if spec.kind in ("binary", "multiclass"):
                y[:2] = np.arange(2).reshape((2,) + y.shape[1:])
            out[spec.name] = TaskData(x, y, spec)
        return out


@st.composite
def fit_problems(
    draw, dtype, curricula=CURRICULA, weighting_names=WEIGHTINGS, max_tasks: int = 3, max_rows: int = 40, aggregators=(None,)
) -> FitProblem:
    """A problem plus fit's arguments, from the inputs and learning rates compared in ``dtype``.

    Smaller than ``problems()`` (3 tasks, 64 inputs, width 16): a fit compiles one program per set
    of tasks a step trains, and the step-level tests already cover the full ranges.
    """
    input_kinds, lrs = adam_domain(dtype)
    problem = draw(problems(max_tasks=max_tasks, input_kinds=input_kinds, max_input_dim=64, max_width=16, masked=False))
    return FitProblem(
        problem=problem,
        rows=tuple(draw(st.integers(2, max_rows)) for _ in problem.tasks),
        epochs=draw(st.integers(1, 3)),
        batch_size=draw(st.integers(1, 16)),
        lr=draw(st.sampled_from(lrs)),
        curriculum=draw(st.sampled_from(curricula)),
        weighting=draw(weightings(problem.names, weighting_names)).weighting,
        grad_norm_every=draw(st.integers(1, 4)),
        aggregator=draw(st.sampled_from(aggregators)),
    )


class TrajectoryCase(NamedTuple):
    """A stream of batches, the Adam settings and the loss weighting that both backends train with."""

    stream: Stream
    adam: AdamSettings
    weighting: WeightingChoice


@st.composite
def trajectory_cases(draw, dtype, weighting_names=WEIGHTINGS, max_steps: int = 50, **problem_options) -> TrajectoryCase:
    """A stream, Adam settings and a weighting, from the inputs and learning rates compared in ``dtype``."""
    input_kinds, lrs = adam_domain(dtype)
    stream = draw(streams(problems(input_kinds=input_kinds, stepped=True, **problem_options), max_steps))
    return TrajectoryCase(stream, draw(adam_settings(lrs)), draw(weightings(stream.problem.names, weighting_names)))


def invalid_task_ids(names: tuple[str, ...]):
    """Task ids no network with tasks ``names`` accepts: out-of-range indices, unknown names, other types."""
    return st.one_of(
        st.integers(len(names), 10**6),
        st.integers(-(10**6), -1),
        st.text(min_size=1, max_size=8).filter(lambda s: s not in names),
        st.sampled_from((True, False, 0.0, 1.5, b"x", (0,))),
    )


BLOG_TASKS = (TaskSpec("movie", "binary", 1), TaskSpec("yelp", "multiclass", 3))


def blog_problems():
    """The blog's setting: movie (binary) and yelp (3 classes) reviews as bag-of-words counts, 200 sigmoid units."""
    return st.builds(
        Problem,
        tasks=st.just(BLOG_TASKS),
        input_dim=st.sampled_from((2000, 20_000)),
        hidden_dims=st.just((200,)),
        activation=st.just("sigmoid"),
        batch_sizes=st.tuples(st.integers(1, MAX_BATCH), st.integers(1, MAX_BATCH)),
        input_kinds=st.just(("reviews", "reviews")),
        sparse=st.just((True, True)),
        masked=st.just(False),
        seed=st.integers(0, 2**32 - 1),
    )


# -- Jacobians for gradient aggregation (mtl_core.aggregation) -------------------------------------------
ROW_KINDS = ("random", "parallel", "opposite", "conflicting", "zero")
JACOBIAN_SCALES = (1e-6, 1e-3, 1.0, 1e3, 1e6)


@dataclass(frozen=True)
class JacobianCase:
    """T task gradients of P parameters, each row of a kind relative to a random earlier row, times a scale."""

    kinds: tuple[str, ...]  # one of ROW_KINDS per row; the first row is random unless "zero"
    dim: int
    scale: float
    seed: int

    def array(self) -> np.ndarray:
        """(T, P) float32 (float32 values also for float64 tests). Rows have norms spread over 0.1..3 (x scale);
        parallel and opposite rows are multiples of an earlier row, conflicting ones its negation plus 0.3 noise."""
        rng = np.random.default_rng(self.seed)
        count = len(self.kinds)
        rows = rng.standard_normal((count, self.dim)) * rng.uniform(0.1, 3.0, (count, 1))
        for i, kind in enumerate(self.kinds):
            earlier, factor = rows[rng.integers(max(i, 1))], rng.uniform(0.1, 3.0)
            if kind == "zero":
                rows[i] = 0.0
            elif i > 0 and kind == "parallel":
                rows[i] = factor * earlier
            elif i > 0 and kind == "opposite":
                rows[i] = -factor * earlier
            elif i > 0 and kind == "conflicting":
                rows[i] = -earlier + 0.3 * rows[i]
        return (rows * self.scale).astype(np.float32)


def jacobian_cases(max_tasks: int = 6, max_dim: int = 50):
    """1..max_tasks rows of any ROW_KINDS, 1..max_dim parameters, scales 1e-6..1e6."""
    kinds = st.integers(1, max_tasks).flatmap(lambda t: st.lists(st.sampled_from(ROW_KINDS), min_size=t, max_size=t).map(tuple))
    return st.builds(
        JacobianCase, kinds=kinds, dim=st.integers(1, max_dim), scale=st.sampled_from(JACOBIAN_SCALES), seed=st.integers(0, 2**32 - 1)
    )
