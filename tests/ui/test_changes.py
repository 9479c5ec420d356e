"""The dashboard's Changes tab on a finished run made with real files and real git: the file list
(+/- counts, status, agents), a file's coloured diff with who changed it, the agent filter, undo
of the run and of one agent (refused when shared, then forced), and the Review paths (the
run-finished notification, the tray menu) that open it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from changes_fixtures import AFTER_A001, AFTER_RUN, COMMAND, GOAL, ORIGINAL, MadeRun
from PySide6.QtGui import QColor
from pytestqt.qtbot import QtBot

from agentray import events as ev
from agentray.ui.app import TrayApp
from agentray.ui.changes_view import ChangesView, UndoPrompt
from agentray.ui.controller import AppController
from agentray.ui.dashboard import DashboardWindow

if TYPE_CHECKING:
    from conftest import QLoop


@pytest.fixture
def ctl(offline_controller: AppController) -> AppController:
    return offline_controller


@pytest.fixture
def made(made_run: MadeRun) -> MadeRun:
    return made_run


def _open(qtbot, ctl: AppController, run_id: str) -> tuple[DashboardWindow, ChangesView]:
    dash = DashboardWindow(ctl)
    qtbot.addWidget(dash)
    dash.show_changes(run_id)
    view = dash.changes
    qtbot.waitUntil(lambda: view.load_count >= 1 and not view.busy)
    return dash, view


def _confirm(qtbot, view: ChangesView, *, agree: bool = True) -> UndoPrompt:
    qtbot.waitUntil(lambda: view.prompt is not None and view.prompt.isVisible())
    prompt = view.prompt
    assert prompt is not None
    (prompt.undo_button if agree else prompt.cancel_button).click()
    return prompt


def test_lists_files_with_counts_and_agents_and_shows_a_coloured_diff(
    qtbot: QtBot, ctl: AppController, made: MadeRun
) -> None:
    dash, view = _open(qtbot, ctl, made.run_id)
    assert dash.tabs.currentWidget() is view and dash.selected_run == made.run_id
    assert view.file_rows() == [
        ("keep.txt", "modified", 1, 1, "a001"),
        ("new.txt", "added", 1, 0, "a002"),
        ("old.txt", "deleted", 0, 1, "a002"),
        ("shared.py", "modified", 5, 1, "a001, a002"),
    ]
    assert view.summary.text() == "4 files changed by 2 agents  (+7 −3)"
    filters = [view.agent_combo.itemText(i) for i in range(view.agent_combo.count())]
    assert filters == ["All agents", "a001 “Edit the sources”", "a002 “Shell chores”"]

    # A file both agents changed: the whole change, who did what with which tool, each one's part.
    assert view.select_file("shared.py")
    qtbot.waitUntil(lambda: view.file_diff is not None and view.file_diff.path == "shared.py")
    text = view.diff_view.toPlainText()
    assert "# shared.py: changed by" in text
    assert "a001 “Edit the sources”  (edit_file)" in text
    assert f"a002 “Shell chores”  (run_command: {COMMAND})" in text
    assert "--- a/shared.py\n+++ b/shared.py" in text
    assert "-    return 1\n" in text and "+def g():\n" in text
    assert "## a001 “Edit the sources”'s part" in text
    assert "## a002 “Shell chores”'s part" in text
    # a002's own part starts from a001's version
    a002_part = text.split("## a002 “Shell chores”'s part", 1)[1]
    assert "-    return 1" not in a002_part and "+def g():" in a002_part

    # Coloured: added lines green, removed red, hunk headers their own colour.
    highlighter = view.highlighter
    document = view.diff_view.document()

    def color_of(prefix: str) -> QColor:
        block = document.begin()
        while block.isValid():
            if block.text().startswith(prefix):
                formats = block.layout().formats()
                assert formats, f"no format on {block.text()!r}"
                return formats[0].format.foreground().color()
            block = block.next()
        raise AssertionError(f"no line starts with {prefix!r}")

    assert color_of("+def g") == highlighter.added.foreground().color()
    assert color_of("-    return 1") == highlighter.removed.foreground().color()
    assert color_of("@@") == highlighter.hunk.foreground().color()
    assert color_of("# shared.py") == highlighter.attribution.foreground().color()
    assert len({color_of("+def g").name(), color_of("-    return 1").name()}) == 2

    # A created file's diff comes from /dev/null.
    assert view.select_file("new.txt")
    qtbot.waitUntil(lambda: view.file_diff is not None and view.file_diff.path == "new.txt")
    assert "--- /dev/null\n+++ b/new.txt\n" in view.diff_view.toPlainText()

    # The agent filter: only a002's files, and its part of shared.py.
    assert view.select_agent("a002")
    qtbot.waitUntil(lambda: view.data is not None and view.data.agent_filter == "a002")
    assert [r[0] for r in view.file_rows()] == ["new.txt", "old.txt", "shared.py"]
    assert view.file_rows()[2][2:4] == (4, 0)
    assert view.summary.text().startswith("3 files changed by a002 “Shell chores”")
    assert view.undo_agent_button.isEnabled() and view.undo_run_button.isEnabled()
    # nothing on disk moved
    assert made.read() == AFTER_RUN


def test_undo_run_restores_the_files(qtbot: QtBot, ctl: AppController, made: MadeRun) -> None:
    _dash, view = _open(qtbot, ctl, made.run_id)
    assert made.read() == AFTER_RUN

    # Cancelling the confirmation changes nothing.
    view.undo_run_button.click()
    prompt = _confirm(qtbot, view, agree=False)
    assert "Undo run r0101-c4a9?" in prompt.text() and "4 files" in prompt.informativeText()
    qtbot.waitUntil(lambda: view.prompt is None)
    assert made.read() == AFTER_RUN and view.last_result is None

    view.undo_run_button.click()
    _confirm(qtbot, view)
    qtbot.waitUntil(lambda: view.last_result is not None and not view.busy)
    assert made.read() == ORIGINAL  # every file as before the run, old.txt back, new.txt gone
    result = view.last_result
    assert result is not None and result.ok
    assert set(result.restored) == {"keep.txt", "new.txt", "old.txt", "shared.py"}
    assert view.result.text().startswith("Undid run r0101-c4a9: restored 4 files:")
    assert not view.force_button.isVisible()
    # The list is read again: what the run did, each file now marked as undone.
    qtbot.waitUntil(lambda: view.load_count >= 2 and not view.busy)
    assert [(r[0], r[1]) for r in view.file_rows()] == [
        ("keep.txt", "modified · undone"),
        ("new.txt", "added · undone"),
        ("old.txt", "deleted · undone"),
        ("shared.py", "modified · undone"),
    ]


def test_undo_agent_refused_when_shared_then_forced(
    qtbot: QtBot, ctl: AppController, made: MadeRun
) -> None:
    _dash, view = _open(qtbot, ctl, made.run_id)
    assert not view.undo_agent_button.isEnabled()  # pick an agent first
    assert view.select_agent("a002")
    qtbot.waitUntil(lambda: view.undo_agent_button.isEnabled())

    view.undo_agent_button.click()
    prompt = _confirm(qtbot, view)
    assert "a002 “Shell chores”" in prompt.text() and "3 files" in prompt.informativeText()
    qtbot.waitUntil(lambda: view.last_result is not None and not view.busy)
    refused = view.last_result
    assert refused is not None and not refused.ok and refused.restored == ()
    assert refused.shared == {"shared.py": ("a001",)}
    assert made.read() == AFTER_RUN  # nothing changed
    text = view.result.text()
    assert text.startswith("Nothing was changed.")
    assert "shared.py was also changed by a001 “Edit the sources”" in text
    assert view.force_button.isVisible() and view.force_button.isEnabled()

    # "Undo anyway…" asks a second time, naming what it takes back.
    view.force_button.click()
    second = _confirm(qtbot, view)
    assert "anyway" in second.text() and "shared.py" in second.informativeText()
    qtbot.waitUntil(lambda: view.last_result is not None and view.last_result.restored != ())
    qtbot.waitUntil(lambda: not view.busy)
    assert made.read() == {
        "keep.txt": AFTER_RUN["keep.txt"],
        "old.txt": "old\n",
        "shared.py": AFTER_A001,
    }
    assert "restored 3 files" in view.result.text()
    assert "Other agents' changes to shared.py were undone too." in view.result.text()
    assert not view.force_button.isVisible()
    qtbot.waitUntil(
        lambda: (
            [r[1] for r in view.file_rows()]
            == ["added · undone", "deleted · undone", "modified · undone"]
        )
    )
    view.select_agent(None)  # the whole run: a001's changes stand
    qtbot.waitUntil(
        lambda: view.data is not None and view.data.agent_filter is None and not view.busy
    )
    assert [(r[0], r[1]) for r in view.file_rows()] == [
        ("keep.txt", "modified"),
        ("new.txt", "added · undone"),
        ("old.txt", "deleted · undone"),
        ("shared.py", "modified · changed since"),
    ]


def test_undo_run_refused_over_the_persons_later_edit(
    qtbot: QtBot, ctl: AppController, made: MadeRun
) -> None:
    (made.workspace / "keep.txt").write_text("mine now\n")
    _dash, view = _open(qtbot, ctl, made.run_id)
    assert view.file_rows()[0][:2] == ("keep.txt", "modified · changed since")
    view.undo_run_button.click()
    _confirm(qtbot, view)
    qtbot.waitUntil(lambda: view.last_result is not None and not view.busy)
    assert view.last_result is not None and view.last_result.changed_since == ("keep.txt",)
    assert "Changed after the run" in view.result.text() and "keep.txt" in view.result.text()
    assert (made.workspace / "keep.txt").read_text() == "mine now\n"
    assert (made.workspace / "new.txt").exists()  # all or nothing

    view.force_button.click()
    second = _confirm(qtbot, view)
    assert "your later changes to keep.txt are lost" in second.informativeText()
    qtbot.waitUntil(lambda: view.last_result is not None and view.last_result.restored != ())
    assert made.read() == ORIGINAL


def test_a_live_or_unreviewable_run_cannot_be_undone(
    qtbot: QtBot, ctl: AppController, tmp_path: Path
) -> None:
    ctl.journal.create_run(
        "r-old", goal="before checkpoints", workspace=str(tmp_path), config={}, pid=1
    )
    ctl.journal.update_run("r-old", status="succeeded")
    _dash, view = _open(qtbot, ctl, "r-old")
    assert view.file_rows() == [] and view.summary.text() == "No snapshots"
    assert "no snapshots" in view.diff_view.toPlainText()
    assert not view.undo_run_button.isEnabled() and not view.undo_agent_button.isEnabled()


def test_the_finished_run_notification_opens_its_changes(
    qtbot: QtBot, ctl: AppController, made: MadeRun
) -> None:
    shell = TrayApp(ctl)
    notifier = shell.notifier
    notifier.coalescer.window_s = 60.0  # flushed by hand: no timing in the assert
    ctl.event.emit(
        ev.RunFinished(run_id=made.run_id, status="succeeded", summary="tidied", cost_usd=0.01)
    )
    notifier.coalescer.flush()
    [sent] = notifier.sent
    assert (sent.title, sent.target_id, sent.default_action) == (
        "Run finished",
        made.run_id,
        "review",
    )
    assert sent.bus_actions() == [
        ("default", "Review"),
        ("review", "Review"),
        ("folder", "Open folder"),
    ]

    shell.tray.icon.messageClicked.emit()  # a click on the message: its default action
    dash = shell.windows["dashboard"]
    assert isinstance(dash, DashboardWindow) and dash.isVisible()
    assert dash.selected_run == made.run_id and dash.tabs.currentWidget() is dash.changes
    qtbot.waitUntil(lambda: len(dash.changes.file_rows()) == 4)

    # A failed run's click ("Show") opens its details; "Review changes" is beside it.
    ctl.event.emit(ev.RunFinished(run_id=made.run_id, status="failed", summary="no", cost_usd=0.0))
    failed = notifier.coalescer.flush()
    assert failed is not None and failed.default_action == "show"
    assert [label for _key, label in failed.bus_actions()] == ["Show", "Show", "Review changes"]
    opened: list[tuple[str, str]] = []
    notifier.open_run.connect(lambda r: opened.append(("details", r)))
    notifier.open_changes.connect(lambda r: opened.append(("changes", r)))
    notifier.invoke(failed)
    notifier.invoke(failed, "review")
    assert opened == [("details", made.run_id), ("changes", made.run_id)]


def test_the_tray_menu_reviews_a_finished_run(
    qtbot: QtBot, ctl: AppController, made: MadeRun
) -> None:
    shell = TrayApp(ctl)
    tray = shell.tray
    tray.menu.aboutToShow.emit()
    texts = tray.action_texts()
    label = f"✓ {GOAL[:39]}… — …/{made.workspace.name} — just now"
    assert "Recent runs" in texts and f"  {label}" in texts
    assert "    Review changes" in texts and "    Details" in texts
    action = tray.find_action("Review changes")
    assert action is not None
    action.trigger()
    dash = shell.windows["dashboard"]
    assert isinstance(dash, DashboardWindow) and dash.isVisible()
    assert dash.selected_run == made.run_id and dash.tabs.currentWidget() is dash.changes
    qtbot.waitUntil(
        lambda: (
            [r[0] for r in dash.changes.file_rows()]
            == ["keep.txt", "new.txt", "old.txt", "shared.py"]
        )
    )


def test_a_huge_diff_is_clipped_and_every_line_kind_has_its_colour(qapp: object) -> None:
    from PySide6.QtGui import QTextDocument

    from agentray.ui.changes_data import FileDiff, Touch
    from agentray.ui.changes_view import MAX_DIFF_CHARS, DiffHighlighter, diff_document_text

    body = "".join(f"+line {n}\n" for n in range(100_000))
    huge = FileDiff("gen/big.js", None, "--- /dev/null\n+++ b/gen/big.js\n" + body,
                    (Touch("a007", "run_command", 0.0, "npm run build"),))  # fmt: skip
    text = diff_document_text(huge, {"a007": "Build"})
    assert len(text) <= MAX_DIFF_CHARS + 200
    assert text.splitlines()[1].endswith("a007 “Build”  (run_command: npm run build)")
    assert text.rstrip().endswith("more characters: `agentray diff RUN` shows the whole diff)")

    document = QTextDocument()
    highlighter = DiffHighlighter(document)
    kinds = {
        "+added": highlighter.added,
        "-removed": highlighter.removed,
        "@@ -1 +1 @@": highlighter.hunk,
        "--- a/x": highlighter.file_header,
        "+++ b/x": highlighter.file_header,
        "# x: changed by": highlighter.attribution,
        "\\ No newline at end of file": highlighter.note,
        " context": None,
    }
    for line, expected in kinds.items():
        assert highlighter.format_for(line) is expected, line


def test_the_tray_forgets_runs_older_than_the_setting_at_start(
    qtbot: QtBot, ctl: AppController, made: MadeRun, qloop: QLoop
) -> None:
    import time

    ctl.settings.keep_days = 10
    ctl.journal.update_run(made.run_id, status="succeeded", ended_at=time.time() - 11 * 86400)
    assert ctl.journal.list_snapshots(made.run_id)
    shell = TrayApp(ctl)
    qloop.run(shell._prune_old_runs())
    assert ctl.journal.get_run(made.run_id) is None
    assert ctl.journal.list_snapshots(made.run_id) == []
