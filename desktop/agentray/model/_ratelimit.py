"""A process-wide hold-off shared by every model call, so a 429 pauses everyone instead of a stampede."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

__all__ = ["RateLimitGate", "default_gate"]


class RateLimitGate:
    """Every attempt awaits :meth:`wait` before sending; a 429 calls :meth:`hold_off`.

    Holds only plain floats (no asyncio primitives), so one gate serves any number of event loops.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._until = 0.0
        self.holds = 0  # how many times hold_off extended the hold (for logs and tests)
        self.waits = 0  # how many wait() calls actually had to sleep

    @property
    def held_until(self) -> float:
        """The clock time (``time.monotonic`` by default) before which no call is sent."""
        return self._until

    @property
    def remaining_s(self) -> float:
        return max(0.0, self._until - self._clock())

    def hold_off(self, seconds: float) -> None:
        """Hold every call for ``seconds`` from now; extends, never shortens, a hold already set."""
        until = self._clock() + max(0.0, seconds)
        if until > self._until:
            self._until = until
            self.holds += 1

    async def wait(self) -> None:
        """Return at once if no hold is set, else sleep until it ends (and any extension made meanwhile)."""
        slept = False
        while True:
            remaining = self._until - self._clock()
            if remaining <= 0:
                break
            slept = True
            await asyncio.sleep(remaining)
        if slept:
            self.waits += 1


_DEFAULT_GATE = RateLimitGate()


def default_gate() -> RateLimitGate:
    """The gate shared by all clients of this process unless one is passed explicitly."""
    return _DEFAULT_GATE
