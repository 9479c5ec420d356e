"""The loop of one agent: wait for dependencies and room, then model turn, tools, repeat."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any

from agentray.errors import JournalError, ModelError, ToolError
from agentray.model._types import ModelRequest

from ._context import compact_transcript, needs_compaction, repair_interrupted_turn
from ._run import PROGRESS_FAILURE, Run
from ._state import ACTIVE, TERMINAL, AgentState
from ._tools import RESUMABLE_TOOLS, conclude_finish, describe_call, tools_for

__all__ = ["run_agent"]

log = logging.getLogger(__name__)

MAX_IDLE_NUDGES = 8  # orchestrator turns without a tool call before the run gives up on it


async def run_agent(run: Run, agent: AgentState, *, resumed: bool = False) -> None:
    try:
        if not await _wait_for_dependencies(run, agent):
            return
        await run.guard.wait_until_clear()
        run.set_status(agent, "running")
        await _loop(run, agent, resumed=resumed)
    except asyncio.CancelledError:
        run.slots.release(agent.agent_id)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(run.processes.kill_owner(agent.agent_id))
        if agent.status in ACTIVE and run.outcome is None:
            run.set_status(agent, "cancelled", "cancelled")
        raise
    except _TurnLimit as error:
        _fail(run, agent, str(error))
        if agent.is_orchestrator:
            run.conclude("failed", f"the orchestrator stopped: {error}", resumable=False)
    except _ProgressUnwritable as error:
        run.slots.release(agent.agent_id)
        _fail(run, agent, str(error))
        if agent.is_orchestrator:
            run.conclude("failed", f"the orchestrator {error}; free the space or repair the folder, then resume")
    except JournalError as error:
        # Nothing can be recorded (a full disk): end the run at once, resumable once space is free.
        run.slots.release(agent.agent_id)
        with contextlib.suppress(JournalError):
            _fail(run, agent, f"the journal cannot be written: {error}")
        run.conclude(
            "failed", f"the journal cannot be written ({error}); free some space, then resume the run"
        )
    except ModelError as error:
        run.slots.release(agent.agent_id)
        _fail(run, agent, f"model error: {error}")
        run.fatal(agent, error)
        if agent.is_orchestrator:
            run.conclude("failed", f"the orchestrator failed: {error}", fatal=error)
    except Exception as error:  # a bug must fail one agent, not the run's task group
        log.exception("agent %s crashed", agent.agent_id)
        run.slots.release(agent.agent_id)
        _fail(run, agent, f"internal error: {type(error).__name__}: {error}")
        if agent.is_orchestrator:
            run.conclude("failed", f"the orchestrator failed: {error}")
    finally:
        run.slots.release(agent.agent_id)


def _fail(run: Run, agent: AgentState, reason: str) -> None:
    if agent.status in TERMINAL:
        return
    agent.blocker = reason
    run.journal.update_agent(run.run_id, agent.agent_id, blocker=reason)
    run.progress(agent, "BLOCKER", f"failed: {reason}")
    run.set_status(agent, "failed", reason)
    if not agent.is_orchestrator:
        run.on_agent_failed(agent)


async def _wait_for_dependencies(run: Run, agent: AgentState) -> bool:
    """Queued agents wait (holding no slot); a failed or cancelled dependency cancels them."""
    if not agent.depends_on:
        return True

    def settled() -> bool:
        states = [run.agents[d].status for d in agent.depends_on if d in run.agents]
        return all(s == "done" for s in states) or any(s in ("failed", "cancelled") for s in states)

    await run.changes.wait_for(settled, None)
    broken = [run.agents[d] for d in agent.depends_on if run.agents[d].status in ("failed", "cancelled")]
    if broken:
        dep = broken[0]
        reason = f"dependency {dep.agent_id} {dep.status}: {dep.blocker or dep.status_reason or dep.summary or ''}".strip()
        agent.summary = f"cancelled: {reason}"
        run.journal.update_agent(run.run_id, agent.agent_id, summary=agent.summary)
        run.progress(agent, "BLOCKER", reason)
        run.set_status(agent, "cancelled", reason)
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
    messages: list[dict[str, Any]] = journal.load_transcript(run.run_id, agent.agent_id) if resumed else []
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
    schemas = [tool.schema() for tool in tools.values()]
    system = run.prompts["orchestrator" if agent.is_orchestrator else "worker"]
    idle_turns = 0
    last_prompt_tokens = 0

    while True:
        _check_progress(run, agent)
        if agent.pending_messages:
            _append_user_text(run, agent, messages, "\n\n".join(agent.pending_messages))
            agent.pending_messages.clear()
        if agent.turns >= run.config.max_turns:
            raise _TurnLimit(run.config.max_turns)
        if needs_compaction(run, last_prompt_tokens):
            messages = compact_transcript(run, agent, messages)
            last_prompt_tokens = 0
        await run.ensure_budget(agent)
        await run.slots.acquire(agent.agent_id)
        if agent.status != "running":
            run.set_status(agent, "running")
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
        run.record_usage(agent, response.usage, response.cost_usd, response.model)
        last_prompt_tokens = response.usage.prompt_tokens + response.usage.output_tokens
        content = response.content or [{"type": "text", "text": "(no content)"}]
        assistant = {"role": "assistant", "content": content}
        messages.append(assistant)
        journal.append_message(run.run_id, agent.agent_id, assistant)
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
            _complete(run, agent, text or "(finished without a summary)")
            return
        idle_turns = 0

        results: list[dict[str, Any]] = []
        for call in calls:
            results.append(await execute_tool_call(run, agent, tools, call))
        notes = run.drain_notices() if agent.is_orchestrator else []
        user: dict[str, Any] = {"role": "user", "content": results}
        if notes:
            user["content"] = [*results, {"type": "text", "text": "[engine] " + "\n[engine] ".join(notes)}]
        messages.append(user)
        journal.append_message(run.run_id, agent.agent_id, user)
        run.slots.release(agent.agent_id)
        if not agent.completed:
            _check_progress(run, agent)

        if agent.completed:
            if agent.is_orchestrator:
                return
            run.set_status(agent, "done")
            if agent.mitigates:
                run.on_mitigator_done(agent)
            return
        if run.finished.is_set():
            return


def _replay_accepted_finish(run: Run, agent: AgentState) -> bool:
    """A crash between an accepted ``finish`` and the run's recorded end: end the run as it was
    finished (the gates it passed, a build among them, are not in the journal to check again)."""
    if not run.crashed_before_end:
        return False
    accepted = [
        row for row in run.journal.list_tool_calls(run.run_id, agent.agent_id)
        if row.name == "finish" and row.finished_at is not None and not row.is_error
    ]
    if not accepted:
        return False
    inputs = accepted[-1].input
    conclude_finish(run, agent, str(inputs.get("summary", "")), str(inputs.get("outcome", "success")))
    return True


class _ProgressUnwritable(Exception):
    """The workspace refused the agent's progress file: the agent fails with a blocker saying why."""


