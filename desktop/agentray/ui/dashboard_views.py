"""Plain helpers of the dashboard: agent rows from a live run or the journal, and the text forms
of progress files, transcripts and events (kept apart from the window so they stay testable)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentray import events as ev
from agentray.engine import PROGRESS_DIR, AgentRecord, RunView
from agentray.journal import AgentRow

__all__ = [
    "AgentInfo",
    "agents_from_journal",
    "agents_from_run",
    "format_agents",
    "format_cost",
    "format_elapsed",
    "format_event",
    "format_event_dict",
    "format_tokens",
    "progress_markdown",
    "transcript_text",
    "tree_order",
]

TRANSCRIPT_TEXT_LIMIT = 600  # characters of one block shown; the journal keeps all of it


@dataclass(frozen=True)
class AgentInfo:
    agent_id: str
    parent_id: str | None
    title: str
    role: str
    status: str
    started_at: float | None
    ended_at: float | None
    tokens: int
    cost_usd: float
    progress_path: Path | None
    created_at: float


def _info(source: AgentRecord | AgentRow, *, tokens: int, progress_path: Path | None) -> AgentInfo:
    """The fields a live AgentState and a journal AgentRow share, plus what each computes."""
    return AgentInfo(
        agent_id=source.agent_id,
        parent_id=source.parent_id,
        title=source.title,
        role=source.role,
        status=source.status,
        started_at=source.started_at,
        ended_at=source.ended_at,
        tokens=tokens,
        cost_usd=float(source.cost_usd),
        progress_path=progress_path,
        created_at=source.created_at,
    )


def agents_from_run(run: RunView) -> list[AgentInfo]:
    """From the frozen view of a live run."""
    return [
        _info(a, tokens=a.total_tokens, progress_path=Path(run.workspace) / a.progress_file)
        for a in run.agents
    ]


def agents_from_journal(rows: list[AgentRow], workspace: str | None) -> list[AgentInfo]:
    """From journal AgentRows of a run that is not live here."""
    base = Path(workspace) / PROGRESS_DIR if workspace else None
    return [
        _info(
            r,
            tokens=int(
                r.input_tokens + r.output_tokens + r.cache_creation_tokens + r.cache_read_tokens
            ),
            progress_path=base / f"{r.agent_id}.md" if base else None,
        )
        for r in rows
    ]


def tree_order(agents: list[AgentInfo]) -> list[AgentInfo]:
    """Parents before their children (so a tree can be built in one pass), oldest first."""
    known = {a.agent_id for a in agents}
    children: dict[str | None, list[AgentInfo]] = {}
    for agent in sorted(agents, key=lambda a: (a.created_at, a.agent_id)):
        parent = agent.parent_id if agent.parent_id in known else None
        children.setdefault(parent, []).append(agent)
    ordered: list[AgentInfo] = []
    stack = list(reversed(children.get(None, [])))
    while stack:
        agent = stack.pop()
        ordered.append(agent)
        stack.extend(reversed(children.get(agent.agent_id, [])))
    return ordered


def format_elapsed(agent: AgentInfo, now: float | None = None) -> str:
    if agent.started_at is None:
        return "–"
    end = agent.ended_at or (now if now is not None else time.time())
    seconds = max(0, int(end - agent.started_at))
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


def format_tokens(tokens: int) -> str:
    if tokens >= 1_000_000:
        return f"{tokens / 1_000_000:.1f}M"
    if tokens >= 1_000:
        return f"{tokens / 1_000:.1f}k"
    return str(tokens)


def format_agents(count: int) -> str:
    """The Agents column of an ended run: "1 agent", "4 agents"."""
    return f"{count} agent" if count == 1 else f"{count} agents"


def format_cost(cost: float) -> str:
    return f"${cost:.3f}" if cost < 1 else f"${cost:.2f}"


def progress_markdown(text: str) -> str:
    """The progress file as markdown: its header lines are separate lines, not one paragraph."""
    out = []
    for line in text.splitlines():
        if line and not line.startswith(("#", "- ")):
            line += "  "  # a hard line break in markdown
        out.append(line)
    return "\n".join(out)


def _short(value: str, limit: int = TRANSCRIPT_TEXT_LIMIT) -> str:
    value = value.strip()
    return value if len(value) <= limit else value[:limit] + f"… ({len(value)} chars)"


def _block_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(b.get("text", "")) for b in content if isinstance(b, dict))
    return ""


def transcript_text(messages: list[dict[str, Any]]) -> str:
    """A compact transcript: role + text, tool calls on one line, tool results shortened."""
    lines: list[str] = []
    for message in messages:
        role = str(message.get("role", "?"))
        content = message.get("content")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        for block in blocks if isinstance(blocks, list) else []:
            if not isinstance(block, dict):
                continue
            kind = block.get("type")
            if kind == "text" and str(block.get("text", "")).strip():
                lines.append(f"{role}: {_short(str(block['text']))}")
            elif kind == "tool_use":
                args = json.dumps(block.get("input", {}), ensure_ascii=False)
                lines.append(f"  → {block.get('name')}({_short(args, 200)})")
            elif kind == "tool_result":
                flag = " ERROR" if block.get("is_error") else ""
                lines.append(f"  ←{flag} {_short(_block_text(block.get('content', '')), 300)}")
    return "\n".join(lines)


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))


def format_event(event: ev.Event) -> str:
    """One line for the events list."""
    who = getattr(event, "agent_id", None)
    prefix = f"{_clock(event.ts)}  {event.type:<19}" + (f" {who}" if who else "")
    match event:
        case ev.RunStarted():
            detail = (
                f"{'resumed' if event.resumed else 'started'}: {event.goal.splitlines()[0][:80]}"
            )
        case ev.RunFinished():
            detail = f"{event.status}: {event.summary[:120]} ({format_cost(event.cost_usd)})"
        case ev.AgentSpawned():
            detail = f"{event.role} “{event.title}” (parent {event.parent_id or '-'})"
        case ev.AgentStatusChanged():
            detail = f"{event.previous} → {event.status}" + (
                f" ({event.reason})" if event.reason else ""
            )
        case ev.AgentProgress():
            detail = f"[{event.kind}] {event.note[:160]}"
        case ev.ToolCallStarted():
            detail = f"{event.tool} {event.summary[:120]}"
        case ev.ToolCallFinished():
            detail = (
                f"{event.tool} {'failed' if event.is_error else 'ok'} in {event.duration_s:.1f}s"
            )
        case ev.UsageUpdated():
            detail = (
                f"run {format_tokens(event.run_tokens)} tokens, {format_cost(event.run_cost_usd)}"
            )
        case ev.EscalationRaised():
            detail = f"{event.kind}: {event.question[:140]}"
        case ev.EscalationAnswered():
            detail = f"{event.choice or event.answer[:80]} (by {event.answered_by})"
        case ev.BuildFinished():
            detail = f"{'passed' if event.passed else 'FAILED'} (exit {event.exit_code}, {event.duration_s:.1f}s)"
        case ev.GuardStateChanged():
            detail = "saturated: " + event.reason if event.saturated else "clear"
        case ev.ModelRetrying():
            detail = f"attempt {event.attempt} in {event.delay_s:.1f}s: {event.reason[:100]}"
        case ev.Notice():
            detail = f"{event.level}: {event.message[:160]}"
        case _:
            detail = ""
    return f"{prefix}  {detail}".rstrip()


def format_event_dict(data: dict[str, Any]) -> str:
    """One line for an event from journal.list_events (``{"type", "ts", **data}``)."""
    ts = data.get("ts")
    clock = _clock(float(ts)) if isinstance(ts, int | float) else "--:--:--"
    kind = str(data.get("type", "event"))
    who = data.get("agent_id")
    rest = {k: v for k, v in data.items() if k not in ("type", "ts", "run_id", "agent_id")}
    detail = ", ".join(f"{k}={str(v)[:100]}" for k, v in rest.items())
    return f"{clock}  {kind:<19}" + (f" {who}" if who else "") + f"  {detail}"
