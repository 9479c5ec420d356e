"""The in-process agent runner: wait for dependencies and room, then model turn, tools, repeat.

``InProcessRunner`` is the ``AgentRunner`` the engine gives every run today. It ends agents only
through the run's recovery ledger (complete / fail / cancel).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from agentray.errors import JournalError, ModelError
from agentray.model._types import ModelRequest
from agentray.states import ACTIVE, AgentStatus, RunStatus

from ._context import compact_transcript, needs_compaction, repair_interrupted_turn, system_prompt
from ._recovery import AgentEnded
from ._run import PROGRESS_FAILURE, Run
from ._state import AgentState
from ._tool_calls import execute_tool_call
from ._tools import conclude_finish, tool_schemas, tools_for

__all__ = ["InProcessRunner"]

log = logging.getLogger(__name__)

MAX_IDLE_NUDGES = 8  # orchestrator turns without a tool call before the run gives up on it


class InProcessRunner:
    """Runs an agent as a task on this process's event loop."""

    async def run(self, run: Run, agent: AgentState, *, resumed: bool) -> None:
        await run_agent(run, agent, resumed=resumed)


async def run_agent(run: Run, agent: AgentState, *, resumed: bool = False) -> None:
    ledger = run.ledger
    try:
        if not await _wait_for_dependencies(run, agent):
            return
        await run.guard.wait_until_clear()
        run.set_status(agent, AgentStatus.RUNNING)
        await _loop(run, agent, resumed=resumed)
    except asyncio.CancelledError:
        run.slots.release(agent.agent_id)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(run.processes.kill_owner(agent.agent_id))
        if agent.status in ACTIVE and run.outcome is None:
            # the ledger marks an agent it cancels before cancelling it, and the run's own ends
            # set its outcome first: this cancellation came from outside the engine
            run.interrupt_from_outside()
        raise
    except AgentEnded:
        # its end is recorded (cancelled by the person, the run stopping): just leave
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(run.processes.kill_owner(agent.agent_id))
    except _TurnLimit as error:
        ledger.fail(agent, str(error))
        if agent.is_orchestrator:
            run.conclude(RunStatus.FAILED, f"the orchestrator stopped: {error}", resumable=False)
    except _ProgressUnwritable as error:
        ledger.fail(agent, str(error))
        if agent.is_orchestrator:
            run.conclude(
                RunStatus.FAILED,
                f"the orchestrator {error}; free the space or repair the folder, then resume",
            )
    except JournalError as error:
        # Nothing can be recorded (a full disk): end the run at once, resumable once space is free.
        run.slots.release(agent.agent_id)
        try:
            ledger.fail(agent, f"the journal cannot be written: {error}")
        except JournalError as again:
            log.error(
                "run %s: %s could not be recorded as failed: %s", run.run_id, agent.agent_id, again
            )
        run.conclude(
            RunStatus.FAILED,
            f"the journal cannot be written ({error}); free some space, then resume the run",
        )
    except ModelError as error:
        run.slots.release(agent.agent_id)
        ledger.fail(agent, f"model error: {error}")
        run.fatal(agent, error)
        if agent.is_orchestrator:
            run.conclude(RunStatus.FAILED, f"the orchestrator failed: {error}", fatal=error)
    except Exception as error:  # a bug must fail one agent, not the run's task group
        log.exception("agent %s crashed", agent.agent_id)
        run.slots.release(agent.agent_id)
        ledger.fail(agent, f"internal error: {type(error).__name__}: {error}")
        if agent.is_orchestrator:
            run.conclude(RunStatus.FAILED, f"the orchestrator failed: {error}")
    finally:
        run.slots.release(agent.agent_id)


async def _wait_for_dependencies(run: Run, agent: AgentState) -> bool:
    """Queued agents wait (holding no slot); a failed or cancelled dependency cancels them."""
    if not agent.depends_on:
        return True

    def settled() -> bool:
        states = [run.agents[d].status for d in agent.depends_on if d in run.agents]
        return all(s == AgentStatus.DONE for s in states) or any(
            s in (AgentStatus.FAILED, AgentStatus.CANCELLED) for s in states
        )

    await run.changes.wait_for(settled, None)
    broken = [
        run.agents[d]
        for d in agent.depends_on
        if run.agents[d].status in (AgentStatus.FAILED, AgentStatus.CANCELLED)
    ]
    if broken:
        dep = broken[0]
        why = dep.blocker or dep.status_reason or dep.summary or ""
        run.ledger.cancel_unstarted(
            agent, f"dependency {dep.agent_id} {dep.status.value}: {why}".strip()
        )
        return False
    return True


