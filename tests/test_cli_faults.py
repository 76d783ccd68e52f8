"""Fault injection against the ``mtl`` command: nothing the user has is lost, half-written or misread.

Each bad case must exit non-zero with one line on stderr, no traceback, and leave every file that
existed byte-identical. Permission cases use a file in place of a folder (the tests run as root,
for whom chmod means nothing). Interrupts are real SIGINTs to a real process.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

import jax_impl
import torch_ref
from cli_support import TINY_SYNTHETIC, mtl, read_csv, task_args, write_table
from mtl_core.checkpoint import digest, read_checkpoint
from mtl_core.data.text import read_columns

ROOT = Path(__file__).resolve().parents[1]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative name -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_refused(result, *texts: str) -> None:
    assert result.code not in (0, None), result.out
    assert len(result.err.splitlines()) == 1 and "Traceback" not in result.err, result.err
    for text in texts:
        assert text in result.err, result.err


def spawn(*argv, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "mtl_cli", *map(str, argv)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


@pytest.fixture()
def run_folder(files, trained, tmp_path) -> Path:
    """A copy of a trained run's folder, to be attacked."""
    folder = tmp_path / "run"
    folder.mkdir()
    for name, data in snapshot(trained["torch"].folder).items():
        (folder / name).write_bytes(data)
    return folder


# -- nothing destroyed ------------------------------------------------------------------------------------


def test_epochs_0_into_a_trained_run_is_refused_and_leaves_it_as_it_was(files, run_folder):
    before = snapshot(run_folder)
    assert_refused(mtl("train", *task_args(files), "--epochs", "0", "--out", run_folder), "--epochs: must be >= 1, got 0")
    assert_refused(mtl("experiment", "--epochs", "0", "--out", run_folder), "--epochs: must be >= 1, got 0")
    assert snapshot(run_folder) == before


def test_a_run_folder_is_replaced_only_with_overwrite(files, run_folder):
    before = snapshot(run_folder)
    assert_refused(mtl("train", *task_args(files), "--epochs", "1", "--out", run_folder), "already holds a run", "--overwrite")
    assert snapshot(run_folder) == before
    result = mtl("--quiet", "train", *task_args(files), "--epochs", "1", "--seed", "3", "--out", run_folder, "--overwrite")
    assert result.code == 0, result.err
    assert snapshot(run_folder)["model.safetensors"] != before["model.safetensors"]


def test_an_experiment_report_is_replaced_only_with_overwrite(tmp_path):
    assert mtl("--quiet", "experiment", "--epochs", "1", "--out", tmp_path, *TINY_SYNTHETIC).code == 0
    before = snapshot(tmp_path)
    assert_refused(mtl("experiment", "--epochs", "1", "--out", tmp_path, *TINY_SYNTHETIC), "already holds a run (report.json, report.md)")
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("which", ["input", "checkpoint"])
def test_predict_never_writes_over_its_inputs(files, trained, which):
    checkpoint = trained["torch"].folder / "model.safetensors"
    target = files.new if which == "input" else checkpoint
    before = target.read_bytes()
    result = mtl("predict", "--checkpoint", checkpoint, "--task", "movie", f"{files.new}:body", "--out", target, "--overwrite")
    assert_refused(result, "is the input", "must not replace an input")
    assert target.read_bytes() == before


def test_predict_replaces_an_existing_output_only_with_overwrite(files, trained, tmp_path):
    out = tmp_path / "predictions.csv"
    out.write_text("keep me\n")
    arguments = ("predict", "--checkpoint", trained["torch"].folder / "model.safetensors", "--task", "movie", f"{files.new}:body", "--out", out)
    assert_refused(mtl(*arguments), "exists: pass --overwrite")
    assert out.read_text() == "keep me\n"
    assert mtl("--quiet", *arguments, "--overwrite").code == 0
    assert read_csv(out.read_text())[0]["row"] == "0"


