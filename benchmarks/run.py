"""Benchmark the library against the blog's recipe: ``python benchmarks/run.py [--device cpu|gpu] [--quick]``.

By default it measures every variant (benchmarks/variants.py) on the workloads (benchmarks/workloads.py):
the blog's shape, and the batch, vocabulary (exact Adam against lazy Adam, V = 5,000 to 2^20) and
task sweeps. ``--devices N`` measures data-parallel scaling instead: both backends' fit on 1, 2, 4,
... N devices (see benchmarks/scaling.py). ``--workloads aggregators`` measures the cost of the
gradient-conflict methods instead: each backend's fit step with every aggregator against the summed
step, at T = 2, 8 and 32 tasks (see benchmarks/aggregators.py; not part of the default run, which it
would make more than three times as long). Writes results.json, report.md and PNG plots into --out
and prints the table and one verdict line per target. Exit status 2 when the arguments are bad or the requested device is unusable (never a silent
fall-back to the CPU), 1 when a scaling or aggregator measurement failed (its error is in the outputs).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from dataclasses import asdict
from pathlib import Path

STARTED = time.perf_counter()  # the run's duration includes importing torch and jax

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: make the repository's packages importable
    sys.path.insert(0, str(ROOT))

# Only the device module before the device is chosen: jax must not be imported before its platform is pinned.
from benchmarks import aggregators, scaling, workloads  # noqa: E402 - import neither torch nor jax
from benchmarks.environment import DEVICES, PRECISIONS, DeviceUnavailable, open_device, pin_platform  # noqa: E402

QUICK = {"repeat_seconds": 0.1, "rows_per_task": 2048}
FULL = {"repeat_seconds": 0.3, "rows_per_task": 16384}
GPU_ROWS_PER_TASK = 65536  # a GPU fit step is short: more data per epoch keeps a repeat >= 0.3 s
MIN_REPEATS = 5  # median and min-max of at least five


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _at_least(kind, minimum, strict: bool = False):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            article = "an" if kind is int else "a"
            raise argparse.ArgumentTypeError(f"expected {article} {kind.__name__}, got {text!r}") from None
        if value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {minimum}, got {text}")
        return value

    return parse


def _task_counts(text: str) -> tuple[int, ...]:
    counts = [_at_least(int, 2)(name) for name in _names(text)]
    if not counts:
        raise argparse.ArgumentTypeError(f"expected comma-separated task counts, e.g. 2,8, got {text!r}")
    if max(counts) > aggregators.MAX_TASKS:
        raise argparse.ArgumentTypeError(f"at most {aggregators.MAX_TASKS} tasks, got {max(counts)}")
    return tuple(sorted(set(counts)))


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):
        """Refuse bad arguments in one line (no usage dump), exit status 2."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, argparse.ArgumentParser]:
    parser = _Parser(prog="benchmarks/run.py", description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=DEVICES, default="cpu", help="where both backends run (default cpu)")
    parser.add_argument("--quick", action="store_true",
                        help="the headline, one more batch size and lazy Adam at V = 2^18, short repeats (1-2 min)")
    parser.add_argument("--out", type=Path, default=Path("benchmark-results"), help="output folder (default benchmark-results/)")
    parser.add_argument("--repeats", type=_at_least(int, MIN_REPEATS), default=MIN_REPEATS,
                        help=f"timed repeats per measurement (default and minimum {MIN_REPEATS})")
    parser.add_argument("--repeat-seconds", type=_at_least(float, 0, strict=True), help="minimum length of a repeat (default 0.3, --quick 0.1)")
    parser.add_argument("--rows-per-task", type=_at_least(int, 1),
                        help="training rows per task (default 16384, on a GPU 65536, --quick 2048; with --devices an epoch "
                             "of fit is a timed repeat: default 8192, on a GPU 65536, --quick 4096)")
    parser.add_argument("--workloads", type=_names,
                        help=f"comma-separated workloads of {[*workloads.WORKLOADS, workloads.AGGREGATOR_SET]} (default: all "
                             "but aggregators, or the quick ones); "
                             "'aggregators' alone: the cost of the gradient-conflict methods, a study of its own "
                             "(full: T = 2, 8, 32 and every method, an estimated 15-20 min on 2 cores; --quick: T = 2, 8 and "
                             f"{', '.join(aggregators.QUICK_METHODS[1:])} only)")
    parser.add_argument("--variants", type=_names,
                        help="comma-separated variants (the seed recipe and the floors always run; named ones also run past "
                             "the sweeps' own limits, where their size allows)")
    parser.add_argument("--methods", type=_names,
                        help=f"with --workloads aggregators: comma-separated methods of {list(aggregators.METHODS)} "
                             "(default all, --quick fewer; sum always runs)")
    parser.add_argument("--task-counts", type=_task_counts, metavar="T,T,...",
                        help=f"with --workloads aggregators: the task counts (default "
                             f"{','.join(map(str, aggregators.TASK_COUNTS))}, --quick "
                             f"{','.join(map(str, aggregators.QUICK_TASK_COUNTS))})")
    parser.add_argument("--precision", choices=PRECISIONS, default="highest",
                        help="float32 matmuls of both backends on a GPU: full float32 (default) or TF32")
    parser.add_argument("--torch-threads", type=_at_least(int, 1),
                        help="torch intra-op threads (default: torch's choice; with --devices or --workloads aggregators on a "
                             "CPU, 1 per process); "
                             "on a busy machine 1 can beat the core count")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data, weights and batch order")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--devices", type=_at_least(int, 1), metavar="N",
                        help="instead of the variants: data-parallel strong scaling of both fits on 1, 2, 4, ... N devices "
                             "(CPU: forced host devices and gloo processes; GPU: the first N GPUs)")
    parser.add_argument("--worker-timeout", type=_at_least(float, 0, strict=True), metavar="S",
                        help=f"with --devices: seconds one measurement's processes may take, start-up included; with "
                             f"--workloads aggregators: seconds a worker may take to warm up, or to time one repeat "
                             f"(default {scaling.TIMEOUT_S:.0f}); then they are killed and the run goes on")
    # Hidden, for the tests: the last process of the largest device count fails on purpose.
    parser.add_argument("--scaling-fault", choices=scaling.FAULTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.devices is not None:
        _check_scaling_args(args, parser)
    else:
        _check_aggregator_args(args, parser)
    try:  # now, not after a long run
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        parser.error(f"--out {args.out}: cannot make the folder ({error.strerror})")
    return args, parser


def _check_scaling_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    for name in ("workloads", "variants", "repeat_seconds", "methods", "task_counts"):
        if getattr(args, name) is not None:
            parser.error(f"--{name.replace('_', '-')} does not apply with --devices (the scaling study times whole epochs of fit)")
    if args.device == "cpu" and args.devices > scaling.MAX_CPU_DEVICES:
        parser.error(f"argument --devices: at most {scaling.MAX_CPU_DEVICES} on the CPU, got {args.devices}")
    batch = scaling.SCALING.batch_size
    if args.rows_per_task is not None and args.rows_per_task < batch:
        parser.error(f"argument --rows-per-task: must be >= {batch} with --devices (one global batch per task), got {args.rows_per_task}")


def _check_aggregator_args(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Workload names checked; --methods and --task-counts only with the aggregator study, which has no variants."""
    try:
        args.aggregators = workloads.wants_aggregators(args.workloads)
        if args.aggregators:
            args.methods = aggregators.chosen_methods(args.methods, args.quick)
    except ValueError as error:
        parser.error(str(error))
    if not args.aggregators:
        for name in ("methods", "task_counts"):
            if getattr(args, name) is not None:
                parser.error(f"--{name.replace('_', '-')} applies only with --workloads {workloads.AGGREGATOR_SET}")
        return
    if args.variants is not None:
        parser.error(f"--variants does not apply with --workloads {workloads.AGGREGATOR_SET} (it times fit with each "
                     "method: choose them with --methods)")
    batch = aggregators.workload(2).batch_size
    if args.rows_per_task is not None and args.rows_per_task < batch:
        parser.error(f"argument --rows-per-task: must be >= {batch} with --workloads {workloads.AGGREGATOR_SET} "
                     f"(one batch per task), got {args.rows_per_task}")


def _cost_settings(args: argparse.Namespace, on_gpu: bool) -> aggregators.CostSettings:
    defaults = QUICK if args.quick else {**FULL, "rows_per_task": GPU_ROWS_PER_TASK} if on_gpu else FULL
    counts = aggregators.QUICK_TASK_COUNTS if args.quick else aggregators.TASK_COUNTS
    return aggregators.CostSettings(
        task_counts=args.task_counts or counts,
        methods=args.methods,
        repeats=args.repeats,
        repeat_seconds=args.repeat_seconds or defaults["repeat_seconds"],
        rows_per_task=args.rows_per_task or defaults["rows_per_task"],
        fixed_rows=args.rows_per_task is not None,
        seed=args.seed,
        precision=args.precision,
        torch_threads=args.torch_threads or (None if on_gpu else 1),  # see aggregators.CostSettings
        timeout_s=args.worker_timeout or scaling.TIMEOUT_S,
    )


def _scaling_settings(args: argparse.Namespace) -> scaling.ScalingSettings:
    mode = "quick" if args.quick else "gpu" if args.device == "gpu" else "full"
    return scaling.ScalingSettings(
        devices=args.devices,
        repeats=args.repeats,
        rows_per_task=args.rows_per_task or scaling.ROWS_PER_TASK[mode],
        seed=args.seed,
        precision=args.precision,
        torch_threads=args.torch_threads,
        timeout_s=args.worker_timeout or scaling.TIMEOUT_S,
        fault=args.scaling_fault,
    )


def _settings(args: argparse.Namespace, on_gpu: bool):
    from benchmarks.timing import Settings

    defaults = QUICK if args.quick else {**FULL, "rows_per_task": GPU_ROWS_PER_TASK} if on_gpu else FULL
    return Settings(
        repeats=args.repeats,
        repeat_seconds=args.repeat_seconds or defaults["repeat_seconds"],
        rows_per_task=args.rows_per_task or defaults["rows_per_task"],
        seed=args.seed,
    )


def _write(results: dict, out: Path) -> list[Path]:
    """results.json, report.md and the plots; returns the plots' paths."""
    from benchmarks import plots, report

    draw, write = {
        "variants": (plots.variant_plots, report.markdown),
        "scaling": (plots.samples_vs_devices, report.scaling_markdown),
        "aggregators": (plots.ratio_vs_tasks, report.aggregator_markdown),
    }[results["study"]]
    drawn, results["plots_note"] = draw(results, out)
    results["plots"] = [path.name for path in drawn]
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "report.md").write_text(write(results))
    return drawn


def _header(args: argparse.Namespace, argv: list[str] | None, study: str, device, load_start: float, settings) -> dict:
    """What results.json says of every run, before its measurements."""
    from benchmarks import environment

    return {
        "schema": 1,
        "study": study,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": shlex.join([Path(sys.executable).name, "benchmarks/run.py", *(sys.argv[1:] if argv is None else argv)]),
        "mode": "quick" if args.quick else "full",
        "duration_s": time.perf_counter() - STARTED,
        "load_average": {"start": load_start, "end": os.getloadavg()[0]},
        "device": device.describe(),
        "environment": environment.describe(),
        "settings": asdict(settings),
    }


def _drawn(results: dict, drawn: list[Path]) -> str:
    return "".join(f", {path.name}" for path in drawn) if drawn else f" (no plot: {results['plots_note']})"


def run_scaling(args: argparse.Namespace, argv: list[str] | None, device) -> int:
    """--devices N: the scaling study; 1 when a measurement failed (the outputs say which, and why)."""
    from benchmarks import report
    from benchmarks.environment import gpu_count
    from benchmarks.timing import Progress

    if device.is_gpu and args.devices > gpu_count():
        print(f"error: --devices {args.devices} needs {args.devices} GPUs, torch and jax see {gpu_count()} here", file=sys.stderr)
        return 2
    settings = _scaling_settings(args)
    load_start = os.getloadavg()[0]
    counts = scaling.device_counts(args.devices)
    progress = Progress(len(counts) * len(scaling.BACKENDS), enabled=not args.no_progress)
    try:
        records = scaling.run_study(args.device, settings, progress)
    finally:
        progress.close()
    results = _header(args, argv, "scaling", device, load_start, settings)
    results.update(
        workloads=[scaling.SCALING.describe()],
        scaling={"device_counts": counts, "strong_scaling": True, "global_batch_size": scaling.SCALING.batch_size,
                 "rows_per_step": scaling.SCALING.rows_per_step, "steps_per_repeat": settings.steps},
        results=records,
    )
    drawn = _write(results, args.out)
    print(report.scaling_text_table(records))
    print(f"\nscaling run ({results['mode']}): {results['duration_s']:.0f} s; wrote {args.out}/results.json, report.md{_drawn(results, drawn)}")
    return 1 if any(r["error"] is not None for r in records) else 0


def _print_summary(results: dict, table: str, out: Path, drawn: list[Path]) -> None:
    """The table, one verdict line per target, how many measurements met other work, and what was written."""
    from benchmarks import analysis, report

    print(table)
    print()
    for target in results["targets"]:
        print(report.verdict_line(target))
    loaded = [r for r in results["results"] if analysis.is_loaded(r)]
    if loaded:
        print(f"\n{len(loaded)} of {len(results['results'])} measurements were taken under load (other work on the cores): "
              "see report.md")
    study = "" if results["study"] == "variants" else f"{results['study']} "
    print(f"\n{study}{results['mode']} run: {results['duration_s']:.0f} s; wrote {out}/results.json, report.md{_drawn(results, drawn)}")


def run_aggregators(args: argparse.Namespace, argv: list[str] | None, device) -> int:
    """--workloads aggregators: every method's fit step against the summed one; 1 when a measurement failed."""
    from benchmarks import environment, report
    from benchmarks.timing import Progress

    settings = _cost_settings(args, device.is_gpu)
    if settings.torch_threads:  # as the workers: results.json's environment then says what they ran
        environment.set_torch_threads(settings.torch_threads)
    load_start = os.getloadavg()[0]
    total = len(settings.task_counts) * len(aggregators.FITS) * len(settings.methods)
    progress = Progress(total, enabled=not args.no_progress)
    try:
        records = aggregators.run_study(args.device, settings, progress)
    finally:
        progress.close()
    results = _header(args, argv, workloads.AGGREGATOR_SET, device, load_start, settings)
    results.update(
        workloads=[aggregators.workload(t).describe() for t in settings.task_counts],
        methods=[aggregators.method_settings(m) for m in settings.methods],
        results=records,
        targets=aggregators.targets(records, args.device, settings.methods),
    )
    _print_summary(results, report.aggregator_text_table(results), args.out, _write(results, args.out))
    return 1 if any(r["error"] is not None for r in records) else 0


def _warn_if_busy(other_cores: float | None) -> None:
    """One line on stderr when other work already holds the cores: the figures will say so too."""
    from benchmarks.analysis import loaded_threshold
    from benchmarks.environment import usable_cores

    cores = usable_cores()
    if other_cores is not None and other_cores > loaded_threshold(cores):
        print(f"warning: other work is taking {other_cores:.1f} of this machine's {cores} usable cores: the figures will be "
              "noisy (measurements under load are marked); --torch-threads 1 leaves it a core", file=sys.stderr)


def run_variants(args: argparse.Namespace, argv: list[str] | None, device, parser: argparse.ArgumentParser) -> int:
    """The default study: the variants and floors on each workload, the targets, the sweeps."""
    from benchmarks import analysis, environment, report, variants
    from benchmarks.timing import Progress, other_cores_now, run_plan

    try:
        plan = workloads.plan(args.quick, args.workloads)
        chosen = variants.select(args.variants)
    except ValueError as error:
        parser.error(str(error))
    if args.torch_threads:
        environment.set_torch_threads(args.torch_threads)
    settings = _settings(args, device.is_gpu)
    load_start = os.getloadavg()[0]
    other_at_start = other_cores_now()
    _warn_if_busy(other_at_start)
    jobs, skipped = [], []
    for workload in plan:
        runs, left_out = variants.for_workload(chosen, workload, args.quick, chosen_by_name=bool(args.variants))
        jobs.append((workload, runs))
        skipped += left_out
    progress = Progress(sum(len(v) + len(variants.FLOORS) for _, v in jobs), enabled=not args.no_progress)
    try:
        records, density = run_plan(jobs, variants.FLOORS, device, settings, progress)
    finally:
        progress.close()
    results = _header(args, argv, "variants", device, load_start, settings)
    results.update(
        other_cores_at_start=other_at_start,
        workloads=[{**w.describe(), "nnz_per_row": density.get(w.name)} for w in plan],
        variants=[v.describe() for v in chosen],
        floors=[v.describe() for v in variants.FLOORS],
        results=records,
        skipped=skipped,
        targets=analysis.targets(records, args.device),
        breakdown=analysis.breakdown(records),
    )
    _print_summary(results, report.text_table(records), args.out, _write(results, args.out))
    return 0


def main(argv: list[str] | None = None) -> int:
    args, parser = parse_args(argv)
    pin_platform(args.device)
    if args.device == "cpu":  # no compile workers left competing with the timed runs for the few cores
        os.environ.setdefault("TORCHINDUCTOR_COMPILE_THREADS", "1")
    try:
        device = open_device(args.device, args.precision)
    except DeviceUnavailable as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.devices is not None:
        return run_scaling(args, argv, device)
    if args.aggregators:
        return run_aggregators(args, argv, device)
    return run_variants(args, argv, device, parser)


if __name__ == "__main__":
    sys.exit(main())
