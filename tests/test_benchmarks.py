"""The benchmark harness runs end to end: ``benchmarks/run.py --quick`` writes well-formed outputs,
and ``--device gpu`` without a GPU refuses in one line with exit status 2.

No timing is asserted: the figures depend on the machine; their shape and sanity do not.
"""

import json
import math
import subprocess
import sys
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


def load_analysis():
    """benchmarks.analysis (pure arithmetic on result dicts); the benchmarks are not an installed package."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from benchmarks import analysis

    return analysis


def run_harness(*args, timeout=900):
    return subprocess.run([*RUN, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


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
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert "CUDA" in lines[0] and "jax" in lines[0]
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
