"""The words the engine, the journal, the CLI and the tray share: statuses and roles.

They are ``StrEnum``s, so they are equal to (and journaled as) their plain values: ``"done"``,
``"worker"``. Code compares against the members, never against labels shown to people.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ACTIVE",
    "SETTLED",
    "TERMINAL",
    "WORKER_ROLES",
    "AgentStatus",
    "Role",
    "RunStatus",
]


class AgentStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"  # on a monitor, a tool that waits, or the person
    BLOCKED = "blocked"  # reported a blocker, waits for its mitigation
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class RunStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"  # its process stopped or died; resumable


class Role(StrEnum):
    ORCHESTRATOR = "orchestrator"
    WORKER = "worker"  # edits code
    EXPLORER = "explorer"  # reads and reports
    FIXER = "fixer"  # repairs a failure (a blocker's mitigation, a failing build)


TERMINAL: frozenset[AgentStatus] = frozenset(
    {AgentStatus.DONE, AgentStatus.FAILED, AgentStatus.CANCELLED}
)
ACTIVE: frozenset[AgentStatus] = frozenset(
    {AgentStatus.QUEUED, AgentStatus.RUNNING, AgentStatus.WAITING, AgentStatus.BLOCKED}
)
# "settled" for a monitor: nothing more will happen without someone acting.
SETTLED: frozenset[AgentStatus] = TERMINAL | {AgentStatus.BLOCKED}
# what spawn_agent may create
WORKER_ROLES: tuple[Role, ...] = (Role.WORKER, Role.EXPLORER, Role.FIXER)
