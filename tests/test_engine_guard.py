"""The system guard with real psutil readings: thresholds set so this machine counts as saturated."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from agentray import events as ev
from agentray.engine import GuardReading, RunConfig, SystemGuard
from agentray.journal import Journal
from agentray.model import RateLimitGate
from agentray.runtime import build_engine
from agentray.simulator import Rule, ScriptedPolicy, Simulator, tool_use


def _policy() -> ScriptedPolicy:
    def orchestrator(request):  # type: ignore[no-untyped-def]
        if not request.tool_results_named("spawn_agent"):
            return [tool_use("spawn_agent", task="GUARDED worker", title="w")]
        if not request.tool_results_named("await_agents"):
            return [tool_use("await_agents")]
        return [tool_use("finish", summary="ok", outcome="success")]

    return ScriptedPolicy(
        [
            Rule(match="You are the orchestrator", turns=[orchestrator] * 10),
            Rule(match="GUARDED", turns=[lambda r: [tool_use("complete", summary="done")]] * 3),
        ]
    )


def _waiting_on(guard_method: Callable[..., object]) -> bool:
    """Some task of this loop is suspended inside ``guard_method`` (its chain of awaits)."""
    code = guard_method.__code__
    for task in asyncio.all_tasks():
        awaited = task.get_coro()
        while awaited is not None and hasattr(awaited, "cr_code"):
            if awaited.cr_code is code:
                return True
            awaited = awaited.cr_await
    return False


async def _until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


async def _fresh_readings(guard: SystemGuard, count: int) -> list[GuardReading]:
    """Wait until the guard has sampled the machine ``count`` more times; those readings."""
    seen = [guard.reading]

    def enough() -> bool:
        if guard.reading is not seen[-1]:
            seen.append(guard.reading)
        return len(seen) > count

    await _until(enough, f"{count} fresh readings of the guard")
    return seen[1:]


async def test_new_agents_wait_while_the_machine_is_saturated(tmp_path: Path) -> None:
    # no machine has more than 100 % of its memory available: saturated by the real reading
    guard = SystemGuard(min_memory_available_percent=100.5, max_cpu_percent=101.0, interval_s=0.1)
    assert guard.saturated and "memory available" in guard.reading.reason
    workspace = tmp_path / "ws"
    workspace.mkdir()
    with Simulator(_policy()) as sim:
        journal = Journal(tmp_path / "j.sqlite3")
        engine = build_engine(
            api_key="sk-ant-guard-test-000000",
            base_url=sim.base_url,
            journal=journal,
            gate=RateLimitGate(),
            guard=guard,
        )
        events: list[ev.Event] = []
        engine.subscribe(events.append)
        try:
            run_id = await engine.start_run(RunConfig(goal="guarded", workspace=str(workspace), model="sim-model"))
            # The orchestrator reaches the guard and waits there, through three fresh readings of
            # the machine (each would have let it go, had the machine room).
            await _until(
                lambda: _waiting_on(SystemGuard.wait_until_clear), "an agent waiting on the guard"
            )
            readings = await _fresh_readings(guard, 3)
            assert all(r.saturated for r in readings)
            assert [a.status for a in journal.list_agents(run_id)] == ["queued"]  # the orchestrator waits
            assert not sim.requests  # and has not called the model
            guard.min_memory_available_percent = 0.0  # the machine has room again
            outcome = await asyncio.wait_for(engine.wait(run_id), 10)
        finally:
            await engine.aclose()
    assert outcome.status == "succeeded"
    changes = [e for e in events if isinstance(e, ev.GuardStateChanged)]
    assert changes and changes[-1].saturated is False
    first_running = next(e for e in events if isinstance(e, ev.AgentStatusChanged) and e.status == "running")
    assert first_running.ts > changes[-1].ts - 0.05


def test_sustained_samples_below_one_count_as_one() -> None:
    """``sustained_samples=0`` (or less) must not make every reading saturated: it needs at least
    one hot sample, as 1 does."""
    for samples in (0, -3):
        calm = SystemGuard(
            max_cpu_percent=101.0, min_memory_available_percent=0.0, sustained_samples=samples
        )
        assert calm.sustained_samples == 1
        assert not calm.saturated and calm.reading.reason == ""
    hot = SystemGuard(max_cpu_percent=0.0, min_memory_available_percent=0.0, sustained_samples=0)
    assert hot.saturated and hot.reading.reason.startswith("CPU ")
