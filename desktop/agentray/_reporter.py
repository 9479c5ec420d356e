"""Headless output of a run: a line per agent state change and a status footer, or JSON lines.

The engine's listeners run on its asyncio loop, so nothing here may wait on the terminal or a
pipe there. :class:`Reporter` only puts events into a bounded queue; its own writer thread turns
them into output. When the reader stops reading (a full pipe) the queue fills and further events
are dropped and counted, never holding up an agent; when it has gone (``| head -1``) the rest is
dropped quietly.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any, TypeVar

from rich.console import Console
from rich.live import Live
from rich.text import Text

from agentray import events as ev

__all__ = ["DRAIN_GRACE_S", "QUEUE_SIZE", "FdStream", "Reporter", "plural"]

log = logging.getLogger("agentray.console")
_T = TypeVar("_T")

QUEUE_SIZE = 2048  # events waiting for the writer; beyond this they are dropped (and counted)
DRAIN_GRACE_S = 5.0  # at the end, how long the writer may go without writing before it is given up
PAUSE_WAIT_S = 2.0  # how long a prompt waits for the footer to get out of its way

STATUS_STYLE = {
    "queued": "dim",
    "running": "cyan",
    "waiting": "blue",
    "blocked": "yellow",
    "done": "green",
    "failed": "red",
    "cancelled": "magenta",
}


def plural(count: int, word: str, words: str | None = None) -> str:
    """``1 agent``, ``2 agents`` (``words`` for irregular plurals)."""
    return f"{count} {word if count == 1 else (words or word + 's')}"


class FdStream:
    """A text stream straight onto a file descriptor (``os.write``, no buffer).

    A write blocked on a full pipe holds none of ``sys.stdout``'s locks, so the interpreter can
    still exit while a writer thread waits on a reader that never reads."""

    def __init__(self, fd: int, encoding: str = "utf-8") -> None:
        self.fd = fd
        self.encoding = encoding

    @classmethod
    def stdout(cls) -> FdStream:
        with contextlib.suppress(OSError, ValueError):
            sys.stdout.flush()  # what was printed before comes first
        return cls(sys.stdout.fileno(), getattr(sys.stdout, "encoding", None) or "utf-8")

    def write(self, text: str) -> int:
        view = memoryview(text.encode(self.encoding, "replace"))
        while view:
            view = view[os.write(self.fd, view) :]
        return len(text)

    def flush(self) -> None:
        pass

    def fileno(self) -> int:
        return self.fd

    def isatty(self) -> bool:
        return os.isatty(self.fd)


class _Console(Console):
    def on_broken_pipe(self) -> None:
        # rich's default redirects stdout to /dev/null and raises SystemExit; the writer thread
        # only needs to know the reader is gone
        self.quiet = True
        raise BrokenPipeError(errno.EPIPE, "the reader has gone")


@dataclass(frozen=True)
class _Line:
    """A line of text that is not an event (e.g. the review hint at the end)."""

    text: str


@dataclass
class _Control:
    """Stop (``pause``) or restart the footer, done in the writer thread, in order."""

    pause: bool
    done: threading.Event = field(default_factory=threading.Event)


_Item = ev.Event | _Line | _Control


class Reporter:
    """Listens to the engine's events and prints them (never touches the engine).

    Call :meth:`start` before the run and :meth:`stop` after it; :attr:`dropped` then says how
    many events were not written, :attr:`reader_gone` whether the output was closed."""

    def __init__(
        self,
        *,
        json_lines: bool = False,
        stream: IO[str] | FdStream | None = None,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self.json_lines = json_lines
        self.stream: IO[str] | FdStream = stream if stream is not None else FdStream.stdout()
        self.console = _Console(file=self.stream, highlight=False, soft_wrap=True)  # type: ignore[arg-type]
        self.live: Live | None = None
        self.titles: dict[str, str] = {}
        self.roles: dict[str, str] = {}
        self.status: dict[str, str] = {}
        self.tokens = 0
        self.cost = 0.0
        self.started = time.monotonic()
        self.reader_gone = False
        self._queue: queue.Queue[_Item] = queue.Queue(queue_size)
        self._urgent: deque[_Control] = deque()  # controls that found the queue full
        self._thread: threading.Thread | None = None
        self._closing = threading.Event()
        self._abandoned = False
        self._in_flight = 0
        self._written_at = time.monotonic()
        self._dropped_full = 0  # counted on the loop's thread
        self._dropped_writer = 0  # counted on the writer's thread
        self._dropped_left = 0  # still queued when the writer was given up
        self._final_dropped: int | None = None

    # ---------------------------------------------------------------- lifecycle
    def know(self, agents: Iterable[Any]) -> None:
        """Agents that exist before the events start (a resumed run's), with role, title and
        status: their lines then read like those of a fresh run. Call before :meth:`start`."""
        for agent in agents:
            self.titles[agent.agent_id] = agent.title
            self.roles[agent.agent_id] = agent.role
            self.status[agent.agent_id] = agent.status

    def start(self) -> None:
        if self._thread is not None:
            return
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._write_all, name="agentray-output", daemon=True)
        self._thread.start()

    def stop(self, grace_s: float = DRAIN_GRACE_S) -> None:
        """Write what is queued, as long as the reader keeps reading; give up once nothing could
        be written for ``grace_s`` (what is left counts as dropped). Blocks: call it off the loop
        (``asyncio.to_thread``)."""
        thread = self._thread
        if thread is None or self._closing.is_set():
            return
        self._closing.set()
        closed_at = time.monotonic()
        while thread.is_alive():
            thread.join(0.05)
            if time.monotonic() - max(self._written_at, closed_at) > grace_s:
                self._abandoned = True
                self._dropped_left = self._in_flight
                break
        self._dropped_left += self._queue.qsize()  # given up, or left by a failed writer
        self._final_dropped = self.dropped  # a writer that wakes up later changes nothing

    @property
    def dropped(self) -> int:
        if self._final_dropped is not None:
            return self._final_dropped
        return self._dropped_full + self._dropped_writer + self._dropped_left

    def unwritten_message(self) -> str | None:
        """One line for stderr when events were lost to a reader that did not read; None when all
        were written or the reader closed the output on purpose (``| head``)."""
        if not self.dropped or self.reader_gone:
            return None
        lost = f"{self.dropped} events were" if self.dropped != 1 else "1 event was"
        return f"agentray: {lost} not written: the output was not being read"

    def pause(self) -> None:
        """Free the terminal for a prompt (waits, briefly, for the footer to go)."""
        if not self._footer_wanted():
            return
        control = _Control(pause=True)
        self._put_control(control)
        control.done.wait(PAUSE_WAIT_S)

    def resume(self) -> None:
        if self._footer_wanted():
            self._put_control(_Control(pause=False))

    # ---------------------------------------------------------------- the loop's side
    def __call__(self, event: ev.Event) -> None:
        self._put(event)

    def text(self, line: str) -> None:
        """Print ``line`` (no stamp) after the events before it."""
        self._put(_Line(line))

    def _put(self, item: _Item) -> None:
        if self._closing.is_set():
            return
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._dropped_full += 1

    def _put_control(self, control: _Control) -> None:
        try:
            self._queue.put_nowait(control)
        except queue.Full:
            self._urgent.append(control)

    def _footer_wanted(self) -> bool:
        return not self.json_lines and self.console.is_terminal

    # ---------------------------------------------------------------- the writer's side
    def _write_all(self) -> None:
        try:
            if self._footer_wanted():
                self.live = Live(
                    self._footer(), console=self.console, refresh_per_second=4, transient=True
                )
                self.live.start()
            while True:
                while self._urgent:
                    self._control(self._urgent.popleft())
                try:
                    first = self._queue.get(timeout=0.25)
                except queue.Empty:
                    if self._closing.is_set():
                        break
                    self._refresh_footer()
                    continue
                batch = [first]
                while len(batch) < 256:
                    try:
                        batch.append(self._queue.get_nowait())
                    except queue.Empty:
                        break
                self._write_batch(batch)
        except Exception:  # a bug here must not take the run's output down with a traceback
            log.exception("the output thread failed")
        finally:
            if self.live is not None:
                with contextlib.suppress(Exception):
                    self.live.stop()
                self.live = None

    def _write_batch(self, batch: list[_Item]) -> None:
        self._in_flight = len(batch)
        lines: list[str] = []
        for item in batch:
            if isinstance(item, _Control):
                self._flush_json(lines)
                self._control(item)
            elif self.json_lines and isinstance(item, _Line):
                pass  # JSON lines carry events only
            elif self.reader_gone or self._abandoned:
                self._dropped_writer += isinstance(item, ev.Event)
            elif isinstance(item, ev.Event) and self.json_lines:
                lines.append(json.dumps(item.to_dict(), ensure_ascii=False, default=str) + "\n")
                continue  # in flight until written
            elif not self._write(self._human, item):
                self._dropped_writer += isinstance(item, ev.Event)
            self._in_flight -= 1
        self._flush_json(lines)

    def _flush_json(self, lines: list[str]) -> None:
        if not lines:
            return
        if not self._write(self.stream.write, "".join(lines)):
            self._dropped_writer += len(lines)
        self._in_flight -= len(lines)
        lines.clear()

    def _write(self, write: Callable[[_T], object], item: _T) -> bool:
        """``write(item)``; False (and the reader counts as gone) if the output is closed."""
        try:
            write(item)
        except OSError as error:
            if error.errno not in (errno.EPIPE, errno.EINVAL, errno.EBADF):
                log.warning("output failed: %s", error)
            self.reader_gone = True
            return False
        except Exception:  # a bug in printing one event costs that line, not the output
            log.exception("could not print %r", item)
            return False
        self._written_at = time.monotonic()
        return True

    def _control(self, control: _Control) -> None:
        try:
            if self.live is not None:
                if control.pause:
                    self.live.stop()
                else:
                    self.live.start()
        finally:
            control.done.set()

    def _refresh_footer(self) -> None:
        if self.live is not None and self.live.is_started:
            with contextlib.suppress(OSError):
                self.live.update(self._footer())

    # ---------------------------------------------------------------- human output
    def _footer(self) -> Text:
        counts: dict[str, int] = {}
        for status in self.status.values():
            counts[status] = counts.get(status, 0) + 1
        running = counts.get("running", 0)
        waiting = counts.get("waiting", 0) + counts.get("blocked", 0) + counts.get("queued", 0)
        done = counts.get("done", 0)
        elapsed = time.monotonic() - self.started
        return Text(
            f"── {running} running · {waiting} waiting · {done} done · "
            f"{self.tokens / 1000:.1f}k tokens · ${self.cost:.4f} · {elapsed:.0f}s",
            style="bold",
        )

    def footer_text(self) -> str:
        return self._footer().plain

    def line(self, message: str, style: str | None = None, ts: float | None = None) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime(ts))
        if self.live is not None and self.live.is_started:
            self.live.update(self._footer(), refresh=True)  # the footer under the line is current
        self.console.print(Text(f"{stamp} ", style="dim") + Text(message, style=style or ""))

    def _agent(self, agent_id: str) -> str:
        return f"{agent_id} {self.roles.get(agent_id, ''):<12}"

    def _human(self, item: ev.Event | _Line) -> None:
        if isinstance(item, _Line):
            self.console.print(Text(item.text), end="")
            return
        event = item

        def say(message: str, style: str | None = None) -> None:
            self.line(message, style, event.ts)

        if isinstance(event, ev.RunStarted):
            verb = "resumed" if event.resumed else "started"
            say(f"run {event.run_id} {verb} in {event.workspace} ({event.model})", "bold")
            if event.build_command:
                say(f"build: {event.build_command}", "dim")
            if event.sandbox == "none":
                say("no sandbox: agents' commands run with your full authority", "yellow")
            else:
                network = "network allowed" if event.allow_network else "no network"
                say(f"sandbox: {event.sandbox}, {network}", "dim")
        elif isinstance(event, ev.AgentSpawned):
            self.titles[event.agent_id] = event.title
            self.roles[event.agent_id] = event.role
            self.status[event.agent_id] = "queued"
            extra = f" after {', '.join(event.depends_on)}" if event.depends_on else ""
            extra += f" mitigating {event.mitigates}" if event.mitigates else ""
            parent = f" by {event.parent_id}" if event.parent_id else ""
            say(f"{self._agent(event.agent_id)} spawned{parent}{extra}: {event.title}")
        elif isinstance(event, ev.AgentStatusChanged):
            self.status[event.agent_id] = event.status
            reason = f" — {event.reason}" if event.reason and event.status != "waiting" else ""
            title = self.titles.get(event.agent_id, "")
            say(
                f"{self._agent(event.agent_id)} {event.status:<9} {title}{reason}",
                STATUS_STYLE.get(event.status),
            )
        elif isinstance(event, ev.AgentProgress) and event.kind in ("BLOCKER", "RESULT"):
            say(
                f"{event.agent_id} [{event.kind}] {event.note}",
                "yellow" if event.kind == "BLOCKER" else "green",
            )
        elif isinstance(event, ev.ToolCallStarted) and event.tool in (
            "resume_agent",
            "cancel_agent",
        ):
            say(f"{event.agent_id} {event.summary}", "yellow")
        elif isinstance(event, ev.UsageUpdated):
            self.tokens = event.run_tokens
            self.cost = event.run_cost_usd
            self._refresh_footer()
        elif isinstance(event, ev.BuildFinished):
            verdict = "passed" if event.passed else f"FAILED (exit {event.exit_code})"
            say(f"build {verdict} in {event.duration_s:.1f}s", "green" if event.passed else "red")
        elif isinstance(event, ev.EscalationRaised):
            say(
                f"? {event.escalation_id} from {event.agent_id} ({event.kind}): {event.question}",
                "bold yellow",
            )
            if event.options:
                say("  options: " + " | ".join(event.options), "yellow")
        elif isinstance(event, ev.EscalationAnswered):
            say(
                f"→ {event.escalation_id} answered by {_answerer(event.answered_by)}: {answer_text(event)}",
                "yellow",
            )
        elif isinstance(event, ev.ModelRetrying):
            who = f" for {event.agent_id}" if event.agent_id else ""
            say(f"model retry {event.attempt}{who} in {event.delay_s:.1f}s: {event.reason}", "dim")
        elif isinstance(event, ev.GuardStateChanged):
            state = f"saturated ({event.reason}); new agents wait" if event.saturated else "clear"
            say(f"system guard: {state}", "yellow" if event.saturated else "dim")
        elif isinstance(event, ev.Notice) and event.level != "info":
            say(f"{event.level}: {event.message}", "red" if event.level == "error" else "yellow")
        elif isinstance(event, ev.RunFinished):
            style = "bold green" if event.status == "succeeded" else "bold red"
            say(f"run {event.run_id} {event.status}: {event.summary}", style)
            say(self.footer_text(), "dim")


def _answerer(answered_by: str) -> str:
    return "the person" if answered_by == "human" else answered_by


def answer_text(event: ev.EscalationAnswered) -> str:
    """The picked option once, and the typed answer only when it says more than the option."""
    choice = (event.choice or "").strip()
    answer = (event.answer or "").strip()
    if not choice:
        return answer or "-"
    if not answer or answer.casefold() == choice.casefold():
        return choice
    return f"{choice} — {answer}"
