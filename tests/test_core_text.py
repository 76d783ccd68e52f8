"""mtl_core.data.text: CSV/TSV tasks in one shared bag-of-words space."""

import csv

import numpy as np
import pytest

from mtl_core import TaskSpec
from mtl_core.data import TextTaskSource, load_text_tasks, vectorize_texts
from mtl_core.data.text import encode_labels, read_columns


def write_table(path, header, rows, delimiter=None):
    """Write rows under header as CSV, or TSV when the file name ends in .tsv."""
    delimiter = delimiter or ("\t" if path.suffix == ".tsv" else ",")
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def words_of(data, vocabulary, row):
    """The vocabulary words present in one row of a TaskData's X."""
    return {vocabulary[i] for i in data.X[row].indices}


def load_one(tmp_path, labels, kind=None, name="task.csv", **kwargs):
    """Load one task whose row i reads 'rowword{i} lab{label}' and has label labels[i]."""
    rows = [(f"rowword{i} lab{str(label).replace('|', ' lab')}", label) for i, label in enumerate(labels)]
    path = write_table(tmp_path / name, ("text", "label"), rows)
    return load_text_tasks([TextTaskSource("t", path, "text", "label", kind)], **kwargs)


@pytest.mark.parametrize(
    "labels, names",
    [
        (["0", "1", "1", "0"], ("0", "1")),
        (["true", "False", "TRUE", "false"], ("false", "true")),
        (["yes", "No", " YES ", "no"], ("no", "yes")),
    ],
)
def test_binary_labels_are_inferred_from_01_truefalse_yesno(tmp_path, labels, names):
    loaded = load_one(tmp_path, labels, test_fraction=0.0)
    data = loaded.train["t"]
    assert data.spec == TaskSpec("t", "binary", 1)
    assert loaded.label_names["t"] == names
    for row in range(len(data)):
        (index,) = [int(w[len("rowword"):]) for w in words_of(data, loaded.vocabulary, row) if w.startswith("rowword")]
        assert data.y[row, 0] == names.index(labels[index].strip().lower())


def test_string_multiclass_labels_keep_their_names(tmp_path):
    labels = ["high", "low", "mid", "low", "high", "mid", "mid"]
    loaded = load_one(tmp_path, labels, test_fraction=0.0)
    data = loaded.train["t"]
    assert data.spec == TaskSpec("t", "multiclass", 3)
    assert loaded.label_names["t"] == ("high", "low", "mid")
    for row in range(len(data)):
        (word,) = [w for w in words_of(data, loaded.vocabulary, row) if w.startswith("lab")]
        assert loaded.label_names["t"][data.y[row]] == word[len("lab"):]


def test_numeric_class_names_sort_by_value(tmp_path):
    loaded = load_one(tmp_path, ["10", "2", "1", "2"], test_fraction=0.0)
    assert loaded.label_names["t"] == ("1", "2", "10")
    assert sorted(loaded.train["t"].y.tolist()) == [0, 1, 1, 2]


def test_multilabel_sets_become_multi_hot_rows(tmp_path):
    loaded = load_one(tmp_path, ["x|y", "y", "x", "z|x"], kind="multilabel", test_fraction=0.0)
    data = loaded.train["t"]
    assert data.spec == TaskSpec("t", "multilabel", 3) and loaded.label_names["t"] == ("x", "y", "z")
    for row in range(len(data)):
        present = {w[len("lab"):] for w in words_of(data, loaded.vocabulary, row) if w.startswith("lab")}
        assert {loaded.label_names["t"][i] for i in np.flatnonzero(data.y[row])} == present


def test_regression_labels_are_read_as_numbers(tmp_path):
    loaded = load_one(tmp_path, ["1.5", "-2", "3e1"], kind="regression", test_fraction=0.0)
    data = loaded.train["t"]
    assert data.spec == TaskSpec("t", "regression", 1)
    assert sorted(data.y[:, 0].tolist()) == [-2.0, 1.5, 30.0]


def test_csv_and_tsv_tasks_share_one_vocabulary_fitted_on_training_rows_only(tmp_path):
    movie = write_table(tmp_path / "movie.csv", ("review", "sentiment"), [(f"film{i} common", i % 2) for i in range(10)])
    yelp = write_table(tmp_path / "yelp.tsv", ("text", "stars"), [(f"meal{i} common", ("a1", "b2", "c3")[i % 3]) for i in range(9)])
    loaded = load_text_tasks(
        [TextTaskSource("movie", movie, "review", "sentiment"), TextTaskSource("yelp", yelp, "text", "stars")],
        test_fraction=0.3,
        seed=0,
    )
    assert [t.kind for t in loaded.tasks] == ["binary", "multiclass"]
    for split in (loaded.train, loaded.test):
        assert all(d.input_dim == len(loaded.vocabulary) for d in split.values())
    train_words = set().union(*(words_of(d, loaded.vocabulary, r) for d in loaded.train.values() for r in range(len(d))))
    assert set(loaded.vocabulary) == train_words  # every word comes from a training row...
    assert {"common"} | {w for w in train_words if w.startswith(("film", "meal"))} == train_words
    for d in loaded.test.values():  # ...and a test row's own word never made it in
        assert all(words_of(d, loaded.vocabulary, r) == {"common"} for r in range(len(d)))
    assert {n: len(d) for n, d in loaded.test.items()} == {"movie": 3, "yelp": 3}
    assert {n: len(d) for n, d in loaded.train.items()} == {"movie": 7, "yelp": 6}


