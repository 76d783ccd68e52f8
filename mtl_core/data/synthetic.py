"""The embedded default dataset: review-like bag-of-words tasks that share one latent sentiment.

The generative story of one review of one task:

1. a latent sentiment z ~ N(0, 1);
2. a length L ~ Poisson(review_length); each word is, with probability ``signal_rate``, a
   sentiment word, and otherwise a background word;
3. a sentiment word is positive with probability sigmoid(SHARPNESS * z), else negative, and is
   drawn from that polarity's lexicon of ``signal_words`` words with Zipf frequencies (exponent
   LEXICON_ZIPF: a head of common words like "great", a long tail of rare ones like "riveting");
4. a background word follows a Zipf law over the whole vocabulary whose ranking is partly
   reshuffled per task: each task has its own topic (films, restaurants), sharing common words;
5. the label is a noisy reading of the same z: z + label_noise * N(0, 1), thresholded at 0
   (binary), cut at its quantiles (k balanced classes), or the reading itself (regression).

The lexicon is the same for every task, as the blog's movie and Yelp reviews share their
sentiment words: that is what a shared trunk can learn from one task for another. It is large
(20% of the vocabulary per polarity) and flat, so one task's reviews leave much of it seen a few
times or never. By default yelp is the weaker task: three-class and data-poor (1,500 training
reviews against movie's 6,000), it cannot learn the lexicon's tail alone, while the multi-task
trunk also learns it from movie's reviews. Labels are fairly clean; word noise (finite reviews,
background words) is what limits the scores: about .81-.83 F1 for movie and .64 macro-F1 for
yelp trained alone with the blog's recipe, .83-.86 and .66-.68 trained together.

Nothing in the tasks conflicts (no word means one thing in one task and the opposite in another),
so training yelp after movie reinforces movie's features rather than overwriting them.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import scipy.sparse as sp
from scipy.special import expit
from scipy.stats import norm

from mtl_core.config import check_count, check_seed
from mtl_core.data.task_data import TaskData
from mtl_core.tasks import TaskSpec, check_tasks

DEFAULT_TASKS = (TaskSpec("movie", "binary", 1), TaskSpec("yelp", "multiclass", 3))
DEFAULT_N_TRAIN = {"movie": 6000, "yelp": 1500}  # tasks not named here get OTHER_N_TRAIN
OTHER_N_TRAIN = 2000
DEFAULT_LABEL_NOISE = {"movie": 0.4, "yelp": 0.2}  # tasks not named here get OTHER_LABEL_NOISE
OTHER_LABEL_NOISE = 0.3
SIGNAL_SHARE = 0.2  # default signal_words: this share of the vocabulary per polarity
SHARPNESS = 2.5  # how strongly z sways a sentiment word's polarity
LEXICON_ZIPF = 0.6  # Zipf exponent of word frequencies within a polarity's lexicon
TOPIC_SHUFFLE = 0.3  # share of the background ranking each task reshuffles (its topic)
BACKGROUND_ZIPF = 1.07  # Zipf exponent of background words (English text is close to 1)


def _zipf(size: int, exponent: float, offset: float) -> np.ndarray:
    """Probabilities (size,) proportional to 1 / (rank + offset) ** exponent."""
    weights = 1.0 / (np.arange(size) + offset) ** exponent
    return weights / weights.sum()


def _topic(vocab_size: int, rng: np.random.Generator) -> np.ndarray:
    """One task's background word probabilities (vocab_size,): a Zipf ranking, partly reshuffled."""
    weights = _zipf(vocab_size, BACKGROUND_ZIPF, offset=2.7)
    moved = rng.choice(vocab_size, size=int(vocab_size * TOPIC_SHUFFLE), replace=False)
    weights[moved] = rng.permutation(weights[moved])
    return weights