def _first_message(run: Run, agent: AgentState) -> dict[str, Any]:
    if agent.is_orchestrator:
        build = run.config.build_command or "(none configured)"
        text = (
            f"You are the orchestrator, agent {agent.agent_id}, of run {run.run_id}.\n"
            f"Workspace: {run.workspace}\nBuild command: {build}\n"
            f"Caps: max_agents={run.config.max_agents}, max_concurrent={run.config.max_concurrent}, "
            f"max_depth={run.config.max_depth}, budget_usd={run.budget_usd}\n\n"
            f"Goal:\n{agent.task}"
        )
    else:
        deps = ", ".join(agent.depends_on) or "none"
        text = (
            f"You are agent {agent.agent_id} (role: {agent.role}, parent: {agent.parent_id}, depth {agent.depth}) "
            f"in run {run.run_id}.\nWorkspace: {run.workspace}\nYour progress file: {agent.progress.relative_path} "
            f"(the engine writes it from report_progress / report_blocker / complete).\n"
            f"Finished dependencies: {deps}\n"
        )
        if agent.mitigates:
            blocked = run.agents.get(agent.mitigates)
            if blocked is not None:
                text += f"\nYou mitigate the blocker of {blocked.agent_id}: {blocked.blocker}\n"
        for dep_id in agent.depends_on:
            dep = run.agents.get(dep_id)
            if dep is not None and dep.summary:
                text += f"\nResult of {dep_id}: {dep.summary}\n"
        text += f"\nTask:\n{agent.task}"
    return {"role": "user", "content": [{"type": "text", "text": text}]}


async def _loop(run: Run, agent: AgentState, *, resumed: bool) -> None:
    journal = run.journal
    messages: list[dict[str, Any]] = (
        journal.load_transcript(run.run_id, agent.agent_id) if resumed else []
    )
    if not messages:
        messages = [_first_message(run, agent)]
        journal.append_message(run.run_id, agent.agent_id, messages[0])
    else:
        repaired = await repair_interrupted_turn(run, agent, messages)
        if repaired is not None:
            messages.append(repaired)
            journal.append_message(run.run_id, agent.agent_id, repaired)
        if agent.is_orchestrator and _replay_accepted_finish(run, agent):
            return
    tools = tools_for(run, agent)
    schemas = tool_schemas(tools)
    system = await system_prompt(run, agent)  # the role's prompt and the project's AGENTS.md
    idle_turns = 0
    last_prompt_tokens = 0

    while True:
        _check_progress(run, agent)
        if agent.runtime.pending_messages:
            _append_user_text(run, agent, messages, "\n\n".join(agent.runtime.pending_messages))
            agent.runtime.pending_messages.clear()
        if agent.turns >= run.config.max_turns:
            raise _TurnLimit(run.config.max_turns)
        if needs_compaction(run, last_prompt_tokens):
            messages = compact_transcript(run, agent, messages)
            last_prompt_tokens = 0
        await run.ensure_budget(agent)
        await run.slots.acquire(agent.agent_id)
        if agent.status != AgentStatus.RUNNING:
            run.set_status(agent, AgentStatus.RUNNING)
        request = ModelRequest(
            model=agent.model,
            system=system,
            messages=messages,
            tools=schemas,
            max_tokens=run.config.max_tokens,
            agent_id=agent.agent_id,
        )
        response = await run.client.complete(request)
        agent.turns += 1
        last_prompt_tokens = response.usage.prompt_tokens + response.usage.output_tokens
        content = response.content or [{"type": "text", "text": "(no content)"}]
        assistant = {"role": "assistant", "content": content}
        messages.append(assistant)
        # one transaction: the assistant message, its usage and the agent's and run's counters
        run.record_usage(
            agent, response.usage, response.cost_usd, response.model, message=assistant
        )
        calls = [block for block in content if block.get("type") == "tool_use"]

        if not calls:
            run.slots.release(agent.agent_id)
            text = " ".join(b.get("text", "") for b in content if b.get("type") == "text").strip()
            if agent.is_orchestrator:
                idle_turns += 1
                if idle_turns > MAX_IDLE_NUDGES:
                    raise _TurnLimit(idle_turns, idle=True)
                _append_user_text(run, agent, messages, _orchestrator_nudge(run))
                continue
            # a worker that ends its turn without complete(): its last words are its result
            run.ledger.complete(agent, text or "(finished without a summary)")
            return
        idle_turns = 0

        results: list[dict[str, Any]] = []
        for call in calls:
            results.append(await execute_tool_call(run, agent, tools, call))
        notes = run.drain_notices() if agent.is_orchestrator else []
        user: dict[str, Any] = {"role": "user", "content": results}
        if notes:
            user["content"] = [
                *results,
                {"type": "text", "text": "[engine] " + "\n[engine] ".join(notes)},
            ]
        messages.append(user)
        journal.append_message(run.run_id, agent.agent_id, user)
        run.slots.release(agent.agent_id)
        if not agent.runtime.completed:
            _check_progress(run, agent)

        if agent.runtime.completed:
            if not agent.is_orchestrator:  # finish already ended the orchestrator and its run
                run.ledger.complete(agent)
            return
        if run.finished.is_set():
            return


