"""What the simulated model says: request views, reply helpers and the scripted policies."""

from __future__ import annotations

import itertools
import json
import re
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "EchoPolicy",
    "Policy",
    "Reply",
    "Rule",
    "ScriptedPolicy",
    "SimRequest",
    "ToolResultView",
    "Turn",
    "as_reply",
    "new_tool_use_id",
    "text",
    "tool_use",
]

_ids = itertools.count(1)
# A per-process salt keeps ids unique across simulators started by different processes.
_salt = secrets.token_hex(4)


def new_tool_use_id() -> str:
    return f"toolu_sim{_salt}{next(_ids):08x}"


def text(s: str) -> dict[str, Any]:
    """A text content block."""
    return {"type": "text", "text": s}


def tool_use(name: str, **input: Any) -> dict[str, Any]:
    """A tool_use content block with a fresh unique id."""
    return {"type": "tool_use", "id": new_tool_use_id(), "name": name, "input": input}


@dataclass
class Reply:
    """One assistant turn. ``stop_reason=None`` means tool_use if any tool_use block, else end_turn."""

    content: list[dict[str, Any]]
    stop_reason: str | None = None

    def resolved_stop_reason(self) -> str:
        if self.stop_reason is not None:
            return self.stop_reason
        if any(b.get("type") == "tool_use" for b in self.content):
            return "tool_use"
        return "end_turn"


def as_reply(value: Reply | list[dict[str, Any]]) -> Reply:
    if isinstance(value, Reply):
        return value
    if isinstance(value, list):
        return Reply(content=value)
    raise TypeError(f"policy returned {type(value).__name__}, expected Reply or list of blocks")


def _blocks(content: Any) -> list[dict[str, Any]]:
    """Message content as a list of blocks (a str is one text block)."""
    if isinstance(content, str):
        return [text(content)]
    if isinstance(content, list):
        return [b for b in content if isinstance(b, dict)]
    return []


def _text_of(content: Any) -> str:
    return "\n".join(str(b.get("text", "")) for b in _blocks(content) if b.get("type") == "text")


@dataclass(frozen=True)
class ToolResultView:
    """A tool_result block of the conversation, with the name of the tool that produced it."""

    tool_use_id: str
    tool_name: str | None
    is_error: bool
    text: str
    json: Any  # the parsed text, or None when it is not JSON


@dataclass(frozen=True)
class SimRequest:
    """A read-only view of one /v1/messages request body, for policies."""

    body: dict[str, Any]
    stream: bool = False
    path: str = "/v1/messages"

    @property
    def model(self) -> str:
        return str(self.body.get("model", ""))

    @property
    def messages(self) -> list[dict[str, Any]]:
        msgs = self.body.get("messages")
        return msgs if isinstance(msgs, list) else []

    @cached_property
    def system_text(self) -> str:
        system = self.body.get("system")
        if isinstance(system, str):
            return system
        return _text_of(system)

    @cached_property
    def tools(self) -> list[str]:
        tools = self.body.get("tools")
        if not isinstance(tools, list):
            return []
        return [str(t.get("name")) for t in tools if isinstance(t, dict) and "name" in t]

    @cached_property
    def first_user_text(self) -> str:
        for m in self.messages:
            if m.get("role") == "user":
                return _text_of(m.get("content"))
        return ""

    @cached_property
    def last_user_text(self) -> str:
        for m in reversed(self.messages):
            if m.get("role") == "user":
                return _text_of(m.get("content"))
        return ""

    @property
    def turn_index(self) -> int:
        """How many assistant turns the conversation already holds."""
        return sum(1 for m in self.messages if m.get("role") == "assistant")

    @cached_property
    def _tool_names(self) -> dict[str, str]:
        names: dict[str, str] = {}
        for m in self.messages:
            if m.get("role") == "assistant":
                for b in _blocks(m.get("content")):
                    if b.get("type") == "tool_use":
                        names[str(b.get("id"))] = str(b.get("name"))
        return names

    def _results_in(self, message: dict[str, Any]) -> list[ToolResultView]:
        views = []
        for b in _blocks(message.get("content")):
            if b.get("type") != "tool_result":
                continue
            body_text = _text_of(b.get("content", ""))
            try:
                parsed = json.loads(body_text)
            except ValueError:
                parsed = None
            tid = str(b.get("tool_use_id"))
            views.append(
                ToolResultView(
                    tool_use_id=tid,
                    tool_name=self._tool_names.get(tid),
                    is_error=bool(b.get("is_error", False)),
                    text=body_text,
                    json=parsed,
                )
            )
        return views

    @property
    def last_tool_results(self) -> list[ToolResultView]:
        """The tool results of the last user message (empty when it holds none)."""
        for m in reversed(self.messages):
            if m.get("role") == "user":
                return self._results_in(m)
        return []

    @property
    def all_tool_results(self) -> list[ToolResultView]:
        out: list[ToolResultView] = []
        for m in self.messages:
            if m.get("role") == "user":
                out.extend(self._results_in(m))
        return out

    def tool_results_named(self, name: str) -> list[ToolResultView]:
        return [r for r in self.all_tool_results if r.tool_name == name]


@runtime_checkable
class Policy(Protocol):
    def respond(self, request: SimRequest) -> Reply | list[dict[str, Any]]:
        """The assistant turn for this request. Called from a server thread."""
        ...


Turn = Reply | list[dict[str, Any]] | Callable[[SimRequest], Reply | list[dict[str, Any]]]


class EchoPolicy:
    """Replies with a text block echoing the last user text."""

    def respond(self, request: SimRequest) -> Reply:
        said = request.last_user_text
        return Reply([text(f"echo: {said}" if said else "echo")], "end_turn")


@dataclass
class Rule:
    """``match`` is a regex searched in ``system_text + "\\n" + first_user_text``;
    ``turns[i]`` answers the request whose conversation holds i assistant turns."""

    match: str | re.Pattern[str]
    turns: Sequence[Turn] = field(default_factory=list)

    def matches(self, request: SimRequest) -> bool:
        haystack = request.system_text + "\n" + request.first_user_text
        return re.search(self.match, haystack) is not None


class ScriptedPolicy:
    """Picks the first matching rule and plays ``turns[request.turn_index]``.

    Selection is stateless (by turn index), so retries and resumed conversations replay the same turn.
    """

    def __init__(self, rules: list[Rule], fallback: Policy | None = None) -> None:
        self.rules = list(rules)
        self.fallback: Policy = fallback if fallback is not None else EchoPolicy()

    def respond(self, request: SimRequest) -> Reply | list[dict[str, Any]]:
        for rule in self.rules:
            if not rule.matches(request):
                continue
            i = request.turn_index
            if i >= len(rule.turns):
                return Reply([text("(script finished)")], "end_turn")
            turn = rule.turns[i]
            if callable(turn):
                return turn(request)
            return turn
        return self.fallback.respond(request)
