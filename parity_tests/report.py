"""``python -m parity_tests.report``: the largest difference each property showed in the last run.

``pytest parity_tests`` saves, per property and dtype, the largest relative difference (see
``compare.relative_difference``) of every comparison, and for the negative controls the smallest
difference they caught; this prints them beside the tolerances.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from parity_tests.tolerances import TOLERANCES

ROOT = Path(__file__).resolve().parents[1]


def results_path(root: Path = ROOT) -> Path:
    """Where a run's results go: under pytest's cache folder, which git ignores."""
    return Path(root) / ".pytest_cache" / "parity_tests" / "max_differences.json"


def save(path: Path, records: dict, detections: dict, profile: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"profile": profile, "records": records, "detections": detections}, indent=1, sort_keys=True))


def _rows(entries: dict, title: str) -> list[str]:
    lines = [title, f"  {'property':<16}{'dtype':<9}{'rtol':>8}{'observed':>11}{'checks':>9}  reason"]
    for (prop, dtype), tol in TOLERANCES.items():
        entry = entries.get(tol.key)
        if entry is not None:
            lines.append(f"  {prop:<16}{dtype:<9}{tol.rtol:>8.0e}{entry['value']:>11.2e}{entry['comparisons']:>9}  {tol.reason}")
    return lines


def format_report(results: dict) -> str:
    lines = [f"parity_tests, hypothesis profile {results['profile']!r}: relative difference ||a-b||_2 / max(||b||_2, floor) per array"]
    lines += _rows(results["records"], "largest difference seen (must be <= rtol):")
    if results["detections"]:
        lines += _rows(results["detections"], "negative controls, smallest difference caught (must be > rtol):")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--path", type=Path, default=results_path(), help="results file (default: %(default)s)")
    args = parser.parse_args(argv)
    if not args.path.exists():
        print(f"no results at {args.path}: run `pytest parity_tests` first", file=sys.stderr)
        return 1
    print(format_report(json.loads(args.path.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
