"""The system guard: new agents wait while the machine is saturated (CPU or memory).

psutil is sampled once a second by one background task per process while anyone listens;
``wait_until_clear`` is what an agent awaits before it starts. ``AGENTRAY_GUARD_MAX_CPU``
(percent) moves the CPU threshold; above 100 the CPU never counts as saturated (memory still
does), which is what a shared build or test machine wants.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass

import psutil

__all__ = ["CPU_ENV_VAR", "GuardReading", "SystemGuard"]

log = logging.getLogger(__name__)

CPU_ENV_VAR = "AGENTRAY_GUARD_MAX_CPU"
DEFAULT_MAX_CPU_PERCENT = 95.0


def _max_cpu_from_env() -> float:
    value = os.environ.get(CPU_ENV_VAR, "").strip()
    if not value:
        return DEFAULT_MAX_CPU_PERCENT
    try:
        return float(value)
    except ValueError:
        log.warning(
            "%s=%r is not a number; using %.0f%%", CPU_ENV_VAR, value, DEFAULT_MAX_CPU_PERCENT
        )
        return DEFAULT_MAX_CPU_PERCENT


@dataclass(frozen=True)
class GuardReading:
    cpu_percent: float
    memory_available_percent: float
    saturated: bool
    reason: str


class SystemGuard:
    def __init__(
        self,
        *,
        max_cpu_percent: float | None = None,  # None: AGENTRAY_GUARD_MAX_CPU, else 95
        min_memory_available_percent: float = 8.0,
        sustained_samples: int = 3,
        interval_s: float = 1.0,
        on_change: Callable[[GuardReading], None] | None = None,
    ) -> None:
        self.max_cpu_percent = _max_cpu_from_env() if max_cpu_percent is None else max_cpu_percent
        self.min_memory_available_percent = min_memory_available_percent
        self.sustained_samples = max(1, sustained_samples)
        self.interval_s = interval_s
        self.on_change = on_change
        self._hot_cpu_samples = 0
        self._clear = asyncio.Event()
        self._sampler: asyncio.Task[None] | None = None
        self.reading = GuardReading(0.0, 100.0, False, "")
        psutil.cpu_percent(interval=None)  # prime: the first call always returns 0.0
        self._sample()

    @property
    def saturated(self) -> bool:
        return self.reading.saturated

    def _sample(self) -> GuardReading:
        cpu = psutil.cpu_percent(interval=None)
        memory = psutil.virtual_memory()
        available = 100.0 * memory.available / memory.total if memory.total else 100.0
        self._hot_cpu_samples = self._hot_cpu_samples + 1 if cpu >= self.max_cpu_percent else 0
        reasons = []
        if available < self.min_memory_available_percent:
            reasons.append(
                f"memory available {available:.0f}% < {self.min_memory_available_percent:.0f}%"
            )
        if self._hot_cpu_samples >= self.sustained_samples:
            reasons.append(f"CPU {cpu:.0f}% for {self._hot_cpu_samples} s")
        reading = GuardReading(cpu, available, bool(reasons), "; ".join(reasons))
        changed = reading.saturated != self.reading.saturated
        self.reading = reading
        if reading.saturated:
            self._clear.clear()
        else:
            self._clear.set()
        if changed and self.on_change is not None:
            self.on_change(reading)
        return reading

    def start(self) -> None:
        if self._sampler is None or self._sampler.done():
            self._sampler = asyncio.get_running_loop().create_task(self._run(), name="system-guard")

    async def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
            self._sampler = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            self._sample()

    async def wait_until_clear(self) -> None:
        """Return at once when the machine has room, else when it has again."""
        if not self.reading.saturated:
            return
        self.start()
        await self._clear.wait()