def _replay_accepted_finish(run: Run, agent: AgentState) -> bool:
    """A crash between an accepted ``finish`` and the run's recorded end: end the run as it was
    finished (the gates it passed, a build among them, are not in the journal to check again)."""
    if not run.crashed_before_end:
        return False
    accepted = [
        row
        for row in run.journal.list_tool_calls(run.run_id, agent.agent_id)
        if row.name == "finish" and row.finished_at is not None and not row.is_error
    ]
    if not accepted:
        return False
    inputs = accepted[-1].input
    conclude_finish(
        run, agent, str(inputs.get("summary", "")), str(inputs.get("outcome", "success"))
    )
    return True


class _ProgressUnwritable(Exception):
    """The workspace refused the agent's progress file: the agent fails with a blocker saying why."""


def _check_progress(run: Run, agent: AgentState) -> None:
    # a coalesced rewrite still pending is made now: a workspace that refuses it fails the agent
    # before its next model call, as an unbuffered write would have
    agent.progress.flush()
    if agent.progress.write_error:
        raise _ProgressUnwritable(
            f"{PROGRESS_FAILURE} {agent.progress.relative_path}: {agent.progress.write_error}"
        )


class _TurnLimit(Exception):
    def __init__(self, turns: int, *, idle: bool = False) -> None:
        if idle:
            super().__init__(
                f"the orchestrator ended {turns} turns in a row without calling a tool"
            )
        else:
            super().__init__(f"turn limit reached ({turns} model calls, cap max_turns)")


def _append_user_text(
    run: Run, agent: AgentState, messages: list[dict[str, Any]], text: str
) -> None:
    message = {"role": "user", "content": [{"type": "text", "text": text}]}
    if messages and messages[-1]["role"] == "user":
        # two user messages in a row are not allowed: merge into the last one
        last = messages[-1]
        content = (
            last["content"]
            if isinstance(last["content"], list)
            else [{"type": "text", "text": last["content"]}]
        )
        merged = {"role": "user", "content": [*content, *message["content"]]}
        messages[-1] = merged
        run.journal.replace_transcript(
            run.run_id, agent.agent_id, messages, reason="merge user text"
        )
        return
    messages.append(message)
    run.journal.append_message(run.run_id, agent.agent_id, message)


def _orchestrator_nudge(run: Run) -> str:
    active = run.active_workers()
    notes = run.drain_notices()
    lines = [f"[engine] {note}" for note in notes]
    if active:
        listed = ", ".join(f"{a.agent_id} {a.status}" for a in active)
        lines.append(
            f"[engine] You may not stop while agents work: {len(active)} active ({listed}). "
            "Use await_agents, sleep or check_agents, handle blockers, and call finish when all are done."
        )
    else:
        problems = run.finish_blockers("success")
        hint = "; ".join(problems) if problems else "nothing stands in the way"
        lines.append(
            "[engine] All agents have settled. Call finish(summary, outcome) to end the run "
            f"(for success: {hint})."
        )
    return "\n".join(lines)
