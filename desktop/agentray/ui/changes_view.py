"""The dashboard's Changes tab: what a run changed in its folder, file by file, which agent did
what, and "Undo run" / "Undo this agent" (each confirmed; a refused undo names the files and
why, and can be forced after a second confirmation).

Everything that runs git or reads the journal goes through ``changes_data`` on a worker thread
(``asyncio.to_thread`` on the qasync loop): the window never waits for git.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QFontDatabase,
    QShowEvent,
    QSyntaxHighlighter,
    QTextCharFormat,
    QTextDocument,
)
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)
from shiboken6 import isValid

from agentray.checkpoints import FileChange, UndoResult

from .changes_data import (
    NOW_CHANGED,
    NOW_UNDONE,
    ChangesData,
    FileDiff,
    Touch,
    agent_text,
    load_changes,
    load_file_diff,
    refusal_text,
    restored_text,
    run_undo,
)
from .icons import app_icon

if TYPE_CHECKING:
    from .controller import AppController

__all__ = ["FILE_COLUMNS", "ChangesView", "DiffHighlighter", "UndoPrompt", "diff_document_text"]

T = TypeVar("T")
_ROLE = Qt.ItemDataRole.UserRole
FILE_COLUMNS = ("File", "Status", "+", "−", "Agents")
COL_FILE, COL_STATUS, COL_ADDED, COL_REMOVED, COL_AGENTS = range(len(FILE_COLUMNS))
_STATUS_COLORS = {"added": "#1e7b34", "deleted": "#b31d28"}
MAX_DIFF_CHARS = 400_000  # shown of one file's diff; the rest is counted
NO_SNAPSHOTS = (
    "This run has no snapshots (it ran before checkpoints existed, or git was not installed): "
    "its changes cannot be reviewed or undone here."
)


# ---------------------------------------------------------------------------- the diff text
def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))


def _touch_line(touch: Touch, titles: dict[str, str]) -> str:
    when = _clock(touch.created_at)
    if touch.agent_id == "-":
        return f"#   {when}  no agent's call: first seen at the run's {touch.tool} snapshot"
    who = agent_text(touch.agent_id, titles.get(touch.agent_id, ""))
    how = f"{touch.tool}: {touch.detail}" if touch.detail else touch.tool
    return f"#   {when}  {who}  ({how})"


def diff_document_text(data: FileDiff, titles: dict[str, str]) -> str:
    """The diff view's text: who changed the file and how (lines starting with ``#``), then the
    diff; when several agents changed it, each one's own part after the whole."""
    who = [_touch_line(t, titles) for t in data.touches]
    lines = [f"# {data.path}: changed by", *who] if who else [f"# {data.path}"]
    text = "\n".join(lines) + "\n\n" + (data.diff or "(no difference)\n")
    for agent_id, diff in data.by_agent:
        text += f"\n## {agent_text(agent_id, titles.get(agent_id, ''))}'s part\n\n"
        text += diff or "(its changes were taken back later in the run)\n"
    if len(text) > MAX_DIFF_CHARS:  # a generated or minified file: the window stays quick
        cut = text.rfind("\n", 0, MAX_DIFF_CHARS) + 1 or MAX_DIFF_CHARS
        text = text[:cut] + (
            f"(… {len(text) - cut} more characters: `agentray diff RUN` shows the whole diff)\n"
        )
    return text


class DiffHighlighter(QSyntaxHighlighter):
    """Unified-diff colouring: added, removed, hunk headers, file headers, attribution lines."""

    def __init__(self, document: QTextDocument) -> None:
        super().__init__(document)

        def fmt(
            color: str, background: str | None = None, *, bold: bool = False
        ) -> QTextCharFormat:
            f = QTextCharFormat()
            f.setForeground(QColor(color))
            if background:
                f.setBackground(QColor(background))
            if bold:
                f.setFontWeight(QFont.Weight.Bold)
            return f

        self.added = fmt("#116329", "#dafbe1")
        self.removed = fmt("#a40e26", "#ffebe9")
        self.hunk = fmt("#6f42c1", "#f3f0ff")
        self.file_header = fmt("#24292f", bold=True)
        self.attribution = fmt("#0b5394", bold=True)
        self.note = fmt("#6e7781")

    def format_for(self, line: str) -> QTextCharFormat | None:
        if line.startswith("#"):
            return self.attribution
        if line.startswith(("+++ ", "--- ")):
            return self.file_header
        if line.startswith("+"):
            return self.added
        if line.startswith("-"):
            return self.removed
        if line.startswith("@@"):
            return self.hunk
        if line.startswith(("\\", "Binary files", "(")):
            return self.note
        return None

    def highlightBlock(self, text: str) -> None:
        fmt = self.format_for(text)
        if fmt is not None:
            self.setFormat(0, len(text), fmt)


