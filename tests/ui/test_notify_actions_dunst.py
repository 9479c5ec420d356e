"""Notification actions with a REAL notification server: dunst on a real D-Bus session bus (a
``dbus-daemon --session`` of the test's own) and the X server of ``xvfb-run``.

The notifications go out through the tray's real code path from real demo runs. The person's
clicks are dunst's own: ``dunstctl action 0`` does the first notification's default action (the
click on its body), and ``dunstctl context`` opens dunst's context menu of every action of the
shown notifications, through the ``dmenu`` program of its config. That program is a small script
here: it records the menu dunst offers and picks the entry of one notification id and action key,
as a person picking it in dmenu would. dunst then emits ``ActionInvoked`` for it.

dunst and an X server are installed and provided by scripts/test.sh: missing, these tests fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_notifications import PrivateBus
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import open_dbus_connection
from pytestqt.qtbot import QtBot

from agentray.demo import DemoSession
from agentray.escalation import Answer
from agentray.ui.app import TrayApp
from agentray.ui.controller import AppController
from agentray.ui.dashboard import DashboardWindow
from agentray.ui.notifications import Notification
from conftest import QLoop, demo_workspace

pytestmark = pytest.mark.skipif(
    sys.platform in ("darwin", "win32"), reason="freedesktop notifications: Linux and the BSDs"
)

NAME = "org.freedesktop.Notifications"

PICK_SCRIPT = """#!/bin/sh
# dunst's dmenu: records the menu, answers with the entry "[<id>,<action key>]" named in ./want
input=$(cat)
printf '%s\\n' "$input" > '{folder}/menu.txt'
want=$(cat '{folder}/want')
printf '%s\\n' "$input" | grep -F "[$want]" | head -n 1
"""

DUNSTRC = """[global]
    dmenu = {pick}
    browser = /bin/true
    notification_limit = 0
    markup = full
"""


class Dunst:
    """dunst on the given bus, configured so that its context menu can be driven."""

    def __init__(self, bus: PrivateBus, folder: Path) -> None:
        program = shutil.which("dunst")
        assert program and shutil.which("dunstctl"), "dunst is needed (scripts/test.sh installs it)"
        assert os.environ.get("DISPLAY"), "dunst needs an X server: run under xvfb-run -a"
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        pick = folder / "pick.sh"
        pick.write_text(PICK_SCRIPT.format(folder=folder), encoding="utf-8")
        pick.chmod(0o755)
        (folder / "want").write_text("", encoding="utf-8")
        config = folder / "dunstrc"
        config.write_text(DUNSTRC.format(pick=pick), encoding="utf-8")
        self.env = {**os.environ, "DBUS_SESSION_BUS_ADDRESS": bus.address}
        self.log = (folder / "dunst.log").open("w")
        self.process = subprocess.Popen(
            [program, "-config", str(config)],
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self._wait_for_name(bus.address)

    def _wait_for_name(self, address: str) -> None:
        """Until this dunst owns org.freedesktop.Notifications (asked without activating it)."""
        conn = open_dbus_connection(bus=address)
        try:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                assert self.process.poll() is None, self.read_log()
                if conn.send_and_get_reply(message_bus.NameHasOwner(NAME), timeout=5).body[0]:
                    owner = conn.send_and_get_reply(message_bus.GetNameOwner(NAME), timeout=5)
                    pid = conn.send_and_get_reply(
                        message_bus.GetConnectionUnixProcessID(owner.body[0]), timeout=5
                    )
                    assert pid.body[0] == self.process.pid, "another server owns the name"
                    return
                time.sleep(0.05)  # dunst is starting: poll its name on the bus
            raise AssertionError(f"dunst did not come up on the bus:\n{self.read_log()}")
        finally:
            conn.close()

    def read_log(self) -> str:
        self.log.flush()
        return (self.folder / "dunst.log").read_text(encoding="utf-8", errors="replace")

    def ctl(self, *args: str) -> str:
        done = subprocess.run(
            ["dunstctl", *args], env=self.env, capture_output=True, text=True, timeout=15
        )
        assert done.returncode == 0, f"dunstctl {' '.join(args)}: {done.stderr}"
        return done.stdout

    def displayed(self) -> int:
        return int(self.ctl("count", "displayed").strip())

    def history(self) -> list[dict[str, Any]]:
        """dunst's history (what was closed), each entry as {field: value}."""
        data = json.loads(self.ctl("history"))["data"]
        entries = data[0] if data else []
        return [{key: value["data"] for key, value in entry.items()} for entry in entries]

    def choose(self, notification_id: int, key: str) -> None:
        """Pick one action of one notification in dunst's context menu."""
        (self.folder / "want").write_text(f"{notification_id},{key}", encoding="utf-8")
        self.ctl("context")

    def menu(self) -> list[str]:
        path = self.folder / "menu.txt"
        return path.read_text(encoding="utf-8").splitlines() if path.exists() else []

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.log.close()


