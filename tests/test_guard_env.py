"""The guard's CPU threshold from AGENTRAY_GUARD_MAX_CPU: default, a number, rubbish."""

from __future__ import annotations

import pytest

from agentray.engine import SystemGuard
from agentray.engine._guard import CPU_ENV_VAR, DEFAULT_MAX_CPU_PERCENT


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, DEFAULT_MAX_CPU_PERCENT),
        ("", DEFAULT_MAX_CPU_PERCENT),
        ("80", 80.0),
        ("101", 101.0),
        ("lots", DEFAULT_MAX_CPU_PERCENT),
    ],
)
def test_threshold_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, value: str | None, expected: float
) -> None:
    if value is None:
        monkeypatch.delenv(CPU_ENV_VAR, raising=False)
    else:
        monkeypatch.setenv(CPU_ENV_VAR, value)
    assert SystemGuard().max_cpu_percent == expected


def test_an_explicit_threshold_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CPU_ENV_VAR, "10")
    assert SystemGuard(max_cpu_percent=90.0).max_cpu_percent == 90.0