# ---------------------------------------------------------------------------- confirmation
class UndoPrompt(QMessageBox):
    """ "Undo" or "Cancel" (the default, also Escape and closing it). Shown, never exec()'d."""

    def __init__(self, title: str, text: str, detail: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("undoPrompt")
        self.setIcon(QMessageBox.Icon.Warning)
        self.setWindowTitle(title)
        self.setWindowIcon(app_icon())
        self.setText(text)
        self.setInformativeText(detail)
        self.undo_button = self.addButton("Undo", QMessageBox.ButtonRole.DestructiveRole)
        self.cancel_button = self.addButton("Cancel", QMessageBox.ButtonRole.RejectRole)
        self.setDefaultButton(self.cancel_button)
        self.setEscapeButton(self.cancel_button)

    def agreed(self) -> bool:
        return self.clickedButton() is self.undo_button

    async def ask(self) -> bool:
        answer: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

        def finished(_result: int) -> None:
            if not answer.done():
                answer.set_result(self.agreed())

        self.finished.connect(finished)
        self.show()
        self.raise_()
        self.activateWindow()
        try:
            return await answer
        finally:
            if isValid(self):
                self.finished.disconnect(finished)
                self.hide()


# ---------------------------------------------------------------------------- the view
class ChangesView(QWidget):
    loaded = Signal()  # the file list shows a fresh read
    diff_shown = Signal(str)  # the path whose diff is on show
    undone = Signal(object)  # the UndoResult of an undo that ran (refused or not)

    def __init__(self, controller: AppController, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("changesView")
        self.controller = controller
        self.run_id: str | None = None
        self.agent_filter: str | None = None
        self.data: ChangesData | None = None
        self.file_diff: FileDiff | None = None
        self.last_result: UndoResult | None = None
        self.prompt: UndoPrompt | None = None
        self.load_count = 0  # list reads applied (tests bound refreshes with it)
        self._titles: dict[str, str] = {}
        self._run_files: int | None = None  # how many the whole run changed (for the prompt)
        self._stale = False
        self._loading = False
        self._again = False
        self._undoing = False
        self._refused: tuple[str | None] | None = None  # (agent,) of the refused undo
        self._diff_generation = 0
        self._tasks: set[asyncio.Future[Any]] = set()
        self._build_ui()

    def _build_ui(self) -> None:
        self.agent_combo = QComboBox()
        self.agent_combo.setObjectName("agentFilter")
        self.agent_combo.addItem("All agents", None)
        self.agent_combo.currentIndexChanged.connect(self._filter_changed)
        self.summary = QLabel()
        self.summary.setObjectName("changesSummary")
        top = QHBoxLayout()
        top.addWidget(QLabel("Show:"))
        top.addWidget(self.agent_combo)
        top.addWidget(self.summary, 1)

        self.files = QTreeWidget()
        self.files.setObjectName("changedFiles")
        self.files.setHeaderLabels(list(FILE_COLUMNS))
        self.files.setRootIsDecorated(False)
        self.files.setUniformRowHeights(True)
        header = self.files.header()
        header.setStretchLastSection(True)  # the agents; the paths are shown whole
        for column in range(COL_AGENTS):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.files.itemSelectionChanged.connect(self._file_selected)

        self.diff_view = QPlainTextEdit()
        self.diff_view.setObjectName("diffView")
        self.diff_view.setReadOnly(True)
        self.diff_view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.diff_view.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.highlighter = DiffHighlighter(self.diff_view.document())

        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.files)
        split.addWidget(self.diff_view)
        split.setSizes([380, 520])

        self.undo_run_button = QPushButton("Undo run…")
        self.undo_run_button.setObjectName("undoRun")
        self.undo_agent_button = QPushButton("Undo this agent…")
        self.undo_agent_button.setObjectName("undoAgent")
        self.force_button = QPushButton("Undo anyway…")
        self.force_button.setObjectName("undoForce")
        self.force_button.hide()
        self.undo_run_button.clicked.connect(self.undo_run)
        self.undo_agent_button.clicked.connect(self.undo_agent)
        self.force_button.clicked.connect(self.undo_anyway)
        buttons = QHBoxLayout()
        for button in (self.undo_run_button, self.undo_agent_button, self.force_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        self.result = QLabel()
        self.result.setObjectName("undoResult")
        self.result.setWordWrap(True)
        self.result.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(top)
        layout.addWidget(split, 1)
        layout.addLayout(buttons)
        layout.addWidget(self.result)
        self._update_buttons()

    # ------------------------------------------------------------------ public
    def set_run(self, run_id: str | None) -> None:
        """Show this run (read when the tab is on show)."""
        if run_id == self.run_id:
            return
        self.run_id = run_id
        self.data = self.file_diff = self.last_result = None
        self._run_files = None
        self._refused = None
        self._titles = {}
        self.agent_combo.blockSignals(True)
        self.agent_combo.clear()
        self.agent_combo.addItem("All agents", None)
        self.agent_combo.blockSignals(False)
        self.agent_filter = None
        self.files.clear()
        self.diff_view.clear()
        self.summary.clear()
        self.result.clear()
        self.force_button.hide()
        self._diff_generation += 1
        self._update_buttons()
        self.mark_stale()

    def mark_stale(self) -> None:
        """The run's files may have changed: read them again now if on show, else when shown."""
        self._stale = True
        if self.isVisible():
            self.reload()

    def ensure_loaded(self) -> None:
        if self._stale:
            self.reload()

    def select_agent(self, agent_id: str | None) -> bool:
        """Filter by this agent (None: all); False when it changed nothing in the run."""
        index = self.agent_combo.findData(agent_id)
        if index < 0:
            return False
        self.agent_combo.setCurrentIndex(index)
        return True

    def select_file(self, path: str) -> bool:
        for i in range(self.files.topLevelItemCount()):
            item = self.files.topLevelItem(i)
            if item is not None and item.data(COL_FILE, _ROLE) == path:
                self.files.setCurrentItem(item)
                return True
        return False

    def file_rows(self) -> list[tuple[str, str, int, int, str]]:
        """(path, status, added, removed, agents) as listed (tests and screenshots read them)."""
        rows = []
        for i in range(self.files.topLevelItemCount()):
            item = self.files.topLevelItem(i)
            if item is not None:
                rows.append((
                    str(item.data(COL_FILE, _ROLE)), item.text(COL_STATUS),
                    int(item.data(COL_ADDED, _ROLE)), int(item.data(COL_REMOVED, _ROLE)),
                    item.text(COL_AGENTS),
                ))  # fmt: skip
        return rows

    @property
    def busy(self) -> bool:
        return self._loading or self._undoing

    # ------------------------------------------------------------------ reading
    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.ensure_loaded()

    def _spawn(self, coro: Coroutine[Any, Any, T], on_error: Callable[[Exception], None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(t: asyncio.Future[Any]) -> None:
            self._tasks.discard(t)
            if t.cancelled() or not isValid(self):
                return
            error = t.exception()
            if isinstance(error, Exception):
                on_error(error)

        task.add_done_callback(done)

    def reload(self) -> None:
        if self.run_id is None:
            return
        self._stale = False
        if self._loading:
            self._again = True  # one more read when this one ends, never two at once
            return
        self._loading = True
        self._update_buttons()
        self._spawn(self._load(self.run_id, self.agent_filter), self._load_failed)

    async def _load(self, run_id: str, agent_id: str | None) -> None:
        path = self.controller.journal.path
        try:
            data = await asyncio.to_thread(load_changes, path, run_id, agent_id)
        finally:
            if isValid(self):
                self._loading = False
        if not isValid(self):
            return
        if (run_id, agent_id) == (self.run_id, self.agent_filter):
            self._apply(data)
        if self._again or (run_id, agent_id) != (self.run_id, self.agent_filter):
            self._again = False
            self.reload()
        self._update_buttons()

    def _load_failed(self, error: Exception) -> None:
        self._loading = False
        self.summary.setText("")
        self.diff_view.setPlainText(f"The changes cannot be read: {error}")
        self._update_buttons()

    def _apply(self, data: ChangesData) -> None:
        self.data = data
        self.load_count += 1
        self._titles = {a.agent_id: a.title for a in data.agents}
        if data.agent_filter is None:
            self._run_files = len(data.files)
        self._fill_agents(data)
        self._fill_files(data.files)
        added = sum(f.added for f in data.files)
        removed = sum(f.removed for f in data.files)
        if not data.snapshots:
            self.summary.setText("No snapshots")
            self.diff_view.setPlainText(NO_SNAPSHOTS)
        else:
            who = (
                agent_text(data.agent_filter, data.title_of(data.agent_filter))
                if data.agent_filter
                else f"{len(data.agents)} agent{'s' if len(data.agents) != 1 else ''}"
            )
            count = f"{len(data.files)} file{'s' if len(data.files) != 1 else ''}"
            self.summary.setText(f"{count} changed by {who}  (+{added} −{removed})")
            if not data.files:
                self.diff_view.setPlainText("Nothing changed.")
        self._update_buttons()
        self.loaded.emit()

    def _fill_agents(self, data: ChangesData) -> None:
        wanted: list[tuple[str, str | None]] = [("All agents", None)]
        wanted += [(agent_text(a.agent_id, a.title), a.agent_id) for a in data.agents]
        have = [
            (self.agent_combo.itemText(i), self.agent_combo.itemData(i))
            for i in range(self.agent_combo.count())
        ]
        if have == wanted:
            return
        self.agent_combo.blockSignals(True)
        self.agent_combo.clear()
        for text, agent_id in wanted:
            self.agent_combo.addItem(text, agent_id)
        index = self.agent_combo.findData(self.agent_filter)
        if index < 0 and self.agent_filter is not None:  # keep a filter the list cannot show yet
            self.agent_combo.addItem(self.agent_filter, self.agent_filter)
            index = self.agent_combo.count() - 1
        self.agent_combo.setCurrentIndex(max(index, 0))
        self.agent_combo.blockSignals(False)

    def _fill_files(self, files: tuple[FileChange, ...]) -> None:
        current = self.files.currentItem()
        keep = str(current.data(COL_FILE, _ROLE)) if current is not None else None
        self.files.blockSignals(True)
        self.files.clear()
        selected: QTreeWidgetItem | None = None
        for change in files:
            item = QTreeWidgetItem()
            item.setText(COL_FILE, change.path)
            item.setData(COL_FILE, _ROLE, change.path)
            item.setToolTip(COL_FILE, change.path)
            now = self.data.now.get(change.path) if self.data is not None else None
            item.setText(COL_STATUS, f"{change.status} · {now}" if now else change.status)
            item.setData(COL_STATUS, _ROLE, now or "")
            color = "#6e7781" if now else _STATUS_COLORS.get(change.status)
            if color:
                item.setForeground(COL_STATUS, QBrush(QColor(color)))
            if now == NOW_UNDONE:
                item.setToolTip(COL_STATUS, "Put back: on disk it is as before the change.")
            elif now == NOW_CHANGED:
                item.setToolTip(COL_STATUS, "Changed again since (by you, another run or an undo).")
            for column, count, sign, color in (
                (COL_ADDED, change.added, "+", "#1e7b34"),
                (COL_REMOVED, change.removed, "−", "#b31d28"),
            ):
                item.setText(column, f"{sign}{count}")
                item.setData(column, _ROLE, count)
                item.setForeground(column, QBrush(QColor(color if count else "#8c959f")))
            item.setText(COL_AGENTS, ", ".join(change.agents))
            item.setToolTip(
                COL_AGENTS,
                "\n".join(agent_text(a, self._titles.get(a, "")) for a in change.agents),
            )
            self.files.addTopLevelItem(item)
            if change.path == keep:
                selected = item
        self.files.blockSignals(False)
        if selected is None and self.files.topLevelItemCount():
            selected = self.files.topLevelItem(0)
        if selected is not None:
            self.files.setCurrentItem(selected)
            if self.files.currentItem() is selected:
                self._file_selected()  # re-read: the file may have changed since

    def _filter_changed(self, _index: int) -> None:
        agent = self.agent_combo.currentData()
        self.agent_filter = str(agent) if agent else None
        self.result.clear()
        self.force_button.hide()
        self._refused = None
        self._update_buttons()
        self.reload()

    def _file_selected(self) -> None:
        item = self.files.currentItem()
        if item is None or self.run_id is None:
            return
        path = str(item.data(COL_FILE, _ROLE))
        self._diff_generation += 1
        generation = self._diff_generation
        self._spawn(
            self._load_diff(self.run_id, path, self.agent_filter, generation), self._diff_failed
        )

    async def _load_diff(
        self, run_id: str, path: str, agent_id: str | None, generation: int
    ) -> None:
        data = await asyncio.to_thread(
            load_file_diff, self.controller.journal.path, run_id, path, agent_id
        )
        if not isValid(self) or generation != self._diff_generation:
            return  # another file (or run) was picked meanwhile
        self.file_diff = data
        self.diff_view.setPlainText(diff_document_text(data, self._titles))
        self.diff_shown.emit(path)

    def _diff_failed(self, error: Exception) -> None:
        self.diff_view.setPlainText(f"The diff cannot be read: {error}")

    # ------------------------------------------------------------------ undo
    def _live(self) -> bool:
        if self.run_id is None:
            return False
        return self.controller.is_live(self.run_id) or (
            self.data is not None and self.data.run_status == "running"
        )

    def _update_buttons(self) -> None:
        data = self.data
        reviewable = data is not None and data.snapshots > 0 and data.run_id == self.run_id
        live = self._live()
        can = reviewable and not live and not self.busy
        self.undo_run_button.setEnabled(can)
        self.undo_agent_button.setEnabled(can and self.agent_filter is not None)
        self.force_button.setEnabled(can and self._refused is not None)
        if live:
            why = "The run is still going: undo once it has ended (or stop it first)."
        elif not reviewable:
            why = "Nothing of this run can be undone here."
        else:
            why = ""
        self.undo_run_button.setToolTip(
            why or "Put every file the run changed back as it was before the run."
        )
        self.undo_agent_button.setToolTip(
            why
            or (
                "Pick an agent under “Show” first."
                if self.agent_filter is None
                else "Put the files this agent changed back as they were before it."
            )
        )

    def _who(self, agent_id: str | None) -> str:
        if agent_id is None:
            return f"run {self.run_id}"
        return f"agent {agent_text(agent_id, self._titles.get(agent_id, ''))}"

    def undo_run(self) -> None:
        self._start_undo(None, force=False)

    def undo_agent(self) -> None:
        if self.agent_filter is not None:
            self._start_undo(self.agent_filter, force=False)

    def undo_anyway(self) -> None:
        if self._refused is not None:
            self._start_undo(self._refused[0], force=True)

    def _prompt_for(self, agent_id: str | None, force: bool) -> UndoPrompt:
        who = self._who(agent_id)
        if force and self.last_result is not None:
            result = self.last_result
            parts = []
            if result.changed_since:
                parts.append(
                    "your later changes to " + ", ".join(result.changed_since) + " are lost"
                )
            if result.shared:
                parts.append(
                    "the other agents' changes to "
                    + ", ".join(sorted(result.shared))
                    + " are taken back too"
                )
            detail = (
                f"Undo {who} anyway: {'; '.join(parts) or 'files are overwritten'}. "
                "Agentray cannot bring those back."
            )
            return UndoPrompt("Undo anyway?", f"Undo {who} anyway?", detail, self)
        if agent_id is None:
            files = self._run_files
        else:
            files = (
                len(self.data.files) if self.data and self.data.agent_filter == agent_id else None
            )
        count = f"the {files} file{'s' if files != 1 else ''}" if files is not None else "the files"
        detail = (
            f"This puts {count} it changed back as they were before it. Nothing is changed if "
            "any of them changed since"
            + (" or other agents changed them too" if agent_id else "")
            + ": you are told which, and can decide then."
        )
        return UndoPrompt(f"Undo {who}?", f"Undo {who}?", detail, self)

    def _start_undo(self, agent_id: str | None, *, force: bool) -> None:
        if self.run_id is None or self.busy or self.prompt is not None:
            return
        self._spawn(self._undo(self.run_id, agent_id, force), self._undo_failed)

    async def _undo(self, run_id: str, agent_id: str | None, force: bool) -> None:
        self.prompt = self._prompt_for(agent_id, force)
        try:
            agreed = await self.prompt.ask()
        finally:
            if isValid(self):
                self.prompt = None
        if not agreed or not isValid(self) or run_id != self.run_id:
            return
        who = self._who(agent_id)
        self._undoing = True
        self._update_buttons()
        self.result.setText(f"Undoing {who}…")
        try:
            result = await asyncio.to_thread(
                run_undo, self.controller.journal.path, run_id, agent_id, force=force
            )
        finally:
            if isValid(self):
                self._undoing = False
        if not isValid(self):
            return
        self.last_result = result
        if result.ok or force:
            self._refused = None
            self.force_button.hide()
            self.result.setText(restored_text(result, who))
        else:
            self._refused = (agent_id,)
            self.force_button.show()
            self.result.setText(refusal_text(result, who, self._titles))
        self._update_buttons()
        self.undone.emit(result)
        if result.restored:
            self.mark_stale()

    def _undo_failed(self, error: Exception) -> None:
        self._undoing = False
        self.result.setText(f"Undo failed: {error}")
        self._update_buttons()