def test_predictions_carry_their_row_and_the_kept_columns(files, trained):
    result = mtl("--quiet", "predict", "--checkpoint", trained["torch"].folder / "model.safetensors", "--task", "movie",
                 f"{files.new}:body", "--keep", "id,body")
    rows = read_csv(result.out)
    source = read_columns(files.new, ["id", "body"])
    assert list(rows[0]) == ["row", "id", "body", "label", "prob_no", "prob_yes"]
    assert [r["row"] for r in rows] == [str(i) for i in range(12)]
    assert [r["id"] for r in rows] == source["id"] and [r["body"] for r in rows] == source["body"]


@pytest.mark.parametrize("make", ["file_in_place_of_the_folder", "folder_under_a_file"])
def test_an_unusable_out_fails_before_any_training(files, tmp_path, make):
    blocker = write_table(tmp_path / "blocker", ["x"], [["1"]])
    out = blocker if make == "file_in_place_of_the_folder" else blocker / "run"
    before = snapshot(tmp_path)
    started = time.perf_counter()
    assert_refused(mtl("train", *task_args(files), "--epochs", "50", "--out", out), str(out))
    assert time.perf_counter() - started < 20  # refused up front, not after 50 epochs
    assert snapshot(tmp_path) == before


def test_a_killed_saves_leftover_is_removed_by_the_next_run(files, run_folder):
    leftover = run_folder / ".model.safetensors.abc123.tmp"
    leftover.write_bytes(b"\0" * 1000)
    assert mtl("--quiet", "train", *task_args(files), "--epochs", "1", "--out", run_folder, "--overwrite").code == 0
    assert not leftover.exists()


# -- checkpoints that can be trusted --------------------------------------------------------------------------


def _rewrite(path: Path, edit, sign: bool) -> None:
    with safe_open(str(path), framework="numpy") as handle:
        metadata, tensors = dict(handle.metadata()), {k: handle.get_tensor(k) for k in handle.keys()}
    edit(tensors)
    if sign:
        metadata["sha256"] = json.dumps({k: digest(v) for k, v in tensors.items()})
    save_file(tensors, str(path), metadata=metadata)


def _nan_bias(tensors):
    tensors["heads.movie.bias"] = tensors["heads.movie.bias"].copy()
    tensors["heads.movie.bias"][0] = np.nan


@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("sign, expected", [(False, "tensor 'heads.movie.bias' does not match its SHA-256 digest"),
                                            (True, "tensor 'heads.movie.bias' holds NaN or inf")])
def test_a_damaged_checkpoint_is_refused_naming_the_tensor(files, run_folder, backend, sign, expected):
    path = run_folder / "model.safetensors"
    _rewrite(path, _nan_bias, sign)
    result = mtl("predict", "--checkpoint", path, "--task", "movie", f"{files.new}:body", "--backend", backend)
    assert_refused(result, "model.safetensors", expected)


def test_both_backends_refuse_non_finite_weights_on_import(helpers):
    model = torch_ref.MultiTaskNetwork(helpers.input_dim, helpers.tasks, helpers.hidden)
    params = torch_ref.export_params(model)
    params["trunk.0.bias"][3] = np.inf
    with pytest.raises(ValueError, match=r"params\['trunk\.0\.bias'\] holds 1 NaN or inf values"):
        torch_ref.import_params(model, params)
    with pytest.raises(ValueError, match=r"params\['trunk\.0\.bias'\] holds 1 NaN or inf values"):
        jax_impl.import_params(params)


# -- labels -------------------------------------------------------------------------------------------------


def test_a_binary_column_of_one_class_is_refused_naming_it(files, tmp_path):
    path = write_table(tmp_path / "all-yes.csv", ["text", "label"], [["good film", "yes"], ["great plot", "yes"], ["fun", "YES"]])
    assert_refused(mtl("train", "--task", f"m={path}:text:label", "--out", tmp_path / "out"), "all-yes.csv: column 'label' has one class")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["train", "experiment"])
def test_a_model_too_large_for_memory_is_refused_before_anything_is_written(files, tmp_path, command):
    out = tmp_path / "out"
    result = mtl(command, *task_args(files), "--hash-features", str(2**36), "--out", out)
    assert_refused(result, "training it needs about", "use fewer --hash-features")
    assert result.code == 2 and not out.exists()


