"""The tray icon and its menu. The icon shows the state (idle, N agents working, needs you, last
run failed); the menu is rebuilt each time it opens. Every run in it, live or finished, has
"Review changes": the dashboard's Changes view of that run (review and undo).

While anything waits for the person the tray item's status is NeedsAttention (``Tray.status``,
in the StatusNotifierItem's words). Qt's QSystemTrayIcon has no API for that status: its own
StatusNotifierItem says NeedsAttention only for the few seconds of a ``showMessage``. So the
status is shown the way every tray can: the attention icon (a distinct image, not only a colour)
and a tooltip that says who waits and for what.

"Start again" and "Recent runs" name each run by goal, folder and when ("Make the tests pass —
~/src/app — 2 h ago"); runs whose folder is gone are left out, and identical entries shown once.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any, Protocol

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

from agentray import events as ev
from agentray.engine import RunConfig
from agentray.errors import AgentrayError, JournalError, NoApiKeyError

from .controller import AppController, RunSummary, StartDeclined
from .icons import state_icon
from .marks import marks_from_config, marks_suffix, marks_tooltip, run_marks
from .wording import ago, plural, short_folder

__all__ = [
    "ACTIVE",
    "NEEDS_ATTENTION",
    "Shell",
    "Tray",
    "again_label",
    "finished_run_label",
    "run_label",
]

log = logging.getLogger(__name__)

MAX_MENU_TEXT = 48
RECENT_RUNS = 6  # finished runs listed under "Recent runs"
_STATUS_MARKS = {"succeeded": "✓", "failed": "✗", "cancelled": "■", "interrupted": "⏸"}
# The StatusNotifierItem's words for the tray item's status.
ACTIVE = "Active"
NEEDS_ATTENTION = "NeedsAttention"


class Shell(Protocol):
    """What the tray asks of the application (ui.app.TrayApp)."""

    def open_dashboard(self, run_id: str | None = None) -> None: ...
    def open_changes(self, run_id: str) -> None: ...
    def open_new_run(
        self, goal: str | None = None, workspace: str | None = None, preset: str | None = None
    ) -> None: ...
    def open_settings(self) -> None: ...
    def offer_key(self) -> None: ...
    def open_escalations(self, escalation_id: str | None = None) -> None: ...
    def request_quit(self) -> None: ...
    def show_error(self, title: str, message: str) -> None: ...


def _clip(text: str, limit: int = MAX_MENU_TEXT) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def run_label(run: RunSummary) -> str:
    """A live run's menu entry, marked when it has no sandbox or may reach the network."""
    return (
        f"{_clip(run.goal, 40)} — {run.running} running, {run.waiting} waiting, "
        f"{run.done} done, ${run.cost_usd:.2f}{marks_suffix(run.marks)}"
    )


def _when(row: Any) -> float:
    return float(row.ended_at or row.started_at)


def _where_and_when(row: Any, now: float | None = None) -> str:
    return f"{_clip(row.goal, 40)} — {short_folder(row.workspace, 30)} — {ago(_when(row), now)}"


def finished_run_label(row: Any, now: float | None = None) -> str:
    """A finished run's menu entry (a journal RunRow): its outcome, goal, folder and when."""
    return f"{_STATUS_MARKS.get(row.status, '•')} {_where_and_when(row, now)}"


def again_label(row: Any, now: float | None = None) -> str:
    """A "Start again" entry: goal, folder, when it last ran, and how its commands are confined."""
    return f"↻ {_where_and_when(row, now)}{marks_suffix(marks_from_config(row.config))}"


def _folder_exists(workspace: str) -> bool:
    try:
        return Path(workspace).expanduser().is_dir()
    except OSError:
        return False


def _same_folder(workspace: str) -> str:
    try:
        return str(Path(workspace).expanduser().resolve())
    except OSError:
        return workspace


