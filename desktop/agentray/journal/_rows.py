"""Frozen row types the journal hands out, and their construction from sqlite3 rows."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from agentray.escalation import Escalation, EscalationKind, EscalationOption, options_from_json

__all__ = [
    "AgentRow",
    "EscalationRow",
    "RunRow",
    "SnapshotRow",
    "ToolCallRow",
    "agent_from_row",
    "escalation_from_row",
    "run_from_row",
    "snapshot_from_row",
    "tool_call_from_row",
]


@dataclass(frozen=True)
class RunRow:
    run_id: str
    goal: str
    workspace: str
    status: str
    config: dict[str, Any]
    pid: int | None
    started_at: float
    ended_at: float | None
    summary: str | None
    outcome: str | None
    cost_usd: float
    tokens: int
    stop_requested: bool


@dataclass(frozen=True)
class AgentRow:
    run_id: str
    agent_id: str
    parent_id: str | None
    role: str
    title: str
    task: str
    depth: int
    depends_on: tuple[str, ...]
    mitigates: str | None
    status: str
    status_reason: str | None
    summary: str | None
    blocker: str | None
    result: str | None
    turns: int
    mitigated_by: str | None
    mitigation_count: int
    escalated: bool
    model: str
    created_at: float
    started_at: float | None
    ended_at: float | None
    input_tokens: int
    output_tokens: int
    cache_creation_tokens: int
    cache_read_tokens: int
    cost_usd: float


@dataclass(frozen=True)
class EscalationRow:
    escalation_id: str
    run_id: str
    agent_id: str
    kind: EscalationKind
    question: str
    context: str
    options: tuple[EscalationOption, ...]
    call_id: str | None
    created_at: float
    answered_at: float | None
    answer: str | None
    choice: str | None
    answered_by: str | None

    def escalation(self) -> Escalation:
        return Escalation(
            self.escalation_id, self.run_id, self.agent_id, self.kind, self.question, self.context,
            self.options, created_at=self.created_at,
        )  # fmt: skip


@dataclass(frozen=True)
class ToolCallRow:
    run_id: str
    agent_id: str
    call_id: str
    name: str
    input: dict[str, Any]
    result: dict[str, Any] | None
    is_error: bool
    started_at: float
    finished_at: float | None


_T = TypeVar("_T")


def _build(cls: type[_T], r: sqlite3.Row, **convert: Callable[[Any], Any]) -> _T:
    """A row dataclass from a sqlite3 row whose columns carry the field names."""
    values = {f.name: r[f.name] for f in fields(cls)}  # type: ignore[arg-type]
    for name, conversion in convert.items():
        values[name] = conversion(values[name])
    return cls(**values)


def _json_or_none(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _json_tuple(text: str) -> tuple[Any, ...]:
    return tuple(json.loads(text))


def run_from_row(r: sqlite3.Row) -> RunRow:
    return _build(RunRow, r, config=json.loads, cost_usd=float, tokens=int, stop_requested=bool)


def agent_from_row(r: sqlite3.Row) -> AgentRow:
    return _build(AgentRow, r, depends_on=_json_tuple, escalated=bool, cost_usd=float)


def escalation_from_row(r: sqlite3.Row) -> EscalationRow:
    return _build(
        EscalationRow, r, options=lambda text: options_from_json(json.loads(text)), kind=_kind
    )


def _kind(value: str) -> EscalationKind:
    return EscalationKind(value)


@dataclass(frozen=True)
class SnapshotRow:
    run_id: str
    seq: int
    commit_id: str
    parent_id: str | None  # the snapshot before it (None: the run's first)
    agent_id: str | None  # None: the run's base, or the person's undo
    call_id: str | None
    tool: str  # base | resume | write_file | edit_file | run_command | run_build | claimed | undo
    paths: tuple[str, ...]  # what changed since the parent
    created_at: float


def snapshot_from_row(r: sqlite3.Row) -> SnapshotRow:
    return _build(SnapshotRow, r, paths=_json_tuple)


def tool_call_from_row(r: sqlite3.Row) -> ToolCallRow:
    return _build(ToolCallRow, r, input=json.loads, result=_json_or_none, is_error=bool)
