"""One tool call: journaled when it starts and when it ends, snapshotted, published as events.

A tool's failure is an ``is_error`` result for the model; only cancellation and model errors
leave the call.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from agentray import events as ev
from agentray.errors import ModelError, ToolError
from agentray.states import AgentStatus

from ._recovery import AgentEnded
from ._run import Run
from ._state import AgentState
from ._toolkit import Tool, validate_input
from ._tools import describe_call, refusal_for_missing_tool

__all__ = ["execute_tool_call", "tool_result_block"]

log = logging.getLogger(__name__)


async def execute_tool_call(
    run: Run,
    agent: AgentState,
    tools: dict[str, Tool],
    call: dict[str, Any],
    *,
    resuming: bool = False,
) -> dict[str, Any]:
    """Run one tool_use block; always returns a tool_result block (errors as is_error)."""
    call_id = str(call.get("id", ""))
    name = str(call.get("name", ""))
    raw_input = call.get("input")
    started = time.monotonic()
    run.publish(
        ev.ToolCallStarted(
            run_id=run.run_id,
            agent_id=agent.agent_id,
            call_id=call_id,
            tool=name,
            summary=describe_call(name, raw_input),
        )
    )
    if not resuming:
        run.journal.start_tool_call(
            run.run_id,
            agent.agent_id,
            call_id,
            name,
            raw_input if isinstance(raw_input, dict) else {"raw": raw_input},
        )
    is_error = False
    try:
        result = await tools_dispatch(run, agent, tools, name, raw_input, call_id)
    except ToolError as error:
        is_error, result = True, {"error": str(error)}
    except (asyncio.CancelledError, ModelError, AgentEnded):  # the agent ends, not the call
        raise
    except Exception as error:
        log.exception("tool %s failed", name)
        is_error, result = True, {"error": f"{name} failed: {type(error).__name__}: {error}"}
    run.journal.finish_tool_call(run.run_id, call_id, result=result, is_error=is_error)
    await run.snapshots.take(
        agent.agent_id, call_id, name, path=None if is_error else result.get("path")
    )
    run.publish(
        ev.ToolCallFinished(
            run_id=run.run_id,
            agent_id=agent.agent_id,
            call_id=call_id,
            tool=name,
            is_error=is_error,
            duration_s=time.monotonic() - started,
        )
    )
    return tool_result_block(run, call_id, result, is_error)


def tool_result_block(
    run: Run, call_id: str, result: dict[str, Any], is_error: bool
) -> dict[str, Any]:
    """What the model sees of a result: the same text live and when replayed from the journal."""
    text = run.truncate(json.dumps(result, ensure_ascii=False, default=str))
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": call_id, "content": text}
    if is_error:
        block["is_error"] = True
    return block


async def tools_dispatch(
    run: Run, agent: AgentState, tools: dict[str, Tool], name: str, raw_input: Any, call_id: str
) -> dict[str, Any]:
    tool = tools.get(name)
    if tool is None:
        raise ToolError(refusal_for_missing_tool(run, agent, name, tools))
    args = validate_input(tool, raw_input)
    if not tool.waits:
        return await tool.handler(run, agent, {**args, "_call_id": call_id})
    # A waiting tool gives its concurrency slot back while it waits (so nesting cannot deadlock
    # the cap); the rest of the turn runs without one and the next model call takes one again.
    run.slots.release(agent.agent_id)
    if (
        agent.status == AgentStatus.RUNNING and name != "report_blocker"
    ):  # that one goes straight to "blocked"
        run.set_status(agent, AgentStatus.WAITING, name)
    try:
        return await tool.handler(run, agent, {**args, "_call_id": call_id})
    finally:
        if agent.status in (AgentStatus.WAITING, AgentStatus.BLOCKED) and not run.finished.is_set():
            run.set_status(agent, AgentStatus.RUNNING)