class Tray(QObject):
    state_changed = Signal(str, int)  # state, badge count
    status_changed = Signal(str)  # ACTIVE | NEEDS_ATTENTION

    def __init__(
        self, controller: AppController, shell: Shell, parent: QObject | None = None
    ) -> None:
        super().__init__(parent)
        self.controller = controller
        self.shell = shell
        self.state = "idle"
        self.count = 0
        self.last_failed = False  # error state: the last finished run failed
        self._tasks: set[asyncio.Future[Any]] = set()
        self.icon = QSystemTrayIcon(state_icon("idle"), self)
        self.menu = QMenu()
        self.menu.aboutToShow.connect(self.rebuild_menu)
        self.icon.setContextMenu(self.menu)
        self.icon.activated.connect(self._on_activated)
        controller.runs_changed.connect(self.refresh)
        controller.escalations_changed.connect(self.refresh)
        controller.run_finished.connect(self._on_run_finished)
        controller.event.connect(self._on_event)
        self.rebuild_menu()
        self.refresh()

    # ------------------------------------------------------------------ state
    def _on_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.RunStarted):
            self.last_failed = False

    def _on_run_finished(self, run_id: str, status: str, summary: str) -> None:
        if status == "failed":
            self.last_failed = True
        elif status == "succeeded":
            self.last_failed = False
        self.refresh()

    @property
    def status(self) -> str:
        """NeedsAttention while anything (a question, an approval) waits for the person."""
        return NEEDS_ATTENTION if self.state == "attention" else ACTIVE

    def compute_state(self) -> tuple[str, int]:
        runs = self.controller.active_runs()
        if self.controller.pending_escalations():
            return "attention", 0
        if runs:
            # agents working: talking to the model or waiting on something; at least one per run
            agents = sum(r.running + r.waiting for r in runs)
            return "working", max(agents, len(runs))
        if self.last_failed:
            return "error", 0
        return "idle", 0

    def tooltip_text(self) -> str:
        runs = self.controller.active_runs()
        pending = self.controller.pending_escalations()
        lines = ["Agentray — needs you" if pending else "Agentray"]
        if pending:
            waiting = "waits" if len(pending) == 1 else "wait"
            lines.append(f"{plural(len(pending), 'question')} {waiting} for you:")
            lines.extend(f"• {_clip(view.question, 60)}" for view in pending[:3])
        if not runs:
            lines.append("Last run failed" if self.last_failed else "Idle")
        for run in runs:
            lines.append(
                f"{_clip(run.goal, 40)}: {run.running} running, {run.waiting} waiting, "
                f"${run.cost_usd:.2f}{marks_suffix(run.marks)}"
            )
        return "\n".join(lines)

    def refresh(self) -> None:
        state, count = self.compute_state()
        if (state, count) != (self.state, self.count):
            status = self.status
            self.state, self.count = state, count
            self.icon.setIcon(state_icon(state, count))
            self.state_changed.emit(state, count)
            if self.status != status:
                self.status_changed.emit(self.status)
        self.icon.setToolTip(self.tooltip_text())

    def _on_activated(self, reason: QSystemTrayIcon.ActivationReason) -> None:
        if reason in (
            QSystemTrayIcon.ActivationReason.Trigger,
            QSystemTrayIcon.ActivationReason.DoubleClick,
        ):
            if self.state == "attention":
                self.shell.open_escalations()
            else:
                self.shell.open_dashboard()

    # ------------------------------------------------------------------ menu
    def _add(self, menu: QMenu, text: str, slot: Any, *, enabled: bool = True) -> QAction:
        action = menu.addAction(text)
        action.triggered.connect(slot)
        action.setEnabled(enabled)
        return action

    def rebuild_menu(self) -> None:
        menu = self.menu
        menu.clear()
        self._add(menu, "New run…", lambda: self.shell.open_new_run())

        presets = self.controller.settings.presets
        recent = self.recent_runs()
        if presets or recent:
            start = menu.addMenu("Start again")
            for preset in presets:
                marks = run_marks(
                    sandboxed=True, allow_network=bool(preset.get("allow_network", False))
                )
                self._add(
                    start,
                    f"▶ {_clip(preset['name'])}{marks_suffix(marks)}",
                    lambda _=False, p=preset: self.start_preset(p),
                )
            if presets and recent:
                start.addSeparator()
            for row in recent:
                action = self._add(
                    start, again_label(row), lambda _=False, r=row: self.start_again(r)
                )
                tip = marks_tooltip(marks_from_config(row.config))
                action.setToolTip("\n".join(filter(None, (row.goal, row.workspace, tip))))

        runs = self.controller.active_runs()
        if runs:
            menu.addSeparator()
            for run in runs:
                sub = menu.addMenu(run_label(run))
                sub.setToolTip("\n".join(filter(None, (run.goal, marks_tooltip(run.marks)))))
                self._add(sub, "Open", lambda _=False, r=run.run_id: self.shell.open_dashboard(r))
                self._add(
                    sub, "Review changes", lambda _=False, r=run.run_id: self.shell.open_changes(r)
                )
                self._add(sub, "Stop", lambda _=False, r=run.run_id: self.controller.stop_run(r))

        finished = self.finished_runs()
        if finished:
            past = menu.addMenu("Recent runs")
            labels = [finished_run_label(row) for row in finished]
            for row, label in zip(finished, labels, strict=True):
                if labels.count(label) > 1:  # two runs that read the same: tell them apart
                    label = f"{label} ({row.run_id})"
                sub = past.addMenu(label)
                sub.setToolTip(f"{row.goal}\n{row.workspace}\n{row.status}")
                self._add(
                    sub, "Review changes", lambda _=False, r=row.run_id: self.shell.open_changes(r)
                )
                self._add(
                    sub, "Details", lambda _=False, r=row.run_id: self.shell.open_dashboard(r)
                )

        pending = len(self.controller.pending_escalations())
        menu.addSeparator()
        self._add(
            menu,
            f"Pending approvals ({pending})",
            lambda: self.shell.open_escalations(),
            enabled=pending > 0,
        )
        self._add(menu, "Stop all agents", self.controller.stop_all, enabled=bool(runs))
        menu.addSeparator()
        self._add(menu, "Dashboard", lambda: self.shell.open_dashboard())
        self._add(menu, "Settings…", self.shell.open_settings)
        menu.addSeparator()
        quit_text = f"Quit (stops {plural(len(runs), 'run')})" if runs else "Quit"
        self._add(menu, quit_text, self.shell.request_quit)

    def action_texts(self, menu: QMenu | None = None) -> list[str]:
        """Every item text, submenus flattened (for tests and accessibility checks)."""
        out: list[str] = []
        for action in (menu or self.menu).actions():
            if action.isSeparator():
                continue
            out.append(action.text())
            if action.menu() is not None:
                out.extend("  " + t for t in self.action_texts(action.menu()))  # type: ignore[arg-type]
        return out

    def find_action(self, text: str, menu: QMenu | None = None) -> QAction | None:
        for action in (menu or self.menu).actions():
            if action.text() == text:
                return action
            sub = action.menu()
            if sub is not None:
                found = self.find_action(text, sub)  # type: ignore[arg-type]
                if found is not None:
                    return found
        return None

    def finished_runs(self, limit: int = RECENT_RUNS) -> list[Any]:
        """The newest runs that are not running here and whose folder is still there, from the
        journal (newest first)."""
        try:
            rows = self.controller.journal.list_runs(limit=limit + 20)
        except JournalError as error:  # a broken journal must not break the menu
            log.warning("cannot read recent runs for the menu: %s", error)
            return []
        shown = [
            r
            for r in rows
            if r.status != "running"
            and not self.controller.is_live(r.run_id)
            and _folder_exists(r.workspace)
        ]
        return sorted(shown, key=_when, reverse=True)[:limit]

    # ------------------------------------------------------------------ one-click starts
    def recent_runs(self, limit: int = 6) -> list[Any]:
        """Recent runs that can start again as they were (newest first): one per goal, folder and
        confinement (the newest), none whose folder is gone."""
        try:
            rows = self.controller.journal.list_runs(limit=40)
        except JournalError as error:  # a broken journal must not break the menu
            log.warning("cannot read recent runs for the menu: %s", error)
            return []
        seen: set[tuple[str, str, tuple[str, ...]]] = set()
        recent = []
        for row in sorted(rows, key=_when, reverse=True):
            if self.controller.is_live(row.run_id) or not _folder_exists(row.workspace):
                continue
            marks = tuple(str(m) for m in marks_from_config(row.config))
            key = (" ".join(row.goal.split()), _same_folder(row.workspace), marks)
            if key in seen:
                continue
            seen.add(key)
            recent.append(row)
        return recent[:limit]

    def start_preset(self, preset: dict[str, Any]) -> None:
        self._start(
            self.controller.settings.preset_config(preset), preset.get("name", "the preset")
        )

    def start_again(self, row: Any) -> None:
        """The same goal, folder, build, model, limits and network as an earlier run, in one click.

        An earlier run without a sandbox goes without one again only where none exists and the
        person agreed (the controller asks once); where a sandbox exists now, it gets one.
        """
        config = RunConfig.from_dict(row.config).replace(sandbox=True)
        self._start(config, _clip(row.goal))

    def _start(self, config: RunConfig, label: str) -> None:
        async def start() -> str | None:
            try:
                return await self.controller.start_run(config)
            except StartDeclined:  # the person said no just now: nothing to tell them
                return None
            except NoApiKeyError:  # say so, and offer to set one (never the demo's script)
                self.shell.offer_key()
                return None
            except AgentrayError as error:
                self.shell.show_error(f"Cannot start {label}", str(error))
                return None

        task = asyncio.ensure_future(start())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
