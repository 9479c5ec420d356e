"""The tray application: `agentray` and `agentray demo` (without --headless).

QApplication + a qasync loop (the Qt thread is the asyncio loop thread), one instance per user,
the tray, the controller, the windows (made when first opened), notifications.

The offline demo's scripted model serves the demo's own run only (``AppController.start_demo_run``):
"New run…", "Start again" and presets use the real model with the person's key, or say that no key
is set and offer to set one. Each start of the demo gets a fresh copy of the demo project.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, QUrl
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import QApplication, QMessageBox, QSystemTrayIcon, QWidget

from agentray.errors import AgentrayError, NoApiKeyError
from agentray.sandbox import detect_sandbox

from .controller import AppController
from .escalation_dialog import EscalationWindow
from .fair_loop import FairQEventLoop
from .icons import app_icon
from .notifications import Notifier
from .sandbox_prompt import NoSandboxPrompt, ask_run_unsandboxed
from .settings import APPLICATION, ORGANIZATION, AppSettings
from .single_instance import SingleInstance
from .tray import Tray
from .welcome import NoKeyPrompt, WelcomeDialog
from .wording import APP_NAME, plural, window_title

log = logging.getLogger(__name__)

__all__ = ["TrayApp", "run_tray"]


def _bring_forward(window: QWidget) -> None:
    window.show()
    window.raise_()
    window.activateWindow()


class TrayApp(QObject):
    """Owns the windows and wires tray, notifications and controller together (the tray's Shell)."""

    def __init__(
        self,
        controller: AppController,
        *,
        tray_available: bool = True,
        demo_dir: Path | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.controller = controller
        self.tray_available = tray_available
        self.demo_dir = demo_dir
        self.demo_session: Any = None
        self.demo_run_id: str | None = None  # the demo session's run, once started
        self.finished: asyncio.Future[int] | None = None
        self.windows: dict[str, QWidget] = {}
        self._tasks: set[asyncio.Future[Any]] = set()
        self.tray = Tray(controller, self, self)
        self.notifier = Notifier(self.tray.icon, controller, parent=self)
        self.notifier.open_escalation.connect(self.open_escalations)
        self.notifier.open_run.connect(self.open_dashboard)
        self.notifier.open_changes.connect(self.open_changes)
        self.notifier.open_folder.connect(self.open_folder)
        self.escalations = EscalationWindow(controller)
        self.windows["escalations"] = self.escalations
        # A new question brings the window up by itself only when it is already open; otherwise
        # the notification and the tray icon say it, and a click opens it.
        controller.escalations_changed.connect(self._on_escalations_changed)
        controller.confirm_unsandboxed = self.confirm_unsandboxed

    # ------------------------------------------------------------------ shell (tray actions)
    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def open_dashboard(self, run_id: str | None = None) -> None:
        from .dashboard import DashboardWindow

        window = self.windows.get("dashboard")
        if window is None:
            window = DashboardWindow(self.controller)
            self.windows["dashboard"] = window
            if not self.tray_available:  # the dashboard is the main window: closing it quits
                window.destroyed.connect(self.request_quit)
        if run_id:
            window.show_run(run_id)  # type: ignore[attr-defined]
        _bring_forward(window)

    def open_changes(self, run_id: str) -> None:
        """The dashboard on this run's Changes tab (review and undo)."""
        self.open_dashboard()
        window = self.windows["dashboard"]
        window.show_changes(run_id)  # type: ignore[attr-defined]

    def open_folder(self, run_id: str) -> None:
        """The run's project folder in the desktop's file manager."""
        summary = self.controller.run_summary(run_id)
        folder = Path(summary.workspace) if summary is not None else None
        if folder is None or not folder.is_dir():
            self.show_error("Cannot open the folder", f"The folder of run {run_id} is gone.")
            return
        if not QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder))):
            self.show_error("Cannot open the folder", f"No file manager opened {folder}.")

    def open_new_run(
        self, goal: str | None = None, workspace: str | None = None, preset: str | None = None
    ) -> None:
        if not self.controller.has_key():
            self.offer_key()
            return
        from .new_run_dialog import NewRunDialog

        dialog = NewRunDialog(self.controller)
        dialog.run_started.connect(self.open_dashboard)
        if goal or workspace or preset:
            dialog.prefill(goal=goal, workspace=workspace, preset=preset)
        self.windows["new_run"] = dialog
        _bring_forward(dialog)

    def open_settings(self) -> None:
        from .settings_dialog import SettingsDialog

        window = self.windows.get("settings")
        if window is None or not window.isVisible():
            window = SettingsDialog(self.controller)
            self.windows["settings"] = window
        _bring_forward(window)

    def open_escalations(self, escalation_id: str | None = None) -> None:
        self.escalations.show_escalation(escalation_id or None)

    def offer_key(self) -> None:
        """No API key for a run of the person's own: say so, and offer to set one (Settings)."""
        prompt = NoKeyPrompt()
        prompt.set_key_requested.connect(self.open_settings)
        self.windows["no_key"] = prompt
        _bring_forward(prompt)

    def open_welcome(self) -> None:
        dialog = WelcomeDialog()
        dialog.set_key_requested.connect(self.open_settings)
        dialog.demo_requested.connect(lambda: self._spawn(self.start_demo()))
        self.windows["welcome"] = dialog
        _bring_forward(dialog)

    def show_error(self, title: str, message: str) -> None:
        box = QMessageBox(QMessageBox.Icon.Warning, window_title(title), message)
        box.setWindowIcon(app_icon())
        self.windows["error"] = box
        box.show()  # never exec(): we may be inside a coroutine

    async def confirm_unsandboxed(self, problem: str) -> bool:
        """Ask whether the agents' commands may run without a sandbox (none exists here)."""
        prompt = NoSandboxPrompt(problem)
        self.windows["no_sandbox"] = prompt
        return await ask_run_unsandboxed(prompt)

    def request_quit(self) -> None:
        self._spawn(self.quit())

    def _on_escalations_changed(self) -> None:
        if self.escalations.isVisible() and self.controller.pending_escalations():
            self.escalations.raise_()

    def on_message(self, message: str) -> None:
        """From a second `agentray` launch: "show" or "demo"."""
        if message == "demo" and self.demo_session is None and not self.controller.active_runs():
            self._spawn(self.start_demo())
        else:
            self.open_dashboard()

    # ------------------------------------------------------------------ life cycle
    async def start(self, *, demo: bool) -> None:
        if self.tray_available:
            self.tray.icon.show()
        # Action buttons ("Review") where a notification server is on the session bus; asked in
        # the background (a bus that does not answer must not hold the start up).
        self._spawn(self.notifier.use_desktop_notifications())
        self._spawn(self._prune_old_runs())
        if demo:
            await self.start_demo()
            return
        if not self.controller.has_key():
            self.open_welcome()
        elif not self.tray_available:
            self.open_dashboard()
        if self.controller.pending_escalations():  # questions left from before a restart
            self.open_escalations()

    async def _prune_old_runs(self) -> None:
        """Forget runs older than the settings keep, and let git drop their snapshots: in the
        background at start-up, before any run of this session (never on a run's hot path)."""
        from agentray.checkpoints import prune_runs
        from agentray.journal import Journal

        path, days = self.controller.journal.path, self.controller.settings.keep_days

        def prune() -> list[str]:
            with Journal(path) as journal:  # its own connection: this runs in a worker thread
                return prune_runs(journal, days)

        try:
            gone = await asyncio.to_thread(prune)
        except Exception:
            log.exception("pruning old runs failed")
            return
        if gone:
            log.info("forgot %s older than %s", plural(len(gone), "run"), plural(days, "day"))

    async def start_demo(self) -> str | None:
        """Start the offline demo's run on a fresh copy of its project (its scripted model serves
        that run only); while it runs, asking again shows it."""
        from agentray.demo import DemoSession

        if self.demo_run_id is not None and self.controller.is_live(self.demo_run_id):
            self.open_dashboard(self.demo_run_id)
            return self.demo_run_id
        try:
            if self.demo_session is not None and self.demo_run_id is not None:
                # its project is fixed already: the script would not fit it again
                self.demo_session.close()
                self.demo_session = None
            if self.demo_session is None:
                first = self.demo_run_id is None  # --dir is for the first demo only
                self.demo_session = DemoSession.start(self.demo_dir if first else None)
            config = self.demo_session.config()
            if not detect_sandbox().available:
                # The demo's commands are its own script, not a model's: no question (as the CLI)
                config = config.replace(sandbox=False)
            run_id = await self.controller.start_demo_run(self.demo_session, config)
        except AgentrayError as error:
            self.show_error("Cannot start the demo", str(error))
            return None
        self.demo_run_id = run_id
        self.open_dashboard(run_id)
        return run_id

    async def quit(self, code: int = 0) -> None:
        """Stop runs cleanly (they stay resumable), close the demo, end the loop."""
        with contextlib.suppress(Exception):
            await self.controller.shutdown()
        with contextlib.suppress(Exception):
            await self.notifier.aclose()
        if self.demo_session is not None:
            with contextlib.suppress(Exception):
                self.demo_session.close()
            self.demo_session = None
        self.tray.icon.hide()
        for window in self.windows.values():
            window.close()
        if self.finished is not None and not self.finished.done():
            self.finished.set_result(code)


