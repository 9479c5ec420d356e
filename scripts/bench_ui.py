"""UI loop lag under load (issue 10): the tray's controller, with and without the dashboard open,
driving busy agents on one qasync loop (the engine shares the Qt thread, as the tray runs it).

The simulator runs in its own process (``bench.SimProcess``: every worker makes K model turns,
each a ``report_progress``, with ``--latency`` of simulated model time). Two probes run on the
loop the whole time:

- a 5 ms ``QTimer`` (precise): lag = the interval between two of its ticks minus 5 ms;
- ``loop.call_soon`` every 5 ms: delay = from the call to the callback running.

Figures are taken while every worker is running (from the last worker's first "running" to the
first worker's "done"). Each configuration runs in a fresh process (one QApplication each):

    python scripts/bench_ui.py                   # 40 agents: qasync's loop and FairQEventLoop,
                                                 # each without and with the dashboard
    python scripts/bench_ui.py --agents 60 --repeats 3 --loop fair
    python scripts/bench_ui.py --one --dashboard # one measurement, JSON on stdout
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PROBE_MS = 5


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _summary(values_s: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values_s]
    return {
        "p50": _percentile(ms, 0.50),
        "p99": _percentile(ms, 0.99),
        "max": max(ms) if ms else float("nan"),
        "n": len(ms),
    }


def measure_once(
    *,
    agents: int,
    turns: int,
    latency_s: float,
    dashboard: bool,
    loop_kind: str = "qasync",
    gc_freeze: bool = False,
) -> dict[str, Any]:
    """One measurement in this process: needs a fresh process (it makes the QApplication)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from bench import scratch_dir

    tmp = scratch_dir("agentray-bench-ui-")
    # nothing of the person's: settings, journal and keyring stay in the temporary folder
    os.environ["XDG_CONFIG_HOME"] = str(tmp / "config")
    os.environ["AGENTRAY_JOURNAL"] = str(tmp / "journal.sqlite3")
    os.environ["PYTHON_KEYRING_BACKEND"] = "keyring.backends.fail.Keyring"
    os.environ.pop("ANTHROPIC_API_KEY", None)

    import asyncio

    import qasync
    from PySide6.QtCore import QSettings, Qt, QTimer
    from PySide6.QtWidgets import QApplication

    sys.path.insert(0, str(HERE))
    from bench import KEY, SimProcess
    from bench_load import _idle_guard

    from agentray import events as ev
    from agentray.engine import RunConfig
    from agentray.journal import Journal
    from agentray.model import RateLimitGate
    from agentray.runtime import build_engine
    from agentray.ui.controller import AppController
    from agentray.ui.settings import AppSettings

    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp / "qs"))
    app = QApplication.instance() or QApplication([])
    if loop_kind == "fair":
        from agentray.ui.fair_loop import FairQEventLoop

        loop = FairQEventLoop(app)
    else:
        loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    sim = SimProcess(latency_s)
    journal = Journal(tmp / "journal.sqlite3")
    controller = AppController(
        AppSettings(tmp / "settings.ini"),
        journal,
        engine_factory=lambda: build_engine(
            api_key=KEY,
            base_url=sim.base_url,
            journal=journal,
            gate=RateLimitGate(),
            guard=_idle_guard(),
        ),
    )
    dash: Any = None
    if dashboard:
        from agentray.ui.dashboard import DashboardWindow

        dash = DashboardWindow(controller)
        dash.resize(1200, 800)

    ticks: list[float] = []
    soon: list[tuple[float, float]] = []  # (when asked, delay)
    running_at: dict[str, float] = {}
    first_done: list[float] = []
    workers: set[str] = set()
    usage_events: list[float] = []

    cpu_marks: dict[str, float] = {}

    def cpu_now() -> float:
        times = os.times()
        return times.user + times.system

    def on_event(event: ev.Event) -> None:
        now = time.perf_counter()
        if isinstance(event, ev.AgentSpawned) and event.role != "orchestrator":
            workers.add(event.agent_id)
        elif isinstance(event, ev.AgentStatusChanged) and event.agent_id in workers:
            if event.status == "running":
                running_at.setdefault(event.agent_id, now)
                if len(running_at) == agents:
                    cpu_marks["start"] = cpu_now()
            elif event.status == "done" and not first_done:
                first_done.append(now)
                cpu_marks["end"] = cpu_now()
        elif isinstance(event, ev.UsageUpdated):
            usage_events.append(now)

    controller.event.connect(on_event)

    if gc_freeze:
        import gc

        gc.collect()
        gc.freeze()  # what exists now (modules, Qt wrappers) is never scanned again

    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.setInterval(PROBE_MS)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))

    async def call_soon_probe(stop: asyncio.Event) -> None:
        running = asyncio.get_running_loop()
        while not stop.is_set():
            asked = time.perf_counter()
            running.call_soon(lambda a=asked: soon.append((a, time.perf_counter() - a)))
            await asyncio.sleep(PROBE_MS / 1000)

    async def scenario() -> str:
        config = RunConfig(
            goal=f"BENCH n={agents} k={turns}",
            workspace=str(tmp / "ws"),
            model="sim-model",
            max_concurrent=agents,
            max_agents=agents + 1,
            sandbox=False,
            budget_usd=None,
        )
        (tmp / "ws").mkdir()
        stop = asyncio.Event()
        probe = asyncio.ensure_future(call_soon_probe(stop))
        timer.start()
        run_id = await controller.start_run(config)
        if dash is not None:
            dash.show_run(run_id)
        status = await controller.wait(run_id)
        timer.stop()
        stop.set()
        await probe
        await controller.shutdown()
        return status

    try:
        with loop:
            status = loop.run_until_complete(scenario())
    finally:
        sim.stop()
        journal.close()
        shutil.rmtree(tmp, ignore_errors=True)
    if len(running_at) < agents or not first_done:
        raise RuntimeError(f"the run did not reach its steady state (status {status})")
    start, end = max(running_at.values()), first_done[0]
    lags = [
        max(0.0, (b - a) - PROBE_MS / 1000)
        for a, b in itertools.pairwise(ticks)
        if a >= start and b <= end
    ]
    delays = [d for asked, d in soon if start <= asked <= end]
    turns_in_window = sum(1 for t in usage_events if start <= t <= end)
    return {
        "agents": agents,
        "dashboard": dashboard,
        "loop": loop_kind,
        "gc_freeze": gc_freeze,
        "status": status,
        "window_s": end - start,
        "turns_per_s": turns_in_window / max(1e-9, end - start),
        # the whole process (engine, Qt, probes) while every worker runs, per model turn
        "cpu_ms_per_turn": (cpu_marks["end"] - cpu_marks["start"]) * 1000 / max(1, turns_in_window),
        "qtimer_lag_ms": _summary(lags),
        "call_soon_ms": _summary(delays),
    }


