"""The command sandbox in the tray: the new-run dialog's "Allow network", the ask-once question
where no sandbox exists (and its reset in Settings), and the "no sandbox" / "network" marks in the
tray menu and the dashboard. Real engine on the demo simulator, real bubblewrap; "no sandbox here"
is made by pointing AGENTRAY_BWRAP at a missing program."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from agentray.demo import DemoSession
from agentray.errors import SandboxUnavailableError
from agentray.sandbox import BWRAP_ENV_VAR, detect_sandbox
from agentray.ui.app import TrayApp
from agentray.ui.controller import AppController, StartDeclined
from agentray.ui.dashboard import COL_MARKS, DashboardWindow
from agentray.ui.marks import RunMark
from agentray.ui.new_run_dialog import NewRunDialog
from agentray.ui.sandbox_prompt import NoSandboxPrompt
from agentray.ui.settings import AppSettings
from agentray.ui.settings_dialog import SettingsDialog
from agentray.ui.tray import Tray, _clip
from conftest import demo_workspace

if TYPE_CHECKING:
    from conftest import QLoop

MISSING_BWRAP = "/nonexistent/agentray-test/bwrap"


@pytest.fixture(autouse=True)
def _collect_now() -> Iterator[None]:
    yield
    gc.collect()


@pytest.fixture
def sandboxed() -> None:
    status = detect_sandbox()
    assert status.available, f"these tests need bubblewrap (scripts/test.sh installs it): {status.problem}"


@pytest.fixture
def no_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BWRAP_ENV_VAR, MISSING_BWRAP)
    assert not detect_sandbox().available


def _stop_all(controller: AppController, qloop: QLoop) -> None:
    controller.stop_all()
    qloop.wait_until(lambda: not controller.active_runs())


def _prompt(shell: TrayApp) -> NoSandboxPrompt | None:
    """The no-sandbox question, while it is on screen."""
    window = shell.windows.get("no_sandbox")
    return window if isinstance(window, NoSandboxPrompt) and window.isVisible() else None


def _menu_texts(tray: Tray) -> list[str]:
    tray.menu.aboutToShow.emit()  # rebuilt when it opens
    return tray.action_texts()


def _again(tray: Tray, folder: str, marks: str = "") -> str:
    """The "Start again" entry of the run in that folder ("goal — folder — when[ · marks]")."""
    shown = [t.strip() for t in _menu_texts(tray) if t.startswith("  ↻ ")]
    found = [
        t
        for t in shown
        if f"/{folder} — " in t and (t.endswith(marks) if marks else " · " not in t)
    ]
    assert len(found) == 1, shown
    return found[0]


# ---------------------------------------------------------------------------- allow network


def test_allow_network_checkbox_reaches_the_run(
    qtbot, controller: AppController, demo: DemoSession, qloop: QLoop, sandboxed: None
) -> None:  # type: ignore[no-untyped-def]
    dialog = NewRunDialog(controller)
    qtbot.addWidget(dialog)
    assert not dialog.allow_network.isChecked()
    tip = dialog.allow_network.toolTip()
    assert "no network" in tip and "localhost" in tip
    assert dialog.sandbox_note.isHidden()  # a sandbox exists here: nothing to warn about

    config = demo.config()
    dialog.prefill(goal=config.goal, workspace=str(demo.workspace))
    dialog.build.setText(str(config.build_command))
    assert dialog.config().allow_network is False
    dialog.allow_network.click()
    assert dialog.config().allow_network is True

    started: list[str] = []
    dialog.run_started.connect(started.append)
    dialog.show()
    dialog.start_button.click()
    qtbot.waitUntil(lambda: bool(started), timeout=20_000)
    row = controller.journal.get_run(started[0])
    assert row is not None
    assert row.config["allow_network"] is True and row.config["sandbox"] is True
    [run] = controller.active_runs()
    assert run.run_id == started[0] and run.marks == (RunMark.NETWORK,)
    _stop_all(controller, qloop)


def test_a_preset_keeps_allow_network(
    qtbot, controller: AppController, settings: AppSettings, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    first = NewRunDialog(controller)
    qtbot.addWidget(first)
    first.prefill(goal="Refresh the lock file", workspace=str(tmp_path))
    first.allow_network.setChecked(True)
    first.preset_name.setText("online")
    first.save_preset()
    preset = settings.get_preset("online")
    assert preset is not None and preset["allow_network"] is True
    assert settings.preset_config(preset).allow_network is True

    second = NewRunDialog(controller)
    qtbot.addWidget(second)
    assert not second.allow_network.isChecked()
    second.prefill(preset="online")
    assert second.allow_network.isChecked()


def test_start_again_keeps_network_and_the_sandbox_choice(
    controller: AppController,
    demo: DemoSession,
    qloop: QLoop,
    tmp_path: Path,
    settings: AppSettings,
    monkeypatch: pytest.MonkeyPatch,
    sandboxed: None,
) -> None:
    shell = TrayApp(controller)
    online = demo_workspace(tmp_path, "online")
    first = qloop.run(controller.start_run(demo.config(workspace=str(online), allow_network=True)))
    _stop_all(controller, qloop)

    action = shell.tray.find_action(_again(shell.tray, "online", " · network"))
    assert action is not None
    action.trigger()
    qloop.wait_until(lambda: bool(controller.active_runs()))
    [again] = controller.active_runs()
    row = controller.journal.get_run(again.run_id)
    assert again.run_id != first and row is not None
    assert row.config["allow_network"] is True and row.config["sandbox"] is True
    assert again.marks == (RunMark.NETWORK,)
    _stop_all(controller, qloop)

    # Where no sandbox exists and the person agreed once: a run without one starts again
    # without one, network setting kept, and nobody is asked.
    monkeypatch.setenv(BWRAP_ENV_VAR, MISSING_BWRAP)
    settings.run_unsandboxed = True
    bare = demo_workspace(tmp_path, "bare")
    qloop.run(controller.start_run(demo.config(workspace=str(bare), allow_network=True)))
    _stop_all(controller, qloop)
    action = shell.tray.find_action(_again(shell.tray, "bare", " · no sandbox"))
    assert action is not None
    action.trigger()
    qloop.wait_until(lambda: bool(controller.active_runs()))
    [unconfined] = controller.active_runs()
    row = controller.journal.get_run(unconfined.run_id)
    assert row is not None and row.config["sandbox"] is False and row.config["allow_network"] is True
    assert unconfined.marks == (RunMark.NO_SANDBOX,)
    assert "no_sandbox" not in shell.windows  # never asked
    _stop_all(controller, qloop)

    # Once a sandbox exists again, starting that run again puts its commands in it.
    monkeypatch.delenv(BWRAP_ENV_VAR)
    action = shell.tray.find_action(_again(shell.tray, "bare", " · no sandbox"))
    assert action is not None
    action.trigger()
    qloop.wait_until(lambda: bool(controller.active_runs()))
    [confined] = controller.active_runs()
    row = controller.journal.get_run(confined.run_id)
    assert row is not None and row.config["sandbox"] is True and row.config["allow_network"] is True
    assert confined.marks == (RunMark.NETWORK,)
    _stop_all(controller, qloop)


# ---------------------------------------------------------------------------- no sandbox here


def test_no_sandbox_asks_once_and_remembers_only_a_yes(
    qtbot,  # type: ignore[no-untyped-def]
    controller: AppController,
    demo: DemoSession,
    qloop: QLoop,
    settings: AppSettings,
    no_sandbox: None,
) -> None:
    shell = TrayApp(controller)
    config = demo.config()
    settings.save_preset(
        "textkit", config.goal, str(demo.workspace), config.build_command, config.model
    )

    def start_preset() -> None:
        _menu_texts(shell.tray)
        action = shell.tray.find_action("▶ textkit")
        assert action is not None
        action.trigger()

    # First start: asked. "Don't start" starts nothing, says no error, remembers nothing.
    start_preset()
    qtbot.waitUntil(lambda: _prompt(shell) is not None)
    first = _prompt(shell)
    assert first is not None
    text = first.informativeText()
    assert "full authority" in text and "bubblewrap" in text and "--no-sandbox" not in text
    first.cancel_button.click()
    qtbot.waitUntil(lambda: not shell.tray._tasks)
    assert controller.active_runs() == [] and controller.journal.list_runs() == []
    assert settings.run_unsandboxed is False
    assert "error" not in shell.windows

    # Second start: asked again. "Run without a sandbox" starts it unconfined and is remembered.
    start_preset()
    qtbot.waitUntil(lambda: _prompt(shell) is not None)
    second = _prompt(shell)
    assert second is not None and second is not first
    second.run_button.click()
    qloop.wait_until(lambda: bool(controller.active_runs()))
    [run] = controller.active_runs()
    row = controller.journal.get_run(run.run_id)
    assert row is not None and row.config["sandbox"] is False
    assert run.marks == (RunMark.NO_SANDBOX,)
    assert settings.run_unsandboxed is True
    assert AppSettings(settings.file_name()).run_unsandboxed is True  # on disk, not only in memory
    _stop_all(controller, qloop)

    # Third start: not asked any more.
    start_preset()
    qloop.wait_until(lambda: bool(controller.active_runs()))
    assert _prompt(shell) is None and shell.windows["no_sandbox"] is second
    [again] = controller.active_runs()
    assert again.run_id != run.run_id and again.marks == (RunMark.NO_SANDBOX,)
    _stop_all(controller, qloop)


def test_declining_in_the_new_run_dialog_starts_nothing(
    qtbot,  # type: ignore[no-untyped-def]
    controller: AppController,
    demo: DemoSession,
    qloop: QLoop,
    settings: AppSettings,
    no_sandbox: None,
) -> None:
    shell = TrayApp(controller)
    dialog = NewRunDialog(controller)
    qtbot.addWidget(dialog)
    assert not dialog.sandbox_note.isHidden() and "full authority" in dialog.sandbox_note.text()
    config = demo.config()
    dialog.prefill(goal=config.goal, workspace=str(demo.workspace))
    dialog.build.setText(str(config.build_command))
    dialog.show()
    dialog.start_button.click()
    assert dialog.general_error.isHidden()  # the form is fine: the question comes, not an error
    qtbot.waitUntil(lambda: _prompt(shell) is not None)
    prompt = _prompt(shell)
    assert prompt is not None
    prompt.cancel_button.click()
    qtbot.waitUntil(lambda: not dialog.general_error.isHidden())
    assert "Not started" in dialog.general_error.text()
    assert dialog.isVisible() and dialog.start_button.isEnabled()
    assert controller.active_runs() == [] and controller.journal.list_runs() == []
    assert settings.run_unsandboxed is False


def test_without_anyone_to_ask_the_start_fails_with_the_install_hint(
    controller: AppController, demo: DemoSession, qloop: QLoop, no_sandbox: None
) -> None:
    assert controller.confirm_unsandboxed is None  # no tray: nobody to ask
    with pytest.raises(SandboxUnavailableError, match="bubblewrap"):
        qloop.run(controller.start_run(demo.config()))
    assert controller.active_runs() == []


def test_resume_without_a_sandbox_asks_and_marks_the_run(
    controller: AppController,
    demo: DemoSession,
    qloop: QLoop,
    settings: AppSettings,
    monkeypatch: pytest.MonkeyPatch,
    sandboxed: None,
) -> None:
    run_id = qloop.run(controller.start_run(demo.config()))
    assert controller.active_runs()[0].marks == ()
    _stop_all(controller, qloop)

    monkeypatch.setenv(BWRAP_ENV_VAR, MISSING_BWRAP)
    asked: list[str] = []

    async def say_no(problem: str) -> bool:
        asked.append(problem)
        return False

    controller.confirm_unsandboxed = say_no
    with pytest.raises(StartDeclined):
        qloop.run(controller.resume_run(run_id))
    assert len(asked) == 1 and "bubblewrap" in asked[0]
    assert controller.active_runs() == []

    settings.run_unsandboxed = True  # a yes given before: resumed without one, not asked
    assert qloop.run(controller.resume_run(run_id)) == run_id
    assert len(asked) == 1
    [run] = controller.active_runs()
    assert run.run_id == run_id and run.marks == (RunMark.NO_SANDBOX,)  # from the new RunStarted
    row = controller.journal.get_run(run_id)
    assert row is not None and row.config["sandbox"] is False
    _stop_all(controller, qloop)


def test_the_tray_demo_runs_without_a_sandbox_without_asking(
    qtbot,  # type: ignore[no-untyped-def]
    controller: AppController,
    demo: DemoSession,
    qloop: QLoop,
    settings: AppSettings,
    no_sandbox: None,
) -> None:
    shell = TrayApp(controller)
    shell.demo_session = demo  # reuse the fixture's session (it closes it)
    run_id = qloop.run(shell.start_demo())
    qtbot.addWidget(shell.windows["dashboard"])
    assert run_id is not None
    row = controller.journal.get_run(run_id)
    assert row is not None and row.config["sandbox"] is False
    assert "no_sandbox" not in shell.windows and "error" not in shell.windows
    assert settings.run_unsandboxed is False  # the demo's pass is not the person's yes
    [run] = controller.active_runs()
    assert run.marks == (RunMark.NO_SANDBOX,)
    shell.demo_session = None
    _stop_all(controller, qloop)


def test_settings_show_and_reset_the_choice(
    qtbot, controller: AppController, settings: AppSettings, no_sandbox: None
) -> None:  # type: ignore[no-untyped-def]
    settings.run_unsandboxed = True
    dialog = SettingsDialog(controller)
    qtbot.addWidget(dialog)
    assert "bubblewrap" in dialog.sandbox_status.text()
    assert "--no-sandbox" not in dialog.sandbox_status.text()
    assert not dialog.sandbox_choice.isHidden()
    assert "without a sandbox" in dialog.sandbox_choice.text()
    assert dialog.ask_again_button.isEnabled()

    dialog.ask_again_button.click()
    assert settings.run_unsandboxed is False
    assert AppSettings(settings.file_name()).run_unsandboxed is False
    assert not dialog.ask_again_button.isEnabled()
    assert "asks before" in dialog.sandbox_choice.text()


def test_settings_with_a_sandbox_name_it(
    qtbot, controller: AppController, settings: AppSettings, sandboxed: None
) -> None:  # type: ignore[no-untyped-def]
    dialog = SettingsDialog(controller)
    qtbot.addWidget(dialog)
    assert "bubblewrap" in dialog.sandbox_status.text() and "in a sandbox" in dialog.sandbox_status.text()
    assert dialog.sandbox_choice.isHidden() and dialog.ask_again_button.isHidden()


# ---------------------------------------------------------------------------- marks


def test_marks_in_the_menu_and_the_dashboard(
    qtbot,  # type: ignore[no-untyped-def]
    controller: AppController,
    demo: DemoSession,
    qloop: QLoop,
    tmp_path: Path,
    sandboxed: None,
) -> None:
    shell = TrayApp(controller)
    goal = demo.config().goal
    runs = {
        name: qloop.run(
            controller.start_run(demo.config(workspace=str(demo_workspace(tmp_path, name)), **extra))
        )
        for name, extra in (
            ("plain", {}),
            ("online", {"allow_network": True}),
            ("bare", {"sandbox": False}),
        )
    }
    expected = {"plain": (), "online": (RunMark.NETWORK,), "bare": (RunMark.NO_SANDBOX,)}
    summaries = {s.run_id: s for s in controller.active_runs()}
    assert {name: summaries[run_id].marks for name, run_id in runs.items()} == expected

    # The tray menu: one entry per live run, the unconfined and the networked one marked.
    entries = [t for t in _menu_texts(shell.tray) if t.startswith(_clip(goal, 40) + " —")]
    assert len(entries) == 3
    assert sum(t.endswith(" · no sandbox") for t in entries) == 1
    assert sum(t.endswith(" · network") for t in entries) == 1
    assert sum("sandbox" not in t and "network" not in t for t in entries) == 1
    qtbot.waitUntil(lambda: "no sandbox" in shell.tray.icon.toolTip())  # refreshed, coalesced
    # The marked entry is that run: its "Open" shows it in the dashboard.
    [bare_entry] = [t for t in entries if t.endswith(" · no sandbox")]
    open_action = next(
        a.menu().actions()[0]  # type: ignore[union-attr]
        for a in shell.tray.menu.actions()
        if a.text() == bare_entry
    )
    open_action.trigger()
    dash = shell.windows["dashboard"]
    assert isinstance(dash, DashboardWindow)
    qtbot.addWidget(dash)
    assert dash.selected_run == runs["bare"]

    # The dashboard: a column with the marks, kept as data and shown as text.
    def dashboard_marks(window: DashboardWindow) -> dict[str, tuple[RunMark, ...] | None]:
        return {name: window.run_marks(run_id) for name, run_id in runs.items()}

    qtbot.waitUntil(lambda: dashboard_marks(dash) == expected)
    item = dash.runs.currentItem()
    assert item is not None and item.text(COL_MARKS) == "no sandbox"
    assert "full authority" in item.toolTip(COL_MARKS)

    # Past runs (from the journal): the same marks in a fresh dashboard and in "Start again".
    _stop_all(controller, qloop)
    past = DashboardWindow(controller)
    qtbot.addWidget(past)
    assert dashboard_marks(past) == expected
    assert _again(shell.tray, "plain").startswith(f"↻ {_clip(goal, 40)} — ")
    assert _again(shell.tray, "online", " · network")
    assert _again(shell.tray, "bare", " · no sandbox")
