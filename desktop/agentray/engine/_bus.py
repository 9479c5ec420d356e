"""A synchronous fan-out of engine events to listeners (CLI printer, tray bridge, journal)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

from agentray.events import Event

__all__ = ["EventBus"]

log = logging.getLogger(__name__)

Listener = Callable[[Event], None]


class EventBus:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Add a listener; returns the function that removes it."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    def publish(self, event: Event) -> None:
        # A broken listener must never break the engine: log and go on.
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("event listener failed on %s", type(event).__name__)

    async def stream(self) -> AsyncIterator[Event]:
        """Async iteration over future events (unbounded queue; for tests and simple consumers)."""
        queue: asyncio.Queue[Event] = asyncio.Queue()
        unsubscribe = self.subscribe(queue.put_nowait)
        try:
            while True:
                yield await queue.get()
        finally:
            unsubscribe()
