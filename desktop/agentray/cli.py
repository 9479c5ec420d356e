"""The ``agentray`` command (PRODUCT.md, "Headless CLI contract").

Exit codes: 0 success, 1 run failed, 2 bad input, 3 cancelled or interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import math
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, NoReturn

from agentray import __version__
from agentray.console import EscalationResponder, Reporter, print_json
from agentray.engine import DEFAULT_MODEL, RunConfig, RunOutcome
from agentray.errors import (
    AgentrayError,
    BadInputError,
    JournalError,
    ModelAuthError,
    ModelNotFoundError,
    NoApiKeyError,
)

__all__ = ["main"]

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_CANCELLED = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"agentray: {message} (see `{self.prog} --help`)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    return value


def _days(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of days") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more days")
    return value


def _budget(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of USD") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive number of USD")
    return value


def _add_run_flags(parser: argparse.ArgumentParser, *, demo: bool = False) -> None:
    parser.add_argument("--dir", help="project folder (default: the current folder)" if not demo else
                        "new or empty folder for the demo project (default: a temporary folder)")
    parser.add_argument("--build", help="build / validation command; finish needs it to pass")
    parser.add_argument("--model", help=f"orchestrator model (default {DEFAULT_MODEL})")
    parser.add_argument("--worker-model", help="model for workers (default: --model)")
    parser.add_argument("--max-agents", type=_positive_int, help="agents per run (default 30)")
    parser.add_argument("--max-concurrent", type=_positive_int, help="agents talking to the model at once (default 6)")
    parser.add_argument("--max-depth", type=_positive_int, help="nesting depth (default 2)")
    parser.add_argument("--budget", type=_budget, help="USD per run (default 10); reaching it asks you")
    parser.add_argument("--base-url", help="Messages-API endpoint (default: ANTHROPIC_BASE_URL or Anthropic)")
    parser.add_argument(
        "--on-escalation",
        choices=("ask", "deny", "fail"),
        help="answer escalations: ask on the terminal (default on a terminal), deny, or fail the run "
        + ("(default elsewhere: deny for the demo)" if demo else "(default elsewhere)"),
    )
    parser.add_argument("--json", action="store_true", help="print JSON-lines events instead of progress")
    _add_sandbox_flags(parser)


def _add_sandbox_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-network", action="store_true", default=None,
        help="let agents' commands reach the network (default: no network, not even localhost)",
    )
    parser.add_argument(
        "--no-sandbox", dest="sandbox", action="store_false", default=None,
        help="run agents' commands unconfined, with your full authority (only where no sandbox exists)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="agentray", description="Async multi-agent orchestration in your tray.")
    parser.add_argument("--version", action="version", version=f"agentray {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    run = sub.add_parser("run", help="run a goal headless in a project folder")
    run.add_argument("goal", help="what the agents should achieve")
    _add_run_flags(run)

    demo = sub.add_parser("demo", help="the offline demo (no key, no network)")
    demo.add_argument("--headless", action="store_true", help="in the terminal instead of the tray")
    _add_run_flags(demo, demo=True)

    sub.add_parser("tray", help="start the tray app (the default)")

    runs = sub.add_parser("runs", help="list runs from the journal")
    runs.add_argument("--limit", type=_positive_int, default=20, help="how many runs to list (default 20)")
    runs.add_argument(
        "--prune", type=_days, nargs="?", const=30.0, metavar="DAYS",
        help="forget runs that ended more than DAYS ago (default 30), with their snapshots",
    )
    runs.add_argument("--json", action="store_true")

    show = sub.add_parser("show", help="show one run: agents, escalations, usage")
    show.add_argument("run", help="run id (or a unique prefix)")
    show.add_argument("--json", action="store_true")

    resume = sub.add_parser("resume", help="continue an interrupted or stopped run")
    resume.add_argument("run", help="run id (or a unique prefix)")
    resume.add_argument("--base-url")
    resume.add_argument("--on-escalation", choices=("ask", "deny", "fail"))
    resume.add_argument("--json", action="store_true")
    _add_sandbox_flags(resume)

    stop = sub.add_parser("stop", help="stop a run (from any process)")
    target = stop.add_mutually_exclusive_group(required=True)
    target.add_argument("run", nargs="?", help="run id (or a unique prefix)")
    target.add_argument("--all", action="store_true", help="every running run")

    diff = sub.add_parser("diff", help="what a run (or one of its agents) changed, as a unified diff")
    diff.add_argument("run", help="run id (or a unique prefix)")
    diff.add_argument("--agent", help="only this agent's changes (e.g. a002)")
    diff.add_argument("--stat", action="store_true", help="files with +/- line counts and who changed them")

    undo = sub.add_parser("undo", help="put the files a run (or one agent) changed back as they were")
    undo.add_argument("run", help="run id (or a unique prefix)")
    undo.add_argument("--agent", help="only this agent's changes")
    undo.add_argument("--force", action="store_true",
                      help="also over later edits, and files another agent changed too")

    sub.add_parser("doctor", help="check the sandbox, keyring, notifications, display and key")

    key = sub.add_parser("key", help="the API key in the OS keyring")
    key.add_argument("action", choices=("set", "status", "delete"))
    return parser


# ---------------------------------------------------------------------------- helpers
def _fail(message: str, code: int = EXIT_BAD_INPUT) -> int:
    sys.stderr.write(f"agentray: {message}\n")
    return code


def _journal() -> Any:
    from agentray.journal import Journal

    return Journal()


def _find_run(journal: Any, ref: str) -> Any:
    """The run ``ref`` names (an id or a unique prefix), or one line saying why not."""
    row = journal.get_run(ref)
    if row is not None:
        return row
    matches = journal.runs_matching(ref)
    if len(matches) > 1:
        more = ", …" if len(matches) == 5 else ""
        raise BadInputError(f"ambiguous run {ref!r}: {', '.join(matches)}{more}; give more of the id")
    raise BadInputError(f"no run {ref!r} (see `agentray runs`)")


def _policy(flag: str | None, *, demo: bool) -> str:
    if flag:
        return flag
    if sys.stdin.isatty() and sys.stderr.isatty():
        return "ask"
    return "deny" if demo else "fail"


def _config_from(args: argparse.Namespace, goal: str, workspace: str, build: str | None) -> RunConfig:
    values: dict[str, Any] = {"goal": goal, "workspace": workspace, "build_command": build}
    for flag, field in (
        ("model", "model"),
        ("worker_model", "worker_model"),
        ("max_agents", "max_agents"),
        ("max_concurrent", "max_concurrent"),
        ("max_depth", "max_depth"),
        ("budget", "budget_usd"),
        ("sandbox", "sandbox"),
        ("allow_network", "allow_network"),
    ):
        value = getattr(args, flag, None)
        if value is not None:
            values[field] = value
    return RunConfig(**values)


def _exit_code(outcome: RunOutcome) -> int:
    if isinstance(outcome.fatal_error, ModelAuthError | ModelNotFoundError):
        return EXIT_BAD_INPUT
    return {"succeeded": EXIT_OK, "failed": EXIT_FAILED}.get(outcome.status, EXIT_CANCELLED)


async def _drive(
    engine: Any, start: Any, *, policy: str, json_lines: bool, after: str | None = None
) -> int:
    """Start (or resume) a run, print it, answer escalations, map the outcome to an exit code."""
    reporter = Reporter(json_lines=json_lines)
    responder = EscalationResponder(engine, policy, reporter)
    engine.subscribe(reporter)
    engine.subscribe(responder)
    loop = asyncio.get_running_loop()
    run_ids: list[str] = []
    interrupts = 0

    def on_signal(signum: int) -> None:
        nonlocal interrupts
        interrupts += 1
        if interrupts > 1:
            os._exit(EXIT_CANCELLED)
        for run_id in run_ids:
            engine.stop_run(run_id, status="interrupted", reason=f"interrupted ({signal.Signals(signum).name})")
        sys.stderr.write("\nagentray: stopping… (press Ctrl-C again to quit at once)\n")

    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, on_signal, signum)
    reporter.start()
    try:
        run_id = await start()
        run_ids.append(run_id)
        outcome = await engine.wait(run_id)
    finally:
        reporter.stop()
        await engine.aclose()
    if outcome.status != "succeeded" and not json_lines:
        sys.stderr.write(f"agentray: run {run_id} {outcome.status}: {outcome.summary}\n")
        if outcome.status in ("interrupted", "cancelled", "failed") and outcome.resumable:
            sys.stderr.write(f"agentray: resume it with `agentray resume {run_id}`\n")
    if not json_lines and engine.journal.list_snapshots(run_id):
        sys.stdout.write(f"review: `agentray diff {run_id} --stat` · put back: `agentray undo {run_id}`\n")
    if after and not json_lines:
        sys.stdout.write(after.format(run_id=run_id))
    return _exit_code(outcome)


def _resolve_key() -> str:
    from agentray.keys import resolve_api_key

    key, _source = resolve_api_key()
    if not key:
        raise NoApiKeyError()
    return key


def _workspace_arg(value: str | None) -> str:
    path = Path(value).expanduser() if value else Path.cwd()
    if not path.exists():
        raise BadInputError(f"--dir {value}: no such directory")
    if not path.is_dir():
        raise BadInputError(f"--dir {value}: not a directory (it is a file)")
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        raise BadInputError(f"--dir {value}: not readable and writable")
    return str(path.resolve())


# ---------------------------------------------------------------------------- commands
def cmd_run(args: argparse.Namespace) -> int:
    from agentray.engine import validate_config
    from agentray.runtime import build_engine

    config = validate_config(_config_from(args, args.goal, _workspace_arg(args.dir), args.build))
    key = _resolve_key()
    base_url = args.base_url or os.environ.get("ANTHROPIC_BASE_URL") or None
    policy = _policy(args.on_escalation, demo=False)

    async def go() -> int:
        engine = build_engine(api_key=key, base_url=base_url, journal=_journal())
        return await _drive(engine, lambda: engine.start_run(config), policy=policy, json_lines=args.json)

    return asyncio.run(go())


def _require_display() -> None:
    """Qt aborts the process without a display: say so on one line instead."""
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or os.environ.get("QT_QPA_PLATFORM")
    ):
        raise BadInputError(
            "no graphical session (DISPLAY and WAYLAND_DISPLAY are unset): the tray needs one; "
            "use `agentray demo --headless` or `agentray run` here"
        )


def cmd_demo(args: argparse.Namespace) -> int:
    if not args.headless:
        _require_display()
        from agentray.ui.app import run_tray

        return run_tray(demo=True, demo_dir=Path(args.dir) if args.dir else None)
    from agentray.demo import DemoSession
    from agentray.engine import validate_config
    from agentray.runtime import build_engine
    from agentray.sandbox import detect_sandbox

    if args.base_url:
        sys.stderr.write("agentray: the demo always uses its offline simulator; --base-url is ignored\n")
    session = DemoSession.start(Path(args.dir) if args.dir else None)
    policy = _policy(args.on_escalation, demo=True)
    try:
        base = session.config()
        config = _config_from(args, base.goal, base.workspace, args.build or base.build_command).replace(
            model=args.model or base.model, budget_usd=args.budget or base.budget_usd
        )
        if config.sandbox and args.sandbox is None and not detect_sandbox().available:
            # the demo's commands are its own script, not a model's: it may run without a sandbox
            sys.stderr.write(f"agentray: the demo runs without a command sandbox ({detect_sandbox().problem})\n")
            config = config.replace(sandbox=False)
        config = validate_config(config)

        async def go() -> int:
            engine = build_engine(api_key=session.api_key, base_url=session.base_url, journal=_journal())
            return await _drive(
                engine,
                lambda: engine.start_run(config),
                policy=policy,
                json_lines=args.json,
                after=f"\nThe demo project is in {session.workspace}\n"
                "Look at agent-responses/*.md there, or run `agentray show {run_id}`.\n",
            )

        return asyncio.run(go())
    finally:
        session.close()


def cmd_resume(args: argparse.Namespace) -> int:
    from agentray.runtime import build_engine

    journal = _journal()
    journal.mark_interrupted_runs()
    row = _find_run(journal, args.run)
    demo = "agentray-demo-" in row.workspace
    session = None
    if demo and not args.base_url:
        # a demo run resumes on a fresh simulator playing the same script
        from agentray.demo import DEMO_API_KEY
        from agentray.demo import demo_policy as policy_factory
        from agentray.simulator import Simulator

        session = Simulator(policy_factory(), latency_s=0.3)
        session.start()
        key: str = DEMO_API_KEY
        base_url: str | None = session.base_url
    else:
        key = _resolve_key()
        base_url = args.base_url or os.environ.get("ANTHROPIC_BASE_URL") or None
    policy = _policy(args.on_escalation, demo=demo)
    try:

        async def go() -> int:
            engine = build_engine(api_key=key, base_url=base_url, journal=journal)
            return await _drive(
                engine,
                lambda: engine.resume_run(row.run_id, sandbox=args.sandbox, allow_network=args.allow_network),
                policy=policy,
                json_lines=args.json,
            )

        return asyncio.run(go())
    finally:
        if session is not None:
            session.stop()


def cmd_runs(args: argparse.Namespace) -> int:
    journal = _journal()
    journal.mark_interrupted_runs()
    if args.prune is not None:
        from agentray.checkpoints import prune_runs

        gone = prune_runs(journal, args.prune)
        noun = "run" if len(gone) == 1 else "runs"
        print(f"forgot {len(gone)} {noun} that ended more than {args.prune:g} days ago" + (f": {', '.join(gone)}" if gone else ""))
        return EXIT_OK
    rows = journal.list_runs(limit=args.limit)
    if args.json:
        print_json([_run_dict(journal, r) for r in rows])
        return EXIT_OK
    if not rows:
        print("no runs yet — try `agentray demo --headless`")
        return EXIT_OK
    print(f"{'RUN':<12} {'STATUS':<11} {'STARTED':<16} {'AGENTS':>6} {'COST':>9}  GOAL")
    for row in rows:
        agents = len(journal.list_agents(row.run_id))
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(row.started_at))
        goal = " ".join(row.goal.split())
        goal = goal if len(goal) <= 60 else goal[:57] + "..."
        print(f"{row.run_id:<12} {row.status:<11} {started:<16} {agents:>6} {row.cost_usd or 0:>9.4f}  {goal}")
    return EXIT_OK


def _run_dict(journal: Any, row: Any) -> dict[str, Any]:
    return {
        "run_id": row.run_id,
        "status": row.status,
        "goal": row.goal,
        "workspace": row.workspace,
        "started_at": row.started_at,
        "ended_at": row.ended_at,
        "summary": row.summary,
        "cost_usd": row.cost_usd,
        "tokens": row.tokens,
    }


def cmd_show(args: argparse.Namespace) -> int:
    journal = _journal()
    journal.mark_interrupted_runs()
    row = _find_run(journal, args.run)
    agents = journal.list_agents(row.run_id)
    escalations = journal.list_escalations(row.run_id)
    usage = journal.run_usage(row.run_id)
    if args.json:
        data = _run_dict(journal, row)
        data["config"] = row.config
        data["agents"] = [
            {k: getattr(a, k) for k in ("agent_id", "parent_id", "role", "title", "status", "status_reason",
                                        "summary", "blocker", "turns", "cost_usd", "mitigated_by")}
            for a in agents
        ]
        data["escalations"] = [
            {k: getattr(e, k) for k in ("escalation_id", "agent_id", "kind", "question", "options", "answer",
                                        "choice", "answered_by")}
            for e in escalations
        ]
        data["usage"] = usage
        print_json(data)
        return EXIT_OK
    print(f"run {row.run_id}  {row.status}")
    print(f"goal:      {row.goal}")
    print(f"workspace: {row.workspace}")
    if row.config.get("build_command"):
        print(f"build:     {row.config['build_command']}")
    print(f"sandbox:   {_sandbox_words(row.config)}")
    print(
        f"usage:     {usage.get('calls', 0)} calls, {usage.get('input_tokens', 0)} in / "
        f"{usage.get('output_tokens', 0)} out / {usage.get('cache_read_tokens', 0)} cache read / "
        f"{usage.get('cache_creation_tokens', 0)} cache write tokens, ${usage.get('cost_usd', 0):.4f}"
    )
    if row.summary:
        print(f"summary:   {row.summary}")
    print("\nagents:")
    children: dict[str | None, list[Any]] = {}
    for agent in agents:
        children.setdefault(agent.parent_id, []).append(agent)

    def walk(parent: str | None, depth: int) -> None:
        for agent in children.get(parent, []):
            detail = agent.summary or agent.blocker or agent.status_reason or ""
            detail = " ".join(detail.split())
            detail = detail if len(detail) <= 90 else detail[:87] + "..."
            mitigation = f" [mitigated by {agent.mitigated_by}]" if agent.mitigated_by else ""
            print(f"  {'  ' * depth}{agent.agent_id} {agent.role:<12} {agent.status:<9} {agent.title}{mitigation}"
                  + (f" — {detail}" if detail else ""))
            walk(agent.agent_id, depth + 1)

    walk(None, 0)
    if escalations:
        print("\nescalations:")
        for esc in escalations:
            state = f"answered by {esc.answered_by}: {esc.choice or esc.answer}" if esc.answered_at else "PENDING"
            print(f"  {esc.escalation_id} {esc.agent_id} ({esc.kind}) {esc.question} — {state}")
    print(f"\nprogress files: {Path(row.workspace) / 'agent-responses'}")
    if journal.list_snapshots(row.run_id):
        print(f"changes:        `agentray diff {row.run_id} --stat`, undo with `agentray undo {row.run_id}`")
    return EXIT_OK


def _sandbox_words(config: dict[str, Any]) -> str:
    if not config.get("sandbox", True):
        return "none: commands ran unconfined (--no-sandbox)"
    return "on, network allowed (--allow-network)" if config.get("allow_network") else "on, no network"


def cmd_stop(args: argparse.Namespace) -> int:
    journal = _journal()
    journal.mark_interrupted_runs()
    if args.all:
        stopped = journal.request_stop_all()
        if not stopped:
            print("no run is running; nothing to stop (`agentray runs` lists the interrupted ones)")
            return EXIT_OK
        noun = "run" if len(stopped) == 1 else "runs"
        print(f"stop requested for {len(stopped)} {noun}: {', '.join(stopped)}; they stop within a second")
        return EXIT_OK
    row = _find_run(journal, args.run)
    if not journal.request_stop(row.run_id):
        raise BadInputError(f"run {row.run_id} is not running ({row.status})")
    print(f"stop requested for {row.run_id}; its process stops it within a second")
    return EXIT_OK


def cmd_key(args: argparse.Namespace) -> int:
    from agentray import keys

    if args.action == "status":
        status = keys.key_status()
        if status.source is None:
            print("no API key: set ANTHROPIC_API_KEY or run `agentray key set`")
        else:
            print(f"API key from the {status.source}: {status.masked}")
        if status.keyring_problem:
            print(f"keyring: {status.keyring_problem}; only ANTHROPIC_API_KEY is used")
        return EXIT_OK
    if args.action == "delete":
        problem = keys.keyring_problem()
        if problem:
            raise BadInputError(problem)
        try:
            removed = keys.delete_key()
        except RuntimeError as error:
            raise BadInputError(str(error)) from None
        print("the stored key was removed" if removed else "no key was stored")
        return EXIT_OK
    problem = keys.keyring_problem()
    if problem:
        raise BadInputError(f"{problem}; set ANTHROPIC_API_KEY instead")
    if sys.stdin.isatty():
        value = getpass.getpass("Anthropic API key (input hidden): ")
    else:
        value = sys.stdin.readline()
    try:
        keys.store_key(value)
    except (ValueError, RuntimeError) as error:
        raise BadInputError(str(error)) from None
    print("the key is stored in the OS keyring (service 'agentray')")
    return EXIT_OK


def _checkpoints(args: argparse.Namespace, *, changing: bool = False) -> Any:
    from agentray.checkpoints import Checkpoints, git_available

    journal = _journal()
    journal.mark_interrupted_runs()
    row = _find_run(journal, args.run)
    if not git_available():
        raise BadInputError("git is not installed: review and undo need it")
    if not journal.list_snapshots(row.run_id):
        raise BadInputError(f"run {row.run_id} has no snapshots (it ran before checkpoints existed)")
    if args.agent and args.agent not in {a.agent_id for a in journal.list_agents(row.run_id)}:
        raise BadInputError(f"run {row.run_id} has no agent {args.agent!r}")
    if changing and row.status == "running":
        raise BadInputError(f"run {row.run_id} is still running; stop it first (`agentray stop {row.run_id}`)")
    return Checkpoints(journal, row.run_id, row.workspace)


def cmd_diff(args: argparse.Namespace) -> int:
    points = _checkpoints(args)
    if args.stat:
        changes = points.changes(args.agent)
        for change in changes:
            print(f"{change.status:<8} +{change.added:<5} -{change.removed:<5} {change.path}  ({', '.join(change.agents)})")
        files = "file" if len(changes) == 1 else "files"
        print(f"{len(changes)} {files} changed")
        return EXIT_OK
    sys.stdout.write(points.diff(args.agent))
    return EXIT_OK


def cmd_undo(args: argparse.Namespace) -> int:
    points = _checkpoints(args, changing=True)
    result = points.undo(args.agent, force=args.force)
    who = f"agent {args.agent}" if args.agent else "the run"
    if not result.ok and not args.force:
        for path in result.changed_since:
            sys.stderr.write(f"agentray: {path}: changed since {who} ended\n")
        for path, others in result.shared.items():
            sys.stderr.write(f"agentray: {path}: also changed by {', '.join(others)}\n")
        sys.stderr.write("agentray: nothing was changed; pass --force to undo anyway\n")
        return EXIT_FAILED
    if not result.restored:
        print(f"nothing to undo: the files {who} changed are already as they were")
        return EXIT_OK
    for path in result.restored:
        print(f"restored {path}")
    files = "file" if len(result.restored) == 1 else "files"
    print(f"{len(result.restored)} {files} put back as they were before {who}")
    return EXIT_OK


def cmd_doctor(args: argparse.Namespace) -> int:
    from agentray.doctor import doctor_main

    return doctor_main()


def cmd_tray(args: argparse.Namespace) -> int:
    _require_display()
    from agentray.ui.app import run_tray

    return run_tray()


COMMANDS = {
    "run": cmd_run,
    "demo": cmd_demo,
    "resume": cmd_resume,
    "runs": cmd_runs,
    "show": cmd_show,
    "stop": cmd_stop,
    "key": cmd_key,
    "doctor": cmd_doctor,
    "diff": cmd_diff,
    "undo": cmd_undo,
    "tray": cmd_tray,
}


def _log_to_file() -> None:
    """Diagnostics (tracebacks of internal errors) go to ``agentray.log`` beside the journal, never
    to the terminal: the terminal gets one line per problem."""
    import logging
    import logging.handlers

    from agentray.journal import default_journal_path

    logger = logging.getLogger("agentray")
    if logger.handlers:
        return
    logger.propagate = False
    logger.setLevel(logging.INFO)
    try:
        path = default_journal_path().with_name("agentray.log")
        path.parent.mkdir(parents=True, exist_ok=True)
        handler: logging.Handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=1_000_000, backupCount=2, encoding="utf-8", delay=True
        )
        handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
    except OSError:
        handler = logging.NullHandler()
    logger.addHandler(handler)


def main(argv: list[str] | None = None) -> int:
    from agentray.keys import hide_env_key

    hide_env_key()  # no child process, and no /proc reader, sees the key from here on
    _log_to_file()
    args = build_parser().parse_args(argv)
    command = COMMANDS.get(args.command or "tray", cmd_tray)
    try:
        return command(args)
    except BadInputError as error:
        return _fail(str(error))
    except JournalError as error:
        # a full disk is not bad input: free space, then resume
        return _fail(f"journal: {error}", EXIT_FAILED if error.disk_full else EXIT_BAD_INPUT)
    except (ModelAuthError, ModelNotFoundError) as error:
        return _fail(str(error))
    except AgentrayError as error:
        return _fail(str(error), EXIT_FAILED)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_CANCELLED)
    except BrokenPipeError:
        # `agentray runs | head -1`: the reader has gone; stop quietly (and keep Python's own
        # flush at exit from failing again)
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
