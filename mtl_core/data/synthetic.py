"""A deterministic generator of review-like bag-of-words tasks: the embedded default dataset.

Every review has a latent sentiment z ~ N(0, 1) shared in meaning by all tasks: positive and
negative signal words (the same words for every task) appear in proportion to sigmoid(z), on top of
Zipf-distributed background words whose ranking differs per task (each task has its own topic).
Labels are noisy readings of z: a binary task thresholds it at 0, a k-class task cuts it at its
quantiles, a regression task reads it directly. The shared sentiment words are what lets one task
teach the trunk something another task can use, as the blog's two review tasks do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import scipy.sparse as sp
from scipy.special import expit
from scipy.stats import norm

from mtl_core.data.task_data import TaskData
from mtl_core.tasks import TaskSpec, check_tasks

DEFAULT_TASKS = (TaskSpec("movie", "binary", 1), TaskSpec("yelp", "multiclass", 3))
DEFAULT_LABEL_NOISE = {"movie": 0.3, "yelp": 0.6}


@dataclass(frozen=True)
class _Corpus:
    vocab_size: int
    signal_words: np.ndarray  # (2, m): row 0 positive, row 1 negative
    review_length: int
    signal_rate: float


def _zipf_probabilities(size: int, rng: np.random.Generator, shuffle_fraction: float) -> np.ndarray:
    """Zipf word frequencies over ``size`` words, with part of the ranking reshuffled per task."""
    weights = 1.0 / (np.arange(size) + 2.7) ** 1.07
    moved = rng.choice(size, size=int(size * shuffle_fraction), replace=False)
    weights[moved] = rng.permutation(weights[moved])
    return weights / weights.sum()


def _reviews(corpus: _Corpus, background: np.ndarray, z: np.ndarray, rng: np.random.Generator) -> sp.csr_matrix:
    """Bag-of-words counts (n, vocab_size) of reviews with sentiments ``z``."""
    n = len(z)
    lengths = np.maximum(1, rng.poisson(corpus.review_length, size=n))
    rows = np.repeat(np.arange(n), lengths)
    is_signal = rng.random(len(rows)) < corpus.signal_rate
    positive = rng.random(len(rows)) < expit(2.0 * z[rows])
    signal = corpus.signal_words[np.where(positive, 0, 1), rng.integers(0, corpus.signal_words.shape[1], len(rows))]
    words = np.where(is_signal, signal, rng.choice(corpus.vocab_size, size=len(rows), p=background))
    counts = sp.csr_matrix(
        (np.ones(len(rows), dtype=np.float32), (rows, words)), shape=(n, corpus.vocab_size)
    )
    counts.sum_duplicates()
    return counts


def _labels(spec: TaskSpec, z: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    reading = z + noise * rng.standard_normal(len(z))
    if spec.kind == "binary":
        return (reading > 0).astype(np.float32)
    if spec.kind == "multiclass":
        cuts = norm.ppf(np.arange(1, spec.num_outputs) / spec.num_outputs, scale=np.sqrt(1 + noise**2))
        return np.searchsorted(cuts, reading).astype(np.int32)
    if spec.kind == "regression":
        return np.repeat(reading[:, None], spec.num_outputs, axis=1).astype(np.float32)
    raise ValueError(f"synthetic_reviews makes binary, multiclass and regression tasks, not {spec.kind!r} ({spec.name!r})")


def _per_task(value, tasks: Sequence[TaskSpec], what: str, default=None) -> dict[str, object]:
    if isinstance(value, Mapping):
        missing = [t.name for t in tasks if t.name not in value and default is None]
        if missing:
            raise ValueError(f"{what} names no value for tasks {missing}")
        return {t.name: value.get(t.name, default) for t in tasks}
    return {t.name: value for t in tasks}


def synthetic_reviews(
    tasks: Sequence[TaskSpec] = DEFAULT_TASKS,
    *,
    n_train: int | Mapping[str, int] = 2000,
    n_test: int | Mapping[str, int] = 1000,
    vocab_size: int = 20_000,
    review_length: int = 100,
    signal_words: int = 500,
    signal_rate: float = 0.08,
    label_noise: float | Mapping[str, float] = DEFAULT_LABEL_NOISE,
    seed: int = 0,
) -> tuple[dict[str, TaskData], dict[str, TaskData]]:
    """Train and test ``TaskData`` for each task, the same for the same arguments.

    Defaults follow the blog: a binary "movie" task and a 3-class "yelp" task over a 20,000-word
    vocabulary, reviews of about 100 words.
    """
    tasks = check_tasks(tasks)
    if not 0 < 2 * signal_words <= vocab_size - vocab_size // 50:
        raise ValueError(
            f"signal_words={signal_words} must be >= 1 and leave the most frequent words of vocab_size={vocab_size} "
            f"as background (at most {(vocab_size - vocab_size // 50) // 2})"
        )
    if not 0 <= signal_rate <= 1:
        raise ValueError(f"signal_rate must lie in [0, 1], got {signal_rate}")
    n_train = _per_task(n_train, tasks, "n_train")
    n_test = _per_task(n_test, tasks, "n_test")
    noise = _per_task(label_noise, tasks, "label_noise", default=0.3)
    root = np.random.default_rng(seed)
    # Signal words sit in the middle of the frequency ranking: frequent enough to be learnt, rare
    # enough that one task's data alone leaves many of them unseen.
    middle = np.arange(vocab_size // 50, min(vocab_size, vocab_size // 50 + 20 * signal_words))
    chosen = root.choice(middle, size=2 * signal_words, replace=False)
    corpus = _Corpus(vocab_size, chosen.reshape(2, signal_words), review_length, signal_rate)
    train, test = {}, {}
    for spec, task_seed in zip(tasks, root.spawn(len(tasks))):
        rng = np.random.default_rng(task_seed)
        background = _zipf_probabilities(vocab_size, rng, shuffle_fraction=0.3)
        for split, sizes in ((train, n_train), (test, n_test)):
            z = rng.standard_normal(int(sizes[spec.name]))
            split[spec.name] = TaskData(_reviews(corpus, background, z, rng), _labels(spec, z, noise[spec.name], rng), spec)
    return train, test
