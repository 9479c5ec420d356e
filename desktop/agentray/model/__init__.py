"""The model client: the Anthropic Messages API with caching, retries, pricing and a shared rate-limit gate."""

from agentray.model._caching import add_cache_breakpoints, count_breakpoints
from agentray.model._pricing import ModelPrice, Pricing
from agentray.model._ratelimit import RateLimitGate, default_gate
from agentray.model._types import ModelClient, ModelRequest, ModelResponse, RetryNotice, Usage
from agentray.model.anthropic_client import AnthropicModelClient

__all__ = [
    "AnthropicModelClient",
    "ModelClient",
    "ModelPrice",
    "ModelRequest",
    "ModelResponse",
    "Pricing",
    "RateLimitGate",
    "RetryNotice",
    "Usage",
    "add_cache_breakpoints",
    "count_breakpoints",
    "default_gate",
]
