"""Prompt-caching breakpoints: where to put ``cache_control`` so each turn reuses the previous prefix."""

from __future__ import annotations

from typing import Any

__all__ = ["EPHEMERAL", "MAX_BREAKPOINTS", "add_cache_breakpoints", "count_breakpoints"]

MAX_BREAKPOINTS = 4  # the Messages API rejects more than four cache_control markers
EPHEMERAL: dict[str, str] = {"type": "ephemeral"}

# Blocks the API refuses a cache_control on.
_UNMARKABLE = frozenset({"thinking", "redacted_thinking"})


def _markable(block: dict[str, Any]) -> bool:
    if block.get("type") in _UNMARKABLE:
        return False
    # cache_control on an empty text block is a 400.
    return not (block.get("type") == "text" and not block.get("text"))


def _mark_last(blocks: list[dict[str, Any]]) -> bool:
    """Mark the last markable block (a fresh dict); False when none can carry a marker."""
    for i in range(len(blocks) - 1, -1, -1):
        if _markable(blocks[i]):
            blocks[i] = {**blocks[i], "cache_control": dict(EPHEMERAL)}
            return True
    return False


def _unmarked(block: dict[str, Any]) -> dict[str, Any]:
    # Markers the caller left in would count against the limit of four: we own the placement.
    if "cache_control" in block:
        return {k: v for k, v in block.items() if k != "cache_control"}
    return block


def _unmarked_message(msg: dict[str, Any]) -> dict[str, Any]:
    content = msg.get("content")
    if isinstance(content, str):
        return msg
    if isinstance(content, list):
        if any(isinstance(b, dict) and "cache_control" in b for b in content):
            return {**msg, "content": [_unmarked(b) if isinstance(b, dict) else b for b in content]}
        return msg
    return {**msg, "content": []}


def _marked_message(msg: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``msg`` with its last markable block marked (a string content becomes one text
    block); ``msg`` itself when nothing in it can carry a marker (an empty string stays as given,
    which the API rejects either way)."""
    content = msg["content"]
    if isinstance(content, str):
        blocks: list[dict[str, Any]] = [{"type": "text", "text": content}] if content else []
    else:
        blocks = list(content)
    if not _mark_last(blocks):
        return msg
    return {**msg, "content": blocks}


def add_cache_breakpoints(
    system: str | list[dict[str, Any]],
    tools: list[dict[str, Any]],
    messages: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """Return ``(system_blocks, tools, messages)`` with at most four ``cache_control`` markers.

    Markers go on: the system prompt, the last tool definition, the last block of the last message,
    and the last block of the second-to-last user message (the previous turn's breakpoint, so the
    growing conversation reads its prefix from the cache). Inputs are not mutated: every dict that
    changes is a copy, and a message left unchanged is passed on as the same object. A marked
    string content becomes a one-text-block list; empty text gets no marker.
    """
    if isinstance(system, str):
        system_blocks = [{"type": "text", "text": system}] if system else []
    else:
        system_blocks = [
            _unmarked(b) for b in system if not (b.get("type") == "text" and not b.get("text"))
        ]
    _mark_last(system_blocks)

    new_tools = [_unmarked(t) for t in tools]
    if new_tools:
        new_tools[-1] = {**new_tools[-1], "cache_control": dict(EPHEMERAL)}

    # A message without markers is passed on as it is (the same object: the model client reuses
    # its encoding turn after turn); only the messages that get a marker are copies.
    new_messages = [_unmarked_message(msg) for msg in messages]
    if new_messages:
        targets = [len(new_messages) - 1]
        users = [i for i, m in enumerate(new_messages) if m.get("role") == "user"]
        if len(users) >= 2 and users[-2] != len(new_messages) - 1:
            targets.append(users[-2])
        for i in targets:
            new_messages[i] = _marked_message(new_messages[i])

    return system_blocks, new_tools, new_messages


def count_breakpoints(
    system: list[dict[str, Any]], tools: list[dict[str, Any]], messages: list[dict[str, Any]]
) -> int:
    """How many ``cache_control`` markers a request carries at top level (for tests and asserts)."""
    n = sum("cache_control" in b for b in system) + sum("cache_control" in t for t in tools)
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            n += sum(isinstance(b, dict) and "cache_control" in b for b in content)
    return n
