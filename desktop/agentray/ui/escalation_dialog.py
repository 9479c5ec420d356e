"""The escalation window: every pending question in one non-modal window ("2 of 3"), answered
at once through the controller so the agent resumes. Journal-only escalations (from before a
restart) offer "Resume run to answer".

The escalation's options are the buttons (an approval's are Approve and Deny); each answer names
its option by id. A model's question also takes a free reply. Enter answers with the focused
option, Esc closes without answering, "Abort run" asks first.
"""

from __future__ import annotations

import asyncio

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeyEvent
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from agentray.errors import AgentrayError
from agentray.escalation import Answer, EscalationKind, EscalationOption

from .controller import AppController, EscalationView
from .icons import app_icon

__all__ = ["EscalationWindow"]

# the model's own questions take a free reply; the engine's need one of their options
_FREE_REPLY_KINDS = (EscalationKind.QUESTION, EscalationKind.APPROVAL)


class EscalationWindow(QWidget):
    """Pending escalations, one at a time with a counter and next/previous."""

    answered = Signal(str, object)  # escalation id, Answer
    open_run = Signal(str)

    def __init__(self, controller: AppController, parent: QWidget | None = None) -> None:
        super().__init__(parent, Qt.WindowType.Window)
        self.controller = controller
        self.views: list[EscalationView] = []
        self.index = 0
        self._busy: set[str] = set()  # journal escalations being resumed
        self._tasks: set[asyncio.Future[None]] = set()
        self.setWindowTitle("An agent needs you — Agentray")
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
        self.option_buttons: list[QPushButton] = []

        self.reply = QLineEdit()
        self.reply.returnPressed.connect(self.on_reply)

        self.reply_button = QPushButton("Send reply")
        self.abort_button = QPushButton("Abort run…")
        self.resume_button = QPushButton("Resume run to answer")
        self.reply_button.clicked.connect(self.on_reply)
        self.abort_button.clicked.connect(self.on_abort)
        self.resume_button.clicked.connect(self.on_resume)
        self.abort_confirmation: QMessageBox | None = None
        actions = QHBoxLayout()
        actions.addWidget(self.reply_button)
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
            self.reply_button.setEnabled(False)
            self.abort_button.setEnabled(False)
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
            free = view.kind in _FREE_REPLY_KINDS
            self.reply_button.setVisible(free)
            self.reply.setPlaceholderText(
                "Reply to the agent in your own words…"
                if free
                else "A note for the agent, sent with the option you pick…"
            )
            if self.option_buttons:
                self.option_buttons[0].setFocus()
        busy = view.escalation_id in self._busy
        self.reply_button.setEnabled(not busy)
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

    def _set_options(self, options: tuple[EscalationOption, ...]) -> None:
        for button in self.option_buttons:
            self.options_row.removeWidget(button)
            button.deleteLater()
        self.option_buttons = []
        for option in options:
            button = QPushButton(option.label)
            button.setObjectName(f"option-{option.option_id}")
            button.setToolTip(f"Answer: {option.label} (Enter answers with the focused option)")
            button.setAutoDefault(True)  # Enter presses the focused option
            button.clicked.connect(lambda _=False, o=option: self.on_option(o))
            self.options_row.addWidget(button)
            self.option_buttons.append(button)

    def keyPressEvent(self, event: QKeyEvent) -> None:
        if event.key() == Qt.Key.Key_Escape:
            self.hide()  # closes without answering: the question stays pending
            return
        super().keyPressEvent(event)

    # ------------------------------------------------------------------ answers
    def on_option(self, option: EscalationOption) -> None:
        self.submit(Answer(option.option_id, self.reply.text().strip()))

    def on_reply(self) -> None:
        view = self.current()
        if view is None:
            return
        typed = self.reply.text().strip()
        if view.kind not in _FREE_REPLY_KINDS:
            self.notice.setText("Pick one of the options; your note goes with it.")
            return
        if not typed:
            self.notice.setText("Type a reply first.")
            return
        self.submit(Answer(None, typed))

    def on_abort(self) -> None:
        """Ask first (window-modal, never exec()): aborting stops every agent of the run."""
        view = self.current()
        if view is None:
            return
        box = QMessageBox(
            QMessageBox.Icon.Warning,
            "Abort run?",
            f"Stop run {view.run_id} and all its agents? The question stays unanswered; "
            "the run can be resumed later.",
            QMessageBox.StandardButton.Cancel,
            self,
        )
        abort = box.addButton("Abort run", QMessageBox.ButtonRole.DestructiveRole)
        box.setDefaultButton(QMessageBox.StandardButton.Cancel)
        run_id = view.run_id

        def decided() -> None:
            self.abort_confirmation = None
            if box.clickedButton() is abort:
                self.controller.stop_run(run_id)
                self.notice.setText(f"Stopping run {run_id}…")

        box.finished.connect(decided)
        self.abort_confirmation = box
        box.open()

    def on_resume(self) -> None:
        view = self.current()
        if view is not None:
            self.submit(None, resume_only=True)

    def submit(self, answer: Answer | None, *, resume_only: bool = False) -> None:
        view = self.current()
        if view is None:
            return
        if view.live and answer is not None:
            if self.controller.answer_escalation(view.escalation_id, answer):
                self.answered.emit(view.escalation_id, answer)
                self._after_answer()
            else:
                self.notice.setText("That question was already answered or its run ended.")
                self.refresh()
            return
        # Journal-only: resume the run; answer when the engine raises the same escalation again
        # (with nothing chosen yet, the user answers in this window once it is live).
        self._busy.add(view.escalation_id)
        self._render(changed=False)
        task = asyncio.ensure_future(self._resume(view, None if resume_only else answer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resume(self, view: EscalationView, reply: Answer | None) -> None:
        try:
            if reply is None:
                if not self.controller.is_live(view.run_id):
                    await self.controller.resume_run(view.run_id)
                await self.controller.wait_for_escalation(view.escalation_id)
            else:
                ok = await self.controller.resume_and_answer(view.run_id, view.escalation_id, reply)
                if ok:
                    self.answered.emit(view.escalation_id, reply)
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
