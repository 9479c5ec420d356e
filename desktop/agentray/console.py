"""Headless output: a line per agent state change and a status footer (or JSON lines), and the
terminal side of escalations (ask on the terminal, or answer by policy)."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import threading
import time
from collections.abc import Callable
from typing import IO, Any

from rich.console import Console
from rich.live import Live
from rich.text import Text

from agentray import events as ev
from agentray.engine import Engine

__all__ = ["EscalationResponder", "Reporter", "deny_choice"]

STATUS_STYLE = {
    "queued": "dim",
    "running": "cyan",
    "waiting": "blue",
    "blocked": "yellow",
    "done": "green",
    "failed": "red",
    "cancelled": "magenta",
}


class Reporter:
    """Listens to the engine's events and prints them (never touches the engine)."""

    def __init__(self, *, json_lines: bool = False, stream: IO[str] | None = None) -> None:
        self.json_lines = json_lines
        self.stream = stream or sys.stdout
        self.console = Console(file=self.stream, highlight=False, soft_wrap=True)
        self.live: Live | None = None
        self.titles: dict[str, str] = {}
        self.roles: dict[str, str] = {}
        self.status: dict[str, str] = {}
        self.tokens = 0
        self.cost = 0.0
        self.started = time.monotonic()

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> None:
        if not self.json_lines and self.console.is_terminal:
            self.live = Live(self._footer(), console=self.console, refresh_per_second=4, transient=True)
            self.live.start()

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def pause(self) -> None:
        """Free the terminal for a prompt."""
        if self.live is not None:
            self.live.stop()

    def resume(self) -> None:
        if self.live is not None:
            self.live.start()

    # ---------------------------------------------------------------- output
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

    def line(self, message: str, style: str | None = None) -> None:
        stamp = time.strftime("%H:%M:%S")
        self.console.print(Text(f"{stamp} ", style="dim") + Text(message, style=style or ""))
        if self.live is not None:
            self.live.update(self._footer())

    def __call__(self, event: ev.Event) -> None:
        if self.json_lines:
            self.stream.write(json.dumps(event.to_dict(), ensure_ascii=False, default=str) + "\n")
            self.stream.flush()
            return
        self._human(event)

    def _human(self, event: ev.Event) -> None:
        if isinstance(event, ev.RunStarted):
            verb = "resumed" if event.resumed else "started"
            self.line(f"run {event.run_id} {verb} in {event.workspace} ({event.model})", "bold")
            if event.build_command:
                self.line(f"build: {event.build_command}", "dim")
            if event.sandbox == "none":
                self.line("no sandbox: agents' commands run with your full authority", "yellow")
            else:
                network = "network allowed" if event.allow_network else "no network"
                self.line(f"sandbox: {event.sandbox}, {network}", "dim")
        elif isinstance(event, ev.AgentSpawned):
            self.titles[event.agent_id] = event.title
            self.roles[event.agent_id] = event.role
            self.status[event.agent_id] = "queued"
            extra = f" after {', '.join(event.depends_on)}" if event.depends_on else ""
            extra += f" mitigating {event.mitigates}" if event.mitigates else ""
            parent = f" by {event.parent_id}" if event.parent_id else ""
            self.line(f"{event.agent_id} {event.role:<12} spawned{parent}{extra}: {event.title}")
        elif isinstance(event, ev.AgentStatusChanged):
            self.status[event.agent_id] = event.status
            reason = f" — {event.reason}" if event.reason and event.status != "waiting" else ""
            title = self.titles.get(event.agent_id, "")
            self.line(
                f"{event.agent_id} {self.roles.get(event.agent_id, ''):<12} {event.status:<9} {title}{reason}",
                STATUS_STYLE.get(event.status),
            )
        elif isinstance(event, ev.AgentProgress) and event.kind in ("BLOCKER", "RESULT"):
            self.line(f"{event.agent_id} [{event.kind}] {event.note}", "yellow" if event.kind == "BLOCKER" else "green")
        elif isinstance(event, ev.ToolCallStarted) and event.tool in ("resume_agent", "cancel_agent"):
            self.line(f"{event.agent_id} {event.summary}", "yellow")
        elif isinstance(event, ev.UsageUpdated):
            self.tokens = event.run_tokens
            self.cost = event.run_cost_usd
            if self.live is not None:
                self.live.update(self._footer())
        elif isinstance(event, ev.BuildFinished):
            verdict = "passed" if event.passed else f"FAILED (exit {event.exit_code})"
            self.line(f"build {verdict} in {event.duration_s:.1f}s", "green" if event.passed else "red")
        elif isinstance(event, ev.EscalationRaised):
            self.line(f"? {event.escalation_id} from {event.agent_id} ({event.kind}): {event.question}", "bold yellow")
            if event.options:
                self.line("  options: " + " | ".join(event.options), "yellow")
        elif isinstance(event, ev.EscalationAnswered):
            by = "the person" if event.answered_by == "human" else event.answered_by
            self.line(f"→ {event.escalation_id} answered by {by}: {event.choice or '-'} — {event.answer}", "yellow")
        elif isinstance(event, ev.ModelRetrying):
            self.line(f"model retry {event.attempt} for {event.agent_id} in {event.delay_s:.1f}s: {event.reason}", "dim")
        elif isinstance(event, ev.GuardStateChanged):
            state = f"saturated ({event.reason}); new agents wait" if event.saturated else "clear"
            self.line(f"system guard: {state}", "yellow" if event.saturated else "dim")
        elif isinstance(event, ev.Notice) and event.level != "info":
            self.line(f"{event.level}: {event.message}", "red" if event.level == "error" else "yellow")
        elif isinstance(event, ev.RunFinished):
            style = "bold green" if event.status == "succeeded" else "bold red"
            self.line(f"run {event.run_id} {event.status}: {event.summary}", style)
            self.line(self.footer_text(), "dim")


