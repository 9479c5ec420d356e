"""Headless output (the :class:`Reporter`, in :mod:`agentray._reporter`: a line per agent state
change and a status footer, or JSON lines) and the terminal side of escalations (ask on the
terminal, or answer by policy)."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from collections.abc import Callable
from typing import IO, Any

from agentray import events as ev
from agentray._reporter import Reporter, plural
from agentray.engine import Engine
from agentray.escalation import Answer, AnsweredBy
from agentray.states import RunStatus

__all__ = ["EscalationResponder", "Reporter", "plural", "print_json"]


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
            deny = next((o for o in event.choices if o.denies), None)
            self.engine.answer_escalation(
                event.escalation_id,
                Answer(
                    deny.option_id if deny is not None else None,
                    "Denied by policy (--on-escalation deny): do not do this; proceed without it, conservatively.",
                    AnsweredBy.POLICY_DENY,
                ),
            )
        elif self.policy == "fail":
            self.failed.append(event.escalation_id)
            self.engine.answer_escalation(
                event.escalation_id,
                Answer(
                    None, "Unanswered: --on-escalation fail ends the run.", AnsweredBy.POLICY_FAIL
                ),
            )
            self.engine.stop_run(
                event.run_id,
                status=RunStatus.FAILED,
                reason=f"escalation {event.escalation_id} needs a human (--on-escalation fail)",
            )
        else:
            self.queue.put_nowait(event)
            if self._worker is None or self._worker.done():
                self._worker = asyncio.get_running_loop().create_task(self._ask_all())

    async def _ask_all(self) -> None:
        while not self.queue.empty():
            event = self.queue.get_nowait()
            if event.escalation_id not in {
                e.escalation_id for e in self.engine.pending_escalations()
            }:
                continue
            self.reporter.pause()
            try:
                answer: Answer = await _in_daemon_thread(self._ask, event)
            finally:
                self.reporter.resume()
            self.engine.answer_escalation(event.escalation_id, answer)

    def _ask(self, event: ev.EscalationRaised) -> Answer:
        out = self.prompt_stream
        out.write(
            f"\n=== {event.agent_id} needs you ({event.escalation_id}) ===\n{event.question}\n"
        )
        if event.context:
            out.write(f"\n{event.context}\n")
        for number, option in enumerate(event.choices, 1):
            out.write(f"  [{number}] {option.label}\n")
        hint = "a number, or type an answer" if event.choices else "type an answer"
        out.flush()
        try:
            reply = self.read_line(f"Your answer ({hint}): ").strip()
        except EOFError:
            reply = ""
        # a number picks an option by its place; typing an option's exact label picks it too
        chosen = None
        if reply.isdigit() and 1 <= int(reply) <= len(event.choices):
            chosen = event.choices[int(reply) - 1]
            reply = ""
        else:
            chosen = next(
                (o for o in event.choices if o.label.casefold() == reply.casefold()), None
            )
            if chosen is not None:
                reply = ""
        return Answer(
            chosen.option_id if chosen is not None else None,
            reply or ("" if chosen else "(no answer)"),
        )


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
