"""Engine benchmarks against the offline simulator (run in its own process, so it does not share
the engine's GIL). Prints a table; figures are medians of several repeats.

    python scripts/bench.py            # the full set (about 11 minutes on 2 cores)
    python scripts/bench.py --quick    # fewer repeats

1. overhead per agent turn: one agent making K cheap turns. Reported as the turn time minus the
   simulated latency, and as the engine's own share: minus a bare SDK call of the same size.
2. await latency: from a worker's "done" to the orchestrator's await_agents returning.
3. concurrency: N agents in parallel (max_concurrent = N), each making K turns with 200 ms of
   simulated latency: wall time against the ideal, peak requests in flight, CPU and memory.
4. sandbox: start-up cost of one command under bubblewrap against the same command unconfined,
   and Stop all with N running commands that ignore SIGTERM (each with a setsid daemon).

    python scripts/bench.py --only sandbox   # just the sandbox figures
5. checkpoints: a snapshot of the workspace into the shadow repository (before a run, after a
   command, after a file tool), for a small and a 5,000-file folder.

    python scripts/bench.py --only checkpoints
6. search: search_files("def get_queryset") through the engine's tool handler on Django's source
   (the sdist from PyPI, ~6,900 files, fetched once into a cache folder, with a .gitignore),
   against grep -rn and the rg binary on the same tree; also the pure-Python engine and
   list_files. Skipped, with one line, when Django cannot be fetched (no network).

    python scripts/bench.py --only search
7. load (scripts/bench_load.py, scripts/bench_ui.py): engine CPU per model turn at 10/60/100
   agents, the tray's UI loop lag with and without the dashboard, the DAG makespan ratio.

    python scripts/bench.py --only load
    python scripts/bench_load.py --against 088c862   # CPU per turn beside the code issue 10
                                                      # measured, interleaved (about 2 minutes)
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import multiprocessing
import os
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import platformdirs
import psutil

from agentray import events as ev
from agentray.engine import RunConfig
from agentray.journal import Journal
from agentray.model import AnthropicModelClient, ModelRequest, RateLimitGate
from agentray.runtime import build_engine
from agentray.sandbox import Sandbox, detect_sandbox
from agentray.simulator import Reply, Rule, ScriptedPolicy, SimRequest, Simulator, text, tool_use

KEY = "sk-ant-bench-000000000000"


# ---------------------------------------------------------------------------- scripted agents
def _param(request: SimRequest, name: str, default: int) -> int:
    match = re.search(rf"{name}=(\d+)", request.first_user_text)
    return int(match.group(1)) if match else default


def orchestrator(request: SimRequest) -> list[dict[str, Any]]:
    n, k, rounds = _param(request, "n", 1), _param(request, "k", 1), _param(request, "rounds", 1)
    spawned = [r.json["agent_id"] for r in request.tool_results_named("spawn_agent") if r.json]
    awaited = len(request.tool_results_named("await_agents"))
    if rounds > 1:  # await-latency mode: spawn one, await it, repeat
        if len(spawned) == awaited and len(spawned) < rounds:
            return [tool_use("spawn_agent", task=f"BENCH-WORKER k={k}", title=f"w{len(spawned)}")]
        if len(spawned) > awaited:
            return [tool_use("await_agents", agent_ids=[spawned[-1]])]
        return [tool_use("finish", summary="bench", outcome="success")]
    if not spawned:
        return [
            tool_use("spawn_agent", task=f"BENCH-WORKER k={k}", title=f"w{i}") for i in range(n)
        ]
    if not awaited:
        return [tool_use("await_agents", agent_ids=spawned)]
    return [tool_use("finish", summary="bench", outcome="success")]


def worker(request: SimRequest) -> list[dict[str, Any]]:
    k = _param(request, "k", 1)
    if request.turn_index < k - 1:
        return [tool_use("report_progress", note=f"step {request.turn_index}")]
    return [tool_use("complete", summary="done")]


def bare(request: SimRequest) -> Reply:
    return Reply([text("ok")])


def policy() -> ScriptedPolicy:
    return ScriptedPolicy(
        [
            Rule(match="You are the orchestrator", turns=[orchestrator] * 500),
            Rule(match="BENCH-WORKER", turns=[worker] * 500),
        ],
        fallback=_Bare(),
    )


class _Bare:
    def respond(self, request: SimRequest) -> Reply:
        return bare(request)


class _InFlight:
    """Wraps the policy to count requests being answered at once (server side)."""

    def __init__(self, inner: Any, latency_s: float, shared: Any) -> None:
        self.inner, self.latency_s, self.shared = inner, latency_s, shared

    def respond(self, request: SimRequest) -> Any:
        with self.shared.get_lock():
            self.shared.value += 1
            peak = self.shared.value
        try:
            if self.latency_s:
                time.sleep(self.latency_s)
            return self.inner.respond(request)
        finally:
            with self.shared.get_lock():
                self.shared.value -= 1
                _PEAK[0] = max(_PEAK[0], peak)


_PEAK = [0]


def _serve(latency_s: float, conn: Any, in_flight: Any, peak: Any) -> None:
    sim = Simulator(_InFlight(policy(), latency_s, in_flight), api_keys={KEY})
    conn.send(sim.start())
    while True:
        message = conn.recv()
        if message == "peak":
            conn.send(_PEAK[0])
            _PEAK[0] = 0
        elif message == "stop":
            sim.stop()
            return


class SimProcess:
    def __init__(self, latency_s: float) -> None:
        self.parent, child = multiprocessing.Pipe()
        self.in_flight = multiprocessing.Value("i", 0)
        self.process = multiprocessing.Process(
            target=_serve, args=(latency_s, child, self.in_flight, None), daemon=True
        )
        self.process.start()
        self.base_url: str = self.parent.recv()

    def peak(self) -> int:
        self.parent.send("peak")
        return int(self.parent.recv())

    def stop(self) -> None:
        self.parent.send("stop")
        self.process.join(5)


_SCRATCH: list[Path] = []


def scratch_dir(prefix: str) -> Path:
    """A temporary folder removed when the benchmark process exits."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if not _SCRATCH:
        atexit.register(lambda: [shutil.rmtree(p, ignore_errors=True) for p in _SCRATCH])
    _SCRATCH.append(path)
    return path


