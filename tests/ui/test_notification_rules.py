"""Which run endings reach the person: a finished, failed or stopped run does; an interrupted one
(the app quitting, a crash being noticed) does not. Decided by the notifier from the engine's
events, as the controller forwards them."""

from __future__ import annotations

import pytest

from agentray import events as ev
from agentray.ui.app import TrayApp
from agentray.ui.controller import AppController


def _finished(run_id: str, status: str) -> ev.RunFinished:
    return ev.RunFinished(run_id=run_id, status=status, summary=f"{run_id} {status}", cost_usd=0.0)


@pytest.mark.parametrize(
    ("status", "title", "level"),
    [
        ("succeeded", "Run finished", "info"),
        ("failed", "Run failed", "critical"),
        ("cancelled", "Run stopped", "info"),
    ],
)
def test_a_run_that_ends_notifies(
    offline_controller: AppController, status: str, title: str, level: str
) -> None:
    notifier = TrayApp(offline_controller).notifier
    notifier.coalescer.window_s = 60.0  # flushed by hand: no timing in the asserts
    offline_controller.event.emit(_finished("r-1", status))
    assert notifier.coalescer.pending == 1
    notifier.coalescer.flush()
    [sent] = notifier.sent
    assert (sent.title, sent.message, sent.level) == (title, f"r-1 {status}", level)
    assert (sent.target_kind, sent.target_id, sent.count) == ("run", "r-1", 1)


def test_an_interrupted_run_does_not_notify(offline_controller: AppController) -> None:
    notifier = TrayApp(offline_controller).notifier
    notifier.coalescer.window_s = 60.0
    offline_controller.event.emit(_finished("r-quit", "interrupted"))
    assert notifier.coalescer.pending == 0
    assert notifier.coalescer.flush() is None and notifier.sent == []
    # nor does it join a burst: the stopped run next to it is told alone
    offline_controller.event.emit(_finished("r-stop", "cancelled"))
    offline_controller.event.emit(_finished("r-quit-2", "interrupted"))
    assert notifier.coalescer.pending == 1
    notifier.coalescer.flush()
    [sent] = notifier.sent
    assert (sent.title, sent.target_id, sent.count) == ("Run stopped", "r-stop", 1)
