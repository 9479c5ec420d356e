"""New-run dialog: inline validation, build suggestions, starting a real run (engine + simulator),
recents and presets."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from PySide6.QtCore import Qt

from agentray.demo import DemoSession
from agentray.ui.controller import AppController
from agentray.ui.new_run_dialog import NewRunDialog, suggest_build_command
from agentray.ui.settings import AppSettings

if TYPE_CHECKING:
    from conftest import QLoop


@pytest.fixture(autouse=True)
def _collect_now() -> Iterator[None]:
    yield
    gc.collect()


@pytest.fixture
def dialog(qtbot, controller: AppController) -> NewRunDialog:  # type: ignore[no-untyped-def]
    widget = NewRunDialog(controller)
    qtbot.addWidget(widget)
    return widget


def test_empty_goal_and_missing_folder_shown_inline(
    dialog: NewRunDialog, controller: AppController, tmp_path: Path
) -> None:
    dialog.prefill(goal="", workspace=str(tmp_path / "nope"))
    dialog.start_button.click()
    assert not dialog.goal_error.isHidden() and "goal" in dialog.goal_error.text().lower()
    assert not dialog.folder_error.isHidden() and "no such folder" in dialog.folder_error.text()
    assert controller.active_runs() == []

    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    dialog.prefill(goal="Do it", workspace=str(a_file))
    dialog.start_button.click()
    assert dialog.goal_error.isHidden()
    assert "not a folder" in dialog.folder_error.text()
    assert dialog.start_button.isEnabled() and controller.active_runs() == []


def test_unwritable_folder(dialog: NewRunDialog, tmp_path: Path) -> None:
    import os

    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            # root writes anywhere mode bits allow; /proc/1 is a folder that even root cannot write
            locked = Path("/proc/1")
            assert locked.is_dir() and not os.access(locked, os.W_OK)
        dialog.prefill(goal="Do it", workspace=str(locked))
        dialog.start_button.click()
        assert "not writable" in dialog.folder_error.text()
    finally:
        (tmp_path / "locked").chmod(0o700)


def test_build_program_not_found(
    dialog: NewRunDialog, controller: AppController, tmp_path: Path
) -> None:
    dialog.prefill(goal="Do it", workspace=str(tmp_path))
    dialog.build.setText("surely-not-a-program-xyz --all")
    dialog.start_button.click()
    assert not dialog.build_error.isHidden()
    assert "surely-not-a-program-xyz" in dialog.build_error.text()
    assert "not a program on PATH" in dialog.build_error.text()
    assert dialog.folder_error.isHidden() and dialog.goal_error.isHidden()
    assert controller.active_runs() == []


@pytest.mark.parametrize(
    ("marker", "is_dir", "expected"),
    [
        ("pyproject.toml", False, "python -m pytest -q"),
        ("setup.py", False, "python -m pytest -q"),
        ("tests", True, "python -m pytest -q"),
        ("package.json", False, "npm test"),
        ("Cargo.toml", False, "cargo build"),
        ("Makefile", False, "make"),
        ("go.mod", False, "go test ./..."),
    ],
)
def test_build_suggestion_per_folder(
    tmp_path: Path, marker: str, is_dir: bool, expected: str
) -> None:
    target = tmp_path / marker
    target.mkdir() if is_dir else target.write_text("")
    assert suggest_build_command(tmp_path) == expected


def test_suggestion_follows_folder_until_user_edits(
    qtbot,
    dialog: NewRunDialog,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    rust, node, empty = tmp_path / "rust", tmp_path / "node", tmp_path / "empty"
    for folder in (rust, node, empty):
        folder.mkdir()
    (rust / "Cargo.toml").write_text("")
    (node / "package.json").write_text("{}")
    assert suggest_build_command(empty) is None

    dialog.folder.setCurrentText(str(rust))
    assert dialog.build.text() == "cargo build"
    dialog.folder.setCurrentText(str(node))
    assert dialog.build.text() == "npm test"
    dialog.folder.setCurrentText(str(empty))
    assert dialog.build.text() == ""

    dialog.folder.setCurrentText(str(node))
    dialog.build.clear()
    qtbot.keyClicks(dialog.build, "npm run check")  # the user's own command
    dialog.folder.setCurrentText(str(rust))
    assert dialog.build.text() == "npm run check"
    dialog.build.selectAll()
    qtbot.keyClick(dialog.build, Qt.Key.Key_Delete)  # cleared: suggestions come back
    dialog.folder.setCurrentText(str(node))
    assert dialog.build.text() == "npm test"


def test_valid_form_starts_a_run_and_records_recents(
    qtbot,  # type: ignore[no-untyped-def]
    dialog: NewRunDialog,
    controller: AppController,
    demo: DemoSession,
    qloop: QLoop,
    settings: AppSettings,
) -> None:
    config = demo.config()
    goal = "Make the textkit tests pass (from the dialog)"
    dialog.prefill(goal=goal, workspace=str(demo.workspace))
    dialog.build.setText(str(config.build_command))
    dialog.max_concurrent.setValue(3)
    started: list[str] = []
    dialog.run_started.connect(started.append)
    dialog.show()

    dialog.start_button.click()
    qloop.wait_until(lambda: bool(started))

    run_id = started[0]
    assert [s.run_id for s in controller.active_runs()] == [run_id]
    row = controller.journal.get_run(run_id)
    assert row is not None and row.goal == goal
    assert row.config["max_concurrent"] == 3
    assert row.config["build_command"] == config.build_command
    assert settings.recent_goals[0] == goal
    assert settings.recent_folders[0] == str(demo.workspace.resolve())
    assert not dialog.isVisible()
    controller.stop_run(run_id)


def test_save_and_load_preset(
    qtbot, controller: AppController, settings: AppSettings, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "go.mod").write_text("module x\n")
    first = NewRunDialog(controller)
    qtbot.addWidget(first)
    first.prefill(goal="Nightly cleanup", workspace=str(tmp_path))
    assert first.build.text() == "go test ./..."
    first.max_agents.setValue(12)
    first.model.setCurrentText("claude-haiku-4-5")

    first.save_preset()
    assert "name" in first.preset_message.text()
    first.preset_name.setText("nightly")
    first.save_preset()

    preset = settings.get_preset("nightly")
    assert preset is not None
    assert preset["goal"] == "Nightly cleanup" and preset["workspace"] == str(tmp_path)
    assert preset["build_command"] == "go test ./..." and preset["model"] == "claude-haiku-4-5"
    assert preset["limits"]["max_agents"] == 12

    second = NewRunDialog(controller)
    qtbot.addWidget(second)
    assert second.preset.findText("nightly") > 0
    second.prefill(preset="nightly")
    assert second.goal.toPlainText() == "Nightly cleanup"
    assert second.folder.currentText() == str(tmp_path)
    assert second.max_agents.value() == 12 and second.model.currentText() == "claude-haiku-4-5"
