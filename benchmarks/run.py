"""Benchmark the library against the blog's recipe: ``python benchmarks/run.py [--device cpu|gpu] [--quick]``.

Writes results.json, report.md and a PNG plot into --out and prints the table. Exit status 2 when
the arguments are bad or the requested device is unusable (never a silent fall-back to the CPU).
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
from benchmarks.device import DEVICES, PRECISIONS, DeviceUnavailable, open_device, pin_platform  # noqa: E402

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
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if value < minimum or (strict and value == minimum):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {minimum}, got {text}")
        return value

    return parse


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, argparse.ArgumentParser]:
    parser = argparse.ArgumentParser(prog="benchmarks/run.py", description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=DEVICES, default="cpu", help="where both backends run (default cpu)")
    parser.add_argument("--quick", action="store_true", help="the headline and one more batch size, short repeats (< 1 min)")
    parser.add_argument("--out", type=Path, default=Path("benchmark-results"), help="output folder (default benchmark-results/)")
    parser.add_argument("--repeats", type=_at_least(int, MIN_REPEATS), default=MIN_REPEATS,
                        help=f"timed repeats per measurement (default and minimum {MIN_REPEATS})")
    parser.add_argument("--repeat-seconds", type=_at_least(float, 0, strict=True), help="minimum length of a repeat (default 0.3, --quick 0.1)")
    parser.add_argument("--rows-per-task", type=_at_least(int, 1),
                        help="training rows per task (default 16384, on a GPU 65536, --quick 2048)")
    parser.add_argument("--workloads", type=_names, help="comma-separated workloads to run (default: all, or the quick ones)")
    parser.add_argument("--variants", type=_names, help="comma-separated variants (the seed recipe and the floors always run)")
    parser.add_argument("--precision", choices=PRECISIONS, default="highest",
                        help="float32 matmuls of both backends on a GPU: full float32 (default) or TF32")
    parser.add_argument("--torch-threads", type=_at_least(int, 1),
                        help="torch intra-op threads (default: torch's choice); on a busy machine 1 can beat the core count")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data, weights and batch order")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    try:  # now, not after a long run
        args.out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        parser.error(f"--out {args.out}: cannot make the folder ({error.strerror})")
    return args, parser


def _settings(args: argparse.Namespace, on_gpu: bool):
    from benchmarks.harness import Settings

    defaults = QUICK if args.quick else {**FULL, "rows_per_task": GPU_ROWS_PER_TASK} if on_gpu else FULL
    return Settings(
        repeats=args.repeats,
        repeat_seconds=args.repeat_seconds or defaults["repeat_seconds"],
        rows_per_task=args.rows_per_task or defaults["rows_per_task"],
        seed=args.seed,
    )


def _write(results: dict, out: Path) -> Path | None:
    """results.json, report.md and the plot; returns the plot's path (None when none was drawn)."""
    from benchmarks import plots, report

    plot, results["plots_note"] = plots.samples_vs_batch(results, out)
    results["plots"] = [] if plot is None else [plot.name]
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "report.md").write_text(report.markdown(results))
    return plot


def _print_summary(results: dict, out: Path, plot: Path | None) -> None:
    from benchmarks import report

    print(report.text_table(results["results"]))
    print()
    for target in results["targets"]:
        print(f"{report.verdict(target):>24}  {target['name']}")
    drawn = f", {plot.name}" if plot else f" (no plot: {results['plots_note']})"
    print(f"\n{results['mode']} run: {results['duration_s']:.0f} s; wrote {out}/results.json, report.md{drawn}")


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
    from benchmarks import analysis, environment, variants, workloads
    from benchmarks.harness import run_plan
    from benchmarks.progress import Progress

    try:
        plan = workloads.plan(args.quick, args.workloads)
        chosen = variants.select(args.variants)
    except ValueError as error:
        parser.error(str(error))
    if args.torch_threads:
        environment.set_torch_threads(args.torch_threads)
    settings = _settings(args, device.is_gpu)
    load_start = os.getloadavg()[0]
    jobs = [(w, chosen if w == workloads.HEADLINE or not args.quick else variants.quick_sweep(chosen)) for w in plan]
    progress = Progress(sum(len(v) + len(variants.FLOORS) for _, v in jobs), enabled=not args.no_progress)
    try:
        records = run_plan(jobs, device, settings, progress)
    finally:
        progress.close()
    results = {
        "schema": 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": shlex.join([Path(sys.executable).name, "benchmarks/run.py", *(sys.argv[1:] if argv is None else argv)]),
        "mode": "quick" if args.quick else "full",
        "duration_s": time.perf_counter() - STARTED,
        "load_average": {"start": load_start, "end": os.getloadavg()[0]},
        "device": device.describe(),
        "environment": environment.describe(),
        "settings": asdict(settings),
        "workloads": [w.describe() for w in plan],
        "variants": [v.describe() for v in chosen],
        "floors": [v.describe() for v in variants.FLOORS],
        "results": records,
        "targets": analysis.targets(records, args.device),
        "breakdown": analysis.breakdown(records),
    }
    _print_summary(results, args.out, _write(results, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
