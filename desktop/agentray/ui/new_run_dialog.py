"""New run: goal, project folder, build command (suggested from the folder), model, limits, presets."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from agentray.engine import RunConfig, check_build_command, validate_config
from agentray.errors import AgentrayError, BadInputError
from agentray.sandbox import detect_sandbox

from .fields import LimitFields, model_combo
from .wording import window_title

if TYPE_CHECKING:
    from .controller import AppController

__all__ = ["ALLOW_NETWORK_TIP", "NewRunDialog", "suggest_build_command"]

ALLOW_NETWORK_TIP = (
    "Off (the default): the agents' commands (builds, tests, any shell command) run in a sandbox "
    "with no network at all, not even localhost (127.0.0.1).\n"
    "On: they may reach the network, e.g. to install packages; the run is marked “network”."
)

# First match wins; the order follows how specific the marker is to one toolchain.
_SUGGESTIONS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("pyproject.toml", "setup.py", "tests"), "python -m pytest -q"),
    (("package.json",), "npm test"),
    (("Cargo.toml",), "cargo build"),
    (("Makefile",), "make"),
    (("go.mod",), "go test ./..."),
)


def suggest_build_command(folder: str | Path) -> str | None:
    """The build / validation command a project folder suggests, or None when nothing fits."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        return None
    for markers, command in _SUGGESTIONS:
        if any((path / marker).exists() for marker in markers):
            return command
    return None


def _error_label(name: str) -> QLabel:
    label = QLabel()
    label.setObjectName(name)
    label.setWordWrap(True)
    label.setStyleSheet("color: #c0392b;")
    label.hide()
    return label


