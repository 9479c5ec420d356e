"""The tray icon and its menu. The icon shows the state (idle, N agents working, needs you, last
run failed); the menu is rebuilt each time it opens. Every run in it, live or finished, has
"Review changes": the dashboard's Changes view of that run (review and undo)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Protocol

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu, QSystemTrayIcon

from agentray import events as ev
from agentray.engine import RunConfig
from agentray.errors import AgentrayError

from .controller import AppController, RunSummary, StartDeclined
from .icons import state_icon
from .marks import marks_from_config, marks_suffix, marks_tooltip, run_marks

__all__ = ["Shell", "Tray", "finished_run_label", "run_label"]

MAX_MENU_TEXT = 48
RECENT_RUNS = 6  # finished runs listed under "Recent runs"
_STATUS_MARKS = {"succeeded": "✓", "failed": "✗", "cancelled": "■", "interrupted": "⏸"}


class Shell(Protocol):
    """What the tray asks of the application (ui.app.TrayApp)."""

    def open_dashboard(self, run_id: str | None = None) -> None: ...
    def open_changes(self, run_id: str) -> None: ...
    def open_new_run(
        self, goal: str | None = None, workspace: str | None = None, preset: str | None = None
    ) -> None: ...
    def open_settings(self) -> None: ...
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


def finished_run_label(row: Any) -> str:
    """A finished run's menu entry (a journal RunRow): its outcome, goal and folder."""
    mark = _STATUS_MARKS.get(row.status, "•")
    return f"{mark} {_clip(row.goal, 40)} — {Path(row.workspace).name}"


class Tray(QObject):
    state_changed = Signal(str, int)  # state, badge count

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
        pending = len(self.controller.pending_escalations())
        lines = ["Agentray"]
        if not runs:
            lines.append("Last run failed" if self.last_failed else "Idle")
        for run in runs:
            lines.append(
                f"{_clip(run.goal, 40)}: {run.running} running, {run.waiting} waiting, "
                f"${run.cost_usd:.2f}{marks_suffix(run.marks)}"
            )
        if pending:
            lines.append(
                f"{pending} pending approval{'s' if pending != 1 else ''}: an agent needs you"
            )
        return "\n".join(lines)

    def refresh(self) -> None:
        state, count = self.compute_state()
        if (state, count) != (self.state, self.count):
            self.state, self.count = state, count
            self.icon.setIcon(state_icon(state, count))
            self.state_changed.emit(state, count)
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
                marks = marks_from_config(row.config)
                action = self._add(
                    start,
                    f"↻ {_clip(row.goal)} — {Path(row.workspace).name}{marks_suffix(marks)}",
                    lambda _=False, r=row: self.start_again(r),
                )
                action.setToolTip(marks_tooltip(marks))

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
            for row in finished:
                sub = past.addMenu(finished_run_label(row))
                sub.setToolTip(f"{row.goal}\n{row.workspace}\n{row.status}")
                self._add(
                    sub, "Review changes", lambda _=False, r=row.run_id: self.shell.open_changes(r)
                )
                self._add(sub, "Details", lambda _=False, r=row.run_id: self.shell.open_dashboard(r))

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
        quit_text = f"Quit (stops {len(runs)} runs)" if runs else "Quit"
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
        """The newest runs that are not running here, from the journal (newest first)."""
        try:
            rows = self.controller.journal.list_runs(limit=limit + 10)
        except Exception:  # a broken journal must not break the menu
            return []
        return [r for r in rows if r.status != "running" and not self.controller.is_live(r.run_id)][
            :limit
        ]

    # ------------------------------------------------------------------ one-click starts
    def recent_runs(self, limit: int = 6) -> list[Any]:
        """Recent runs (newest first, one per goal and folder) that can start again as they were."""
        try:
            rows = self.controller.journal.list_runs(limit=40)
        except Exception:  # a broken journal must not break the menu
            return []
        seen: set[tuple[str, str]] = set()
        recent = []
        for row in rows:
            key = (row.goal, row.workspace)
            if key in seen or self.controller.is_live(row.run_id) or not Path(row.workspace).is_dir():
                continue
            seen.add(key)
            recent.append(row)
        return recent[:limit]

    def start_preset(self, preset: dict[str, Any]) -> None:
        self._start(self.controller.settings.preset_config(preset), preset.get("name", "the preset"))

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
            except AgentrayError as error:
                self.shell.show_error(f"Cannot start {label}", str(error))
                return None

        task = asyncio.ensure_future(start())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
