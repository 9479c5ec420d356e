"""The model client's two ways of calling: a plain POST read as raw JSON (the default) and a
stream through the SDK. Both give the same ModelResponse for the same answer: content (text and
tool_use blocks), usage with the cache's share, stop reason, cost and model."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import socket
import threading
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

from agentray.model import AnthropicModelClient, ModelRequest, ModelResponse, RateLimitGate
from agentray.model.anthropic_client import STREAM_ABOVE_MAX_TOKENS, _keepalive_socket
from agentray.simulator import Fault, SimRequest, Simulator, text

KEY = "sk-ant-test-PATHSKEY0000"
MODEL = "sim-model"
LONG_SYSTEM = "You are a careful engineer. " * 200  # above the lowered cache minimum
TOOLS = [
    {
        "name": "read_file",
        "description": "Read a file",
        "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}},
    },
    {
        "name": "write_file",
        "description": "Write a file",
        "input_schema": {
            "type": "object",
            "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
        },
    },
]


class TurnPolicy:
    """Answers by turn: text + two tool_use blocks (nested input, unicode), then text only.
    The ids are fixed, so two simulators give the same answers."""

    def respond(self, request: SimRequest) -> list[dict[str, Any]]:
        turn = len(request.body["messages"]) // 2
        if turn % 2 == 0:
            return [
                text(f"turn {turn}: reading, then writing — ünïcödé ✓"),
                {
                    "type": "tool_use",
                    "id": f"toolu_{turn:04d}_a",
                    "name": "read_file",
                    "input": {"path": "src/app.py"},
                },
                {
                    "type": "tool_use",
                    "id": f"toolu_{turn:04d}_b",
                    "name": "write_file",
                    "input": {"path": "out.json", "content": '{"a": [1, 2, {"b": null}]}\n'},
                },
            ]
        return [text(f"turn {turn}: done " + "word " * 40)]


@pytest.fixture
def sims() -> Iterator[tuple[Simulator, Simulator]]:
    pair = (
        Simulator(TurnPolicy(), api_keys={KEY}, min_cache_tokens=200),
        Simulator(TurnPolicy(), api_keys={KEY}, min_cache_tokens=200),
    )
    for sim in pair:
        sim.start()
    try:
        yield pair
    finally:
        for sim in pair:
            sim.stop()


def _client(sim: Simulator, streaming: Any, **kw: Any) -> AnthropicModelClient:
    return AnthropicModelClient(
        api_key=KEY,
        base_url=sim.base_url,
        gate=RateLimitGate(),
        backoff_base_s=0.01,
        backoff_max_s=0.05,
        streaming=streaming,
        **kw,
    )


async def _conversation(client: AnthropicModelClient, turns: int, **kw: Any) -> list[ModelResponse]:
    """A growing conversation, as an agent has: each answer goes back with tool results."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": "start " * 300}]
    responses = []
    for _ in range(turns):
        response = await client.complete(
            ModelRequest(
                model=MODEL, system=LONG_SYSTEM, messages=list(messages), tools=TOOLS, **kw
            )
        )
        responses.append(response)
        messages.append({"role": "assistant", "content": response.content})
        results = [
            {"type": "tool_result", "tool_use_id": b["id"], "content": "ok"}
            for b in response.content
            if b["type"] == "tool_use"
        ]
        messages.append({"role": "user", "content": results or "go on"})
    return responses


def _comparable(response: ModelResponse) -> dict[str, Any]:
    fields = dataclasses.asdict(response)
    for varying in ("duration_s", "request_id"):
        fields.pop(varying)
    return fields