def _draw(probabilities: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` independent indices drawn with ``probabilities``.

    Inverse-CDF sampling of sorted uniforms (several times faster to look up than unsorted ones),
    then shuffled: the same distribution as rng.choice's draws.
    """
    cdf = np.cumsum(probabilities)
    uniforms = np.sort(rng.random(size)) * cdf[-1]
    return rng.permutation(np.minimum(np.searchsorted(cdf, uniforms, side="right"), len(cdf) - 1))


def _reviews(
    lexicon: np.ndarray, background: np.ndarray, z: np.ndarray, review_length: int, signal_rate: float, rng: np.random.Generator
) -> sp.csr_matrix:
    """Bag-of-words counts (n, vocab_size) of reviews with sentiments ``z`` (n,); lexicon (2, m), row 0 positive."""
    n, vocab_size = len(z), len(background)
    lengths = np.maximum(1, rng.poisson(review_length, size=n))
    rows = np.repeat(np.arange(n), lengths)  # (words,): the review of each word
    is_signal = rng.random(len(rows)) < signal_rate
    signal_rows = rows[is_signal]
    negative = rng.random(len(signal_rows)) >= expit(SHARPNESS * z[signal_rows])
    ranks = _draw(_zipf(lexicon.shape[1], LEXICON_ZIPF, offset=1.0), len(signal_rows), rng)
    words = np.empty(len(rows), dtype=np.int64)
    words[is_signal] = lexicon[negative.astype(np.int64), ranks]
    words[~is_signal] = _draw(background, int((~is_signal).sum()), rng)
    # Count each (review, word) pair once: sorted unique keys are CSR's sorted, duplicate-free entries.
    keys, counts = np.unique(rows * vocab_size + words, return_counts=True)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(keys // vocab_size, minlength=n))])
    return sp.csr_matrix((counts.astype(np.float32), keys % vocab_size, indptr), shape=(n, vocab_size))


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


def _per_task(value, tasks: Sequence[TaskSpec], what: str, defaults: Mapping | None = None, other=None) -> dict[str, object]:
    """{task name: value} from one value for all tasks or a mapping; None takes ``defaults``."""
    if value is None:
        return {t.name: defaults.get(t.name, other) for t in tasks}
    if isinstance(value, Mapping):
        missing = [t.name for t in tasks if t.name not in value]
        if missing:
            raise ValueError(f"{what} names no value for tasks {missing}")
        return {t.name: value[t.name] for t in tasks}
    return {t.name: value for t in tasks}


def synthetic_reviews(
    tasks: Sequence[TaskSpec] = DEFAULT_TASKS,
    *,
    n_train: int | Mapping[str, int] | None = None,
    n_test: int | Mapping[str, int] = 2000,
    vocab_size: int = 20_000,
    review_length: int = 100,
    signal_words: int | None = None,
    signal_rate: float = 0.2,
    label_noise: float | Mapping[str, float] | None = None,
    seed: int = 0,
) -> tuple[dict[str, TaskData], dict[str, TaskData]]:
    """Train and test ``TaskData`` for each task, the same for the same arguments.

    Defaults follow the blog: a binary "movie" task (6,000 training reviews) and a 3-class "yelp"
    task (1,500) over a 20,000-word vocabulary, reviews of about 100 words, 2,000 held-out reviews
    per task. ``n_train`` and ``label_noise`` default per task (see DEFAULT_N_TRAIN and
    DEFAULT_LABEL_NOISE); ``signal_words`` (per polarity) defaults to 20% of the vocabulary.
    """
    tasks = check_tasks(tasks)
    if signal_words is None:
        signal_words = max(1, int(vocab_size * SIGNAL_SHARE))
    if not 0 < 2 * signal_words <= vocab_size - vocab_size // 50:
        raise ValueError(
            f"signal_words={signal_words} must be >= 1 and leave the most frequent words of vocab_size={vocab_size} "
            f"as background (at most {(vocab_size - vocab_size // 50) // 2})"
        )
    if not 0 <= signal_rate <= 1:
        raise ValueError(f"signal_rate must lie in [0, 1], got {signal_rate}")
    n_train = {name: check_count(n, f"n_train of task {name!r}") for name, n in _per_task(n_train, tasks, "n_train", DEFAULT_N_TRAIN, OTHER_N_TRAIN).items()}
    n_test = {name: check_count(n, f"n_test of task {name!r}") for name, n in _per_task(n_test, tasks, "n_test").items()}
    check_seed(seed)
    noise = _per_task(label_noise, tasks, "label_noise", DEFAULT_LABEL_NOISE, OTHER_LABEL_NOISE)
    root = np.random.default_rng(seed)
    # Sentiment words are never among the most frequent words (those are "the", "and", ...).
    chosen = root.choice(np.arange(vocab_size // 50, vocab_size), size=2 * signal_words, replace=False)
    lexicon = chosen.reshape(2, signal_words)
    train, test = {}, {}
    for spec, task_seed in zip(tasks, root.spawn(len(tasks))):
        rng = np.random.default_rng(task_seed)
        background = _topic(vocab_size, rng)
        for split, sizes in ((train, n_train), (test, n_test)):
            z = rng.standard_normal(int(sizes[spec.name]))
            X = _reviews(lexicon, background, z, review_length, signal_rate, rng)
            split[spec.name] = TaskData(X, _labels(spec, z, noise[spec.name], rng), spec)
    return train, test
