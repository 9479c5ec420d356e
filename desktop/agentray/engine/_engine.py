"""The engine: runs in one process, on one asyncio loop. The CLI and the tray drive it through
these commands and learn everything from its event bus."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import shlex
import shutil
import time
from collections.abc import Callable
from importlib.resources import files
from pathlib import Path

from agentray import events as ev
from agentray.errors import BadInputError, SandboxUnavailableError
from agentray.escalation import Answer, AnsweredBy, Escalation, EscalationKind
from agentray.journal import AgentRow, Journal
from agentray.model._types import ModelClient, RetryNotice, Usage
from agentray.sandbox import NO_SANDBOX_HINT, Sandbox, detect_sandbox
from agentray.states import ACTIVE, TERMINAL, AgentStatus, Role, RunStatus

from ._agent_loop import InProcessRunner
from ._bus import EventBus
from ._config import RunConfig
from ._guard import GuardReading, SystemGuard
from ._ownership import RunLock
from ._processes import reap_orphans
from ._progress import ProgressFile
from ._run import INTERRUPTED, PROGRESS_FAILURE, RESUMABLE_REASONS, AgentRunner, Run, RunOutcome
from ._state import AgentState
from ._views import EngineView, RunView, view_of_run

__all__ = ["Engine", "check_build_command", "validate_config"]

log = logging.getLogger(__name__)

ClientFactory = Callable[[Callable[[RetryNotice], None]], ModelClient]

SHELL_BUILTINS = {
    "cd",
    "export",
    "true",
    "false",
    "test",
    "[",
    "echo",
    "exit",
    "set",
    ".",
    "source",
    "env",
}


def load_prompts() -> dict[str, str]:
    base = files("agentray.resources") / "prompts"
    return {
        name: (base / f"{name}.md").read_text(encoding="utf-8")
        for name in ("orchestrator", "worker")
    }


def check_build_command(command: str | None) -> None:
    """A build command whose program cannot be found is bad input, caught before the run starts."""
    if command is None:
        return
    if not command.strip():
        raise BadInputError("--build is empty")
    try:
        words = shlex.split(command)
    except ValueError as error:
        raise BadInputError(f"--build cannot be parsed: {error}") from None
    program = next((w for w in words if "=" not in w or w.startswith(("/", "."))), words[0])
    if program in SHELL_BUILTINS or shutil.which(program) is not None:
        return
    raise BadInputError(f"--build cannot start: {program!r} is not a program on PATH")


def validate_config(config: RunConfig) -> RunConfig:
    if not config.goal.strip():
        raise BadInputError("the goal is empty")
    workspace = Path(config.workspace).expanduser()
    if not workspace.exists():
        raise BadInputError(f"--dir {config.workspace}: no such directory")
    if not workspace.is_dir():
        raise BadInputError(f"--dir {config.workspace}: not a directory")
    if not os.access(workspace, os.R_OK | os.W_OK | os.X_OK):
        raise BadInputError(f"--dir {config.workspace}: not readable and writable")
    for name in ("max_agents", "max_concurrent", "max_turns"):
        if getattr(config, name) < 1:
            raise BadInputError(f"--{name.replace('_', '-')} must be at least 1")
    if config.max_depth < 1:
        raise BadInputError("--max-depth must be at least 1 (the orchestrator's workers)")
    if config.budget_usd is not None and config.budget_usd <= 0:
        raise BadInputError("--budget must be a positive number of USD")
    check_build_command(config.build_command)
    if config.sandbox:
        status = detect_sandbox()
        if not status.available:
            raise SandboxUnavailableError(status.problem or NO_SANDBOX_HINT)
    return config.replace(workspace=str(workspace.resolve()))


class Engine:
    def __init__(
        self,
        client_factory: ClientFactory,
        *,
        journal: Journal | None = None,
        guard: SystemGuard | None = None,
        context_window: Callable[[str], int] | None = None,
        runner: AgentRunner | None = None,
    ) -> None:
        self.runner: AgentRunner = runner or InProcessRunner()
        self.bus = EventBus()
        self.journal = journal or Journal()
        self.client = client_factory(self._on_retry)
        self.guard = guard or SystemGuard()
        self.guard.on_change = self._on_guard_change
        self.prompts = load_prompts()
        self._context_window = context_window or _pricing_window
        self.runs: dict[str, Run] = {}
        self.tasks: dict[str, asyncio.Task[RunOutcome]] = {}

    # ---------------------------------------------------------------- listening
    def subscribe(self, listener: Callable[[ev.Event], None]) -> Callable[[], None]:
        return self.bus.subscribe(listener)

    def _on_retry(self, notice: RetryNotice) -> None:
        run_id = next((r.run_id for r in self.runs.values() if notice.agent_id in r.agents), "")
        self.bus.publish(
            ev.ModelRetrying(
                run_id=run_id,
                agent_id=notice.agent_id,
                attempt=notice.attempt,
                delay_s=notice.delay_s,
                reason=notice.reason,
            )
        )

    def _on_guard_change(self, reading: GuardReading) -> None:
        self.bus.publish(
            ev.GuardStateChanged(
                run_id="",
                saturated=reading.saturated,
                cpu_percent=reading.cpu_percent,
                memory_available_percent=reading.memory_available_percent,
                reason=reading.reason,
            )
        )

    # ---------------------------------------------------------------- commands
    def _sandbox_for(self, config: RunConfig) -> Sandbox:
        if not config.sandbox:
            return Sandbox.unconfined()
        status = detect_sandbox()
        if not status.available:
            raise SandboxUnavailableError(status.problem or NO_SANDBOX_HINT)
        return Sandbox.for_workspace(
            status, config.workspace, allow_network=config.allow_network, journal=self.journal.path
        )

    def _make_run(self, run_id: str, config: RunConfig) -> Run:
        window = config.context_window or self._context_window(config.model)
        sandbox = self._sandbox_for(config)
        run = Run(
            sandbox=sandbox,
            run_id=run_id,
            config=config,
            journal=self.journal,
            client=self.client,
            publish=self.bus.publish,
            guard=self.guard,
            prompts=self.prompts,
            context_window=window,
            runner=self.runner,
        )
        self.runs[run_id] = run
        return run

    def _launch(self, run: Run, starters: list[tuple[AgentState, bool]], lock: RunLock) -> None:
        self.guard.start()  # sample the machine while runs exist
        task = asyncio.get_running_loop().create_task(run.main(starters), name=f"run-{run.run_id}")
        task.add_done_callback(
            lambda _: lock.release()
        )  # the run is over: another process may own it
        self.tasks[run.run_id] = task

    async def start_run(self, config: RunConfig) -> str:
        """Validate, journal and start a run in the background; returns its id."""
        config = validate_config(config)
        run_id = f"r{time.strftime('%m%d')}-{secrets.token_hex(2)}"
        while self.journal.get_run(run_id) is not None:
            run_id = f"r{time.strftime('%m%d')}-{secrets.token_hex(2)}"
        lock = RunLock.acquire(self.journal.path, run_id)
        try:
            self._create_and_start(run_id, config, lock)
        except BaseException:
            lock.release()
            raise
        return run_id

    def _create_and_start(self, run_id: str, config: RunConfig, lock: RunLock) -> None:
        self.journal.create_run(
            run_id,
            goal=config.goal,
            workspace=config.workspace,
            config=config.to_dict(),
            pid=os.getpid(),
        )
        run = self._make_run(run_id, config)
        self.bus.publish(
            ev.RunStarted(
                run_id=run_id,
                goal=config.goal,
                workspace=config.workspace,
                model=config.model,
                build_command=config.build_command,
                sandbox=run.sandbox.kind.value,
                allow_network=config.allow_network or not run.sandbox.confined,
            )
        )
        orchestrator = run.new_agent(
            role=Role.ORCHESTRATOR, title="Orchestrator", task=config.goal, parent=None
        )
        self._launch(run, [(orchestrator, False)], lock)

    async def resume_run(
        self, run_ref: str, *, sandbox: bool | None = None, allow_network: bool | None = None
    ) -> str:
        """Continue an interrupted, stopped or failed run from its journal.

        ``sandbox`` / ``allow_network`` change the run's command sandbox from here on (journaled).
        """
        self.journal.mark_interrupted_runs()
        row = self.journal.get_run(run_ref)
        if row is None:
            raise BadInputError(f"no run {run_ref!r} (see `agentray runs`)")
        if row.run_id in self.tasks and not self.tasks[row.run_id].done():
            raise BadInputError(f"run {row.run_id} is already running here")
        lock = RunLock.acquire(self.journal.path, row.run_id)  # RunBusyError names the owner
        try:
            return await self._resume_locked(
                row.run_id, lock, sandbox=sandbox, allow_network=allow_network
            )
        except BaseException:
            lock.release()
            raise

    async def _resume_locked(
        self, run_id: str, lock: RunLock, *, sandbox: bool | None, allow_network: bool | None
    ) -> str:
        row = self.journal.get_run(
            run_id
        )  # read again: the owner we waited out may have changed it
        assert row is not None
        if row.status == RunStatus.RUNNING:
            # Its lock was free, so the process that drove it is gone (whatever its pid says now).
            self.journal.update_run(row.run_id, status=RunStatus.INTERRUPTED.value)
            self.journal.add_event(row.run_id, "process_died", {"pid": row.pid})
        if row.status == RunStatus.SUCCEEDED:
            raise BadInputError(f"run {row.run_id} already succeeded; nothing to resume")
        config = RunConfig.from_dict(row.config)
        if not Path(config.workspace).is_dir():
            raise BadInputError(f"the workspace of run {row.run_id} is gone: {config.workspace}")
        changes = {
            name: value
            for name, value in (("sandbox", sandbox), ("allow_network", allow_network))
            if value is not None and value != getattr(config, name)
        }
        if changes:
            config = config.replace(**changes)
        spent = [
            a
            for a in self.journal.list_agents(row.run_id)
            if a.role == Role.ORCHESTRATOR and a.turns >= config.max_turns
        ]
        if spent:
            raise BadInputError(
                f"run {row.run_id} cannot be resumed: its orchestrator used all {config.max_turns} of its "
                "turns; start a new run with a narrower goal"
            )
        self._sandbox_for(config)  # refuse before touching anything when no sandbox is available
        if changes:
            self.journal.update_run(row.run_id, config=config.to_dict())
        orphans = await reap_orphans(self.journal, row.run_id)
        run = self._make_run(row.run_id, config)
        run.crashed_before_end = self.journal.ended_by_crash(row.run_id)
        if orphans:
            run.notice(
                f"killed {orphans} processes left running by the interrupted run", level="warning"
            )
        if row.cost_usd:
            run.cost_usd = row.cost_usd
            run.tokens = row.tokens or 0
        starters: list[tuple[AgentState, bool]] = []
        for agent_row in self.journal.list_agents(row.run_id):
            agent = _restore_agent(run, agent_row)
            run.agents[agent.agent_id] = agent
            if agent.is_orchestrator:
                run.slots.exempt.add(agent.agent_id)
            resumable = (
                agent.status in ACTIVE
                or (
                    agent.status == AgentStatus.CANCELLED
                    and agent.status_reason in RESUMABLE_REASONS
                )
                or (
                    agent.status == AgentStatus.FAILED
                    and (agent.status_reason or "").startswith(PROGRESS_FAILURE)
                )
            )
            if agent.is_orchestrator:
                resumable = True
            if agent.status in TERMINAL and not agent.is_orchestrator:
                run.settle_seq += 1
            if resumable:
                starters.append((agent, True))
        for agent, _ in starters:
            agent.status = AgentStatus.QUEUED
            agent.status_reason = "resumed"
            self.journal.update_agent(
                row.run_id, agent.agent_id, status=AgentStatus.QUEUED.value, status_reason="resumed"
            )
            agent.progress.set_status(AgentStatus.QUEUED)
        for escalation in self.journal.pending_escalations(row.run_id):
            # the model's own questions re-attach when its escalate call runs again; the engine's
            # (blocker, build, budget) are asked again if their cause still holds
            if escalation.kind not in (EscalationKind.QUESTION, EscalationKind.APPROVAL):
                self.journal.answer_escalation(
                    escalation.escalation_id,
                    answer="expired: the run was resumed",
                    choice=None,
                    answered_by=AnsweredBy.ENGINE.value,
                )
        self.journal.update_run(
            row.run_id, status="running", pid=os.getpid(), ended_at=None, summary=""
        )
        self.journal.clear_stop_request(row.run_id)
        self.bus.publish(
            ev.RunStarted(
                run_id=row.run_id,
                goal=config.goal,
                workspace=config.workspace,
                model=config.model,
                build_command=config.build_command,
                resumed=True,
                sandbox=run.sandbox.kind.value,
                allow_network=config.allow_network or not run.sandbox.confined,
            )
        )
        self._launch(run, starters, lock)
        return row.run_id

    async def wait(self, run_id: str) -> RunOutcome:
        """Wait for a run to end; never raises CancelledError for the run's own cancellation."""
        task = self.tasks[run_id]
        waiter = asyncio.current_task()
        try:
            await asyncio.shield(task)
        except asyncio.CancelledError:
            # the waiter itself was cancelled (also in the moment the run ended): pass it on
            if not task.done() or (waiter is not None and waiter.cancelling()):
                raise
        run = self.runs[run_id]
        return run.outcome or INTERRUPTED

    async def run(self, config: RunConfig) -> tuple[str, RunOutcome]:
        run_id = await self.start_run(config)
        return run_id, await self.wait(run_id)

    def stop_run(
        self,
        run_id: str,
        *,
        status: RunStatus = RunStatus.CANCELLED,
        reason: str = "stopped by the user",
    ) -> bool:
        run = self.runs.get(run_id)
        task = self.tasks.get(run_id)
        if run is None or task is None or task.done():
            return False
        run.request_stop(status, reason)
        return True

    def stop_all(
        self, *, status: RunStatus = RunStatus.CANCELLED, reason: str = "Stop all"
    ) -> list[str]:
        return [
            run_id
            for run_id in list(self.runs)
            if self.stop_run(run_id, status=status, reason=reason)
        ]

    def active_runs(self) -> list[Run]:
        return [self.runs[r] for r, t in self.tasks.items() if not t.done()]

    def pending_escalations(self) -> list[Escalation]:
        return [e for run in self.runs.values() for e in run.pending_escalations()]

    def answer_escalation(self, escalation_id: str, answer: Answer) -> bool:
        """Answer a pending escalation; False when none is pending under that id (already
        answered, or its run ended). An option id the escalation does not have is BadInputError."""
        for run in self.runs.values():
            if any(e.escalation_id == escalation_id for e in run.pending_escalations()):
                return run.ledger.answer(escalation_id, answer)
        return False

    async def cancel_agent(
        self, run_id: str, agent_id: str, reason: str = "cancelled by the user"
    ) -> int:
        run = self.runs[run_id]
        if agent_id not in run.agents:
            raise BadInputError(f"no agent {agent_id} in run {run_id}")
        if run.agents[agent_id].is_orchestrator:
            self.stop_run(run_id, reason=reason)
            return 0
        return await run.ledger.cancel(agent_id, reason)

    # ---------------------------------------------------------------- reading
    def view(self) -> EngineView:
        """Frozen copies of every live run, its agents and pending escalations (for the UI)."""
        live = {run_id for run_id, task in self.tasks.items() if not task.done()}
        return EngineView(
            runs=tuple(view_of_run(run, live=run.run_id in live) for run in self.runs.values()),
            escalations=tuple(self.pending_escalations()),
        )

    def run_view(self, run_id: str) -> RunView | None:
        run = self.runs.get(run_id)
        if run is None:
            return None
        task = self.tasks.get(run_id)
        return view_of_run(run, live=task is not None and not task.done())

    async def aclose(self) -> None:
        """Stop every run (they stay resumable) and release the client and the guard."""
        self.stop_all(status=RunStatus.INTERRUPTED, reason="the engine shut down")
        for task in list(self.tasks.values()):
            try:
                await task
            except asyncio.CancelledError:
                if not task.cancelled():
                    raise  # aclose itself was cancelled: pass it on
            except Exception:
                # the run's own failures were recorded in its outcome; anything else is a bug
                log.exception("run task %s ended with an error at shutdown", task.get_name())
        await self.guard.stop()
        await self.client.aclose()


