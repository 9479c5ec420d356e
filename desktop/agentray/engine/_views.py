"""Frozen, read-only views of live runs, for the tray and anyone else who must not hold engine
objects: ``Engine.view()`` / ``Engine.run_view()`` copy what they need and keep nothing live."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from agentray.escalation import Escalation
from agentray.states import AgentStatus, RunStatus

from ._run import INTERRUPTED
from ._state import AgentRecord

if TYPE_CHECKING:
    from ._run import Run

__all__ = ["EngineView", "RunView", "view_of_run"]


@dataclass(frozen=True)
class RunView:
    run_id: str
    goal: str
    workspace: str
    live: bool  # its task runs in this process now
    status: RunStatus  # RUNNING while live, else its outcome
    summary: str
    cost_usd: float
    tokens: int
    agents: tuple[AgentRecord, ...]
    allow_network: bool
    sandboxed: bool

    def agent(self, agent_id: str) -> AgentRecord | None:
        return next((a for a in self.agents if a.agent_id == agent_id), None)

    def count(self, *statuses: AgentStatus) -> int:
        return sum(1 for a in self.agents if a.status in statuses)

    @property
    def started_at(self) -> float:
        return min((a.created_at for a in self.agents), default=0.0)


@dataclass(frozen=True)
class EngineView:
    runs: tuple[RunView, ...]
    escalations: tuple[Escalation, ...]

    def run(self, run_id: str) -> RunView | None:
        return next((r for r in self.runs if r.run_id == run_id), None)

    @property
    def live_runs(self) -> tuple[RunView, ...]:
        return tuple(r for r in self.runs if r.live)


def view_of_run(run: Run, *, live: bool) -> RunView:
    outcome = run.outcome
    if live:
        status, summary = RunStatus.RUNNING, ""
    elif outcome is not None:
        status, summary = outcome.status, outcome.summary
    else:
        status, summary = INTERRUPTED.status, INTERRUPTED.summary
    return RunView(
        run_id=run.run_id,
        goal=run.config.goal,
        workspace=run.config.workspace,
        live=live,
        status=status,
        summary=summary,
        cost_usd=run.cost_usd,
        tokens=run.tokens,
        agents=tuple(agent.record() for agent in run.agents.values()),
        allow_network=run.config.allow_network or not run.sandbox.confined,
        sandboxed=run.sandbox.confined,
    )
