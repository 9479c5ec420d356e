"""The recovery ledger: how an agent ends, what happens to its blocker, and the person's answers.

One owner for the rules the seed calls "try each blocker once, then ask":

- an agent ends one way: ``complete`` (done), ``fail`` or ``cancel`` — each records the end,
  tells the agent it mitigated, and escalates what is left to the person;
- a blocker gets exactly one mitigation (a fixer or ``resume_agent``); a second failure, a failed
  mitigation, or a block after the mitigation escalates to the person, once;
- escalations wait for an ``Answer`` that names an option by id.

Tool handlers and the agent loop call these methods; they never touch each other's state.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import psutil

from agentray import events as ev
from agentray.errors import BadInputError, ToolError
from agentray.escalation import (
    BLOCKER_OPTIONS_FAILED,
    BLOCKER_OPTIONS_WAITING,
    Answer,
    Escalation,
    EscalationKind,
    EscalationOption,
    OptionId,
    options_to_json,
)
from agentray.states import ACTIVE, TERMINAL, AgentStatus, RunStatus

from ._state import AgentState

if TYPE_CHECKING:
    from ._run import Run

__all__ = ["AgentEnded", "RecoveryLedger"]

log = logging.getLogger(__name__)


class AgentEnded(Exception):
    """Raised inside an agent's task once its end is recorded (cancelled by the person, its run
    stopping): the task returns quietly. Agents are never ended by a hand-made CancelledError."""


class RecoveryLedger:
    def __init__(self, run: Run) -> None:
        self._run = run
        self._pending: dict[str, Escalation] = {}
        self._answers: dict[str, asyncio.Future[Answer]] = {}

    # ------------------------------------------------------------------ how an agent ends
    def record_result(self, agent: AgentState, summary: str) -> None:
        """``complete`` / ``finish`` was called: journal the result; the loop ends the agent after
        this turn (its tool results must reach the transcript first)."""
        run = self._run
        agent.summary = summary
        agent.runtime.completed = True
        run.journal.update_agent(run.run_id, agent.agent_id, summary=summary, result=summary)
        run.progress(agent, "RESULT", summary)

    def complete(self, agent: AgentState, summary: str | None = None) -> None:
        """The agent is done; a mitigator's result goes to the agent it unblocks."""
        if summary is not None:
            self.record_result(agent, summary)
        self._run.set_status(agent, AgentStatus.DONE)
        target = self._run.agents.get(agent.mitigates or "")
        if target is not None and target.runtime.waiting_on_blocker:
            assert target.runtime.blocker_future is not None
            target.runtime.blocker_future.set_result(
                {
                    "resolution": agent.summary or "",
                    "from": agent.agent_id,
                    "mitigated_by": agent.agent_id,
                }
            )

    def fail(self, agent: AgentState, reason: str) -> None:
        """The agent failed: its failure is a blocker (one mitigation, then the person)."""
        if agent.status in TERMINAL:
            return
        run = self._run
        agent.blocker = reason
        run.journal.update_agent(run.run_id, agent.agent_id, blocker=reason)
        run.progress(agent, "BLOCKER", f"failed: {reason}")
        run.set_status(agent, AgentStatus.FAILED, reason)
        if agent.is_orchestrator:
            return
        if agent.mitigates:
            target = run.agents.get(agent.mitigates)
            if target is not None and not target.escalated:
                self._escalate_blocker(
                    target, f"its mitigation {agent.agent_id} failed: {agent.blocker}"
                )
        elif agent.mitigation_count >= 1 and not agent.escalated:
            self._escalate_blocker(
                agent, f"it failed again after its one mitigation: {agent.blocker}"
            )

    def cancel_unstarted(self, agent: AgentState, reason: str) -> None:
        """A queued agent that will never start (a dependency failed or was cancelled)."""
        run = self._run
        agent.summary = f"cancelled: {reason}"
        run.journal.update_agent(run.run_id, agent.agent_id, summary=agent.summary)
        run.progress(agent, "BLOCKER", reason)
        run.set_status(agent, AgentStatus.CANCELLED, reason)

    async def cancel(self, agent_id: str, reason: str) -> int:
        """Cancel an agent, its helpers and their process trees; returns processes killed."""
        run = self._run
        targets = [run.agents[agent_id], *run.descendants(agent_id)]
        # counted before anything is signalled: the agents' own cleanup races the kill below
        killed = sum(
            _tree_size(pid) for target in targets for pid in run.processes.pids(target.agent_id)
        )
        for target in targets:
            if target.status not in ACTIVE:
                continue
            handle = target.runtime.task_handle
            run.set_status(target, AgentStatus.CANCELLED, reason)
            if not target.summary:
                target.summary = f"cancelled: {reason}"
                run.journal.update_agent(run.run_id, target.agent_id, summary=target.summary)
            if handle is not None and not handle.done() and handle is not asyncio.current_task():
                handle.cancel()
            if target.runtime.waiting_on_blocker:
                assert target.runtime.blocker_future is not None
                target.runtime.blocker_future.cancel()
            await run.processes.kill_owner(target.agent_id)
        return killed

    def restart(self, agent: AgentState, message: str) -> None:
        """A failed agent starts again with a message (guidance, the person's answer)."""
        agent.runtime.pending_messages.append(message)
        self._run.set_status(agent, AgentStatus.QUEUED, "restarted")
        self._run.start_agent(agent, resumed=True)

    # ------------------------------------------------------------------ blockers and mitigations
    def mitigation_target(self, agent_id: str) -> AgentState:
        """The blocked or failed agent a mitigation is for; refuses a second mitigation."""
        target = self._run.agents.get(agent_id)
        if target is None:
            raise ToolError(f"unknown agent {agent_id}")
        if target.mitigation_count >= 1 or target.escalated:
            raise ToolError(
                f"second mitigation refused: {agent_id} already had its one mitigation ({target.mitigated_by}); "
                "the engine escalates it to the human"
            )
        if target.status not in (AgentStatus.BLOCKED, AgentStatus.FAILED):
            raise ToolError(
                f"{agent_id} is not a blocker (status {target.status}); only blocked or failed agents are mitigated"
            )
        return target

    def record_mitigation(self, target: AgentState, by: str) -> None:
        run = self._run
        target.mitigation_count += 1
        target.mitigated_by = by
        run.journal.update_agent(
            run.run_id, target.agent_id, mitigated_by=by, mitigation_count=target.mitigation_count
        )

    def guide(self, target: AgentState, by: AgentState, message: str) -> None:
        """``resume_agent``: the blocker's one mitigation is guidance from ``by``."""
        self.record_mitigation(target, f"resume:{by.agent_id}")
        if target.status == AgentStatus.BLOCKED and target.runtime.waiting_on_blocker:
            assert target.runtime.blocker_future is not None
            target.runtime.blocker_future.set_result({"resolution": message, "from": by.agent_id})
        else:
            self.restart(target, f"[guidance from {by.agent_id}] {message}")

    def unhandled(self, agent: AgentState) -> bool:
        """A blocker its parent has to act on (neither mitigated nor escalated yet)."""
        return (
            agent.status == AgentStatus.BLOCKED
            and agent.mitigation_count == 0
            and not agent.escalated
        )

    def unmitigated_failures(self) -> list[AgentState]:
        """Failed workers that had neither a mitigation nor the person's decision (a failed
        mitigator is handled when the agent it mitigated went to the person)."""

        def handled(agent: AgentState) -> bool:
            if agent.mitigation_count >= 1 or agent.escalated:
                return True
            target = self._run.agents.get(agent.mitigates or "")
            return target is not None and target.escalated

        return [
            a
            for a in self._run.agents.values()
            if not a.is_orchestrator and a.status == AgentStatus.FAILED and not handled(a)
        ]

    async def block(self, agent: AgentState, description: str) -> dict[str, Any]:
        """``report_blocker``: wait for the one mitigation; a block after it goes to the person."""
        run = self._run
        agent.blocker = description
        run.journal.update_agent(run.run_id, agent.agent_id, blocker=description)
        run.progress(agent, "BLOCKER", description)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        agent.runtime.blocker_future = future
        run.set_status(agent, AgentStatus.BLOCKED, description[:200])
        if agent.mitigation_count >= 1 or agent.escalated:
            self._mark_escalated(agent)
            run.notice(
                f"{agent.agent_id} blocked again after its mitigation; escalated to the human",
                level="warning",
            )
            await self._ask_about_blocker(
                agent,
                f"is blocked again after its one mitigation: {description}",
                BLOCKER_OPTIONS_WAITING,
            )
            if agent.status == AgentStatus.CANCELLED or run.outcome is not None:
                raise AgentEnded
        try:
            resolution = await future
        finally:
            agent.runtime.blocker_future = None
        run.progress(agent, "UPDATE", f"unblocked by {resolution.get('from', '?')}")
        return resolution

    def _mark_escalated(self, agent: AgentState) -> None:
        agent.escalated = True
        self._run.journal.update_agent(self._run.run_id, agent.agent_id, escalated=True)

    def _escalate_blocker(self, agent: AgentState, why: str) -> None:
        """Automatic escalation of a blocker whose one mitigation is used up (in the background:
        the agent that noticed goes on)."""
        self._mark_escalated(agent)
        options = (
            BLOCKER_OPTIONS_WAITING if agent.runtime.waiting_on_blocker else BLOCKER_OPTIONS_FAILED
        )
        self._run.notice(f"{agent.agent_id} escalated to the human: {why}", level="warning")
        self._run.in_background(
            self._ask_about_blocker(agent, why, options), name=f"escalation-{agent.agent_id}"
        )

    async def _ask_about_blocker(
        self, agent: AgentState, why: str, options: tuple[EscalationOption, ...]
    ) -> None:
        answer = await self.ask(
            agent,
            kind=EscalationKind.BLOCKER,
            question=f"Agent {agent.agent_id} ({agent.title}) {why}. How should it proceed?",
            context=(
                f"Task: {agent.task}\n\nBlocker: {agent.blocker or agent.status_reason}\n\n"
                f"Mitigation: {agent.mitigated_by or 'none'}"
            ),
            options=options,
        )
        run = self._run
        run.notice(f"the human answered about {agent.agent_id}: {answer.option_id or answer.text}")
        if answer.option_id == OptionId.STOP_RUN:
            run.request_stop(
                RunStatus.CANCELLED, f"stopped by the human at the escalation of {agent.agent_id}"
            )
        elif answer.option_id in (OptionId.CANCEL_AGENT, OptionId.SKIP):
            if agent.status in ACTIVE:
                await self.cancel(agent.agent_id, "cancelled by the human")
        elif agent.runtime.waiting_on_blocker:
            assert agent.runtime.blocker_future is not None
            agent.runtime.blocker_future.set_result(
                {
                    "resolution": answer.text,
                    "from": "human",
                    "choice": _label(options, answer.option_id),
                }
            )
        elif agent.status == AgentStatus.FAILED and answer.option_id == OptionId.RETRY:
            self.restart(agent, f"[human] {answer.text}")

    # ------------------------------------------------------------------ the person
    def pending(self) -> list[Escalation]:
        return [
            self._pending[i]
            for i, f in self._answers.items()
            if not f.done() and i in self._pending
        ]

    async def ask(
        self,
        agent: AgentState,
        *,
        kind: EscalationKind,
        question: str,
        context: str,
        options: tuple[EscalationOption, ...],
        call_id: str | None = None,
        existing_id: str | None = None,
    ) -> Answer:
        """Ask the person; the agent waits (holding no slot) until an engine command answers."""
        run = self._run
        run.slots.release(agent.agent_id)
        if agent.status == AgentStatus.RUNNING:
            run.set_status(agent, AgentStatus.WAITING, f"escalation: {question[:80]}")
        escalation_id = existing_id or run.journal.next_escalation_id(run.run_id)
        escalation = Escalation(
            escalation_id, run.run_id, agent.agent_id, kind, question, context, options,
            created_at=time.time(), agent_title=agent.title,
        )  # fmt: skip
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._pending[escalation_id] = escalation
        self._answers[escalation_id] = future
        if existing_id is None:
            run.journal.create_escalation(
                run.run_id,
                escalation_id,
                agent_id=agent.agent_id,
                kind=kind.value,
                question=question,
                context=context,
                options=options_to_json(options),
                call_id=call_id,
            )
        run.journal.add_event(
            run.run_id, "escalation_raised", {"escalation_id": escalation_id, "kind": kind.value}
        )
        run.publish(
            ev.EscalationRaised(
                run_id=run.run_id,
                escalation_id=escalation_id,
                agent_id=agent.agent_id,
                kind=kind,
                question=question,
                context=context,
                options=escalation.labels,
                choices=options,
            )
        )
        try:
            return await future
        finally:
            self._pending.pop(escalation_id, None)
            self._answers.pop(escalation_id, None)

    def answer(self, escalation_id: str, answer: Answer) -> bool:
        """False when the escalation is not pending here (answered, or its run ended)."""
        escalation = self._pending.get(escalation_id)
        future = self._answers.get(escalation_id)
        if escalation is None or future is None or future.done():
            return False
        option = escalation.option(answer.option_id)
        if answer.option_id is not None and option is None:
            known = ", ".join(o.option_id for o in escalation.options)
            raise BadInputError(
                f"{escalation_id} has no option {answer.option_id!r} (options: {known})"
            )
        run = self._run
        reply = answer.for_model(escalation)
        run.journal.answer_escalation(
            escalation_id,
            answer=reply["answer"],
            choice=reply["choice"],
            answered_by=answer.answered_by.value,
        )
        run.journal.add_event(
            run.run_id,
            "escalation_answered",
            {
                "escalation_id": escalation_id,
                "option_id": answer.option_id,
                "answered_by": answer.answered_by.value,
            },
        )
        run.publish(
            ev.EscalationAnswered(
                run_id=run.run_id,
                escalation_id=escalation_id,
                agent_id=escalation.agent_id,
                answer=reply["answer"],
                choice=reply["choice"],
                option_id=answer.option_id,
                answered_by=answer.answered_by.value,
            )
        )
        future.set_result(answer)
        return True

    def cancel_pending(self) -> None:
        """The run ended: nobody waits for these answers any more."""
        for future in self._answers.values():
            if not future.done():
                future.cancel()


def _label(options: tuple[EscalationOption, ...], option_id: str | None) -> str | None:
    return next((o.label for o in options if o.option_id == option_id), None)


def _tree_size(pid: int) -> int:
    try:
        return 1 + len(psutil.Process(pid).children(recursive=True))
    except psutil.Error:
        return 0
