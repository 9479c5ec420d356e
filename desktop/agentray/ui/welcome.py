"""First start without a key: set one, or try the offline demo."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QDialog, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from .icons import app_icon, render_pixmap

__all__ = ["WelcomeDialog"]

WELCOME_TEXT = (
    "<h2>Welcome to Agentray</h2>"
    "<p>Hand Agentray a goal and a project folder; its agents work in the background and it "
    "interrupts you only when an agent needs a decision or the work is done.</p>"
    "<p>Agents talk to Anthropic's API, so Agentray needs an API key. It is kept in your "
    "system keyring, never in a file. Or look around first: the offline demo runs a scripted "
    "team of agents on a small project, with no key and no network.</p>"
)


class WelcomeDialog(QDialog):
    """Non-modal: shown with show(); the buttons emit and close."""

    set_key_requested = Signal()
    demo_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Welcome to Agentray")
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
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(buttons)

    def _on_key(self) -> None:
        self.accept()
        self.set_key_requested.emit()

    def _on_demo(self) -> None:
        self.accept()
        self.demo_requested.emit()
