"""Wiring shared by the CLI and the tray: an Engine on the real Anthropic client."""

from __future__ import annotations

from typing import Literal

from agentray.engine import Engine, SystemGuard
from agentray.journal import Journal
from agentray.model import AnthropicModelClient, RateLimitGate, RetryNotice

__all__ = ["build_engine"]


def build_engine(
    *,
    api_key: str,
    base_url: str | None = None,
    journal: Journal | None = None,
    gate: RateLimitGate | None = None,
    guard: SystemGuard | None = None,
    backoff_base_s: float = 0.5,
    streaming: Literal["auto", "always", "never"] = "auto",
) -> Engine:
    """The one place a model client is made for an engine (``base_url`` None: the SDK's default,
    which honours ANTHROPIC_BASE_URL; ``streaming``: see :class:`AnthropicModelClient`)."""

    def factory(on_retry: object) -> AnthropicModelClient:
        return AnthropicModelClient(
            api_key=api_key,
            base_url=base_url,
            gate=gate,
            on_retry=on_retry,  # type: ignore[arg-type]
            backoff_base_s=backoff_base_s,
            streaming=streaming,
        )

    return Engine(factory, journal=journal, guard=guard)


_ = RetryNotice  # re-exported type for callers' annotations
