"""Request validation with the Messages API's rules (and close to its wording)."""

from __future__ import annotations

import re
from typing import Any

__all__ = ["validate_body"]

_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,128}$")
MAX_BREAKPOINTS = 4


def _blocks(content: Any) -> list[Any]:
    return content if isinstance(content, list) else []


def _count_cache_control(body: dict[str, Any]) -> int:
    n = sum(1 for t in body.get("tools") or [] if isinstance(t, dict) and "cache_control" in t)
    system = body.get("system")
    if isinstance(system, list):
        n += sum(1 for b in system if isinstance(b, dict) and "cache_control" in b)
    for m in body.get("messages") or []:
        if isinstance(m, dict):
            n += sum(
                1 for b in _blocks(m.get("content")) if isinstance(b, dict) and "cache_control" in b
            )
    return n


def _validate_messages(messages: list[Any]) -> str | None:
    if not messages:
        return "messages: at least one message is required"
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
        content = m.get("content")
        if not isinstance(content, str | list):
            return f"messages.{i}.content: Input should be a valid string or list"
        last_assistant = i == len(messages) - 1 and m["role"] == "assistant"
        if not content and not last_assistant:
            return (
                f"messages.{i}: all messages must have non-empty content except for the "
                "optional final assistant message"
            )
        for j, b in enumerate(_blocks(content)):
            if not isinstance(b, dict) or "type" not in b:
                return f"messages.{i}.content.{j}.type: Field required"
            if b["type"] == "text" and not b.get("text"):
                return "messages: text content blocks must be non-empty"
            if b["type"] == "text" and not str(b["text"]).strip():
                return "messages: text content blocks must contain non-whitespace text"
            if b["type"] == "tool_use" and m["role"] != "assistant":
                return f"messages.{i}.content.{j}: tool_use blocks may only appear in assistant messages"
            if b["type"] == "tool_result" and m["role"] != "user":
                return (
                    f"messages.{i}.content.{j}: tool_result blocks may only appear in user messages"
                )

    # Every tool_use needs its tool_result in the very next message, and vice versa.
    for i, m in enumerate(messages):
        uses = [
            b.get("id")
            for b in _blocks(m["content"])
            if isinstance(b, dict) and b.get("type") == "tool_use"
        ]
        nxt = messages[i + 1] if i + 1 < len(messages) else None
        results = (
            [
                b.get("tool_use_id")
                for b in _blocks(nxt["content"])
                if isinstance(b, dict) and b.get("type") == "tool_result"
            ]
            if nxt is not None and nxt["role"] == "user"
            else []
        )
        if uses and nxt is not None:
            missing = [u for u in uses if u not in results]
            if missing:
                return (
                    f"messages.{i + 1}: `tool_use` ids were found without `tool_result` blocks "
                    f"immediately after: {', '.join(map(str, missing))}. Each `tool_use` block must "
                    "have a corresponding `tool_result` block in the next message."
                )
        if m["role"] == "user":
            prev_uses: list[Any] = []
            if i > 0 and messages[i - 1]["role"] == "assistant":
                prev_uses = [
                    b.get("id")
                    for b in _blocks(messages[i - 1]["content"])
                    if isinstance(b, dict) and b.get("type") == "tool_use"
                ]
            for j, b in enumerate(_blocks(m["content"])):
                if isinstance(b, dict) and b.get("type") == "tool_result":
                    if b.get("tool_use_id") not in prev_uses:
                        return (
                            f"messages.{i}.content.{j}: unexpected `tool_use_id` found in "
                            f"`tool_result` blocks: {b.get('tool_use_id')}. Each `tool_result` block "
                            "must have a corresponding `tool_use` block in the previous message."
                        )
    return None


def validate_body(body: Any, *, count_only: bool = False) -> str | None:
    """The invalid_request_error message for this body, or None when it is acceptable."""
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    if not isinstance(body.get("model"), str) or not body["model"]:
        return "model: Field required"
    if not count_only:
        mt = body.get("max_tokens")
        if mt is None:
            return "max_tokens: Field required"
        if not isinstance(mt, int) or isinstance(mt, bool) or mt < 1:
            return "max_tokens: Input should be a positive integer"
    if "messages" not in body:
        return "messages: Field required"
    if not isinstance(body["messages"], list):
        return "messages: Input should be a valid list"
    system = body.get("system")
    if system is not None and not isinstance(system, str | list):
        return "system: Input should be a valid string or list"
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            return "tools: Input should be a valid list"
        names: set[str] = set()
        for k, t in enumerate(tools):
            if not isinstance(t, dict) or not _TOOL_NAME.match(str(t.get("name", ""))):
                return f"tools.{k}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'"
            if t.get("type") in (None, "custom") and not isinstance(t.get("input_schema"), dict):
                return f"tools.{k}.custom.input_schema: Field required"
            if t["name"] in names:
                return "tools: Tool names must be unique."
            names.add(t["name"])
    err = _validate_messages(body["messages"])
    if err:
        return err
    n = _count_cache_control(body)
    if n > MAX_BREAKPOINTS:
        return (
            f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. Found {n}."
        )
    return None