# ---------------------------------------------------------------------------- measurements
async def run_once(base_url: str, goal: str, **config: Any) -> tuple[float, list[ev.Event], Any]:
    workspace = scratch_dir("agentray-bench-")
    engine = build_engine(
        api_key=KEY,
        base_url=base_url,
        journal=Journal(workspace / "journal.sqlite3"),
        gate=RateLimitGate(),
    )
    events: list[ev.Event] = []
    engine.subscribe(events.append)
    started = time.perf_counter()
    _, outcome = await engine.run(
        RunConfig(goal=goal, workspace=str(workspace), model="sim-model", **config)
    )
    elapsed = time.perf_counter() - started
    await engine.aclose()
    assert outcome.status == "succeeded", outcome
    return elapsed, events, engine


async def bare_calls(base_url: str, count: int, messages: list[dict[str, Any]]) -> float:
    """Median seconds of a bare SDK call (no engine) with a conversation of the same size."""
    client = AnthropicModelClient(api_key=KEY, base_url=base_url, gate=RateLimitGate())
    times = []
    for _ in range(count):
        start = time.perf_counter()
        await client.complete(ModelRequest(model="sim-model", system="bench", messages=messages))
        times.append(time.perf_counter() - start)
    await client.aclose()
    return statistics.median(times)