def test_the_split_is_seeded(tmp_path):
    labels = [str(i % 2) for i in range(20)]
    first, again, other = (load_one(tmp_path, labels, test_fraction=0.25, seed=s) for s in (5, 5, 6))
    assert first.vocabulary == again.vocabulary
    np.testing.assert_array_equal(first.test["t"].X.toarray(), again.test["t"].X.toarray())
    np.testing.assert_array_equal(first.train["t"].y, again.train["t"].y)
    assert first.vocabulary != other.vocabulary


def test_max_features_caps_the_vocabulary(tmp_path):
    loaded = load_one(tmp_path, ["0", "1"] * 10, test_fraction=0.0, max_features=5)
    assert len(loaded.vocabulary) == 5 and loaded.train["t"].input_dim == 5


def test_vectorize_texts_counts_words_of_a_fixed_vocabulary():
    X = vectorize_texts(["good good film", "bad unknown"], ("bad", "film", "good"))
    assert X.dtype == np.float32
    np.testing.assert_array_equal(X.toarray(), [[0, 1, 2], [1, 0, 0]])


@pytest.mark.parametrize(
    "texts, pattern",
    [("one review", r"a sequence of strings, one per row, got one string: 'one review'"), (["fine", 3], r"got int at row 1")],
    ids=["one_string", "a_number"],
)
def test_vectorize_texts_wants_one_string_per_row(texts, pattern):
    with pytest.raises(TypeError, match=pattern):  # a lone string would be read one character per row
        vectorize_texts(texts, hash_features=64)


def test_hashing_counts_words_like_the_vocabulary_in_n_columns():
    texts = ["good good film", "bad unknown"]
    hashed = vectorize_texts(texts, hash_features=2**18)
    counted = vectorize_texts(texts, ("bad", "film", "good", "unknown"))
    assert hashed.shape == (2, 2**18) and hashed.dtype == np.float32
    # the same tokens and counts, each word in a column of its own (no collision among four words here)
    assert sorted(hashed.data.tolist()) == sorted(counted.data.tolist()) and hashed.nnz == counted.nnz


def test_hashed_tasks_have_no_vocabulary_and_n_columns(tmp_path):
    loaded = load_one(tmp_path, ["0", "1"] * 10, test_fraction=0.5, hash_features=64)
    assert loaded.vocabulary is None and loaded.hash_features == 64
    assert loaded.train["t"].input_dim == loaded.test["t"].input_dim == 64
    assert loaded.words_found == 12  # the 10 training rows' rowwordN, lab0, lab1: counted, though not kept
    np.testing.assert_array_equal(loaded.train["t"].X.sum(axis=1), 2)  # two words per row, whatever their columns


@pytest.mark.parametrize("value", [0, -3, 2.5, True, "64"])
def test_hash_features_must_be_a_positive_int(tmp_path, value):
    with pytest.raises(ValueError, match=rf"hash_features must be an int >= 1 \(the number of hashed columns\), got {value!r}"):
        load_one(tmp_path, ["0", "1"], test_fraction=0.0, hash_features=value)


@pytest.mark.parametrize("vocabulary, hashed", [(None, None), (("a",), 8)])
def test_vectorize_texts_needs_exactly_one_way_to_columns(vocabulary, hashed):
    with pytest.raises(TypeError, match=r"needs a vocabulary or hash_features \(exactly one\)"):
        vectorize_texts(["a"], vocabulary, hash_features=hashed)


