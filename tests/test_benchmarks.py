"""The benchmark harness runs end to end: ``benchmarks/run.py --quick`` writes well-formed outputs,
and ``--device gpu`` without a GPU refuses in one line with exit status 2. ``--devices 2`` measures
both fits on one and two devices (forced host devices, gloo processes), and a worker that fails or
hangs ends its measurement with one line instead of hanging the run. ``--workloads aggregators``
times every method's fit against the summed step of the same backend and T, one worker process per
measurement, and refuses bad names in one line.

No timing is asserted: the figures depend on the machine; their shape and sanity do not.
"""

import dataclasses
import json
import math
import os
import statistics
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
    "torch_ref.fit+lazy",
    "jax_impl.fit+lazy",
}
FLOORS = {"floor:torch-fused-adam", "floor:optax-adam"}
QUICK_SWEEP = {"seed-recipe", "torch_ref.fit", "jax_impl.fit"}  # --quick's second batch size
LAZY_FITS = {"torch_ref.fit+lazy", "jax_impl.fit+lazy"}  # --quick's V = 2^18


def load_benchmarks(name: str):
    """A module of benchmarks/ (which is not an installed package); of those used here only variants imports torch and jax."""
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
    expected = {"headline": VARIANTS | FLOORS, "batch256": QUICK_SWEEP | FLOORS, "vocab256k": LAZY_FITS | FLOORS}
    for workload, names in expected.items():
        missing = {v for v in names if (workload, v) not in measured}
        assert not missing, f"{workload} lacks {missing}"
    assert measured == {(w, v) for w, names in expected.items() for v in names}  # nothing more: --quick stays short
    left_out = {(s["workload"], s["variant"]) for s in results["skipped"]}
    assert ("vocab256k", "seed-recipe") in left_out and ("batch256", "torch_ref.fit+lazy") in left_out
    assert all(s["reason"] for s in results["skipped"])


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
            assert record["fraction_of_floor"]["own"] > 0 and record["fraction_of_floor"]["fastest"] > 0, where
            if record["workload"] != "vocab256k":  # no seed recipe there in a quick run
                assert record["ratio_to_seed"] > 0, where
        load = record["other_load"]  # other work on the cores, measured per measurement (this is Linux)
        assert load["cores"] >= 0 and load["max_cores"] >= load["cores"] - 1e-9 and load["loaded"] == (load["cores"] > load["threshold"]), where


def test_report_holds_the_table_and_the_targets(quick_run):
    out, done = quick_run
    report = (out / "report.md").read_text()
    for section in ("## Results", "## Targets", "## Where the time goes", "## Vocabulary sweep", "## Left out"):
        assert section in report
    for name in VARIANTS | FLOORS:
        assert f"| {name} |" in report, name
        assert name in done.stdout, name  # the terminal table
    assert "non-zeros per row on average" in report  # the data's density, measured
    assert "other work on the machine" in report  # the load, measured


def test_every_target_has_a_verdict_line_with_its_value_or_why_not(quick_run):
    out, done = quick_run
    results = json.loads((out / "results.json").read_text())
    names = [t["name"] for t in results["targets"]]
    for fit in ("torch_ref.fit", "jax_impl.fit"):
        assert f"CPU: {fit} (exact Adam) as a fraction of the fastest floor at the blog's shape" in names
    lazy = [t for t in results["targets"] if "+lazy samples/s at V = 262,144 / at V = 20,000" in t["name"]]
    assert len(lazy) == 2 and all(t["value"] > 0 and t["met"] in (True, False) for t in lazy), lazy
    lines = done.stdout.splitlines()
    for target in results["targets"]:
        line = next(line for line in lines if target["name"] in line)
        if target["name"].startswith("GPU"):  # a CPU run
            assert line.startswith("not measured") and "GPU target: not measured on this run" in line, line
        else:
            assert line.startswith(("met", "NOT met")), line
            assert f"{100 * target['value']:.0f}%" in line or f"{target['value']:.2f}x" in line, line
        assert ("(under load)" in line) == bool(target["load"]), line


