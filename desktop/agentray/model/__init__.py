"""The model client: the Anthropic Messages API with caching, retries, pricing and a shared rate-limit gate."""

from agentray.model._caching import add_cache_breakpoints, count_breakpoints
from agentray.model._pricing import ModelPrice, Pricing
from agentray.model._ratelimit import RateLimitGate, default_gate
from agentray.model._types import ModelClient, ModelRequest, ModelResponse, RetryNotice, Usage

TYPE_CHECKING = False
if TYPE_CHECKING:
    from agentray.model.anthropic_client import AnthropicModelClient


def __getattr__(name: str) -> object:
    # The anthropic SDK takes ~2 s to import: only commands that talk to a model pay for it.
    if name == "AnthropicModelClient":
        from agentray.model.anthropic_client import AnthropicModelClient

        return AnthropicModelClient
    raise AttributeError(f"module 'agentray.model' has no attribute {name!r}")


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
