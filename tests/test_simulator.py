"""The Messages-API simulator, driven through the real anthropic SDK over real HTTP."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import pytest

from agentray.simulator import (
    EchoPolicy,
    Fault,
    PromptCache,
    Reply,
    Rule,
    ScriptedPolicy,
    SimRequest,
    Simulator,
    text,
    tool_use,
)
from agentray.simulator._cache import flatten_prompt

MODEL = "sim-model"
TOOLS = [
    {
        "name": "write_file",
        "description": "write a file",
        "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
    },
    {"name": "read_file", "input_schema": {"type": "object"}},
]
WRITE_INPUT = {
    "path": "src/app/main.py",
    "content": 'print("hello")\n' * 6,
    "flags": [1, 2.5, None, True, {"nested": "ü∂"}],
}
SCRIPT = ScriptedPolicy(
    [
        Rule("write something", [[text("Writing it."), tool_use("write_file", **WRITE_INPUT)]]),
        Rule("boom", [lambda req: 1 / 0]),  # type: ignore[list-item]
    ]
)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(SCRIPT, min_cache_tokens=64) as s:
        yield s


def client(sim: Simulator, **kw: Any) -> anthropic.AsyncAnthropic:
    kw.setdefault("api_key", "test-key")
    return anthropic.AsyncAnthropic(base_url=sim.base_url, max_retries=0, **kw)


def user(s: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": s}]


def raw_post(sim: Simulator, path: str, body: object, headers: dict[str, str]) -> tuple[int, dict]:
    req = urllib.request.Request(
        sim.base_url + path,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", **headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.headers["request-id"].startswith("req_")
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        assert e.headers["request-id"].startswith("req_")
        return e.code, json.loads(e.read())


def test_non_stream_create_sync_client(sim: Simulator) -> None:
    c = anthropic.Anthropic(api_key="secret-value-123", base_url=sim.base_url, max_retries=0)
    msg = c.messages.create(model=MODEL, max_tokens=200, messages=user("hello there"))
    assert msg.content[0].type == "text" and msg.content[0].text == "echo: hello there"
    assert msg.stop_reason == "end_turn"
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
    assert msg._request_id is not None and msg._request_id.startswith("req_sim_")
    (rec,) = sim.requests
    # anthropic 2.x sends api_key as a Bearer token; older SDKs used x-api-key.
    assert rec.path == "/v1/messages" and rec.status == 200 and rec.auth_scheme is not None
    assert rec.body["messages"] == user("hello there")
    assert "secret-value-123" not in repr(rec)
    assert sim.stats.requests == 1 and sim.stats.output == msg.usage.output_tokens


async def test_stream_tool_use_input_arrives_in_fragments(sim: Simulator) -> None:
    c = client(sim)
    fragments: list[str] = []
    async with c.messages.stream(
        model=MODEL, max_tokens=4000, tools=TOOLS, messages=user("please write something")
    ) as stream:
        async for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                fragments.append(event.delta.partial_json)
        final = await stream.get_final_message()
    assert len(fragments) >= 3 and json.loads("".join(fragments)) == WRITE_INPUT
    assert [b.type for b in final.content] == ["text", "tool_use"]
    block = final.content[1]
    assert block.type == "tool_use" and block.name == "write_file" and block.input == WRITE_INPUT
    assert block.id.startswith("toolu_")
    assert final.stop_reason == "tool_use" and final.usage.output_tokens > 1


async def test_raw_sse_event_order(sim: Simulator) -> None:
    c = client(sim)
    stream = await c.messages.create(
        model=MODEL, max_tokens=4000, tools=TOOLS, stream=True, messages=user("write something")
    )
    events = [e async for e in stream]
    kinds = [e.type for e in events]
    assert kinds[0] == "message_start" and kinds[-2:] == ["message_delta", "message_stop"]
    assert events[0].message.usage.output_tokens == 1  # type: ignore[union-attr]
    starts = [e for e in events if e.type == "content_block_start"]
    assert starts[0].content_block.type == "text" and starts[0].content_block.text == ""
    assert starts[1].content_block.type == "tool_use" and starts[1].content_block.input == {}
    assert kinds.count("content_block_stop") == 2
    delta = events[-2]
    assert delta.type == "message_delta" and delta.delta.stop_reason == "tool_use"


async def test_bearer_and_x_api_key_auth(sim: Simulator) -> None:
    with Simulator(EchoPolicy(), api_keys={"k1"}) as strict:
        by_token = anthropic.AsyncAnthropic(
            auth_token="k1", base_url=strict.base_url, max_retries=0
        )
        by_key = anthropic.AsyncAnthropic(
            base_url=strict.base_url, max_retries=0, default_headers={"x-api-key": "k1"}
        )
        for c in (by_token, by_key):
            msg = await c.messages.create(model=MODEL, max_tokens=50, messages=user("x"))
            assert msg.content[0].type == "text"
        assert [r.auth_scheme for r in strict.requests] == ["bearer", "x-api-key"]
        assert "authorization" in strict.requests[0].header_names
        assert "x-api-key" in strict.requests[1].header_names

        wrong = anthropic.AsyncAnthropic(api_key="nope", base_url=strict.base_url, max_retries=0)
        with pytest.raises(anthropic.AuthenticationError) as info:
            await wrong.messages.create(model=MODEL, max_tokens=50, messages=user("x"))
        assert info.value.status_code == 401
        assert info.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]

        status, body = raw_post(strict, "/v1/messages", {}, {})  # no key at all
        assert status == 401 and body["error"]["type"] == "authentication_error"


async def test_unknown_model_is_not_found(sim: Simulator) -> None:
    with pytest.raises(anthropic.NotFoundError) as info:
        await client(sim).messages.create(model="claude-nope-9", max_tokens=5, messages=user("x"))
    assert info.value.body["error"] == {
        "type": "not_found_error",
        "message": "model: claude-nope-9",
    }  # type: ignore[index]
    with Simulator(models=None) as anything:
        msg = await client(anything).messages.create(
            model="whatever", max_tokens=5, messages=user("x")
        )
        assert msg.model == "whatever"


def test_bad_request_bodies(sim: Simulator) -> None:
    key = {"x-api-key": "k"}
    status, body = raw_post(sim, "/v1/messages", {"model": MODEL, "messages": user("x")}, key)
    assert status == 400 and body["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in body["error"]["message"]
    status, body = raw_post(sim, "/v1/messages", {"model": MODEL, "max_tokens": 5}, key)
    assert status == 400 and "messages" in body["error"]["message"]
    status, body = raw_post(sim, "/v1/nothing", {}, key)
    assert status == 404 and body["type"] == "error"


async def test_tool_use_without_result_is_rejected(sim: Simulator) -> None:
    msgs = [
        *user("go"),
        {"role": "assistant", "content": [tool_use("read_file", path="a")]},
        {"role": "user", "content": "forgot the result"},
    ]
    with pytest.raises(anthropic.BadRequestError) as info:
        await client(sim).messages.create(model=MODEL, max_tokens=5, tools=TOOLS, messages=msgs)
    assert "tool_result" in str(info.value)


async def test_count_tokens_matches_usage(sim: Simulator) -> None:
    c = client(sim)
    kw: dict[str, Any] = {"model": MODEL, "system": "be brief", "tools": TOOLS}
    counted = await c.messages.count_tokens(messages=user("count me " * 20), **kw)
    msg = await c.messages.create(max_tokens=50, messages=user("count me " * 20), **kw)
    assert counted.input_tokens == msg.usage.input_tokens > 40
    assert sim.requests[0].path == "/v1/messages/count_tokens"


async def test_rate_limit_with_retry_after(sim: Simulator) -> None:
    sim.inject(Fault.rate_limit(retry_after=2))
    with pytest.raises(anthropic.RateLimitError) as info:
        await client(sim).messages.create(model=MODEL, max_tokens=5, messages=user("x"))
    assert info.value.response.headers["retry-after"] == "2"
    assert info.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert sim.faults_fired == ["rate_limit"] and sim.pending_faults == 0

    # A retrying client honours a short retry-after and gets through on its second try.
    sim.inject(Fault.rate_limit(retry_after=0.05))
    retrying = anthropic.AsyncAnthropic(api_key="k", base_url=sim.base_url, max_retries=2)
    msg = await retrying.messages.create(model=MODEL, max_tokens=50, messages=user("again"))
    assert msg.content[0].type == "text"
    assert [r.headers.get("x-stainless-retry-count") for r in sim.requests[-2:]] == ["0", "1"]


async def test_overloaded_and_server_error_in_fifo_order(sim: Simulator) -> None:
    sim.inject(Fault.overloaded())
    sim.inject(Fault.server_error(), times=2)
    c = client(sim)
    with pytest.raises(anthropic.OverloadedError):
        await c.messages.create(model=MODEL, max_tokens=5, messages=user("x"))
    for _ in range(2):
        with pytest.raises(anthropic.InternalServerError) as info:
            await c.messages.create(model=MODEL, max_tokens=5, messages=user("x"))
        assert info.value.status_code == 500
    await c.messages.create(model=MODEL, max_tokens=5, messages=user("x"))
    assert sim.faults_fired == ["overloaded", "server_error", "server_error"]
    assert [r.status for r in sim.requests] == [529, 500, 500, 200]
    assert sim.stats.errors == 3 and sim.stats.requests == 1


async def test_mid_stream_error(sim: Simulator) -> None:
    sim.inject(Fault.mid_stream_error(kind="overloaded_error"))
    seen: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as info:
        async with client(sim).messages.stream(
            model=MODEL, max_tokens=4000, tools=TOOLS, messages=user("write something")
        ) as stream:
            async for event in stream:
                seen.append(event.type)
    assert info.value.status_code == 200
    assert info.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    assert "message_start" in seen and "message_stop" not in seen


async def test_truncated_stream_clean_end_leaves_no_stop_reason(sim: Simulator) -> None:
    sim.inject(Fault.truncated_stream(after_deltas=2))
    async with client(sim).messages.stream(
        model=MODEL, max_tokens=4000, tools=TOOLS, messages=user("write something")
    ) as stream:
        kinds = [e.type async for e in stream]
        final = await stream.get_final_message()
    # The SDK does not notice: it hands back a message with no stop_reason.
    assert final.stop_reason is None
    assert "message_delta" not in kinds and "message_stop" not in kinds
    assert kinds.count("content_block_delta") == 2


async def test_truncated_stream_abrupt_raises_transport_error(sim: Simulator) -> None:
    sim.inject(Fault.truncated_stream(abrupt=True))
    # The SDK does not wrap errors raised while iterating: the raw httpx error comes through.
    with pytest.raises(httpx2.RemoteProtocolError):
        async with client(sim).messages.stream(
            model=MODEL, max_tokens=4000, tools=TOOLS, messages=user("write something")
        ) as stream:
            await stream.get_final_message()


async def test_disconnect_and_latency_faults(sim: Simulator) -> None:
    c = client(sim)
    sim.inject(Fault.disconnect())
    with pytest.raises(anthropic.APIConnectionError):
        await c.messages.create(model=MODEL, max_tokens=5, messages=user("x"))
    sim.inject(Fault.latency(0.3))
    t0 = time.monotonic()
    msg = await c.messages.create(model=MODEL, max_tokens=50, messages=user("slow"))
    assert time.monotonic() - t0 >= 0.3 and msg.stop_reason == "end_turn"
    assert sim.faults_fired == ["disconnect", "latency"]


def _cached_system(big: str) -> list[dict[str, Any]]:
    return [{"type": "text", "text": big, "cache_control": {"type": "ephemeral"}}]


async def test_cache_write_then_read(sim: Simulator) -> None:
    c = client(sim)
    kw: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 50,
        "system": _cached_system("You are a careful agent. " * 40),
        "messages": user("hello"),
    }
    first = await c.messages.create(**kw)
    second = await c.messages.create(**kw)
    assert first.usage.cache_creation_input_tokens > 0 and first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert second.usage.cache_creation_input_tokens == 0
    assert second.usage.input_tokens == first.usage.input_tokens > 0
    # Another key has its own cache.
    other = await client(sim, api_key="someone-else").messages.create(**kw)
    assert other.usage.cache_read_input_tokens == 0 and other.usage.cache_creation_input_tokens > 0
    s = sim.stats
    assert s.cache_read == second.usage.cache_read_input_tokens
    assert s.cache_creation == 2 * first.usage.cache_creation_input_tokens


async def test_prefix_below_minimum_is_not_cached(sim: Simulator) -> None:
    kw: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 5,
        "system": _cached_system("short"),
        "messages": user("x"),
    }
    for _ in range(2):
        msg = await client(sim).messages.create(**kw)
        assert msg.usage.cache_creation_input_tokens == msg.usage.cache_read_input_tokens == 0


async def test_growing_conversation_reuses_prefix(sim: Simulator) -> None:
    """The engine's pattern: a breakpoint on the system and on the newest message only."""
    c = client(sim)
    system = _cached_system("System rules for the agent. " * 30)

    def last_cached(msgs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = [dict(m) for m in msgs]
        last = out[-1]
        last["content"] = [
            {"type": "text", "text": last["content"], "cache_control": {"type": "ephemeral"}}
        ]
        return out

    convo: list[dict[str, Any]] = [{"role": "user", "content": "first question " * 10}]
    r1 = await c.messages.create(
        model=MODEL, max_tokens=50, system=system, messages=last_cached(convo)
    )
    assert r1.usage.cache_read_input_tokens == 0
    prefix1 = r1.usage.cache_creation_input_tokens
    convo += [
        {"role": "assistant", "content": r1.content[0].text},  # type: ignore[union-attr]
        {"role": "user", "content": "second question " * 10},
    ]
    r2 = await c.messages.create(
        model=MODEL, max_tokens=50, system=system, messages=last_cached(convo)
    )
    # Turn 1's prefix is read back although its breakpoint moved on (the API's lookback).
    assert r2.usage.cache_read_input_tokens == prefix1
    assert r2.usage.cache_creation_input_tokens > 0
    total2 = (
        r2.usage.input_tokens
        + r2.usage.cache_read_input_tokens
        + r2.usage.cache_creation_input_tokens
    )
    counted = await c.messages.count_tokens(model=MODEL, system=system, messages=convo)
    assert total2 == counted.input_tokens


def test_prompt_cache_ttl_expires_and_refreshes() -> None:
    now = [0.0]
    cache = PromptCache(min_cache_tokens=1, clock=lambda: now[0])
    body = {"model": "m", "system": _cached_system("abc" * 50), "messages": user("hi")}
    blocks = flatten_prompt(body)
    assert cache.account("k", blocks).cache_creation_input_tokens > 0
    now[0] = 299.0
    assert cache.account("k", blocks).cache_read_input_tokens > 0  # hit refreshes the TTL
    now[0] = 598.0
    assert cache.account("k", blocks).cache_read_input_tokens > 0
    now[0] = 1000.0
    hit = cache.account("k", blocks)
    assert hit.cache_read_input_tokens == 0 and hit.cache_creation_input_tokens > 0


async def test_scripted_policy_reads_tool_results() -> None:
    def report(req: SimRequest) -> Reply:
        (res,) = req.last_tool_results
        assert res.tool_name == "read_file" and not res.is_error
        return Reply([text(f"the file has {res.json['lines']} lines")])

    policy = ScriptedPolicy(
        [Rule(r"count the lines", [[tool_use("read_file", path="a.txt")], report])],
        fallback=EchoPolicy(),
    )
    with Simulator(policy) as sim:
        c = client(sim)
        kw: dict[str, Any] = {"model": MODEL, "max_tokens": 500, "tools": TOOLS}
        convo: list[dict[str, Any]] = user("please count the lines of a.txt")
        r1 = await c.messages.create(messages=convo, **kw)
        assert r1.stop_reason == "tool_use"
        call = r1.content[0]
        assert call.type == "tool_use" and call.input == {"path": "a.txt"}
        convo += [
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in r1.content]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": call.id, "content": '{"lines": 42}'}
                ],
            },
        ]
        r2 = await c.messages.create(messages=convo, **kw)
        assert r2.content[0].type == "text" and r2.content[0].text == "the file has 42 lines"
        assert r2.stop_reason == "end_turn"
        # Replaying turn 1 (a retry) gives the same turn again, with a fresh tool_use id.
        again = await c.messages.create(messages=convo[:1], **kw)
        assert again.content[0].type == "tool_use" and again.content[0].id != call.id
        # Past the end of the script.
        convo += [{"role": "assistant", "content": "ok"}, {"role": "user", "content": "more?"}]
        r3 = await c.messages.create(messages=convo, **kw)
        assert r3.content[0].type == "text" and r3.content[0].text == "(script finished)"
        # No rule matches: the fallback echoes.
        other = await c.messages.create(messages=user("unrelated"), **kw)
        assert other.content[0].type == "text" and other.content[0].text == "echo: unrelated"


