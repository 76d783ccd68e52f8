"""The ``mtl`` command: experiment reports, train + predict across backends, and one-line errors.

Commands run in-process through ``mtl_cli.main.main`` (the frameworks load once); one test runs
the installed entry point in a subprocess to prove the same holds from the shell.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

import torch_ref
from mtl_core import TaskSpec
from mtl_core.data import DEFAULT_TASKS, synthetic_reviews
from cli_support import TINY_SYNTHETIC, mtl, read_csv, task_args, write_table
from mtl_cli import report
from mtl_cli.specs import parse_input, parse_task, parse_weighting

# --- specs -----------------------------------------------------------------------------------


def test_task_spec_gives_name_path_columns_and_optional_kind():
    plain = parse_task("movie=data/reviews.csv:text:label")
    assert (plain.name, str(plain.path), plain.text_column, plain.label_column, plain.kind) == ("movie", "data/reviews.csv", "text", "label", None)
    assert parse_task("score=r.tsv:body:stars:regression").kind == "regression"
    assert str(parse_task("m=C:/x.csv:text:label:binary").path) == "C:/x.csv"


@pytest.mark.parametrize("spec, pattern", [
    ("movie", "expected NAME=PATH:TEXT_COL:LABEL_COL"),
    ("=a.csv:text:label", "expected NAME=PATH"),
    ("movie=a.csv:text", "got 2 of the ':'-separated fields"),
    ("movie=a.csv:text:label:multi", "KIND 'multi' is not one of binary"),
    ("movie=a.csv::label", "TEXT_COL must not be empty"),
])
def test_malformed_task_specs_are_refused_with_the_spec_quoted(spec, pattern):
    with pytest.raises(ValueError, match=pattern):
        parse_task(spec)


def test_input_spec_and_weighting_spec():
    assert parse_input("new.csv:body") == (Path("new.csv"), "body")
    assert parse_weighting("dwa") == "dwa"
    assert parse_weighting("fixed:movie=1,yelp=2.5") == {"movie": 1.0, "yelp": 2.5}
    for bad in ("fixed", "fixed:movie=-1", "fixed:movie=1,movie=2", "fixed:movie", "softmax"):
        with pytest.raises(ValueError, match="--weighting"):
            parse_weighting(bad)
    with pytest.raises(ValueError, match="expected PATH:TEXT_COL"):
        parse_input("new.csv")


# --- the synthetic default ----------------------------------------------------------------------


def test_synthetic_tasks_share_their_sentiment_words():
    # One latent sentiment drives both tasks' signal words: the words that separate movie's
    # classes separate yelp's extreme classes the same way round.
    train, _ = synthetic_reviews(DEFAULT_TASKS, n_train=600, n_test=1, vocab_size=2000, seed=1)
    movie, yelp = train["movie"], train["yelp"]
    X_movie, y_movie = movie.X.toarray(), movie.y[:, 0]
    X_yelp, y_yelp = yelp.X.toarray(), yelp.y
    movie_effect = X_movie[y_movie == 1].mean(0) - X_movie[y_movie == 0].mean(0)
    yelp_effect = X_yelp[y_yelp == 2].mean(0) - X_yelp[y_yelp == 0].mean(0)
    strong = np.abs(movie_effect) > 0.1
    assert strong.sum() >= 5
    assert np.corrcoef(movie_effect[strong], yelp_effect[strong])[0, 1] > 0.8


# --- report -------------------------------------------------------------------------------------


def _document(multi_yelp: list[float], single_yelp: list[float], forgetting_drop: float | None = None) -> dict:
    tasks = [{"name": "movie", "kind": "binary", "metric": "f1"}, {"name": "yelp", "kind": "multiclass", "metric": "macro_f1"}]
    curves = lambda movie, yelp: {"movie": {"loss": [0.6, 0.5], "f1": movie}, "yelp": {"loss": [1.0, 0.9], "f1": yelp}}  # noqa: E731
    document = {
        "config": {"tasks": tasks, "epochs": 2},
        "results": {"torch": {"multi": curves([0.7, 0.8], multi_yelp), "single": curves([0.7, 0.8], single_yelp)}},
        "grad_norms": {"torch": {"trunk.0": [0.1, 0.1], "heads.movie": [0.2, 0.1], "heads.yelp": [0.3, 0.2]}},
    }
    if forgetting_drop is not None:
        phases = [{"trained": "movie", "f1": {"movie": [0.8, 0.8]}}, {"trained": "yelp", "f1": {"movie": [0.7, 0.8 - forgetting_drop]}}]
        document["forgetting"] = {"torch": {"first_task": "movie", "phases": phases, "after_own_phase": 0.8,
                                            "after_last_phase": 0.8 - forgetting_drop, "drop": forgetting_drop}}
    return document


def test_claims_hold_when_the_numbers_say_so_and_not_otherwise():
    good = {c["claim"][:30]: c["holds"]["torch"] for c in report.claims(_document([0.6, 0.7], [0.4, 0.65], forgetting_drop=0.2))}
    bad = {c["claim"][:30]: c["holds"]["torch"] for c in report.claims(_document([0.3, 0.6], [0.4, 0.65], forgetting_drop=-0.01))}
    assert list(good) == list(bad) and len(good) == 5
    assert all(good.values())
    assert [bad[k] for k in good] == [True, False, False, True, False]


# --- mtl experiment -----------------------------------------------------------------------------


def test_experiment_on_both_backends_writes_the_report_and_plots(tmp_path):
    result = mtl("--quiet", "experiment", "--backend", "both", "--epochs", "1", "--out", tmp_path, *TINY_SYNTHETIC)
    assert result.code == 0, result.err
    assert result.err == ""  # --quiet: no progress bars, no notes
    document = json.loads((tmp_path / "report.json").read_text())
    assert {"config", "results", "grad_norms"} <= set(document)
    assert document["config"]["epochs"] == 1 and document["config"]["backends"] == ["torch", "jax"]
    assert [t["name"] for t in document["config"]["tasks"]] == ["movie", "yelp"]
    assert set(document["results"]) == {"torch", "jax"} == set(document["grad_norms"])
    for backend, result_ in document["results"].items():
        assert set(result_) == {"multi", "single"}
        for kind in ("multi", "single"):
            assert set(result_[kind]) == {"movie", "yelp"}
            for curves in result_[kind].values():
                assert set(curves) == {"loss", "f1"}
                assert len(curves["loss"]) == len(curves["f1"]) == 1
                assert 0 <= curves["f1"][0] <= 1 and curves["loss"][0] > 0
        assert set(document["grad_norms"][backend]) == {"trunk.0", "heads.movie", "heads.yelp"}
        assert all(len(v) == 1 and v[0] > 0 for v in document["grad_norms"][backend].values())
    assert "forgetting" not in document
    # One start (the seed's canonical draw), one batch stream: the backends train one model.
    gaps = document["backend_agreement"]["max_abs_difference"]
    assert gaps["loss"] < 1e-5 and gaps["f1"] < 1e-2, gaps
    markdown = (tmp_path / "report.md").read_text()
    assert "| torch | yelp | macro-F1 |" in markdown and "| jax | movie | F1 |" in markdown
    assert "## One model, two frameworks" in markdown
    assert "The blog's claims" in markdown
    for name in ("f1.png", "grad_norms.png", "loss.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"]({name})" in markdown
    assert "| torch | movie | F1 |" in result.out  # the final table on stdout


def test_sequential_experiment_reports_the_first_tasks_forgetting(tmp_path):
    result = mtl("--quiet", "experiment", "--curriculum", "sequential", "--epochs", "2", "--out", tmp_path, *TINY_SYNTHETIC)
    assert result.code == 0, result.err
    document = json.loads((tmp_path / "report.json").read_text())
    forgetting = document["forgetting"]["torch"]
    assert forgetting["first_task"] == "movie"
    assert [p["trained"] for p in forgetting["phases"]] == ["movie", "yelp"]
    assert all(len(p["f1"]["movie"]) == 2 for p in forgetting["phases"])
    assert forgetting["after_own_phase"] == forgetting["phases"][0]["f1"]["movie"][-1]
    assert forgetting["drop"] == pytest.approx(forgetting["after_own_phase"] - forgetting["phases"][1]["f1"]["movie"][-1])
    assert "## Forgetting run" in (tmp_path / "report.md").read_text()
    assert (tmp_path / "forgetting.png").exists()


def test_experiment_on_files_with_fixed_weights_records_them(files, tmp_path):
    result = mtl("--quiet", "experiment", *task_args(files), "--epochs", "1", "--weighting", "fixed:movie=1,yelp=2", "--out", tmp_path)
    assert result.code == 0, result.err
    config = json.loads((tmp_path / "report.json").read_text())["config"]
    assert config["weighting"] == {"movie": 1.0, "yelp": 2.0} and config["single_task_weighting"] == "sum"
    assert config["data"]["kind"] == "files" and [t["path"] for t in config["data"]["tasks"]] == [str(files.movie), str(files.yelp)]
    assert [(t["name"], t["kind"], t["num_outputs"], t["n_train"], t["n_test"]) for t in config["tasks"]] == [
        ("movie", "binary", 1, 48, 12), ("yelp", "multiclass", 3, 48, 12)]


def test_compare_writes_one_row_per_method_whose_delta_m_follows_from_its_own_scores(tmp_path):
    result = mtl("--quiet", "experiment", "--compare", "sum,pcgrad,famo", "--seeds", "2", "--epochs", "2", "--out", tmp_path, *TINY_SYNTHETIC)
    assert result.code == 0, result.err
    document = json.loads((tmp_path / "report.json").read_text())
    comparison, single = document["comparison"], document["comparison_single"]
    assert list(comparison) == ["sum", "pcgrad", "famo"] and set(single) == {"movie", "yelp"}
    assert document["comparison_setup"]["seeds"] == [0, 1] and all(len(v) == 2 for v in single.values())
    for method, row in comparison.items():
        assert set(row["f1"]) == {"movie", "yelp"} and all(len(v) == 2 for v in row["f1"].values())
        gains = [(np.mean(row["f1"][t]) - np.mean(single[t])) / np.mean(single[t]) for t in ("movie", "yelp")]
        assert row["delta_m"] == pytest.approx(100 * np.mean(gains), rel=1e-9), method
        assert row["step_ms"] > 0 and row["unconverged_steps"] == 0
    assert (comparison["pcgrad"]["aggregator"], comparison["famo"]["weighting"]) == ("pcgrad", "famo")
    markdown = (tmp_path / "report.md").read_text()
    assert "| single-task |" in markdown and "| famo |" in markdown and "](comparison.png)" in markdown
    assert (tmp_path / "comparison.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| pcgrad |" in result.out


def test_methods_with_identical_results_are_named_in_the_report():
    document = {"comparison": {"a": {"f1": {"t": [0.5]}}, "b": {"f1": {"t": [0.5]}}, "c": {"f1": {"t": [0.6]}}}}
    from mtl_cli.compare import identical_results

    assert identical_results(document["comparison"]) == {"a": ["b"], "b": ["a"]}


# --- mtl train / mtl predict --------------------------------------------------------------------


@pytest.mark.parametrize("backend, other", [("torch", "jax"), ("jax", "torch")])
def test_train_with_an_aggregator_and_famo_writes_a_checkpoint_the_other_backend_reads(files, tmp_path, backend, other):
    out = tmp_path / "model"
    result = mtl("--quiet", "train", *task_args(files), "--backend", backend, "--epochs", "1",
                 "--aggregator", "mgda", "--weighting", "famo", "--out", out)
    assert result.code == 0, result.err
    config = json.loads((out / "metrics.json").read_text())["config"]
    assert (config["aggregator"], config["weighting"]) == ("mgda", "famo")
    assert load_file(str(out / "model.safetensors"))["weighting.state.logits"].shape == (2,)
    assert len(_predict(files, out / "model.safetensors", other)) == 12


@pytest.mark.parametrize("backend, other", [("torch", "jax"), ("jax", "torch")])
def test_hashed_words_train_with_lazy_adam_by_default_and_predict_in_either_backend(files, tmp_path, backend, other):
    out = tmp_path / "hashed"
    # 2^17 columns: lazy Adam's default from there on; a narrow trunk keeps the (V, H) kernel small
    result = mtl("--quiet", "train", *task_args(files), "--backend", backend, "--epochs", "2", "--hidden", "8",
                 "--hash-features", str(2**17), "--out", out)
    assert result.code == 0, result.err
    config = json.loads((out / "metrics.json").read_text())["config"]
    assert (config["optimizer"], config["hash_features"], config["max_features"]) == ("lazy_adam", 2**17, None)
    with safe_open(str(out / "model.safetensors"), framework="numpy") as handle:
        metadata = handle.metadata()
    assert (metadata["optimizer"], metadata["hash_features"], "vocabulary" in metadata) == ("lazy_adam", str(2**17), False)
    here, there = _predict(files, out / "model.safetensors", backend), _predict(files, out / "model.safetensors", other)
    assert len(here) == 12 and [r["label"] for r in here] == [r["label"] for r in there]


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_train_writes_a_checkpoint_and_metrics(trained, backend):
    run = trained[backend]
    assert run.code == 0, run.err
    metrics = json.loads((run.folder / "metrics.json").read_text())
    assert set(metrics["tasks"]) == {"movie", "yelp"}
    for task in metrics["tasks"].values():
        assert 0 <= task["f1"] <= 1
        assert (task["n_train"], task["n_test"]) == (48, 12)
    assert metrics["label_names"] == {"movie": ["no", "yes"], "yelp": ["1", "3", "5"]}
    assert (run.folder / "model.safetensors").stat().st_size > 0
    assert run.out.splitlines()[0].split()[:2] == ["task", "metric"]
    assert {line.split()[0] for line in run.out.splitlines()[1:]} == {"movie", "yelp"}


def test_one_seed_trains_one_model_in_either_backend(trained):
    # The seed's canonical draw is every backend's start, and the batches follow the seed alike.
    torch_weights, jax_weights = (load_file(str(trained[b].folder / "model.safetensors")) for b in ("torch", "jax"))
    weights = [name for name in torch_weights if name.startswith(("trunk.", "heads."))]
    assert weights and set(weights) <= set(jax_weights)
    for name in weights:
        np.testing.assert_allclose(jax_weights[name], torch_weights[name], rtol=1e-4, atol=1e-6, err_msg=name)


def _predict(files, checkpoint, backend, task="yelp") -> list[dict]:
    result = mtl("--quiet", "predict", "--checkpoint", checkpoint, "--task", task, f"{files.new}:body", "--backend", backend)
    assert result.code == 0, result.err
    return read_csv(result.out)


@pytest.mark.parametrize("trained_in, predicted_in", [("torch", "jax"), ("jax", "torch")])
def test_a_checkpoint_predicts_the_same_in_either_backend(files, trained, trained_in, predicted_in):
    checkpoint = trained[trained_in].folder / "model.safetensors"
    for task, header in (("yelp", ["row", "label", "prob_1", "prob_3", "prob_5"]), ("movie", ["row", "label", "prob_no", "prob_yes"])):
        here, there = _predict(files, checkpoint, trained_in, task), _predict(files, checkpoint, predicted_in, task)
        assert list(here[0]) == header and len(here) == 12
        assert [r["label"] for r in here] == [r["label"] for r in there]
        assert {r["label"] for r in here} <= set(h[len("prob_"):] for h in header[2:])
        probabilities = lambda rows: np.array([[float(r[h]) for h in header[2:]] for r in rows])  # noqa: E731
        np.testing.assert_allclose(probabilities(here), probabilities(there), atol=1e-5)
        np.testing.assert_allclose(probabilities(here).sum(axis=1), 1.0, atol=1e-5)


def test_predict_writes_to_a_file_with_out(files, trained, tmp_path):
    out = tmp_path / "predictions.csv"
    checkpoint = trained["torch"].folder / "model.safetensors"
    result = mtl("--quiet", "predict", "--checkpoint", checkpoint, "--task", "movie", f"{files.new}:body", "--out", out)
    assert result.code == 0 and result.out == ""
    assert [r["row"] for r in read_csv(out.read_text())] == [str(i) for i in range(12)]


def test_texts_without_a_word_and_a_training_split_under_one_batch_are_noted_on_stderr(tmp_path):
    rows = [[f"good film number{i}" if i % 4 else "", i % 2] for i in range(40)] + [["!", 0], ["a b", 1]]  # 12 without a word
    data = write_table(tmp_path / "reviews.csv", ["text", "label"], rows)
    result = mtl("train", "--task", f"movie={data}:text:label", "--epochs", "1", "--out", tmp_path / "run")
    assert result.code == 0, result.err
    assert "task 'movie': 12 of 42 texts hold no word the model reads" in result.err
    assert "task 'movie' trains on 34 rows, fewer than one batch (--batch-size 64; --test-fraction 0.2 holds out the rest)" in result.err
    batched = mtl("train", "--task", f"movie={data}:text:label", "--epochs", "1", "--batch-size", "34", "--out", tmp_path / "batched")
    assert batched.code == 0 and "fewer than one batch" not in batched.err, batched.err
    new = write_table(tmp_path / "new.csv", ["text"], [["good film"], [""], ["unseenword"]])
    checkpoint = tmp_path / "run" / "model.safetensors"
    result = mtl("predict", "--checkpoint", checkpoint, "--task", "movie", f"{new}:text")
    assert result.code == 0 and f"{new}: 2 of 3 texts hold no word the model reads" in result.err, result.err
    assert mtl("--quiet", "predict", "--checkpoint", checkpoint, "--task", "movie", f"{new}:text").err == ""


# --- bad input: one line on stderr, non-zero exit, no traceback ---------------------------------


def _bad_inputs(folder: Path, files, checkpoint: Path) -> dict[str, tuple[list, str | tuple[str, ...]]]:
    """{case: (argv, text(s) the one error line must hold)}, writing the bad files into ``folder``."""
    empty = folder / "empty.csv"
    empty.write_text("")
    latin1 = folder / "latin1.csv"
    latin1.write_bytes("text,label\ncafé ok,yes\n".encode("latin-1"))
    ragged = write_table(folder / "ragged.csv", ["text", "label"], [["fine", "yes"], ["a", "b", "c"]])
    three = write_table(folder / "three.csv", ["text", "label"], [["a", "x"], ["b", "y"], ["c", "z"]])
    numbers = write_table(folder / "numbers.csv", ["text", "label"], [["a", "1.5"], ["b", "two"]])
    one_class = write_table(folder / "one.csv", ["text", "label"], [["a", "x"], ["b", "x"]])
    blank = write_table(folder / "blank.csv", ["text", "label"], [["a", "1"], ["b", ""], ["c", "0"]])
    foreign = folder / "foreign.safetensors"
    save_file({"weight": np.zeros((2, 2), np.float32)}, str(foreign))
    truncated = folder / "truncated.safetensors"
    truncated.write_bytes(checkpoint.read_bytes()[:200])
    no_vocabulary = folder / "no-vocabulary.safetensors"
    torch_ref.save_checkpoint(no_vocabulary, torch_ref.MultiTaskNetwork(5, (TaskSpec("movie", "binary", 1),), (4,)))
    a_file = write_table(folder / "not-a-folder", ["x"], [["1"]])
    train = lambda *spec: ["train", "--epochs", "1", "--out", folder / "out", *spec]  # noqa: E731
    predict = lambda ckpt, *rest: ["predict", "--checkpoint", ckpt, "--task", "movie", f"{files.new}:body", *rest]  # noqa: E731
    return {
        "missing_file": (train("--task", f"m={folder / 'nope.csv'}:text:label"), "nope.csv: no such file"),
        "missing_column": (train("--task", f"m={files.movie}:txt:label"), "movie.csv: no column named ['txt']"),
        "empty_file": (train("--task", f"m={empty}:text:label"), "empty.csv: the file is empty"),
        "undecodable_text": (train("--task", f"m={latin1}:text:label"), ("latin1.csv, line", "text is not valid UTF-8")),
        "ragged_row": (train("--task", f"m={ragged}:text:label"), "ragged.csv, line 3"),
        "labels_not_binary": (train("--task", f"m={three}:text:label:binary"), "three.csv: column 'label' holds"),
        "labels_not_numbers": (train("--task", f"m={numbers}:text:label:regression"), "numbers.csv, row 3: regression label 'two'"),
        "one_class": (train("--task", f"m={one_class}:text:label"), "one.csv: column 'label' has one class"),
        "blank_label": (train("--task", f"m={blank}:text:label"), "blank.csv, row 3: column 'label' is empty"),
        "test_fraction_out_of_range": (train("--task", f"m={files.movie}:text:label", "--test-fraction", "1.5"),
                                       "argument --test-fraction: must lie in [0, 1)"),
        "resume_of_no_folder": (["train", "--resume", folder / "nowhere"], "nowhere: no such folder"),
        "malformed_spec": (train("--task", f"movie{files.movie}"), "expected NAME=PATH:TEXT_COL:LABEL_COL"),
        "bad_kind": (train("--task", f"m={files.movie}:text:label:ordinal"), "KIND 'ordinal' is not one of"),
        "bad_weighting": (train("--task", f"m={files.movie}:text:label", "--weighting", "fixed:m=x"), "--weighting 'fixed:m=x'"),
        "weighting_of_unknown_task": (train("--task", f"m={files.movie}:text:label", "--weighting", "fixed:z=1"), "unknown ['z']"),
        "out_is_a_file": (["train", "--epochs", "1", "--out", a_file, "--task", f"m={files.movie}:text:label"], "not-a-folder"),
        "experiment_of_one_task": (["experiment", "--task", f"m={files.movie}:text:label"], "at least two tasks"),
        "synthetic_size_with_files": (["experiment", *task_args(files), "--n-train", "5"], "--n-train size the synthetic default"),
        "foreign_checkpoint": (predict(foreign), "foreign.safetensors: not an mtl-twins checkpoint"),
        "truncated_checkpoint": (predict(truncated), "truncated.safetensors: not a readable safetensors checkpoint"),
        "truncated_checkpoint_in_jax": (predict(truncated, "--backend", "jax"), "truncated.safetensors"),
        "missing_checkpoint": (predict(folder / "gone.safetensors"), "gone.safetensors: no such checkpoint file"),
        "checkpoint_without_vocabulary": (predict(no_vocabulary), "no-vocabulary.safetensors: the checkpoint holds no vocabulary"),
        "unknown_task": (["predict", "--checkpoint", checkpoint, "--task", "netflix", f"{files.new}:body"], "no task named 'netflix'"),
        "input_without_column": (["predict", "--checkpoint", checkpoint, "--task", "movie", str(files.new)], "expected PATH:TEXT_COL"),
        "input_column_missing": (["predict", "--checkpoint", checkpoint, "--task", "movie", f"{files.new}:text"], "new.csv: no column named ['text']"),
        "unknown_option": (["train", "--task", f"m={files.movie}:text:label", "--epoch", "3"], "unrecognized arguments: --epoch 3"),
        "unknown_option_of_experiment": (["experiment", "--quick"], "mtl experiment: error: unrecognized arguments: --quick (see mtl experiment --help)"),
        "missing_required_option": (["predict", "new.csv:text"], "the following arguments are required: --checkpoint, --task"),
        "train_without_tasks": (["train"], "train needs --task SPEC (one per task), or --resume DIR"),
        "bad_choice": (["experiment", "--backend", "tensorflow"], "invalid choice: 'tensorflow'"),
        "not_a_number": (["experiment", "--epochs", "six"], "invalid int value: 'six'"),
        "no_command": ([], "the following arguments are required: COMMAND"),
        "unknown_compared_method": (["experiment", "--compare", "sum,softmax"], "unknown methods ['softmax']"),
        "method_compared_twice": (["experiment", "--compare", "sum,pcgrad,sum"], "['sum'] named more than once"),
        "compare_in_both_backends": (["experiment", "--compare", "sum", "--backend", "both"], "--compare trains every method in one backend"),
        "aggregator_with_compare": (["experiment", "--compare", "sum", "--aggregator", "mgda"], "name the aggregators to compare in --compare"),
        "unknown_aggregator": (train("--task", f"m={files.movie}:text:label", "--aggregator", "gradnorm"), "invalid choice: 'gradnorm'"),
        "zero_seeds": (["experiment", "--compare", "sum", "--seeds", "0"], "--seeds must be >= 1, got 0"),
        "hash_and_max_features": (train("--task", f"m={files.movie}:text:label", "--max-features", "10", "--hash-features", "64"),
                                  "argument --hash-features: not allowed with argument --max-features"),
        "zero_hash_features": (train("--task", f"m={files.movie}:text:label", "--hash-features", "0"), "--hash-features must be >= 1, got 0"),
        "hash_features_of_synthetic": (["experiment", "--hash-features", "64"], "--hash-features turns the words of --task files into columns"),
        "unknown_optimizer": (train("--task", f"m={files.movie}:text:label", "--optimizer", "sgd"), "invalid choice: 'sgd'"),
        "hash_features_beyond_memory": (train("--task", f"m={files.movie}:text:label", "--hash-features", str(2**40)),
                                        ("219,902,325,555,400 weights (1,099,511,627,776 input columns, hidden 200)", "GiB, this machine has", "use fewer --hash-features")),
    }


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory, files, trained):
    return _bad_inputs(tmp_path_factory.mktemp("bad"), files, trained["torch"].folder / "model.safetensors")


BAD_CASES = [
    "missing_file", "missing_column", "empty_file", "undecodable_text", "ragged_row", "labels_not_binary",
    "labels_not_numbers", "one_class", "blank_label", "test_fraction_out_of_range", "resume_of_no_folder", "malformed_spec", "bad_kind", "bad_weighting", "weighting_of_unknown_task",
    "out_is_a_file", "experiment_of_one_task", "synthetic_size_with_files", "foreign_checkpoint", "truncated_checkpoint",
    "truncated_checkpoint_in_jax", "missing_checkpoint", "checkpoint_without_vocabulary", "unknown_task",
    "input_without_column", "input_column_missing", "unknown_option", "unknown_option_of_experiment", "missing_required_option", "train_without_tasks", "bad_choice",
    "not_a_number", "no_command", "unknown_compared_method", "method_compared_twice", "compare_in_both_backends",
    "aggregator_with_compare", "unknown_aggregator", "zero_seeds", "hash_and_max_features", "zero_hash_features",
    "hash_features_of_synthetic", "unknown_optimizer", "hash_features_beyond_memory",
]


def test_the_bad_input_cases_are_all_run(bad_inputs):
    assert sorted(BAD_CASES) == sorted(bad_inputs)


@pytest.mark.parametrize("case", BAD_CASES)
def test_bad_input_gives_one_line_on_stderr_and_a_nonzero_exit(bad_inputs, case):
    argv, expected = bad_inputs[case]
    result = mtl(*argv)
    assert result.code not in (0, None)
    assert len(result.err.splitlines()) == 1, result.err
    assert "Traceback" not in result.err
    for text in (expected,) if isinstance(expected, str) else expected:
        assert text in result.err
    assert result.err.startswith("mtl")


def test_the_installed_command_fails_in_one_line_without_traceback(files, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mtl_cli", "train", "--task", f"m={tmp_path / 'absent.csv'}:text:label"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"mtl train: error: {tmp_path / 'absent.csv'}: no such file"]