# -- device ------------------------------------------------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without a GPU")  # reason: needs no GPU
@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_device_gpu_without_a_gpu_exits_2_and_writes_nothing(files, tmp_path, backend):
    out = tmp_path / "out"
    result = mtl("train", *task_args(files), "--backend", backend, "--device", "gpu", "--out", out)
    assert_refused(result, "--device gpu:", "GPU")
    assert result.code == 2 and not out.exists()


def test_the_device_is_recorded(trained, tmp_path):
    assert json.loads((trained["jax"].folder / "metrics.json").read_text())["device"].startswith("cpu")
    assert json.loads((trained["torch"].folder / "metrics.json").read_text())["device"] == "cpu"
    assert mtl("--quiet", "experiment", "--backend", "both", "--epochs", "1", "--out", tmp_path, *TINY_SYNTHETIC).code == 0
    document = json.loads((tmp_path / "report.json").read_text())
    assert document["config"]["devices"]["torch"] == "cpu" and document["config"]["devices"]["jax"].startswith("cpu")
    assert "torch" in (tmp_path / "report.md").read_text() and " on cpu" in (tmp_path / "report.md").read_text()


# -- long runs ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_resume_ends_with_the_model_of_an_uninterrupted_run(files, tmp_path, backend):
    common = ("--quiet", "train", *task_args(files), "--backend", backend, "--weighting", "dwa", "--aggregator", "pcgrad")
    assert mtl(*common, "--epochs", "3", "--out", tmp_path / "whole").code == 0
    assert mtl(*common, "--epochs", "1", "--out", tmp_path / "part").code == 0
    assert json.loads((tmp_path / "part" / "metrics.json").read_text())["epochs_done"] == 1
    result = mtl("--quiet", "train", "--resume", tmp_path / "part", "--epochs", "3")
    assert result.code == 0, result.err
    whole, resumed = load_file(str(tmp_path / "whole" / "model.safetensors")), load_file(str(tmp_path / "part" / "model.safetensors"))
    assert whole.keys() == resumed.keys() and all(np.array_equal(whole[k], resumed[k]) for k in whole)
    metrics = [json.loads((tmp_path / run / "metrics.json").read_text()) for run in ("whole", "part")]
    assert metrics[0]["history"] == metrics[1]["history"] and metrics[1]["epochs_done"] == 3
    config = metrics[1]["config"]  # the command that began the run, then the one that resumed it
    assert config["command"].endswith("--epochs 1 --out " + str(tmp_path / "part")) and config["epochs"] == 3
    assert config["resumed_by"] == [f"mtl --quiet train --resume {tmp_path / 'part'} --epochs 3"] and metrics[0]["config"]["resumed_by"] == []


@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_a_hashed_lazy_run_resumes_to_the_model_of_an_uninterrupted_one(files, tmp_path, backend):
    common = ("--quiet", "train", *task_args(files), "--backend", backend, "--hidden", "8", "--hash-features", "4096",
              "--optimizer", "lazy_adam")
    assert mtl(*common, "--epochs", "2", "--out", tmp_path / "whole").code == 0
    assert mtl(*common, "--epochs", "1", "--out", tmp_path / "part").code == 0
    result = mtl("--quiet", "train", "--resume", tmp_path / "part", "--epochs", "2")
    assert result.code == 0, result.err
    whole, resumed = load_file(str(tmp_path / "whole" / "model.safetensors")), load_file(str(tmp_path / "part" / "model.safetensors"))
    assert whole.keys() == resumed.keys() and all(np.array_equal(whole[k], resumed[k]) for k in whole)
    assert json.loads((tmp_path / "part" / "metrics.json").read_text())["config"]["optimizer"] == "lazy_adam"
    assert_refused(mtl("train", "--resume", tmp_path / "part", "--epochs", "3", "--hash-features", "64"), "leave out --hash-features")


