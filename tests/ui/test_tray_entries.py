"""The tray menu's words: "Start again" and "Recent runs" entries a person can tell apart (goal,
folder, when), without vanished folders or doubles; plurals; window titles that name the app once.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from PySide6.QtWidgets import QMenu

from agentray.demo import DemoSession
from agentray.ui.app import TrayApp
from agentray.ui.controller import AppController
from agentray.ui.new_run_dialog import NewRunDialog
from agentray.ui.sandbox_prompt import NoSandboxPrompt
from agentray.ui.welcome import NoKeyPrompt, WelcomeDialog
from agentray.ui.wording import ago, plural, short_folder
from conftest import QLoop, demo_workspace

GOAL = "Make the tests pass"
HOUR = 3600.0
DAY = 86400.0


def _past_run(
    controller: AppController,
    run_id: str,
    workspace: Path,
    *,
    ended_ago: float,
    status: str = "succeeded",
    goal: str = GOAL,
    allow_network: bool = False,
) -> None:
    config = controller.settings.run_config(goal, workspace, allow_network=allow_network)
    journal = controller.journal
    journal.create_run(run_id, goal=goal, workspace=str(workspace), config=config.to_dict(), pid=1)
    journal.update_run(run_id, status=status, ended_at=time.time() - ended_ago)


def _entries(shell: TrayApp, title: str) -> list[str]:
    shell.tray.menu.aboutToShow.emit()
    menu = next(a.menu() for a in shell.tray.menu.actions() if a.text() == title)
    assert isinstance(menu, QMenu)
    return [a.text() for a in menu.actions() if not a.isSeparator()]


def test_start_again_and_recent_runs_read_goal_folder_and_when(
    offline_controller: AppController, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))  # folders under it read "~/…"
    app, lib, gone = (tmp_path / "src" / name for name in ("app", "lib", "gone"))
    for folder in (app, lib, gone):
        folder.mkdir(parents=True)
    ctl = offline_controller
    _past_run(ctl, "r0101-0001", app, ended_ago=3 * DAY)
    _past_run(ctl, "r0101-0002", app, ended_ago=2 * HOUR + 60)  # the same goal and folder again
    _past_run(ctl, "r0101-0003", lib, ended_ago=DAY + HOUR, status="failed")
    _past_run(ctl, "r0101-0004", gone, ended_ago=5 * 60)
    _past_run(ctl, "r0101-0005", app, ended_ago=HOUR + 60, allow_network=True)
    shutil.rmtree(gone)  # that folder no longer exists

    shell = TrayApp(ctl)
    assert _entries(shell, "Start again") == [
        f"↻ {GOAL} — ~/src/app — 1 h ago · network",  # differs by its network mark
        f"↻ {GOAL} — ~/src/app — 2 h ago",  # the newest of two identical ones
        f"↻ {GOAL} — ~/src/lib — yesterday",
    ]
    assert _entries(shell, "Recent runs") == [
        f"✓ {GOAL} — ~/src/app — 1 h ago",
        f"✓ {GOAL} — ~/src/app — 2 h ago",
        f"✗ {GOAL} — ~/src/lib — yesterday",
        f"✓ {GOAL} — ~/src/app — 3 days ago",
    ]
    again = shell.tray.find_action(f"↻ {GOAL} — ~/src/lib — yesterday")
    assert again is not None and str(lib) in again.toolTip()

    # Two runs that would read the same (same outcome, goal, folder, minute): told apart by id.
    _past_run(ctl, "r0101-0006", lib, ended_ago=10 * 60)
    _past_run(ctl, "r0101-0007", lib, ended_ago=10 * 60)
    recent = _entries(shell, "Recent runs")
    assert f"✓ {GOAL} — ~/src/lib — 10 min ago (r0101-0006)" in recent
    assert f"✓ {GOAL} — ~/src/lib — 10 min ago (r0101-0007)" in recent
    assert _entries(shell, "Start again") == [
        f"↻ {GOAL} — ~/src/lib — 10 min ago",  # the newest of the runs in ~/src/lib
        f"↻ {GOAL} — ~/src/app — 1 h ago · network",
        f"↻ {GOAL} — ~/src/app — 2 h ago",
    ]


def test_wording_helpers() -> None:
    assert [plural(n, "run") for n in (0, 1, 2)] == ["0 runs", "1 run", "2 runs"]
    assert plural(1, "question") == "1 question" and plural(3, "agent") == "3 agents"
    now = 1_000_000.0
    assert ago(now - 5, now) == "just now" and ago(now - 150, now) == "2 min ago"
    assert ago(now - 2 * HOUR, now) == "2 h ago" and ago(now - DAY - 5, now) == "yesterday"
    assert ago(now - 4 * DAY, now) == "4 days ago"
    deep = Path("/srv") / "a" / "very" / "deep" / "tree" / "of" / "folders" / "project"
    short = short_folder(deep, 24)
    assert short.endswith("/project") and short.startswith("…/") and len(short) <= 24


def test_quit_counts_runs_in_words(
    controller: AppController, demo: DemoSession, qloop: QLoop, tmp_path: Path
) -> None:
    shell = TrayApp(controller)
    tray = shell.tray
    tray.menu.aboutToShow.emit()
    assert tray.action_texts()[-1] == "Quit"
    qloop.run(controller.start_run(demo.config()))
    qloop.wait_until(lambda: len(controller.active_runs()) == 1)
    tray.menu.aboutToShow.emit()
    assert tray.action_texts()[-1] == "Quit (stops 1 run)"
    qloop.run(controller.start_run(demo.config(workspace=str(demo_workspace(tmp_path, "two")))))
    qloop.wait_until(lambda: len(controller.active_runs()) == 2)
    tray.menu.aboutToShow.emit()
    assert tray.action_texts()[-1] == "Quit (stops 2 runs)"
    controller.stop_all()
    qloop.wait_until(lambda: not controller.active_runs(), timeout=40)


def _as_shown(title: str, display_name: str = "Agentray") -> str:
    """The title as Qt shows it on Linux and Windows: the application's display name is added
    unless the title already ends with it (QPlatformWindow::formatWindowTitle)."""
    return title if title.endswith(display_name) else f"{title} — {display_name}"


def test_window_titles_name_the_app_once(offline_controller: AppController) -> None:
    shell = TrayApp(offline_controller)
    shell.show_error("Cannot start the demo", "no")
    windows = {
        "new run": NewRunDialog(offline_controller),
        "welcome": WelcomeDialog(checks=[]),
        "no sandbox": NoSandboxPrompt("bubblewrap (bwrap) is not installed"),
        "no key": NoKeyPrompt(),
        "error": shell.windows["error"],
        "escalations": shell.escalations,
    }
    titles = {name: window.windowTitle() for name, window in windows.items()}
    for name, title in titles.items():
        shown = _as_shown(title)
        assert shown.count("Agentray") == 1, (name, shown)
        assert shown.endswith(" — Agentray") and shown != "Agentray", (name, shown)
    assert titles["new run"] == "New run — Agentray"
    assert titles["no sandbox"] == "No command sandbox — Agentray"
    for window in windows.values():
        window.close()
