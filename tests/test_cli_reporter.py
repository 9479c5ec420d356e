"""The CLI's output thread in-process: a full pipe costs events (counted), never the caller's
time; a closed one is quiet; an answered escalation reads once."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator

import pytest

from agentray import events as ev
from agentray._reporter import FdStream, Reporter, answer_text, plural


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    read_end, write_end = os.pipe()
    yield read_end, write_end
    for fd in (read_end, write_end):
        try:
            os.close(fd)
        except OSError:
            pass


def _notice(i: int) -> ev.Notice:
    return ev.Notice(run_id="r1", level="warning", message=f"event {i} " + "x" * 200)


def _call_all(reporter: Reporter, count: int) -> bool:
    """Feed ``count`` events from another thread; True if all calls returned within 30 s."""

    def feed() -> None:
        for i in range(count):
            reporter(_notice(i))

    worker = threading.Thread(target=feed, daemon=True)
    worker.start()
    worker.join(30)
    return not worker.is_alive()


def test_a_pipe_nobody_reads_drops_and_counts_events_without_blocking(
    pipe: tuple[int, int],
) -> None:
    read_end, write_end = pipe
    reporter = Reporter(json_lines=True, stream=FdStream(write_end), queue_size=100)
    reporter.start()
    count = 5000  # about 1.2 MB: far more than the pipe and the queue hold
    assert _call_all(reporter, count), "a call blocked on the full pipe"
    reporter.stop(grace_s=0.3)
    assert not reporter.reader_gone
    assert 0 < reporter.dropped < count
    assert reporter.unwritten_message() == (
        f"agentray: {reporter.dropped} events were not written: the output was not being read"
    )
    os.set_blocking(read_end, False)
    data = b""
    while True:
        try:
            chunk = os.read(read_end, 1 << 16)
        except BlockingIOError:
            break
        if not chunk:
            break
        data += chunk
    whole = data.split(b"\n")[:-1]
    assert whole and all(json.loads(line)["type"] == "notice" for line in whole)
    # no event is lost silently: what did not reach the pipe whole is counted (a line cut by the
    # full pipe may be both; a batch stuck in flight is counted though the pipe got part of it)
    assert reporter.dropped >= count - len(whole) - 1


def test_a_closed_pipe_is_quiet(pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe
    os.close(read_end)  # `| head` has gone
    reporter = Reporter(json_lines=True, stream=FdStream(write_end))
    reporter.start()
    assert _call_all(reporter, 50)
    reporter.text("review: never printed in JSON mode\n")
    reporter.stop(grace_s=5)
    assert reporter.reader_gone and reporter.dropped == 50
    assert reporter.unwritten_message() is None


def test_human_lines_and_the_review_hint_in_order(pipe: tuple[int, int]) -> None:
    read_end, write_end = pipe
    reporter = Reporter(stream=FdStream(write_end))
    reporter.start()
    reporter(
        ev.AgentSpawned(
            run_id="r1",
            agent_id="a001",
            parent_id=None,
            role="orchestrator",
            title="Orchestrator",
            depth=0,
        )
    )
    reporter(
        ev.AgentStatusChanged(run_id="r1", agent_id="a001", status="running", previous="queued")
    )
    reporter.text("review: `agentray diff r1 --stat`\n")
    reporter.stop()
    os.close(write_end)
    out = os.read(read_end, 1 << 16).decode()
    lines = out.splitlines()
    assert lines[0].endswith("a001 orchestrator spawned: Orchestrator"), out
    assert lines[1].endswith("a001 orchestrator running   Orchestrator"), out
    assert lines[2] == "review: `agentray diff r1 --stat`"
    assert reporter.dropped == 0 and reporter.unwritten_message() is None


def _answered(answer: str, choice: str | None) -> ev.EscalationAnswered:
    return ev.EscalationAnswered(
        run_id="r1",
        escalation_id="r1.e1",
        agent_id="a001",
        answer=answer,
        choice=choice,
        answered_by="human",
    )


@pytest.mark.parametrize(
    ("answer", "choice", "shown"),
    [
        ("Minimal: a, an, the", "Minimal: a, an, the", "Minimal: a, an, the"),
        ("", "Minimal: a, an, the", "Minimal: a, an, the"),
        ("and keep 'of'", "Minimal: a, an, the", "Minimal: a, an, the — and keep 'of'"),
        ("use the list in docs/", None, "use the list in docs/"),
        ("", None, "-"),
    ],
)
def test_an_answer_reads_once(answer: str, choice: str | None, shown: str) -> None:
    assert answer_text(_answered(answer, choice)) == shown


def test_plural() -> None:
    assert [plural(n, "agent") for n in (0, 1, 2)] == ["0 agents", "1 agent", "2 agents"]
    assert (
        plural(1, "entry", "entries") == "1 entry" and plural(3, "entry", "entries") == "3 entries"
    )
