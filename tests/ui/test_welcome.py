"""The welcome dialog shows what `agentray doctor` finds (the same run_checks()), checked off the
GUI thread, and never the key."""

from __future__ import annotations

import shutil

import pytest

from agentray.doctor import CHECK_NAMES, Check
from agentray.ui.welcome import WelcomeDialog

SECRET = "sk-ant-welcome-test-Kx4-SECRETTAIL"


def _checked_dialog(qtbot) -> WelcomeDialog:  # type: ignore[no-untyped-def]
    dialog = WelcomeDialog()
    qtbot.addWidget(dialog)
    with qtbot.waitSignal(dialog.checked, timeout=15_000):
        dialog.show()
    return dialog


def test_shows_the_sandbox_and_the_other_checks(qtbot) -> None:  # type: ignore[no-untyped-def]
    bwrap = shutil.which("bwrap")
    assert bwrap, "bubblewrap must be installed for the test suite"
    dialog = _checked_dialog(qtbot)
    assert [check.name for check in dialog.checks] == list(CHECK_NAMES)
    text = dialog.facts.text()
    assert "sandbox" in text and f"bubblewrap ({bwrap})" in text
    assert text.index("sandbox") < text.index("keyring") < text.index("notifications")
    # conftest: no key and no keyring
    key = next(check for check in dialog.checks if check.name == "key")
    assert not key.ok and "no API key" in text
    assert "sandbox" in dialog.facts.toolTip()


def test_shows_how_to_install_bubblewrap_when_there_is_none(  # type: ignore[no-untyped-def]
    qtbot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGENTRAY_BWRAP", "/nonexistent")
    dialog = _checked_dialog(qtbot)
    sandbox = dialog.checks[0]
    assert sandbox.name == "sandbox" and not sandbox.ok
    assert "install bubblewrap" in dialog.facts.text()
    assert "✗" in dialog.facts.text()


def test_the_key_is_masked_never_shown(qtbot, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    dialog = _checked_dialog(qtbot)
    key = next(check for check in dialog.checks if check.name == "key")
    assert key.ok and f"({len(SECRET)} chars)" in dialog.facts.text()
    shown = dialog.facts.text() + dialog.facts.toolTip()
    for part in (SECRET, "SECRETTAIL", "Kx4"):
        assert part not in shown


def test_given_checks_are_shown_escaped(qtbot) -> None:  # type: ignore[no-untyped-def]
    checks = [
        Check("sandbox", False, True, "no <sandbox> & no bwrap", "install bubblewrap"),
        Check("display", True, False, "X11 :0", "no tray host", warning=True),
    ]
    dialog = WelcomeDialog(checks=checks)
    qtbot.addWidget(dialog)
    assert dialog.checks == checks
    text = dialog.facts.text()
    assert "no &lt;sandbox&gt; &amp; no bwrap — install bubblewrap" in text
    assert "warn" in text and "✗" in text


def test_buttons_still_emit(qtbot) -> None:  # type: ignore[no-untyped-def]
    dialog = WelcomeDialog(checks=[])
    qtbot.addWidget(dialog)
    with qtbot.waitSignal(dialog.set_key_requested, timeout=1000):
        dialog.key_button.click()
    dialog = WelcomeDialog(checks=[])
    qtbot.addWidget(dialog)
    with qtbot.waitSignal(dialog.demo_requested, timeout=1000):
        dialog.demo_button.click()