@pytest.mark.parametrize("features", [(), ("--hash-features", "4096")], ids=["vocabulary", "hashed"])
def test_resume_refuses_task_files_changed_since_the_run_began(files, tmp_path, features):
    # Flipped labels leave a vocabulary (and any hashing) as it was: only the files' digests tell.
    movie = tmp_path / "movie.csv"
    movie.write_bytes(Path(files.movie).read_bytes())
    run = tmp_path / "run"
    specs = ("--task", f"movie={movie}:text:label", "--task", f"yelp={files.yelp}:review:stars")
    assert mtl("--quiet", "train", *specs, *features, "--hidden", "8", "--epochs", "1", "--out", run).code == 0
    rows = read_columns(movie, ["text", "label"])
    flipped = [[text, "0" if label.strip() in ("1", "yes", "true") else "1"] for text, label in zip(rows["text"], rows["label"])]
    write_table(movie, ["text", "label"], flipped)
    before = snapshot(run)
    assert_refused(mtl("train", "--resume", run, "--epochs", "2"), "the task files changed since the run began", "movie.csv")
    assert snapshot(run) == before


def test_resume_refuses_a_changed_recipe_and_a_finished_run(files, trained):
    assert_refused(mtl("train", "--resume", trained["torch"].folder, "--lr", "0.1"), "leave out --lr")
    assert_refused(mtl("train", "--resume", trained["torch"].folder, "--epochs", "2"), "has done 2 epochs, --epochs asks for 2")


def test_ctrl_c_during_training_ends_with_one_line_and_keeps_the_last_epoch(files, tmp_path):
    out = tmp_path / "run"
    process = spawn("train", *task_args(files), "--epochs", "100000", "--out", out)
    deadline = time.monotonic() + 120
    while not (out / "metrics.json").exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert err.rstrip("\n").splitlines()[-1] == "mtl train: interrupted" and "Traceback" not in err
    assert read_checkpoint(out / "model.safetensors").arch.tasks  # a whole checkpoint of a finished epoch
    assert json.loads((out / "metrics.json").read_text())["epochs_done"] >= 1


def test_ctrl_c_while_starting_ends_with_one_line(files, tmp_path):
    process = spawn("train", *task_args(files), "--out", tmp_path / "run")
    time.sleep(0.4)  # importing torch and jax takes seconds
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert err.strip() in ("mtl: interrupted", "mtl train: interrupted") and "Traceback" not in err


def test_ctrl_c_that_lands_in_a_garbage_collector_callback_still_ends_the_run(files, tmp_path):
    # jax registers a gc callback: a SIGINT handled while it runs raises KeyboardInterrupt there,
    # where Python can only print it ("Exception ignored in ...") and the run would go on.
    out = tmp_path / "run"

    def interrupted(phase, info):
        del info
        if phase == "start" and (out / "metrics.json").exists():  # once the first epoch is saved
            gc.callbacks.remove(interrupted)
            raise KeyboardInterrupt

    gc.callbacks.append(interrupted)
    try:
        result = mtl("train", *task_args(files), "--epochs", "30", "--out", out)
    finally:
        if interrupted in gc.callbacks:
            gc.callbacks.remove(interrupted)
    assert interrupted not in gc.callbacks  # it did run during training
    assert result.code == 130, result.err
    assert result.err.rstrip("\n").splitlines()[-1] == "mtl train: interrupted" and "Exception ignored" not in result.err
    assert json.loads((out / "metrics.json").read_text())["epochs_done"] < 30


# -- everyday behaviour ------------------------------------------------------------------------------------


def test_version_and_global_flags_before_or_after_the_subcommand(files, tmp_path):
    version = mtl("--version")
    assert version.code == 0 and version.out.startswith("mtl ")
    after = mtl("train", *task_args(files), "--epochs", "1", "--out", tmp_path / "a", "--quiet", "--device", "cpu")
    before = mtl("--quiet", "--device", "cpu", "train", *task_args(files), "--epochs", "1", "--out", tmp_path / "b")
    assert after.code == before.code == 0 and after.err == before.err == ""


