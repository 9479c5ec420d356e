"""Frozen row types the journal hands out, and their construction from sqlite3 rows."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from typing import Any

__all__ = [
    "AgentRow",
    "EscalationRow",
    "RunRow",
    "ToolCallRow",
    "agent_from_row",
    "escalation_from_row",
    "run_from_row",
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
    kind: str
    question: str
    context: str
    options: tuple[str, ...]
    call_id: str | None
    created_at: float
    answered_at: float | None
    answer: str | None
    choice: str | None
    answered_by: str | None


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


def run_from_row(r: sqlite3.Row) -> RunRow:
    return RunRow(
        run_id=r["run_id"],
        goal=r["goal"],
        workspace=r["workspace"],
        status=r["status"],
        config=json.loads(r["config"]),
        pid=r["pid"],
        started_at=r["started_at"],
        ended_at=r["ended_at"],
        summary=r["summary"],
        outcome=r["outcome"],
        cost_usd=float(r["cost_usd"]),
        tokens=int(r["tokens"]),
        stop_requested=bool(r["stop_requested"]),
    )


def agent_from_row(r: sqlite3.Row) -> AgentRow:
    return AgentRow(
        run_id=r["run_id"],
        agent_id=r["agent_id"],
        parent_id=r["parent_id"],
        role=r["role"],
        title=r["title"],
        task=r["task"],
        depth=r["depth"],
        depends_on=tuple(json.loads(r["depends_on"])),
        mitigates=r["mitigates"],
        status=r["status"],
        status_reason=r["status_reason"],
        summary=r["summary"],
        blocker=r["blocker"],
        result=r["result"],
        turns=r["turns"],
        mitigated_by=r["mitigated_by"],
        mitigation_count=r["mitigation_count"],
        escalated=bool(r["escalated"]),
        model=r["model"],
        created_at=r["created_at"],
        started_at=r["started_at"],
        ended_at=r["ended_at"],
        input_tokens=r["input_tokens"],
        output_tokens=r["output_tokens"],
        cache_creation_tokens=r["cache_creation_tokens"],
        cache_read_tokens=r["cache_read_tokens"],
        cost_usd=float(r["cost_usd"]),
    )


def escalation_from_row(r: sqlite3.Row) -> EscalationRow:
    return EscalationRow(
        escalation_id=r["escalation_id"],
        run_id=r["run_id"],
        agent_id=r["agent_id"],
        kind=r["kind"],
        question=r["question"],
        context=r["context"],
        options=tuple(json.loads(r["options"])),
        call_id=r["call_id"],
        created_at=r["created_at"],
        answered_at=r["answered_at"],
        answer=r["answer"],
        choice=r["choice"],
        answered_by=r["answered_by"],
    )


def tool_call_from_row(r: sqlite3.Row) -> ToolCallRow:
    return ToolCallRow(
        run_id=r["run_id"],
        agent_id=r["agent_id"],
        call_id=r["call_id"],
        name=r["name"],
        input=json.loads(r["input"]),
        result=None if r["result"] is None else json.loads(r["result"]),
        is_error=bool(r["is_error"]),
        started_at=r["started_at"],
        finished_at=r["finished_at"],
    )
