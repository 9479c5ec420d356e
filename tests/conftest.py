"""Shared fixtures: the engine on the real anthropic SDK against the simulator, over real HTTP,
with a real SQLite journal in a temp dir. Nothing here touches the user's data."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest

from agentray import events as ev
from agentray import keys
from agentray.engine import Engine, RunConfig, RunOutcome, SystemGuard
from agentray.journal import Journal
from agentray.model import RateLimitGate
from agentray.runtime import build_engine
from agentray.simulator import Policy, Simulator
from no_skips import pytest_make_collect_report, pytest_runtest_makereport  # noqa: F401 (hooks)

__all__ = ["API_KEY", "EventRecorder", "SimEngine", "cli_env"]

API_KEY = "sk-ant-test-0123456789"

E = TypeVar("E", bound=ev.Event)


@pytest.fixture(autouse=True)
def _private_journal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Anything that opens the default journal lands in the test's temp dir.
    monkeypatch.setenv("AGENTRAY_JOURNAL", str(tmp_path / "default-journal.sqlite3"))
    # cli.main() takes ANTHROPIC_API_KEY out of the environment into keys; start each test clean
    monkeypatch.setattr(keys, "_taken_from_env", None)


# The suite shares a 2-core machine with its own simulator threads and subprocesses: the CPU
# alone must not make the system guard hold agents back in `agentray` subprocesses and tray
# tests (its own tests set their thresholds explicitly; memory pressure still counts).
os.environ.setdefault("AGENTRAY_GUARD_MAX_CPU", "101")


def cli_env(tmp_path: Path, api_key: str) -> dict[str, str]:
    """The environment for an `agentray` subprocess: this one without Anthropic variables, a
    private journal, ``api_key`` as the key, unbuffered output."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("ANTHROPIC_")}
    environment.update(
        AGENTRAY_JOURNAL=str(tmp_path / "journal.sqlite3"),
        ANTHROPIC_API_KEY=api_key,
        PYTHONUNBUFFERED="1",
    )
    return environment


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


@dataclass
class EventRecorder:
    """Collects every engine event, in order."""

    events: list[ev.Event] = field(default_factory=list)

    def __call__(self, event: ev.Event) -> None:
        self.events.append(event)

    def of(self, kind: type[E]) -> list[E]:
        return [e for e in self.events if isinstance(e, kind)]

    def statuses(self, agent_id: str) -> list[str]:
        return [e.status for e in self.of(ev.AgentStatusChanged) if e.agent_id == agent_id]

    def status_event(self, agent_id: str, status: str) -> ev.AgentStatusChanged:
        return next(
            e
            for e in self.of(ev.AgentStatusChanged)
            if e.agent_id == agent_id and e.status == status
        )

    async def wait_for(
        self, kind: type[E], pred: Callable[[E], bool] = lambda e: True, timeout: float = 5.0
    ) -> E:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.of(kind):
                if pred(event):
                    return event
            await asyncio.sleep(0.01)
        raise AssertionError(f"no {kind.__name__} event matching within {timeout} s")

    async def wait_status(
        self, agent_id: str, status: str, timeout: float = 5.0
    ) -> ev.AgentStatusChanged:
        """The event of ``agent_id`` entering ``status`` (waits for it)."""
        return await self.wait_for(
            ev.AgentStatusChanged,
            lambda e: e.agent_id == agent_id and e.status == status,
            timeout=timeout,
        )


@dataclass
class SimEngine:
    sim: Simulator
    engine: Engine
    journal: Journal
    journal_path: Path
    events: EventRecorder
    workspace: Path

    def config(self, goal: str = "GOAL: do the work", **changes: Any) -> RunConfig:
        changes.setdefault("workspace", str(self.workspace))
        changes.setdefault("model", "sim-model")
        return RunConfig(goal=goal, **changes)

    async def start(self, goal: str = "GOAL: do the work", **changes: Any) -> str:
        return await self.engine.start_run(self.config(goal, **changes))

    async def wait(self, run_id: str, timeout: float = 10.0) -> RunOutcome:
        return await asyncio.wait_for(self.engine.wait(run_id), timeout)

    async def run(
        self, goal: str = "GOAL: do the work", *, timeout: float = 10.0, **changes: Any
    ) -> tuple[str, RunOutcome]:
        run_id = await self.start(goal, **changes)
        return run_id, await self.wait(run_id, timeout)

    def requests_of(self, marker: str) -> list[Any]:
        """The /v1/messages requests (SimRequest views) of the agent whose task holds ``marker``."""
        return [r.sim for r in self.sim.message_requests if marker in r.sim.first_user_text]


SimEngineFactory = Callable[..., SimEngine]


def make_engine(
    sim: Simulator, journal_path: Path, workspace: Path, api_key: str = API_KEY
) -> SimEngine:
    journal = Journal(journal_path)
    engine = build_engine(
        api_key=api_key,
        base_url=sim.base_url,
        journal=journal,
        gate=RateLimitGate(),
        backoff_base_s=0.02,
        # the guard is not under test here: a busy CI machine must not hold agents back
        guard=SystemGuard(max_cpu_percent=101.0, min_memory_available_percent=0.0),
    )
    recorder = EventRecorder()
    engine.subscribe(recorder)
    return SimEngine(sim, engine, journal, journal_path, recorder, workspace)


@pytest.fixture
async def sim_engine(tmp_path: Path, workspace: Path) -> AsyncIterator[SimEngineFactory]:
    """``sim_engine(policy, api_key=..., sim=..., **simulator_kwargs)`` -> SimEngine.

    Pass ``sim=`` to put a second engine (same journal file) on an existing simulator."""
    sims: list[Simulator] = []
    engines: list[Engine] = []

    def factory(
        policy: Policy | None = None,
        *,
        api_key: str = API_KEY,
        sim: Simulator | None = None,
        **kw: Any,
    ) -> SimEngine:
        if sim is None:
            sim = Simulator(policy, **kw)
            sim.start()
            sims.append(sim)
        se = make_engine(sim, tmp_path / "journal.sqlite3", workspace, api_key)
        engines.append(se.engine)
        return se

    yield factory
    for engine in engines:
        await engine.aclose()
    for sim in sims:
        sim.stop()