def test_read_columns_reads_named_columns_and_skips_blank_lines(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("a\tb\tc\n1\t2\t3\n\n4\t5\t6\n", encoding="utf-8")
    assert read_columns(path, ["c", "a"]) == {"c": ["3", "6"], "a": ["1", "4"]}


def test_missing_file_raises_file_not_found_naming_the_path(tmp_path):
    path = tmp_path / "absent.csv"
    with pytest.raises(FileNotFoundError, match=r"absent\.csv: no such file"):
        load_text_tasks([TextTaskSource("t", path, "text", "label")])


@pytest.mark.parametrize(
    "content, pattern",
    [
        ("", r"empty\.csv: the file is empty"),
        ("text,label\n", r"the file has a header but no rows"),
        ("text,category\nsome words,1\n", r"no column named \['label'\]; the header has \['text', 'category'\]"),
        ("text,label\nsome words,1\nmore words,1,extra\n", r"line 3: 3 fields, the header has 2"),
    ],
)
def test_malformed_files_raise_value_errors_naming_the_problem(tmp_path, content, pattern):
    path = tmp_path / "empty.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=pattern):
        load_text_tasks([TextTaskSource("t", path, "text", "label")])


def write_undecodable(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes(b"text,label\ngood words,1\nbad \xff\xfe words,0\n")
    return path


def test_undecodable_bytes_raise_a_value_error(tmp_path):
    with pytest.raises(ValueError, match=r"latin\.csv.*not valid UTF-8"):
        read_columns(write_undecodable(tmp_path), ["text", "label"])


def test_undecodable_bytes_error_points_at_the_right_line(tmp_path):
    # The bad bytes are on line 3: a message that names a line must name that one.
    with pytest.raises(ValueError) as raised:
        read_columns(write_undecodable(tmp_path), ["text", "label"])
    message = str(raised.value).split("latin.csv", 1)[1]
    assert "line" not in message or "line 3" in message, str(raised.value)


@pytest.mark.parametrize(
    "labels, kind, pattern",
    [
        (["x", "y"], "binary", r"column 'label' holds \['x', 'y'\], not binary labels .*; row 2 holds 'x'"),
        (["0", "1", "maybe", "no"], "binary", r"not binary labels .*; row 4 holds 'maybe'"),
        (["0", "", "1", " "], None, r"row 3: column 'label' is empty \(and 1 more row\): give every row a label"),
        (["a", "b", ""], "multiclass", r"row 4: column 'label' is empty: give every row a label"),
        (["0", "", "1"], "binary", r"row 3: column 'label' is empty"),
        (["same", "same"], None, r"column 'label' has one class \(\['same'\]\)"),
        (["same", "same"], "multiclass", r"has one class"),
        (["1.5", "abc"], "regression", r"row 3: regression label 'abc' is not a number"),
        (["1.5", "inf"], "regression", r"row 3: regression label 'inf' is not finite"),
        (["", " | "], "multilabel", r"column 'label' names no labels"),
    ],
)
def test_labels_that_do_not_fit_the_kind_are_rejected(tmp_path, labels, kind, pattern):
    with pytest.raises(ValueError, match=pattern):
        load_one(tmp_path, labels, kind=kind, test_fraction=0.0)


def test_encode_labels_names_the_file_of_bad_labels():
    source = TextTaskSource("t", "reviews.csv", "text", "label", "binary")
    with pytest.raises(ValueError, match=r"reviews\.csv: column 'label'"):
        encode_labels(["maybe", "no"], source)


@pytest.mark.parametrize(
    "build, error, pattern",
    [
        (lambda p: [], TypeError, r"non-empty sequence of TextTaskSource"),
        (lambda p: ["task.csv"], TypeError, r"non-empty sequence of TextTaskSource"),
        (lambda p: [TextTaskSource("t", p, "text", "label")] * 2, ValueError, r"task names must be distinct, got \['t', 't'\]"),
    ],
)
def test_load_text_tasks_rejects_bad_source_lists(tmp_path, build, error, pattern):
    path = write_table(tmp_path / "task.csv", ("text", "label"), [("some words", 0), ("more words", 1)])
    with pytest.raises(error, match=pattern):
        load_text_tasks(build(path))


@pytest.mark.parametrize("fraction", [1.0, -0.1])
def test_load_text_tasks_rejects_a_test_fraction_outside_0_1(tmp_path, fraction):
    with pytest.raises(ValueError, match=rf"test_fraction must lie in \[0, 1\), got {fraction}"):
        load_one(tmp_path, ["0", "1"], test_fraction=fraction)


def test_load_text_tasks_rejects_a_split_leaving_no_training_rows(tmp_path):
    with pytest.raises(ValueError, match=r"1 rows leave nothing to train on with test_fraction=0\.9"):
        load_one(tmp_path, ["0"], kind="regression", test_fraction=0.9)


def test_texts_without_words_are_rejected(tmp_path):
    path = write_table(tmp_path / "t.csv", ("text", "label"), [("a", 0), ("b", 1)])
    with pytest.raises(ValueError, match=r"no words to learn from in the training texts of \['t'\]: every text is empty or holds only punctuation"):
        load_text_tasks([TextTaskSource("t", path, "text", "label")], test_fraction=0.0)


def test_text_task_source_rejects_an_unknown_kind():
    with pytest.raises(ValueError, match=r"kind of task 't' must be one of .* got 'ordinal'"):
        TextTaskSource("t", "x.csv", "text", "label", "ordinal")
