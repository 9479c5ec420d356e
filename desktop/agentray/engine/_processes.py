"""Process trees recorded in the journal, so a run resumed after a crash (kill -9 of Agentray
itself) can find and kill what its agents left running."""

from __future__ import annotations

import psutil

from agentray.journal import Journal
from agentray.tools import ProcessRegistry

__all__ = ["JournaledProcesses", "reap_orphans"]


def _create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, OSError):
        return None


class JournaledProcesses(ProcessRegistry):
    def __init__(self, journal: Journal, run_id: str) -> None:
        super().__init__()
        self._journal = journal
        self._run_id = run_id

    def track(self, pid: int, owner: str) -> None:
        super().track(pid, owner)
        self._journal.add_event(
            self._run_id,
            "process_started",
            {"pid": pid, "owner": owner, "create_time": _create_time(pid)},
        )

    def untrack(self, pid: int) -> None:
        super().untrack(pid)
        self._journal.add_event(self._run_id, "process_ended", {"pid": pid})


async def reap_orphans(journal: Journal, run_id: str) -> int:
    """Kill the process trees a crashed run left behind; returns how many processes were killed."""
    started: dict[int, dict[str, object]] = {}
    for event in journal.list_events(run_id, limit=1_000_000):
        if event.get("type") == "process_started":
            started[int(event["pid"])] = event
        elif event.get("type") == "process_ended":
            started.pop(int(event["pid"]), None)
    registry = ProcessRegistry()
    for pid, event in started.items():
        recorded = event.get("create_time")
        live = _create_time(pid)
        # the same pid may belong to another process by now: only kill the one we started
        if live is not None and isinstance(recorded, int | float) and abs(live - recorded) < 1.0:
            registry.track(pid, "orphan")
    killed = await registry.kill_all()
    for pid in started:
        journal.add_event(run_id, "process_ended", {"pid": pid})
    return killed
