"""Reading tasks from CSV/TSV text files into one shared bag-of-words space.

The trunk has one input space, so all tasks share one scikit-learn vocabulary, fitted on the
training texts only (the held-out split never leaks into it), or one hashing of words into N
columns (``hash_features``): no vocabulary to fit or store, any N, unseen words still count.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import CountVectorizer, HashingVectorizer

from mtl_core.data.task_data import TaskData
from mtl_core.tasks import KINDS, TaskSpec

BINARY_WORDS = ({"0": 0, "1": 1}, {"false": 0, "true": 1}, {"no": 0, "yes": 1})
MULTILABEL_SEPARATOR = "|"


@dataclass(frozen=True)
class TextTaskSource:
    """Where one task's examples live: a CSV/TSV file, its text and label columns, its kind.

    ``kind=None`` infers binary for labels 0/1, true/false or yes/no, and multiclass otherwise.
    Multilabel labels are sets separated by "|"; regression labels are numbers.
    """

    name: str
    path: str | Path
    text_column: str
    label_column: str
    kind: str | None = None

    def __post_init__(self) -> None:
        if self.kind is not None and self.kind not in KINDS:
            raise ValueError(f"kind of task {self.name!r} must be one of {KINDS} or None, got {self.kind!r}")


@dataclass(frozen=True)
class TextTasks:
    """Train and test TaskData per task, the shared vocabulary (None when hashed) and each task's label names."""

    train: dict[str, TaskData]
    test: dict[str, TaskData]
    vocabulary: tuple[str, ...] | None
    label_names: dict[str, tuple[str, ...]]
    words_found: int = 0  # distinct words in the training texts; more than len(vocabulary) when capped
    hash_features: int | None = None  # the number of hashed columns, when words are hashed

    @property
    def tasks(self) -> tuple[TaskSpec, ...]:
        return tuple(d.spec for d in self.train.values())


def make_vectorizer(vocabulary: Sequence[str] | None = None, max_features: int | None = None, hash_features: int | None = None):
    """The one tokenisation used to fit a vocabulary and to apply it later, or to hash words.

    Hashing counts words into ``hash_features`` columns (scikit-learn's HashingVectorizer, same tokens
    as the vocabulary's, no sign flipping and no normalisation: the counts a vocabulary gives,
    colliding words added up).
    """
    if hash_features is not None:
        return HashingVectorizer(n_features=check_hash_features(hash_features), alternate_sign=False, norm=None)
    return CountVectorizer(vocabulary=None if vocabulary is None else list(vocabulary), max_features=max_features)


def check_hash_features(value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"hash_features must be an int >= 1 (the number of hashed columns), got {value!r}")
    return int(value)


def vectorize_texts(texts: Sequence[str], vocabulary: Sequence[str] | None = None, *, hash_features: int | None = None) -> sp.csr_matrix:
    """Bag-of-words counts of ``texts``: (n, len(vocabulary)) in a fitted vocabulary, or (n, hash_features) hashed."""
    if (vocabulary is None) == (hash_features is None):
        raise TypeError("vectorize_texts needs a vocabulary or hash_features (exactly one)")
    if isinstance(texts, str):
        raise TypeError(f"texts must be a sequence of strings, one per row, got one string: {texts!r:.60}")
    texts = list(texts)
    bad = [i for i, text in enumerate(texts) if not isinstance(text, str)]
    if bad:
        raise TypeError(f"texts must be strings, got {type(texts[bad[0]]).__name__} at row {bad[0]}")
    vectorizer = make_vectorizer(vocabulary, hash_features=hash_features)
    return sp.csr_matrix(vectorizer.transform(list(texts)), dtype=np.float32)


def _delimiter(path: Path, lines: list[str]) -> tuple[str, list[str]]:
    """The file's delimiter and its lines without a spreadsheet's ``sep=`` line.

    Tabs for .tsv/.tab; for .csv a comma, unless the header holds no comma but semicolons (the
    spreadsheets of locales whose decimal mark is a comma write those), or an Excel ``sep=X`` line says.
    """
    if path.suffix.lower() in (".tsv", ".tab"):
        return "\t", lines
    if lines and lines[0].strip().lower().startswith("sep=") and len(lines[0].strip()) == 5:
        return lines[0].strip()[4], lines[1:]
    header = lines[0] if lines else ""
    return (";" if ";" in header and "," not in header else ","), lines