def test_the_recipes_knobs_are_options_and_recorded(files, tmp_path):
    result = mtl("--quiet", "train", *task_args(files), "--epochs", "1", "--lr", "0.01", "--batch-size", "16", "--hidden", "32,8",
                 "--activation", "relu", "--out", tmp_path)
    assert result.code == 0, result.err
    config = json.loads((tmp_path / "metrics.json").read_text())["config"]
    assert (config["lr"], config["batch_size"], config["hidden_dims"], config["activation"]) == (0.01, 16, [32, 8], "relu")
    assert read_checkpoint(tmp_path / "model.safetensors").arch.hidden_dims == (32, 8)


def test_output_piped_into_head_ends_quietly(files, trained):
    checkpoint = trained["torch"].folder / "model.safetensors"
    command = f"{sys.executable} -m mtl_cli predict --checkpoint {checkpoint} --task movie {files.new}:body | head -n 1"
    result = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, timeout=300,
                            env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert result.stdout == "row,label,prob_no,prob_yes\n" and result.stderr == "" and result.returncode == 0


def test_csv_files_as_spreadsheets_write_them_are_read(files, tmp_path):
    rows = read_columns(files.movie, ["text", "label"])
    lines = "sep=;\r\n" + "text;label\r\n" + "".join(f'"{t}";{l}\r\n' for t, l in zip(rows["text"], rows["label"]))
    (tmp_path / "excel.csv").write_bytes("\ufeff".encode() + lines.encode("utf-8"))
    assert read_columns(tmp_path / "excel.csv", ["text", "label"]) == rows
    result = mtl("--quiet", "train", "--task", f"m={tmp_path / 'excel.csv'}:text:label", "--epochs", "1", "--out", tmp_path / "run")
    assert result.code == 0, result.err


def test_a_vocabulary_beyond_max_features_is_reported_not_cut_silently(files, tmp_path):
    result = mtl("train", *task_args(files), "--epochs", "1", "--max-features", "10", "--out", tmp_path)
    assert result.code == 0 and "the 10 most frequent of" in result.err
    vocabulary = json.loads((tmp_path / "metrics.json").read_text())["vocabulary"]
    assert vocabulary["size"] == 10 < vocabulary["found"] and vocabulary["max_features"] == 10


def test_both_backends_stay_visible_where_their_curves_coincide(tmp_path):
    from mtl_cli.plots import f1_figure

    assert mtl("--quiet", "experiment", "--backend", "both", "--epochs", "2", "--out", tmp_path, *TINY_SYNTHETIC).code == 0
    figure = f1_figure(json.loads((tmp_path / "report.json").read_text()))
    lines = {line.get_label(): line for line in figure.axes[0].get_lines()}
    torch_line, jax_line = lines["multi-task (torch)"], lines["multi-task (jax)"]
    assert torch_line.get_linewidth() > 2 * jax_line.get_linewidth() and jax_line.get_zorder() > torch_line.get_zorder()


# -- what users would see: predictions against the model's own probabilities --------------------------------


def test_predicted_labels_and_probabilities_are_the_models_own(files, trained):
    checkpoint = trained["torch"].folder / "model.safetensors"
    model, _, saved = torch_ref.load_checkpoint(checkpoint, with_extras=True)
    from mtl_core.data import vectorize_texts

    texts = read_columns(files.new, ["body"])["body"]
    with torch.no_grad():
        logits = model(vectorize_texts(texts, saved.vocabulary), "movie")[:, 0].numpy()
    rows = read_csv(mtl("--quiet", "predict", "--checkpoint", checkpoint, "--task", "movie", f"{files.new}:body").out)
    yes = np.array([float(r["prob_yes"]) for r in rows])
    np.testing.assert_allclose(yes, 1 / (1 + np.exp(-logits)), atol=1e-6)
    assert [r["label"] for r in rows] == ["yes" if p > 0.5 else "no" for p in yes]
    assert [r["label"] for r in rows] == [("yes", "no")[float(r["prob_no"]) > float(r["prob_yes"])] for r in rows]