async def test_policy_exception_is_api_error(sim: Simulator) -> None:
    with pytest.raises(anthropic.InternalServerError) as info:
        await client(sim).messages.create(model=MODEL, max_tokens=5, messages=user("boom"))
    assert info.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    assert "ZeroDivisionError" in info.value.body["error"]["message"]  # type: ignore[index]


async def test_max_tokens_cuts_the_reply(sim: Simulator) -> None:
    msg = await client(sim).messages.create(model=MODEL, max_tokens=3, messages=user("y" * 400))
    assert msg.stop_reason == "max_tokens" and msg.usage.output_tokens <= 3


async def test_concurrent_streams_and_prompt_stop() -> None:
    with Simulator(EchoPolicy(), latency_s=0.2, chunk_delay_s=0.01) as sim:
        c = client(sim)

        async def one(i: int) -> str:
            async with c.messages.stream(model=MODEL, max_tokens=500, messages=user(f"n{i}")) as s:
                return await s.get_final_text()

        t0 = time.monotonic()
        texts = await asyncio.gather(*(one(i) for i in range(8)))
        assert texts == [f"echo: n{i}" for i in range(8)]
        assert time.monotonic() - t0 < 1.5  # served in parallel, not 8 x 0.2 s
        t0 = time.monotonic()
    # Stopping with idle keep-alive connections still open is quick.
    assert time.monotonic() - t0 < 2.0
    with pytest.raises(RuntimeError):
        _ = sim.base_url
