"""The model-facing tools (PRODUCT.md, "Model-facing tool contract") and their handlers.

Each handler is ``async (run, agent, args) -> dict``; a ``ToolError`` becomes an is_error result.
The prompt explains the protocol; these handlers enforce it.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from agentray.errors import ToolError
from agentray.escalation import EscalationKind, model_options
from agentray.states import ACTIVE, SETTLED, TERMINAL, WORKER_ROLES, AgentStatus, Role, RunStatus
from agentray.tools import run_command
from agentray.tools._workspace import finish_in_thread

from ._run import Run
from ._state import AgentState
from ._toolkit import Tool, prop

__all__ = [
    "RESUMABLE_TOOLS",
    "conclude_finish",
    "describe_call",
    "refusal_for_missing_tool",
    "tool_schemas",
    "tools_for",
]

# Tools without side effects to fear, run again when a run resumes mid-call: monitors wait
# again, escalate re-attaches to its journal row, report_blocker blocks again.
RESUMABLE_TOOLS = frozenset({"escalate", "await_agents", "check_agents", "sleep", "report_blocker"})
DEFAULT_AWAIT_TIMEOUT_S = 900.0


# ---------------------------------------------------------------------------- orchestration
async def spawn_agent(run: Run, agent: AgentState, args: dict[str, Any]) -> dict[str, Any]:
    task = args["task"].strip()
    if not task:
        raise ToolError("spawn_agent: task must not be empty")
    cfg = run.config
    if agent.depth + 1 > cfg.max_depth:
        raise ToolError(
            f"spawn refused by cap max_depth={cfg.max_depth}: agents at depth {agent.depth} may not spawn"
        )
    if run.spawned_count() >= cfg.max_agents:
        raise ToolError(
            f"spawn refused by cap max_agents={cfg.max_agents}: this run has spawned {run.spawned_count()} agents; "
            "reuse results, or finish"
        )
    if run.budget_usd is not None and run.cost_usd >= run.budget_usd:
        raise ToolError(
            f"spawn refused by cap budget_usd={run.budget_usd:.2f}: ${run.cost_usd:.2f} spent"
        )
    depends_on = tuple(dict.fromkeys(args.get("depends_on") or ()))
    ancestors = _lineage(run, agent)
    for dep in depends_on:
        if dep not in run.agents:
            raise ToolError(f"spawn_agent: unknown agent in depends_on: {dep}")
        if dep in ancestors:
            who = "you" if dep == agent.agent_id else f"{dep}, an ancestor of yours"
            raise ToolError(
                f"spawn_agent: depends_on names {who}; it cannot be done before the new agent is, "
                "so the new agent would wait forever"
            )
    mitigates = args.get("mitigates")
    target = None
    if mitigates:
        target = run.ledger.mitigation_target(mitigates)
    role = Role(args.get("role") or (Role.FIXER if mitigates else Role.WORKER))
    # The agent, its mitigation and the call's result land in one transaction: after a crash the
    # spawn either never happened or the model gets this very result back (never a second agent).
    with run.journal.transaction():
        child = run.new_agent(
            role=role,
            title=args.get("title") or "",
            task=task,
            parent=agent,
            depends_on=depends_on,
            mitigates=mitigates,
        )
        if target is not None:
            run.ledger.record_mitigation(target, child.agent_id)
        result = {
            "agent_id": child.agent_id,
            "status": child.status.value,
            "progress_file": child.progress.relative_path,
        }
        if "_call_id" in args:
            run.journal.finish_tool_call(
                run.run_id, args["_call_id"], result=result, is_error=False
            )
    run.progress(agent, "UPDATE", f"spawned {child.agent_id} ({role.value}): {child.title}")
    run.start_agent(child)
    return result


def _lineage(run: Run, agent: AgentState) -> set[str]:
    """The agent and every agent above it."""
    found: set[str] = set()
    current: AgentState | None = agent
    while current is not None and current.agent_id not in found:
        found.add(current.agent_id)
        current = run.agents.get(current.parent_id) if current.parent_id else None
    return found


def _resolve_ids(run: Run, agent: AgentState, ids: list[str] | None) -> list[AgentState]:
    if not ids:
        children = [a for a in run.agents.values() if a.parent_id == agent.agent_id]
        return children
    unknown = [i for i in ids if i not in run.agents]
    if unknown:
        raise ToolError(f"unknown agent ids: {', '.join(unknown)}")
    return [run.agents[i] for i in dict.fromkeys(ids)]


async def await_agents(run: Run, agent: AgentState, args: dict[str, Any]) -> dict[str, Any]:
    targets = _resolve_ids(run, agent, args.get("agent_ids"))
    if not targets:
        raise ToolError("await_agents: no agents to await (give agent_ids, or spawn first)")
    mode = args.get("mode") or "all"
    timeout = args.get("timeout_s")
    timeout_s = DEFAULT_AWAIT_TIMEOUT_S if timeout is None else float(timeout)
    initially_terminal = {a.agent_id for a in targets if a.status in TERMINAL}

    def ready() -> bool:
        if any(run.ledger.unhandled(a) for a in targets):
            return True
        if mode == "any":
            return any(a.status in TERMINAL for a in targets) or bool(initially_terminal)
        return all(a.status in TERMINAL for a in targets)

    completed = await run.changes.wait_for(ready, timeout_s)
    result: dict[str, Any] = {
        "agents": [a.brief() for a in targets],
        "timed_out": not completed,
        "still_active": [a.agent_id for a in targets if a.status in ACTIVE],
    }
    return _with_notices(run, agent, result)


async def check_agents(run: Run, agent: AgentState, args: dict[str, Any]) -> dict[str, Any]:
    ids = args.get("agent_ids")
    if ids:
        targets = _resolve_ids(run, agent, ids)
    else:
        targets = [
            a for a in run.agents.values() if a.agent_id != agent.agent_id and not a.is_orchestrator
        ]
    tail_lines = args.get("tail_lines")
    tail = int(tail_lines) if tail_lines is not None else 5
    rows = []
    for target in targets:
        row = target.brief()
        row.update(
            {
                "title": target.title,
                "role": target.role,
                "parent_id": target.parent_id,
                "turns": target.turns,
                "cost_usd": round(target.cost_usd, 6),
                "progress_file": target.progress.relative_path,
                "progress_tail": target.progress.tail(tail),
            }
        )
        if target.mitigated_by:
            row["mitigated_by"] = target.mitigated_by
        rows.append(row)
    counts: dict[str, int] = {}
    for a in run.agents.values():
        if not a.is_orchestrator:
            counts[a.status] = counts.get(a.status, 0) + 1
    result: dict[str, Any] = {"agents": rows, "counts": counts, "cost_usd": round(run.cost_usd, 6)}
    if run.last_build is not None:
        result["last_build"] = {k: run.last_build[k] for k in ("passed", "exit_code")}
    return _with_notices(run, agent, result)


async def sleep(run: Run, agent: AgentState, args: dict[str, Any]) -> dict[str, Any]:
    seconds = float(args["seconds"])
    loop = asyncio.get_running_loop()
    before = {a.agent_id: a.status for a in run.agents.values()}
    notices_before = len(run.notices)
    started = loop.time()

    def changed() -> list[AgentState]:
        return [
            a
            for a in run.agents.values()
            if a.agent_id != agent.agent_id
            and a.status in SETTLED
            and before.get(a.agent_id) != a.status
        ]

    woke = await run.changes.wait_for(
        lambda: bool(changed()) or len(run.notices) > notices_before, seconds
    )
    result: dict[str, Any] = {
        "slept_s": round(loop.time() - started, 3),
        "woke_early": woke,
        "changes": [a.brief() for a in changed()],
        "active": [a.agent_id for a in run.active_workers()],
    }
    return _with_notices(run, agent, result)


def _with_notices(run: Run, agent: AgentState, result: dict[str, Any]) -> dict[str, Any]:
    if agent.is_orchestrator:
        notes = run.drain_notices()
        if notes:
            result["notices"] = notes
    return result


async def run_build(run: Run, agent: AgentState, args: dict[str, Any]) -> dict[str, Any]:
    return await run.run_build(agent)


async def escalate(run: Run, agent: AgentState, args: dict[str, Any]) -> dict[str, Any]:
    call_id = args.get("_call_id")
    existing = run.journal.find_escalation_by_call(run.run_id, call_id) if call_id else None
    if existing is not None and existing.answered_at is not None:
        return {"answer": existing.answer, "choice": existing.choice}
    options = model_options(args.get("options") or ())
    run.progress(agent, "UPDATE", f"asked the human: {args['question']}")
    kind = EscalationKind.QUESTION if args.get("options") else EscalationKind.APPROVAL
    answer = await run.ledger.ask(
        agent,
        kind=kind,
        question=args["question"],
        context=args.get("context") or "",
        options=options,
        call_id=call_id,
        existing_id=existing.escalation_id if existing is not None else None,
    )
    chosen = next((o for o in options if o.option_id == answer.option_id), None)
    return {
        "answer": answer.text.strip() or (chosen.label if chosen else "(no answer)"),
        "choice": chosen.label if chosen else None,
    }


async def resume_agent(run: Run, agent: AgentState, args: dict[str, Any]) -> dict[str, Any]:
    target = run.ledger.mitigation_target(args["agent_id"])
    run.ledger.guide(target, agent, args["message"])
    run.progress(agent, "UPDATE", f"resumed {target.agent_id} with guidance")
    return {"agent_id": target.agent_id, "status": target.status.value}


async def cancel_agent(run: Run, agent: AgentState, args: dict[str, Any]) -> dict[str, Any]:
    target_id = args["agent_id"]
    target = run.agents.get(target_id)
    if target is None:
        raise ToolError(f"unknown agent {target_id}")
    if target.agent_id == agent.agent_id or target.is_orchestrator:
        raise ToolError("an agent cannot cancel itself or the orchestrator; use finish or complete")
    if target.status in TERMINAL:
        raise ToolError(f"{target_id} has already ended ({target.status})")
    reason = args.get("reason") or f"cancelled by {agent.agent_id}"
    also = [a.agent_id for a in run.descendants(target_id) if a.status in ACTIVE]
    killed = await run.ledger.cancel(target_id, reason)
    run.progress(agent, "UPDATE", f"cancelled {target_id}: {reason}")
    return {
        "agent_id": target_id,
        "status": target.status.value,
        "processes_killed": killed,
        "also_cancelled": also,
    }


async def finish(run: Run, agent: AgentState, args: dict[str, Any]) -> dict[str, Any]:
    outcome = args["outcome"]
    problems = run.finish_blockers(outcome)
    if problems:
        raise ToolError("finish refused: " + "; ".join(problems))
    return conclude_finish(run, agent, args["summary"], outcome)


def conclude_finish(run: Run, agent: AgentState, summary: str, outcome: str) -> dict[str, Any]:
    """What an accepted finish does; also replayed when a crash came between it and the run's end."""
    status = RunStatus.SUCCEEDED if outcome == "success" else RunStatus.FAILED
    run.ledger.record_result(agent, summary)
    run.set_status(
        agent,
        AgentStatus.DONE if outcome == "success" else AgentStatus.FAILED,
        f"finish: {outcome}",
    )
    # a success with failed or cancelled workers says so (a failure's summary is about failing)
    report = run.plan_report() if status == RunStatus.SUCCEEDED else ""
    run.conclude(status, f"{summary}\n\n{report}" if report else summary)
    return {"finished": True, "status": status.value}


