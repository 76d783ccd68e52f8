"""Data parallelism gives exactly the single-device result, and fails loudly when it cannot.

jax: a subprocess with four forced host devices (XLA_FLAGS) runs fit on one device and on meshes
("data" 4; "data" 2 x "model" 2). torch: two gloo processes on 127.0.0.1 run fit with DDP and are
compared to one process. Ragged batches throughout; float64, compared with the parity suite's
fit tolerance; the summed step and three aggregators (nash_mtl, pcgrad, mgda_ub), which must reduce
every task's gradient before aggregating. Negative controls drop one shard's rows, and a rank that
raises must end the run.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from parity_tests.compare import assert_close_trees, expect_mismatch
from parity_tests.tolerances import tolerance

ROOT = Path(__file__).resolve().parents[1]
WORKER = ROOT / "tests" / "scaleout_worker.py"
TIMEOUT = 600
TOL = tolerance("fit", "float64")


def _environment() -> dict:
    # Four forced host devices are CPU devices: on a machine with one GPU, jax must use the CPU platform
    # for the 4-device mesh to exist (and gloo runs torch's ranks on the CPU either way).
    return dict(os.environ, PYTHONPATH=str(ROOT), XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu",
                CUDA_VISIBLE_DEVICES="")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _load(path: Path) -> dict:
    """{config: (params, history)} as the worker saved them."""
    with np.load(path) as saved:
        histories = json.loads(str(saved["histories"]))
        params = {config: {} for config in histories}
        for key in saved.files:
            if key != "histories":
                config, name = key.rsplit("/", 1)[0], key.rsplit("/", 1)[1]
                params.setdefault(config, {})[name] = saved[key]
    return {config: (params[config], histories[config]) for config in histories}


def _run_jax(tmp_path: Path, fault: str | None = None) -> dict:
    out = tmp_path / f"jax-{fault}.npz"
    command = [sys.executable, str(WORKER), "jax", str(out)] + (["--fault", fault] if fault else [])
    subprocess.run(command, env=_environment(), check=True, timeout=TIMEOUT, capture_output=True)
    return _load(out)


def _run_torch(tmp_path: Path, world: int, fault: str | None = None) -> tuple[dict, list]:
    out = tmp_path / f"torch-{world}-{fault}.npz"
    port = _free_port()
    processes = [
        subprocess.Popen(
            [sys.executable, str(WORKER), "torch", str(out), "--rank", str(rank), "--world", str(world), "--port", str(port)]
            + (["--fault", fault] if fault else []),
            env=_environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(world)
    ]
    finished = [(p.wait(timeout=TIMEOUT), p.stderr.read()) for p in processes]
    return (_load(out) if out.exists() else {}), finished


def _compare(results: dict, reference: str, candidate: str) -> None:
    compared = 0
    for config, (params, history) in results.items():
        if config.startswith(candidate + "/"):
            compared += 1
            base = reference + config[len(candidate):]
            assert_close_trees(params, results[base][0], TOL, f"{config} weights")
            assert_close_trees(
                {k: history[k] for k in ("loss", "total_loss", "grad_norm", "loss_weights", "f1")},
                {k: results[base][1][k] for k in ("loss", "total_loss", "grad_norm", "loss_weights", "f1")},
                TOL,
                f"{config} history",
            )
            assert history.get("solver", {}).get("unconverged_steps") == results[base][1].get("solver", {}).get("unconverged_steps")
    assert compared >= 5, f"only {compared} configurations of {candidate} were compared"


@pytest.fixture(scope="module")
def jax_results(tmp_path_factory):
    return _run_jax(tmp_path_factory.mktemp("jax"))


@pytest.fixture(scope="module")
def torch_single(tmp_path_factory):
    results, finished = _run_torch(tmp_path_factory.mktemp("torch1"), world=1)
    assert finished[0][0] == 0, finished[0][1]
    return results


def test_jax_fit_on_a_data_mesh_equals_one_device(jax_results):
    _compare(jax_results, "single", "data4")


def test_jax_fit_with_trunk_kernels_split_over_a_model_axis_equals_one_device(jax_results):
    _compare(jax_results, "single", "data2_model2")


def test_dropping_one_device_shard_breaks_jax_equality(tmp_path):
    dropped = _run_jax(tmp_path, fault="drop_shard")
    with expect_mismatch():
        _compare({**dropped, **{k: v for k, v in dropped.items() if k.startswith("single/")}}, "single", "data4")


def test_two_gloo_ranks_equal_the_single_process_fit(tmp_path, torch_single):
    results, finished = _run_torch(tmp_path, world=2)
    assert [code for code, _ in finished] == [0, 0], [err[-2000:] for _, err in finished]
    _compare({**torch_single, **results}, "world1", "world2")


def test_dropping_one_rank_shard_breaks_torch_equality(tmp_path, torch_single):
    results, finished = _run_torch(tmp_path, world=2, fault="drop_shard")
    assert [code for code, _ in finished] == [0, 0], [err[-2000:] for _, err in finished]
    with expect_mismatch():
        _compare({**torch_single, **results}, "world1", "world2")


def test_a_rank_that_raises_ends_the_whole_run_with_a_clear_message(tmp_path):
    _, finished = _run_torch(tmp_path, world=2, fault="raise")
    (code0, err0), (code1, err1) = finished
    assert code1 != 0 and "rank 1 failed on purpose" in err1
    assert code0 != 0 and "data-parallel fit stopped on rank 0 of 2" in err0
