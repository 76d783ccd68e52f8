"""The benchmark harness runs end to end: ``benchmarks/run.py --quick`` writes well-formed outputs,
and ``--device gpu`` without a GPU refuses in one line with exit status 2. ``--devices 2`` measures
both fits on one and two devices (forced host devices, gloo processes), and a worker that fails or
hangs ends its measurement with one line instead of hanging the run.

No timing is asserted: the figures depend on the machine; their shape and sanity do not.
"""

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
RUN = [sys.executable, str(ROOT / "benchmarks" / "run.py")]
VARIANTS = {
    "seed-recipe",
    "torch_ref.fit",
    "torch_ref.step",
    "torch_ref.step-dense",
    "torch_ref.step+compile",
    "jax_impl.step",
    "jax_impl.step-dense",
    "jax_impl.fit",
}
FLOORS = {"floor:torch-fused-adam", "floor:optax-adam"}
QUICK_SWEEP = {"seed-recipe", "torch_ref.fit", "jax_impl.fit"}  # --quick's second batch size


def load_benchmarks(name: str):
    """A module of benchmarks/ (which is not an installed package); none of those used here imports torch or jax."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import importlib

    return importlib.import_module(f"benchmarks.{name}")


def load_analysis():
    """benchmarks.analysis: pure arithmetic on result dicts."""
    return load_benchmarks("analysis")


def run_harness(*args, timeout=900):
    return subprocess.run([*RUN, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def refused_in_one_line(done) -> str:
    """The one line of a refusal (exit status 2, no traceback)."""
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    done = run_harness("--quick", "--out", str(out), "--no-progress")
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done


def test_quick_run_writes_results_report_and_plot(quick_run):
    out, _ = quick_run
    assert (out / "results.json").is_file()
    assert (out / "report.md").is_file()
    plots = list(out.glob("*.png"))
    assert plots, "no plot written"
    assert plots[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_results_json_names_the_machine_and_every_variant(quick_run):
    out, _ = quick_run
    results = json.loads((out / "results.json").read_text())
    for key in ("device", "environment", "settings", "workloads", "variants", "floors", "results", "targets", "duration_s"):
        assert key in results, key
    env = results["environment"]
    assert env["machine"]["cpu_model"] and env["machine"]["cpu_count"] >= 1
    assert env["libraries"]["torch"] and env["libraries"]["jax"]
    assert env["threads"]["torch_intra_op"] >= 1
    assert results["device"]["kind"] == "cpu"
    assert results["settings"]["repeats"] >= 5
    measured = {(r["workload"], r["variant"]) for r in results["results"]}
    expected = {"headline": VARIANTS | FLOORS, "batch256": QUICK_SWEEP | FLOORS}
    for workload, names in expected.items():
        missing = {v for v in names if (workload, v) not in measured}
        assert not missing, f"{workload} lacks {missing}"


def test_every_measurement_has_positive_figures(quick_run):
    out, _ = quick_run
    results = json.loads((out / "results.json").read_text())
    for record in results["results"]:
        where = f"{record['workload']} / {record['variant']}"
        assert record["error"] is None, f"{where}: {record['error']}"
        for figure in ("steps_per_s", "samples_per_s"):
            spread = record[figure]
            assert 0 < spread["min"] <= spread["median"] <= spread["max"] < math.inf, where
        assert len(record["repeat_s"]) == results["settings"]["repeats"], where
        assert record["steps_per_repeat"] >= 1 and record["warmup_s"] > 0, where
        assert record["memory"]["peak_rss_mib"] > 0, where
        if record["kind"] == "variant":
            assert record["ratio_to_seed"] > 0, where
            assert record["fraction_of_floor"]["own"] > 0 and record["fraction_of_floor"]["fastest"] > 0, where


def test_report_holds_the_table_and_the_targets(quick_run):
    out, done = quick_run
    report = (out / "report.md").read_text()
    for section in ("## Results", "## Targets", "## Where the time goes"):
        assert section in report
    for name in VARIANTS | FLOORS:
        assert f"| {name} |" in report, name
        assert name in done.stdout, name  # the terminal table


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: --device gpu would run")  # reason: GPU-less check only
def test_gpu_request_without_gpu_exits_2_in_one_line(tmp_path):
    done = run_harness("--device", "gpu", "--out", str(tmp_path), timeout=300)
    line = refused_in_one_line(done)
    assert "CUDA" in line and "jax" in line
    assert not (tmp_path / "results.json").exists()


def test_unknown_variant_is_refused_with_its_name(tmp_path):
    done = run_harness("--variants", "torch_ref.fit,nope", "--out", str(tmp_path), timeout=300)
    assert done.returncode == 2
    assert "nope" in done.stderr and "Traceback" not in done.stderr


def test_ratios_and_floor_fractions_follow_their_definitions():
    analysis = load_analysis()

    def record(variant, kind, backend, seconds_per_step, rows_per_step=128):
        timing = analysis.rates(10, [10 * seconds_per_step] * 5, rows_per_step)
        return {"workload": "headline", "variant": variant, "kind": kind, "backend": backend, "error": None, **timing}

    records = [
        record("floor:torch-fused-adam", "floor", "torch", 0.005),  # 200 steps/s
        record("floor:optax-adam", "floor", "jax", 0.0025),  # 400 steps/s: the fastest floor
        record("seed-recipe", "variant", "torch", 0.1),  # 10 steps/s, 1280 samples/s
        record("torch_ref.fit", "variant", "torch", 0.02),  # 50 steps/s
    ]
    analysis.add_comparisons(records)
    fit = records[-1]
    assert fit["samples_per_s"]["median"] == pytest.approx(50 * 128)
    assert fit["ratio_to_seed"] == pytest.approx(5.0)
    assert fit["fraction_of_floor"]["own"] == pytest.approx(0.25)
    assert fit["fraction_of_floor"]["fastest"] == pytest.approx(0.125)
    speedup, floor_fraction = analysis.targets(records, "cpu")[:2]
    assert speedup["met"] and not speedup["goal_met"]  # 5x: the target, not the 10x goal
    assert not floor_fraction["met"]  # 12.5% of the fastest floor is under 25%


# --- the scaling study: --devices ----------------------------------------------------------------

# Two devices, and 1024 rows per task (an epoch of 4 steps per repeat): every figure, in well under a minute.
SCALING_RUN = ("--devices", "2", "--quick", "--rows-per-task", "1024")
BACKEND_FITS = {"torch": "torch_ref.fit", "jax": "jax_impl.fit"}


@pytest.fixture(scope="module")
def scaling_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("scaling")
    done = run_harness(*SCALING_RUN, "--out", str(out), timeout=600)  # with progress: it goes to stderr
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done, json.loads((out / "results.json").read_text())


def test_scaling_run_measures_both_fits_on_one_and_two_devices(scaling_run):
    _, _, results = scaling_run
    assert results["study"] == "scaling"
    assert results["scaling"]["device_counts"] == [1, 2] and results["scaling"]["strong_scaling"] is True
    assert results["settings"]["repeats"] >= 5
    found = {(r["backend"], r["devices"]): r for r in results["results"]}
    assert set(found) == {(backend, d) for backend in BACKEND_FITS for d in (1, 2)}
    for (backend, devices), record in found.items():
        where = f"{backend} on {devices}"
        assert record["error"] is None, f"{where}: {record['error']}"
        assert record["variant"] == BACKEND_FITS[backend]
        spread = record["samples_per_s"]
        assert 0 < spread["min"] <= spread["median"] <= spread["max"] < math.inf, where
        assert len(record["repeat_s"]) == results["settings"]["repeats"], where
        assert record["speedup"] > 0 and record["efficiency"] > 0, where
        assert record["efficiency"] == pytest.approx(record["speedup"] / devices), where
        assert record["speedup"] == pytest.approx(spread["median"] / found[(backend, 1)]["samples_per_s"]["median"]), where
    assert found[("torch", 2)]["processes"] == 2 and len(found[("torch", 2)]["process_repeat_s"]) == 2
    assert found[("torch", 2)]["placement"]["process_group"] == "gloo"
    assert found[("jax", 2)]["placement"]["mesh"] == {"data": 2} and len(found[("jax", 2)]["placement"]["devices"]) == 2


def test_scaling_run_writes_the_table_the_interpretation_and_the_plot(scaling_run):
    out, done, results = scaling_run
    report = (out / "report.md").read_text()
    assert "strong scaling" in report and "efficiency" in report
    assert "share this machine's" in report  # the CPU caveat, stated plainly
    for fit in BACKEND_FITS.values():
        for devices in (1, 2):
            assert f"| {fit} | {devices} |" in report, (fit, devices)
        assert fit in done.stdout  # the terminal table
        assert f"{fit} on 2 devices" in done.stderr  # the progress
    assert results["plots"] == ["scaling_cpu.png"]
    assert (out / "scaling_cpu.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "scaling_cpu.png" in report


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5"])
def test_a_bad_device_count_exits_2_in_one_line(value, tmp_path):
    done = run_harness(f"--devices={value}", "--out", str(tmp_path / "out"), timeout=120)
    assert "--devices" in refused_in_one_line(done)
    assert not (tmp_path / "out").exists()


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_a_hung_worker_is_killed_at_its_time_limit():
    scaling = load_benchmarks("scaling")
    start = time.monotonic()
    outcomes = scaling.run_group([_python("import time; time.sleep(120)")], [dict(os.environ)], timeout_s=2)
    assert time.monotonic() - start < 30
    assert outcomes[0].killed
    assert scaling.group_error(outcomes, 2).startswith("timed out after 2 s and was killed")


def test_a_failed_process_ends_its_group_and_its_error_comes_back_in_one_line():
    scaling = load_benchmarks("scaling")
    failing = _python("import sys; print('some output'); print('Traceback ...', file=sys.stderr); sys.exit('ValueError: bad shard')")
    start = time.monotonic()
    outcomes = scaling.run_group([_python("import time; time.sleep(120)"), failing], [dict(os.environ)] * 2, timeout_s=120, grace_s=1)
    assert time.monotonic() - start < 30  # the waiting process was killed, not waited for
    assert outcomes[0].killed and outcomes[1].returncode == 1
    assert scaling.group_error(outcomes, 120) == "process 1 of 2: ValueError: bad shard"


def test_a_torch_rank_that_raises_fails_its_measurement_with_one_line(tmp_path):
    """Real workers: two gloo ranks, the second raises; the first must stop, and the run get the reason."""
    scaling = load_benchmarks("scaling")
    workloads = load_benchmarks("workloads")
    data = tmp_path / "train.npz"
    scaling.save_data(workloads.DataPool(0).train(scaling.SCALING, 256), data)
    settings = scaling.ScalingSettings(devices=2, repeats=5, rows_per_task=256, seed=0, precision="highest",
                                       torch_threads=None, timeout_s=120, fault="raise")
    record = scaling.measure("torch", 2, "cpu", data, settings)
    assert record["error"] == "process 1 of 2: RuntimeError: torch process 1 of 2 failed on purpose (--fault raise)"
    assert record["wall_s"] < 100  # well before the time limit: rank 0 stopped when its peer went away
    assert "\n" not in record["error"]
