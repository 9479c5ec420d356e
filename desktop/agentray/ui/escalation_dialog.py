"""The escalation window: every pending question in one non-modal window ("2 of 3"), answered
at once through the controller so the agent resumes. Journal-only escalations (from before a
restart) offer "Resume run to answer"."""

from __future__ import annotations

import asyncio
import re

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from agentray.errors import AgentrayError

from .controller import AppController, EscalationView
from .icons import app_icon

__all__ = ["EscalationWindow", "affirmative_option", "negative_option"]

_YES = re.compile(
    r"\b(yes|approve|approved|ok|okay|accept|allow|go|proceed|continue|confirm|agree)\b", re.I
)
_NO = re.compile(
    r"\b(no|deny|denied|reject|refuse|cancel|stop|abort|skip|don't|do not|decline)\b", re.I
)


def affirmative_option(options: tuple[str, ...]) -> str | None:
    """The first option that looks like a yes, else the first option (None without options)."""
    return next((o for o in options if _YES.search(o)), options[0] if options else None)


def negative_option(options: tuple[str, ...]) -> str | None:
    return next((o for o in options if _NO.search(o)), None)


class EscalationWindow(QWidget):
    """Pending escalations, one at a time with a counter and next/previous."""

    answered = Signal(str, str, object)  # escalation id, answer, choice
    open_run = Signal(str)

    def __init__(self, controller: AppController, parent: QWidget | None = None) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.controller = controller
        self.views: list[EscalationView] = []
        self.index = 0
        self.selected_option: str | None = None
        self._busy: set[str] = set()  # journal escalations being resumed
        self._tasks: set[asyncio.Future[None]] = set()
        self.setWindowTitle("Agentray — an agent needs you")
        self.setWindowIcon(app_icon())
        self.resize(620, 640)

        self.counter = QLabel()
        self.previous_button = QPushButton("◀ Previous")
        self.next_button = QPushButton("Next ▶")
        self.previous_button.clicked.connect(lambda: self.step(-1))
        self.next_button.clicked.connect(lambda: self.step(1))
        header = QHBoxLayout()
        header.addWidget(self.counter, 1)
        header.addWidget(self.previous_button)
        header.addWidget(self.next_button)

        self.where = QLabel()
        self.where.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.question = QLabel()
        self.question.setWordWrap(True)
        font = self.question.font()
        font.setPointSizeF(font.pointSizeF() * 1.2)
        font.setBold(True)
        self.question.setFont(font)
        self.context = QTextBrowser()
        self.context.setOpenExternalLinks(True)
        self.progress = QPlainTextEdit()
        self.progress.setReadOnly(True)
        self.progress.setMaximumHeight(130)
        self.notice = QLabel()
        self.notice.setWordWrap(True)

        self.options_row = QHBoxLayout()
        self.option_group = QButtonGroup(self)
        self.option_group.setExclusive(False)
        self.option_buttons: list[QPushButton] = []

        self.reply = QLineEdit()
        self.reply.setPlaceholderText("Reply to the agent (optional)…")
        self.reply.returnPressed.connect(self.on_reply)

        self.approve_button = QPushButton("Approve")
        self.deny_button = QPushButton("Deny")
        self.reply_button = QPushButton("Reply")
        self.abort_button = QPushButton("Abort run")
        self.resume_button = QPushButton("Resume run to answer")
        self.approve_button.clicked.connect(self.on_approve)
        self.deny_button.clicked.connect(self.on_deny)
        self.reply_button.clicked.connect(self.on_reply)
        self.abort_button.clicked.connect(self.on_abort)
        self.resume_button.clicked.connect(self.on_resume)
        actions = QHBoxLayout()
        for button in (self.approve_button, self.deny_button, self.reply_button):
            actions.addWidget(button)
        actions.addStretch(1)
        actions.addWidget(self.resume_button)
        actions.addWidget(self.abort_button)

        layout = QVBoxLayout(self)
        layout.addLayout(header)
        layout.addWidget(self.where)
        layout.addWidget(self.question)
        layout.addWidget(self.context, 1)
        layout.addWidget(QLabel("Agent's progress (tail):"))
        layout.addWidget(self.progress)
        layout.addLayout(self.options_row)
        layout.addWidget(self.reply)
        layout.addWidget(self.notice)
        layout.addLayout(actions)

        controller.escalations_changed.connect(self.refresh)
        self.refresh()

    # ------------------------------------------------------------------ queue
    def current(self) -> EscalationView | None:
        return self.views[self.index] if 0 <= self.index < len(self.views) else None

    def refresh(self) -> None:
        """Reload the queue from the controller, staying on the same escalation if it is still there."""
        keep = self.current()
        self.views = self.controller.pending_escalations()
        ids = [v.escalation_id for v in self.views]
        if keep is not None and keep.escalation_id in ids:
            self.index = ids.index(keep.escalation_id)
        else:
            self.index = min(self.index, max(0, len(self.views) - 1))
        self._render(
            changed=keep is None
            or self.current() is None
            or keep.escalation_id != self.current_id()
        )

    def current_id(self) -> str | None:
        view = self.current()
        return view.escalation_id if view is not None else None

    def show_escalation(self, escalation_id: str | None = None) -> None:
        """Bring the window forward (never exec()), on a given escalation if it is pending."""
        self.refresh()
        ids = [v.escalation_id for v in self.views]
        if escalation_id in ids:
            self.index = ids.index(escalation_id)
            self._render(changed=True)
        self.show()
        self.raise_()
        self.activateWindow()

    def step(self, delta: int) -> None:
        if self.views:
            self.index = (self.index + delta) % len(self.views)
            self._render(changed=True)

    def counter_text(self) -> str:
        return f"{self.index + 1} of {len(self.views)}" if self.views else "Nothing needs you"

    def _render(self, *, changed: bool) -> None:
        view = self.current()
        self.counter.setText(self.counter_text())
        many = len(self.views) > 1
        self.previous_button.setEnabled(many)
        self.next_button.setEnabled(many)
        if view is None:
            self.where.setText("")
            self.question.setText("No agent is waiting for you.")
            self.context.setMarkdown("")
            self.progress.setPlainText("")
            self._set_options(())
            for button in (
                self.approve_button,
                self.deny_button,
                self.reply_button,
                self.abort_button,
            ):
                button.setEnabled(False)
            self.resume_button.setVisible(False)
            return
        self.where.setText(f"Run {view.run_id} · agent {view.agent_id} · {view.kind}")
        self.question.setText(view.question)
        if changed:
            self.context.setMarkdown(view.context or "_(no context)_")
            self.progress.setPlainText(view.progress_tail or "(no progress file)")
            # the newest lines matter most: show the end of the tail
            bar = self.progress.verticalScrollBar()
            bar.setValue(bar.maximum())
            self.reply.clear()
            self._set_options(view.options)
        busy = view.escalation_id in self._busy
        for button in (self.approve_button, self.deny_button, self.reply_button):
            button.setEnabled(not busy)
        for button in self.option_buttons:
            button.setEnabled(not busy)
        self.abort_button.setEnabled(view.live)
        self.resume_button.setVisible(not view.live)
        self.resume_button.setEnabled(not busy)
        if view.live:
            self.notice.setText("")
        elif busy:
            self.notice.setText("Resuming the run; the answer is sent when the agent asks again…")
        else:
            self.notice.setText(
                "This run is not running (the app was restarted). Answering resumes it first."
            )

    def _set_options(self, options: tuple[str, ...]) -> None:
        for button in self.option_buttons:
            self.option_group.removeButton(button)
            self.options_row.removeWidget(button)
            button.deleteLater()
        self.option_buttons = []
        self.selected_option = None
        for option in options:
            button = QPushButton(option)
            button.setToolTip(f"Answer: {option}")
            button.clicked.connect(lambda _=False, o=option: self.on_option(o))
            self.option_group.addButton(button)
            self.options_row.addWidget(button)
            self.option_buttons.append(button)

    # ------------------------------------------------------------------ answers
    def on_option(self, option: str) -> None:
        typed = self.reply.text().strip()
        self.submit(option if not typed else f"{option}: {typed}", option)

    def on_approve(self) -> None:
        view = self.current()
        if view is not None:
            self.submit("Approved", affirmative_option(view.options))

    def on_deny(self) -> None:
        view = self.current()
        if view is not None:
            self.submit("Denied", negative_option(view.options))

    def on_reply(self) -> None:
        typed = self.reply.text().strip()
        if not typed:
            self.notice.setText("Type a reply first.")
            return
        self.submit(typed, self.selected_option)

    def on_abort(self) -> None:
        view = self.current()
        if view is not None:
            self.controller.stop_run(view.run_id)
            self.notice.setText(f"Stopping run {view.run_id}…")

    def on_resume(self) -> None:
        view = self.current()
        if view is not None:
            self.submit("", None, resume_only=True)

    def submit(self, answer: str, choice: str | None, *, resume_only: bool = False) -> None:
        view = self.current()
        if view is None:
            return
        if view.live:
            if self.controller.answer_escalation(view.escalation_id, answer, choice):
                self.answered.emit(view.escalation_id, answer, choice)
                self._after_answer()
            else:
                self.notice.setText("That question was already answered or its run ended.")
                self.refresh()
            return
        # Journal-only: resume the run; answer when the engine raises the same escalation again
        # (with nothing chosen yet, the user answers in this window once it is live).
        self._busy.add(view.escalation_id)
        self._render(changed=False)
        task = asyncio.ensure_future(self._resume(view, None if resume_only else (answer, choice)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resume(self, view: EscalationView, reply: tuple[str, str | None] | None) -> None:
        try:
            if reply is None:
                if not self.controller.is_live(view.run_id):
                    await self.controller.resume_run(view.run_id)
                await self.controller.wait_for_escalation(view.escalation_id)
            else:
                ok = await self.controller.resume_and_answer(
                    view.run_id, view.escalation_id, *reply
                )
                if ok:
                    self.answered.emit(view.escalation_id, reply[0], reply[1])
                else:
                    self.notice.setText(
                        "The run resumed but did not ask this again; see the dashboard."
                    )
        except AgentrayError as error:
            self._busy.discard(view.escalation_id)
            self.refresh()
            self.notice.setText(
                f"Cannot resume the run: {error}"
            )  # no modal box inside a coroutine
            return
        self._busy.discard(view.escalation_id)
        self.refresh()

    def _after_answer(self) -> None:
        self.refresh()
        if not self.views:
            self.hide()