def _restore_agent(run: Run, row: AgentRow) -> AgentState:
    progress = ProgressFile.reopen(
        run.workspace,
        row.agent_id,
        title=row.title,
        parent_id=row.parent_id,
        role=row.role,
        task=row.task,
        status=row.status,
    )
    run.watch_progress(progress)
    return AgentState(
        agent_id=row.agent_id,
        run_id=run.run_id,
        role=Role(row.role),
        title=row.title,
        task=row.task,
        depth=row.depth,
        parent_id=row.parent_id,
        model=row.model,
        progress=progress,
        depends_on=tuple(row.depends_on),
        mitigates=row.mitigates,
        status=AgentStatus(row.status),
        status_reason=row.status_reason or "",
        summary=row.summary,
        blocker=row.blocker,
        turns=row.turns or 0,
        usage=Usage(
            row.input_tokens, row.output_tokens, row.cache_creation_tokens, row.cache_read_tokens
        ),
        cost_usd=row.cost_usd or 0.0,
        created_at=row.created_at,
        started_at=row.started_at,
        mitigated_by=row.mitigated_by,
        mitigation_count=row.mitigation_count or 0,
        escalated=bool(row.escalated),
    )


def _pricing_window(model: str) -> int:
    try:
        from agentray.model import Pricing

        return Pricing.load().context_window(model)
    except Exception:  # a broken price table must not stop a run: assume the common window
        log.exception("no context window for %s; assuming 200k tokens", model)
        return 200_000
