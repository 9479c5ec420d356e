"""Agent state, the concurrency slots and the change notifier that makes monitors event-driven."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agentray.model._types import Usage

from ._progress import ProgressFile

__all__ = [
    "ACTIVE",
    "SETTLED",
    "TERMINAL",
    "AgentState",
    "ChangeNotifier",
    "Slots",
]

TERMINAL = frozenset({"done", "failed", "cancelled"})
ACTIVE = frozenset({"queued", "running", "waiting", "blocked"})
# "settled" for a monitor: nothing more will happen without someone acting.
SETTLED = TERMINAL | {"blocked"}


@dataclass
class AgentState:
    agent_id: str
    run_id: str
    role: str  # orchestrator | worker | explorer | fixer
    title: str
    task: str
    depth: int
    parent_id: str | None
    model: str
    progress: ProgressFile
    depends_on: tuple[str, ...] = ()
    mitigates: str | None = None
    status: str = "queued"
    status_reason: str = ""
    summary: str | None = None
    blocker: str | None = None
    turns: int = 0
    usage: Usage = field(default_factory=Usage)
    cost_usd: float = 0.0
    created_at: float = field(default_factory=time.time)
    started_at: float | None = None
    ended_at: float | None = None
    # error-recovery bookkeeping: each blocker gets exactly one mitigation
    mitigated_by: str | None = None  # agent id of the mitigator, or "resume"
    mitigation_count: int = 0
    escalated: bool = False
    # runtime only
    task_handle: asyncio.Task[None] | None = None
    blocker_future: asyncio.Future[dict[str, Any]] | None = None
    pending_messages: list[str] = field(default_factory=list)  # e.g. guidance from resume_agent
    completed: bool = False

    @property
    def is_orchestrator(self) -> bool:
        return self.role == "orchestrator"

    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    @property
    def settled(self) -> bool:
        return self.status in SETTLED

    def brief(self) -> dict[str, Any]:
        """The per-agent object monitors return: status plus summary or blocker."""
        out: dict[str, Any] = {"agent_id": self.agent_id, "status": self.status}
        if self.status == "done":
            out["summary"] = self.summary or ""
        elif self.status in ("blocked", "failed"):
            out["blocker"] = self.blocker or self.status_reason
        elif self.status == "cancelled":
            out["summary"] = self.summary or self.status_reason or "cancelled"
        if self.status_reason and self.status in ("failed", "cancelled", "queued"):
            out["reason"] = self.status_reason
        return out


class Slots:
    """``max_concurrent`` agents talking to the model at once; waiting agents hold none."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._semaphore = asyncio.Semaphore(size)
        self.holders: set[str] = set()

    async def acquire(self, agent_id: str) -> None:
        await self._semaphore.acquire()
        self.holders.add(agent_id)

    def release(self, agent_id: str) -> None:
        if agent_id in self.holders:
            self.holders.discard(agent_id)
            self._semaphore.release()


class ChangeNotifier:
    """Wakes every waiter on each change: the base of await_agents and sleep (no polling)."""

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] = []
        self.generation = 0

    def notify(self) -> None:
        self.generation += 1
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
                await asyncio.wait_for(waiter, remaining)
            except TimeoutError:
                return predicate()
            finally:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
        return True
