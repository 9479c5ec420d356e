"""The Messages API's response shapes: the message object and its SSE event sequence."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from ._cache import CacheResult, output_tokens

__all__ = ["Frame", "fit_to_max_tokens", "message_json", "sse_bytes", "stream_frames", "usage_json"]

_TEXT_CHUNK = 24  # characters per text_delta


@dataclass(frozen=True)
class Frame:
    event: str
    data: dict[str, Any]
    is_delta: bool = False


def sse_bytes(frame: Frame) -> bytes:
    return f"event: {frame.event}\ndata: {json.dumps(frame.data)}\n\n".encode()


def usage_json(cache: CacheResult, out_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": cache.input_tokens,
        "cache_creation_input_tokens": cache.cache_creation_input_tokens,
        "cache_read_input_tokens": cache.cache_read_input_tokens,
        "output_tokens": out_tokens,
        "service_tier": "standard",
    }


def message_json(
    msg_id: str,
    model: str,
    content: list[dict[str, Any]],
    stop_reason: str | None,
    usage: dict[str, Any],
) -> dict[str, Any]:
    return {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage,
    }


def fit_to_max_tokens(
    content: list[dict[str, Any]], max_tokens: int
) -> tuple[list[dict[str, Any]], bool]:
    """Cut the reply where the model would have run out of tokens; True when it was cut."""
    budget = max_tokens
    kept: list[dict[str, Any]] = []
    for block in content:
        cost = output_tokens([block])
        if cost <= budget:
            kept.append(block)
            budget -= cost
            continue
        if block.get("type") == "text" and budget > 0:
            kept.append({**block, "text": str(block.get("text", ""))[: budget * 4]})
        return kept, True
    return kept, False


def _split(s: str, pieces: int) -> list[str]:
    size = max(1, math.ceil(len(s) / max(1, pieces)))
    return [s[i : i + size] for i in range(0, len(s), size)] or [""]


def stream_frames(
    msg_id: str,
    model: str,
    content: list[dict[str, Any]],
    stop_reason: str | None,
    cache: CacheResult,
    out_tokens: int,
) -> list[Frame]:
    """The full SSE sequence of one streamed message."""
    start_usage = usage_json(cache, 1)
    frames = [
        Frame(
            "message_start",
            {
                "type": "message_start",
                "message": message_json(msg_id, model, [], None, start_usage),
            },
        ),
        Frame("ping", {"type": "ping"}),
    ]
    for index, block in enumerate(content):
        kind = block.get("type")
        if kind == "text":
            start: dict[str, Any] = {**block, "text": ""}
            deltas = [
                {"type": "text_delta", "text": part}
                for part in _split(
                    str(block.get("text", "")), math.ceil(len(block["text"]) / _TEXT_CHUNK)
                )
                if part
            ]
        elif kind == "tool_use":
            start = {**block, "input": {}}
            raw = json.dumps(block.get("input", {}))
            # At least three fragments so clients must reassemble partial JSON.
            pieces = max(3, math.ceil(len(raw) / 32))
            deltas = [{"type": "input_json_delta", "partial_json": p} for p in _split(raw, pieces)]
        else:
            start, deltas = block, []
        frames.append(
            Frame(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start},
            )
        )
        frames.extend(
            Frame(
                "content_block_delta",
                {"type": "content_block_delta", "index": index, "delta": d},
                is_delta=True,
            )
            for d in deltas
        )
        frames.append(Frame("content_block_stop", {"type": "content_block_stop", "index": index}))
    final_usage = {k: v for k, v in usage_json(cache, out_tokens).items() if k != "service_tier"}
    frames.append(
        Frame(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": final_usage,
            },
        )
    )
    frames.append(Frame("message_stop", {"type": "message_stop"}))
    return frames
