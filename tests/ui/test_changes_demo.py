"""The Changes tab on a real run: the demo through the real engine and the simulator, followed
live in the dashboard, then reviewed and undone (the fixer's edit of headline.py is shared with
the agent that wrote the file: refused, then forced; then the whole run)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from pytestqt.qtbot import QtBot

from agentray.demo import DemoSession
from agentray.escalation import Answer
from agentray.ui.controller import AppController
from agentray.ui.dashboard import DashboardWindow

if TYPE_CHECKING:
    from conftest import QLoop

SKIPPED = ("agent-responses", "__pycache__")


def _files(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): p.read_text(errors="replace")
        for p in sorted(root.rglob("*"))
        if p.is_file() and not any(part in SKIPPED for part in p.relative_to(root).parts)
    }


def test_review_and_undo_a_demo_run(
    qtbot: QtBot, controller: AppController, demo: DemoSession, qloop: QLoop
) -> None:
    workspace = Path(demo.workspace)
    before = _files(workspace)
    dash = DashboardWindow(controller)
    qtbot.addWidget(dash)
    run_id = qloop.run(controller.start_run(demo.config()))
    dash.show_changes(run_id)
    view = dash.changes

    # Live: the list follows the run's snapshots; nothing can be undone while it runs.
    qtbot.waitUntil(lambda: bool(controller.pending_escalations()), timeout=30_000)
    assert not view.undo_run_button.isEnabled()
    question = controller.pending_escalations()[0]
    assert controller.answer_escalation(question.escalation_id, Answer(question.options[0].option_id))
    qtbot.waitUntil(lambda: not controller.is_live(run_id), timeout=60_000)
    row = controller.journal.get_run(run_id)
    assert row is not None and row.status == "succeeded"
    ids = {a.title: a.agent_id for a in controller.journal.list_agents(run_id)}
    writer, fixer = ids["headline_slug"], ids["Fix the failing build"]
    qtbot.waitUntil(lambda: len(view.file_rows()) == 4 and view.undo_run_button.isEnabled())
    rows = {r[0]: r for r in view.file_rows()}
    assert set(rows) == {
        "textkit/headline.py", "textkit/slug.py", "textkit/stats.py", "textkit/stopwords.txt"
    }  # fmt: skip
    # Who changed each file, in order. Agents run in parallel: a path a file tool wrote while
    # another agent's command ran is owned by both (the engine's attribution), so "in", not "==".
    changers = {path: row[4].split(", ") for path, row in rows.items()}
    assert rows["textkit/headline.py"][1] == "added"
    headline = changers["textkit/headline.py"]
    assert writer in headline and fixer in headline
    assert headline.index(writer) < headline.index(fixer)
    assert rows["textkit/slug.py"][1:4] == ("modified", 1, 1)
    assert ids["Fix slugify"] in changers["textkit/slug.py"]
    assert ids["Stop words in word_count"] in changers["textkit/stopwords.txt"]

    # headline.py: created by one agent, fixed by another; both parts shown.
    assert view.select_file("textkit/headline.py")
    qtbot.waitUntil(
        lambda: view.file_diff is not None and view.file_diff.path == "textkit/headline.py"
    )
    text = view.diff_view.toPlainText()
    assert "--- /dev/null\n+++ b/textkit/headline.py" in text
    assert f"{writer} “headline_slug”  (write_file)" in text
    assert f"{fixer} “Fix the failing build”  (edit_file)" in text
    assert f"## {fixer} “Fix the failing build”'s part" in text and "+" in text

    # Undo the fixer: refused (the file is the writer's too), then forced.
    fixed = (workspace / "textkit/headline.py").read_text()
    assert "[:5]" in fixed
    assert view.select_agent(fixer)
    qtbot.waitUntil(lambda: view.undo_agent_button.isEnabled() and not view.busy)
    view.undo_agent_button.click()
    qtbot.waitUntil(lambda: view.prompt is not None)
    assert view.prompt is not None
    view.prompt.undo_button.click()
    qtbot.waitUntil(lambda: view.last_result is not None and not view.busy)
    refused = view.last_result
    assert refused is not None and refused.restored == ()
    assert writer in refused.shared["textkit/headline.py"]
    assert (workspace / "textkit/headline.py").read_text() == fixed
    assert "textkit/headline.py was also changed by " in view.result.text()
    assert f"{writer} “headline_slug”" in view.result.text()
    view.force_button.click()
    qtbot.waitUntil(lambda: view.prompt is not None)
    assert view.prompt is not None
    view.prompt.undo_button.click()
    qtbot.waitUntil(lambda: view.last_result is not None and view.last_result.restored != ())
    assert (workspace / "textkit/headline.py").read_text() == fixed.replace("[:5]", "[:4]")

    # Then the whole run: the folder is as it was before it.
    assert view.select_agent(None)
    qtbot.waitUntil(lambda: view.agent_filter is None and not view.busy)
    view.undo_run_button.click()
    qtbot.waitUntil(lambda: view.prompt is not None)
    assert view.prompt is not None
    view.prompt.undo_button.click()
    qtbot.waitUntil(lambda: view.last_result is not None and len(view.last_result.restored) == 4)
    assert _files(workspace) == before
    qtbot.waitUntil(lambda: all(r[1].endswith("· undone") for r in view.file_rows()))
