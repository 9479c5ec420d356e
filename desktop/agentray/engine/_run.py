"""One run: its agents, its task group, its caps, its escalations and its build gate.

Structured concurrency: ``Run.main`` owns one ``asyncio.TaskGroup``; every agent is a task in
it. Stopping the run cancels ``main``; the group cancels every agent, each agent's cleanup kills
its process trees (shielded), and ``CancelledError`` is re-raised to the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from agentray import events as ev
from agentray.errors import JournalError, ModelAuthError, ModelNotFoundError, ToolError
from agentray.escalation import BUDGET_OPTIONS, BUILD_OPTIONS, Escalation, EscalationKind, OptionId
from agentray.journal import Journal
from agentray.model._types import ModelClient, Usage
from agentray.sandbox import Sandbox
from agentray.states import ACTIVE, TERMINAL, AgentStatus, Role, RunStatus
from agentray.tools import ProcessRegistry, Workspace, run_command, truncate_text

from ._config import RunConfig
from ._processes import JournaledProcesses
from ._progress import ProgressFile
from ._recovery import AgentEnded, RecoveryLedger
from ._snapshots import RunSnapshots
from ._state import AgentState, ChangeNotifier, Slots

if TYPE_CHECKING:
    from ._guard import SystemGuard

__all__ = ["AgentRunner", "Run", "RunOutcome"]

log = logging.getLogger(__name__)

# A run stopped as a whole leaves its agents "cancelled" with one of these reasons; resume restarts them.
RESUMABLE_REASONS = ("run stopped", "run interrupted")
# An agent failed only because the workspace refused its progress file (a full disk, a folder
# swapped for a symlink): resume retries it once the cause is gone.
PROGRESS_FAILURE = "cannot write its progress file"


class AgentRunner(Protocol):
    """Runs one agent to its end: the loop of model turns and tool calls. ``Run`` is given one;
    the in-process loop (``_agent_loop.InProcessRunner``) is the only one today, and the seam
    another executor plugs into (docs/remote-runners.md)."""

    def run(self, run: Run, agent: AgentState, *, resumed: bool) -> Coroutine[Any, Any, None]: ...


@dataclass(frozen=True)
class RunOutcome:
    status: RunStatus
    summary: str
    fatal_error: BaseException | None = None
    resumable: bool = True  # False: resuming would fail the same way (a fatal error, a spent limit)


# how a run ends that was stopped from outside, or whose end was never recorded
INTERRUPTED = RunOutcome(RunStatus.INTERRUPTED, "the run was interrupted")


class Run:
    def __init__(
        self,
        *,
        run_id: str,
        config: RunConfig,
        journal: Journal,
        client: ModelClient,
        publish: Callable[[ev.Event], None],
        guard: SystemGuard,
        prompts: dict[str, str],
        context_window: int,
        runner: AgentRunner,
        sandbox: Sandbox | None = None,
    ) -> None:
        self.run_id = run_id
        self.runner = runner
        self.sandbox = sandbox or Sandbox.unconfined()
        self.snapshots = RunSnapshots(
            journal,
            run_id,
            config.workspace,
            warn=lambda message: self.notice(message, level="warning"),
        )
        # resumed after its process died without recording the run's end (kill -9, power cut)
        self.crashed_before_end = False
        self.config = config
        self.workspace = Path(config.workspace)
        self.files = Workspace(self.workspace)
        self.journal = journal
        self.client = client
        self._publish = publish
        self.guard = guard
        self.prompts = prompts
        self.context_window = context_window
        self.agents: dict[str, AgentState] = {}
        self.slots = Slots(config.max_concurrent, priority=self.dependents_chain)
        self.changes = ChangeNotifier()
        self.processes: ProcessRegistry = JournaledProcesses(journal, run_id)
        self.ledger = RecoveryLedger(self)
        self.notices: list[str] = []  # engine news for the orchestrator, drained by its monitors
        self.budget_usd = config.budget_usd
        self.cost_usd = 0.0
        self.tokens = 0
        # build gate: a passing build must cover the last agent that settled
        self.settle_seq = 0
        self.build_passed_at: int | None = None
        self.builds_failed_in_a_row = 0
        self.last_build: dict[str, Any] | None = None
        self.outcome: RunOutcome | None = None
        self.finished = asyncio.Event()
        self._tg: asyncio.TaskGroup | None = None
        self._main_task: asyncio.Task[Any] | None = None
        self._budget_lock = asyncio.Lock()
        self._background: set[asyncio.Task[Any]] = set()

    # ------------------------------------------------------------------ events and state
    def publish(self, event: ev.Event) -> None:
        self._publish(event)

    def spawned_count(self) -> int:
        return sum(1 for a in self.agents.values() if not a.is_orchestrator)

    def active_workers(self) -> list[AgentState]:
        return [a for a in self.agents.values() if not a.is_orchestrator and a.status in ACTIVE]

    def set_status(self, agent: AgentState, status: AgentStatus, reason: str = "") -> None:
        if agent.status == status and agent.status_reason == reason:
            return
        previous = agent.status
        agent.status = status
        agent.status_reason = reason
        fields: dict[str, Any] = {"status": status.value, "status_reason": reason}
        now = time.time()
        if status == AgentStatus.RUNNING and agent.started_at is None:
            agent.started_at = now
            fields["started_at"] = now
        if status in TERMINAL:
            agent.ended_at = now
            fields["ended_at"] = now
            if not agent.is_orchestrator and previous not in TERMINAL:
                self.settle_seq += 1
        with self.journal.transaction():  # one commit; the timeline is rebuilt from the events
            self.journal.update_agent(self.run_id, agent.agent_id, **fields)
            self.journal.add_event(
                self.run_id,
                "agent_status",
                {"agent_id": agent.agent_id, "status": status.value, "previous": previous.value},
            )
        agent.progress.set_status(status)
        self.publish(
            ev.AgentStatusChanged(
                run_id=self.run_id,
                agent_id=agent.agent_id,
                status=status,
                previous=previous,
                reason=reason,
            )
        )
        self.changes.notify()

    def watch_progress(self, progress: ProgressFile) -> None:
        progress.on_write_error = self._progress_write_failed

    def _progress_write_failed(self, progress: ProgressFile, message: str) -> None:
        self.notice(
            f"cannot write {progress.relative_path}: {message}; the agent goes on and the journal "
            "keeps its progress",
            level="warning",
            agent_id=progress.agent_id,
        )

    def progress(self, agent: AgentState, kind: str, note: str) -> None:
        agent.progress.add(kind, note)
        self.publish(
            ev.AgentProgress(run_id=self.run_id, agent_id=agent.agent_id, kind=kind, note=note)
        )

    def notice(self, message: str, *, level: str = "info", agent_id: str | None = None) -> None:
        self.notices.append(message)
        self.journal.add_event(self.run_id, "notice", {"level": level, "message": message})
        self.publish(ev.Notice(run_id=self.run_id, level=level, message=message, agent_id=agent_id))
        self.changes.notify()

    def drain_notices(self) -> list[str]:
        notices, self.notices = self.notices, []
        return notices

    def record_usage(
        self,
        agent: AgentState,
        usage: Usage,
        cost: float,
        model: str,
        *,
        message: dict[str, Any] | None = None,
    ) -> None:
        """A model call's usage, the agent's and the run's counters, and ``message`` (the
        assistant turn it paid for) are journaled in one transaction: a crash keeps all or none
        of them, and the turn costs one commit instead of four. Listeners hear of it after."""
        agent.usage = agent.usage + usage
        agent.cost_usd += cost
        self.cost_usd += cost
        self.tokens += usage.total_tokens
        with self.journal.transaction():
            self.journal.add_usage(
                self.run_id,
                agent.agent_id,
                model=model,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cache_creation_tokens=usage.cache_creation_input_tokens,
                cache_read_tokens=usage.cache_read_input_tokens,
                cost_usd=cost,
            )
            self.journal.update_agent(
                self.run_id,
                agent.agent_id,
                input_tokens=agent.usage.input_tokens,
                output_tokens=agent.usage.output_tokens,
                cache_creation_tokens=agent.usage.cache_creation_input_tokens,
                cache_read_tokens=agent.usage.cache_read_input_tokens,
                cost_usd=agent.cost_usd,
                turns=agent.turns,
            )
            self.journal.update_run(self.run_id, cost_usd=self.cost_usd, tokens=self.tokens)
            if message is not None:
                self.journal.append_message(self.run_id, agent.agent_id, message)
        self.publish(
            ev.UsageUpdated(
                run_id=self.run_id,
                agent_id=agent.agent_id,
                input_tokens=agent.usage.input_tokens,
                output_tokens=agent.usage.output_tokens,
                cache_creation_input_tokens=agent.usage.cache_creation_input_tokens,
                cache_read_input_tokens=agent.usage.cache_read_input_tokens,
                agent_cost_usd=agent.cost_usd,
                run_cost_usd=self.cost_usd,
                run_tokens=self.tokens,
            )
        )

    # ------------------------------------------------------------------ agents
    def new_agent(
        self,
        *,
        role: Role,
        title: str,
        task: str,
        parent: AgentState | None,
        depends_on: tuple[str, ...] = (),
        mitigates: str | None = None,
    ) -> AgentState:
        agent_id = self.journal.next_agent_id(str(self.workspace))
        model = (
            self.config.model if role == Role.ORCHESTRATOR else self.config.effective_worker_model
        )
        if not title.strip():
            title = task.strip().splitlines()[0][:80] if task.strip() else agent_id
        progress = ProgressFile(
            self.workspace,
            agent_id,
            title=title,
            parent_id=parent.agent_id if parent else None,
            role=role,
            task=task,
        )
        self.watch_progress(progress)
        agent = AgentState(
            agent_id=agent_id,
            run_id=self.run_id,
            role=role,
            title=progress.title,
            task=task,
            depth=0 if parent is None else parent.depth + 1,
            parent_id=parent.agent_id if parent else None,
            model=model,
            progress=progress,
            depends_on=depends_on,
            mitigates=mitigates,
        )
        self.agents[agent_id] = agent
        if agent.is_orchestrator:
            self.slots.exempt.add(agent_id)
        self.journal.create_agent(
            self.run_id,
            agent_id,
            parent_id=agent.parent_id,
            role=role,
            title=agent.title,
            task=task,
            depth=agent.depth,
            depends_on=list(depends_on),
            mitigates=mitigates,
            status=AgentStatus.QUEUED.value,
            model=model,
        )
        progress.write()
        self.publish(
            ev.AgentSpawned(
                run_id=self.run_id,
                agent_id=agent_id,
                parent_id=agent.parent_id,
                role=role,
                title=agent.title,
                depth=agent.depth,
                depends_on=depends_on,
                mitigates=mitigates,
                progress_file=progress.relative_path,
            )
        )
        self.changes.notify()
        return agent

    def start_agent(self, agent: AgentState, *, resumed: bool = False) -> None:
        if self._tg is None:
            raise RuntimeError("the run is not running")
        agent.runtime.completed = False
        agent.runtime.task_handle = self._tg.create_task(
            self.runner.run(self, agent, resumed=resumed), name=f"agent-{agent.agent_id}"
        )

    def dependents_chain(self, agent_id: str) -> int:
        """How many agents wait in a row behind this one (the longest ``depends_on`` chain that
        starts here): the scheduler serves the longest first."""
        memo: dict[str, int] = {}

        def chain(current: str, path: frozenset[str]) -> int:
            if current in memo:
                return memo[current]
            after = [
                a.agent_id
                for a in self.agents.values()
                if current in a.depends_on and a.agent_id not in path and a.status in ACTIVE
            ]
            memo[current] = max((1 + chain(a, path | {a}) for a in after), default=0)
            return memo[current]

        return chain(agent_id, frozenset({agent_id}))

    def descendants(self, agent_id: str) -> list[AgentState]:
        found: list[AgentState] = []
        frontier = [agent_id]
        while frontier:
            parent = frontier.pop()
            for child in self.agents.values():
                if child.parent_id == parent:
                    found.append(child)
                    frontier.append(child.agent_id)
        return found

    # ------------------------------------------------------------------ the person
    def pending_escalations(self) -> list[Escalation]:
        return self.ledger.pending()

    def in_background(self, coro: Any, name: str) -> None:
        """A helper task inside the run's task group (cancelled with the run)."""
        if self._tg is None:
            return
        task = self._tg.create_task(coro, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # ------------------------------------------------------------------ budget
    async def ensure_budget(self, agent: AgentState) -> None:
        """Before a model call: at the budget, one escalation asks to raise it or stop."""
        if self.budget_usd is None or self.cost_usd < self.budget_usd:
            return
        async with self._budget_lock:
            if self.budget_usd is None or self.cost_usd < self.budget_usd:
                return
            spent, budget = self.cost_usd, self.budget_usd
            answer = await self.ledger.ask(
                agent,
                kind=EscalationKind.BUDGET,
                question=f"The run has spent ${spent:.2f} of its ${budget:.2f} budget. Raise the budget or stop?",
                context="Answer with a new budget in USD (e.g. 20) and choose 'Raise the budget', or stop the run.",
                options=BUDGET_OPTIONS,
            )
            if answer.option_id == OptionId.RAISE_BUDGET:
                numbers = re.findall(r"\d+(?:\.\d+)?", answer.text)
                wanted = float(numbers[0]) if numbers else 0.0
                self.budget_usd = wanted if wanted > spent else max(budget * 2, spent * 1.5)
                self.journal.update_run(
                    self.run_id, config={**self.config.to_dict(), "budget_usd": self.budget_usd}
                )
                self.notice(f"budget raised to ${self.budget_usd:.2f}")
                return
            self.request_stop(RunStatus.FAILED, f"budget of ${budget:.2f} reached")
            raise AgentEnded

    # ------------------------------------------------------------------ build
    async def run_build(self, agent: AgentState) -> dict[str, Any]:
        command = self.config.build_command
        if not command:
            raise ToolError(
                "no build command is configured for this run (start it with --build CMD)"
            )
        seq_at_start = self.settle_seq
        self.progress(agent, "UPDATE", f"running the build: {command}")
        result = await run_command(
            command,
            cwd=self.workspace,
            registry=self.processes,
            owner=agent.agent_id,
            sandbox=self.sandbox,
            timeout_s=self.config.build_timeout_s,
            max_output=8_000,
        )
        passed = result.exit_code == 0 and not result.timed_out
        tail = "\n".join(result.output.splitlines()[-60:])
        outcome: dict[str, Any] = {
            "passed": passed,
            "exit_code": result.exit_code,
            "duration_s": round(result.duration_s, 3),
            "output_tail": tail,
        }
        if result.timed_out:
            outcome["timed_out"] = True
        if passed:
            self.build_passed_at = seq_at_start
            self.builds_failed_in_a_row = 0
        else:
            self.build_passed_at = None
            self.builds_failed_in_a_row += 1
        self.last_build = {**outcome, "at": time.time()}
        self.journal.add_event(
            self.run_id, "build", {k: v for k, v in outcome.items() if k != "output_tail"}
        )
        self.progress(
            agent,
            "UPDATE",
            f"build {'passed' if passed else 'failed'} (exit {result.exit_code}, {result.duration_s:.1f} s)",
        )
        self.publish(
            ev.BuildFinished(
                run_id=self.run_id,
                agent_id=agent.agent_id,
                passed=passed,
                exit_code=result.exit_code,
                duration_s=result.duration_s,
                failed_in_a_row=self.builds_failed_in_a_row,
            )
        )
        if not passed and self.builds_failed_in_a_row >= self.config.max_fix_rounds:
            answer = await self.ledger.ask(
                agent,
                kind=EscalationKind.BUILD,
                question=(
                    f"The build has failed {self.builds_failed_in_a_row} times in a row "
                    f"(max_fix_rounds={self.config.max_fix_rounds}). Keep fixing, finish as a failure, or stop?"
                ),
                context=f"Command: {command}\n\nOutput (tail):\n{tail[-3000:]}",
                options=BUILD_OPTIONS,
            )
            chosen = next((o.label for o in BUILD_OPTIONS if o.option_id == answer.option_id), None)
            outcome["escalation"] = {"answer": answer.text or chosen, "choice": chosen}
            if answer.option_id == OptionId.KEEP_FIXING:
                self.builds_failed_in_a_row = 0
            elif answer.option_id == OptionId.STOP_RUN:
                self.request_stop(RunStatus.CANCELLED, "stopped by the human after failing builds")
        return outcome

    def finish_blockers(self, outcome: str) -> list[str]:
        """What still stands in the way of ``finish``."""
        problems: list[str] = []
        active = self.active_workers()
        if active:
            listed = ", ".join(f"{a.agent_id} ({a.status})" for a in active)
            still = "1 agent is" if len(active) == 1 else f"{len(active)} agents are"
            problems.append(f"{still} still active: {listed}; await or cancel them first")
        if outcome == "success":
            for failed in self.ledger.unmitigated_failures():
                problems.append(
                    f"{failed.agent_id} ({failed.title}) failed and nobody mitigated it: spawn a fixer with "
                    f"mitigates={failed.agent_id}, resume_agent it, or finish with outcome=failure"
                )
        if outcome == "success" and self.config.build_command:
            if self.build_passed_at is None:
                problems.append("no passing run_build since the last change; run the build first")
            elif self.build_passed_at != self.settle_seq:
                problems.append(
                    "an agent finished after the last passing build; run the build again"
                )
        return problems

    def plan_report(self) -> str:
        """What did not go to plan, for the person: the workers that failed or were cancelled."""
        lines: list[str] = []
        for agent in self.agents.values():
            if agent.is_orchestrator or agent.status not in (
                AgentStatus.FAILED,
                AgentStatus.CANCELLED,
            ):
                continue
            why = (
                agent.blocker if agent.status == AgentStatus.FAILED else agent.status_reason
            ) or ""
            how = f"; mitigated by {agent.mitigated_by}" if agent.mitigated_by else ""
            if agent.escalated:
                how += "; the person decided"
            lines.append(
                f"- {agent.agent_id} ({agent.title}) {agent.status.value}: {why[:200]}{how}"
            )
        if not lines:
            return ""
        count = len(lines)
        head = "1 agent" if count == 1 else f"{count} agents"
        return f"Not everything went to plan ({head}):\n" + "\n".join(lines)

    # ------------------------------------------------------------------ lifecycle
    def request_stop(self, status: RunStatus, reason: str) -> None:
        """Stop the whole run: cancels its task group (from any task, or the outside)."""
        if self.outcome is None:
            self.outcome = RunOutcome(RunStatus(status), reason)
        if self._main_task is not None and not self._main_task.done():
            self._main_task.cancel()

    def interrupt_from_outside(self) -> None:
        """A task of the run was cancelled by no command of the engine (its task cancelled from
        outside, the event loop shutting down): the run is interrupted, resumably, as by Stop."""
        self.request_stop(INTERRUPTED.status, INTERRUPTED.summary)

    def _interrupted(self) -> None:
        self.outcome = self.outcome or INTERRUPTED

    def conclude(
        self,
        status: RunStatus,
        summary: str,
        fatal: BaseException | None = None,
        *,
        resumable: bool = True,
    ) -> None:
        """The run ends normally (finish, or the orchestrator failed): let main wind down."""
        if self.outcome is None:
            self.outcome = RunOutcome(
                RunStatus(status), summary, fatal, resumable=resumable and fatal is None
            )
        self.finished.set()

    async def main(self, starters: list[tuple[AgentState, bool]]) -> RunOutcome:
        """Run to the end. ``starters``: (agent, resumed) pairs to start at once."""
        self._main_task = asyncio.current_task()
        try:
            if self.outcome is not None:
                # stopped before this task first ran: request_stop had nothing to cancel yet
                raise asyncio.CancelledError
            resumed = any(flag for _, flag in starters)
            if resumed:
                self.snapshots.claim_unsnapshotted_writes()
            await self.snapshots.take(None, None, "resume" if resumed else "base")
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                watcher = tg.create_task(
                    self._watch_stop_requests(), name=f"stop-watch-{self.run_id}"
                )
                for agent, resumed in starters:
                    self.start_agent(agent, resumed=resumed)
                try:
                    await self.finished.wait()
                except asyncio.CancelledError:
                    # cancelled from outside, not through request_stop: the run is interrupted,
                    # said before the task group cancels its agents, so they stay resumable
                    self._interrupted()
                    raise
                # the run is over: whatever still runs (stragglers, pending escalations) goes
                watcher.cancel()
                for agent in self.agents.values():
                    handle = agent.runtime.task_handle
                    if handle is not None and not handle.done():
                        handle.cancel()
                for task in list(self._background):
                    task.cancel()
        except asyncio.CancelledError:
            self._interrupted()
            await self._cleanup()
            raise
        except Exception as error:  # a bug in a helper task: fail this run, keep the process
            log.exception("run %s crashed", self.run_id)
            cause: BaseException = error
            while isinstance(cause, BaseExceptionGroup) and cause.exceptions:
                cause = cause.exceptions[0]  # the task group's wrapping says nothing
            self.outcome = RunOutcome(
                RunStatus.FAILED, f"internal error: {type(cause).__name__}: {cause}"
            )
        await self._cleanup()
        assert self.outcome is not None
        return self.outcome

    async def _cleanup(self) -> None:
        # Shielded: a second cancellation must not leave processes or stale statuses behind.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(self.processes.kill_all())
        with contextlib.suppress(asyncio.CancelledError):
            # what no snapshot saw yet (a file tool's snapshot takes only its own path)
            await asyncio.shield(self.snapshots.take(None, None, "end"))
        outcome = self.outcome or INTERRUPTED
        reason = (
            "run stopped"
            if outcome.status in (RunStatus.CANCELLED, RunStatus.FAILED)
            else "run interrupted"
        )
        if outcome.status == RunStatus.SUCCEEDED:
            reason = "run finished"
        for agent in self.agents.values():
            if agent.status in ACTIVE:
                try:
                    self.set_status(agent, AgentStatus.CANCELLED, reason)
                except JournalError as error:  # a full disk: the next resume sees it as interrupted
                    agent.status = AgentStatus.CANCELLED
                    log.error(
                        "run %s: %s could not be recorded as cancelled: %s",
                        self.run_id,
                        agent.agent_id,
                        error,
                    )
            if agent.runtime.waiting_on_blocker:
                assert agent.runtime.blocker_future is not None
                agent.runtime.blocker_future.cancel()
        self.ledger.cancel_pending()
        for agent in self.agents.values():
            try:
                agent.progress.flush()  # coalesced notes are on disk before the run's end is told
            except JournalError as error:  # its failure could not be noted (a full disk)
                log.error("run %s: %s: %s", self.run_id, agent.progress.relative_path, error)
        try:
            self.journal.update_run(
                self.run_id,
                status=outcome.status,
                summary=outcome.summary,
                ended_at=time.time(),
                cost_usd=self.cost_usd,
                tokens=self.tokens,
            )
            self.journal.clear_stop_request(self.run_id)  # a request for a run that ended is moot
            self.journal.add_event(
                self.run_id, "run_finished", {"status": outcome.status, "summary": outcome.summary}
            )
        except JournalError as error:
            # (a full disk): the outcome still reaches the caller; the row stays "running" and
            # the next `agentray runs` marks it interrupted, so it can be resumed
            log.error("run %s: the journal could not record its end: %s", self.run_id, error)
        self.publish(
            ev.RunFinished(
                run_id=self.run_id,
                status=outcome.status,
                summary=outcome.summary,
                cost_usd=self.cost_usd,
            )
        )
        self.changes.notify()

    async def _watch_stop_requests(self) -> None:
        """``agentray stop`` from another process sets a journal flag; notice it within a second."""
        while True:
            await asyncio.sleep(0.5)
            try:
                requested = self.journal.stop_requested(self.run_id)
            except Exception:  # a locked or busy journal must not kill the run
                log.exception("reading the stop flag failed")
                continue
            if requested:
                self.journal.clear_stop_request(self.run_id)
                self.request_stop(RunStatus.CANCELLED, "stopped by `agentray stop`")
                return

    def fatal(self, agent: AgentState, error: BaseException) -> None:
        """Errors no agent can work around (bad key, unknown model) end the run at once."""
        if isinstance(error, ModelAuthError | ModelNotFoundError):
            self.notice(f"{agent.agent_id}: {error}", level="error", agent_id=agent.agent_id)
            self.conclude(RunStatus.FAILED, str(error), fatal=error)

    def truncate(self, text: str) -> str:
        return truncate_text(text, self.config.tool_output_limit)
