"""The tray's asyncio loop: qasync's, scheduling the way asyncio's own loop does.

qasync turns every ``call_soon`` and every ``call_later`` into a Qt timer of its own. A cancelled
one stays registered with Qt until it would have fired (each HTTP read of the model client
leaves a 600 s timeout behind: thousands after a minute of busy agents), and Qt fires every due
timer in one pass, so a pass runs whatever the engine had ready before Qt paints or delivers a
click. With 40 busy agents that made the UI wait 50-80 ms at the 99th percentile.

:class:`FairQEventLoop` keeps ready callbacks in one queue and timers in one heap, as asyncio
does, each behind a single Qt timer. A pass runs ready callbacks, in order (those they make
ready too), for at most :data:`SLICE_S`, and then lets Qt have its turn: the engine and the UI
still share one thread and one loop (PRODUCT.md's architecture rule), and neither starves the
other. ``scripts/bench_ui.py`` measures both loops.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import math
import time
from collections.abc import Callable
from contextvars import Context
from typing import Any

import qasync
from PySide6.QtCore import Qt, QTimer

__all__ = ["SLICE_S", "FairQEventLoop"]

SLICE_S = 0.004  # ready callbacks run at most this long before Qt gets its turn
# Cancelled timers are dropped from the heap when they reach its top, or all at once when they
# are most of it (asyncio's own rule).
_MIN_CANCELLED_TO_COMPACT = 100


class FairQEventLoop(qasync.QEventLoop):  # type: ignore[misc]
    """A drop-in for ``qasync.QEventLoop(app)``; see the module docstring."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._ready: collections.deque[asyncio.Handle] = collections.deque()
        self._heap: list[asyncio.TimerHandle] = []
        self._cancelled_in_heap = 0
        self._kick = QTimer()  # zero-delay: run the ready queue in the next pass
        self._kick.setSingleShot(True)
        self._kick.timeout.connect(self._run_ready)
        self._wake = QTimer()  # the earliest timer's deadline
        self._wake.setSingleShot(True)
        self._wake.setTimerType(Qt.TimerType.PreciseTimer)
        self._wake.timeout.connect(self._run_due)

    # -- scheduling ------------------------------------------------------------------------------
    def call_soon(
        self, callback: Callable[..., object], *args: Any, context: Context | None = None
    ) -> asyncio.Handle:
        handle = asyncio.Handle(callback, args, self, context=context)
        if self.is_closed():  # as qasync: a late callback (a thread's result) is dropped
            handle.cancel()
            return handle
        self._ready.append(handle)
        if not self._kick.isActive():
            self._kick.start(0)
        return handle

    def call_later(
        self,
        delay: float,
        callback: Callable[..., object],
        *args: Any,
        context: Context | None = None,
    ) -> asyncio.TimerHandle:
        return self.call_at(self.time() + delay, callback, *args, context=context)

    def call_at(
        self,
        when: float,
        callback: Callable[..., object],
        *args: Any,
        context: Context | None = None,
    ) -> asyncio.TimerHandle:
        handle = asyncio.TimerHandle(when, callback, args, self, context=context)
        if self.is_closed():
            handle.cancel()
            return handle
        heapq.heappush(self._heap, handle)
        handle._scheduled = True  # type: ignore[attr-defined]  # asyncio's own flag
        self._arm()
        return handle

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        # asyncio calls this when a scheduled TimerHandle is cancelled
        self._cancelled_in_heap += 1
        if (
            self._cancelled_in_heap > _MIN_CANCELLED_TO_COMPACT
            and self._cancelled_in_heap * 2 > len(self._heap)
        ):
            kept = []
            for timer in self._heap:
                if timer.cancelled():
                    timer._scheduled = False  # type: ignore[attr-defined]
                else:
                    kept.append(timer)
            heapq.heapify(kept)
            self._heap = kept
            self._cancelled_in_heap = 0

    # -- running ---------------------------------------------------------------------------------
    def _arm(self) -> None:
        """Point the wake timer at the earliest live deadline (or stop it)."""
        heap = self._heap
        while heap and heap[0].cancelled():
            heapq.heappop(heap)._scheduled = False  # type: ignore[attr-defined]
            self._cancelled_in_heap = max(0, self._cancelled_in_heap - 1)
        if not heap:
            self._wake.stop()
            return
        ms = max(0, math.ceil((heap[0].when() - self.time()) * 1000))
        if not self._wake.isActive() or self._wake.remainingTime() > ms:
            self._wake.start(ms)

    def _run_due(self) -> None:
        # Qt's timers have millisecond resolution: what is due within one is due now
        horizon = self.time() + 0.001
        heap = self._heap
        while heap and heap[0].when() <= horizon:
            handle = heapq.heappop(heap)
            handle._scheduled = False  # type: ignore[attr-defined]
            if handle.cancelled():
                self._cancelled_in_heap = max(0, self._cancelled_in_heap - 1)
            else:
                self._ready.append(handle)
        self._arm()
        if self._ready and not self._kick.isActive():
            self._kick.start(0)

    def _run_ready(self) -> None:
        # Callbacks made ready meanwhile run in the same pass: fewer passes through Qt, and the
        # slice still bounds how long Qt waits.
        deadline = time.perf_counter() + SLICE_S
        ready = self._ready
        while ready:
            handle = ready.popleft()
            if not handle.cancelled():
                handle._run()
            if time.perf_counter() >= deadline:
                break
        if ready and not self._kick.isActive():
            self._kick.start(0)

    def close(self) -> None:
        self._kick.stop()
        self._wake.stop()
        self._ready.clear()
        for handle in self._heap:
            handle._scheduled = False  # type: ignore[attr-defined]
        self._heap.clear()
        super().close()
