"""Settings: the API key (OS keyring only), Verify, default model and limits, mute, start at login."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from agentray import keys
from agentray.engine import DEFAULT_MODEL
from agentray.sandbox import detect_sandbox

from . import autostart
from .fields import KNOWN_MODELS, LimitFields, model_combo
from .sandbox_prompt import install_hint
from .wording import window_title

if TYPE_CHECKING:
    from .controller import AppController

__all__ = ["KNOWN_MODELS", "SettingsDialog", "model_combo"]


def _sentence(message: str) -> str:
    """One sentence for a label: capitalised, ending in one full stop (a keyring backend's own
    message may end in one already: "Prompt dismissed.." is not shown)."""
    text = re.sub(r"(?<!\.)\.\.(?!\.)", ".", " ".join(message.split()))
    if not text:
        return text
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?", "…")) else text + "."


def _error_label() -> QLabel:
    label = QLabel()
    label.setWordWrap(True)
    label.setStyleSheet("color: #c0392b;")
    label.hide()
    return label


class SettingsDialog(QDialog):
    """Non-modal; opened with ``show()``/``open()`` (never ``exec()`` under qasync)."""

    verified = Signal(bool, str)  # ok, message: emitted when a Verify finishes

    def __init__(self, controller: AppController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.setWindowTitle(window_title("Settings"))
        self.setObjectName("settingsDialog")
        self.setMinimumWidth(540)  # the warnings wrap into a few readable lines, not a column
        self._verify_task: asyncio.Future[Any] | None = None
        settings = controller.settings

        layout = QVBoxLayout(self)
        layout.addWidget(self._key_group())

        defaults = QGroupBox("Defaults for new runs")
        form = QFormLayout(defaults)
        self.model = model_combo(settings.default_model)
        form.addRow("Model", self.model)
        self.limits = LimitFields(settings)
        self.limits.add_rows(
            form, ("Agents at once", "Max agents per run", "Max nesting depth", "Budget per run")
        )
        self.max_concurrent, self.max_agents = self.limits.max_concurrent, self.limits.max_agents
        self.max_depth, self.budget = self.limits.max_depth, self.limits.budget
        layout.addWidget(defaults)

        general = QGroupBox("General")
        general_layout = QVBoxLayout(general)
        self.mute = QCheckBox("Mute notifications (escalations still open the tray badge)")
        self.mute.setChecked(bool(settings.notifications_muted))
        self.reminder = QCheckBox("Remind me once when a question waits 10 minutes")
        self.reminder.setChecked(bool(settings.escalation_reminder))
        self.start_at_login = QCheckBox("Start Agentray at login")
        self.start_at_login.setChecked(autostart.is_enabled() or bool(settings.start_at_login))
        self.autostart_error = _error_label()
        self.keep_days = QSpinBox()
        self.keep_days.setRange(1, 3650)
        self.keep_days.setSuffix(" days")
        self.keep_days.setValue(settings.keep_days)
        self.keep_days.setToolTip(
            "Older runs are forgotten, with their snapshots, when Agentray starts"
        )
        keep_row = QHBoxLayout()
        keep_row.addWidget(QLabel("Keep finished runs and their snapshots for"))
        keep_row.addWidget(self.keep_days)
        keep_row.addStretch(1)
        general_layout.addWidget(self.mute)
        general_layout.addWidget(self.reminder)
        general_layout.addWidget(self.start_at_login)
        general_layout.addLayout(keep_row)
        general_layout.addWidget(self.autostart_error)
        layout.addWidget(general)
        layout.addWidget(self._sandbox_group())

        self.buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Close
        )
        self.buttons.accepted.connect(self.save)
        self.buttons.rejected.connect(self.reject)
        layout.addWidget(self.buttons)
        self.refresh_key_status()

    # ------------------------------------------------------------------ the key
    def _key_group(self) -> QGroupBox:
        group = QGroupBox("Anthropic API key")
        box = QVBoxLayout(group)
        self.keyring_warning = QLabel()
        self.keyring_warning.setObjectName("keyringWarning")
        self.keyring_warning.setWordWrap(True)
        self.keyring_warning.setStyleSheet("color: #b9770e;")
        self.key_status_label = QLabel()
        self.key_status_label.setObjectName("keyStatus")
        self.key_status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.key_edit = QLineEdit()
        self.key_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.key_edit.setPlaceholderText("sk-ant-… (stored in the OS keyring, never in a file)")
        self.store_button = QPushButton("Store")
        self.remove_button = QPushButton("Remove")
        self.verify_button = QPushButton("Verify")
        self.store_button.clicked.connect(self.store_key)
        self.remove_button.clicked.connect(self.remove_key)
        self.verify_button.clicked.connect(self.verify_key)
        row = QHBoxLayout()
        row.addWidget(self.key_edit, 1)
        row.addWidget(self.store_button)
        row.addWidget(self.remove_button)
        row.addWidget(self.verify_button)
        self.key_message = QLabel()
        self.key_message.setObjectName("keyMessage")
        self.key_message.setWordWrap(True)
        box.addWidget(self.keyring_warning)
        box.addWidget(self.key_status_label)
        box.addLayout(row)
        box.addWidget(self.key_message)
        return group

    def refresh_key_status(self) -> None:
        status = keys.key_status()
        if status.keyring_problem:
            self.keyring_warning.setText(
                f"{_sentence(status.keyring_problem)} Agentray will not keep the key in "
                f"a plaintext file; it uses the {keys.ENV_VAR} environment variable only."
            )
            self.keyring_warning.show()
        else:
            self.keyring_warning.hide()
        if status.source == "keyring":
            text = f"A key is stored in the keyring ({status.masked})"
        elif status.source == "environment":
            text = f"Using {keys.ENV_VAR} from the environment ({status.masked})"
        else:
            text = "No API key yet (the demo needs none)"
        self.key_status_label.setText(text)
        usable = status.keyring_usable
        self.key_edit.setEnabled(usable)
        self.store_button.setEnabled(usable)
        self.remove_button.setEnabled(usable and status.source == "keyring")

    def _say(self, message: str, *, ok: bool) -> None:
        self.key_message.setStyleSheet("color: #1e8449;" if ok else "color: #c0392b;")
        self.key_message.setText(message)

    def store_key(self) -> None:
        value = self.key_edit.text()
        try:
            keys.store_key(value)
        except (ValueError, RuntimeError) as error:
            # what was typed stays, to try again (or to set ANTHROPIC_API_KEY from it)
            self._say(_sentence(str(error)), ok=False)
            return
        except Exception as error:  # a keyring backend failure (locked, D-Bus gone)
            self._say(_sentence(f"the keyring refused the key: {type(error).__name__}"), ok=False)
            return
        self.key_edit.clear()  # stored: never keep the secret in a widget longer than needed
        self._say("Key stored in the keyring.", ok=True)
        self.refresh_key_status()
        self.controller.key_changed.emit()

    def remove_key(self) -> None:
        removed = keys.delete_key()
        self._say("Key removed from the keyring." if removed else "No key was stored.", ok=removed)
        self.refresh_key_status()
        if removed:
            self.controller.key_changed.emit()

    def verify_key(self) -> None:
        key = self.key_edit.text().strip() or (keys.resolve_api_key()[0] or "")
        if not key:
            self._say("No key to verify: type one or store one first.", ok=False)
            return
        self.verify_button.setEnabled(False)
        self._say("Verifying…", ok=True)
        self._verify_task = asyncio.ensure_future(self._verify(key))
        self._verify_task.add_done_callback(self._forget_task)

    def _forget_task(self, _task: asyncio.Future[Any]) -> None:
        # No dialog -> task -> coroutine -> dialog cycle left for the garbage collector.
        self._verify_task = None

    async def _verify(self, key: str) -> None:
        from agentray.model import AnthropicModelClient

        base_url = getattr(self.controller, "base_url", None)
        client = AnthropicModelClient(api_key=key, base_url=base_url, max_attempts=2)
        try:
            await client.verify()
        except Exception as error:
            ok, message = False, f"Verify failed: {error}"
        else:
            ok, message = True, "The key works."
        finally:
            await client.aclose()
        self.verify_button.setEnabled(True)
        self._say(message, ok=ok)
        self.verified.emit(ok, message)

    # ------------------------------------------------------------------ the command sandbox
    def _sandbox_group(self) -> QGroupBox:
        group = QGroupBox("Command sandbox")
        box = QVBoxLayout(group)
        self.sandbox_status = QLabel()
        self.sandbox_status.setObjectName("sandboxStatus")
        self.sandbox_status.setWordWrap(True)
        self.sandbox_choice = QLabel()
        self.sandbox_choice.setObjectName("sandboxChoice")
        self.sandbox_choice.setWordWrap(True)
        self.ask_again_button = QPushButton("Ask me again")
        self.ask_again_button.setObjectName("sandboxAskAgain")
        self.ask_again_button.setToolTip(
            "Forget the yes: the next run without a sandbox asks first again."
        )
        self.ask_again_button.clicked.connect(self.reset_sandbox_choice)
        row = QHBoxLayout()
        row.addWidget(self.sandbox_choice, 1)
        row.addWidget(self.ask_again_button)
        box.addWidget(self.sandbox_status)
        box.addLayout(row)
        self.refresh_sandbox()
        return group

    def refresh_sandbox(self) -> None:
        status = detect_sandbox()
        if status.available:
            self.sandbox_status.setText(
                f"The agents' commands run in a sandbox: {status.describe()}. "
                "Network only for runs that allow it."
            )
            self.sandbox_status.setStyleSheet("")
        else:
            self.sandbox_status.setText(install_hint(status.problem or "no command sandbox"))
            self.sandbox_status.setStyleSheet("color: #b9770e;")
        remembered = self.controller.settings.run_unsandboxed
        if remembered:
            choice = (
                "You chose to let runs go without a sandbox where none exists: their commands "
                "run with your full authority, and such runs are marked “no sandbox”."
            )
        elif not status.available:
            choice = "Agentray asks before the first run without a sandbox."
        else:
            choice = ""
        self.sandbox_choice.setText(choice)
        self.sandbox_choice.setVisible(bool(choice))
        self.ask_again_button.setEnabled(remembered)
        self.ask_again_button.setVisible(remembered or not status.available)

    def reset_sandbox_choice(self) -> None:
        self.controller.settings.run_unsandboxed = False
        self.refresh_sandbox()

    # ------------------------------------------------------------------- saving
    def save(self) -> None:
        settings = self.controller.settings
        settings.default_model = self.model.currentText().strip() or DEFAULT_MODEL
        settings.limits = self.limits.values()
        settings.notifications_muted = self.mute.isChecked()
        settings.escalation_reminder = self.reminder.isChecked()
        settings.keep_days = self.keep_days.value()
        wanted = self.start_at_login.isChecked()
        try:
            if wanted:
                autostart.enable()
            else:
                autostart.disable()
        except OSError as error:
            self.autostart_error.setText(f"Start at login could not be changed: {error}")
            self.autostart_error.show()
            return
        settings.start_at_login = wanted
        self.accept()
