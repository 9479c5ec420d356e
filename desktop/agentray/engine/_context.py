"""Context management: the system prompt with the project's own instructions, compaction near the
window, the run digest, repairing interrupted turns."""

from __future__ import annotations

import asyncio
import codecs
import json
import os
import stat
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentray import events as ev

from ._tool_calls import execute_tool_call, tool_result_block
from ._tools import RESUMABLE_TOOLS, tools_for

if TYPE_CHECKING:
    from ._run import Run
    from ._state import AgentState

__all__ = [
    "INSTRUCTION_FILES",
    "MAX_INSTRUCTION_BYTES",
    "compact_transcript",
    "needs_compaction",
    "project_instructions",
    "repair_interrupted_turn",
    "run_digest",
    "system_prompt",
]

KEEP_TAIL_MESSAGES = 6
INSTRUCTION_FILES = ("AGENTS.md", "CLAUDE.md")  # at the workspace root, in this order
MAX_INSTRUCTION_BYTES = 16 * 1024  # each; the rest is left for read_file

# One read per Run object, that is per run start or resume; agents starting later get the same
# text, so every request of a role shares one cached prefix.
_instructions: weakref.WeakKeyDictionary[Run, asyncio.Task[str]] = weakref.WeakKeyDictionary()


async def system_prompt(run: Run, agent: AgentState) -> str:
    """The agent's system prompt: its role's prompt, then the project's instruction files.

    The system prompt is the first block of every request and carries a cache breakpoint, so the
    instructions cost full price once per run and are read from the cache afterwards.
    """
    base = run.prompts["orchestrator" if agent.is_orchestrator else "worker"]
    task = _instructions.get(run)
    if task is None:
        task = asyncio.ensure_future(asyncio.to_thread(project_instructions, run.workspace))
        _instructions[run] = task
    extra = await asyncio.shield(task)  # one agent cancelled must not cancel the others' read
    return f"{base}\n\n{extra}" if extra else base


def project_instructions(workspace: Path) -> str:
    """``AGENTS.md`` and ``CLAUDE.md`` of the workspace root, labelled, each cut at
    MAX_INSTRUCTION_BYTES; "" when there are none. A file that is a symlink leading outside the
    workspace, or not a regular file, is left out; one that is the same file as the other is
    given once."""
    root = Path(os.path.realpath(workspace))
    parts: list[str] = []
    seen: dict[tuple[int, int], str] = {}
    for name in INSTRUCTION_FILES:
        read = _read_confined(root, name)
        if read is None:
            continue
        data, st = read
        identity = (st.st_dev, st.st_ino)
        if identity in seen:
            continue  # CLAUDE.md is often a symlink to AGENTS.md
        seen[identity] = name
        # an incremental decoder holds back a character cut in half at the cap
        text = codecs.getincrementaldecoder("utf-8")("replace").decode(data)
        text = text.strip("\n")
        if not text.strip():
            continue
        if st.st_size > MAX_INSTRUCTION_BYTES:
            text += (
                f"\n[... {name} is {st.st_size} bytes; only its first {MAX_INSTRUCTION_BYTES} bytes "
                "are shown here. Read the rest with read_file when your task needs it.]"
            )
        parts.append(
            f"Project instructions from {name} (the workspace's own file, written for agents "
            f"working on this project; follow them within the rules above):\n{text}"
        )
    if not parts:
        return ""
    return "# Project instructions\n\n" + "\n\n".join(parts)


def _read_confined(root: Path, name: str) -> tuple[bytes, os.stat_result] | None:
    """The first bytes of ``root/name`` if it is a regular file inside the workspace."""
    real = Path(os.path.realpath(root / name))
    if not real.is_relative_to(root) or real == root:
        return None  # a symlink that leads out of the workspace
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(real, flags)  # the real path: no symlink is followed from here on
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        try:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                return None
            return f.read(MAX_INSTRUCTION_BYTES), st  # the size says whether there is more
        except OSError:
            return None


def needs_compaction(run: Run, last_prompt_tokens: int) -> bool:
    return last_prompt_tokens > run.config.compact_at * run.context_window


def run_digest(run: Run) -> str:
    """What an orchestrator restarted fresh needs to know to carry on."""
    lines = [f"Goal:\n{run.config.goal}", "", "Agents so far:"]
    for agent in run.agents.values():
        if agent.is_orchestrator:
            continue
        detail = agent.summary or agent.blocker or agent.status_reason or ""
        extra = f" mitigates {agent.mitigates}" if agent.mitigates else ""
        lines.append(
            f"- {agent.agent_id} [{agent.role}{extra}] {agent.status}: {agent.title}"
            + (f" -> {detail[:400]}" if detail else "")
        )
    blockers = [
        a
        for a in run.agents.values()
        if a.status in ("blocked", "failed") and not a.is_orchestrator
    ]
    lines.append("")
    lines.append(
        "Open blockers: " + (", ".join(f"{a.agent_id} ({a.blocker})" for a in blockers) or "none")
    )
    pending = run.pending_escalations()
    lines.append("Pending escalations: " + (", ".join(e.question[:120] for e in pending) or "none"))
    if run.last_build is None:
        lines.append("Build: not run yet" if run.config.build_command else "Build: none configured")
    else:
        state = "passed" if run.last_build["passed"] else "failed"
        lines.append(
            f"Last build: {state} (exit {run.last_build['exit_code']}); "
            f"failed in a row: {run.builds_failed_in_a_row}; covers latest changes: "
            f"{run.build_passed_at is not None and run.build_passed_at == run.settle_seq}"
        )
        if not run.last_build["passed"]:
            lines.append(
                "Build output tail:\n" + str(run.last_build.get("output_tail", ""))[-2000:]
            )
    lines.append(f"Spent: ${run.cost_usd:.4f} of budget {run.budget_usd}")
    return "\n".join(lines)


