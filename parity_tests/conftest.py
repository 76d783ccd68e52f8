"""Loads the ``ci`` profile unless another is named, and saves the largest differences of the run."""

from __future__ import annotations

from hypothesis import settings

from parity_tests import numerics, report
from parity_tests import profiles  # noqa: F401 - registers the ci and thorough profiles
from parity_tests.compare import DETECTIONS, RECORDS


def pytest_configure(config):
    if not config.getoption("hypothesis_profile", default=None):
        settings.load_profile("ci")
    numerics.pin()


def pytest_sessionfinish(session):
    if RECORDS or DETECTIONS:
        profile = session.config.getoption("hypothesis_profile", default=None) or "ci"
        report.save(report.results_path(session.config.rootpath), RECORDS, DETECTIONS, profile)


def pytest_terminal_summary(terminalreporter, config):
    if RECORDS:
        terminalreporter.write_line(
            f"parity: largest differences saved to {report.results_path(config.rootpath)}; "
            "print them with: python -m parity_tests.report"
        )
