"""Fixtures for the tray tests: offscreen Qt, a qasync loop, isolated settings and journal,
and the offline demo (real engine on the Messages-API simulator)."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import asyncio
import gc
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from changes_fixtures import MadeRun, make_run
from PySide6.QtCore import QEventLoop, QSettings
from PySide6.QtWidgets import QApplication

from agentray.demo import DemoSession, create_demo_project
from agentray.journal import Journal
from agentray.ui.controller import AppController
from agentray.ui.fair_loop import FairQEventLoop
from agentray.ui.settings import AppSettings

T = TypeVar("T")


@pytest.fixture(autouse=True)
def _collect_widgets() -> Iterator[None]:
    """Free each test's Qt wrappers while its objects still exist: a collection that happens
    to run in a later test, after the C++ side is gone, can crash PySide."""
    yield
    gc.collect()


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> None:
    """Nothing touches the user's journal, settings or keyring."""
    monkeypatch.setenv("AGENTRAY_JOURNAL", str(tmp_path / "j.sqlite3"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    # keyring picks its backend once per process: an earlier test may have loaded the real one.
    # What was there is read before the variable below is set, else the first test here would
    # make the fail backend "the previous one" and leave it to every later test (the Secret
    # Service test among them).
    import keyring
    from keyring.backends import fail

    previous = keyring.get_keyring()
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    keyring.set_keyring(fail.Keyring())
    request.addfinalizer(lambda: keyring.set_keyring(previous))
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    QSettings.setPath(
        QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "qsettings")
    )


class QLoop:
    """A qasync loop on the test QApplication, marked running for the whole test.

    qasync's run_until_complete processes Qt events once more after it has unset the running
    loop, and pytest-qt processes events between test phases: tasks stepped then crash with
    "no running event loop". So the loop is built as already running, and ``run`` spins a nested
    QEventLoop until the coroutine is done (coroutines run while Qt events are processed).
    """

    def __init__(self, app: QApplication) -> None:
        self.loop = FairQEventLoop(app, already_running=True)  # the loop the tray runs on
        asyncio.set_event_loop(self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        future = asyncio.ensure_future(asyncio.wait_for(coro, timeout), loop=self.loop)
        spinner = QEventLoop()
        future.add_done_callback(lambda _: spinner.quit())
        if not future.done():
            spinner.exec()
        return future.result()

    def wait_until(self, predicate: Any, timeout: float = 20.0) -> None:
        async def poll() -> None:
            while not predicate():
                await asyncio.sleep(0.02)

        self.run(poll(), timeout)

    def close(self) -> None:
        pending = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            self.run(asyncio.wait(pending, timeout=5))
        # not loop.stop(): it calls QCoreApplication.exit(), which makes every later
        # QEventLoop.exec() return at once; mark it stopped by hand instead.
        self.loop._QEventLoop__is_running = False  # type: ignore[attr-defined]
        asyncio.events._set_running_loop(None)
        asyncio.set_event_loop(None)
        self.loop.close()


@pytest.fixture
def qloop(qapp: QApplication) -> Iterator[QLoop]:
    qloop = QLoop(qapp)
    yield qloop
    qloop.close()


@pytest.fixture
def settings(tmp_path: Path) -> AppSettings:
    return AppSettings(tmp_path / "settings.ini")


@pytest.fixture
def demo(tmp_path: Path) -> Iterator[DemoSession]:
    session = DemoSession.start(tmp_path / "demo", latency_s=0.01)
    yield session
    session.close()


@pytest.fixture
def controller(
    qloop: QLoop, settings: AppSettings, tmp_path: Path, demo: DemoSession
) -> Iterator[AppController]:
    """A controller whose engine runs on the demo simulator."""
    ctl = AppController(settings, Journal(tmp_path / "j.sqlite3"))
    ctl.use_demo(demo)
    yield ctl
    qloop.run(ctl.shutdown())


@pytest.fixture
def offline_controller(
    qloop: QLoop, settings: AppSettings, tmp_path: Path
) -> Iterator[AppController]:
    """A controller with no engine: runs are in the journal only, as after a restart."""
    ctl = AppController(settings, Journal(tmp_path / "j.sqlite3"))
    yield ctl
    qloop.run(ctl.shutdown())


@pytest.fixture
def made_run(offline_controller: AppController, tmp_path: Path) -> MadeRun:
    """A finished run of two agents, made by hand with real files and real git."""
    return make_run(offline_controller.journal, tmp_path)


def demo_workspace(tmp_path: Path, name: str) -> Path:
    """Another copy of the demo project, for a second run on the same simulator."""
    return create_demo_project(tmp_path / name)
