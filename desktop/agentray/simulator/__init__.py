"""An offline Messages-API simulator: real HTTP, real SSE, scripted replies, prompt-cache
accounting and fault injection. The offline demo and the end-to-end tests run against it.

    with Simulator(ScriptedPolicy([Rule("hello", [[text("hi")]])])) as sim:
        client = AsyncAnthropic(api_key="sim", base_url=sim.base_url)
"""

from ._cache import CacheResult, PromptCache, count_tokens
from ._faults import Fault
from ._policy import (
    EchoPolicy,
    Policy,
    Reply,
    Rule,
    ScriptedPolicy,
    SimRequest,
    ToolResultView,
    Turn,
    text,
    tool_use,
)
from ._server import DEFAULT_MODELS, RecordedRequest, SimStats, Simulator

__all__ = [
    "DEFAULT_MODELS",
    "CacheResult",
    "EchoPolicy",
    "Fault",
    "Policy",
    "PromptCache",
    "RecordedRequest",
    "Reply",
    "Rule",
    "ScriptedPolicy",
    "SimRequest",
    "SimStats",
    "Simulator",
    "ToolResultView",
    "Turn",
    "count_tokens",
    "text",
    "tool_use",
]
