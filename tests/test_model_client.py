"""The model client over real HTTP, with the real anthropic SDK, against the project's simulator."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from agentray.errors import (
    ModelAuthError,
    ModelNotFoundError,
    ModelRequestError,
    ModelUnavailableError,
)
from agentray.model import (
    AnthropicModelClient,
    ModelClient,
    ModelRequest,
    Pricing,
    RateLimitGate,
    RetryNotice,
    Usage,
    add_cache_breakpoints,
    count_breakpoints,
)
from agentray.simulator import Fault, Simulator, text, tool_use

KEY = "sk-ant-test-S3CRETKEYVALUE"
MODEL = "sim-model"  # the SDK warns that claude-sonnet-4-5 is deprecated
LONG_SYSTEM = "You are a careful engineer. " * 200  # ~5400 chars: above the lowered cache minimum


class FixedPolicy:
    """Always answers with a text block and a tool_use block."""

    def respond(self, request: Any) -> list[dict[str, Any]]:
        return [text("reading the file"), tool_use("read_file", path="src/app.py")]


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def req(
    system: str = "be brief", messages: list[dict[str, Any]] | None = None, **kw: Any
) -> ModelRequest:
    tools = [
        {
            "name": "read_file",
            "description": "Read a file",
            "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
        }
    ]
    return ModelRequest(
        model=kw.pop("model", MODEL),
        system=system,
        messages=messages or [user("hello")],
        tools=kw.pop("tools", tools),
        agent_id=kw.pop("agent_id", "a1"),
        **kw,
    )


@pytest.fixture
def sim() -> Iterator[Simulator]:
    s = Simulator(FixedPolicy(), api_keys={KEY}, min_cache_tokens=200)
    s.start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def notices() -> list[RetryNotice]:
    return []


@pytest.fixture
async def client(sim: Simulator, notices: list[RetryNotice]) -> AsyncIterator[AnthropicModelClient]:
    c = AnthropicModelClient(
        api_key=KEY,
        base_url=sim.base_url,
        gate=RateLimitGate(),
        backoff_base_s=0.01,
        backoff_max_s=0.05,
        on_retry=notices.append,
    )
    yield c
    await c.aclose()


# -- plain completion and caching ------------------------------------------------------------------


async def test_completion_returns_plain_blocks_usage_and_cost(
    client: AnthropicModelClient, sim: Simulator
) -> None:
    assert isinstance(client, ModelClient)
    resp = await client.complete(req())
    assert resp.content[0] == {"type": "text", "text": "reading the file"}
    tu = resp.content[1]
    assert tu["type"] == "tool_use" and tu["name"] == "read_file"
    assert tu["input"] == {"path": "src/app.py"} and tu["id"]
    assert all(isinstance(b, dict) for b in resp.content)
    assert resp.stop_reason == "tool_use"
    assert resp.usage.input_tokens > 0 and resp.usage.output_tokens > 0
    assert resp.cost_usd > 0
    assert resp.cost_usd == pytest.approx(Pricing.load().cost(MODEL, resp.usage))
    assert resp.retries == 0 and resp.duration_s > 0
    assert len(sim.requests) == 1
    # Prompt caching on every request: system as marked blocks, last tool marked.
    body = sim.requests[0].body
    assert body["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert body["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    assert body["messages"][-1]["content"][-1]["cache_control"] == {"type": "ephemeral"}


async def test_second_call_reads_the_cache_and_costs_less(client: AnthropicModelClient) -> None:
    first = await client.complete(req(system=LONG_SYSTEM))
    second = await client.complete(req(system=LONG_SYSTEM))
    assert first.usage.cache_creation_input_tokens > 0
    assert second.usage.cache_read_input_tokens > 0
    assert second.cost_usd < first.cost_usd


async def test_growing_conversation_reuses_previous_turn_prefix(
    client: AnthropicModelClient,
) -> None:
    turn1 = [user("step one " * 100)]
    r1 = await client.complete(req(system=LONG_SYSTEM, messages=turn1))
    turn2 = [
        *turn1,
        {"role": "assistant", "content": r1.content},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": r1.content[1]["id"], "content": "x = 1"}
            ],
        },
    ]
    r2 = await client.complete(req(system=LONG_SYSTEM, messages=turn2))
    # The whole first turn (system + tools + first user message) comes from the cache.
    assert r2.usage.cache_read_input_tokens >= r1.usage.cache_creation_input_tokens > 0


def test_add_cache_breakpoints_places_at_most_four_and_does_not_mutate() -> None:
    tools = [{"name": f"t{i}", "input_schema": {"type": "object"}} for i in range(3)]
    messages: list[dict[str, Any]] = [
        user("first"),
        {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
        user([{"type": "text", "text": "second", "cache_control": {"type": "ephemeral"}}]),
        {"role": "assistant", "content": [{"type": "text", "text": "ok2"}]},
        user([{"type": "text", "text": "third"}, {"type": "text", "text": ""}]),
    ]
    before = (copy.deepcopy(tools), copy.deepcopy(messages))
    system, new_tools, new_msgs = add_cache_breakpoints("sys", tools, messages)
    assert (tools, messages) == before  # inputs untouched
    assert count_breakpoints(system, new_tools, new_msgs) == 4
    assert system == [{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}]
    assert "cache_control" in new_tools[-1] and "cache_control" not in new_tools[0]
    # last message: the empty text block is skipped, the one before it is marked
    assert new_msgs[-1]["content"][0]["cache_control"] == {"type": "ephemeral"}
    assert "cache_control" not in new_msgs[-1]["content"][1]
    # second-to-last user message marked; the caller's stale marker elsewhere is gone
    assert new_msgs[2]["content"][-1]["cache_control"] == {"type": "ephemeral"}
    assert new_msgs[0]["content"] == "first"

    # Many calls on growing conversations never exceed four.
    convo: list[dict[str, Any]] = []
    for i in range(12):
        convo.append(user(f"u{i}") if i % 2 == 0 else {"role": "assistant", "content": f"a{i}"})
        s, t, m = add_cache_breakpoints("sys" if i % 3 else "", tools[: i % 4], convo)
        assert count_breakpoints(s, t, m) <= 4
        convo = m  # feed the output back in, as an engine that kept it would


def test_add_cache_breakpoints_empty_system_and_string_contents() -> None:
    system, tools, msgs = add_cache_breakpoints("", [], [user("hi"), user("")])
    assert system == [] and tools == []
    assert msgs[0]["content"] == [
        {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}
    ]
    assert count_breakpoints(system, tools, msgs) == 1


# -- retries ---------------------------------------------------------------------------------------


async def test_rate_limit_retry_after_is_honoured(
    client: AnthropicModelClient, sim: Simulator, notices: list[RetryNotice]
) -> None:
    sim.inject(Fault.rate_limit(retry_after=1.0), times=1)
    t0 = time.monotonic()
    resp = await client.complete(req())
    elapsed = time.monotonic() - t0
    assert resp.retries == 1 and resp.content
    assert elapsed >= 0.9
    assert len(notices) == 1
    assert notices[0].delay_s == pytest.approx(1.0) and notices[0].attempt == 1
    assert notices[0].agent_id == "a1" and "429" in notices[0].reason
    assert len(sim.requests) == 2


async def test_shared_gate_holds_other_clients_after_a_429(sim: Simulator) -> None:
    gate = RateLimitGate()
    a = AnthropicModelClient(api_key=KEY, base_url=sim.base_url, gate=gate)
    b = AnthropicModelClient(api_key=KEY, base_url=sim.base_url, gate=gate)
    try:
        sim.inject(Fault.rate_limit(retry_after=1.0), times=1)
        task_a = asyncio.create_task(a.complete(req(agent_id="a")))
        for _ in range(200):  # until A's 429 has set the hold
            if gate.holds:
                break
            await asyncio.sleep(0.01)
        assert gate.holds == 1 and gate.remaining_s > 0.5
        held_until = gate.held_until
        # the hold's end on the simulator's clock (it stamps requests with time.time())
        hold_ends_at = time.time() + (held_until - time.monotonic())
        task_b = asyncio.create_task(b.complete(req(agent_id="b")))
        rb = await task_b
        b_done = time.monotonic()
        ra = await task_a
        assert b_done >= held_until
        assert rb.retries == 0 and ra.retries == 1
        assert len(sim.requests) == 3
        # Nothing was sent during the hold: after A's first try, every request (B's, A's retry)
        # reached the simulator once the hold had ended.
        assert [r.time >= hold_ends_at - 0.005 for r in sim.requests] == [False, True, True]
        assert gate.waits >= 1
    finally:
        await a.aclose()
        await b.aclose()


def test_gate_hold_off_extends_never_shortens() -> None:
    now = [100.0]
    gate = RateLimitGate(clock=lambda: now[0])
    assert gate.remaining_s == 0
    gate.hold_off(5)
    assert gate.held_until == 105
    gate.hold_off(1)
    assert gate.held_until == 105
    now[0] = 103
    gate.hold_off(10)
    assert gate.held_until == 113


@pytest.mark.parametrize(
    "fault",
    [
        Fault.overloaded(),
        Fault.server_error(),
        Fault.mid_stream_error(kind="overloaded_error"),
        Fault.mid_stream_error(kind="api_error"),
        Fault.truncated_stream(),
        Fault.truncated_stream(abrupt=True),
    ],
    ids=["529", "500", "midstream-overloaded", "midstream-api", "truncated", "truncated-abrupt"],
)
async def test_transient_failures_are_retried(
    client: AnthropicModelClient, sim: Simulator, notices: list[RetryNotice], fault: Fault
) -> None:
    sim.inject(fault, times=2)
    resp = await client.complete(req())
    assert resp.retries == 2
    assert resp.stop_reason == "tool_use" and len(resp.content) == 2
    assert len(sim.requests) == 3
    assert [n.attempt for n in notices] == [1, 2]


async def test_other_mid_stream_errors_are_not_retried(
    client: AnthropicModelClient, sim: Simulator
) -> None:
    sim.inject(Fault.mid_stream_error(kind="invalid_request_error", message="bad thing"), times=1)
    with pytest.raises(ModelRequestError, match="bad thing"):
        await client.complete(req())
    assert len(sim.requests) == 1


async def test_bad_request_is_not_retried(
    client: AnthropicModelClient, sim: Simulator, notices: list[RetryNotice]
) -> None:
    sim.inject(Fault.http_error(400, "invalid_request_error", "messages: broken"), times=1)
    with pytest.raises(ModelRequestError, match="messages: broken"):
        await client.complete(req())
    assert len(sim.requests) == 1 and notices == []


async def test_retries_exhausted(sim: Simulator) -> None:
    c = AnthropicModelClient(
        api_key=KEY,
        base_url=sim.base_url,
        gate=RateLimitGate(),
        max_attempts=3,
        backoff_base_s=0.01,
    )
    try:
        sim.inject(Fault.server_error(), times=5)
        with pytest.raises(ModelUnavailableError, match=r"3 attempts.*500"):
            await c.complete(req())
        assert len(sim.requests) == 3
    finally:
        await c.aclose()


async def test_connection_refused_is_retried_then_unavailable() -> None:
    # Nothing listens on port 9 of localhost: every attempt fails to connect.
    c = AnthropicModelClient(
        api_key=KEY,
        base_url="http://127.0.0.1:9",
        gate=RateLimitGate(),
        max_attempts=2,
        backoff_base_s=0.01,
    )
    try:
        with pytest.raises(ModelUnavailableError, match="connection"):
            await c.complete(req())
    finally:
        await c.aclose()


# -- errors that must not be retried ---------------------------------------------------------------


async def test_bad_key_is_an_auth_error_at_once_without_the_key(sim: Simulator) -> None:
    bad = "sk-ant-WRONG-KEY-0123456789"
    c = AnthropicModelClient(api_key=bad, base_url=sim.base_url, gate=RateLimitGate())
    try:
        with pytest.raises(ModelAuthError) as info:
            await c.complete(req())
        assert len(sim.requests) == 1
        msg = str(info.value)
        assert "401" in msg and "ANTHROPIC_API_KEY" in msg
        assert bad not in msg and bad not in repr(info.value) and bad not in repr(c)
        with pytest.raises(ModelAuthError):
            await c.verify(MODEL)
    finally:
        await c.aclose()


async def test_unknown_model(client: AnthropicModelClient, sim: Simulator) -> None:
    with pytest.raises(ModelNotFoundError, match="unknown model 'claude-nonesuch-9'"):
        await client.complete(req(model="claude-nonesuch-9"))
    assert len(sim.requests) == 1


async def test_404_not_about_the_model_is_a_request_error(sim: Simulator) -> None:
    c = AnthropicModelClient(api_key=KEY, base_url=sim.base_url + "/nope", gate=RateLimitGate())
    try:
        with pytest.raises(ModelRequestError, match="404") as info:
            await c.complete(req())
        assert not isinstance(info.value, ModelNotFoundError)
        assert len(sim.requests) == 1
    finally:
        await c.aclose()


async def test_verify_and_count_tokens(client: AnthropicModelClient) -> None:
    await client.verify(MODEL)
    n = await client.count_tokens(req(system=LONG_SYSTEM))
    assert n > 1000


# -- pricing ---------------------------------------------------------------------------------------


def test_pricing_table() -> None:
    p = Pricing.load()
    assert p.as_of == "2026-11-01"
    assert p.is_known("claude-sonnet-4-5-20250929")
    assert p.price("claude-sonnet-4-5-20250929") == p.price("claude-sonnet-4-5")
    assert p.price("claude-opus-4-1-20250805").input == 15.0
    assert p.price("claude-opus-4-5-20251101").input == 5.0  # longest prefix wins
    assert p.price("claude-sonnet-4-20250514") == p.price("claude-sonnet-4-0")
    assert not p.is_known("claude-opus-4-10")  # a "-" boundary: no match on claude-opus-4-1
    assert p.context_window("claude-haiku-4-5") == 200_000
    for name in ["claude-opus-4-5", "claude-sonnet-4-6", "claude-haiku-4-5", "sim-model"]:
        price = p.price(name)
        assert price.cache_write_5m == pytest.approx(price.input * 1.25)
        assert price.cache_read == pytest.approx(price.input * 0.1)
    assert not p.is_known("gpt-9")
    assert p.price("gpt-9") == p.default
    usage = Usage(1_000_000, 1_000_000, 1_000_000, 1_000_000)
    assert p.cost("sim-model", usage) == pytest.approx(3 + 15 + 3.75 + 0.3)
    assert p.cost("gpt-9", Usage(1_000_000)) == pytest.approx(p.default.input)
