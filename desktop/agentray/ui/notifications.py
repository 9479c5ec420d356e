"""Desktop notifications, only when it matters: an escalation raised, a run finished, a run failed
or stopped. Bursts are coalesced (events within ~2 s give one notification, "3 agents need you").

``Coalescer`` is plain Python with an injectable scheduler so it can be tested without Qt timing;
``Notifier`` wires it to the controller's events and ``QSystemTrayIcon.showMessage``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QSystemTrayIcon

from agentray import events as ev

from .controller import AppController

__all__ = ["COALESCE_S", "Coalescer", "Item", "Notification", "Notifier", "compose"]

COALESCE_S = 2.0
MESSAGE_MS = 10_000

Scheduler = Callable[[float, Callable[[], Any]], Any]


@dataclass(frozen=True)
class Item:
    """One thing worth telling: kind escalation | succeeded | failed | cancelled."""

    kind: str
    run_id: str
    text: str  # the question, or the run's summary
    escalation_id: str | None = None


@dataclass(frozen=True)
class Notification:
    title: str
    message: str
    level: str  # info | warning | critical
    target_kind: str  # escalation | run: what a click opens
    target_id: str  # escalation id or run id
    count: int


def _short(text: str, limit: int = 140) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def compose(items: list[Item]) -> Notification:
    """One notification for a burst of items."""
    asks = [i for i in items if i.kind == "escalation"]
    done = [i for i in items if i.kind == "succeeded"]
    bad = [i for i in items if i.kind in ("failed", "cancelled")]
    others: list[str] = []
    if done:
        others.append(f"{_plural(len(done), 'run')} finished")
    if bad:
        failed = sum(i.kind == "failed" for i in bad)
        stopped = len(bad) - failed
        if failed:
            others.append(f"{_plural(failed, 'run')} failed")
        if stopped:
            others.append(f"{_plural(stopped, 'run')} stopped")
    if asks:
        first = asks[0]
        title = "An agent needs you" if len(asks) == 1 else f"{len(asks)} agents need you"
        message = _short(first.text) if len(asks) == 1 else f"First: {_short(first.text, 100)}"
        if others:
            message += "\n" + ", ".join(others)
        return Notification(
            title, message, "warning", "escalation", first.escalation_id or "", len(items)
        )
    last = items[-1]
    if len(items) == 1:
        title = {"succeeded": "Run finished", "failed": "Run failed", "cancelled": "Run stopped"}[
            last.kind
        ]
        message = _short(last.text) or last.run_id
    else:
        title = ", ".join(others).capitalize()
        message = "Open the dashboard for details"
    level = "critical" if any(i.kind == "failed" for i in items) else "info"
    return Notification(title, message, level, "run", last.run_id, len(items))


class Coalescer:
    """Collects items; the first of a burst schedules a flush ``window_s`` later, and everything
    that arrives meanwhile goes into the same notification."""

    def __init__(
        self,
        emit: Callable[[Notification], None],
        schedule: Scheduler,
        *,
        window_s: float = COALESCE_S,
    ):
        self._emit = emit
        self._schedule = schedule
        self.window_s = window_s
        self._pending: list[Item] = []

    @property
    def pending(self) -> int:
        return len(self._pending)

    def add(self, item: Item) -> None:
        first = not self._pending
        self._pending.append(item)
        if first:
            self._schedule(self.window_s, self.flush)

    def flush(self) -> Notification | None:
        items, self._pending = self._pending, []
        if not items:
            return None
        notification = compose(items)
        self._emit(notification)
        return notification


def qt_schedule(delay_s: float, callback: Callable[[], Any]) -> None:
    QTimer.singleShot(int(delay_s * 1000), callback)


_LEVELS = {
    "info": QSystemTrayIcon.MessageIcon.Information,
    "warning": QSystemTrayIcon.MessageIcon.Warning,
    "critical": QSystemTrayIcon.MessageIcon.Critical,
}


class Notifier(QObject):
    """Turns controller events into coalesced tray messages; a click opens what it is about."""

    open_escalation = Signal(str)  # escalation id
    open_run = Signal(str)  # run id
    shown = Signal(object)  # the Notification, after showMessage

    def __init__(
        self,
        tray_icon: QSystemTrayIcon,
        controller: AppController,
        *,
        window_s: float = COALESCE_S,
        schedule: Scheduler | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.tray_icon = tray_icon
        self.controller = controller
        self.coalescer = Coalescer(self._show, schedule or qt_schedule, window_s=window_s)
        self.sent: list[Notification] = []
        self.last: Notification | None = None
        controller.event.connect(self.on_event)
        tray_icon.messageClicked.connect(self.on_clicked)

    @property
    def muted(self) -> bool:
        return self.controller.settings.notifications_muted

    def on_event(self, event: ev.Event) -> None:
        if self.muted:
            return
        if isinstance(event, ev.EscalationRaised):
            text = (
                event.question
                if not event.options
                else f"{event.question} ({' / '.join(event.options)})"
            )
            self.coalescer.add(Item("escalation", event.run_id, text, event.escalation_id))
        elif isinstance(event, ev.RunFinished) and event.status in (
            "succeeded",
            "failed",
            "cancelled",
        ):
            # "interrupted" is the app quitting (or a crash being noticed): no news for the user
            self.coalescer.add(Item(event.status, event.run_id, event.summary))

    def _show(self, notification: Notification) -> None:
        if self.muted:  # muted while the burst was gathering
            return
        self.tray_icon.showMessage(
            notification.title, notification.message, _LEVELS[notification.level], MESSAGE_MS
        )
        self.sent.append(notification)
        self.last = notification
        self.shown.emit(notification)

    def on_clicked(self) -> None:
        notification = self.last
        if notification is None:
            return
        if notification.target_kind == "escalation":
            self.open_escalation.emit(notification.target_id)
        else:
            self.open_run.emit(notification.target_id)