def run_tray(
    *, demo: bool = False, demo_dir: Path | None = None, base_url: str | None = None
) -> int:
    """Run the tray until Quit; 0 on a clean quit (also when another instance was told to show).
    ``base_url``: the model's address for real runs (None: the SDK's default, which honours
    ANTHROPIC_BASE_URL)."""

    existing = QApplication.instance()
    app = existing if isinstance(existing, QApplication) else QApplication(sys.argv[:1])
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName(APP_NAME)
    app.setWindowIcon(app_icon())
    app.setQuitOnLastWindowClosed(False)

    instance = SingleInstance()
    if not instance.acquire("demo" if demo else "show"):
        print("Agentray is already running; it has been brought forward.", file=sys.stderr)
        return 0

    tray_available = QSystemTrayIcon.isSystemTrayAvailable()
    if not tray_available:
        print(
            "No system tray is available here; opening the dashboard as the main window.",
            file=sys.stderr,
        )

    loop = FairQEventLoop(app)  # the engine and the UI take turns on one loop (fair_loop.py)
    asyncio.set_event_loop(loop)
    controller = AppController(AppSettings(), base_url=base_url)
    shell = TrayApp(controller, tray_available=tray_available, demo_dir=demo_dir)
    instance.message_received.connect(shell.on_message)
    shell.finished = loop.create_future()

    # Python signal handlers only run when the interpreter gets control: wake it regularly.
    def on_signal(signum: int, _frame: Any) -> None:
        loop.call_soon_threadsafe(shell.request_quit)

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    ticker = QTimer()
    ticker.timeout.connect(lambda: None)
    ticker.start(250)

    async def main() -> int:
        try:
            await shell.start(demo=demo)
        except NoApiKeyError:
            shell.open_welcome()
        # what start-up made lives as long as the app: keep it out of every garbage collection
        # (a full collection over it was the UI's worst pause under load)
        gc.freeze()
        assert shell.finished is not None
        return await shell.finished

    try:
        with loop:
            code = loop.run_until_complete(main())
    finally:
        ticker.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        instance.close()
    return int(code)
