"""Load benchmarks (issue 10): the scheduler's makespan on a worker DAG, the engine's CPU per
model turn, and the tray's UI loop lag (``bench_ui``). Run through ``scripts/bench.py --only
load`` (or this file directly: ``python scripts/bench_load.py [--quick]``).

DAG: 12 workers under max_concurrent=3; each holds its slot for a ``sleep`` of known length. A
chain of four (1.0, 1.0, 1.0, 0.6 s) and eight independent 0.5 s workers, spawned leaves first,
so a first-come-first-served scheduler starts the chain late. Lower bound: max(critical path,
total work / slots). Reported: makespan (first spawn to last worker done) / lower bound.

CPU per turn: N agents x 10 turns against the simulator in its own process (200 ms of simulated
model time per call, so all N are in flight at once); the engine process's user+system CPU time
divided by the number of model turns (the orchestrator's included). The configurations are
interleaved, repeat by repeat, so a busy moment of a shared machine hits each of them alike; one
unmeasured run goes first (the first run in a process pays imports and first-use set-up). A last
row streams every call (what calls with max_tokens above 8192 do) at 60 agents, for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from bench import scratch_dir  # scripts/bench.py

from agentray import events as ev
from agentray.engine import RunConfig, SystemGuard
from agentray.journal import Journal
from agentray.model import RateLimitGate
from agentray.runtime import build_engine
from agentray.simulator import ScriptedPolicy, SimRequest, Simulator, tool_use

KEY = "sk-ant-bench-000000000000"

# seconds of work; each agent also pays two model turns and a snapshot (~50-80 ms) that the
# lower bound leaves out, so the durations are long enough for scheduling to dominate
CHAIN = (2.0, 2.0, 2.0, 1.2)
LEAVES = (1.0,) * 8
DAG_SLOTS = 3


def _dag_orchestrator(request: SimRequest) -> list[dict[str, Any]]:
    if not request.tool_results_named("spawn_agent"):
        calls = [
            tool_use("spawn_agent", task=f"DAG-WORKER sleep={s}", title=f"leaf {i}")
            for i, s in enumerate(LEAVES)
        ]
        first = len(LEAVES) + 2  # a001 is the orchestrator: the chain's ids follow the leaves
        for i, seconds in enumerate(CHAIN):
            depends = [f"a{first + i - 1:03d}"] if i else []
            calls.append(
                tool_use(
                    "spawn_agent",
                    task=f"DAG-WORKER sleep={seconds}",
                    title=f"chain {i}",
                    depends_on=depends,
                )
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


async def dag_makespan_ratio(*, fifo: bool = False) -> tuple[float, float]:
    """(makespan / lower bound, makespan s) of one run; ``fifo``: without the critical-path
    order (every agent the same priority: first come, first served), for comparison."""
    from agentray.engine import Run

    original = Run.dependents_chain
    if fifo:
        Run.dependents_chain = lambda self, agent_id: 0  # type: ignore[method-assign]
    sim = Simulator(_dag_policy(), api_keys={KEY})
    base_url = sim.start()
    workspace = scratch_dir("agentray-bench-dag-")
    engine = build_engine(
        api_key=KEY, base_url=base_url, journal=Journal(_journal_path()), gate=RateLimitGate(),
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
        Run.dependents_chain = original  # type: ignore[method-assign]
    assert outcome.status == "succeeded", outcome
    makespan = max(done[:-1]) - min(spawned)  # the last "done" is the orchestrator's finish
    bound = max(sum(CHAIN), (sum(CHAIN) + sum(LEAVES)) / DAG_SLOTS)
    return makespan / bound, makespan


def _journal_path() -> Path:
    """Beside the workspace, never in it: the checkpoints would snapshot the journal itself."""
    return scratch_dir("agentray-bench-journal-") / "journal.sqlite3"


def _idle_guard() -> SystemGuard:
    """A guard that never holds agents back: a busy benchmark machine must not look like the
    scheduler's doing."""
    return SystemGuard(max_cpu_percent=101.0, min_memory_available_percent=0.0)


def print_dag_table(repeats: int) -> None:
    bound = max(sum(CHAIN), (sum(CHAIN) + sum(LEAVES)) / DAG_SLOTS)
    print(
        f"| 12-worker DAG, max_concurrent={DAG_SLOTS} ({repeats} runs each) | lower bound s | "
        "makespan s (median) | ratio median | ratio max |"
    )
    print("|---|---:|---:|---:|---:|")
    for name, fifo in (
        ("critical path first (Agentray)", False),
        ("first come, first served", True),
    ):
        results = [asyncio.run(dag_makespan_ratio(fifo=fifo)) for _ in range(repeats)]
        ratios = sorted(r for r, _ in results)
        print(
            f"| {name} | {bound:.2f} | {statistics.median(m for _, m in results):.2f} | "
            f"{statistics.median(ratios):.3f} | {ratios[-1]:.3f} |"
        )
    print()


async def cpu_per_turn(agents: int, turns: int, base_url: str, *, streamed: bool = False) -> float:
    """Engine-process CPU milliseconds per model turn (``streamed``: every call streams)."""
    with tempfile.TemporaryDirectory(prefix="agentray-bench-cpu-") as tmp:
        return await _cpu_per_turn(agents, turns, base_url, Path(tmp), streamed)