def _check_progress(run: Run, agent: AgentState) -> None:
    if agent.progress.write_error:
        raise _ProgressUnwritable(f"{PROGRESS_FAILURE} {agent.progress.relative_path}: {agent.progress.write_error}")


class _TurnLimit(Exception):
    def __init__(self, turns: int, *, idle: bool = False) -> None:
        if idle:
            super().__init__(f"the orchestrator ended {turns} turns in a row without calling a tool")
        else:
            super().__init__(f"turn limit reached ({turns} model calls, cap max_turns)")


def _append_user_text(run: Run, agent: AgentState, messages: list[dict[str, Any]], text: str) -> None:
    message = {"role": "user", "content": [{"type": "text", "text": text}]}
    if messages and messages[-1]["role"] == "user":
        # two user messages in a row are not allowed: merge into the last one
        last = messages[-1]
        content = last["content"] if isinstance(last["content"], list) else [{"type": "text", "text": last["content"]}]
        merged = {"role": "user", "content": [*content, *message["content"]]}
        messages[-1] = merged
        run.journal.replace_transcript(run.run_id, agent.agent_id, messages, reason="merge user text")
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


def _complete(run: Run, agent: AgentState, summary: str) -> None:
    agent.summary = summary
    agent.completed = True
    run.journal.update_agent(run.run_id, agent.agent_id, summary=summary, result=summary)
    run.progress(agent, "RESULT", summary)
    run.set_status(agent, "done")
    if agent.mitigates:
        run.on_mitigator_done(agent)