_DENY_PATTERNS = (
    r"^(no|deny|denied|reject|decline)\b",
    r"^(skip|cancel|leave|don'?t|do not)\b",
    r"finish as failure",
    r"^stop\b",
)


def deny_choice(options: tuple[str, ...]) -> str | None:
    """The option that says no, if there is one."""
    for pattern in _DENY_PATTERNS:
        for option in options:
            if re.search(pattern, option.strip(), re.IGNORECASE):
                return option
    return None


class EscalationResponder:
    """Answers escalations: on the terminal (``ask``), or by policy (``deny`` / ``fail``)."""

    def __init__(
        self,
        engine: Engine,
        policy: str,
        reporter: Reporter,
        *,
        read_line: Callable[[str], str] = input,
        prompt_stream: IO[str] | None = None,
    ) -> None:
        self.engine = engine
        self.policy = policy
        self.reporter = reporter
        self.read_line = read_line
        self.prompt_stream = prompt_stream or sys.stderr
        self.queue: asyncio.Queue[ev.EscalationRaised] = asyncio.Queue()
        self.failed: list[str] = []
        self._worker: asyncio.Task[None] | None = None

    def __call__(self, event: ev.Event) -> None:
        if not isinstance(event, ev.EscalationRaised):
            return
        if self.policy == "deny":
            choice = deny_choice(event.options)
            self.engine.answer_escalation(
                event.escalation_id,
                "Denied by policy (--on-escalation deny): do not do this; proceed without it, conservatively.",
                choice,
                answered_by="policy:deny",
            )
        elif self.policy == "fail":
            self.failed.append(event.escalation_id)
            self.engine.answer_escalation(
                event.escalation_id,
                "Unanswered: --on-escalation fail ends the run.",
                None,
                answered_by="policy:fail",
            )
            self.engine.stop_run(
                event.run_id, status="failed", reason=f"escalation {event.escalation_id} needs a human (--on-escalation fail)"
            )
        else:
            self.queue.put_nowait(event)
            if self._worker is None or self._worker.done():
                self._worker = asyncio.get_running_loop().create_task(self._ask_all())

    async def _ask_all(self) -> None:
        while not self.queue.empty():
            event = self.queue.get_nowait()
            if event.escalation_id not in {e.escalation_id for e in self.engine.pending_escalations()}:
                continue
            self.reporter.pause()
            try:
                answer, choice = await _in_daemon_thread(self._ask, event)
            finally:
                self.reporter.resume()
            self.engine.answer_escalation(event.escalation_id, answer, choice, answered_by="human")

    def _ask(self, event: ev.EscalationRaised) -> tuple[str, str | None]:
        out = self.prompt_stream
        out.write(f"\n=== {event.agent_id} needs you ({event.escalation_id}) ===\n{event.question}\n")
        if event.context:
            out.write(f"\n{event.context}\n")
        for number, option in enumerate(event.options, 1):
            out.write(f"  [{number}] {option}\n")
        hint = "a number, or type an answer" if event.options else "type an answer"
        out.flush()
        try:
            reply = self.read_line(f"Your answer ({hint}): ").strip()
        except EOFError:
            reply = ""
        choice: str | None = None
        if reply.isdigit() and 1 <= int(reply) <= len(event.options):
            choice = event.options[int(reply) - 1]
            reply = choice
        elif reply in event.options:
            choice = reply
        return reply or "(no answer)", choice


async def _in_daemon_thread(function: Callable[..., Any], *args: Any) -> Any:
    """Run a blocking prompt without holding up the exit: a thread of the default executor
    blocked in input() would keep ``asyncio.run`` from returning after Ctrl-C or a stop."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def target() -> None:
        try:
            result = function(*args)
        except BaseException as error:  # handed to the loop, raised there
            loop.call_soon_threadsafe(_settle, future, None, error)
        else:
            loop.call_soon_threadsafe(_settle, future, result, None)

    threading.Thread(target=target, name="escalation-prompt", daemon=True).start()
    return await future


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


def print_json(data: Any, stream: IO[str] | None = None) -> None:
    (stream or sys.stdout).write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")