def _child(
    *, agents: int, turns: int, latency_s: float, dashboard: bool, loop_kind: str, gc_freeze: bool
) -> dict[str, Any]:
    """One measurement in a fresh process."""
    args = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--one",
        f"--agents={agents}",
        f"--turns={turns}",
        f"--latency={latency_s}",
        f"--loop={loop_kind}",
    ]
    if dashboard:
        args.append("--dashboard")
    if gc_freeze:
        args.append("--gc-freeze")
    out = subprocess.run(args, capture_output=True, text=True, check=False, timeout=600)
    if out.returncode != 0:
        raise RuntimeError(f"bench_ui child failed:\n{out.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def measure(
    *,
    agents: int,
    turns: int,
    latency_s: float,
    repeats: int,
    loops: tuple[str, ...] = ("qasync",),
    gc_freeze: bool = False,
) -> list[dict[str, Any]]:
    """Medians over ``repeats`` fresh processes of each (loop, dashboard) configuration; the
    configurations are interleaved, repeat by repeat, so a busy moment hits them alike."""
    configs = [(loop_kind, dashboard) for loop_kind in loops for dashboard in (False, True)]
    runs: dict[tuple[str, bool], list[dict[str, Any]]] = {c: [] for c in configs}
    for _ in range(repeats):
        for loop_kind, dashboard in configs:
            runs[loop_kind, dashboard].append(
                _child(
                    agents=agents,
                    turns=turns,
                    latency_s=latency_s,
                    dashboard=dashboard,
                    loop_kind=loop_kind,
                    gc_freeze=gc_freeze,
                )
            )
    rows = []
    for (loop_kind, dashboard), results in runs.items():

        def med(key: str, stat: str, results: list[dict[str, Any]] = results) -> float:
            return statistics.median(r[key][stat] for r in results)

        rows.append(
            {
                "agents": agents,
                "loop": loop_kind,
                "dashboard": dashboard,
                "repeats": repeats,
                "turns_per_s": statistics.median(r["turns_per_s"] for r in results),
                "cpu_ms_per_turn": statistics.median(r["cpu_ms_per_turn"] for r in results),
                "qtimer_lag_ms": {s: med("qtimer_lag_ms", s) for s in ("p50", "p99", "max")},
                "call_soon_ms": {s: med("call_soon_ms", s) for s in ("p50", "p99", "max")},
            }
        )
    return rows