async def execute_tool_call(
    run: Run, agent: AgentState, tools: dict[str, Any], call: dict[str, Any], *, resuming: bool = False
) -> dict[str, Any]:
    """Run one tool_use block; always returns a tool_result block (errors as is_error)."""
    call_id = str(call.get("id", ""))
    name = str(call.get("name", ""))
    raw_input = call.get("input")
    started = time.monotonic()
    from agentray import events as ev

    run.publish(
        ev.ToolCallStarted(
            run_id=run.run_id, agent_id=agent.agent_id, call_id=call_id, tool=name,
            summary=describe_call(name, raw_input),
        )
    )
    if not resuming:
        run.journal.start_tool_call(
            run.run_id, agent.agent_id, call_id, name, raw_input if isinstance(raw_input, dict) else {"raw": raw_input}
        )
    is_error = False
    try:
        result = await tools_dispatch(run, agent, tools, name, raw_input, call_id)
    except ToolError as error:
        is_error, result = True, {"error": str(error)}
    except (asyncio.CancelledError, ModelError):
        raise
    except Exception as error:
        log.exception("tool %s failed", name)
        is_error, result = True, {"error": f"{name} failed: {type(error).__name__}: {error}"}
    run.journal.finish_tool_call(run.run_id, call_id, result=result, is_error=is_error)
    await run.snapshots.take(agent.agent_id, call_id, name, path=None if is_error else result.get("path"))
    run.publish(
        ev.ToolCallFinished(
            run_id=run.run_id, agent_id=agent.agent_id, call_id=call_id, tool=name,
            is_error=is_error, duration_s=time.monotonic() - started,
        )
    )
    return tool_result_block(run, call_id, result, is_error)


def tool_result_block(run: Run, call_id: str, result: dict[str, Any], is_error: bool) -> dict[str, Any]:
    """What the model sees of a result: the same text live and when replayed from the journal."""
    text = run.truncate(json.dumps(result, ensure_ascii=False, default=str))
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id, "content": text}
    if is_error:
        block["is_error"] = True
    return block


async def tools_dispatch(
    run: Run, agent: AgentState, tools: dict[str, Any], name: str, raw_input: Any, call_id: str
) -> dict[str, Any]:
    from ._toolkit import validate_input
    from ._tools import refusal_for_missing_tool

    tool = tools.get(name)
    if tool is None:
        raise ToolError(refusal_for_missing_tool(run, agent, name, tools))
    args = validate_input(tool, raw_input)
    if not tool.waits:
        return await tool.handler(run, agent, {**args, "_call_id": call_id})
    # A waiting tool gives its concurrency slot back while it waits (so nesting cannot deadlock
    # the cap); the rest of the turn runs without one and the next model call takes one again.
    run.slots.release(agent.agent_id)
    if agent.status == "running" and name != "report_blocker":  # that one goes straight to "blocked"
        run.set_status(agent, "waiting", name)
    try:
        return await tool.handler(run, agent, {**args, "_call_id": call_id})
    finally:
        if agent.status in ("waiting", "blocked") and not run.finished.is_set():
            run.set_status(agent, "running")


__all__ += ["RESUMABLE_TOOLS", "execute_tool_call"]