def read_columns(path: str | Path, columns: Sequence[str]) -> dict[str, list[str]]:
    """Read named columns of a CSV (or, for .tsv/.tab, tab-separated) file, with clear errors.

    Reads files as spreadsheets save them too: a UTF-8 byte-order mark, CRLF line ends, quoted
    fields with commas or line breaks, semicolon-separated CSV and Excel's ``sep=`` first line.
    Blank lines are skipped: the i-th value of a column is the i-th non-blank data row's.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[: error.start].count(b"\n") + 1
        raise ValueError(f"{path}, line {line}: text is not valid UTF-8 ({error.reason})") from None
    delimiter, lines = _delimiter(path, text.splitlines(keepends=True))
    values: dict[str, list[str]] = {c: [] for c in columns}
    reader = csv.reader(io.StringIO("".join(lines), newline=""), delimiter=delimiter)
    try:
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path}: the file is empty")
        missing = [c for c in columns if c not in header]
        if missing:
            raise ValueError(f"{path}: no column named {missing}; the header has {header}")
        where = [header.index(c) for c in columns]
        for row in reader:
            if not row:
                continue
            if len(row) != len(header):
                raise ValueError(f"{path}, line {reader.line_num}: {len(row)} fields, the header has {len(header)}")
            for column, index in zip(columns, where):
                values[column].append(row[index])
    except csv.Error as error:
        raise ValueError(f"{path}, line {reader.line_num}: malformed CSV ({error})") from None
    if not values[columns[0]]:
        raise ValueError(f"{path}: the file has a header but no rows")
    return values


def _binary_ids(labels: list[str], source: TextTaskSource) -> tuple[np.ndarray, tuple[str, ...]] | None:
    lowered = [label.strip().lower() for label in labels]
    for words in BINARY_WORDS:
        if set(lowered) <= set(words):
            names = tuple(sorted(words, key=words.get))
            return np.array([words[label] for label in lowered], dtype=np.float32), names
    return None


def _sorted_names(labels) -> list[str]:
    unique = sorted(set(labels))
    try:
        return sorted(unique, key=float)
    except ValueError:
        return unique


def _check_no_blank_labels(labels: list[str], source: TextTaskSource, path_rows: int) -> None:
    """A class label left empty is a missing label, not a class named "": refuse it, naming the row."""
    blank = [row for row, label in enumerate(labels) if not label.strip()]
    if blank:
        more = "" if len(blank) == 1 else f" (and {len(blank) - 1} more row{'s' if len(blank) > 2 else ''})"
        raise ValueError(
            f"{source.path}, row {blank[0] + path_rows}: column {source.label_column!r} is empty{more}: "
            "give every row a label, or remove the rows without one"
        )


def _first_non_binary_row(labels: list[str]) -> int:
    """The row where the column stops fitting its best-fitting pair of binary words."""
    lowered = [label.strip().lower() for label in labels]
    return max(next(row for row, label in enumerate(lowered) if label not in words) for words in BINARY_WORDS)


def encode_labels(labels: list[str], source: TextTaskSource, path_rows: int = 2) -> tuple[TaskSpec, np.ndarray, tuple[str, ...]]:
    """Turn a column of label strings into a TaskSpec, canonical labels and the label names.

    ``path_rows``: what to add to a label's index to get its row in the file (the header is row 1).
    """
    kind = source.kind
    if kind in (None, "binary", "multiclass"):
        _check_no_blank_labels(labels, source, path_rows)
    if kind in (None, "binary"):
        binary = _binary_ids(labels, source)
        if binary is not None:
            if len(np.unique(binary[0])) < 2:
                raise ValueError(f"{source.path}: column {source.label_column!r} has one class ({sorted(set(labels))[:1]}); a classifier needs two")
            return TaskSpec(source.name, "binary", 1), binary[0], binary[1]
        if kind == "binary":
            found, row = sorted(set(labels))[:5], _first_non_binary_row(labels)
            raise ValueError(
                f"{source.path}: column {source.label_column!r} holds {found}, not binary labels (0/1, true/false or yes/no); "
                f"row {row + path_rows} holds {labels[row]!r}"
            )
        kind = "multiclass"
    if kind == "multiclass":
        names = _sorted_names(label.strip() for label in labels)
        if len(names) < 2:
            raise ValueError(f"{source.path}: column {source.label_column!r} has one class ({names}); a classifier needs two")
        ids = {name: i for i, name in enumerate(names)}
        return TaskSpec(source.name, kind, len(names)), np.array([ids[l.strip()] for l in labels], np.int32), tuple(names)
    if kind == "multilabel":
        sets = [[part.strip() for part in label.split(MULTILABEL_SEPARATOR) if part.strip()] for label in labels]
        names = _sorted_names(part for parts in sets for part in parts)
        if not names:
            raise ValueError(f"{source.path}: column {source.label_column!r} names no labels")
        ids = {name: i for i, name in enumerate(names)}
        y = np.zeros((len(labels), len(names)), np.float32)
        for row, parts in enumerate(sets):
            y[row, [ids[p] for p in parts]] = 1.0
        return TaskSpec(source.name, kind, len(names)), y, tuple(names)
    y = np.empty(len(labels), np.float32)
    for row, label in enumerate(labels):
        try:
            y[row] = float(label)
        except ValueError:
            raise ValueError(f"{source.path}, row {row + path_rows}: regression label {label!r} is not a number") from None
    if not np.all(np.isfinite(y)):
        row = int(np.flatnonzero(~np.isfinite(y))[0])
        raise ValueError(f"{source.path}, row {row + path_rows}: regression label {labels[row]!r} is not finite")
    return TaskSpec(source.name, kind, 1), y, (source.label_column,)


def load_text_tasks(
    sources: Sequence[TextTaskSource],
    *,
    test_fraction: float = 0.2,
    seed: int = 0,
    max_features: int | None = 20_000,
    hash_features: int | None = None,
) -> TextTasks:
    """Read each source, split it (seeded) into train and test, and vectorise all tasks alike.

    The vocabulary keeps the ``max_features`` most frequent training words (None: all of them);
    ``words_found`` says how many there were, so a caller can report what the cap left out. With
    ``hash_features`` words are hashed into that many columns instead (no vocabulary; ``max_features``
    is not used).
    """
    sources = list(sources)
    if not sources or not all(isinstance(s, TextTaskSource) for s in sources):
        raise TypeError("sources must be a non-empty sequence of TextTaskSource")
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ValueError(f"task names must be distinct, got {names}")
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must lie in [0, 1), got {test_fraction}")
    if hash_features is not None:
        hash_features = check_hash_features(hash_features)
    rng = np.random.default_rng(seed)
    parts = {}
    for source in sources:
        columns = read_columns(source.path, [source.text_column, source.label_column])
        spec, y, label_names = encode_labels(columns[source.label_column], source)
        texts = columns[source.text_column]
        order = rng.permutation(len(texts))
        n_test = int(round(len(texts) * test_fraction))
        if len(texts) - n_test < 1:
            raise ValueError(f"{source.path}: {len(texts)} rows leave nothing to train on with test_fraction={test_fraction}")
        parts[source.name] = (spec, texts, y, order[n_test:], order[:n_test], label_names)
    training_texts = [parts[n][1][i] for n in names for i in parts[n][3]]
    try:
        found = len(make_vectorizer().fit(training_texts).vocabulary_)
    except ValueError:  # scikit-learn's "empty vocabulary"
        raise ValueError(
            f"no words to learn from in the training texts of {names}: every text is empty or holds only "
            "punctuation and one-character tokens (a word is two or more letters or digits)"
        ) from None
    vocabulary = None
    if hash_features is None:
        capped = max_features is not None and found > max_features
        vectorizer = make_vectorizer(max_features=max_features).fit(training_texts) if capped else make_vectorizer().fit(training_texts)
        vocabulary = tuple(vectorizer.get_feature_names_out())
    train, test = {}, {}
    for name, (spec, texts, y, train_rows, test_rows, _) in parts.items():
        X = vectorize_texts(texts, vocabulary, hash_features=hash_features)
        train[name] = TaskData(X[train_rows], y[train_rows], spec)
        if len(test_rows):
            test[name] = TaskData(X[test_rows], y[test_rows], spec)
    return TextTasks(train, test, vocabulary, {n: parts[n][5] for n in names}, found, hash_features)
