"""The ``agentray`` command (PRODUCT.md, "Headless CLI contract").

Exit codes: 0 success, 1 run failed, 2 bad input, 3 cancelled or interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from agentray._cli_parser import build_parser
from agentray.console import EscalationResponder, Reporter, plural, print_json
from agentray.engine import RunConfig, RunOutcome
from agentray.errors import (
    AgentrayError,
    BadInputError,
    JournalError,
    ModelAuthError,
    ModelNotFoundError,
    NoApiKeyError,
)

__all__ = ["build_parser", "main"]

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_CANCELLED = 0, 1, 2, 3


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
    matches = journal.runs_matching(ref, limit=6)
    if len(matches) > 1:
        more = ", …" if len(matches) > 5 else ""
        raise BadInputError(
            f"ambiguous run {ref!r}: {', '.join(matches[:5])}{more}; give more of the id"
        )
    raise BadInputError(f"no run {ref!r} (see `agentray runs`)")


def _policy(flag: str | None, *, demo: bool) -> str:
    if flag:
        return flag
    if sys.stdin.isatty() and sys.stderr.isatty():
        return "ask"
    return "deny" if demo else "fail"


def _config_from(
    args: argparse.Namespace, goal: str, workspace: str, build: str | None
) -> RunConfig:
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
    engine: Any,
    start: Callable[[], Awaitable[str]],
    *,
    policy: str,
    json_lines: bool,
    after: str | None = None,
    agents: list[Any] | None = None,
) -> int:
    """Start (or resume) a run, print it, answer escalations, map the outcome to an exit code.

    The output goes through the reporter's own thread: a terminal or pipe that is not read
    never holds up the run (PRODUCT.md, issue 10 item 7)."""
    reporter = Reporter(json_lines=json_lines)
    reporter.know(agents or [])  # a resumed run's agents, so their lines say who they are
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
            engine.stop_run(
                run_id, status="interrupted", reason=f"interrupted ({signal.Signals(signum).name})"
            )
        sys.stderr.write("\nagentray: stopping… (press Ctrl-C again to quit at once)\n")

    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signum, on_signal, signum)
    reporter.start()
    try:
        try:
            run_id = await start()
            run_ids.append(run_id)
            outcome = await engine.wait(run_id)
        finally:
            await engine.aclose()
        if not json_lines and engine.journal.list_snapshots(run_id):
            reporter.text(
                f"review: `agentray diff {run_id} --stat` · put back: `agentray undo {run_id}`\n"
            )
        if after and not json_lines:
            reporter.text(after.format(run_id=run_id))
    finally:
        await asyncio.to_thread(reporter.stop)
        unwritten = reporter.unwritten_message()
        if unwritten:
            sys.stderr.write(unwritten + "\n")
    if outcome.status != "succeeded" and not json_lines:
        sys.stderr.write(f"agentray: run {run_id} {outcome.status}: {outcome.summary}\n")
        if outcome.status in ("interrupted", "cancelled", "failed") and outcome.resumable:
            sys.stderr.write(f"agentray: resume it with `agentray resume {run_id}`\n")
    return _exit_code(outcome)


def _reachable(base_url: str | None) -> None:
    """Exit 2 at once, before a run exists, if nothing listens at the model's address: no run
    row, no progress files, no checkpoint, and no retries spent on a closed port."""
    from agentray.model.anthropic_client import DEFAULT_BASE_URL, endpoint_problem

    problem = endpoint_problem(base_url)
    if problem:
        raise BadInputError(f"cannot reach the model at {base_url or DEFAULT_BASE_URL}: {problem}")


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
    _reachable(base_url)
    policy = _policy(args.on_escalation, demo=False)

    async def go() -> int:
        engine = build_engine(api_key=key, base_url=base_url, journal=_journal())
        return await _drive(
            engine, lambda: engine.start_run(config), policy=policy, json_lines=args.json
        )

    return asyncio.run(go())


def _require_display() -> None:
    """Qt aborts the process without a display: say so on one line instead."""
    if sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY")
        or os.environ.get("WAYLAND_DISPLAY")
        or os.environ.get("QT_QPA_PLATFORM")
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
        sys.stderr.write(
            "agentray: the demo always uses its offline simulator; --base-url is ignored\n"
        )
    session = DemoSession.start(Path(args.dir) if args.dir else None)
    policy = _policy(args.on_escalation, demo=True)
    try:
        base = session.config()
        config = _config_from(
            args, base.goal, base.workspace, args.build or base.build_command
        ).replace(model=args.model or base.model, budget_usd=args.budget or base.budget_usd)
        if config.sandbox and args.sandbox is None and not detect_sandbox().available:
            # the demo's commands are its own script, not a model's: it may run without a sandbox
            sys.stderr.write(
                f"agentray: the demo runs without a command sandbox ({detect_sandbox().problem})\n"
            )
            config = config.replace(sandbox=False)
        config = validate_config(config)

        async def go() -> int:
            engine = build_engine(
                api_key=session.api_key, base_url=session.base_url, journal=_journal()
            )
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
        _reachable(base_url)
    policy = _policy(args.on_escalation, demo=demo)
    agents = journal.list_agents(row.run_id)
    try:

        async def go() -> int:
            engine = build_engine(api_key=key, base_url=base_url, journal=journal)
            return await _drive(
                engine,
                lambda: engine.resume_run(
                    row.run_id, sandbox=args.sandbox, allow_network=args.allow_network
                ),
                policy=policy,
                json_lines=args.json,
                agents=agents,
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
        days = "1 day" if args.prune == 1 else f"{args.prune:g} days"
        listed = f": {', '.join(gone)}" if gone else ""
        print(f"forgot {plural(len(gone), 'run')} that ended more than {days} ago{listed}")
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
        print(
            f"{row.run_id:<12} {row.status:<11} {started:<16} {agents:>6} {row.cost_usd or 0:>9.4f}  {goal}"
        )
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
    if args.timeline:
        from agentray.timeline import load_timeline, print_timeline

        print_timeline(load_timeline(journal, row.run_id).snapshot(time.time()))
        return EXIT_OK
    agents = journal.list_agents(row.run_id)
    escalations = journal.list_escalations(row.run_id)
    usage = journal.run_usage(row.run_id)
    if args.json:
        data = _run_dict(journal, row)
        data["config"] = row.config
        data["agents"] = [
            {
                k: getattr(a, k)
                for k in (
                    "agent_id",
                    "parent_id",
                    "role",
                    "title",
                    "status",
                    "status_reason",
                    "summary",
                    "blocker",
                    "turns",
                    "cost_usd",
                    "mitigated_by",
                )
            }
            for a in agents
        ]
        data["escalations"] = [
            {
                k: getattr(e, k)
                for k in (
                    "escalation_id",
                    "agent_id",
                    "kind",
                    "question",
                    "options",
                    "answer",
                    "choice",
                    "answered_by",
                )
            }
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
        f"usage:     {plural(usage.get('calls', 0), 'call')}, {usage.get('input_tokens', 0)} in / "
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
            print(
                f"  {'  ' * depth}{agent.agent_id} {agent.role:<12} {agent.status:<9} {agent.title}{mitigation}"
                + (f" — {detail}" if detail else "")
            )
            walk(agent.agent_id, depth + 1)

    walk(None, 0)
    if escalations:
        print("\nescalations:")
        for esc in escalations:
            state = (
                f"answered by {esc.answered_by}: {esc.choice or esc.answer}"
                if esc.answered_at
                else "PENDING"
            )
            print(f"  {esc.escalation_id} {esc.agent_id} ({esc.kind}) {esc.question} — {state}")
    print(f"\nprogress files: {Path(row.workspace) / 'agent-responses'}")
    if journal.list_snapshots(row.run_id):
        print(
            f"changes:        `agentray diff {row.run_id} --stat`, undo with `agentray undo {row.run_id}`"
        )
    return EXIT_OK


def _sandbox_words(config: dict[str, Any]) -> str:
    if not config.get("sandbox", True):
        return "none: commands ran unconfined (--no-sandbox)"
    return (
        "on, network allowed (--allow-network)" if config.get("allow_network") else "on, no network"
    )


def cmd_stop(args: argparse.Namespace) -> int:
    journal = _journal()
    journal.mark_interrupted_runs()
    if args.all:
        stopped = journal.request_stop_all()
        if not stopped:
            print("no run is running; nothing to stop (`agentray runs` lists the interrupted ones)")
            return EXIT_OK
        they = "it stops" if len(stopped) == 1 else "they stop"
        print(
            f"stop requested for {plural(len(stopped), 'run')}: {', '.join(stopped)}; {they} within a second"
        )
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
        raise BadInputError(
            f"run {row.run_id} has no snapshots (it ran before checkpoints existed)"
        )
    if args.agent and args.agent not in {a.agent_id for a in journal.list_agents(row.run_id)}:
        raise BadInputError(f"run {row.run_id} has no agent {args.agent!r}")
    if changing and row.status == "running":
        raise BadInputError(
            f"run {row.run_id} is still running; stop it first (`agentray stop {row.run_id}`)"
        )
    return Checkpoints(journal, row.run_id, row.workspace)


def cmd_diff(args: argparse.Namespace) -> int:
    points = _checkpoints(args)
    if args.stat:
        changes = points.changes(args.agent)
        for change in changes:
            print(
                f"{change.status:<8} +{change.added:<5} -{change.removed:<5} {change.path}  ({', '.join(change.agents)})"
            )
        print(f"{plural(len(changes), 'file')} changed")
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
    print(f"{plural(len(result.restored), 'file')} put back as they were before {who}")
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


def _log_to_file() -> Path | None:
    """Diagnostics (tracebacks of internal errors) go to ``agentray.log`` beside the journal, never
    to the terminal: the terminal gets one line per problem. Returns the log's path."""
    import logging.handlers

    from agentray.journal import default_journal_path

    logging.raiseExceptions = False  # a log file that cannot be written must not print to stderr
    logger = logging.getLogger("agentray")
    path: Path | None = None
    with contextlib.suppress(OSError):
        path = default_journal_path().with_name("agentray.log")
    if logger.handlers:
        return path
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler: logging.Handler = logging.NullHandler()
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.handlers.RotatingFileHandler(
                path, maxBytes=1_000_000, backupCount=2, encoding="utf-8", delay=True
            )
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
            )
        except OSError:
            path = None
    logger.addHandler(handler)
    return path


def _reader_gone() -> int:
    """`agentray runs | head -1`: the reader has gone; stop quietly (and keep Python's own flush
    at exit from failing again)."""
    with contextlib.suppress(OSError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    from agentray.keys import hide_env_key

    hide_env_key()  # no child process, and no /proc reader, sees the key from here on
    log_path = _log_to_file()
    try:
        args = build_parser().parse_args(argv)
        command = COMMANDS.get(args.command or "tray", cmd_tray)
        code = command(args)
        sys.stdout.flush()  # a closed pipe shows here, where it is handled, not at exit
        return code
    except BrokenPipeError:
        return _reader_gone()
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
    except Exception as error:  # a bug: one line here, the traceback in the log
        logging.getLogger("agentray.cli").exception("internal error")
        where = f"; the details are in {log_path}" if log_path else ""
        return _fail(f"internal error ({type(error).__name__}: {error}){where}", EXIT_FAILED)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
