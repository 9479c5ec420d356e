"""The dashboard: runs, the selected run's agent tree, an agent's progress file and transcript,
the run's events and timeline, machine load and the system guard.

Engine events only mark parts dirty; a single-shot QTimer refreshes at most every
``REFRESH_INTERVAL_MS``, so sixty busy agents cost ~10 refreshes a second, not one per event.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil
from PySide6.QtCore import Qt, QTimer, QUrl
from PySide6.QtGui import QBrush, QColor, QDesktopServices
from PySide6.QtWidgets import (
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QMainWindow,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTabWidget,
    QTextBrowser,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from agentray import events as ev
from agentray.checkpoints import CHANGING_TOOLS
from agentray.engine import RunView
from agentray.errors import JournalError
from agentray.states import Role
from agentray.timeline import TimelineBuilder, load_timeline

from .changes_view import ChangesView
from .controller import StartDeclined
from .dashboard_views import (
    AgentInfo,
    agents_from_journal,
    agents_from_run,
    format_agents,
    format_cost,
    format_elapsed,
    format_event,
    format_event_dict,
    format_tokens,
    progress_markdown,
    transcript_text,
    tree_order,
)
from .marks import RunMark, marks_from_config, marks_text, marks_tooltip
from .timeline_view import TimelineView
from .wording import window_title

if TYPE_CHECKING:
    from .controller import AppController

__all__ = ["REFRESH_INTERVAL_MS", "DashboardWindow"]

log = logging.getLogger(__name__)

REFRESH_INTERVAL_MS = 100  # at most ~10 refreshes per second, however many events arrive
LOAD_INTERVAL_MS = 2000
EVENTS_KEPT = 2000  # per run, in memory; the journal keeps the important ones
_ROLE = Qt.ItemDataRole.UserRole
_MARK_COLORS = {RunMark.NO_SANDBOX: "#c0392b", RunMark.NETWORK: "#b9770e"}
# The runs list's columns; its items keep the run id, status and marks as data, not as text.
RUN_COLUMNS = ("Run", "Status", "Sandbox", "Agents", "Cost", "Goal")
COL_RUN, COL_STATUS, COL_MARKS, COL_AGENTS, COL_COST, COL_GOAL = range(len(RUN_COLUMNS))
GOAL_MIN_CHARS = 28  # the Goal column shows at least this much of a goal at the default size


@dataclass(frozen=True)
class RunLine:
    """One entry of the runs list, from a controller RunSummary or a journal RunRow."""

    run_id: str
    status: str
    agents: str
    cost: str
    started_at: float
    goal: str
    marks: tuple[RunMark, ...]


_AGENT_EVENTS = (
    ev.AgentSpawned,
    ev.AgentStatusChanged,
    ev.UsageUpdated,
    ev.AgentProgress,
    ev.ToolCallFinished,
)


class DashboardWindow(QMainWindow):
    def __init__(self, controller: AppController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.setWindowTitle(window_title("Dashboard"))
        self.setObjectName("dashboard")
        self.resize(1180, 760)
        self.refresh_count = 0  # how many coalesced refreshes ran (the tests bound it)
        self.selected_run: str | None = None
        self.selected_agent: str | None = None
        self._agent_items: dict[str, QTreeWidgetItem] = {}
        self._live_events: dict[str, deque[ev.Event]] = {}
        self._pending_events: list[ev.Event] = []
        self._dirty_runs = self._dirty_agents = self._dirty_progress = False
        self._dirty_transcript = False
        self._dirty_changes = False
        self._progress_text: str | None = None
        self._tasks: set[asyncio.Future[Any]] = set()
        self._agent_counts: dict[str, str] = {}  # ended runs' Agents column, read once each

        self._build_ui()

        self._refresh_timer = QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(REFRESH_INTERVAL_MS)
        self._refresh_timer.timeout.connect(self.refresh)
        self._load_timer = QTimer(self)
        self._load_timer.setInterval(LOAD_INTERVAL_MS)
        self._load_timer.timeout.connect(self._tick)
        self._load_timer.start()
        psutil.cpu_percent(interval=None)  # prime: the first reading is always 0

        controller.event.connect(self._on_event)
        controller.runs_changed.connect(self._on_runs_changed)
        self._dirty_runs = True
        self.refresh()
        self._update_load()

    # ------------------------------------------------------------------ layout
    def _build_ui(self) -> None:
        self.runs = QTreeWidget()
        self.runs.setObjectName("runsList")
        self.runs.setHeaderLabels(list(RUN_COLUMNS))
        self.runs.setRootIsDecorated(False)
        self.runs.setTextElideMode(Qt.TextElideMode.ElideRight)
        header = self.runs.header()
        for column in range(COL_GOAL):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        # the goal takes the room the others leave, and never less than a readable start of it
        header.setSectionResizeMode(COL_GOAL, QHeaderView.ResizeMode.Stretch)
        header.setStretchLastSection(True)
        goal_width = self.runs.fontMetrics().averageCharWidth() * GOAL_MIN_CHARS
        runs_width = goal_width + self._runs_columns_width()
        self.runs.itemSelectionChanged.connect(self._run_selected)

        self.agents = QTreeWidget()
        self.agents.setObjectName("agentTree")
        self.agents.setHeaderLabels(["Agent", "Status", "Role", "Elapsed", "Tokens", "Cost"])
        self.agents.setColumnWidth(0, 260)
        self.agents.itemSelectionChanged.connect(self._agent_selected)

        self.progress = QTextBrowser()
        self.progress.setObjectName("progressView")
        self.progress.setOpenLinks(False)
        self.transcript = QPlainTextEdit()
        self.transcript.setObjectName("transcriptView")
        self.transcript.setReadOnly(True)
        self.events = QListWidget()
        self.events.setObjectName("eventsList")
        self.events.setUniformItemSizes(True)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.progress, "Progress")
        self.tabs.addTab(self.transcript, "Transcript")
        self.tabs.addTab(self.events, "Events")
        self.timeline = TimelineView()
        self.timeline_scroll = QScrollArea()
        self.timeline_scroll.setObjectName("timelineScroll")
        self.timeline_scroll.setWidgetResizable(True)
        self.timeline_scroll.setWidget(self.timeline)
        self.tabs.addTab(self.timeline_scroll, "Timeline")
        self.changes = ChangesView(self.controller)
        self.tabs.addTab(self.changes, "Changes")
        self.tabs.currentChanged.connect(self._tab_changed)

        self.stop_agent_button = QPushButton("Stop agent")
        self.stop_run_button = QPushButton("Stop run")
        self.resume_run_button = QPushButton("Resume run")
        self.open_folder_button = QPushButton("Open folder")
        self.stop_agent_button.clicked.connect(self.stop_agent)
        self.stop_run_button.clicked.connect(self.stop_run)
        self.resume_run_button.clicked.connect(self.resume_run)
        self.open_folder_button.clicked.connect(self.open_folder)
        buttons = QHBoxLayout()
        for button in (
            self.stop_agent_button,
            self.stop_run_button,
            self.resume_run_button,
            self.open_folder_button,
        ):
            buttons.addWidget(button)
        buttons.addStretch(1)
        self.message = QLabel()
        self.message.setObjectName("dashboardMessage")
        buttons.addWidget(self.message)

        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.agents)
        right.addWidget(self.tabs)
        right.setSizes([300, 420])
        main = QSplitter(Qt.Orientation.Horizontal)
        main.addWidget(self.runs)
        main.addWidget(right)
        main.setSizes([runs_width, max(400, self.width() - runs_width)])

        self.load_label = QLabel()
        self.load_label.setObjectName("loadLabel")
        self.guard_label = QLabel()
        self.guard_label.setObjectName("guardLabel")
        footer = QHBoxLayout()
        footer.addWidget(self.load_label)
        footer.addStretch(1)
        footer.addWidget(self.guard_label)

        central = QWidget()
        layout = QVBoxLayout(central)
        layout.addLayout(buttons)
        layout.addWidget(main, 1)
        layout.addLayout(footer)
        self.setCentralWidget(central)
        self._update_buttons()

    def _runs_columns_width(self) -> int:
        """What the columns before Goal need for typical values, and the frame around them."""
        metrics = self.runs.fontMetrics()
        samples = ("00:00  r0000-0000", "interrupted", "no sandbox", "3 running / 12", "$0.000")
        padding = 2 * metrics.averageCharWidth()
        header = self.runs.header().fontMetrics()
        widths = [
            max(metrics.horizontalAdvance(sample), header.horizontalAdvance(name)) + padding
            for sample, name in zip(samples, RUN_COLUMNS, strict=False)
        ]
        return sum(widths) + 2 * self.runs.frameWidth()

    # ------------------------------------------------------------------ public
    def show_run(self, run_id: str) -> None:
        """Bring the window up with this run selected."""
        self._dirty_runs = True
        self.refresh()
        for i in range(self.runs.topLevelItemCount()):
            item = self.runs.topLevelItem(i)
            if item is not None and item.data(COL_RUN, _ROLE) == run_id:
                self.runs.setCurrentItem(item)
                break
        else:
            self._select_run(run_id)
        self.show()
        self.raise_()
        self.activateWindow()

    def show_changes(self, run_id: str) -> None:
        """Bring the window up on this run's Changes tab (review and undo)."""
        self.show_run(run_id)
        if not self.changes.busy:  # read afresh: the files may have changed since the last read
            self.changes.mark_stale()  # (now if on show, else as the tab comes up)
        self.tabs.setCurrentWidget(self.changes)

    # ------------------------------------------------------------------ events -> dirty flags
    def _on_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.GuardStateChanged):
            self._show_guard(event.saturated, event.reason)
            return
        buffer = self._live_events.get(event.run_id)
        if buffer is None:
            buffer = self._live_events[event.run_id] = deque(maxlen=EVENTS_KEPT)
        buffer.append(event)
        if event.run_id == self.selected_run:
            self._pending_events.append(event)
            self.timeline.feed(event)  # it repaints at most ~10 times a second
            if isinstance(event, _AGENT_EVENTS):
                self._dirty_agents = True
                if getattr(event, "agent_id", None) == self.selected_agent:
                    if isinstance(event, ev.AgentProgress | ev.AgentStatusChanged):
                        self._dirty_progress = True
                    if isinstance(event, ev.ToolCallFinished | ev.UsageUpdated):
                        self._dirty_transcript = True
            if (
                isinstance(event, ev.ToolCallFinished) and event.tool in CHANGING_TOOLS
            ) or isinstance(event, ev.RunFinished):
                self._dirty_changes = True  # its snapshot is in the journal by now
        if isinstance(event, ev.RunStarted | ev.RunFinished):
            self._dirty_runs = True
        self._schedule()

    def _on_runs_changed(self) -> None:
        self._dirty_runs = True
        self._schedule()

    def _schedule(self) -> None:
        if not self._refresh_timer.isActive():
            self._refresh_timer.start()

    def refresh(self) -> None:
        """Apply everything marked dirty since the last refresh (one pass)."""
        self.refresh_count += 1
        if self._dirty_runs:
            self._dirty_runs = False
            self._refresh_runs()
        if self._dirty_agents:
            self._dirty_agents = False
            self._refresh_agents()
        if self._pending_events:
            pending, self._pending_events = self._pending_events, []
            self._append_events([format_event(e) for e in pending])
        if self._dirty_progress:
            self._dirty_progress = False
            self._refresh_progress()
        if self._dirty_transcript and self.tabs.currentWidget() is self.transcript:
            self._dirty_transcript = False
            self._refresh_transcript()
        if self._dirty_changes:
            # the view reads one at a time (and once more after), however many calls end meanwhile
            self._dirty_changes = False
            self.changes.mark_stale()
        self._update_buttons()

    # ------------------------------------------------------------------ runs
    def _run_rows(self) -> list[RunLine]:
        """Live runs (from the controller's summaries), then the journal's, newest first."""
        rows: dict[str, RunLine] = {}
        for s in self.controller.active_runs():
            rows[s.run_id] = RunLine(
                run_id=s.run_id,
                status=s.status,
                agents=f"{s.running} running / {s.total}",
                cost=format_cost(s.cost_usd),
                started_at=s.started_at,
                goal=s.goal,
                marks=s.marks,
            )
        try:
            past = self.controller.journal.list_runs(limit=100)
        except JournalError as error:  # a locked or broken journal must not take the window down
            log.warning("cannot list past runs: %s", error)
            past = []
        for r in past:
            if r.run_id not in rows:
                rows[r.run_id] = RunLine(
                    run_id=r.run_id,
                    status=r.status,
                    agents=self._agents_text(r.run_id, ended=r.status != "running"),
                    cost=format_cost(r.cost_usd),
                    started_at=r.started_at,
                    goal=r.goal,
                    marks=marks_from_config(r.config),
                )
        return sorted(rows.values(), key=lambda row: row.started_at, reverse=True)

    def _agents_text(self, run_id: str, *, ended: bool) -> str:
        """The Agents column of a run from the journal ("4 agents"); an ended run's is read once."""
        known = self._agent_counts.get(run_id)
        if known is not None:
            return known
        try:
            count = len(self.controller.journal.list_agents(run_id))
        except JournalError as error:  # a locked or broken journal must not take the window down
            log.warning("cannot count the agents of %s: %s", run_id, error)
            return ""
        text = format_agents(count)
        if ended:
            self._agent_counts[run_id] = text
        return text

    def _refresh_runs(self) -> None:
        rows = self._run_rows()
        existing: dict[str, QTreeWidgetItem] = {}
        for i in range(self.runs.topLevelItemCount()):
            item = self.runs.topLevelItem(i)
            if item is not None:
                existing[str(item.data(COL_RUN, _ROLE))] = item
        wanted = [row.run_id for row in rows]
        if list(existing) != wanted:
            # Order or membership changed: rebuild, keeping the selection.
            self.runs.blockSignals(True)
            self.runs.clear()
            existing = {}
            for row in rows:
                item = QTreeWidgetItem()
                item.setData(COL_RUN, _ROLE, row.run_id)
                self.runs.addTopLevelItem(item)
                existing[row.run_id] = item
            self.runs.blockSignals(False)
        for row in rows:
            item = existing[row.run_id]
            # the run id holds the date (r1128-…): the column adds the time of day
            stamp = time.strftime("%H:%M", time.localtime(row.started_at))
            values = (
                f"{stamp}  {row.run_id}",
                row.status,
                marks_text(row.marks),
                row.agents,
                row.cost,
                row.goal.splitlines()[0] if row.goal else "",
            )
            for column, value in enumerate(values):
                if item.text(column) != value:
                    item.setText(column, value)
            item.setData(COL_STATUS, _ROLE, row.status)
            if item.data(COL_MARKS, _ROLE) != [m.value for m in row.marks]:
                self._show_marks(item, row.marks)
            item.setToolTip(COL_GOAL, row.goal)
            item.setToolTip(
                COL_RUN, time.strftime("started %Y-%m-%d %H:%M:%S", time.localtime(row.started_at))
            )
            if row.run_id == self.selected_run and not item.isSelected():
                self.runs.blockSignals(True)
                self.runs.setCurrentItem(item)
                self.runs.blockSignals(False)
        if self.selected_run is None and rows:
            first = self.runs.topLevelItem(0)
            if first is not None:
                self.runs.setCurrentItem(first)

    @staticmethod
    def _show_marks(item: QTreeWidgetItem, marks: tuple[RunMark, ...]) -> None:
        item.setData(COL_MARKS, _ROLE, [m.value for m in marks])
        item.setToolTip(COL_MARKS, marks_tooltip(marks) or "Sandboxed, no network.")
        color = _MARK_COLORS.get(marks[0]) if marks else None
        item.setForeground(COL_MARKS, QBrush(QColor(color)) if color else QBrush())

    def run_marks(self, run_id: str) -> tuple[RunMark, ...] | None:
        """The marks the runs list shows for a run (None: not listed)."""
        for i in range(self.runs.topLevelItemCount()):
            item = self.runs.topLevelItem(i)
            if item is not None and item.data(COL_RUN, _ROLE) == run_id:
                return tuple(RunMark(v) for v in item.data(COL_MARKS, _ROLE) or ())
        return None

    def _run_selected(self) -> None:
        item = self.runs.currentItem()
        if item is not None:
            self._select_run(str(item.data(COL_RUN, _ROLE)))

    def _select_run(self, run_id: str) -> None:
        if run_id == self.selected_run:
            return
        self.selected_run = run_id
        self.selected_agent = None
        self._agent_items.clear()
        self.agents.clear()
        self._progress_text = None
        self.progress.clear()
        self.transcript.clear()
        self.events.clear()
        self._pending_events = []
        self._load_events(run_id)
        self._load_timeline(run_id)
        self._refresh_agents()
        self._dirty_changes = False
        self.changes.set_run(run_id)
        self._update_buttons()

    def _live_run(self) -> RunView | None:
        if self.selected_run is None:
            return None
        return self.controller.live_view(self.selected_run)

    def _workspace(self) -> str | None:
        run = self._live_run()
        if run is not None:
            return run.workspace
        if self.selected_run is None:
            return None
        row = self.controller.journal.get_run(self.selected_run)
        return row.workspace if row is not None else None

    # ------------------------------------------------------------------ agents
    def _agent_infos(self) -> list[AgentInfo]:
        if self.selected_run is None:
            return []
        run = self._live_run()
        if run is not None:
            return agents_from_run(run)
        rows = self.controller.journal.list_agents(self.selected_run)
        return agents_from_journal(rows, self._workspace())

    def _refresh_agents(self) -> None:
        now = time.time()
        for agent in tree_order(self._agent_infos()):
            item = self._agent_items.get(agent.agent_id)
            if item is None:
                parent = self._agent_items.get(agent.parent_id or "")
                item = QTreeWidgetItem(parent) if parent is not None else QTreeWidgetItem()
                item.setData(0, _ROLE, agent.agent_id)
                if parent is None:
                    self.agents.addTopLevelItem(item)
                if parent is not None:
                    parent.setExpanded(True)
                self._agent_items[agent.agent_id] = item
            values = (
                f"{agent.title}  ({agent.agent_id})",
                agent.status,
                agent.role,
                format_elapsed(agent, now),
                format_tokens(agent.tokens),
                format_cost(agent.cost_usd),
            )
            for column, value in enumerate(values):
                if item.text(column) != value:
                    item.setText(column, value)
            item.setData(1, _ROLE, str(agent.progress_path) if agent.progress_path else "")
        if self.selected_agent is None and self.agents.topLevelItemCount():
            first = self.agents.topLevelItem(0)
            if first is not None:
                self.agents.setCurrentItem(first)

    def _agent_selected(self) -> None:
        item = self.agents.currentItem()
        agent_id = str(item.data(0, _ROLE)) if item is not None else None
        if agent_id == self.selected_agent:
            return
        self.selected_agent = agent_id
        self._progress_text = None
        self._refresh_progress()
        self._dirty_transcript = True
        if self.tabs.currentWidget() is self.transcript:
            self._dirty_transcript = False
            self._refresh_transcript()
        self._update_buttons()

    def _selected_progress_path(self) -> Path | None:
        item = self._agent_items.get(self.selected_agent or "")
        value = item.data(1, _ROLE) if item is not None else ""
        return Path(value) if value else None

    def _refresh_progress(self) -> None:
        path = self._selected_progress_path()
        try:
            text = path.read_text(encoding="utf-8", errors="replace") if path else ""
        except OSError:
            text = ""
        if not text and path is not None:
            text = f"_No progress file yet ({path.name})._"
        if text == self._progress_text:
            return  # unchanged: keep the scroll position
        self._progress_text = text
        bar = self.progress.verticalScrollBar()
        at_end = bar.value() >= bar.maximum() - 4
        self.progress.setMarkdown(progress_markdown(text))
        if at_end:
            bar.setValue(bar.maximum())

    def progress_text(self) -> str:
        """The raw progress file text on show (tests and screenshots read it)."""
        return self._progress_text or ""

    def _tab_changed(self, _index: int) -> None:
        if self.tabs.currentWidget() is self.changes:
            self.changes.ensure_loaded()
        if self.tabs.currentWidget() is self.transcript and self._dirty_transcript:
            self._dirty_transcript = False
            self._refresh_transcript()

    def _refresh_transcript(self) -> None:
        if self.selected_run is None or self.selected_agent is None:
            self.transcript.clear()
            return
        try:
            messages = self.controller.journal.load_transcript(
                self.selected_run, self.selected_agent
            )
        except Exception as error:
            self.transcript.setPlainText(f"(the transcript cannot be read: {error})")
            return
        self.transcript.setPlainText(transcript_text(messages))
        bar = self.transcript.verticalScrollBar()
        bar.setValue(bar.maximum())

    # ------------------------------------------------------------------ timeline
    def _load_timeline(self, run_id: str) -> None:
        """Read the run's timeline from the journal once; the events that follow extend it."""
        builder: TimelineBuilder
        try:
            builder = load_timeline(self.controller.journal, run_id)
        except KeyError:  # not journaled yet: its events build it
            builder = TimelineBuilder(run_id, time.time())
        except JournalError as error:  # a locked journal: start from its events
            log.warning("cannot read the timeline of %s: %s", run_id, error)
            builder = TimelineBuilder(run_id, time.time())
        self.timeline.set_builder(builder)

    # ------------------------------------------------------------------ events list
    def _load_events(self, run_id: str) -> None:
        live = list(self._live_events.get(run_id, ()))
        first_live = live[0].ts if live else float("inf")
        try:
            journaled = self.controller.journal.list_events(run_id)
        except JournalError as error:
            log.warning("cannot read the events of %s: %s", run_id, error)
            journaled = []
        lines = [format_event_dict(e) for e in journaled if float(e.get("ts", 0)) < first_live]
        lines += [format_event(e) for e in live]
        self._append_events(lines)

    def _append_events(self, lines: list[str]) -> None:
        if not lines:
            return
        bar = self.events.verticalScrollBar()
        at_end = bar.value() >= bar.maximum() - 2
        self.events.addItems(lines[-EVENTS_KEPT:])
        overflow = self.events.count() - EVENTS_KEPT
        for _ in range(max(0, overflow)):
            self.events.takeItem(0)
        if at_end:
            self.events.scrollToBottom()

    # ------------------------------------------------------------------ load and guard
    def _tick(self) -> None:
        self._update_load()
        if self._live_run() is not None:
            self._dirty_agents = True  # elapsed times move on
            self._schedule()
        elif self._running_elsewhere_on_show():
            # no events come from a run in another process: its journal is read now and then
            self._load_timeline(str(self.selected_run))

    def _running_elsewhere_on_show(self) -> bool:
        """The Timeline tab shows a run that goes on in another process (`agentray run`)."""
        timeline = self.timeline.timeline()
        return (
            self.selected_run is not None
            and self.tabs.currentWidget() is self.timeline_scroll
            and timeline is not None
            and timeline.live
            and not self.controller.is_live(self.selected_run)
        )

    def _update_load(self) -> None:
        cpu = psutil.cpu_percent(interval=None)
        memory = psutil.virtual_memory()
        self.load_label.setText(
            f"CPU {cpu:.0f}%   Memory {memory.percent:.0f}% used "
            f"({memory.available / 2**30:.1f} GiB free)"
        )
        self._show_guard(*self.controller.guard_state())

    def _show_guard(self, saturated: bool, reason: str) -> None:
        if saturated:
            self.guard_label.setText(f"Guard: holding new agents ({reason})")
            self.guard_label.setStyleSheet("color: #c0392b;")
        else:
            self.guard_label.setText("Guard: clear")
            self.guard_label.setStyleSheet("")

    # ------------------------------------------------------------------ actions
    def _update_buttons(self) -> None:
        run = self._live_run()
        live = run is not None
        agent = run.agent(self.selected_agent or "") if run is not None else None
        self.stop_agent_button.setEnabled(
            agent is not None and agent.active and agent.role != Role.ORCHESTRATOR
        )
        self.stop_run_button.setEnabled(live)
        item = self.runs.currentItem()
        status = str(item.data(COL_STATUS, _ROLE) or "") if item is not None and not live else ""
        self.resume_run_button.setEnabled(not live and status not in ("", "succeeded", "running"))
        self.open_folder_button.setEnabled(self.selected_run is not None)

    def _spawn(self, coro: Any, what: str, on_success: Any = None) -> asyncio.Future[Any]:
        task: asyncio.Future[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(t: asyncio.Future[Any]) -> None:
            self._tasks.discard(t)
            if t.cancelled():
                return
            error = t.exception()
            if isinstance(error, StartDeclined):  # the person said no to running unsandboxed
                self.message.setText(str(error))
            elif error is not None:
                self.message.setText(f"{what} failed: {error}")
            else:
                self.message.setText(f"{what}: done")
                if on_success is not None:
                    on_success()
            self._dirty_runs = self._dirty_agents = True
            self._schedule()

        task.add_done_callback(done)
        return task

    def stop_agent(self) -> None:
        if self.selected_run and self.selected_agent:
            self.message.setText(f"Stopping {self.selected_agent}…")
            self._spawn(
                self.controller.cancel_agent(self.selected_run, self.selected_agent), "Stop agent"
            )

    def stop_run(self) -> None:
        if self.selected_run:
            self.message.setText(f"Stopping run {self.selected_run}…")
            self.controller.stop_run(self.selected_run)
            self._dirty_runs = True
            self._schedule()

    def resume_run(self) -> None:
        if self.selected_run:
            self.message.setText(f"Resuming run {self.selected_run}…")
            run_id = self.selected_run

            def reselect() -> None:
                # The run now comes from the engine, not the journal: rebuild its views.
                self.selected_run = None
                self._select_run(run_id)

            self._spawn(self.controller.resume_run(run_id), "Resume", reselect)

    def open_folder(self) -> None:
        workspace = self._workspace()
        if workspace:
            QDesktopServices.openUrl(QUrl.fromLocalFile(workspace))