@pytest.fixture
def bus() -> Iterator[PrivateBus]:
    private = PrivateBus()
    yield private
    private.close()


@pytest.fixture
def dunst(bus: PrivateBus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Dunst]:
    server = Dunst(bus, tmp_path / "dunst")
    # the app finds the notification server on "the session bus": this one
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", bus.address)
    yield server
    server.close()


def _started_shell(controller: AppController, qloop: QLoop, qtbot: QtBot) -> TrayApp:
    """The tray app as it starts: it finds dunst on the session bus by itself."""
    shell = TrayApp(controller)
    shell.notifier.coalescer.window_s = 0.1
    qloop.run(shell.start(demo=False))
    qtbot.waitUntil(lambda: shell.notifier.desktop is not None, timeout=10_000)
    desktop = shell.notifier.desktop
    assert desktop is not None and desktop.server.startswith("dunst")
    assert {"actions", "body-markup"} <= set(desktop.capabilities)
    return shell


def _escalation_of(controller: AppController, run_id: str) -> str:
    [view] = [v for v in controller.pending_escalations() if v.run_id == run_id]
    return view.escalation_id


def _notification_id(shell: TrayApp, test: Any) -> int:
    found = [nid for nid, n in shell.notifier.by_id.items() if test(n)]
    return found[0] if len(found) == 1 else 0


def _about(escalation_id: str) -> Any:
    return lambda n: escalation_id in n.escalation_ids


def _shown_ids(dunst: Dunst) -> set[int]:
    return {int(entry["id"]) for entry in dunst.history()}


def test_escalation_answer_and_open_dashboard_through_dunst(
    qtbot: QtBot,
    qloop: QLoop,
    controller: AppController,
    demo: DemoSession,
    dunst: Dunst,
    tmp_path: Path,
) -> None:
    shell = _started_shell(controller, qloop, qtbot)
    first = qloop.run(controller.start_run(demo.config()))
    qloop.wait_until(lambda: any(v.run_id == first for v in controller.pending_escalations()))
    first_question = _escalation_of(controller, first)
    qtbot.waitUntil(lambda: _notification_id(shell, _about(first_question)) > 0, timeout=10_000)
    first_id = _notification_id(shell, _about(first_question))
    qtbot.waitUntil(lambda: dunst.displayed() == 1, timeout=10_000)
    assert not shell.escalations.isVisible()

    # A click on the notification's body: dunst's default action for it.
    dunst.ctl("action", "0")
    qtbot.waitUntil(shell.escalations.isVisible, timeout=10_000)
    assert shell.escalations.current_id() == first_question
    shell.escalations.hide()

    # A second run asks too: its own notification beside the first.
    second = qloop.run(
        controller.start_run(demo.config(workspace=str(demo_workspace(tmp_path, "second"))))
    )
    qloop.wait_until(lambda: any(v.run_id == second for v in controller.pending_escalations()))
    second_question = _escalation_of(controller, second)
    qtbot.waitUntil(lambda: _notification_id(shell, _about(second_question)) > 0, timeout=10_000)
    second_id = _notification_id(shell, _about(second_question))
    qtbot.waitUntil(lambda: dunst.displayed() == 2, timeout=10_000)
    assert shell.escalations.current_id() == first_question  # the window, left as it was

    # "Answer" on the second notification opens the window on the second question.
    dunst.choose(second_id, "default")
    qtbot.waitUntil(
        lambda: shell.escalations.isVisible() and shell.escalations.current_id() == second_question,
        timeout=10_000,
    )
    menu = dunst.menu()
    assert f"#Answer (An agent needs you) [{second_id},default]" in menu
    assert f"#Answer (An agent needs you) [{second_id},answer]" in menu
    assert f"#Open dashboard (An agent needs you) [{second_id},dashboard]" in menu

    # "Open dashboard" on the first: the dashboard on that question's run.
    dunst.choose(first_id, "dashboard")
    qtbot.waitUntil(
        lambda: "dashboard" in shell.windows and shell.windows["dashboard"].isVisible(),
        timeout=10_000,
    )
    dash = shell.windows["dashboard"]
    assert isinstance(dash, DashboardWindow)
    qtbot.addWidget(dash)
    assert dash.selected_run == first

    # Answered in the window: its notification leaves the screen (into dunst's history).
    assert shell.escalations.current_id() == second_question
    shell.escalations.option_buttons[0].click()
    qtbot.waitUntil(lambda: second_id in _shown_ids(dunst), timeout=10_000)
    assert dunst.displayed() == 1
    [closed] = [e for e in dunst.history() if int(e["id"]) == second_id]
    assert closed["summary"] == "An agent needs you" and "stop words" in closed["body"]
    assert closed["timeout"] == 0  # persistent: it never expired by itself

    # "Stop all agents": the person did it, so no "Run stopped" follows; the first question's
    # notification goes too, its run no longer waits for anyone.
    controller.stop_all()
    qloop.wait_until(lambda: not controller.active_runs(), timeout=40)
    qtbot.waitUntil(lambda: first_id in _shown_ids(dunst), timeout=10_000)
    assert dunst.displayed() == 0
    assert shell.notifier.coalescer.pending == 0
    assert [n.title for n in shell.notifier.sent if n.target_kind == "run"] == []
    qloop.run(shell.notifier.aclose())