def compact_transcript(
    run: Run, agent: AgentState, messages: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Shrink a transcript nearing the window; the orchestrator restarts fresh from a digest."""
    if agent.is_orchestrator:
        text = (
            f"You are the orchestrator, agent {agent.agent_id}, of run {run.run_id}, restarted with a fresh "
            "context because your transcript neared the model's window. Here is the state of the run; "
            "carry on from it (agent ids stay valid).\n\n" + run_digest(run)
        )
        new = [{"role": "user", "content": [{"type": "text", "text": text}]}]
    else:
        budget = run.config.compact_at * run.context_window / 2  # leave room to work
        for keep in (KEEP_TAIL_MESSAGES, 4, 2):
            start, tail = _tail(messages, keep)
            if _estimate_tokens(tail) < budget:
                break
        else:
            tail = [_shrink(message) for message in tail]
        first = messages[0]
        dropped = messages[1:start]
        notes = "\n".join(agent.progress.tail(20)) or "(no progress notes)"
        calls = [
            f"{block.get('name')}({_short(block.get('input'))})"
            for message in dropped
            if message["role"] == "assistant" and isinstance(message["content"], list)
            for block in message["content"]
            if block.get("type") == "tool_use"
        ]
        summary = (
            f"[engine] {len(dropped)} earlier messages were compacted to stay inside the context window.\n"
            f"Your progress notes so far:\n{notes}\nTool calls made: {'; '.join(calls[-40:]) or 'none'}"
        )
        content = (
            first["content"]
            if isinstance(first["content"], list)
            else [{"type": "text", "text": first["content"]}]
        )
        new = [{"role": "user", "content": [*content, {"type": "text", "text": summary}]}, *tail]
    run.journal.replace_transcript(run.run_id, agent.agent_id, new, reason="compaction")
    run.publish(
        ev.Notice(
            run_id=run.run_id,
            level="info",
            message=f"{agent.agent_id}: context compacted ({len(messages)} -> {len(new)} messages)",
            agent_id=agent.agent_id,
        )
    )
    return new


def _tail(messages: list[dict[str, Any]], keep: int) -> tuple[int, list[dict[str, Any]]]:
    """The last ``keep`` messages, starting at an assistant message so that every tool_result
    keeps its tool_use."""
    start = max(1, len(messages) - keep)
    while start < len(messages) and messages[start]["role"] != "assistant":
        start += 1
    return start, messages[start:]


def _estimate_tokens(messages: list[dict[str, Any]]) -> int:
    return len(json.dumps(messages, ensure_ascii=False, default=str)) // 4


def _shrink(message: dict[str, Any], limit: int = 2000) -> dict[str, Any]:
    """Clip long tool results and texts of a message kept through compaction."""
    if not isinstance(message.get("content"), list):
        return message
    blocks = []
    for block in message["content"]:
        block = dict(block)
        for key in ("content", "text"):
            value = block.get(key)
            if isinstance(value, str) and len(value) > limit:
                block[key] = (
                    value[: limit // 2]
                    + f"\n…[{len(value) - limit} characters dropped by compaction]…\n"
                    + value[-limit // 2 :]
                )
        blocks.append(block)
    return {**message, "content": blocks}


def _short(value: Any) -> str:
    text = (
        json.dumps(value, ensure_ascii=False, default=str) if not isinstance(value, str) else value
    )
    return text if len(text) <= 80 else text[:77] + "..."


async def repair_interrupted_turn(
    run: Run, agent: AgentState, messages: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """A transcript that ends in tool_use blocks without results was cut mid-way by a crash or
    stop. Waiting tools that are safe to repeat (escalate re-attaches to its journal row) run
    again; anything else is reported to the model as interrupted."""
    last = messages[-1]
    if last["role"] != "assistant" or not isinstance(last["content"], list):
        return None
    calls = [block for block in last["content"] if block.get("type") == "tool_use"]
    if not calls:
        return None
    tools = tools_for(run, agent)
    journaled = {
        row.call_id: row for row in run.journal.list_tool_calls(run.run_id, agent.agent_id)
    }
    results: list[dict[str, Any]] = []
    for call in calls:
        row = journaled.get(str(call.get("id")))
        if row is not None and row.finished_at is not None and row.result is not None:
            # It ended before the crash: the model gets exactly what it would have got.
            results.append(tool_result_block(run, str(call.get("id")), row.result, row.is_error))
            continue
        if call.get("name") in RESUMABLE_TOOLS:
            results.append(await execute_tool_call(run, agent, tools, call, resuming=True))
            continue
        error = {
            "error": (
                f"interrupted: the run stopped while {call.get('name')} was running, so it may or may "
                "not have taken effect; check the current state before repeating it"
            )
        }
        if row is not None:
            run.journal.finish_tool_call(
                run.run_id, str(call.get("id")), result=error, is_error=True
            )
        results.append(
            {
                "type": "tool_result",
                "tool_use_id": call.get("id"),
                "content": json.dumps(error),
                "is_error": True,
            }
        )
    return {"role": "user", "content": results}
