"""With ``AGENTRAY_NO_SKIPS=1`` (as ``scripts/test.sh`` sets it), a skipped test is a failed one.

CI provides everything the suite needs (an X server, D-Bus, gnome-keyring, bubblewrap), so a skip
there means a test silently did not run. ``tests/conftest.py`` imports these hooks.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import Any

import pytest

__all__ = ["pytest_make_collect_report", "pytest_runtest_makereport"]

ENV = "AGENTRAY_NO_SKIPS"


def _forbidden() -> bool:
    return os.environ.get(ENV) == "1"


def _reason(longrepr: Any) -> str:
    # a skip's longrepr is (file, line, "Skipped: why")
    return str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)


def _fail(report: pytest.TestReport | pytest.CollectReport) -> None:
    report.outcome = "failed"
    report.longrepr = f"{_reason(report.longrepr)} -- a skip fails the run when {ENV}=1"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if _forbidden() and report.skipped and not hasattr(report, "wasxfail"):
        _fail(report)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, None]:
    outcome = yield
    report = outcome.get_result()
    if _forbidden() and report.skipped:
        _fail(report)
