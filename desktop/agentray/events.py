"""Typed, frozen events the engine publishes; the CLI and the tray only listen to these.

Every event carries the ``run_id`` it belongs to and a wall-clock ``ts``. ``to_dict`` gives the
JSON-lines form printed by ``agentray run --json`` (``{"type": "agent_status", ...}``).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from agentray.escalation import EscalationOption

__all__ = [
    "AgentProgress",
    "AgentSpawned",
    "AgentStatusChanged",
    "BuildFinished",
    "EscalationAnswered",
    "EscalationRaised",
    "Event",
    "GuardStateChanged",
    "ModelRetrying",
    "Notice",
    "RunFinished",
    "RunStarted",
    "ToolCallFinished",
    "ToolCallStarted",
    "UsageUpdated",
]


@dataclass(frozen=True, kw_only=True)
class Event:
    type: ClassVar[str] = "event"
    run_id: str
    ts: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return {"type": self.type, **data}


@dataclass(frozen=True, kw_only=True)
class RunStarted(Event):
    type: ClassVar[str] = "run_started"
    goal: str
    workspace: str
    model: str
    build_command: str | None
    resumed: bool = False
    sandbox: str = "none"  # SandboxKind value: bubblewrap | seatbelt | none
    allow_network: bool = False  # commands may reach the network (always so without a sandbox)


@dataclass(frozen=True, kw_only=True)
class RunFinished(Event):
    """status: succeeded | failed | cancelled | interrupted."""

    type: ClassVar[str] = "run_finished"
    status: str
    summary: str
    cost_usd: float


@dataclass(frozen=True, kw_only=True)
class AgentSpawned(Event):
    type: ClassVar[str] = "agent_spawned"
    agent_id: str
    parent_id: str | None
    role: str
    title: str
    depth: int
    depends_on: tuple[str, ...] = ()
    mitigates: str | None = None
    progress_file: str = ""


@dataclass(frozen=True, kw_only=True)
class AgentStatusChanged(Event):
    """status: queued | running | waiting | blocked | done | failed | cancelled."""

    type: ClassVar[str] = "agent_status"
    agent_id: str
    status: str
    previous: str
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class AgentProgress(Event):
    """A line written to the agent's progress file; kind: UPDATE | BLOCKER | RESULT."""

    type: ClassVar[str] = "agent_progress"
    agent_id: str
    kind: str
    note: str


@dataclass(frozen=True, kw_only=True)
class ToolCallStarted(Event):
    type: ClassVar[str] = "tool_started"
    agent_id: str
    call_id: str
    tool: str
    summary: str


@dataclass(frozen=True, kw_only=True)
class ToolCallFinished(Event):
    type: ClassVar[str] = "tool_finished"
    agent_id: str
    call_id: str
    tool: str
    is_error: bool
    duration_s: float


@dataclass(frozen=True, kw_only=True)
class UsageUpdated(Event):
    type: ClassVar[str] = "usage"
    agent_id: str
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int
    agent_cost_usd: float
    run_cost_usd: float
    run_tokens: int


@dataclass(frozen=True, kw_only=True)
class EscalationRaised(Event):
    """kind: an EscalationKind value. ``options`` are the labels; ``choices`` the same options
    with their ids, which answers name."""

    type: ClassVar[str] = "escalation_raised"
    escalation_id: str
    agent_id: str
    kind: str
    question: str
    context: str
    options: tuple[str, ...]
    choices: tuple[EscalationOption, ...] = ()


@dataclass(frozen=True, kw_only=True)
class EscalationAnswered(Event):
    """answered_by: human | policy:deny | policy:fail | ..."""

    type: ClassVar[str] = "escalation_answered"
    escalation_id: str
    agent_id: str
    answer: str
    choice: str | None
    answered_by: str
    option_id: str | None = None


@dataclass(frozen=True, kw_only=True)
class BuildFinished(Event):
    type: ClassVar[str] = "build_finished"
    agent_id: str
    passed: bool
    exit_code: int | None
    duration_s: float
    failed_in_a_row: int


@dataclass(frozen=True, kw_only=True)
class GuardStateChanged(Event):
    """Process-wide: run_id is "" for guard events."""

    type: ClassVar[str] = "guard"
    saturated: bool
    cpu_percent: float
    memory_available_percent: float
    reason: str


@dataclass(frozen=True, kw_only=True)
class ModelRetrying(Event):
    type: ClassVar[str] = "model_retry"
    agent_id: str | None
    attempt: int
    delay_s: float
    reason: str


@dataclass(frozen=True, kw_only=True)
class Notice(Event):
    """Anything worth a line in the log: level is info | warning | error."""

    type: ClassVar[str] = "notice"
    level: str
    message: str
    agent_id: str | None = None
