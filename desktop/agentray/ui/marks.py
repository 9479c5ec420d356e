"""How a run's commands are confined, as the tray menu and the dashboard mark it.

A live run's marks come from its ``RunStarted`` event (the sandbox the engine really used), a past
run's from its journal row's config. A run without a sandbox is marked "no sandbox" (its commands
had the network too, and everything else); a sandboxed run that may reach the network, "network";
an ordinary sandboxed run carries no mark.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any

from agentray import events as ev
from agentray.sandbox import SandboxKind

__all__ = [
    "MARK_TIPS",
    "RunMark",
    "marks_from_config",
    "marks_from_event",
    "marks_suffix",
    "marks_text",
    "marks_tooltip",
    "run_marks",
]


class RunMark(StrEnum):
    NO_SANDBOX = "no sandbox"
    NETWORK = "network"


MARK_TIPS: dict[RunMark, str] = {
    RunMark.NO_SANDBOX: (
        "No sandbox: the agents' commands run with your full authority (your files, your keys, "
        "the network), outside the project folder too."
    ),
    RunMark.NETWORK: "Network allowed: the agents' commands may reach the network.",
}


def run_marks(*, sandboxed: bool, allow_network: bool) -> tuple[RunMark, ...]:
    if not sandboxed:
        return (RunMark.NO_SANDBOX,)
    return (RunMark.NETWORK,) if allow_network else ()


def marks_from_event(event: ev.RunStarted) -> tuple[RunMark, ...]:
    return run_marks(
        sandboxed=event.sandbox != SandboxKind.NONE, allow_network=bool(event.allow_network)
    )


def marks_from_config(config: Mapping[str, Any]) -> tuple[RunMark, ...]:
    """From a journal row's config (RunConfig.to_dict()); a missing key means the default."""
    return run_marks(
        sandboxed=bool(config.get("sandbox", True)),
        allow_network=bool(config.get("allow_network", False)),
    )


def marks_text(marks: Iterable[RunMark]) -> str:
    return ", ".join(mark.value for mark in marks)


def marks_suffix(marks: Iterable[RunMark]) -> str:
    """`` · no sandbox`` for a menu entry; empty for an unmarked run."""
    text = marks_text(marks)
    return f" · {text}" if text else ""


def marks_tooltip(marks: Iterable[RunMark]) -> str:
    return "\n".join(MARK_TIPS[mark] for mark in marks)
