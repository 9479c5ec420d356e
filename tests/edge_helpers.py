"""Helpers for tests that hold a scripted turn until an engine event, never a sleep."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from agentray import events as ev
from agentray.escalation import Answer
from agentray.simulator import SimRequest
from conftest import SimEngine

__all__ = ["GATE_TIMEOUT_S", "Gate", "answer", "model_fails", "until"]

GATE_TIMEOUT_S = 15.0


class Gate:
    """Holds a scripted turn (on the simulator's server thread) until the test opens it."""

    def __init__(self) -> None:
        self._open = threading.Event()

    def open(self) -> None:
        self._open.set()

    def hold(self, turn: Any) -> Callable[[SimRequest], Any]:
        def held(req: SimRequest) -> Any:
            if not self._open.wait(GATE_TIMEOUT_S):
                raise AssertionError("the gate was never opened")
            return turn(req) if callable(turn) else turn

        return held


def model_fails(req: SimRequest) -> list[dict[str, Any]]:
    """The simulator answers a raising turn with a 500; after the client's retries the agent fails."""
    raise RuntimeError("scripted model failure")


def answer(se: SimEngine, raised: ev.EscalationRaised, label: str | None, text: str = "") -> bool:
    """Answer an escalation the way the tray does: the option (by its id) the person clicked."""
    option_id = None
    if label is not None:
        option_id = next(o.option_id for o in raised.choices if o.label == label)
    return se.engine.answer_escalation(raised.escalation_id, Answer(option_id, text))


async def until(predicate: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Wait on a condition the engine's events make true."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)