# ---------------------------------------------------------------------------- worker tools
async def read_file(run: Run, agent: AgentState, args: dict[str, Any]) -> dict[str, Any]:
    # off the loop: it streams and stops at its window, but a disk can still be slow
    return await asyncio.to_thread(
        run.files.read_file,
        args["path"],
        args.get("offset") or 0,
        args.get("limit") or 2000,
        max_chars=run.config.tool_output_limit,
    )


async def write_file(run: Run, agent: AgentState, args: dict[str, Any]) -> dict[str, Any]:
    run.snapshots.claim(agent.agent_id, args.get("_call_id"), args["path"])
    result = await finish_in_thread(run.files.write_file, args["path"], args["content"])
    run.progress(agent, "UPDATE", f"wrote {result.get('path', args['path'])}")
    return result


async def edit_file(run: Run, agent: AgentState, args: dict[str, Any]) -> dict[str, Any]:
    run.snapshots.claim(agent.agent_id, args.get("_call_id"), args["path"])
    result = await finish_in_thread(
        run.files.edit_file,
        args["path"],
        args["old_string"],
        args["new_string"],
        bool(args.get("replace_all")),
    )
    run.progress(agent, "UPDATE", f"edited {result.get('path', args['path'])}")
    return result


async def list_files(run: Run, agent: AgentState, args: dict[str, Any]) -> dict[str, Any]:
    return await asyncio.to_thread(run.files.list_files, args.get("path") or ".", args.get("glob"))


