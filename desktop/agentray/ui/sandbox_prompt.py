"""The question asked once where no command sandbox exists: run the agents' commands unconfined?

Shown with ``show()`` and awaited (never ``exec()``: the Qt thread is the asyncio loop).
"""

from __future__ import annotations

import asyncio

from PySide6.QtWidgets import QMessageBox, QWidget

from .icons import app_icon
from .wording import window_title

__all__ = ["NoSandboxPrompt", "ask_run_unsandboxed", "install_hint"]

_CLI_ONLY = ("; or pass --no-sandbox", " or pass --no-sandbox")


def install_hint(problem: str) -> str:
    """The detector's one line without its command-line advice (``--no-sandbox``), as a sentence."""
    text = problem.strip()
    for marker in _CLI_ONLY:
        head, found, _rest = text.partition(marker)
        if found:
            text = head.rstrip(" ;,")
            break
    text = text[:1].upper() + text[1:]
    return text if text.endswith(".") else text + "."


class NoSandboxPrompt(QMessageBox):
    """ "Run without a sandbox" or "Don't start" (the default, also Escape and closing it)."""

    def __init__(self, problem: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("noSandboxPrompt")
        self.setIcon(QMessageBox.Icon.Warning)
        self.setWindowTitle(window_title("No command sandbox"))
        self.setWindowIcon(app_icon())
        self.setText("This system has no sandbox for the agents' commands.")
        self.setInformativeText(
            "Without one, the commands the agents choose to run (builds, tests, any shell command) "
            "run with your full authority: they can read your files and keys, reach the network, "
            "and change anything your account can, outside the project folder too.\n\n"
            f"{install_hint(problem)}\n\n"
            "Run without a sandbox? Agentray remembers a yes (Settings can take it back) and "
            "marks such runs “no sandbox”."
        )
        self.run_button = self.addButton("Run without a sandbox", QMessageBox.ButtonRole.AcceptRole)
        self.cancel_button = self.addButton("Don't start", QMessageBox.ButtonRole.RejectRole)
        self.setDefaultButton(self.cancel_button)
        self.setEscapeButton(self.cancel_button)

    def agreed(self) -> bool:
        return self.clickedButton() is self.run_button


async def ask_run_unsandboxed(prompt: NoSandboxPrompt) -> bool:
    """Show the prompt and wait for the person's answer; True only for "Run without a sandbox"."""
    answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def finished(_result: int) -> None:
        if not answer.done():
            answer.set_result(prompt.agreed())

    prompt.finished.connect(finished)
    prompt.show()
    prompt.raise_()
    prompt.activateWindow()
    try:
        return await answer
    finally:
        prompt.finished.disconnect(finished)
        if prompt.isVisible():  # cancelled while open (the app quits): no answer, no window
            prompt.hide()
