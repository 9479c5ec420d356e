"""Agent state, the concurrency slots and the change notifier that makes monitors event-driven."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agentray.model._types import Usage
from agentray.states import ACTIVE, SETTLED, TERMINAL, AgentStatus, Role

from ._progress import ProgressFile

__all__ = [
    "ACTIVE",
    "SETTLED",
    "TERMINAL",
    "AgentRecord",
    "AgentRuntime",
    "AgentState",
    "ChangeNotifier",
    "Slots",
]


@dataclass(frozen=True)
class AgentRecord:
    """An agent as data: frozen, serialisable (``to_dict``), holding no runtime handle. The UI
    reads these; another executor would ship them across the wire."""

    agent_id: str
    run_id: str
    role: Role
    title: str
    task: str
    depth: int
    parent_id: str | None
    model: str
    progress_file: str
    depends_on: tuple[str, ...]
    mitigates: str | None
    status: AgentStatus
    status_reason: str
    summary: str | None
    blocker: str | None
    turns: int
    input_tokens: int
    output_tokens: int
    cache_creation_tokens: int
    cache_read_tokens: int
    cost_usd: float
    created_at: float
    started_at: float | None
    ended_at: float | None
    mitigated_by: str | None
    mitigation_count: int
    escalated: bool

    @property
    def total_tokens(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_creation_tokens
            + self.cache_read_tokens
        )

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class AgentRuntime:
    """What exists only while an agent runs in this process (never journaled, never shipped)."""

    task_handle: asyncio.Task[None] | None = None
    blocker_future: asyncio.Future[dict[str, Any]] | None = None
    pending_messages: list[str] = field(default_factory=list)  # e.g. guidance from resume_agent
    completed: bool = False  # called complete/finish; the loop ends it after this turn

    @property
    def waiting_on_blocker(self) -> bool:
        return self.blocker_future is not None and not self.blocker_future.done()


@dataclass
class AgentState:
    agent_id: str
    run_id: str
    role: Role
    title: str
    task: str
    depth: int
    parent_id: str | None
    model: str
    progress: ProgressFile
    depends_on: tuple[str, ...] = ()
    mitigates: str | None = None
    status: AgentStatus = AgentStatus.QUEUED
    status_reason: str = ""
    summary: str | None = None
    blocker: str | None = None
    turns: int = 0
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    ended_at: float | None = None
    # error recovery (RecoveryLedger): each blocker gets exactly one mitigation. mitigated_by is
    # the mitigating agent's id, or "resume:<agent id>" when resume_agent gave guidance.
    mitigated_by: str | None = None
    mitigation_count: int = 0
    escalated: bool = False
    runtime: AgentRuntime = field(default_factory=AgentRuntime, repr=False, compare=False)

    @property
    def is_orchestrator(self) -> bool:
        return self.role == Role.ORCHESTRATOR

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def settled(self) -> bool:
        return self.status in SETTLED

    def record(self) -> AgentRecord:
        return AgentRecord(
            agent_id=self.agent_id,
            run_id=self.run_id,
            role=self.role,
            title=self.title,
            task=self.task,
            depth=self.depth,
            parent_id=self.parent_id,
            model=self.model,
            progress_file=self.progress.relative_path,
            depends_on=self.depends_on,
            mitigates=self.mitigates,
            status=self.status,
            status_reason=self.status_reason,
            summary=self.summary,
            blocker=self.blocker,
            turns=self.turns,
            input_tokens=self.usage.input_tokens,
            output_tokens=self.usage.output_tokens,
            cache_creation_tokens=self.usage.cache_creation_input_tokens,
            cache_read_tokens=self.usage.cache_read_input_tokens,
            cost_usd=self.cost_usd,
            created_at=self.created_at,
            started_at=self.started_at,
            ended_at=self.ended_at,
            mitigated_by=self.mitigated_by,
            mitigation_count=self.mitigation_count,
            escalated=self.escalated,
        )

    def brief(self) -> dict[str, Any]:
        """The per-agent object monitors return: status plus summary or blocker."""
        out: dict[str, Any] = {"agent_id": self.agent_id, "status": self.status.value}
        if self.status == AgentStatus.DONE:
            out["summary"] = self.summary or ""
        elif self.status in (AgentStatus.BLOCKED, AgentStatus.FAILED):
            out["blocker"] = self.blocker or self.status_reason
        elif self.status == AgentStatus.CANCELLED:
            out["summary"] = self.summary or self.status_reason or "cancelled"
        if self.status_reason and self.status in (
            AgentStatus.FAILED,
            AgentStatus.CANCELLED,
            AgentStatus.QUEUED,
        ):
            out["reason"] = self.status_reason
        return out


class Slots:
    """``max_concurrent`` workers talking to the model (or running their turn's tools) at once.

    Waiting agents hold none, and the orchestrator needs none: its turns are short and it is
    what hands out the work, so it never queues behind the workers it coordinates. A freed slot
    goes to the waiter with the longest chain of agents depending on it (critical path first),
    then to the one that asked first.
    """

    def __init__(self, size: int, priority: Callable[[str], int] | None = None) -> None:
        self.size = size
        self.holders: set[str] = set()
        self._priority = priority or (lambda _agent_id: 0)
        self._waiters: list[tuple[int, str, asyncio.Future[None]]] = []  # (arrival, agent, granted)
        self._arrivals = 0
        self.exempt: set[str] = set()  # agents that never take a slot (the orchestrator)
        self.started: set[str] = set()  # agents that had a slot before
        self._hand_over_pending = False

    async def acquire(self, agent_id: str) -> None:
        if agent_id in self.exempt or agent_id in self.holders:
            return
        loop = asyncio.get_running_loop()
        granted: asyncio.Future[None] = loop.create_future()
        self._arrivals += 1
        entry = (self._arrivals, agent_id, granted)
        self._waiters.append(entry)
        # Hand out on the next tick, not at once: agents that become ready in the same moment
        # (a batch of spawns, a dependency done) compete by priority, not by who asked first.
        if not self._hand_over_pending:
            self._hand_over_pending = True
            loop.call_soon(self._hand_over)
        try:
            await granted
        except asyncio.CancelledError:
            if entry in self._waiters:
                self._waiters.remove(entry)
            elif granted.done() and not granted.cancelled():
                self.release(agent_id)  # handed over in the same moment it was cancelled
            raise

    def release(self, agent_id: str) -> None:
        if agent_id not in self.holders:
            return
        self.holders.discard(agent_id)
        self._hand_over()

    def _hand_over(self) -> None:
        self._hand_over_pending = False
        free = self.size - len(self.holders)
        if free <= 0 or not self._waiters:
            return
        self._waiters = [w for w in self._waiters if not w[2].done()]  # cancelled while waiting
        chosen = self._waiters
        if len(chosen) > free:
            # ranked once per hand-over (a grant changes no one's rank): a rank walks the
            # dependents, and 60 agents spawned at once made 60 hand-overs of 60 ranks each
            chosen = sorted(chosen, key=self._rank, reverse=True)[:free]
        for entry in list(chosen):
            self._waiters.remove(entry)
            _, agent_id, granted = entry
            self.holders.add(agent_id)
            self.started.add(agent_id)
            granted.set_result(None)

    def _rank(self, waiter: tuple[int, str, asyncio.Future[None]]) -> tuple[int, bool, int]:
        arrival, agent_id, _ = waiter
        # longest chain first; then an agent already under way (finish what is started); then
        # the one that asked first
        return (self._priority(agent_id), agent_id in self.started, -arrival)

    @property
    def waiting(self) -> list[str]:
        return [agent_id for _, agent_id, granted in self._waiters if not granted.done()]


class ChangeNotifier:
    """Wakes every waiter on each change: the base of await_agents and sleep (no polling)."""

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] = []

    def notify(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait_for(self, predicate: Callable[[], bool], timeout_s: float | None) -> bool:
        """Wait until ``predicate()`` holds; False when the timeout came first."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout_s is None else loop.time() + timeout_s
        while not predicate():
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return False
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.append(waiter)
            try:
                # not asyncio.wait_for: on Python 3.11 it swallows a cancellation that arrives
                # together with the change (it returns the done waiter), and Stop would hang
                async with asyncio.timeout(remaining):
                    await waiter
            except TimeoutError:
                return predicate()
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        return True