async def search_files(run: Run, agent: AgentState, args: dict[str, Any]) -> dict[str, Any]:
    return await asyncio.to_thread(
        run.files.search_files, args["pattern"], args.get("path") or ".", args.get("glob")
    )


async def run_command_tool(run: Run, agent: AgentState, args: dict[str, Any]) -> dict[str, Any]:
    ceiling = run.config.command_timeout_s
    timeout = min(float(args.get("timeout_s") or ceiling), ceiling)
    result = await run_command(
        args["command"],
        cwd=run.workspace,
        registry=run.processes,
        owner=agent.agent_id,
        sandbox=run.sandbox,
        timeout_s=timeout,
        max_output=run.config.tool_output_limit,
    )
    state = "timed out" if result.timed_out else f"exit {result.exit_code}"
    run.progress(agent, "UPDATE", f"ran `{args['command'][:200]}` ({state})")
    return result.to_dict()


async def report_progress(run: Run, agent: AgentState, args: dict[str, Any]) -> dict[str, Any]:
    run.progress(agent, "UPDATE", args["note"])
    if agent.progress.write_error:
        raise ToolError(f"the note is in the journal, but {agent.progress.write_error}")
    return {"ok": True, "progress_file": agent.progress.relative_path}


async def report_blocker(run: Run, agent: AgentState, args: dict[str, Any]) -> dict[str, Any]:
    return await run.ledger.block(agent, args["description"])