LOOP_NAMES = {"qasync": "qasync.QEventLoop", "fair": "FairQEventLoop"}


def print_table(
    agents: int,
    turns: int,
    latency_s: float,
    repeats: int,
    *,
    loops: tuple[str, ...] = ("qasync", "fair"),
    gc_freeze: bool = False,
) -> list[dict[str, Any]]:
    rows = measure(
        agents=agents,
        turns=turns,
        latency_s=latency_s,
        repeats=repeats,
        loops=loops,
        gc_freeze=gc_freeze,
    )
    frozen = ", gc.freeze()" if gc_freeze else ""
    print(
        f"| UI loop, {agents} agents x {turns} turns, {latency_s * 1000:.0f} ms model latency"
        f"{frozen}; medians of {repeats} | turns/s | CPU ms/turn "
        f"| 5 ms QTimer lag p50 / p99 / max ms | call_soon delay p50 / p99 / max ms |"
    )
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        lag, soon = row["qtimer_lag_ms"], row["call_soon_ms"]
        view = "controller + dashboard" if row["dashboard"] else "controller only"
        print(
            f"| {LOOP_NAMES[row['loop']]}, {view} | {row['turns_per_s']:.0f} "
            f"| {row['cpu_ms_per_turn']:.2f} "
            f"| {lag['p50']:.1f} / {lag['p99']:.1f} / {lag['max']:.1f} "
            f"| {soon['p50']:.1f} / {soon['p99']:.1f} / {soon['max']:.1f} |"
        )
    print()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--agents", type=int, default=40)
    parser.add_argument("--turns", type=int, default=25)
    parser.add_argument("--latency", type=float, default=0.2, help="simulated model seconds")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dashboard", action="store_true", help="with --one: open the dashboard")
    parser.add_argument("--one", action="store_true", help="one measurement, JSON on stdout")
    parser.add_argument(
        "--loop",
        choices=("qasync", "fair", "both"),
        default="both",
        help="qasync's own loop, agentray.ui.fair_loop.FairQEventLoop, or both (a table)",
    )
    parser.add_argument("--gc-freeze", action="store_true", help="gc.freeze() after start-up")
    args = parser.parse_args()
    if args.one:
        result = measure_once(
            agents=args.agents,
            turns=args.turns,
            latency_s=args.latency,
            dashboard=args.dashboard,
            loop_kind=args.loop,
            gc_freeze=args.gc_freeze,
        )
        print(json.dumps(result))
        return 0
    loops = ("qasync", "fair") if args.loop == "both" else (args.loop,)
    print_table(
        args.agents, args.turns, args.latency, args.repeats, loops=loops, gc_freeze=args.gc_freeze
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
