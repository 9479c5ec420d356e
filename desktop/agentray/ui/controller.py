"""The one object the tray's views talk to: it owns the Engine (made lazily), the settings and
the journal, and turns the engine's event stream into Qt signals.

Every method runs on the Qt thread, which qasync makes the asyncio loop thread too, so engine
commands can be called straight from slots (coroutines via ``asyncio.ensure_future``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from PySide6.QtCore import QObject, QTimer, Signal

from agentray import events as ev
from agentray.engine import PROGRESS_DIR, Engine, RunConfig, RunView, validate_config
from agentray.errors import AgentrayError, BadInputError, JournalError, NoApiKeyError
from agentray.escalation import Answer, Escalation, EscalationKind, EscalationOption
from agentray.journal import Journal
from agentray.sandbox import NO_SANDBOX_HINT, detect_sandbox
from agentray.states import AgentStatus, RunStatus

from .marks import RunMark, marks_from_config, marks_from_event
from .settings import AppSettings

__all__ = [
    "AppController",
    "DemoLike",
    "DemoRunning",
    "EscalationView",
    "RunSummary",
    "StartDeclined",
]

log = logging.getLogger(__name__)

_WAITING = (AgentStatus.QUEUED, AgentStatus.WAITING, AgentStatus.BLOCKED)
_ENDED_BADLY = (AgentStatus.FAILED, AgentStatus.CANCELLED)

RUNS_INTERVAL_MS = 100  # runs_changed at most ~10 per second
ESCALATIONS_INTERVAL_MS = 30
PROGRESS_TAIL_LINES = 12

_RUN_EVENTS = (
    ev.RunStarted,
    ev.RunFinished,
    ev.AgentSpawned,
    ev.AgentStatusChanged,
    ev.UsageUpdated,
    ev.BuildFinished,
)


class StartDeclined(AgentrayError):
    """The person chose not to run without a command sandbox: nothing was started."""

    def __init__(self) -> None:
        super().__init__(
            "Not started: this system has no command sandbox, and you chose not to run the "
            "agents' commands without one."
        )


class DemoRunning(BadInputError):
    """A run of the person's own cannot start while the offline demo's run is still going: the
    demo's engine talks only to its scripted model."""

    def __init__(self) -> None:
        super().__init__(
            "The offline demo is still running. Stop it (or let it finish) first: the demo's "
            "scripted model only plays the demo, your own runs use your API key."
        )


class DemoLike(Protocol):
    """What the controller needs of agentray.demo.DemoSession."""

    @property
    def api_key(self) -> str: ...

    @property
    def base_url(self) -> str: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    goal: str
    workspace: str
    status: RunStatus  # RUNNING: live here
    running: int
    waiting: int  # queued, waiting or blocked
    done: int
    failed: int  # failed or cancelled
    total: int
    cost_usd: float
    tokens: int
    started_at: float
    marks: tuple[RunMark, ...] = ()  # how its commands are confined: "no sandbox", "network"


@dataclass(frozen=True)
class EscalationView:
    escalation_id: str
    run_id: str
    agent_id: str
    kind: EscalationKind
    question: str
    context: str
    options: tuple[EscalationOption, ...]
    progress_tail: str
    live: bool  # False: only in the journal; the run must be resumed before it can be answered
    created_at: float


def _tail(path: Path, lines: int = PROGRESS_TAIL_LINES) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