async def complete(run: Run, agent: AgentState, args: dict[str, Any]) -> dict[str, Any]:
    run.ledger.record_result(agent, args["summary"])
    return {"ok": True}


# ---------------------------------------------------------------------------- catalogue
_S, _I, _N, _B, _A = "string", "integer", "number", "boolean", "array"

ORCHESTRATION_TOOLS = {
    t.name: t
    for t in (
        Tool(
            "spawn_agent",
            "Start a background agent at once (never waits). It writes agent-responses/<id>.md as it works. "
            "Use depends_on to start it only after other agents are done; use mitigates=<agent_id> for the one "
            "mitigation a blocker gets.",
            {
                "task": prop(
                    _S,
                    "Everything the agent needs to know: goal, files, constraints, definition of done.",
                ),
                "title": prop(_S, "A short title (a few words)."),
                "role": prop(
                    _S,
                    "worker edits code; explorer reads and reports; fixer repairs a failure.",
                    enum=[r.value for r in WORKER_ROLES],
                ),
                "depends_on": prop(_A, "Agent ids that must be done before this agent starts."),
                "mitigates": prop(
                    _S, "Agent id of the blocker this agent mitigates (one mitigation per blocker)."
                ),
            },
            spawn_agent,
            required=("task",),
        ),
        Tool(
            "await_agents",
            "Block until the agents finish (mode all) or one does (mode any); returns early when one blocks. "
            "Other agents keep running meanwhile.",
            {
                "agent_ids": prop(_A, "Agents to wait for (default: the ones you spawned)."),
                "mode": prop(_S, "all (default) or any.", enum=["all", "any"]),
                "timeout_s": prop(
                    _N,
                    "Give up waiting after this many seconds (default 900).",
                    minimum=0,
                    maximum=86400,
                ),
            },
            await_agents,
            waits=True,
        ),
        Tool(
            "check_agents",
            "Look without waiting: status and the tail of each agent's progress file.",
            {
                "agent_ids": prop(_A, "Agents to look at (default: all)."),
                "tail_lines": prop(
                    _I, "Progress lines per agent (default 5).", minimum=0, maximum=200
                ),
            },
            check_agents,
        ),
    )
}

