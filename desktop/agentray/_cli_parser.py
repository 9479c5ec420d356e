"""The ``agentray`` command line: every subcommand, flag, description and example.

Kept apart from :mod:`agentray.cli` (which runs the commands) so the help text can be read, and
tested, in one place: every action has help, every subcommand a description and an example.
"""

from __future__ import annotations

import argparse
import math
from typing import NoReturn

from agentray import __version__
from agentray.engine import DEFAULT_MODEL

__all__ = ["EXIT_BAD_INPUT", "build_parser"]

EXIT_BAD_INPUT = 2
RUN_REF = "run id, or enough of its start to name one run (e.g. r1128-3fa2, or r1128-3)"

_EXIT_CODES = """\
exit codes:
  0  success
  1  the run failed (or `undo` found later edits)
  2  bad input: a wrong flag, an unknown or ambiguous run, no key, an unreachable model, ...
  3  cancelled or interrupted (Ctrl-C, `agentray stop`): resumable
"""


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

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


def _escalation_flag(parser: argparse.ArgumentParser, *, demo: bool) -> None:
    elsewhere = "deny for the demo" if demo else "fail"
    parser.add_argument(
        "--on-escalation",
        choices=("ask", "deny", "fail"),
        help="how questions from agents are answered: ask you on the terminal, deny them, or fail "
        f"the run (default: ask on a terminal, else {elsewhere})",
    )


def _json_flag(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--json", action="store_true", help=what)


def _base_url_flag(parser: argparse.ArgumentParser, *, demo: bool = False) -> None:
    parser.add_argument(
        "--base-url",
        metavar="URL",
        help="ignored: the demo always uses its own offline simulator"
        if demo
        else "Messages-API endpoint (default: $ANTHROPIC_BASE_URL, else Anthropic's); "
        "checked before the run starts",
    )


def _add_run_flags(parser: argparse.ArgumentParser, *, demo: bool = False) -> None:
    parser.add_argument(
        "--dir",
        metavar="DIR",
        help="new or empty folder for the demo project (default: a temporary folder)"
        if demo
        else "project folder the agents work in (default: the current folder)",
    )
    parser.add_argument(
        "--build",
        metavar="CMD",
        help="build / validation command; a run can only finish when it passes",
    )
    parser.add_argument(
        "--model", metavar="M", help=f"orchestrator model (default {DEFAULT_MODEL})"
    )
    parser.add_argument("--worker-model", metavar="M", help="model for workers (default: --model)")
    parser.add_argument(
        "--max-agents", metavar="N", type=_positive_int, help="agents per run (default 30)"
    )
    parser.add_argument(
        "--max-concurrent",
        metavar="N",
        type=_positive_int,
        help="agents talking to the model at once (default 6)",
    )
    parser.add_argument(
        "--max-depth",
        metavar="N",
        type=_positive_int,
        help="how deep agents may spawn agents (default 2)",
    )
    parser.add_argument(
        "--budget",
        metavar="USD",
        type=_budget,
        help="spending cap per run (default 10); reaching it asks you",
    )
    _base_url_flag(parser, demo=demo)
    _escalation_flag(parser, demo=demo)
    _json_flag(parser, "print one JSON object per event (JSON lines) instead of progress lines")
    _add_sandbox_flags(parser)


def _add_sandbox_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-network",
        action="store_true",
        default=None,
        help="let agents' commands reach the network (default: no network, not even localhost)",
    )
    parser.add_argument(
        "--no-sandbox",
        dest="sandbox",
        action="store_false",
        default=None,
        help="run agents' commands unconfined, with your full authority (only where no sandbox exists)",
    )


