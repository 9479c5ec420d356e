"""Desktop notifications, only when it matters: an escalation raised, a run finished, a run failed
or stopped. Bursts are coalesced (events within ~2 s give one notification, "3 agents need you").

Every notification carries actions, and a click does the default one (PRODUCT.md, "Reaching the
person"): an escalation's opens the escalation window on it, a finished run's opens its Changes
view ("Review"), a failed or stopped run's its details (with "Review changes" beside it).

``Coalescer`` is plain Python with an injectable scheduler so it can be tested without Qt timing;
``Notifier`` wires it to the controller's events and shows each notification through the
freedesktop notification service with its action buttons (``desktop_notifications``) where one
is on the session bus, else ``QSystemTrayIcon.showMessage``, whose click does the default action.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QSystemTrayIcon

from agentray import events as ev

from .controller import AppController
from .desktop_notifications import DesktopNotifications

__all__ = [
    "ACTION_LABELS",
    "COALESCE_S",
    "Coalescer",
    "Item",
    "Notification",
    "Notifier",
    "compose",
]

log = logging.getLogger(__name__)

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


# What each action does: "open" the escalation window, "review" the run's Changes view,
# "details" the run in the dashboard.
ACTION_LABELS = {"open": "Open", "review": "Review", "details": "Details"}


@dataclass(frozen=True)
class Notification:
    title: str
    message: str
    level: str  # info | warning | critical
    target_kind: str  # escalation | run: what it is about
    target_id: str  # escalation id or run id
    count: int
    actions: tuple[str, ...] = ()  # keys of ACTION_LABELS; the first is what a click does

    @property
    def default_action(self) -> str:
        if self.actions:
            return self.actions[0]
        return "open" if self.target_kind == "escalation" else "details"

    def bus_actions(self) -> list[tuple[str, str]]:
        """(key, label) pairs for the notification server: "default" (a click) first."""
        pairs = [("default", ACTION_LABELS[self.default_action])]
        labels = {**ACTION_LABELS, "review": "Review changes"} if len(self.actions) > 1 else ACTION_LABELS
        return pairs + [(key, labels[key]) for key in self.actions]


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
            title, message, "warning", "escalation", first.escalation_id or "", len(items), ("open",)
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
    # A finished run: review what it changed. A failed or stopped one: its details first.
    actions = ("review",) if last.kind == "succeeded" else ("details", "review")
    return Notification(title, message, level, "run", last.run_id, len(items), actions)


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
    open_run = Signal(str)  # run id: its details in the dashboard
    open_changes = Signal(str)  # run id: its Changes view
    shown = Signal(object)  # the Notification, once handed to the desktop

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
        self.desktop: DesktopNotifications | None = None
        self.by_id: dict[int, Notification] = {}  # what the notification server shows, by its id
        self._tasks: set[asyncio.Future[Any]] = set()
        controller.event.connect(self.on_event)
        tray_icon.messageClicked.connect(self.on_clicked)

    async def use_desktop_notifications(self, desktop: DesktopNotifications | None = None) -> bool:
        """Send through the freedesktop notification server (with action buttons) when one is on
        the session bus; False: keep to the tray icon's messages."""
        desktop = desktop or DesktopNotifications(parent=self)
        if not await desktop.start():
            return False
        if self.desktop is not None:
            await self.desktop.aclose()
        self.desktop = desktop
        desktop.action_invoked.connect(self._on_action)
        desktop.closed.connect(lambda notification_id, _reason: self.by_id.pop(notification_id, None))
        return True

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
        if self.desktop is not None and self.desktop.ready:
            task = asyncio.ensure_future(self._send(self.desktop, notification))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        else:
            self._show_message(notification)
        self.sent.append(notification)
        self.last = notification
        self.shown.emit(notification)

    def _show_message(self, notification: Notification) -> None:
        self.tray_icon.showMessage(
            notification.title, notification.message, _LEVELS[notification.level], MESSAGE_MS
        )

    async def _send(self, desktop: DesktopNotifications, notification: Notification) -> None:
        try:
            notification_id = await desktop.notify(
                notification.title,
                notification.message,
                actions=notification.bus_actions(),
                level=notification.level,
            )
        except Exception as error:  # the server or the bus went away: the tray icon tells from now
            log.warning("the notification server did not take a notification: %s", error)
            self._show_message(notification)
            if self.desktop is desktop:
                self.desktop = None
                await desktop.aclose()
            return
        self.by_id[notification_id] = notification

    def _on_action(self, notification_id: int, key: str) -> None:
        notification = self.by_id.get(notification_id)
        if notification is not None:
            self.invoke(notification, key)

    def invoke(self, notification: Notification, key: str = "default") -> None:
        """Do one of the notification's actions ("default": what a click does)."""
        action = notification.default_action if key == "default" else key
        if action == "open" or notification.target_kind == "escalation":
            self.open_escalation.emit(notification.target_id)
        elif action == "review":
            self.open_changes.emit(notification.target_id)
        else:
            self.open_run.emit(notification.target_id)

    def on_clicked(self) -> None:
        """A click on the tray icon's message (no action buttons there): the default action."""
        if self.last is not None:
            self.invoke(self.last)

    async def aclose(self) -> None:
        desktop, self.desktop = self.desktop, None
        if desktop is not None:
            await desktop.aclose()