async def test_plain_and_streamed_calls_give_the_same_responses(
    sims: tuple[Simulator, Simulator],
) -> None:
    plain_sim, stream_sim = sims
    plain, streamed = _client(plain_sim, "never"), _client(stream_sim, "always")
    try:
        got_plain = await _conversation(plain, 4)
        got_streamed = await _conversation(streamed, 4)
    finally:
        await plain.aclose()
        await streamed.aclose()

    assert [r.body.get("stream") for r in plain_sim.requests] == [None] * 4
    assert [r.body.get("stream") for r in stream_sim.requests] == [True] * 4
    assert [_comparable(r) for r in got_plain] == [_comparable(r) for r in got_streamed]
    # the same request either way (the plain body is encoded by hand, its tools reused per turn)
    for sent_plain, sent_streamed in zip(plain_sim.requests, stream_sim.requests, strict=True):
        streamed_body = {k: v for k, v in sent_streamed.body.items() if k != "stream"}
        assert sent_plain.body == streamed_body
        assert sent_plain.body["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    first = got_plain[0]
    assert [b["type"] for b in first.content] == ["text", "tool_use", "tool_use"]
    assert first.content[2]["input"] == {
        "path": "out.json",
        "content": '{"a": [1, 2, {"b": null}]}\n',
    }
    assert "ünïcödé ✓" in first.content[0]["text"]
    assert first.stop_reason == "tool_use" and got_plain[1].stop_reason == "end_turn"
    # the cache's share of the usage: written on the first call, read on the next ones
    assert first.usage.cache_creation_input_tokens > 0
    assert all(r.usage.cache_read_input_tokens > 0 for r in got_plain[1:])
    assert all(r.cost_usd > 0 and r.model == MODEL for r in got_plain)
    assert all(r.request_id for r in (*got_plain, *got_streamed))


async def test_a_cut_answer_says_max_tokens_on_both_paths(
    sims: tuple[Simulator, Simulator],
) -> None:
    plain_sim, stream_sim = sims
    plain, streamed = _client(plain_sim, "never"), _client(stream_sim, "always")
    try:
        (cut_plain,) = await _conversation(plain, 1, max_tokens=5)
        (cut_streamed,) = await _conversation(streamed, 1, max_tokens=5)
    finally:
        await plain.aclose()
        await streamed.aclose()
    assert cut_plain.stop_reason == cut_streamed.stop_reason == "max_tokens"
    assert _comparable(cut_plain) == _comparable(cut_streamed)


async def test_auto_streams_only_long_answers(sims: tuple[Simulator, Simulator]) -> None:
    sim, _ = sims
    client = _client(sim, "auto")
    try:
        await _conversation(client, 1, max_tokens=STREAM_ABOVE_MAX_TOKENS)
        await _conversation(client, 1, max_tokens=STREAM_ABOVE_MAX_TOKENS + 1)
    finally:
        await client.aclose()
    assert [r.body.get("stream") for r in sim.requests] == [None, True]


@pytest.mark.parametrize("streaming", ["never", "always"])
@pytest.mark.parametrize(
    "fault",
    [
        Fault.mid_stream_error(kind="overloaded_error"),
        Fault.truncated_stream(),
        Fault.truncated_stream(abrupt=True),
        Fault.disconnect(),
    ],
    ids=["midstream-overloaded", "truncated", "truncated-abrupt", "disconnect"],
)
async def test_both_paths_retry_broken_answers(
    sims: tuple[Simulator, Simulator], streaming: str, fault: Fault
) -> None:
    sim, _ = sims
    sim.inject(fault, times=1)
    client = _client(sim, streaming)
    try:
        (response,) = await _conversation(client, 1)
    finally:
        await client.aclose()
    assert response.retries == 1 and response.stop_reason == "tool_use"
    assert len(response.content) == 3


async def test_many_agents_at_once_reuse_their_connections(
    sims: tuple[Simulator, Simulator],
) -> None:
    """40 agents' calls at once over one client are all answered; a second round of 40 goes over
    the connections the first opened (kept alive), not 40 new ones."""
    sim, _ = sims
    client = _client(sim, "never")
    port = int(sim.base_url.rsplit(":", 1)[1].rstrip("/"))

    async def ask(agent: str) -> str:
        response = await client.complete(
            ModelRequest(
                model=MODEL,
                system="be brief",
                messages=[{"role": "user", "content": agent}],
                agent_id=agent,
            )
        )
        return str(response.content[0]["text"])

    def open_connections() -> set[int]:
        return {
            c.laddr.port
            for c in psutil.Process().net_connections(kind="tcp")
            if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
        }

    try:
        agents = [f"a{i:03d}" for i in range(40)]
        many = await asyncio.gather(*(ask(a) for a in agents))
        first = open_connections()
        again = await asyncio.gather(*(ask(a) for a in agents))
        second = open_connections()
    finally:
        await client.aclose()
    assert many == again and len(set(many)) == 1 and len(sim.requests) == 80
    assert 1 <= len(first) <= 40
    assert len(second - first) <= len(second) // 2, (first, second)  # mostly the same sockets


def test_connections_probe_an_idle_peer_as_the_sdk_does() -> None:
    """A plain call is silent until its answer: the client's sockets carry TCP keepalive (60 s
    idle, 60 s apart, 5 probes), so a NAT gateway does not drop a long call."""
    addr = socket.getaddrinfo("127.0.0.1", 80, type=socket.SOCK_STREAM)[0]
    with _keepalive_socket(addr) as sock:
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 60
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 60
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 5


async def test_each_request_carries_the_transcript_as_it_is_now(
    sims: tuple[Simulator, Simulator],
) -> None:
    """The client reuses the encoding of messages it sent before (the same objects), so every
    request must still carry exactly the transcript of that call: a message replaced by a new
    dict at the same place (a merged user turn), a transcript cut short (a compaction) and a
    second agent with the same transcript objects all arrive as they are at that call."""
    sim, _ = sims
    client = _client(sim, "never")
    first = {"role": "user", "content": "start " * 300}
    reply = {"role": "assistant", "content": [text("on it")]}
    results = {"role": "user", "content": [{"type": "text", "text": "results"}]}
    transcripts = [
        [first],
        [first, reply, results],
        [first, reply, {"role": "user", "content": [{"type": "text", "text": "results, merged"}]}],
        [first, reply, results, {"role": "assistant", "content": [text("more")]}, results],
        [{"role": "user", "content": "summary of the work so far"}],  # compacted
        [first, reply, results],
    ]
    # the system prompt is encoded once per prompt object: a new prompt, even of one agent, or
    # a list of blocks arrives as it is too
    changed = "".join(["s", "2"])
    systems: list[Any] = ["s", "s", "s", changed, [text("as blocks")], "s"]
    try:
        for i, messages in enumerate(transcripts):
            await client.complete(
                ModelRequest(
                    model=MODEL,
                    system=systems[i],
                    messages=messages,
                    agent_id="a002" if i < 5 else "a003",
                )
            )
    finally:
        await client.aclose()
    assert [r.body["system"] for r in sim.requests] == [
        [{"type": "text", "text": t, "cache_control": {"type": "ephemeral"}}]
        for t in ("s", "s", "s", "s2", "as blocks", "s")
    ]

    def texts(message: dict[str, Any]) -> list[str]:
        content = message["content"]
        if isinstance(content, str):
            return [content]
        return [block.get("text", "") for block in content]

    sent = [[texts(m) for m in request.body["messages"]] for request in sim.requests]
    assert sent == [[texts(m) for m in messages] for messages in transcripts]
    # and the cache markers moved with the transcript: the last message carries one each time
    for request in sim.requests:
        assert "cache_control" in request.body["messages"][-1]["content"][-1]


class _Proxy:
    """An HTTP proxy on 127.0.0.1 that answers every request itself with one message, and keeps
    each request line it was sent (absolute-form: the URL the client wanted)."""

    ANSWER = json.dumps(
        {
            "id": "msg_proxy", "type": "message", "role": "assistant", "model": MODEL,
            "content": [{"type": "text", "text": "via the proxy"}], "stop_reason": "end_turn",
            "stop_sequence": None, "usage": {"input_tokens": 3, "output_tokens": 4},
        }
    ).encode()  # fmt: skip

    def __init__(self) -> None:
        self.request_lines: list[str] = []
        self._server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._server.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
                while len(body) < length:
                    body += conn.recv(65536)
                self.request_lines.append(head.split(b"\r\n")[0].decode())
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n"
                    b"content-length: " + str(len(self.ANSWER)).encode() + b"\r\n\r\n" + self.ANSWER
                )

    def close(self) -> None:
        self._server.close()


async def test_a_proxy_in_the_environment_carries_the_calls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """HTTPS_PROXY / HTTP_PROXY as httpx reads them: every call goes through the proxy (httpx
    ignores the environment's proxies for a client given a transport of its own)."""
    proxy = _Proxy()
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, proxy.url)
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    client = AnthropicModelClient(
        api_key=KEY, base_url="http://api.agentray-test.invalid", gate=RateLimitGate(),
        max_attempts=1,
    )  # fmt: skip
    try:
        response = await client.complete(
            ModelRequest(model=MODEL, system="s", messages=[{"role": "user", "content": "hi"}])
        )
    finally:
        await client.aclose()
        proxy.close()
    assert response.content == [{"type": "text", "text": "via the proxy"}]
    assert proxy.request_lines == ["POST http://api.agentray-test.invalid/v1/messages HTTP/1.1"]
