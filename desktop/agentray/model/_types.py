"""The small model interface the engine talks to; providers plug in behind it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = ["ModelClient", "ModelRequest", "ModelResponse", "RetryNotice", "Usage"]


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_creation_input_tokens + other.cache_creation_input_tokens,
            self.cache_read_input_tokens + other.cache_read_input_tokens,
        )

    @property
    def total_tokens(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_creation_input_tokens
            + self.cache_read_input_tokens
        )

    @property
    def prompt_tokens(self) -> int:
        """Everything the model read for this call (what counts against the context window)."""
        return self.input_tokens + self.cache_creation_input_tokens + self.cache_read_input_tokens


@dataclass(frozen=True)
class ModelRequest:
    """One Messages-API call. ``tools`` and ``messages`` are plain Anthropic-format dicts.

    A message once sent is never changed in place (a transcript grows by new messages; an edit
    is a new dict): clients may reuse what they encoded of it for the same ``agent_id``."""

    model: str
    system: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] = field(default_factory=list)
    max_tokens: int = 8192
    agent_id: str | None = None  # logs, retry notices, reused encodings; never sent


@dataclass(frozen=True)
class ModelResponse:
    """The assistant turn: content blocks as plain dicts (``text`` / ``tool_use``)."""

    content: list[dict[str, Any]]
    stop_reason: str | None
    usage: Usage
    cost_usd: float
    model: str
    duration_s: float = 0.0
    request_id: str | None = None
    retries: int = 0


@dataclass(frozen=True)
class RetryNotice:
    """Told to the ``on_retry`` callback before the client sleeps and tries again."""

    agent_id: str | None
    attempt: int
    delay_s: float
    reason: str


@runtime_checkable
class ModelClient(Protocol):
    async def complete(self, request: ModelRequest) -> ModelResponse:
        """Send one request; retries transient failures; raises ``agentray.errors.ModelError``."""
        ...

    async def aclose(self) -> None: ...
