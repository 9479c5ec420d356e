"""Desktop notifications, only when it matters: an escalation raised, a run finished, a run failed
or stopped by something other than the person. Bursts are coalesced (events within ~2 s give one
notification, "3 agents need you").

Every notification carries actions, and a click does the default one (PRODUCT.md, "Reaching the
person"): an escalation's "Answer" opens the escalation window on it ("Open dashboard" beside it),
a finished run's "Review" opens its Changes view ("Open folder" beside it), a failed or stopped
run's "Show" its details in the dashboard ("Review changes" beside it).

An escalation's notification is persistent (urgency critical, no expiry, resident where the server
keeps notifications) and is closed once every question in it is answered. A question still
unanswered after ``REMINDER_S`` is reminded of once (the "escalation_reminder" setting), never
more. Nothing is told about what the person just did: a run they stopped (Stop, Stop all, Abort)
ends without news, and an interrupted run (the app quitting) never notifies.

``Coalescer`` is plain Python with an injectable scheduler so it can be tested without Qt timing;
``Notifier`` wires it to the controller's events and shows each notification through the
freedesktop notification service with its action buttons (``desktop_notifications``) where one
is on the session bus, else ``QSystemTrayIcon.showMessage``, whose click does the default action.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QSystemTrayIcon

from agentray import events as ev

from .controller import AppController
from .desktop_notifications import DesktopNotifications
from .wording import clip, plural, short_folder

__all__ = [
    "ACTION_LABELS",
    "COALESCE_S",
    "REMINDER_S",
    "Coalescer",
    "Item",
    "Notification",
    "Notifier",
    "compose",
]

log = logging.getLogger(__name__)

COALESCE_S = 2.0
MESSAGE_MS = 10_000
REMINDER_S = 600.0  # one reminder of a question left unanswered this long

Scheduler = Callable[[float, Callable[[], Any]], Any]


@dataclass(frozen=True)
class Item:
    """One thing worth telling: kind escalation | succeeded | failed | cancelled."""

    kind: str
    run_id: str
    text: str  # the question, or the run's summary
    escalation_id: str | None = None
    reminder: bool = False  # the one reminder of a question still unanswered
    where: str = ""  # the run's project folder, as shown: which run asks


# What each action does: "answer" opens the escalation window on the question, "dashboard" and
# "show" the run in the dashboard, "review" the run's Changes view, "folder" its project folder.
ACTION_LABELS = {
    "answer": "Answer",
    "dashboard": "Open dashboard",
    "review": "Review",
    "folder": "Open folder",
    "show": "Show",
}
_BESIDE_LABELS = {"review": "Review changes"}  # the label when it is not what a click does


@dataclass(frozen=True)
class Notification:
    title: str
    message: str
    level: str  # info | warning | critical
    target_kind: str  # escalation | run: what it is about
    target_id: str  # escalation id or run id
    count: int
    actions: tuple[str, ...] = ()  # keys of ACTION_LABELS; the first is what a click does
    run_id: str = ""  # the run it is about (an escalation's run)
    escalation_ids: tuple[str, ...] = ()  # every question in it
    persistent: bool = False  # stays until acted on: an escalation
    reminder: bool = False

    @property
    def default_action(self) -> str:
        if self.actions:
            return self.actions[0]
        return "answer" if self.target_kind == "escalation" else "show"

    def label(self, key: str) -> str:
        if key != self.default_action and key in _BESIDE_LABELS:
            return _BESIDE_LABELS[key]
        return ACTION_LABELS[key]

    def bus_actions(self) -> list[tuple[str, str]]:
        """(key, label) pairs for the notification server: "default" (a click) first, then each
        action as a button (servers that hide the default one still show it)."""
        pairs = [("default", self.label(self.default_action))]
        return pairs + [(key, self.label(key)) for key in self.actions]


def compose(items: list[Item]) -> Notification:
    """One notification for a burst of items."""
    asks = [i for i in items if i.kind == "escalation"]
    done = [i for i in items if i.kind == "succeeded"]
    bad = [i for i in items if i.kind in ("failed", "cancelled")]
    others: list[str] = []
    if done:
        others.append(f"{plural(len(done), 'run')} finished")
    if bad:
        failed = sum(i.kind == "failed" for i in bad)
        stopped = len(bad) - failed
        if failed:
            others.append(f"{plural(failed, 'run')} failed")
        if stopped:
            others.append(f"{plural(stopped, 'run')} stopped")
    if asks:
        first = asks[0]
        reminder = all(i.reminder for i in asks)
        if len(asks) == 1:
            title = "Still waiting: an agent needs you" if reminder else "An agent needs you"
            message = clip(first.text, 140) + (f"\nin {first.where}" if first.where else "")
        else:
            title = f"{len(asks)} agents need you" + (" (reminder)" if reminder else "")
            message = f"First: {clip(first.text, 100)}"
        if others:
            message += "\n" + ", ".join(others)
        return Notification(
            title,
            message,
            "warning",
            "escalation",
            first.escalation_id or "",
            len(items),
            ("answer", "dashboard"),
            run_id=first.run_id,
            escalation_ids=tuple(i.escalation_id for i in asks if i.escalation_id),
            persistent=True,
            reminder=reminder,
        )
    last = items[-1]
    if len(items) == 1:
        title = {"succeeded": "Run finished", "failed": "Run failed", "cancelled": "Run stopped"}[
            last.kind
        ]
        message = clip(last.text, 140) or last.run_id
    else:
        title = ", ".join(others).capitalize()
        message = "Open the dashboard for details"
    level = "critical" if any(i.kind == "failed" for i in items) else "info"
    # A finished run: review what it changed. A failed or stopped one: its details first.
    actions = ("review", "folder") if last.kind == "succeeded" else ("show", "review")
    return Notification(
        title, message, level, "run", last.run_id, len(items), actions, run_id=last.run_id
    )


class Coalescer:
    """Collects items; the first of a burst schedules a flush ``window_s`` later, and everything
    that arrives meanwhile goes into the same notification."""

    def __init__(
        self,
        emit: Callable[[Notification], None],
        schedule: Scheduler,
        *,
        window_s: float = COALESCE_S,
        keep: Callable[[Item], bool] | None = None,
    ):
        self._emit = emit
        self._schedule = schedule
        self.window_s = window_s
        self._keep = keep  # asked at the flush: is the item still news?
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
        if self._keep is not None:
            items = [item for item in items if self._keep(item)]
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
    """Turns controller events into coalesced notifications; their actions open what they are
    about."""

    open_escalation = Signal(str)  # escalation id: the escalation window on it
    open_run = Signal(str)  # run id: its details in the dashboard
    open_changes = Signal(str)  # run id: its Changes view
    open_folder = Signal(str)  # run id: its project folder in the file manager
    shown = Signal(object)  # the Notification, once handed to the desktop

    def __init__(
        self,
        tray_icon: QSystemTrayIcon,
        controller: AppController,
        *,
        window_s: float = COALESCE_S,
        schedule: Scheduler | None = None,
        reminder_s: float = REMINDER_S,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.tray_icon = tray_icon
        self.controller = controller
        self.coalescer = Coalescer(
            self._show, schedule or qt_schedule, window_s=window_s, keep=self._still_news
        )
        self.reminder_s = reminder_s
        self.reminders: dict[str, QTimer] = {}  # escalation id -> its one reminder, not yet due
        self.reminded: set[str] = set()  # escalations reminded of (never again)
        self.sent: list[Notification] = []
        self.last: Notification | None = None
        self.desktop: DesktopNotifications | None = None
        self.by_id: dict[int, Notification] = {}  # what the notification server shows, by its id
        self._questions: dict[str, Item] = {}  # unanswered escalations raised in this session
        self._answered: set[str] = set()
        self._ended: set[str] = set()  # runs that ended: their questions are no news any more
        self._last_via_message = False  # the last one went through the tray icon's message
        self._tasks: set[asyncio.Future[Any]] = set()
        controller.event.connect(self.on_event)
        controller.escalations_changed.connect(self._close_answered)
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
        desktop.closed.connect(
            lambda notification_id, _reason: self.by_id.pop(notification_id, None)
        )
        return True

    @property
    def muted(self) -> bool:
        return self.controller.settings.notifications_muted

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ what is news
    def on_event(self, event: ev.Event) -> None:
        if isinstance(event, ev.RunStarted):
            self._ended.discard(event.run_id)
        elif isinstance(event, ev.EscalationRaised):
            text = (
                event.question
                if not event.options
                else f"{event.question} ({' / '.join(event.options)})"
            )
            summary = self.controller.run_summary(event.run_id)
            where = short_folder(summary.workspace) if summary is not None else ""
            item = Item("escalation", event.run_id, text, event.escalation_id, where=where)
            self._questions[event.escalation_id] = item
            self._answered.discard(event.escalation_id)  # raised again after a resume
            self._schedule_reminder(event.escalation_id)
            if not self.muted:
                self.coalescer.add(item)
        elif isinstance(event, ev.EscalationAnswered):
            self._answered.add(event.escalation_id)
            self._questions.pop(event.escalation_id, None)
            self._cancel_reminder(event.escalation_id)
        elif isinstance(event, ev.RunFinished):
            self._ended.add(event.run_id)
            # the run's questions wait no more while it is not running: no reminders of them
            for escalation_id, item in list(self._questions.items()):
                if item.run_id == event.run_id:
                    self._cancel_reminder(escalation_id)
            if self.muted or not self._tells(event):
                return
            self.coalescer.add(Item(event.status, event.run_id, event.summary))

    def _tells(self, event: ev.RunFinished) -> bool:
        """A run's end is news unless the person just did it (Stop, Stop all, Abort) or the app
        quit ("interrupted": also a crash being noticed)."""
        if event.status in ("succeeded", "failed"):
            return True
        return event.status == "cancelled" and event.run_id not in self.controller.stopped_by_person

    def _still_news(self, item: Item) -> bool:
        """Asked when a burst is flushed: what was answered or stopped meanwhile is left out."""
        if item.kind == "escalation":
            return item.escalation_id not in self._answered and item.run_id not in self._ended
        return item.kind != "cancelled" or item.run_id not in self.controller.stopped_by_person

    # ------------------------------------------------------------------ the one reminder
    def _schedule_reminder(self, escalation_id: str) -> None:
        if escalation_id in self.reminded or escalation_id in self.reminders:
            return
        timer = QTimer(self)
        timer.setSingleShot(True)
        timer.setInterval(max(0, int(self.reminder_s * 1000)))
        timer.timeout.connect(lambda: self._remind(escalation_id))
        self.reminders[escalation_id] = timer
        timer.start()

    def _cancel_reminder(self, escalation_id: str) -> None:
        timer = self.reminders.pop(escalation_id, None)
        if timer is not None:
            timer.stop()
            timer.deleteLater()

    def _remind(self, escalation_id: str) -> None:
        self._cancel_reminder(escalation_id)
        item = self._questions.get(escalation_id)
        if item is None or escalation_id in self._answered or escalation_id in self.reminded:
            return
        if self.muted or not self.controller.settings.escalation_reminder:
            return
        pending = {v.escalation_id for v in self.controller.pending_escalations() if v.live}
        if escalation_id not in pending:
            return
        self.reminded.add(escalation_id)
        self.coalescer.add(dataclasses.replace(item, reminder=True))

    # ------------------------------------------------------------------ showing
    def _show(self, notification: Notification) -> None:
        if self.muted:  # muted while the burst was gathering
            return
        if self.desktop is not None and self.desktop.ready:
            self._last_via_message = False
            self._spawn(self._send(self.desktop, notification))
        else:
            self._show_message(notification)
        self.sent.append(notification)
        self.last = notification
        self.shown.emit(notification)

    def _show_message(self, notification: Notification) -> None:
        self._last_via_message = True
        self.tray_icon.showMessage(
            notification.title, notification.message, _LEVELS[notification.level], MESSAGE_MS
        )

    def _replaced_by(self, notification: Notification) -> int:
        """Questions told again (the reminder, a question raised again by a resume) take the
        place of their notification still on screen: never two of the same question."""
        if notification.target_kind != "escalation":
            return 0
        asked = set(notification.escalation_ids)
        for notification_id, shown in self.by_id.items():
            if shown.target_kind == "escalation" and set(shown.escalation_ids) <= asked:
                return notification_id
        return 0

    async def _send(self, desktop: DesktopNotifications, notification: Notification) -> None:
        replaces = self._replaced_by(notification)
        try:
            notification_id = await desktop.notify(
                notification.title,
                notification.message,
                actions=notification.bus_actions(),
                level=notification.level,
                persistent=notification.persistent,
                replaces_id=replaces,
            )
        except Exception as error:  # the server or the bus went away: the tray icon tells from now
            log.warning("the notification server did not take a notification: %s", error)
            self._show_message(notification)
            if self.desktop is desktop:
                self.desktop = None
                await desktop.aclose()
            return
        self.by_id.pop(replaces, None)
        self.by_id[notification_id] = notification

    def _close_answered(self) -> None:
        """Close the escalation notifications whose every question is answered (or moot)."""
        desktop = self.desktop
        if desktop is None or not any(n.target_kind == "escalation" for n in self.by_id.values()):
            return
        pending = {v.escalation_id for v in self.controller.pending_escalations()}
        for notification_id, notification in list(self.by_id.items()):
            if notification.target_kind == "escalation" and not pending.intersection(
                notification.escalation_ids
            ):
                self.by_id.pop(notification_id, None)
                self._spawn(self._close(desktop, notification_id))

    async def _close(self, desktop: DesktopNotifications, notification_id: int) -> None:
        try:
            await desktop.close(notification_id)
        except Exception as error:  # already gone, or the server went away: nothing to take off
            log.info("could not close notification %d: %s", notification_id, error)

    # ------------------------------------------------------------------ actions
    def _on_action(self, notification_id: int, key: str) -> None:
        notification = self.by_id.get(notification_id)
        if notification is not None:
            self.invoke(notification, key)

    def invoke(self, notification: Notification, key: str = "default") -> None:
        """Do one of the notification's actions ("default": what a click does)."""
        action = notification.default_action if key == "default" else key
        if action not in notification.actions:
            action = notification.default_action
        run_id = notification.run_id or notification.target_id
        if action == "answer":
            self.open_escalation.emit(notification.target_id)
        elif action == "review":
            self.open_changes.emit(run_id)
        elif action == "folder":
            self.open_folder.emit(run_id)
        else:  # "show", "dashboard"
            self.open_run.emit(run_id)

    def on_clicked(self) -> None:
        """A click on the tray icon's message (no action buttons there): the default action.

        Qt's StatusNotifierItem tray emits ``messageClicked`` for any ActionInvoked of the
        notification server, Agentray's own notifications' too: only a message it showed counts.
        """
        if self.last is not None and self._last_via_message:
            self.invoke(self.last)

    async def aclose(self) -> None:
        for escalation_id in list(self.reminders):
            self._cancel_reminder(escalation_id)
        desktop, self.desktop = self.desktop, None
        if desktop is not None:
            await desktop.aclose()