async def bench_turn_overhead(repeats: int, latency_s: float) -> dict[str, float]:
    sim = SimProcess(latency_s)
    k = 40
    per_turn, engine_only = [], []
    try:
        for _ in range(repeats):
            _, events, _ = await run_once(sim.base_url, f"BENCH n=1 k={k}", budget_usd=None)
            worker_id = next(
                e.agent_id for e in events if isinstance(e, ev.AgentSpawned) and e.role == "worker"
            )
            usage = [
                e.ts for e in events if isinstance(e, ev.UsageUpdated) and e.agent_id == worker_id
            ]
            started = next(
                e.ts
                for e in events
                if isinstance(e, ev.AgentStatusChanged)
                and e.agent_id == worker_id
                and e.status == "running"
            )
            turns = [b - a for a, b in zip([started, *usage[:-1]], usage, strict=True)]
            per_turn.append(statistics.median(turns))
            # a bare call with a conversation as long as the worker's median one
            messages: list[dict[str, Any]] = [{"role": "user", "content": "x" * 2000}]
            for i in range(k // 2):
                messages += [
                    {"role": "assistant", "content": f"step {i}"},
                    {"role": "user", "content": "ok"},
                ]
            engine_only.append(per_turn[-1] - await bare_calls(sim.base_url, 15, messages))
    finally:
        sim.stop()
    return {
        "turn_minus_latency_ms": (statistics.median(per_turn) - latency_s) * 1000,
        "engine_only_ms": statistics.median(engine_only) * 1000,
    }


async def bench_await_latency(repeats: int) -> list[float]:
    sim = SimProcess(0.0)
    gaps: list[float] = []
    try:
        for _ in range(repeats):
            _, events, _ = await run_once(sim.base_url, "BENCH rounds=10 k=2", budget_usd=None)
            done = {
                e.agent_id: e.ts
                for e in events
                if isinstance(e, ev.AgentStatusChanged) and e.status == "done"
            }
            for event in events:
                if isinstance(event, ev.ToolCallFinished) and event.tool == "await_agents":
                    # the worker that finished last before this await returned
                    finished = max(ts for ts in done.values() if ts <= event.ts)
                    gaps.append(event.ts - finished)
    finally:
        sim.stop()
    return gaps


async def bench_concurrency(n: int, k: int, latency_s: float) -> dict[str, float]:
    sim = SimProcess(latency_s)
    me = psutil.Process()
    me.cpu_percent(None)
    rss_before = me.memory_info().rss
    sim_proc = psutil.Process(sim.process.pid)
    sim_cpu_before = sum(sim_proc.cpu_times()[:2])
    try:
        elapsed, events, _ = await run_once(
            sim.base_url, f"BENCH n={n} k={k}", max_concurrent=n, max_agents=n, budget_usd=None
        )
        peak = sim.peak()
        sim_cpu = sum(sim_proc.cpu_times()[:2]) - sim_cpu_before
    finally:
        sim.stop()
    cpu = me.cpu_percent(None)
    ideal = (k + 3) * latency_s  # orchestrator's spawn turn + k worker turns + await/finish turns
    return {
        "agents": n,
        "wall_s": elapsed,
        "ideal_s": ideal,
        "ratio": elapsed / ideal,
        "peak_in_flight": peak,
        "cpu_percent": cpu,
        "rss_growth_mb": (me.memory_info().rss - rss_before) / 2**20,
        "events": len(events),
        "sim_cpu_percent": 100 * sim_cpu / elapsed,
    }


# ---------------------------------------------------------------------------- sandbox
def _sandboxes(workspace: Path) -> dict[str, Sandbox]:
    status = detect_sandbox()
    boxes = {"unconfined": Sandbox.unconfined()}
    if status.available:
        boxes["bubblewrap, no network"] = Sandbox.for_workspace(status, workspace)
        boxes["bubblewrap, network"] = Sandbox.for_workspace(status, workspace, allow_network=True)
    return boxes


async def bench_sandbox_startup(repeats: int, count: int = 40) -> dict[str, float]:
    """Median wall time of `true` through run_command, per sandbox kind (ms)."""
    from agentray.tools import ProcessRegistry, run_command

    registry = ProcessRegistry()
    medians: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, box in _sandboxes(Path(tmp)).items():
            runs: list[float] = []
            for _ in range(repeats):
                times = []
                for _ in range(count):
                    started = time.perf_counter()
                    await run_command("true", cwd=Path(tmp), registry=registry, owner="b", sandbox=box)
                    times.append(time.perf_counter() - started)
                runs.append(statistics.median(times))
            medians[name] = statistics.median(runs) * 1000
    return medians


def _marked(token: str) -> int:
    count = 0
    for proc in psutil.process_iter(["cmdline"]):
        if any(token in part for part in proc.info.get("cmdline") or []):
            count += 1
    return count


async def bench_stop_all(commands: int, repeats: int) -> dict[str, float]:
    """Stop all as the engine does it (cancel every command, kill every tree): seconds until no
    process of any command is left. Every command ignores SIGTERM and leaves a setsid daemon."""
    from agentray.tools import ProcessRegistry, run_command

    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, box in _sandboxes(Path(tmp)).items():
            if name == "bubblewrap, network":
                continue
            times = []
            for rep in range(repeats):
                token = f"77{rep}{len(name)}.{commands}"
                command = (f"setsid sh -c 'trap \"\" TERM; sleep {token}' & "
                           f"trap '' TERM; sleep {token}")
                registry = ProcessRegistry()
                tasks = [
                    asyncio.ensure_future(run_command(command, cwd=Path(tmp), registry=registry,
                                                      owner=f"a{i}", sandbox=box, timeout_s=600))
                    for i in range(commands)
                ]
                while _marked(token) < 2 * commands or len(registry.pids()) < commands:
                    await asyncio.sleep(0.05)
                started = time.perf_counter()
                for task in tasks:
                    task.cancel()
                await asyncio.gather(registry.kill_all(), *tasks, return_exceptions=True)
                while _marked(token):
                    await asyncio.sleep(0.01)
                times.append(time.perf_counter() - started)
            results[name] = statistics.median(times)
    return results


# ---------------------------------------------------------------------------- checkpoints
def bench_checkpoints(files: int, repeats: int) -> dict[str, float]:
    from agentray.checkpoints import Checkpoints

    with tempfile.TemporaryDirectory(dir="/var/tmp" if Path("/var/tmp").is_dir() else None) as tmp:
        ws = Path(tmp) / "ws"
        ws.mkdir()
        for i in range(files):
            folder = ws / f"d{i % 50}"
            folder.mkdir(exist_ok=True)
            (folder / f"f{i}.py").write_text("x = 1\n" * 300)
        journal = Journal(Path(tmp) / "journal.sqlite3")
        journal.create_run("r1", goal="bench", workspace=str(ws), config={}, pid=1)
        points = Checkpoints(journal, "r1", ws)
        started = time.perf_counter()
        points.take(agent_id=None, call_id=None, tool="base")
        base = time.perf_counter() - started
        whole, one = [], []
        for k in range(repeats * 2):
            (ws / "d1" / "f1.py").write_text(f"y = {k}\n")
            started = time.perf_counter()
            points.take(agent_id="a002", call_id=f"c{k}", tool="run_command")
            whole.append(time.perf_counter() - started)
            (ws / "d2" / "f2.py").write_text(f"z = {k}\n")
            started = time.perf_counter()
            points.take(agent_id="a002", call_id=f"e{k}", tool="edit_file", only="d2/f2.py")
            one.append(time.perf_counter() - started)
        journal.close()
    return {"base": base * 1000, "whole": statistics.median(whole) * 1000, "one": statistics.median(one) * 1000}


# ---------------------------------------------------------------------------- search
DJANGO = "django==5.2.19"  # pinned: the figures stay comparable from one run to the next
SEARCH_PATTERN = "def get_queryset"
DJANGO_GITIGNORE = "*.mo\n/docs/_build/\njs_tests/\n"


def django_tree() -> Path | None:
    """Django's source tree as a git repository with a .gitignore, fetched once into the cache."""
    tree = platformdirs.user_cache_path("agentray") / "bench" / "django-src"
    if (tree / ".gitignore").is_file():
        return tree
    tree.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        pip = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary=:all:"]
        fetched = subprocess.run(
            [*pip, DJANGO, "-d", tmp],
            capture_output=True,
            timeout=600,
            check=False,
        )
        archives = list(Path(tmp).glob("*.tar.gz"))
        if fetched.returncode != 0 or not archives:
            return None
        unpacked = Path(tmp) / "unpacked"
        with tarfile.open(archives[0]) as tar:
            # "data": no links out, no odd modes (the filter exists from Python 3.11.4 on)
            safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(unpacked, **safe)  # type: ignore[arg-type]
        (top,) = unpacked.iterdir()
        shutil.rmtree(tree, ignore_errors=True)
        shutil.move(str(top), tree)
    subprocess.run(["git", "init", "-q", str(tree)], check=True)
    (tree / ".gitignore").write_text(DJANGO_GITIGNORE)
    return tree


def _timed_command(args: list[str], cwd: Path) -> tuple[float, int]:
    started = time.perf_counter()
    out = subprocess.run(args, cwd=cwd, capture_output=True, check=False).stdout
    return time.perf_counter() - started, out.count(b"\n")


async def bench_search(tree: Path, repeats: int) -> dict[str, tuple[float, int]]:
    """Median seconds and result count of each way to search (and list) the tree."""
    from agentray.engine import _tools
    from agentray.tools import Workspace
    from agentray.tools._search import find_rg

    rg = find_rg()
    ours = SimpleNamespace(files=Workspace(tree))
    python = SimpleNamespace(files=Workspace(tree, engine="python"))

    async def handler(run: Any, tool: Any, args: dict[str, Any]) -> tuple[float, int]:
        started = time.perf_counter()
        result = await tool(run, None, args)
        elapsed = time.perf_counter() - started
        return elapsed, len(result.get("matches", result.get("files", [])))

    search = {"pattern": SEARCH_PATTERN}
    ways: dict[str, Any] = {"grep -rn": lambda: _timed_command(["grep", "-rn", SEARCH_PATTERN, "."], tree)}
    if rg is not None:
        ways["rg -n (the binary, its defaults)"] = lambda: _timed_command(
            [rg, "-n", SEARCH_PATTERN, "."], tree
        )
    ways["search_files (tool handler)"] = lambda: handler(ours, _tools.search_files, search)
    if rg is not None:
        ways["rg --files"] = lambda: _timed_command([rg, "--files"], tree)
    ways["list_files (tool handler; the first 500 files)"] = lambda: handler(ours, _tools.list_files, {})
    times: dict[str, list[float]] = {name: [] for name in ways}
    counts: dict[str, int] = {}
    for round_ in range(repeats + 1):  # the first round warms the page cache: not counted
        for name, way in ways.items():  # interleaved, so a busy moment hits every way alike
            got = way()
            elapsed, count = await got if asyncio.iscoroutine(got) else got
            if round_:
                times[name].append(elapsed)
            counts[name] = count
    results = {name: (statistics.median(values), counts[name]) for name, values in times.items()}
    slow = []
    for _ in range(min(repeats, 3)):  # the fallback is slow: fewer runs
        slow.append(await handler(python, _tools.search_files, search))
    results["search_files, pure-Python engine (no rg)"] = (
        statistics.median(t for t, _ in slow),
        slow[0][1],
    )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--only",
        choices=("engine", "sandbox", "checkpoints", "search", "load"),
        help="run one group of benchmarks",
    )
    args = parser.parse_args()
    repeats = 2 if args.quick else 5

    async def go() -> None:
        print(
            f"# Agentray engine benchmarks ({psutil.cpu_count()} cores, Python {sys.version.split()[0]})\n"
        )
        if args.only in (None, "sandbox"):
            await sandbox_tables()
        if args.only in (None, "checkpoints"):
            checkpoint_table()
        if args.only in (None, "search"):
            await search_table()
        if args.only in (None, "engine"):
            await engine_tables()

    def checkpoint_table() -> None:
        print(f"| snapshot (median of {repeats * 2}) | first, before the run | after a command (whole folder) | after a file tool (its path) |")
        print("|---|---:|---:|---:|")
        for files in (100, 5000):
            row = bench_checkpoints(files, repeats)
            print(f"| {files} files | {row['base']:.0f} ms | {row['whole']:.0f} ms | {row['one']:.0f} ms |")
        print()

    async def search_table() -> None:
        tree = django_tree()
        if tree is None:
            print(f"search: skipped, {DJANGO} could not be fetched from PyPI (no network?)\n")
            return
        files = sum(len(names) for _, _, names in os.walk(tree))
        rows = await bench_search(tree, repeats * 2)
        grep_s = rows["grep -rn"][0]
        ignored = DJANGO_GITIGNORE.strip().replace("\n", " ")
        print(
            f"| `{SEARCH_PATTERN}` on {DJANGO} ({files} files; .gitignore `{ignored}`), "
            f"median of {repeats * 2} | ms | results | ratio to grep |"
        )
        print("|---|---:|---:|---:|")
        for name, (seconds, count) in rows.items():
            print(f"| {name} | {seconds * 1000:.0f} | {count} | {seconds / grep_s:.2f} |")
        print()

    async def sandbox_tables() -> None:
        startup = await bench_sandbox_startup(repeats)
        base = startup["unconfined"]
        print(f"| one command (`true`) through run_command, median of {repeats} x 40 | ms | overhead ms |")
        print("|---|---:|---:|")
        for name, ms in startup.items():
            print(f"| {name} | {ms:.1f} | {ms - base:+.1f} |")
        print("\n| Stop all, commands ignoring SIGTERM with a setsid daemon each | commands | seconds (median) |")
        print("|---|---:|---:|")
        for count in (20, 60):
            for name, seconds in (await bench_stop_all(count, 3 if not args.quick else 1)).items():
                print(f"| {name} | {count} | {seconds:.2f} |")
        print()

    async def engine_tables() -> None:
        overhead = await bench_turn_overhead(repeats, latency_s=0.05)
        print(f"| per agent turn (median of {repeats} runs x 40 turns) | ms |")
        print("|---|---:|")
        print(
            f"| turn time minus the 50 ms simulated latency (HTTP + SDK + engine) | {overhead['turn_minus_latency_ms']:.1f} |"
        )
        print(
            f"| engine only (minus a bare SDK call of the same size) | {overhead['engine_only_ms']:.1f} |"
        )
        gaps = sorted(await bench_await_latency(repeats))
        print(f"\n| agent done -> await_agents returns ({len(gaps)} awaits) | ms |")
        print("|---|---:|")
        print(f"| median | {statistics.median(gaps) * 1000:.2f} |")
        print(f"| p95 | {gaps[int(len(gaps) * 0.95) - 1] * 1000:.2f} |")
        print(f"| max | {gaps[-1] * 1000:.2f} |")
        print(
            "\n| concurrent agents (k=10 turns, 200 ms latency) | wall s | ideal s | ratio | peak in flight | engine CPU % | simulator CPU % | RSS +MB |"
        )
        print("|---:|---:|---:|---:|---:|---:|---:|---:|")
        for n in [10, 30] if args.quick else [10, 30, 60, 100]:
            row = await bench_concurrency(n, 10, 0.2)
            print(
                f"| {n} | {row['wall_s']:.1f} | {row['ideal_s']:.1f} | {row['ratio']:.2f} | "
                f"{row['peak_in_flight']} | {row['cpu_percent']:.0f} | {row['sim_cpu_percent']:.0f} | {row['rss_growth_mb']:.0f} |"
            )

    if args.only != "load":
        asyncio.run(go())
    if args.only in (None, "load"):  # its own event loops (and Qt in child processes)
        import bench_load

        bench_load.print_load_tables(repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