def test_quick_run_draws_the_vocabulary_plot(quick_run):
    out, _ = quick_run
    results = json.loads((out / "results.json").read_text())
    assert "samples_vs_vocab_cpu.png" in results["plots"]
    assert (out / "samples_vs_vocab_cpu.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    density = {w["name"]: w["nnz_per_row"] for w in results["workloads"]}
    assert 20 < density["headline"]["mean"] <= density["headline"]["max"] < 400


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


def _timed(workload, variant, samples_per_s, kind="variant", backend="torch", other_cores=0.0):
    """A record of ``samples_per_s`` at 128 rows per step, with ``other_cores`` of other work during its repeats."""
    analysis = load_analysis()
    timing = analysis.rates(10, [10 * 128 / samples_per_s] * 5, 128)
    load = analysis.other_load([1.0] * 5, [other_cores] * 5, cores=2)
    return {"workload": workload, "variant": variant, "kind": kind, "backend": backend, "error": None, "other_load": load, **timing}


def test_lazy_targets_compare_each_lazy_fit_at_2_to_the_18_with_itself_at_20000():
    analysis = load_analysis()
    records = [
        _timed("headline", "torch_ref.fit+lazy", 10_000), _timed("vocab256k", "torch_ref.fit+lazy", 6_000),
        _timed("headline", "jax_impl.fit+lazy", 10_000, backend="jax"), _timed("vocab256k", "jax_impl.fit+lazy", 4_000, backend="jax"),
    ]
    found = {t["name"].split()[0]: t for t in analysis.targets(records, "cpu") if "+lazy" in t["name"]}
    assert found["torch_ref.fit+lazy"]["value"] == pytest.approx(0.6) and found["torch_ref.fit+lazy"]["met"]
    assert found["jax_impl.fit+lazy"]["value"] == pytest.approx(0.4) and found["jax_impl.fit+lazy"]["met"] is False
    missing = analysis.targets(records[:2], "cpu")
    jax_lazy = next(t for t in missing if t["name"].startswith("jax_impl.fit+lazy"))
    assert jax_lazy["met"] is None and "jax_impl.fit+lazy at vocab256k" in jax_lazy["note"]  # not measured, and why


def test_a_loaded_measurement_is_flagged_and_named_in_the_verdicts_that_use_it():
    analysis = load_analysis()
    report = load_benchmarks("report")
    assert analysis.other_load([0.5, 0.5], [0.05, 0.05], cores=2)["loaded"] is False  # 0.1 cores: background
    busy = analysis.other_load([0.5, 0.5], [0.1, 0.9], cores=2)  # 1 core on average, 1.8 in the second repeat
    assert busy["cores"] == pytest.approx(1.0) and busy["max_cores"] == pytest.approx(1.8) and busy["loaded"]
    assert analysis.other_load([0.5], [None], cores=2) is None  # no /proc/stat: not measured, not guessed
    records = [_timed("headline", "jax_impl.step", 9_000, backend="jax"), _timed("headline", "torch_ref.step", 10_000, other_cores=1.2)]
    (pair,) = [t for t in analysis.targets(records, "cpu") if t["name"].startswith("jax_impl.step / torch_ref.step")]
    assert pair["met"] is False and "1.2 cores during torch_ref.step at headline" in pair["load"]
    assert report.verdict(pair) == "NOT met (under load)"
    assert report.verdict_line(pair).startswith("NOT met (under load)") and "90%" not in report.verdict_line(pair)
    assert "0.90x" in report.verdict_line(pair)
    (gpu,) = [t for t in analysis.targets(records, "cpu") if t["name"].startswith("GPU: samples/s")]
    assert report.verdict(gpu) == "not measured" and gpu["note"].startswith("GPU target: not measured on this run")


def test_variants_too_large_to_run_are_left_out_with_the_reason_and_quick_keeps_its_sweeps():
    variants = load_benchmarks("variants")  # imports torch and jax: the variants' set-ups
    workloads = load_benchmarks("workloads")
    huge, headline = workloads.WORKLOADS["vocab1m"], workloads.HEADLINE
    runs, skipped = variants.for_workload(variants.VARIANTS, huge, quick=False, chosen_by_name=False)
    assert {v.name for v in runs} == {"torch_ref.fit", "jax_impl.fit", "torch_ref.fit+lazy", "jax_impl.fit+lazy"}
    reasons = {s["variant"]: s["reason"] for s in skipped}
    assert "MiB per step" in reasons["seed-recipe"] and "MiB per step" in reasons["jax_impl.step-dense"]
    assert "vocabulary sweep" in reasons["torch_ref.step"]
    named, _ = variants.for_workload(variants.select(["torch_ref.step", "torch_ref.step-dense"]), huge, quick=False, chosen_by_name=True)
    assert [v.name for v in named] == ["torch_ref.step"]  # named: past the sweep's limit, never past the size limit
    assert len(variants.for_workload(variants.VARIANTS, headline, quick=True, chosen_by_name=False)[0]) == len(variants.VARIANTS)
    quick, _ = variants.for_workload(variants.VARIANTS, workloads.WORKLOADS["vocab256k"], quick=True, chosen_by_name=False)
    assert {v.name for v in quick} == LAZY_FITS
    fit = next(v for v in variants.VARIANTS if v.name == "torch_ref.fit")
    lazy = next(v for v in variants.VARIANTS if v.name == "torch_ref.fit+lazy")
    assert (fit.steps_floor(headline), fit.steps_floor(huge), lazy.steps_floor(huge)) == (32, 16, 32)


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


# --- the aggregator study: --workloads aggregators ------------------------------------------------

# Two task counts, one method beside sum, one epoch of 16 steps per repeat: every code path of the
# study (a worker per measurement, repeats in turns with sum, ratios, verdicts, report, plot) in about a minute.
AGGREGATOR_RUN = ("--workloads", "aggregators", "--quick", "--task-counts", "2,3", "--methods", "mgda",
                  "--rows-per-task", "1024", "--repeat-seconds", "0.01", "--torch-threads", "1")
AGGREGATOR_KEYS = {(backend, t, method) for backend in ("torch", "jax") for t in (2, 3) for method in ("sum", "mgda")}


@pytest.fixture(scope="module")
def aggregator_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("aggregators")
    done = run_harness(*AGGREGATOR_RUN, "--out", str(out), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return out, done, json.loads((out / "results.json").read_text())


def test_aggregator_run_has_one_record_per_backend_task_count_and_method(aggregator_run):
    _, _, results = aggregator_run
    assert results["study"] == "aggregators" and results["mode"] == "quick"
    found = {(r["backend"], r["num_tasks"], r["method"]): r for r in results["results"]}
    assert len(found) == len(results["results"]) == len(AGGREGATOR_KEYS)
    assert set(found) == AGGREGATOR_KEYS
    for (backend, tasks, method), record in found.items():
        where = f"{backend} T={tasks} {method}"
        assert record["error"] is None, f"{where}: {record['error']}"
        assert record["variant"] == {"torch": "torch_ref.fit", "jax": "jax_impl.fit"}[backend], where
        assert record["rows_per_step"] == 64 * tasks, where
        spread = record["steps_per_s"]
        assert 0 < spread["min"] <= spread["median"] <= spread["max"] < math.inf, where
        assert record["steps_per_repeat"] == 16 and record["warmup_s"] > 0, where  # 1024 rows per task: 16 steps
        assert record["memory"]["peak_mib"] == record["memory"]["peak_growth_mib"] > 0, where
        assert record["memory"]["baseline_rss_mib"] > 0, where
    assert len(found[("torch", 2, "mgda")]["repeat_s"]) == results["settings"]["repeats"] == 5


def test_each_ratio_is_against_the_same_backends_sum_timed_in_turns_in_the_same_run(aggregator_run):
    _, _, results = aggregator_run
    found = {(r["backend"], r["num_tasks"], r["method"]): r for r in results["results"]}
    for backend in ("torch", "jax"):
        for tasks in (2, 3):
            summed, method = found[(backend, tasks, "sum")], found[(backend, tasks, "mgda")]
            assert summed["ratio_to_sum"] == 1.0
            # the sum repeats paired with the method are the sum worker's own, from this run
            assert len(method["sum_repeat_s"]) == 5 and set(method["sum_repeat_s"]) <= set(summed["repeat_s"])
            assert method["sum_steps_per_repeat"] == summed["steps_per_repeat"]
            own = statistics.median(method["repeat_s"]) / method["steps_per_repeat"]
            base = statistics.median(method["sum_repeat_s"]) / method["sum_steps_per_repeat"]
            assert method["ratio_to_sum"] == pytest.approx(own / base)
            low, high = method["ratio_range"]
            assert low <= method["ratio_to_sum"] <= high


def test_aggregator_report_holds_the_table_the_verdicts_and_the_plot(aggregator_run):
    out, done, results = aggregator_run
    report = (out / "report.md").read_text()
    for column in ("torch T=2 ms (x sum)", "torch T=3 MiB", "jax T=2 ms (x sum)", "jax T=3 MiB"):
        assert column in report and column in done.stdout, column
    assert "| sum | " in report and "| mgda | " in report
    assert "A process of its own per measurement" in report  # how memory was measured, and why
    assert "not measured: pcgrad" in report  # what this run left out
    lines = [line for line in done.stdout.splitlines() if "every aggregator's" in line]
    for fit in ("torch_ref.fit", "jax_impl.fit"):
        at_two = [line for line in lines if fit in line and "<= 3x the summed step at T = 2" in line]
        assert len(at_two) == 1 and "(worst of 1 measured: mgda, " in at_two[0], lines
        assert at_two[0].split()[0] in ("met", "NOT"), at_two[0]
        assert any(fit in line and "at T = 8" in line and line.startswith("not measured") for line in lines), lines  # not measured here
    assert results["plots"] == ["aggregators_cpu.png"]
    assert (out / "aggregators_cpu.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "aggregators_cpu.png" in report


@pytest.mark.parametrize("args, expected", [
    (("--workloads", "aggregators,nope"), "unknown workloads ['nope']"),
    (("--workloads", "headline,aggregators"), "a study of its own"),
    (("--workloads", "aggregators", "--methods", "mgda,nope"), "unknown methods ['nope']"),
    (("--workloads", "aggregators", "--task-counts", "2,1"), "--task-counts: must be >= 2, got 1"),
    (("--workloads", "aggregators", "--task-counts", "2,65"), "at most 64 tasks"),
    (("--workloads", "aggregators", "--variants", "torch_ref.fit"), "--variants does not apply"),
    (("--workloads", "aggregators", "--rows-per-task", "10"), "must be >= 64"),
    (("--methods", "mgda"), "--methods applies only with --workloads aggregators"),
    (("--task-counts", "2"), "--task-counts applies only with --workloads aggregators"),
])
def test_bad_workload_and_method_names_are_refused_in_one_line(args, expected, tmp_path):
    done = run_harness(*args, "--out", str(tmp_path / "out"), timeout=120)
    assert expected in refused_in_one_line(done)
    assert not (tmp_path / "out").exists()


def _cost_record(backend, method, ms_per_step, sum_ms=None, tasks=2, error=None):
    """A record of the aggregator study with 5 repeats of 10 steps at ``ms_per_step`` (and the sum's beside it)."""
    record = {"backend": backend, "num_tasks": tasks, "method": method, "error": error,
              "repeat_s": [ms_per_step / 100] * 5, "steps_per_repeat": 10}
    if sum_ms is not None:
        record.update(sum_repeat_s=[sum_ms / 100] * 5, sum_steps_per_repeat=10)
    return record


def test_ratios_take_the_sum_timed_beside_the_method_and_none_without_a_sum():
    cost = load_benchmarks("aggregators")
    records = [
        _cost_record("torch", "sum", 10.0),
        _cost_record("torch", "upgrad", 30.0, sum_ms=10.0),
        _cost_record("jax", "sum", 20.0),
        _cost_record("jax", "upgrad", 30.0, sum_ms=20.0),
        _cost_record("torch", "sum", 10.0, tasks=8, error="RuntimeError: boom"),
        _cost_record("torch", "upgrad", 50.0, sum_ms=10.0, tasks=8),
    ]
    cost.add_ratios(records)
    assert [r["ratio_to_sum"] for r in records] == [1.0, pytest.approx(3.0), 1.0, pytest.approx(1.5), None, None]


def test_verdicts_name_the_worst_method_and_hold_only_for_the_cpu():
    cost = load_benchmarks("aggregators")
    ratios = {("torch", 2): {"mgda": 1.2, "upgrad": 2.9}, ("torch", 8): {"mgda": 4.5, "upgrad": 3.0},
              ("jax", 2): {"mgda": 3.5, "upgrad": 1.0}, ("jax", 8): {"mgda": 1.0, "upgrad": 1.0}}
    records = []
    for (backend, tasks), by_method in ratios.items():
        records.append(_cost_record(backend, "sum", 10.0, tasks=tasks))
        records += [_cost_record(backend, m, 10.0 * x, sum_ms=10.0, tasks=tasks) for m, x in by_method.items()]
    cost.add_ratios(records)
    chosen = ("sum", "mgda", "upgrad")
    found = {(t["name"].split("'s ")[1].split()[0], t["threshold"]): t for t in cost.targets(records, "cpu", chosen)}
    assert [t["met"] for t in found.values()] == [True, False, False, True]
    assert "(worst of 2 measured: upgrad, 2.90x)" in found[("torch_ref.fit", 3.0)]["name"]
    assert "(worst of 2 measured: mgda, 4.50x)" in found[("torch_ref.fit", 4.0)]["name"]
    assert found[("jax_impl.fit", 3.0)]["value"] == pytest.approx(3.5)
    assert "not measured: pcgrad" in found[("jax_impl.fit", 3.0)]["note"]
    assert all(t["met"] is None for t in cost.targets(records, "gpu", chosen))


def test_default_rows_keep_the_data_of_two_tasks_but_never_fewer_than_a_repeat():
    cost = load_benchmarks("aggregators")
    settings = cost.CostSettings(task_counts=(2, 8, 32), methods=cost.METHODS, repeats=5, repeat_seconds=0.3, rows_per_task=16384,
                                 fixed_rows=False, seed=0, precision="highest", torch_threads=None, timeout_s=300.0)
    assert [settings.rows_for(t) for t in (2, 8, 32)] == [16384, 4096, 1024]
    assert [cost.min_steps(t) for t in (2, 8, 32)] == [32, 32, 16]
    small = dataclasses.replace(settings, rows_per_task=2048)
    assert small.rows_for(8) == 32 * 64  # 512 would not hold a repeat of 32 steps
    assert dataclasses.replace(small, fixed_rows=True).rows_for(8) == 2048
    with pytest.raises(ValueError, match=r"must start with 'sum'"):
        dataclasses.replace(settings, methods=("mgda",))


def test_the_studys_run_length_is_both_fits():
    import jax_impl.train
    import torch_ref.train

    cost = load_benchmarks("aggregators")
    assert cost.RUN_LENGTH == torch_ref.train.RUN_LENGTH == jax_impl.train.RUN_LENGTH


def test_a_worker_that_dies_hangs_or_answers_an_error_fails_in_one_line():
    workers = load_benchmarks("worker_process")

    def start(code):
        return workers.WorkerProcess(_python(code), dict(os.environ), "mark", ROOT)

    answers = "import json, sys; print('noise'); print(json.dumps({'mark': 1, 'event': 'ready'}), flush=True); sys.stdin.readline(); "
    with start(answers + "raise SystemExit('ValueError: bad data')") as dies:
        assert dies.ask(None, 60) == {"mark": 1, "event": "ready"}
        with pytest.raises(workers.WorkerFailed, match=r"^ValueError: bad data$"):
            dies.ask("repeat", 60)
    with start(answers + "print(json.dumps({'mark': 1, 'error': 'RuntimeError: no\\nmore'}), flush=True)") as errs:
        errs.ask(None, 60)
        with pytest.raises(workers.WorkerFailed, match=r"^RuntimeError: no more$"):
            errs.ask("repeat", 60)
    start_s = time.monotonic()
    with start("import time; time.sleep(120)") as hangs:
        with pytest.raises(workers.WorkerFailed, match=r"no answer within 2 s: killed"):
            hangs.ask(None, 2)
        assert hangs.process.poll() is not None  # killed, not left behind
    assert time.monotonic() - start_s < 30


def test_memory_that_rises_at_every_repeat_is_reported_and_flat_memory_is_not():
    cost = load_benchmarks("aggregators")

    def record(resident):
        return {"memory": {"rss_after_repeats_mib": resident}}

    assert cost.growth_per_repeat(record([300, 365, 430, 495, 560])) == pytest.approx(65.0)
    assert cost.growth_per_repeat(record([273, 273, 304, 304, 320])) is None  # steps of the allocator, not a steady rise
    assert cost.growth_per_repeat(record([300, 302, 304, 306, 308])) is None  # under GROWTH_MIB a repeat
    assert cost.growth_per_repeat(record([300, 400])) is None  # one rise says nothing
    assert cost.growth_per_repeat({"error": "RuntimeError: boom"}) is None
