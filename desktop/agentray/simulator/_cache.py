"""Deterministic token counting and prompt-caching accounting, modelled on the Messages API.

The prompt is a sequence of blocks in the API's cache order: tools, then system, then the content
blocks of each message. A block carrying ``cache_control`` is a breakpoint. Reads may hit a stored
prefix at a breakpoint or up to ``LOOKBACK`` blocks before it (as the real API does); writes store
the prefix at every breakpoint.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DEFAULT_TTL_S",
    "LOOKBACK",
    "Block",
    "CacheResult",
    "PromptCache",
    "count_tokens",
    "flatten_prompt",
    "output_tokens",
]

DEFAULT_TTL_S = 300.0
LOOKBACK = 20
_TTLS = {"5m": 300.0, "1h": 3600.0}


def count_tokens(s: str) -> int:
    return math.ceil(len(s) / 4)


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _strip_cache_control(block: dict[str, Any]) -> dict[str, Any]:
    # cache_control moves from turn to turn; it must not change what the prefix is.
    return {k: v for k, v in block.items() if k != "cache_control"}


@dataclass(frozen=True)
class Block:
    tokens: int
    digest: str  # hash of the whole prompt prefix up to and including this block
    ttl_s: float | None  # set when the block is a cache breakpoint


def _ttl(block: dict[str, Any]) -> float | None:
    cc = block.get("cache_control")
    if not isinstance(cc, dict):
        return None
    return _TTLS.get(str(cc.get("ttl", "5m")), DEFAULT_TTL_S)


def flatten_prompt(body: dict[str, Any]) -> list[Block]:
    """The request's prompt as blocks in cache order, each with its prefix hash."""
    raw: list[tuple[str, dict[str, Any]]] = []
    for tool in body.get("tools") or []:
        if isinstance(tool, dict):
            raw.append(("tool", tool))
    system = body.get("system")
    if isinstance(system, str):
        if system:
            raw.append(("system", {"type": "text", "text": system}))
    elif isinstance(system, list):
        raw.extend(("system", b) for b in system if isinstance(b, dict))
    for i, msg in enumerate(body.get("messages") or []):
        if not isinstance(msg, dict):
            continue
        content = msg.get("content")
        tag = f"m{i}:{msg.get('role')}"
        if isinstance(content, str):
            raw.append((tag, {"type": "text", "text": content}))
        elif isinstance(content, list):
            raw.extend((tag, b) for b in content if isinstance(b, dict))

    h = hashlib.sha256(str(body.get("model", "")).encode())
    blocks: list[Block] = []
    for tag, block in raw:
        serialized = _dumps(_strip_cache_control(block))
        h.update(tag.encode() + b"\0" + serialized.encode() + b"\0")
        blocks.append(Block(count_tokens(serialized), h.copy().hexdigest(), _ttl(block)))
    return blocks


def output_tokens(content: list[dict[str, Any]]) -> int:
    total = 0
    for b in content:
        if b.get("type") == "text":
            total += count_tokens(str(b.get("text", "")))
        elif b.get("type") == "tool_use":
            total += count_tokens(str(b.get("name", "")) + _dumps(b.get("input", {})))
        else:
            total += count_tokens(_dumps(b))
    return max(1, total)


@dataclass(frozen=True)
class CacheResult:
    input_tokens: int
    cache_creation_input_tokens: int
    cache_read_input_tokens: int

    @property
    def total(self) -> int:
        return self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens


class PromptCache:
    """Prefix hashes per API key, each with a TTL refreshed on every hit. Thread-safe."""

    def __init__(
        self, min_cache_tokens: int = 1024, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.min_cache_tokens = min_cache_tokens
        self._clock = clock
        self._lock = threading.Lock()
        # (key id, prefix digest) -> (expiry time, ttl)
        self._entries: dict[tuple[str, str], tuple[float, float]] = {}

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def account(self, key_id: str, blocks: list[Block], *, write: bool = True) -> CacheResult:
        """Split the prompt into read / created / uncached tokens, and store the breakpoints."""
        cumulative: list[int] = []
        running = 0
        for b in blocks:
            running += b.tokens
            cumulative.append(running)
        total = running
        breakpoints = [
            i
            for i, b in enumerate(blocks)
            if b.ttl_s is not None and cumulative[i] >= self.min_cache_tokens
        ]
        if not breakpoints:
            return CacheResult(total, 0, 0)

        now = self._clock()
        with self._lock:
            self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            candidates: set[int] = set()
            for bp in breakpoints:
                candidates.update(range(max(0, bp - LOOKBACK), bp + 1))
            read_at = -1
            for i in sorted(candidates, reverse=True):
                entry = self._entries.get((key_id, blocks[i].digest))
                if entry is not None and cumulative[i] >= self.min_cache_tokens:
                    read_at = i
                    self._entries[(key_id, blocks[i].digest)] = (now + entry[1], entry[1])
                    break
            if write:
                for bp in breakpoints:
                    ttl = blocks[bp].ttl_s or DEFAULT_TTL_S
                    old = self._entries.get((key_id, blocks[bp].digest))
                    keep = max(ttl, old[1]) if old else ttl
                    self._entries[(key_id, blocks[bp].digest)] = (now + keep, keep)

        last = breakpoints[-1]
        read = cumulative[read_at] if read_at >= 0 else 0
        created = max(0, cumulative[last] - read)
        return CacheResult(total - read - created, created, read)