ORCHESTRATOR_ONLY = {
    t.name: t
    for t in (
        Tool(
            "sleep",
            "Wait up to `seconds`, waking early when any agent finishes, fails or blocks; says what changed.",
            {"seconds": prop(_N, "How long to wait at most.", minimum=0, maximum=3600)},
            sleep,
            required=("seconds",),
            waits=True,
        ),
        Tool("run_build", "Run the run's configured build / validation command.", {}, run_build),
        Tool(
            "escalate",
            "Ask the human a question and wait for the answer (use only after the one mitigation failed, or for "
            "real product decisions). Other agents keep working.",
            {
                "question": prop(_S, "The question, one or two sentences."),
                "context": prop(_S, "What the human needs to decide (markdown)."),
                "options": prop(_A, "Choices to offer as buttons."),
            },
            escalate,
            required=("question",),
            waits=True,
        ),
        Tool(
            "resume_agent",
            "Unblock a blocked (or restart a failed) agent with guidance; this is its one mitigation.",
            {"agent_id": prop(_S, "The blocked agent."), "message": prop(_S, "Guidance for it.")},
            resume_agent,
            required=("agent_id", "message"),
        ),
        Tool(
            "cancel_agent",
            "Stop an agent, its helpers and all their processes.",
            {"agent_id": prop(_S, "The agent to cancel."), "reason": prop(_S, "Why.")},
            cancel_agent,
            required=("agent_id",),
        ),
        Tool(
            "finish",
            "End the run. Refused while agents are active, and (for success with a build command) until a "
            "run_build passed after the last agent finished.",
            {
                "summary": prop(_S, "What was done, for the human."),
                "outcome": prop(_S, "success or failure.", enum=["success", "failure"]),
            },
            finish,
            required=("summary", "outcome"),
        ),
    )
}

READ_TOOLS = {
    t.name: t
    for t in (
        Tool(
            "read_file",
            "Read a text file of the workspace, with line numbers; large files come in pages "
            "(next_offset). File names that are not UTF-8 are written with \\xHH escapes.",
            {
                "path": prop(_S, "Path relative to the workspace."),
                "offset": prop(_I, "First line (0-based).", minimum=0),
                "limit": prop(_I, "Number of lines (default 2000).", minimum=1, maximum=20000),
            },
            read_file,
            required=("path",),
        ),
        Tool(
            "list_files",
            "List files under a folder of the workspace (recursive; what git ignores is left "
            "out). Bytes of a name that are not "
            "UTF-8 are shown as \\xHH (a real backslash as \\\\); use the name as shown.",
            {
                "path": prop(_S, "Folder (default: the workspace)."),
                "glob": prop(_S, "Filter such as *.py."),
            },
            list_files,
        ),
        Tool(
            "search_files",
            "Search file contents with a regular expression, leaving out what git ignores "
            "(binary and very large files are "
            "skipped and counted).",
            {
                "pattern": prop(_S, "Python regular expression."),
                "path": prop(_S, "Folder (default: the workspace)."),
                "glob": prop(_S, "Filter such as *.py."),
            },
            search_files,
            required=("pattern",),
        ),
        Tool(
            "report_progress",
            "Add an [UPDATE] line to your progress file.",
            {"note": prop(_S, "One line: what you did or found.")},
            report_progress,
            required=("note",),
        ),
    )
}