def test_review_and_show_through_dunst(
    qtbot: QtBot,
    qloop: QLoop,
    controller: AppController,
    demo: DemoSession,
    dunst: Dunst,
    tmp_path: Path,
) -> None:
    shell = _started_shell(controller, qloop, qtbot)
    run_id = qloop.run(controller.start_run(demo.config()))
    qloop.wait_until(lambda: any(v.run_id == run_id for v in controller.pending_escalations()))
    [view] = controller.pending_escalations()
    assert controller.answer_escalation(view.escalation_id, Answer(view.options[0].option_id, ""))

    def finished(n: Notification) -> bool:
        return n.target_kind == "run" and n.target_id == run_id and n.title == "Run finished"

    qtbot.waitUntil(lambda: _notification_id(shell, finished) > 0, timeout=40_000)
    finished_id = _notification_id(shell, finished)
    qtbot.waitUntil(lambda: dunst.displayed() == 1, timeout=10_000)  # the question's is gone

    # "Review": the dashboard's Changes view of that run, with its files.
    dunst.choose(finished_id, "review")
    qtbot.waitUntil(
        lambda: "dashboard" in shell.windows and shell.windows["dashboard"].isVisible(),
        timeout=10_000,
    )
    dash = shell.windows["dashboard"]
    assert isinstance(dash, DashboardWindow)
    qtbot.addWidget(dash)
    assert dash.selected_run == run_id and dash.tabs.currentWidget() is dash.changes
    qtbot.waitUntil(lambda: len(dash.changes.file_rows()) >= 3, timeout=20_000)
    menu = dunst.menu()
    assert f"#Review (Run finished) [{finished_id},default]" in menu
    assert f"#Review (Run finished) [{finished_id},review]" in menu
    assert f"#Open folder (Run finished) [{finished_id},folder]" in menu
    # done with it: dunst takes it off the screen (not resident, unlike a question)
    qtbot.waitUntil(lambda: finished_id in _shown_ids(dunst), timeout=10_000)

    # A failed run (another goal sent to the demo's scripted model): a click on its body ("Show")
    # opens its details in the dashboard.
    dash.hide()
    other = str(demo_workspace(tmp_path, "other"))
    failed_run = qloop.run(
        controller.start_run(demo.config(goal="Rename the package", workspace=other))
    )

    def failed(n: Notification) -> bool:
        return n.target_id == failed_run and n.title == "Run failed"

    qtbot.waitUntil(lambda: _notification_id(shell, failed) > 0, timeout=60_000)
    failed_id = _notification_id(shell, failed)
    qtbot.waitUntil(lambda: dunst.displayed() == 1, timeout=10_000)
    dunst.ctl("action", "0")
    qtbot.waitUntil(lambda: dash.isVisible() and dash.selected_run == failed_run, timeout=10_000)
    assert "plays only the demo" in shell.notifier.by_id[failed_id].message
    qloop.run(shell.notifier.aclose())
