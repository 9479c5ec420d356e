"""FairQEventLoop: asyncio's scheduling (one ready queue, one timer heap) on qasync, and Qt keeps
its turn while the ready queue never empties."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from agentray.ui.fair_loop import FairQEventLoop


@pytest.fixture
def loop(qapp: QApplication) -> Iterator[FairQEventLoop]:
    loop = FairQEventLoop(qapp)
    asyncio.set_event_loop(loop)
    yield loop
    if not loop.is_closed():
        loop.close()
    asyncio.set_event_loop(None)


def test_call_soon_is_fifo_and_timers_fire_in_deadline_order(loop: FairQEventLoop) -> None:
    seen: list[str] = []

    async def main() -> None:
        loop.call_later(0.03, seen.append, "later 30 ms")
        loop.call_later(0.01, seen.append, "later 10 ms")
        cancelled = loop.call_later(0.02, seen.append, "cancelled")
        for i in range(5):
            loop.call_soon(seen.append, f"soon {i}")
        cancelled.cancel()
        await asyncio.sleep(0.06)

    loop.run_until_complete(main())
    assert seen == [*(f"soon {i}" for i in range(5)), "later 10 ms", "later 30 ms"]


def test_asyncio_works_on_it(loop: FairQEventLoop) -> None:
    async def slow() -> str:
        await asyncio.get_running_loop().create_future()  # never done: only the timeout ends it
        return "never"

    async def main() -> tuple[str, bool, list[int]]:
        in_thread = await asyncio.to_thread(lambda: threading.current_thread().name)
        timed_out = False
        try:
            await asyncio.wait_for(slow(), 0.02)
        except TimeoutError:
            timed_out = True
        results = await asyncio.gather(*(asyncio.sleep(0.001 * i, result=i) for i in range(20)))
        return in_thread, timed_out, list(results)

    name, timed_out, results = loop.run_until_complete(main())
    assert name != threading.current_thread().name
    assert timed_out
    assert results == list(range(20))


def test_qt_gets_its_turn_while_the_ready_queue_never_empties(
    loop: FairQEventLoop,
) -> None:
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(5)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    spins = [0]

    def busy(until: float) -> None:
        spins[0] += 1
        end = time.perf_counter() + 0.0005
        while time.perf_counter() < end:
            pass
        if time.perf_counter() < until:
            loop.call_soon(busy, until)

    async def main() -> None:
        timer.start()
        until = time.perf_counter() + 0.3
        for _ in range(100):  # a hundred callbacks always ready, each 0.5 ms of work
            loop.call_soon(busy, until)
        while time.perf_counter() < until:
            await asyncio.sleep(0.01)
        timer.stop()

    loop.run_until_complete(main())
    assert spins[0] > 100
    # A 5 ms timer over 300 ms ticks ~60 times when Qt gets a turn every few ms. qasync ran
    # every ready callback (50 ms of them) before Qt's next timer: 6 ticks at most.
    assert len(ticks) >= 12


def test_cancelled_timers_do_not_pile_up(loop: FairQEventLoop) -> None:
    async def main() -> int:
        for _ in range(1000):  # what each HTTP read's timeout does
            loop.call_later(600, lambda: None).cancel()
        await asyncio.sleep(0)
        return len(loop._heap)

    assert loop.run_until_complete(main()) < 200


def test_close_drops_what_is_pending(loop: FairQEventLoop) -> None:
    fired: list[int] = []
    loop.call_soon(fired.append, 1)
    loop.call_later(0.01, fired.append, 2)
    loop.close()
    QApplication.processEvents()
    assert fired == []
    # as qasync's: what arrives after close (a thread's late result) is dropped, not raised
    assert loop.call_soon(fired.append, 3).cancelled()
    assert loop.call_later(0.001, fired.append, 4).cancelled()
    QApplication.processEvents()
    assert fired == []