class NewRunDialog(QDialog):
    """Opened with ``show()``/``open()``; starting is asynchronous (``asyncio.ensure_future``)."""

    run_started = Signal(str)

    def __init__(self, controller: AppController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.controller = controller
        self.setWindowTitle(window_title("New run"))
        self.setObjectName("newRunDialog")
        self.setMinimumWidth(560)
        self._build_edited = False  # the user typed a command: stop re-suggesting
        self._start_task: asyncio.Future[Any] | None = None
        self._file_dialog: QFileDialog | None = None
        settings = controller.settings

        layout = QVBoxLayout(self)
        form = QFormLayout()
        layout.addLayout(form)

        self.preset = QComboBox()
        self.preset.setObjectName("presetCombo")
        self._fill_presets()
        self.preset.activated.connect(self._preset_chosen)
        form.addRow("Preset", self.preset)

        self.recent_goals = QComboBox()
        self.recent_goals.addItem("Recent goals…")
        self.recent_goals.addItems(settings.recent_goals)
        self.recent_goals.activated.connect(self._recent_goal_chosen)
        self.goal = QPlainTextEdit()
        self.goal.setPlaceholderText("What should the agents get done? Be specific about done.")
        self.goal.setMinimumHeight(90)
        self.goal_error = _error_label("goalError")
        goal_box = QVBoxLayout()
        goal_box.addWidget(self.goal)
        goal_box.addWidget(self.recent_goals)
        goal_box.addWidget(self.goal_error)
        form.addRow("Goal", goal_box)

        self.folder = QComboBox()
        self.folder.setObjectName("folderCombo")
        self.folder.setEditable(True)
        self.folder.addItems(settings.recent_folders)
        self.folder.setCurrentText(settings.recent_folders[0] if settings.recent_folders else "")
        self.browse = QPushButton("Browse…")
        self.browse.clicked.connect(self._browse)
        self.folder.currentTextChanged.connect(self._folder_changed)
        folder_row = QHBoxLayout()
        folder_row.addWidget(self.folder, 1)
        folder_row.addWidget(self.browse)
        self.folder_error = _error_label("folderError")
        folder_box = QVBoxLayout()
        folder_box.addLayout(folder_row)
        folder_box.addWidget(self.folder_error)
        form.addRow("Project folder", folder_box)

        self.build = QLineEdit()
        self.build.setPlaceholderText("e.g. python -m pytest -q (empty: no build validation)")
        self.build.textEdited.connect(self._build_typed)
        self.build_error = _error_label("buildError")
        build_box = QVBoxLayout()
        build_box.addWidget(self.build)
        build_box.addWidget(self.build_error)
        form.addRow("Build / validation", build_box)

        self.model = model_combo(settings.default_model)
        form.addRow("Model", self.model)

        self.allow_network = QCheckBox("Allow network")
        self.allow_network.setObjectName("allowNetwork")
        self.allow_network.setToolTip(ALLOW_NETWORK_TIP)
        self.allow_network.setChecked(False)
        self.sandbox_note = QLabel()
        self.sandbox_note.setObjectName("sandboxNote")
        self.sandbox_note.setWordWrap(True)
        self.sandbox_note.setStyleSheet("color: #b9770e;")
        status = detect_sandbox()
        if not status.available:
            self.sandbox_note.setText(
                "This system has no command sandbox: the agents' commands would run with your "
                "full authority, network included. Agentray asks before the first such run."
            )
        self.sandbox_note.setVisible(not status.available)
        commands_box = QVBoxLayout()
        commands_box.addWidget(self.allow_network)
        commands_box.addWidget(self.sandbox_note)
        form.addRow("Commands", commands_box)

        limits = QGroupBox("Limits")
        limits_form = QFormLayout(limits)
        self.limits = LimitFields(settings)
        self.limits.add_rows(limits_form, ("Agents at once", "Max agents", "Max depth", "Budget"))
        self.max_concurrent, self.max_agents = self.limits.max_concurrent, self.limits.max_agents
        self.max_depth, self.budget = self.limits.max_depth, self.limits.budget
        layout.addWidget(limits)

        preset_row = QHBoxLayout()
        self.preset_name = QLineEdit()
        self.preset_name.setPlaceholderText("Preset name")
        self.save_preset_button = QPushButton("Save as preset")
        self.save_preset_button.clicked.connect(self.save_preset)
        preset_row.addWidget(self.preset_name, 1)
        preset_row.addWidget(self.save_preset_button)
        layout.addLayout(preset_row)
        self.preset_message = QLabel()
        self.preset_message.setObjectName("presetMessage")
        layout.addWidget(self.preset_message)

        self.general_error = _error_label("generalError")
        layout.addWidget(self.general_error)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        self.cancel_button = QPushButton("Cancel")
        self.start_button = QPushButton("Start run")
        self.start_button.setDefault(True)
        self.cancel_button.clicked.connect(self.reject)
        self.start_button.clicked.connect(self.start)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.start_button)
        layout.addLayout(buttons)
        self._folder_changed(self.folder.currentText())

    # ------------------------------------------------------------------ filling
    def _fill_presets(self) -> None:
        self.preset.clear()
        self.preset.addItem("(none)")
        for preset in self.controller.settings.presets:
            self.preset.addItem(str(preset["name"]))

    def _preset_chosen(self, index: int) -> None:
        if index > 0:
            self.prefill(preset=self.preset.itemText(index))

    def _recent_goal_chosen(self, index: int) -> None:
        if index > 0:
            self.goal.setPlainText(self.recent_goals.itemText(index))

    def prefill(
        self,
        goal: str | None = None,
        workspace: str | Path | None = None,
        preset: str | dict[str, Any] | None = None,
    ) -> None:
        """Fill the form from a preset (by name or as a dict), then from goal/workspace."""
        data = self.controller.settings.get_preset(preset) if isinstance(preset, str) else preset
        if data:
            self.goal.setPlainText(str(data.get("goal", "")))
            self.folder.setCurrentText(str(data.get("workspace", "")))
            self.build.setText(str(data.get("build_command") or ""))
            self._build_edited = True  # a preset's command is a choice, not a guess
            self.model.setCurrentText(str(data.get("model") or self.model.currentText()))
            self.limits.set_values(data.get("limits") or {})
            self.allow_network.setChecked(bool(data.get("allow_network", False)))
            self.preset_name.setText(str(data.get("name", "")))
            index = self.preset.findText(str(data.get("name", "")))
            if index >= 0:
                self.preset.setCurrentIndex(index)
        if goal is not None:
            self.goal.setPlainText(goal)
        if workspace is not None:
            self.folder.setCurrentText(str(workspace))

    # ------------------------------------------------------------------ folder and build
    def _browse(self) -> None:
        dialog = QFileDialog(
            self, window_title("Project folder"), self.folder.currentText() or str(Path.home())
        )
        dialog.setFileMode(QFileDialog.FileMode.Directory)
        dialog.setOption(QFileDialog.Option.ShowDirsOnly, True)
        dialog.fileSelected.connect(self.folder.setCurrentText)
        self._file_dialog = dialog  # keep a reference while it is open
        dialog.open()

    def _build_typed(self, text: str) -> None:
        # Clearing the field hands it back to the suggestions.
        self._build_edited = bool(text.strip())

    def _folder_changed(self, text: str) -> None:
        self.folder_error.hide()
        if self._build_edited:
            return
        self.build.setText((suggest_build_command(text) or "") if text.strip() else "")

    # ------------------------------------------------------------------ validation
    def _limits(self) -> dict[str, Any]:
        return self.limits.values()

    def config(self) -> RunConfig:
        return self.controller.settings.run_config(
            self.goal.toPlainText().strip(),
            self.folder.currentText().strip(),
            self.build.text().strip() or None,
            self.model.currentText().strip() or None,
            self._limits(),
            allow_network=self.allow_network.isChecked(),
        )

    def _show(self, label: QLabel, message: str | None) -> None:
        label.setText(message or "")
        label.setVisible(bool(message))

    def validate(self) -> RunConfig | None:
        """Check every field, show each problem beside its field; the config when all is well."""
        goal = self.goal.toPlainText().strip()
        folder = self.folder.currentText().strip()
        build = self.build.text().strip()
        self._show(self.goal_error, None if goal else "Describe the goal first.")
        self._show(self.folder_error, _folder_problem(folder))
        build_problem = None
        if build:
            try:
                check_build_command(build)
            except BadInputError as error:
                build_problem = str(error).removeprefix("--build ")
        self._show(self.build_error, build_problem)
        self._show(self.general_error, None)
        if not goal or self.folder_error.isVisible() or build_problem:
            return None
        config = self.config()
        try:
            # Where no sandbox exists, the controller asks whether to go without one: check the
            # rest of the form here, and keep the sandbox the config asks for.
            checked = validate_config(config.replace(sandbox=False))
            return checked.replace(sandbox=config.sandbox)
        except BadInputError as error:
            self._show(self.general_error, str(error))
            return None

    # ------------------------------------------------------------------ actions
    def start(self) -> None:
        config = self.validate()
        if config is None:
            return
        self.start_button.setEnabled(False)
        self._start_task = asyncio.ensure_future(self._start(config))
        self._start_task.add_done_callback(self._forget_task)

    def _forget_task(self, _task: asyncio.Future[Any]) -> None:
        # Drop the finished task: it would keep a cycle (dialog -> task -> coroutine -> dialog)
        # that the garbage collector then breaks at an arbitrary moment.
        self._start_task = None

    async def _start(self, config: RunConfig) -> None:
        try:
            run_id = await self.controller.start_run(config)
        except AgentrayError as error:
            self._show(self.general_error, str(error))
            self.start_button.setEnabled(True)
            return
        except Exception as error:  # show, don't swallow: the dialog stays open to retry
            self._show(self.general_error, f"{type(error).__name__}: {error}")
            self.start_button.setEnabled(True)
            return
        settings = self.controller.settings
        settings.add_recent_goal(config.goal)
        settings.add_recent_folder(config.workspace)
        self.run_started.emit(run_id)
        self.accept()

    def save_preset(self) -> None:
        name = self.preset_name.text().strip()
        if not name:
            self.preset_message.setText("Give the preset a name.")
            return
        self.controller.settings.save_preset(
            name,
            self.goal.toPlainText().strip(),
            self.folder.currentText().strip(),
            self.build.text().strip() or None,
            self.model.currentText().strip() or None,
            self._limits(),
            allow_network=self.allow_network.isChecked(),
        )
        self._fill_presets()
        self.preset.setCurrentIndex(max(0, self.preset.findText(name)))
        self.preset_message.setText(f"Preset “{name}” saved.")


def _folder_problem(folder: str) -> str | None:
    if not folder:
        return "Choose the project folder."
    path = Path(folder).expanduser()
    if not path.exists():
        return f"{folder}: no such folder."
    if not path.is_dir():
        return f"{folder}: not a folder."
    if not os.access(path, os.R_OK | os.W_OK | os.X_OK):
        return f"{folder}: not writable (the agents must be able to edit it)."
    return None