class AppController(QObject):
    """Owns the Engine (lazily), settings and journal; bridges engine events to Qt signals."""

    # shadows QObject.event harmlessly (Qt still dispatches events); every engine event, as it comes
    event = Signal(object)  # type: ignore[assignment]
    runs_changed = Signal()  # coalesced: at most ~10 per second
    escalations_changed = Signal()  # a pending escalation appeared or was answered (coalesced)
    run_finished = Signal(str, str, str)  # run_id, status, summary
    key_changed = Signal()

    def __init__(
        self,
        settings: AppSettings,
        journal: Journal | None = None,
        *,
        engine_factory: Callable[[], Engine] | None = None,
        base_url: str | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.settings = settings
        self.journal = journal if journal is not None else Journal()
        # The model's address for real runs (None: the SDK's default, which honours
        # ANTHROPIC_BASE_URL); the settings dialog verifies keys against it too.
        self.base_url = base_url
        self._engine_factory = engine_factory
        self._engine: Engine | None = None
        self._unsubscribe: Callable[[], None] | None = None
        # use_demo: every run of this controller on the demo's simulator (tests, `demo --headless`)
        self.demo: DemoLike | None = None
        # start_demo_run: the engine is the demo's, for the demo's own run only; the next start
        # of anything else drops it and uses the real model (or says that no key is set).
        self._demo_only: DemoLike | None = None
        self.demo_runs: set[str] = set()
        # Runs the person stopped here (Stop, Stop all, Abort): their ending is no news to them.
        self.stopped_by_person: set[str] = set()
        self._started_at: dict[str, float] = {}
        self._marks: dict[str, tuple[RunMark, ...]] = {}  # live runs, from their RunStarted
        self._consent = asyncio.Lock()  # one question at a time; a second start sees the answer
        # Asked (with the detector's one-line reason) before the first start without a sandbox
        # where none exists; True: go without one. The tray sets it; None: such starts fail.
        self.confirm_unsandboxed: Callable[[str], Awaitable[bool]] | None = None
        self._background: set[asyncio.Future[None]] = set()
        self._runs_timer = self._coalescer(RUNS_INTERVAL_MS, self.runs_changed.emit)
        self._escalations_timer = self._coalescer(
            ESCALATIONS_INTERVAL_MS, self.escalations_changed.emit
        )
        self.key_changed.connect(self._on_key_changed)

    def _coalescer(self, interval_ms: int, fire: Callable[[], None]) -> QTimer:
        timer = QTimer(self)
        timer.setSingleShot(True)
        timer.setInterval(interval_ms)
        timer.timeout.connect(fire)
        return timer

    # ------------------------------------------------------------------ engine
    def has_engine(self) -> bool:
        return self._engine is not None

    def live_view(self, run_id: str) -> RunView | None:
        """A frozen view of a run live in this process (None: not live here)."""
        view = self._engine.run_view(run_id) if self._engine is not None else None
        return view if view is not None and view.live else None

    def guard_state(self) -> tuple[bool, str]:
        """(saturated, why) of the engine's system guard; clear without an engine."""
        if self._engine is None:
            return False, ""
        reading = self._engine.guard.reading
        return reading.saturated, reading.reason

    def has_key(self) -> bool:
        """True when a run of the person's own can start: a key in the environment/keyring (or a
        test's engine). The demo's own engine does not count: it serves only the demo's run."""
        if self.demo is not None or self._engine_factory is not None:
            return True
        if self._engine is not None and self._demo_only is None:
            return True
        from agentray.keys import resolve_api_key

        return resolve_api_key()[0] is not None

    def engine(self) -> Engine:
        """The engine, made on first use; raises NoApiKeyError when there is no key."""
        if self._engine is None:
            self._attach(self._make_engine())
        assert self._engine is not None
        return self._engine

    def _make_engine(self) -> Engine:
        from agentray.runtime import build_engine

        if self._engine_factory is not None:
            return self._engine_factory()
        if self.demo is not None:
            return build_engine(
                api_key=self.demo.api_key, base_url=self.demo.base_url, journal=self.journal
            )
        from agentray.keys import resolve_api_key

        key, _source = resolve_api_key()
        if not key:
            raise NoApiKeyError()
        return build_engine(api_key=key, base_url=self.base_url, journal=self.journal)

    def _engine_for_own_run(self) -> Engine:
        """The engine for a run of the person's own (New run, Start again, a preset, a resume):
        never the demo's. The demo's engine, once idle, is dropped for the real one."""
        if self._demo_only is not None and not self._detach_idle_engine():
            raise DemoRunning()
        return self.engine()

    def _attach(self, engine: Engine) -> None:
        self._engine = engine
        self._unsubscribe = engine.subscribe(self._on_engine_event)

    def _detach_idle_engine(self) -> bool:
        """Drop an engine with no live run so the next command makes a fresh one (new key or
        demo). Its client is closed in the background. False when runs are still live."""
        engine = self._engine
        if engine is None:
            return True
        if engine.active_runs():
            return False
        if self._unsubscribe is not None:
            self._unsubscribe()
        self._engine, self._unsubscribe = None, None
        self._demo_only = None
        with contextlib.suppress(RuntimeError):  # no running loop: nothing to close with
            asyncio.get_running_loop()
            task = asyncio.ensure_future(engine.aclose())
            self._background.add(task)
            task.add_done_callback(self._background.discard)
        return True

    def use_demo(self, session: DemoLike) -> None:
        """Run the engine on the offline simulator of a DemoSession (no key needed)."""
        if self._engine is not None and not self._detach_idle_engine():
            raise BadInputError("stop the running runs before switching to the demo")
        self.demo = session
        self._attach(self._make_engine())
        self.runs_changed.emit()

    async def start_demo_run(self, session: DemoLike, config: RunConfig) -> str:
        """Start the offline demo's own run on an engine of its simulator. That engine serves this
        run only: whatever starts next (New run, Start again, a preset) uses the real model, or
        says that no key is set. ``config`` is the demo's (``session.config()``)."""
        from agentray.runtime import build_engine

        if self.demo is not session:
            if self._engine is not None and not self._detach_idle_engine():
                raise BadInputError("Stop the running runs before starting the demo.")
            self._attach(
                build_engine(
                    api_key=session.api_key, base_url=session.base_url, journal=self.journal
                )
            )
            self._demo_only = session
        run_id = await self.engine().start_run(config)
        self.demo_runs.add(run_id)
        self.runs_changed.emit()
        return run_id

    def _on_key_changed(self) -> None:
        # A new key applies to the next engine; live runs keep the one they started with.
        if self.demo is None and self._engine_factory is None:
            self._detach_idle_engine()

    # ------------------------------------------------------------------ events
    def _on_engine_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.RunStarted):
            self._started_at.setdefault(event.run_id, event.ts)
            self._marks[event.run_id] = marks_from_event(event)  # a resume may change them
            self.stopped_by_person.discard(event.run_id)  # resumed: its next ending is news
        self.event.emit(event)
        if isinstance(event, _RUN_EVENTS) and not self._runs_timer.isActive():
            self._runs_timer.start()
        if isinstance(event, ev.EscalationRaised | ev.EscalationAnswered | ev.RunFinished):
            if not self._escalations_timer.isActive():
                self._escalations_timer.start()
        if isinstance(event, ev.RunFinished):
            self.run_finished.emit(event.run_id, event.status, event.summary)

    # ------------------------------------------------------------------ commands
    async def _go_unsandboxed(self) -> bool:
        """True when a start that wants the sandbox must go without one: none exists here and
        the person agreed, now or once before (remembered). Raises StartDeclined on a no."""
        status = detect_sandbox()
        if status.available:
            return False
        async with self._consent:
            if self.settings.run_unsandboxed:
                return True
            if self.confirm_unsandboxed is None:
                return False  # the engine refuses, with the detector's line
            if not await self.confirm_unsandboxed(status.problem or NO_SANDBOX_HINT):
                raise StartDeclined()
            self.settings.run_unsandboxed = True
            return True

    async def start_run(self, config: RunConfig) -> str:
        """Start a run. Where no sandbox exists, a config that wants one asks the person first
        (once; see ``confirm_unsandboxed``); ``sandbox=False`` (the demo) goes as it is."""
        engine = self._engine_for_own_run()
        if config.sandbox:
            validate_config(config.replace(sandbox=False))  # a bad form fails before any question
            if await self._go_unsandboxed():
                config = config.replace(sandbox=False)
        run_id = await engine.start_run(config)
        self.settings.add_recent_goal(config.goal)
        self.settings.add_recent_folder(config.workspace)
        return run_id

    def stop_run(self, run_id: str) -> None:
        """The person stops a run (Stop, Abort): no "Run stopped" notification follows."""
        self.stopped_by_person.add(run_id)
        if self._engine is not None and self._engine.stop_run(run_id):
            return
        # Not live here (e.g. a headless run in another process): ask through the journal.
        self.journal.request_stop(run_id)

    def stop_all(self) -> None:
        """The person stops every run ("Stop all agents"): no "Run stopped" notifications."""
        if self._engine is not None:
            self.stopped_by_person.update(r.run_id for r in self._engine.view().live_runs)
            self._engine.stop_all()

    async def resume_run(self, run_id: str) -> str:
        """Resume as it was journaled; a sandboxed run resumed where no sandbox exists asks first,
        as a start does."""
        engine = self._engine_for_own_run()
        row = self.journal.get_run(run_id)
        sandbox: bool | None = None
        if row is not None and row.config.get("sandbox", True) and await self._go_unsandboxed():
            sandbox = False
        return await engine.resume_run(run_id, sandbox=sandbox)

    async def cancel_agent(self, run_id: str, agent_id: str) -> None:
        await self.engine().cancel_agent(run_id, agent_id)

    def answer_escalation(self, escalation_id: str, answer: Answer) -> bool:
        if self._engine is None:
            return False
        answered = self._engine.answer_escalation(escalation_id, answer)
        if answered and not self._escalations_timer.isActive():
            self._escalations_timer.start()
        return answered

    async def wait_for_escalation(self, escalation_id: str, timeout_s: float = 60.0) -> bool:
        """Wait until a live escalation with this id is pending (after a resume re-raised it)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._engine is not None and any(
                e.escalation_id == escalation_id for e in self._engine.pending_escalations()
            ):
                return True
            await asyncio.sleep(0.05)
        return False

    async def resume_and_answer(
        self,
        run_id: str,
        escalation_id: str,
        answer: Answer,
        timeout_s: float = 60.0,
    ) -> bool:
        """Answer a journal-only escalation: resume its run, wait for the engine to raise the same
        escalation again, answer it. False when it did not come back in time."""
        if not self.is_live(run_id):
            await self.resume_run(run_id)
        if not await self.wait_for_escalation(escalation_id, timeout_s):
            return False
        return self.answer_escalation(escalation_id, answer)

    async def wait(self, run_id: str) -> str:
        """Wait for a live run to end; returns its status."""
        outcome = await self.engine().wait(run_id)
        return outcome.status

    async def shutdown(self) -> None:
        """Stop every run (they stay resumable) and release the engine. The demo session, if any,
        belongs to whoever started it (ui.app closes it after this)."""
        engine, self._engine = self._engine, None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if engine is not None:
            await engine.aclose()

    # ------------------------------------------------------------------ views
    def is_live(self, run_id: str) -> bool:
        if self._engine is None:
            return False
        view = self._engine.run_view(run_id)
        return view is not None and view.live

    def active_runs(self) -> list[RunSummary]:
        """Live runs in this process, oldest first."""
        if self._engine is None:
            return []
        summaries = [self._summarize(run) for run in self._engine.view().live_runs]
        return sorted(summaries, key=lambda s: s.started_at)

    def run_summary(self, run_id: str) -> RunSummary | None:
        """A live run, or else a run from the journal."""
        view = self._engine.run_view(run_id) if self._engine is not None else None
        if view is not None:
            return self._summarize(view)
        row = self.journal.get_run(run_id)
        if row is None:
            return None
        statuses = [AgentStatus(a.status) for a in self.journal.list_agents(run_id)]
        return RunSummary(
            run_id=row.run_id,
            goal=row.goal,
            workspace=row.workspace,
            status=RunStatus(row.status),
            running=statuses.count(AgentStatus.RUNNING),
            waiting=sum(s in _WAITING for s in statuses),
            done=statuses.count(AgentStatus.DONE),
            failed=sum(s in _ENDED_BADLY for s in statuses),
            total=len(statuses),
            cost_usd=row.cost_usd or 0.0,
            tokens=row.tokens or 0,
            started_at=row.started_at,
            marks=marks_from_config(row.config),
        )

    def _summarize(self, run: RunView) -> RunSummary:
        started = self._started_at.get(run.run_id) or run.started_at or time.time()
        return RunSummary(
            run_id=run.run_id,
            goal=run.goal,
            workspace=run.workspace,
            status=run.status,
            running=run.count(AgentStatus.RUNNING),
            waiting=run.count(*_WAITING),
            done=run.count(AgentStatus.DONE),
            failed=run.count(*_ENDED_BADLY),
            total=len(run.agents),
            cost_usd=run.cost_usd,
            tokens=run.tokens,
            started_at=started,
            # from its RunStarted: the controller listens from the engine's first moment
            marks=self._marks.get(run.run_id, ()),
        )

    def pending_escalations(self) -> list[EscalationView]:
        """Live escalations first (oldest first), then journal-only ones of runs not live here."""
        views: list[EscalationView] = []
        seen: set[str] = set()
        live_runs: set[str] = set()
        if self._engine is not None:
            engine_view = self._engine.view()
            live_runs = {r.run_id for r in engine_view.live_runs}
            for esc in engine_view.escalations:
                run = engine_view.run(esc.run_id)
                if run is None or not run.live:  # a stopped run leaves its question unresolved
                    continue
                agent = run.agent(esc.agent_id)
                tail = _tail(Path(run.workspace) / agent.progress_file) if agent is not None else ""
                views.append(_view(esc, tail, live=True))
                seen.add(esc.escalation_id)
        views.sort(key=lambda v: v.created_at)
        try:
            rows = self.journal.pending_escalations()
        except JournalError as error:  # a broken journal must not take the tray down
            log.warning("cannot read pending escalations from the journal: %s", error)
            rows = []
        workspaces: dict[str, str | None] = {}
        for row in sorted(rows, key=lambda r: r.created_at):
            if row.escalation_id in seen or row.run_id in live_runs:
                continue
            if row.run_id not in workspaces:
                # Only runs that ended without the user deciding so (the app quit or crashed):
                # a run the user stopped, or one that failed, does not keep asking.
                run_row = self.journal.get_run(row.run_id)
                keep = run_row is not None and run_row.status in (
                    RunStatus.INTERRUPTED,
                    RunStatus.RUNNING,
                )
                workspaces[row.run_id] = run_row.workspace if keep and run_row is not None else None
            workspace = workspaces[row.run_id]
            if workspace is None:
                continue
            tail = _tail(Path(workspace) / PROGRESS_DIR / f"{row.agent_id}.md")
            views.append(_view(row.escalation(), tail, live=False))
        return views


def _view(source: Escalation, tail: str, *, live: bool) -> EscalationView:
    return EscalationView(
        escalation_id=source.escalation_id,
        run_id=source.run_id,
        agent_id=source.agent_id,
        kind=source.kind,
        question=source.question,
        context=source.context,
        options=source.options,
        progress_tail=tail,
        live=live,
        created_at=source.created_at,
    )
