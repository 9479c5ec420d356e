"""Settings dialog: no-keyring warning, the key never shown, Verify over real HTTP against the
simulator, and saving preferences (including the real XDG autostart entry)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.errors import InitError, PasswordDeleteError
from PySide6.QtWidgets import QAbstractButton, QGroupBox, QLabel, QLineEdit, QWidget

from agentray.simulator import Simulator
from agentray.ui.controller import AppController
from agentray.ui.settings import AppSettings
from agentray.ui.settings_dialog import SettingsDialog

if TYPE_CHECKING:
    from conftest import QLoop

SECRET = "sk-ant-api03-" + "Qz7" * 30 + "-SECRETTAIL"


@pytest.fixture(autouse=True)
def _collect_now() -> Iterator[None]:
    # Collect the windows' Python cycles now, not in the middle of a later test's event loop.
    yield
    gc.collect()


def _all_text(root: QWidget) -> str:
    parts = [root.windowTitle(), root.toolTip()]
    for widget in root.findChildren(QWidget):
        parts.append(widget.toolTip())
        if isinstance(widget, QLabel | QAbstractButton):
            parts.append(widget.text())
        if isinstance(widget, QLineEdit):
            parts += [widget.text(), widget.placeholderText(), widget.displayText()]
        if isinstance(widget, QGroupBox):
            parts.append(widget.title())
    return "\n".join(parts)


@pytest.fixture
def plain_controller(qloop: QLoop, settings: AppSettings, tmp_path: Path) -> AppController:
    from agentray.journal import Journal

    return AppController(settings, Journal(tmp_path / "j.sqlite3"))


def test_no_keyring_warns_and_disables_store(qtbot, plain_controller: AppController) -> None:  # type: ignore[no-untyped-def]
    # conftest forces keyring's fail backend: there is no usable keyring here.
    dialog = SettingsDialog(plain_controller)
    qtbot.addWidget(dialog)
    assert not dialog.keyring_warning.isHidden()
    warning = dialog.keyring_warning.text()
    assert "No usable OS keyring" in warning and "ANTHROPIC_API_KEY" in warning
    assert "plaintext" in warning
    assert not dialog.store_button.isEnabled() and not dialog.key_edit.isEnabled()
    assert not dialog.remove_button.isEnabled()
    assert "No API key" in dialog.key_status_label.text()


def test_key_from_environment_is_never_shown(
    qtbot, plain_controller: AppController, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    dialog = SettingsDialog(plain_controller)
    qtbot.addWidget(dialog)
    dialog.show()
    status = dialog.key_status_label.text()
    assert "environment" in status and f"({len(SECRET)} chars)" in status
    text = _all_text(dialog)
    assert SECRET not in text and "SECRETTAIL" not in text and "Qz7Qz7" not in text


def test_verify_against_simulator(
    qtbot, plain_controller: AppController, qloop: QLoop, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    with Simulator(api_keys={SECRET}) as sim:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", sim.base_url)
        dialog = SettingsDialog(plain_controller)
        qtbot.addWidget(dialog)
        results: list[tuple[bool, str]] = []
        dialog.verified.connect(lambda ok, message: results.append((ok, message)))

        monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
        dialog.verify_button.click()
        qloop.wait_until(lambda: len(results) == 1)
        assert results[0][0] is True
        assert dialog.key_message.text() == "The key works."
        assert dialog.verify_button.isEnabled()

        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-wrong-key")
        dialog.verify_button.click()
        qloop.wait_until(lambda: len(results) == 2)
        assert results[1][0] is False
        assert dialog.key_message.text().startswith("Verify failed")
        assert SECRET not in _all_text(dialog)


def test_verify_without_any_key_says_so(qtbot, plain_controller: AppController) -> None:  # type: ignore[no-untyped-def]
    dialog = SettingsDialog(plain_controller)
    qtbot.addWidget(dialog)
    dialog.verify_button.click()
    assert "No key to verify" in dialog.key_message.text()


def test_save_writes_preferences_and_autostart(
    qtbot,
    plain_controller: AppController,
    settings: AppSettings,
    tmp_path: Path,
    monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    dialog = SettingsDialog(plain_controller)
    qtbot.addWidget(dialog)
    assert not dialog.start_at_login.isChecked()
    dialog.model.setCurrentText("claude-opus-4-5")
    dialog.max_concurrent.setValue(3)
    dialog.budget.setValue(2.5)
    dialog.mute.setChecked(True)
    assert dialog.reminder.isChecked()  # on by default
    dialog.reminder.setChecked(False)
    dialog.start_at_login.setChecked(True)
    assert dialog.keep_days.value() == 30  # the default
    dialog.keep_days.setValue(7)
    dialog.save()

    entry = tmp_path / "xdg" / "autostart" / "agentray.desktop"
    assert entry.is_file() and "[Desktop Entry]" in entry.read_text()
    assert settings.default_model == "claude-opus-4-5"
    assert settings.max_concurrent == 3 and settings.budget_usd == 2.5
    assert settings.notifications_muted is True and settings.start_at_login is True
    assert settings.escalation_reminder is False

    again = SettingsDialog(plain_controller)
    qtbot.addWidget(again)
    assert again.start_at_login.isChecked() and again.mute.isChecked()
    assert settings.keep_days == 7 and again.keep_days.value() == 7
    again.start_at_login.setChecked(False)
    again.save()
    assert not entry.exists() and settings.start_at_login is False


class _FreshKeyring(KeyringBackend):
    """A Secret Service whose default collection does not exist yet and cannot be created here
    (no prompt can be shown): keyring raises exactly this. Once "unlocked", it stores."""

    priority = 5  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__()
        self.unlocked = False
        self.stored: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.stored.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        if not self.unlocked:
            # keyring's SecretService backend: f"Failed to create the collection: {e}." where e is
            # secretstorage's PromptDismissedException("Prompt dismissed.")
            raise InitError("Failed to create the collection: Prompt dismissed..")
        self.stored[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        raise PasswordDeleteError("no such key")


# keyring registers every KeyringBackend subclass for its own backend detection: this stand-in
# must never be picked for the real keyring tests (it would make keyring chain backends)
KeyringBackend._classes.discard(_FreshKeyring)  # type: ignore[attr-defined]


def test_store_on_a_fresh_keyring_says_why_in_one_sentence_and_keeps_the_typed_key(
    qtbot, plain_controller: AppController
) -> None:  # type: ignore[no-untyped-def]
    backend = _FreshKeyring()
    keyring.set_keyring(backend)  # the autouse fixture puts the previous one back
    dialog = SettingsDialog(plain_controller)
    qtbot.addWidget(dialog)
    assert dialog.keyring_warning.isHidden() and dialog.store_button.isEnabled()
    changed: list[bool] = []
    plain_controller.key_changed.connect(lambda: changed.append(True))

    dialog.key_edit.setText(SECRET)
    dialog.store_button.click()
    message = dialog.key_message.text()
    assert message == (
        "The OS keyring refused the key (Failed to create the collection: Prompt dismissed); "
        "set ANTHROPIC_API_KEY instead."
    )
    assert ".." not in message and SECRET not in message
    assert dialog.key_edit.text() == SECRET  # kept, to try again
    assert backend.stored == {} and changed == []

    dialog.key_edit.setText("")
    dialog.store_button.click()
    assert dialog.key_message.text() == "The key is empty."

    backend.unlocked = True  # e.g. the person created the keyring meanwhile
    dialog.key_edit.setText(SECRET)
    dialog.store_button.click()
    assert dialog.key_message.text() == "Key stored in the keyring."
    assert dialog.key_edit.text() == ""  # stored: not kept in the widget
    assert backend.stored == {("agentray", "anthropic_api_key"): SECRET} and changed == [True]
    assert "keyring" in dialog.key_status_label.text() and SECRET not in _all_text(dialog)


def test_the_title_names_the_app_once(qtbot, plain_controller: AppController) -> None:  # type: ignore[no-untyped-def]
    dialog = SettingsDialog(plain_controller)
    qtbot.addWidget(dialog)
    # ending with the app's name, Qt does not append it once more
    assert dialog.windowTitle() == "Settings — Agentray"