def _sub(
    sub: argparse._SubParsersAction[_Parser],
    name: str,
    summary: str,
    description: str,
    examples: str,
) -> _Parser:
    return sub.add_parser(
        name,
        help=summary,
        description=description,
        epilog="Examples:\n" + examples.rstrip("\n") + "\n",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="agentray",
        description="Async multi-agent orchestration in your tray. Without a command, the tray app starts.",
        epilog="Examples:\n"
        '  agentray run "Fix the type errors in src/" --dir ~/code/app --build "mypy src"\n'
        "  agentray runs\n"
        "  agentray demo --headless\n\n"
        "`agentray COMMAND --help` describes each command.\n\n" + _EXIT_CODES,
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"agentray {__version__}",
        help="print the version and exit",
    )
    sub = parser.add_subparsers(
        dest="command", title="commands", metavar="COMMAND", parser_class=_Parser, help="one of:"
    )

    run = _sub(
        sub,
        "run",
        "run a goal headless in a project folder",
        "Run GOAL in a project folder without the tray: agents plan, work and build there, and every\n"
        "agent state change, escalation and build is printed (or, with --json, one JSON event a line).\n"
        "The key comes from ANTHROPIC_API_KEY, else the OS keyring (`agentray key set`).\n\n"
        + _EXIT_CODES,
        '  agentray run "Fix the type errors in src/" --dir ~/code/app --build "mypy src && pytest -q"\n'
        '  agentray run "Add a --verbose flag" --json --on-escalation deny > events.jsonl\n',
    )
    run.add_argument("goal", help="what the agents should achieve, in your words")
    _add_run_flags(run)

    demo = _sub(
        sub,
        "demo",
        "the offline demo (no key, no network)",
        "Play a scripted multi-agent run against Agentray's offline model simulator, in the tray or,\n"
        "with --headless, in this terminal. It needs no key and no network, and takes the same flags\n"
        "as `run`.",
        "  agentray demo --headless\n  agentray demo --headless --dir /tmp/demo --json\n",
    )
    demo.add_argument(
        "--headless", action="store_true", help="run in this terminal instead of the tray"
    )
    _add_run_flags(demo, demo=True)

    _sub(
        sub,
        "tray",
        "start the tray app (the default)",
        "Start the tray app (what `agentray` without a command does). It needs a graphical session.",
        "  agentray tray\n",
    )

    runs = _sub(
        sub,
        "runs",
        "list runs from the journal, newest first",
        "List the runs in the journal, newest first: id, status, start, agents, cost and goal.\n"
        "With --prune, forget old runs (and their snapshots) instead.",
        "  agentray runs\n  agentray runs --limit 5 --json\n  agentray runs --prune 30\n",
    )
    runs.add_argument(
        "--limit",
        metavar="N",
        type=_positive_int,
        default=20,
        help="list at most N runs (default 20)",
    )
    runs.add_argument(
        "--prune",
        type=_days,
        nargs="?",
        const=30.0,
        metavar="DAYS",
        help="forget runs that ended more than DAYS ago (default 30), with their snapshots",
    )
    _json_flag(runs, "print the runs as a JSON array")

    show = _sub(
        sub,
        "show",
        "show one run: agents, escalations, usage",
        "Show one run: its goal, sandbox, usage and cost, the agents as a tree with what each did,\n"
        "and every escalation with how it was answered.",
        "  agentray show r1128-3fa2\n  agentray show r1128 --json\n",
    )
    show.add_argument("run", help=RUN_REF)
    _json_flag(show, "print the run, its agents, escalations and usage as one JSON object")
    show.add_argument(
        "--timeline",
        action="store_true",
        help="draw each agent's states over time as bars, fitted to the terminal",
    )

    resume = _sub(
        sub,
        "resume",
        "continue an interrupted, stopped or failed run",
        "Continue a run where it stopped: every journaled tool result goes back to the model\n"
        "unchanged; a call that was still running comes back as interrupted. A demo run resumes\n"
        "on the offline simulator.\n\n" + _EXIT_CODES,
        "  agentray resume r1128-3fa2\n  agentray resume r1128 --on-escalation deny --json\n",
    )
    resume.add_argument("run", help=RUN_REF)
    _base_url_flag(resume)
    _escalation_flag(resume, demo=False)
    _json_flag(resume, "print one JSON object per event (JSON lines) instead of progress lines")
    _add_sandbox_flags(resume)

    stop = _sub(
        sub,
        "stop",
        "stop a run (from any terminal)",
        "Ask a running run to stop, from any process: its agents and their commands stop within a\n"
        "second and the run is marked cancelled (resumable).",
        "  agentray stop r1128-3fa2\n  agentray stop --all\n",
    )
    target = stop.add_mutually_exclusive_group(required=True)
    target.add_argument("run", nargs="?", help=RUN_REF)
    target.add_argument("--all", action="store_true", help="stop every running run")

    diff = _sub(
        sub,
        "diff",
        "what a run (or one of its agents) changed, as a unified diff",
        "Print what a run (or one of its agents) changed in its folder, as a unified diff, created\n"
        "and deleted files included; --stat lists the files instead.",
        "  agentray diff r1128-3fa2 --stat\n  agentray diff r1128-3fa2 --agent a002 | less\n",
    )
    diff.add_argument("run", help=RUN_REF)
    diff.add_argument("--agent", metavar="ID", help="only this agent's changes (e.g. a002)")
    diff.add_argument(
        "--stat", action="store_true", help="files with +/- line counts and who changed them"
    )

    undo = _sub(
        sub,
        "undo",
        "put the files a run (or one agent) changed back as they were",
        "Put the files a run (or one agent) changed back as they were before it. If any of them\n"
        "changed since (your edits, another run), nothing is changed, those files are named and the\n"
        "exit code is 1, unless --force.",
        "  agentray undo r1128-3fa2\n  agentray undo r1128-3fa2 --agent a003 --force\n",
    )
    undo.add_argument("run", help=RUN_REF)
    undo.add_argument("--agent", metavar="ID", help="only this agent's changes (e.g. a002)")
    undo.add_argument(
        "--force",
        action="store_true",
        help="also over later edits, and files another agent changed too",
    )

    _sub(
        sub,
        "doctor",
        "check the sandbox, keyring, notifications, display and key",
        "Check, one line each, what Agentray relies on: the command sandbox, the keyring,\n"
        "notifications, the display and the API key. The key itself is never printed.",
        "  agentray doctor\n",
    )

    key = _sub(
        sub,
        "key",
        "store, check or delete the API key in the OS keyring",
        "Manage the Anthropic API key in the OS keyring (service 'agentray'). ANTHROPIC_API_KEY,\n"
        "when set, is used instead of the stored key.",
        "  agentray key set            # paste the key; it is not echoed\n"
        '  printf %s "$KEY" | agentray key set\n  agentray key status\n',
    )
    actions = key.add_subparsers(
        dest="action",
        title="actions",
        metavar="ACTION",
        parser_class=_Parser,
        required=True,
        help="one of:",
    )
    _sub(
        actions,
        "set",
        "read the key from stdin and store it in the keyring",
        "Read the key from stdin (without echo on a terminal) and store it in the OS keyring.",
        '  agentray key set\n  printf %s "$KEY" | agentray key set\n',
    )
    _sub(
        actions,
        "status",
        "say where the key comes from (never prints it)",
        "Say where the key comes from (the environment or the keyring), masked, and whether the\n"
        "keyring works.",
        "  agentray key status\n",
    )
    _sub(
        actions,
        "delete",
        "remove the stored key from the keyring",
        "Remove the stored key from the OS keyring (ANTHROPIC_API_KEY is not touched).",
        "  agentray key delete\n",
    )
    return parser
