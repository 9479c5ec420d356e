"""Reusable scripted agents for the engine tests.

A scripted agent is a list of turns (``Rule.turns``); a turn is a list of content blocks or a
function of the request. Functions run on the simulator's server threads.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from agentray.simulator import (
    Reply,
    Rule,
    ScriptedPolicy,
    SimRequest,
    ToolResultView,
    Turn,
    text,
    tool_use,
)

__all__ = [
    "ORCH",
    "Recorder",
    "blocks",
    "complete",
    "orchestrator",
    "policy",
    "result_of",
    "spawned_ids",
    "wait_for_files",
    "worker",
]

ORCH = "You are the orchestrator"

Blocks = list[dict[str, Any]]


def blocks(*b: dict[str, Any]) -> Blocks:
    return list(b)


def complete(summary: str = "done") -> Blocks:
    return [tool_use("complete", summary=summary)]


def spawned_ids(req: SimRequest) -> list[str]:
    """Agent ids from the successful spawn_agent results of the conversation, in order."""
    return [
        r.json["agent_id"]
        for r in req.tool_results_named("spawn_agent")
        if not r.is_error and r.json
    ]


def result_of(req: SimRequest, name: str, index: int = -1) -> ToolResultView:
    """The ``index``-th result of tool ``name`` in the conversation (default: the last)."""
    found = req.tool_results_named(name)
    if not found:
        raise AssertionError(f"no {name} result in the conversation")
    return found[index]


def policy(*rules: Rule) -> ScriptedPolicy:
    return ScriptedPolicy(list(rules))


def orchestrator(*turns: Turn) -> Rule:
    return Rule(match=ORCH, turns=list(turns))


def worker(marker: str, *turns: Turn) -> Rule:
    return Rule(match=marker, turns=list(turns))


class Recorder:
    """Thread-safe enough notebook for turn functions (server threads) to leave findings in."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.times: dict[str, float] = {}

    def note(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.times[key] = time.time()

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __contains__(self, key: str) -> bool:
        return key in self.data


def recording(
    rec: Recorder, key: str, turn: Callable[[SimRequest], Blocks | Reply]
) -> Callable[[SimRequest], Blocks | Reply]:
    """Wrap a turn: note the request (its last tool results) under ``key`` before answering."""

    def fn(req: SimRequest) -> Blocks | Reply:
        rec.note(key, req)
        return turn(req)

    return fn


def wait_for_files(paths: Sequence[Path], timeout: float = 5.0) -> bool:
    """Block (a server thread) until every path exists and is non-empty."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(p.exists() and p.stat().st_size > 0 for p in paths):
            return True
        time.sleep(0.02)
    return False


def say(s: str) -> Blocks:
    return [text(s)]


__all__ += ["recording", "say"]