WORKER_TOOLS = {
    t.name: t
    for t in (
        Tool(
            "write_file",
            "Create or overwrite a file of the workspace.",
            {
                "path": prop(_S, "Path relative to the workspace."),
                "content": prop(_S, "The whole new content."),
            },
            write_file,
            required=("path", "content"),
        ),
        Tool(
            "edit_file",
            "Replace old_string by new_string in a file (old_string must be unique unless replace_all).",
            {
                "path": prop(_S, "Path relative to the workspace."),
                "old_string": prop(_S, "Exact text to replace."),
                "new_string": prop(_S, "Replacement."),
                "replace_all": prop(_B, "Replace every occurrence."),
            },
            edit_file,
            required=("path", "old_string", "new_string"),
        ),
        Tool(
            "run_command",
            "Run a shell command in the workspace (own process group, timeout, secrets scrubbed).",
            {
                "command": prop(_S, "The shell command."),
                "timeout_s": prop(_N, "Timeout in seconds.", minimum=1, maximum=3600),
            },
            run_command_tool,
            required=("command",),
        ),
        Tool(
            "report_blocker",
            "Report that you cannot go on; waits for the one mitigation and returns what it brought.",
            {"description": prop(_S, "What blocks you and what you tried.")},
            report_blocker,
            required=("description",),
            waits=True,
        ),
        Tool(
            "complete",
            "Finish your task with a summary of the result (it goes to [RESULT] in your progress file).",
            {"summary": prop(_S, "What you did and the outcome.")},
            complete,
            required=("summary",),
        ),
    )
}


def tools_for(run: Run, agent: AgentState) -> dict[str, Tool]:
    if agent.is_orchestrator:
        return {**ORCHESTRATION_TOOLS, **ORCHESTRATOR_ONLY, **READ_TOOLS}
    tools = {**READ_TOOLS, **WORKER_TOOLS}
    if agent.depth < run.config.max_depth:
        tools.update(ORCHESTRATION_TOOLS)
    return tools


_SCHEMAS_KEPT = 64
# the ids of a tool set's tools -> (those tools, kept alive so the ids stay theirs; their schemas)
_schemas: dict[tuple[int, ...], tuple[tuple[Tool, ...], list[dict[str, Any]]]] = {}


def tool_schemas(tools: dict[str, Tool]) -> list[dict[str, Any]]:
    """The schemas of ``tools`` as the model gets them: one list per set of tools, shared by every
    agent given that set (nobody changes it), so the model client encodes it once, not per agent."""
    key = tuple(id(tool) for tool in tools.values())
    kept = _schemas.get(key)
    if kept is None:
        if len(_schemas) >= _SCHEMAS_KEPT:
            _schemas.clear()
        kept = _schemas[key] = (tuple(tools.values()), [t.schema() for t in tools.values()])
    return kept[1]


def refusal_for_missing_tool(run: Run, agent: AgentState, name: str, tools: dict[str, Tool]) -> str:
    if name in ORCHESTRATION_TOOLS:
        return (
            f"{name} refused by cap max_depth={run.config.max_depth}: agents at depth {agent.depth} "
            "may not spawn or monitor helpers; do the work yourself or report_blocker"
        )
    if name == "finish":
        return "only the orchestrator can finish the run; call complete(summary) when your task is done"
    if name in ORCHESTRATOR_ONLY:
        return f"{name} is an orchestrator tool; workers use report_blocker to ask for help"
    if name in WORKER_TOOLS:
        return f"{name} is a worker tool; the orchestrator delegates work with spawn_agent"
    return f"unknown tool {name!r}; available tools: {', '.join(tools)}"


def describe_call(name: str, raw: Any) -> str:
    if not isinstance(raw, dict):
        return name
    for key in (
        "command",
        "path",
        "title",
        "task",
        "question",
        "agent_ids",
        "agent_id",
        "note",
        "description",
        "summary",
    ):
        if raw.get(key):
            value = raw[key] if isinstance(raw[key], str) else json.dumps(raw[key])
            value = " ".join(value.split())
            return f"{name}: {value[:120]}"
    return name
