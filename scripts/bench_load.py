"""Load benchmarks (issue 10): the scheduler's makespan on a worker DAG, and the engine's CPU per
model turn. Run through ``scripts/bench.py --only load`` (or this file directly).

DAG: 12 workers under max_concurrent=3; each holds its slot for a ``sleep`` of known length. A
chain of four (1.0, 1.0, 1.0, 0.6 s) and eight independent 0.5 s workers, spawned leaves first,
so a first-come-first-served scheduler starts the chain late. Lower bound: max(critical path,
total work / slots). Reported: makespan (first spawn to last worker done) / lower bound.

CPU per turn: N agents x 10 turns against the simulator in its own process; the engine
process's user+system CPU time divided by the number of model turns.
"""

from __future__ import annotations

import asyncio
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from agentray import events as ev
from agentray.engine import RunConfig, SystemGuard
from agentray.journal import Journal
from agentray.model import RateLimitGate
from agentray.runtime import build_engine
from agentray.simulator import ScriptedPolicy, SimRequest, Simulator, tool_use

KEY = "sk-ant-bench-000000000000"

CHAIN = (1.0, 1.0, 1.0, 0.6)
LEAVES = (0.5,) * 8
DAG_SLOTS = 3


def _dag_orchestrator(request: SimRequest) -> list[dict[str, Any]]:
    if not request.tool_results_named("spawn_agent"):
        calls = [tool_use("spawn_agent", task=f"DAG-WORKER sleep={s}", title=f"leaf {i}") for i, s in enumerate(LEAVES)]
        first = len(LEAVES) + 2  # a001 is the orchestrator: the chain's ids follow the leaves
        for i, seconds in enumerate(CHAIN):
            depends = [f"a{first + i - 1:03d}"] if i else []
            calls.append(
                tool_use("spawn_agent", task=f"DAG-WORKER sleep={seconds}", title=f"chain {i}", depends_on=depends)
            )
        return calls
    if not request.tool_results_named("await_agents"):
        return [tool_use("await_agents", timeout_s=120)]
    return [tool_use("finish", summary="dag", outcome="success")]


def _dag_worker(request: SimRequest) -> list[dict[str, Any]]:
    if request.turn_index == 0:
        match = re.search(r"sleep=([\d.]+)", request.first_user_text)
        return [tool_use("run_command", command=f"sleep {match.group(1) if match else 0}")]
    return [tool_use("complete", summary="slept")]


def _dag_policy() -> ScriptedPolicy:
    from agentray.simulator import Rule

    return ScriptedPolicy(
        [
            Rule(match="You are the orchestrator", turns=[_dag_orchestrator] * 50),
            Rule(match="DAG-WORKER", turns=[_dag_worker] * 50),
        ]
    )


async def dag_makespan_ratio() -> tuple[float, float]:
    """(makespan / lower bound, makespan s) of one run."""
    sim = Simulator(_dag_policy(), api_keys={KEY})
    base_url = sim.start()
    workspace = Path(tempfile.mkdtemp(prefix="agentray-bench-dag-"))
    engine = build_engine(
        api_key=KEY, base_url=base_url, journal=Journal(workspace / "journal.sqlite3"), gate=RateLimitGate(),
        guard=_idle_guard(),
    )  # fmt: skip
    spawned: list[float] = []
    done: list[float] = []

    def listen(event: ev.Event) -> None:
        if isinstance(event, ev.AgentSpawned) and event.role != "orchestrator":
            spawned.append(time.perf_counter())
        elif isinstance(event, ev.AgentStatusChanged) and event.status == "done":
            done.append(time.perf_counter())

    engine.subscribe(listen)
    try:
        _, outcome = await engine.run(
            RunConfig(
                goal="dag", workspace=str(workspace), model="sim-model", max_concurrent=DAG_SLOTS,
                max_agents=20, sandbox=False,
            )
        )  # fmt: skip
    finally:
        await engine.aclose()
        sim.stop()
    assert outcome.status == "succeeded", outcome
    makespan = max(done[:-1]) - min(spawned)  # the last "done" is the orchestrator's finish
    bound = max(sum(CHAIN), (sum(CHAIN) + sum(LEAVES)) / DAG_SLOTS)
    return makespan / bound, makespan


def _idle_guard() -> SystemGuard:
    """A guard that never holds agents back: a busy benchmark machine must not look like the
    scheduler's doing."""
    return SystemGuard(max_cpu_percent=101.0, min_memory_available_percent=0.0)


def print_dag_table(repeats: int) -> None:
    results = [asyncio.run(dag_makespan_ratio()) for _ in range(repeats)]
    ratios = sorted(r for r, _ in results)
    bound = max(sum(CHAIN), (sum(CHAIN) + sum(LEAVES)) / DAG_SLOTS)
    print(f"| 12-worker DAG, max_concurrent={DAG_SLOTS} ({repeats} runs) | lower bound s | makespan s (median) | ratio median | ratio max |")
    print("|---|---:|---:|---:|---:|")
    print(
        f"| critical path first, orchestrator outside the slots | {bound:.2f} | "
        f"{statistics.median(m for _, m in results):.2f} | {statistics.median(ratios):.3f} | {ratios[-1]:.3f} |"
    )
    print()


async def cpu_per_turn(agents: int, turns: int, base_url: str) -> float:
    """Engine-process CPU milliseconds per model turn."""
    workspace = Path(tempfile.mkdtemp(prefix="agentray-bench-cpu-"))
    engine = build_engine(
        api_key=KEY, base_url=base_url, journal=Journal(workspace / "journal.sqlite3"), gate=RateLimitGate(),
        guard=_idle_guard(),
    )  # fmt: skip
    calls = [0]

    def count(event: ev.Event) -> None:
        if isinstance(event, ev.UsageUpdated):
            calls[0] += 1

    engine.subscribe(count)
    me = psutil.Process()
    before = me.cpu_times()
    try:
        _, outcome = await engine.run(
            RunConfig(
                goal=f"BENCH n={agents} k={turns}", workspace=str(workspace), model="sim-model",
                max_concurrent=agents, max_agents=agents + 1, sandbox=False,
            )
        )  # fmt: skip
    finally:
        await engine.aclose()
    after = me.cpu_times()
    assert outcome.status == "succeeded", outcome
    cpu = (after.user - before.user) + (after.system - before.system)
    return cpu * 1000 / max(1, calls[0])
