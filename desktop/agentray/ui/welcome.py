"""First start without a key: set one, or try the offline demo. It also shows what
`agentray doctor` finds (sandbox, keyring, notifications, display, key), checked off the GUI
thread. ``NoKeyPrompt``: a run of the person's own asked for without a key (after the demo, say):
it says so and offers to set one."""

from __future__ import annotations

import html
import threading
from collections.abc import Sequence

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from agentray.doctor import Check, format_check, run_checks

from .icons import app_icon, render_pixmap
from .wording import window_title

__all__ = ["NoKeyPrompt", "WelcomeDialog"]

WELCOME_TEXT = (
    "<h2>Welcome to Agentray</h2>"
    "<p>Hand Agentray a goal and a project folder; its agents work in the background and it "
    "interrupts you only when an agent needs a decision or the work is done.</p>"
    "<p>Agents talk to Anthropic's API, so Agentray needs an API key. It is kept in your "
    "system keyring, never in a file. Or look around first: the offline demo runs a scripted "
    "team of agents on a small project, with no key and no network.</p>"
)


_MARK_COLORS = {"ok": "#2e7d32", "warn": "#b26a00", "✗": "#c62828"}
POLL_MS = 50


def checks_html(checks: Sequence[Check]) -> str:
    rows = []
    for check in checks:
        color = _MARK_COLORS.get(check.mark, "#000000")
        rows.append(
            f"<tr><td>{html.escape(check.name)}&nbsp;&nbsp;</td>"
            f"<td style='color:{color}'><b>{html.escape(check.mark)}</b>&nbsp;&nbsp;</td>"
            f"<td>{html.escape(check.text)}</td></tr>"
        )
    return "<table>" + "".join(rows) + "</table>"


class WelcomeDialog(QDialog):
    """Non-modal: shown with show(); the buttons emit and close.

    ``checks``: what to show under "This computer"; by default ``run_checks()`` runs in a
    background thread and ``checked`` is emitted once its answer is shown."""

    set_key_requested = Signal()
    demo_requested = Signal()
    checked = Signal()

    def __init__(
        self, parent: QWidget | None = None, *, checks: Sequence[Check] | None = None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle(window_title("Welcome"))
        self.setWindowIcon(app_icon())
        logo = QLabel()
        logo.setPixmap(render_pixmap("agentray", 64))
        logo.setAlignment(Qt.AlignmentFlag.AlignTop)
        text = QLabel(WELCOME_TEXT)
        text.setWordWrap(True)
        text.setMinimumWidth(380)
        self.key_button = QPushButton("Set a key…")
        self.demo_button = QPushButton("Try the offline demo")
        self.later_button = QPushButton("Later")
        self.key_button.setDefault(True)
        self.key_button.clicked.connect(self._on_key)
        self.demo_button.clicked.connect(self._on_demo)
        self.later_button.clicked.connect(self.reject)
        top = QHBoxLayout()
        top.addWidget(logo)
        top.addWidget(text, 1)
        buttons = QHBoxLayout()
        buttons.addWidget(self.later_button)
        buttons.addStretch(1)
        buttons.addWidget(self.demo_button)
        buttons.addWidget(self.key_button)
        self.checks: list[Check] = []
        self.facts = QLabel("Checking this computer…")
        self.facts.setTextFormat(Qt.TextFormat.RichText)
        self.facts.setWordWrap(True)
        self.facts.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        facts_box = QGroupBox("This computer")
        facts_layout = QVBoxLayout(facts_box)
        facts_layout.addWidget(self.facts)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(facts_box)
        layout.addLayout(buttons)
        self._poll: QTimer | None = None
        if checks is not None:
            self.show_checks(checks)
        else:
            self._start_checks()

    def _start_checks(self) -> None:
        # run_checks() can take a moment (it starts bwrap, asks D-Bus and the keyring): not on
        # the GUI thread. The result is picked up by a timer, so no Qt object crosses threads.
        answer: list[list[Check]] = []
        threading.Thread(
            target=lambda: answer.append(run_checks()), name="agentray-welcome-checks", daemon=True
        ).start()
        self._poll = QTimer(self)
        self._poll.setInterval(POLL_MS)
        self._poll.timeout.connect(lambda: self._pick_up(answer))
        self._poll.start()

    def _pick_up(self, answer: list[list[Check]]) -> None:
        if not answer:
            return
        if self._poll is not None:
            self._poll.stop()
        self.show_checks(answer[0])

    def show_checks(self, checks: Sequence[Check]) -> None:
        self.checks = list(checks)
        self.facts.setText(checks_html(self.checks))
        self.facts.setToolTip("\n".join(format_check(check) for check in self.checks))
        self.checked.emit()

    def _on_key(self) -> None:
        self.accept()
        self.set_key_requested.emit()

    def _on_demo(self) -> None:
        self.accept()
        self.demo_requested.emit()


class NoKeyPrompt(QMessageBox):
    """No API key is set, and a run of the person's own was asked for: "Set a key…" (the default:
    opens Settings, emits ``set_key_requested``) or "Not now". Shown with ``show()``."""

    set_key_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("noKeyPrompt")
        self.setIcon(QMessageBox.Icon.Information)
        self.setWindowTitle(window_title("No API key"))
        self.setWindowIcon(app_icon())
        self.setText("No API key is set.")
        self.setInformativeText(
            "Your own runs talk to Anthropic's API, so they need an API key (kept in your system "
            "keyring, or ANTHROPIC_API_KEY in the environment). The offline demo's scripted "
            "model plays only the demo."
        )
        self.set_key_button = self.addButton("Set a key…", QMessageBox.ButtonRole.AcceptRole)
        self.later_button = self.addButton("Not now", QMessageBox.ButtonRole.RejectRole)
        self.setDefaultButton(self.set_key_button)
        self.setEscapeButton(self.later_button)
        self.finished.connect(self._decided)

    def _decided(self, _result: int) -> None:
        if self.clickedButton() is self.set_key_button:
            self.set_key_requested.emit()