async def _cpu_per_turn(
    agents: int, turns: int, base_url: str, workspace: Path, streamed: bool
) -> float:
    engine = build_engine(
        api_key=KEY, base_url=base_url, journal=Journal(_journal_path()), gate=RateLimitGate(),
        guard=_idle_guard(), streaming="always" if streamed else "auto",
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


CPU_AGENTS = (10, 60, 100)
CPU_TURNS = 10
CPU_LATENCY_S = 0.2


STREAMED_AGENTS = 60


def cpu_table(
    repeats: int, agents: tuple[int, ...] = CPU_AGENTS, *, streamed: bool = True
) -> dict[str, list[float]]:
    """CPU ms per turn of each configuration (label -> ``repeats`` values), interleaved."""
    from bench import SimProcess  # scripts/bench.py (its simulator in its own process)

    configs = [(f"{n} agents", n, False) for n in agents]
    if streamed:
        configs.append((f"{STREAMED_AGENTS} agents, every call streamed", STREAMED_AGENTS, True))
    results: dict[str, list[float]] = {label: [] for label, _, _ in configs}
    sim = SimProcess(CPU_LATENCY_S)
    try:
        asyncio.run(cpu_per_turn(agents[0], CPU_TURNS, sim.base_url))  # warm-up, not counted
        for _ in range(repeats):
            for label, n, stream in configs:
                value = asyncio.run(cpu_per_turn(n, CPU_TURNS, sim.base_url, streamed=stream))
                results[label].append(value)
    finally:
        sim.stop()
    return results


def print_cpu_table(repeats: int) -> None:
    results = cpu_table(repeats)
    print(
        f"| engine CPU per model turn ({CPU_TURNS} turns each, {CPU_LATENCY_S * 1000:.0f} ms "
        f"simulated latency, {repeats} runs) | median ms | min ms | max ms |"
    )
    print("|---|---:|---:|---:|")
    for label, values in results.items():
        print(
            f"| {label} | {statistics.median(values):.2f} | {min(values):.2f} | {max(values):.2f} |"
        )
    print()


# The code issue 10 measured (its CPU per turn: 4.8-5.2 ms on the machine it was filed from).
ISSUE_BASELINE = "088c862"
PROBE_FLAG = "--cpu-probe"


def _probe(agents: int) -> float:
    """In a child process: one warm-up run and one measured run of ``agents`` against a simulator
    of its own; the code measured is whatever ``agentray`` PYTHONPATH gives this process."""
    import inspect

    from bench import SimProcess

    global build_engine
    if "streaming" not in inspect.signature(build_engine).parameters:  # code older than the flag
        plain = build_engine

        def build_engine(**config: Any) -> Any:
            config.pop("streaming", None)
            return plain(**config)

    sim = SimProcess(CPU_LATENCY_S)
    try:
        asyncio.run(cpu_per_turn(agents, CPU_TURNS, sim.base_url))
        return asyncio.run(cpu_per_turn(agents, CPU_TURNS, sim.base_url))
    finally:
        sim.stop()


def _checkout(commit: str) -> Path:
    """``desktop/`` of ``commit`` from this clone's history, in a temporary folder."""
    import io
    import subprocess
    import tarfile

    root = Path(__file__).resolve().parent.parent
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", commit, "desktop"],
        capture_output=True,
        check=True,
    ).stdout
    target = scratch_dir(f"agentray-bench-{commit}-")
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    return target / "desktop"


def print_cpu_against(commit: str, repeats: int, agents: int = STREAMED_AGENTS) -> None:
    """CPU per turn of this tree and of ``commit``, each in fresh processes, interleaved run by
    run: a ratio that holds while the machine's speed drifts."""
    import os
    import subprocess

    here = Path(__file__).resolve()
    trees = {"this tree": here.parent.parent / "desktop", commit: _checkout(commit)}
    results: dict[str, list[float]] = {label: [] for label in trees}
    for _ in range(repeats):
        for label, tree in trees.items():
            env = {**os.environ, "PYTHONPATH": str(tree)}
            out = subprocess.run(
                [sys.executable, str(here), PROBE_FLAG, str(agents)],
                env=env, capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            results[label].append(float(out.split()[-1]))
    print(
        f"| engine CPU per model turn, {agents} agents, against {commit} ({repeats} runs each, "
        "interleaved) | median ms | min ms | max ms |"
    )
    print("|---|---:|---:|---:|")
    for label, values in results.items():
        print(
            f"| {label} | {statistics.median(values):.2f} | {min(values):.2f} | {max(values):.2f} |"
        )
    ratio = statistics.median(results["this tree"]) / statistics.median(results[commit])
    print(f"| this tree / {commit} | {ratio:.2f}x | | |")
    print()


UI_AGENTS = 40
UI_TURNS = 25
UI_LATENCY_S = 0.2


def print_load_tables(repeats: int, *, ui_agents: int = UI_AGENTS) -> None:
    """What ``bench.py --only load`` prints: CPU per turn, UI loop lag, the DAG makespan."""
    import bench_ui

    print_cpu_table(repeats)
    bench_ui.print_table(ui_agents, UI_TURNS, UI_LATENCY_S, repeats)
    print_dag_table(repeats)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--only", choices=("cpu", "ui", "dag"), help="one table")
    parser.add_argument(
        "--against",
        metavar="COMMIT",
        help=f"CPU per turn of this tree and of COMMIT, interleaved (e.g. {ISSUE_BASELINE}, "
        "the code issue 10 measured)",
    )
    parser.add_argument(PROBE_FLAG, type=int, metavar="AGENTS", help=argparse.SUPPRESS)
    args = parser.parse_args()
    repeats = 2 if args.quick else 5
    if args.cpu_probe:
        print(f"{_probe(args.cpu_probe):.4f}")
    elif args.against:
        print_cpu_against(args.against, repeats)
    elif args.only is None:
        print_load_tables(repeats)
    elif args.only == "cpu":
        print_cpu_table(repeats)
    elif args.only == "ui":
        import bench_ui

        bench_ui.print_table(UI_AGENTS, UI_TURNS, UI_LATENCY_S, repeats)
    else:
        print_dag_table(repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
