"""The Anthropic Messages API behind :class:`ModelClient`: caching, retries, cost; plain or streamed calls.

A call is a plain (non-streaming) POST whose JSON answer is read as it is, without the SDK's
request copy or its pydantic models: at 60 agents that halves the CPU of a model turn. It streams
when the reply may be long (``max_tokens`` above :data:`STREAM_ABOVE_MAX_TOKENS`, where a silent
wait for the whole answer could outlast proxies' idle timeouts) or when asked to (``streaming``).

This is the only module of Agentray that imports ``anthropic``.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import random
import socket
import time
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, cast

import aiohttp
import anthropic
import httpx2

# the SDK's own aiohttp transport (what anthropic.DefaultAioHttpClient uses), given a session
# of ours for the keepalive socket options the SDK's default client sets
from anthropic._vendor.httpx_aiohttp import AiohttpTransport

from agentray.errors import (
    ModelAuthError,
    ModelError,
    ModelNotFoundError,
    ModelRequestError,
    ModelUnavailableError,
)
from agentray.model._caching import add_cache_breakpoints
from agentray.model._pricing import Pricing
from agentray.model._ratelimit import RateLimitGate, default_gate
from agentray.model._types import ModelRequest, ModelResponse, RetryNotice, Usage

__all__ = [
    "DEFAULT_BASE_URL",
    "MAX_RETRY_AFTER_S",
    "STREAM_ABOVE_MAX_TOKENS",
    "AnthropicModelClient",
    "endpoint_problem",
]

log = logging.getLogger("agentray.model")

# the SDK's endpoint when neither a base URL nor ANTHROPIC_BASE_URL is given
DEFAULT_BASE_URL = "https://api.anthropic.com"
MAX_RETRY_AFTER_S = 120.0  # a server-given retry-after is honoured in full up to this
_RETRYABLE_STREAM_ERRORS = frozenset({"overloaded_error", "api_error"})
# A call whose max_tokens is above this streams (the SDK also refuses plain calls that may take
# longer than 10 minutes, and some models' plain calls above 8192 tokens); at or below it, one
# plain POST with the client's explicit timeout.
STREAM_ABOVE_MAX_TOKENS = 8192
_JSON_HEADERS = {"content-type": "application/json"}
# the SDK's own connection limits (1000 connections, keep-alive expiry)
_SDK_LIMITS = anthropic.DEFAULT_CONNECTION_LIMITS
_JSON_KEPT = 512  # encoded system prompts and tool lists kept (each agent's loop has its own)
_TRANSCRIPTS_KEPT = 512  # agents whose encoded messages are kept
_T = TypeVar("_T")


class _BrokenStream(Exception):
    """The stream ended without ``message_stop`` or could not be parsed: the reply is incomplete."""


@dataclass(frozen=True)
class _Failure:
    """What one failed attempt means: retry (with an optional server delay) or give up with ``error``."""

    reason: str
    retry: bool
    retry_after_s: float | None = None
    rate_limited: bool = False
    error: ModelError | None = None


def _parse_retry_after(headers: Any) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date); None if absent."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    parsed = email.utils.parsedate_tz(value)
    if parsed is None:
        return None
    return max(0.0, float(email.utils.mktime_tz(parsed) - time.time()))


def _api_message(exc: anthropic.APIStatusError) -> str:
    msg = exc.api_message
    if isinstance(msg, str) and msg:
        return msg
    return exc.message or f"HTTP {exc.status_code}"


def _stream_error_type(exc: anthropic.APIStatusError) -> str | None:
    if exc.type:
        return str(exc.type)
    body = exc.body
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and isinstance(err.get("type"), str):
            return str(err["type"])
    return None


def _classify(exc: BaseException, model: str) -> _Failure | None:
    """Map an exception from one attempt; None means it is not ours to handle (a bug): re-raise."""
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        if status == 200:
            # An SSE ``event: error`` after the 200 headers.
            kind = _stream_error_type(exc) or "unknown_error"
            if kind in _RETRYABLE_STREAM_ERRORS:
                return _Failure(f"stream error: {kind}", retry=True)
            return _Failure(
                kind,
                retry=False,
                error=ModelRequestError(f"the model stream failed ({kind}): {_api_message(exc)}"),
            )
        if status in (401, 403):
            return _Failure(
                f"HTTP {status}",
                retry=False,
                error=ModelAuthError(
                    f"the API key was rejected ({status}): check ANTHROPIC_API_KEY or `agentray key set`"
                ),
            )
        if status == 404:
            msg = _api_message(exc)
            if "model" in msg.lower() or model in msg:
                return _Failure(
                    "HTTP 404", retry=False, error=ModelNotFoundError(f"unknown model {model!r}")
                )
            return _Failure(
                "HTTP 404", retry=False, error=ModelRequestError(f"not found (404): {msg}")
            )
        retry_after = _parse_retry_after(exc.response.headers)
        if status == 429:
            return _Failure(
                "rate limited (429)", retry=True, retry_after_s=retry_after, rate_limited=True
            )
        if status == 529:
            return _Failure("overloaded (529)", retry=True, retry_after_s=retry_after)
        if status == 408 or (status >= 500 and status != 501):
            return _Failure(f"server error ({status})", retry=True, retry_after_s=retry_after)
        return _Failure(
            f"HTTP {status}",
            retry=False,
            error=ModelRequestError(f"the request was rejected ({status}): {_api_message(exc)}"),
        )
    if isinstance(exc, anthropic.APITimeoutError):
        return _Failure("timed out", retry=True)
    if isinstance(exc, anthropic.APIConnectionError):
        return _Failure(f"connection error: {exc.message}", retry=True)
    if isinstance(exc, httpx2.TransportError):
        # Raised straight from the body iterator when the connection drops mid-stream.
        return _Failure(f"connection broken mid-stream ({type(exc).__name__})", retry=True)
    if isinstance(exc, _BrokenStream):
        return _Failure(str(exc), retry=True)
    if isinstance(exc, anthropic.APIError):
        # e.g. a response the SDK could not validate: retrying the same request will not help.
        return _Failure(
            type(exc).__name__,
            retry=False,
            error=ModelRequestError(f"unexpected answer from the model endpoint: {exc.message}"),
        )
    return None


def endpoint_problem(base_url: str | None, timeout_s: float = 5.0) -> str | None:
    """Why the Messages API at ``base_url`` cannot be reached, or None if it can.

    One TCP connect to its host and port (or to the proxy the SDK would go through): a refused
    connection, an unknown host or silence is said at once, before anything is created, instead
    of after the SDK's retries for transient errors. Says nothing of key or model."""
    url = urllib.parse.urlsplit(base_url or DEFAULT_BASE_URL)
    if url.scheme not in ("http", "https") or not url.hostname:
        return "not an http(s) URL"
    try:
        port = url.port or (443 if url.scheme == "https" else 80)
    except ValueError:
        return "its port is not a number from 0 to 65535"
    host, via = url.hostname, ""
    proxies = urllib.request.getproxies()
    proxy = proxies.get(url.scheme) or proxies.get("all")
    if proxy and not urllib.request.proxy_bypass(host):
        parsed = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        if parsed.hostname:
            with contextlib.suppress(ValueError):
                host, port = parsed.hostname, parsed.port or 80
                via = f" (through the proxy {parsed.hostname})"
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except ConnectionRefusedError:
        return f"connection refused{via}"
    except socket.gaierror:
        return f"unknown host {host}{via}"
    except TimeoutError:
        return f"no answer within {timeout_s:g} s{via}"
    except OSError as error:
        return f"{(error.strerror or str(error)).lower()}{via}"


def _block_to_dict(block: Any) -> dict[str, Any]:
    kind = getattr(block, "type", None)
    if kind == "text":
        return {"type": "text", "text": block.text}
    if kind == "tool_use":
        raw_input = block.input
        return {
            "type": "tool_use",
            "id": block.id,
            "name": block.name,
            "input": dict(raw_input) if isinstance(raw_input, dict) else raw_input,
        }
    # thinking and other blocks are kept whole: they must go back to the API unchanged.
    return cast(dict[str, Any], block.model_dump(mode="json", exclude_none=True))


def _usage(raw: Any) -> Usage:
    def n(name: str) -> int:
        return int(getattr(raw, name, None) or 0)

    return Usage(
        input_tokens=n("input_tokens"),
        output_tokens=n("output_tokens"),
        cache_creation_input_tokens=n("cache_creation_input_tokens"),
        cache_read_input_tokens=n("cache_read_input_tokens"),
    )


def _usage_from_json(raw: Any) -> Usage:
    def n(name: str) -> int:
        value = raw.get(name) if isinstance(raw, dict) else None
        return int(value or 0)

    return Usage(
        input_tokens=n("input_tokens"),
        output_tokens=n("output_tokens"),
        cache_creation_input_tokens=n("cache_creation_input_tokens"),
        cache_read_input_tokens=n("cache_read_input_tokens"),
    )


def _without_none(value: Any) -> Any:
    """What ``model_dump(exclude_none=True)`` leaves of a JSON value."""
    if isinstance(value, dict):
        return {k: _without_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_none(v) for v in value]
    return value


def _json_block(block: Any) -> dict[str, Any]:
    """A content block of a plain answer, in the form ``_block_to_dict`` gives a streamed one."""
    if not isinstance(block, dict):
        raise _BrokenStream("the answer holds a content block that is not an object")
    kind = block.get("type")
    if kind == "text":
        if not isinstance(block.get("text"), str):
            raise _BrokenStream("the answer holds a text block without text")
        return {"type": "text", "text": block["text"]}
    if kind == "tool_use":
        if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str):
            raise _BrokenStream("the answer holds a tool_use block without id or name")
        raw_input = block.get("input")
        return {
            "type": "tool_use",
            "id": block["id"],
            "name": block["name"],
            "input": raw_input if raw_input is not None else {},
        }
    # thinking and other blocks are kept whole: they must go back to the API unchanged.
    return cast(dict[str, Any], _without_none(block))


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _keepalive_socket(addr_info: Any) -> socket.socket:
    """A client socket with TCP keepalive as the SDK's own client sets it (probe after 60 s idle,
    every 60 s, 5 tries): a long plain call is silent until its answer, and NAT gateways and load
    balancers drop connections idle for a few minutes."""
    family, kind, proto, _, _ = addr_info
    sock = socket.socket(family=family, type=kind, proto=proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for name, value in (("TCP_KEEPINTVL", 60), ("TCP_KEEPCNT", 5), ("TCP_KEEPIDLE", 60)):
        number = getattr(socket, name, None)
        if number is not None:
            sock.setsockopt(socket.IPPROTO_TCP, number, value)
    return sock


def _http_client() -> httpx2.AsyncClient:
    """The SDK's aiohttp-backed client (``anthropic[aiohttp]``), its connections made with TCP
    keepalive. aiohttp parses HTTP in C: at 60 agents a model turn costs the engine about a
    quarter less CPU than over httpx's own pure-Python connection pool.

    With a proxy in the environment it is the SDK's aiohttp client as it comes: httpx honours
    HTTP(S)_PROXY / ALL_PROXY / NO_PROXY only for a client not given a transport of its own."""
    proxies = urllib.request.getproxies()  # what httpx reads from the environment too
    if any(proxies.get(scheme) for scheme in ("http", "https", "all")):
        return anthropic.DefaultAioHttpClient()
    limits = _SDK_LIMITS
    context = httpx2.create_ssl_context()  # once: making one costs ~20 ms

    def session() -> aiohttp.ClientSession:  # made on the first request, inside the running loop
        connector = aiohttp.TCPConnector(
            ssl=context,
            limit=limits.max_connections or 0,
            keepalive_timeout=limits.keepalive_expiry,
            socket_factory=_keepalive_socket,
        )
        return aiohttp.ClientSession(connector=connector)

    return anthropic.DefaultAioHttpClient(transport=AiohttpTransport(verify=context, client=session))


@dataclass(frozen=True)
class _Reply:
    content: list[dict[str, Any]]
    stop_reason: str | None
    usage: Usage
    model: str
    request_id: str | None


class AnthropicModelClient:
    """:class:`agentray.model.ModelClient` over ``anthropic.AsyncAnthropic``; retries are ours."""

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None = None,
        pricing: Pricing | None = None,
        gate: RateLimitGate | None = None,
        max_attempts: int = 6,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        on_retry: Callable[[RetryNotice], None] | None = None,
        timeout_s: float = 600.0,
        streaming: Literal["auto", "always", "never"] = "auto",
    ) -> None:
        """``timeout_s``: a plain call's whole answer, or a streamed call's silence between
        events. ``streaming``: ``auto`` streams only calls whose max_tokens is above
        :data:`STREAM_ABOVE_MAX_TOKENS`; ``always`` (a live consumer of the text) and ``never``."""
        if streaming not in ("auto", "always", "never"):
            raise ValueError(f"streaming must be auto, always or never, not {streaming!r}")
        self._api_key = api_key
        self.timeout_s = timeout_s
        self.streaming = streaming
        # id(system prompt or tool list) -> (it, its JSON with the cache marker)
        self._json_kept: dict[int, tuple[object, str]] = {}
        # agent id -> its transcript's messages as last sent, each with its JSON
        self._messages_kept: dict[str, list[tuple[dict[str, Any], str]]] = {}
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key,
            base_url=base_url,
            max_retries=0,
            timeout=timeout_s,
            http_client=_http_client(),
        )
        # the messages endpoint as the SDK merges it with base_url, merged and parsed once: given
        # a string, the SDK and httpx would parse it three times per call (~25 us each)
        base = self._client.base_url
        self._messages_url = base.copy_with(raw_path=base.raw_path + b"v1/messages")
        self.pricing = pricing if pricing is not None else Pricing.load()
        self.gate = gate if gate is not None else default_gate()
        self.max_attempts = max(1, max_attempts)
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.on_retry = on_retry

    def __repr__(self) -> str:  # never shows the key
        return f"AnthropicModelClient(base_url={str(self._client.base_url)!r})"

    # -- public -----------------------------------------------------------------------------------

    async def complete(self, request: ModelRequest) -> ModelResponse:
        system, tools, messages = add_cache_breakpoints(
            request.system, request.tools, request.messages
        )
        kwargs: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "messages": messages,
        }
        if system:
            kwargs["system"] = system
        if tools:
            kwargs["tools"] = tools

        started = time.monotonic()
        if self._streams(request):
            reply, retries = await self._with_retries(
                lambda: self._stream_once(kwargs), request.model, request.agent_id
            )
        else:
            body = self._plain_body(request, kwargs)
            reply, retries = await self._with_retries(
                lambda: self._post_once(body), request.model, request.agent_id
            )
        return ModelResponse(
            content=reply.content,
            stop_reason=reply.stop_reason,
            usage=reply.usage,
            cost_usd=self.pricing.cost(request.model, reply.usage),
            model=reply.model or request.model,
            duration_s=time.monotonic() - started,
            request_id=reply.request_id,
            retries=retries,
        )

    async def count_tokens(self, request: ModelRequest) -> int:
        kwargs: dict[str, Any] = {"model": request.model, "messages": request.messages}
        if request.system:
            kwargs["system"] = request.system
        if request.tools:
            kwargs["tools"] = request.tools

        async def once() -> int:
            result = await self._client.messages.count_tokens(**kwargs)
            return int(result.input_tokens)

        count, _ = await self._with_retries(once, request.model, request.agent_id)
        return count

    async def verify(self, model: str = "claude-haiku-4-5") -> None:
        """One cheap call to check key, endpoint and model; raises a :class:`ModelError` if they fail."""
        messages: list[dict[str, Any]] = [{"role": "user", "content": "ping"}]

        async def once() -> None:
            try:
                await self._client.messages.count_tokens(model=model, messages=cast(Any, messages))
            except anthropic.NotFoundError as exc:
                if "model" in _api_message(exc).lower():
                    raise
                # An endpoint without count_tokens (a proxy): a one-token reply checks the same things.
                await self._client.messages.create(
                    model=model, max_tokens=1, messages=cast(Any, messages)
                )

        await self._with_retries(once, model, None, max_attempts=min(2, self.max_attempts))

    async def aclose(self) -> None:
        await self._client.close()

    # -- internals --------------------------------------------------------------------------------

    def _plain_body(self, request: ModelRequest, kwargs: dict[str, Any]) -> bytes:
        """``kwargs`` as JSON, with what the agent's previous call already encoded reused: its
        tools, and every message of the transcript that came back unchanged (the same object;
        transcripts only grow, and only the messages carrying a cache marker are new copies).
        Encoding the whole transcript again each turn grows with the transcript."""
        rest = {k: v for k, v in kwargs.items() if k not in ("system", "tools", "messages")}
        parts = [_dumps(rest)[:-1], ',"messages":[', self._messages_json(request, kwargs), "]"]
        for key, source in (("system", request.system), ("tools", request.tools)):
            value = kwargs.get(key)
            if value is not None:
                parts += [f',"{key}":', self._encoded_once(source, value)]
        parts.append("}")
        return "".join(parts).encode()

    def _encoded_once(self, source: object, value: Any) -> str:
        """``value`` (made from ``source``) as JSON, encoded once per ``source`` object: an agent
        sends the same system prompt and tools every turn, and the prompt may carry the project's
        instruction files."""
        kept = self._json_kept.get(id(source))
        if kept is None or kept[0] is not source:
            if len(self._json_kept) >= _JSON_KEPT:
                self._json_kept.clear()
            kept = self._json_kept[id(source)] = (source, _dumps(value))
        return kept[1]

    def _messages_json(self, request: ModelRequest, kwargs: dict[str, Any]) -> str:
        messages: list[dict[str, Any]] = kwargs["messages"]
        if request.agent_id is None:
            return ",".join(_dumps(m) for m in messages)
        kept = self._messages_kept.get(request.agent_id)
        if kept is None:
            if len(self._messages_kept) >= _TRANSCRIPTS_KEPT:
                self._messages_kept.clear()
            kept = self._messages_kept[request.agent_id] = []
        encoded: list[str] = []
        for i, message in enumerate(messages):
            if i < len(kept) and kept[i][0] is message:
                encoded.append(kept[i][1])
                continue
            text = _dumps(message)
            if i < len(kept):
                kept[i] = (message, text)
            else:
                kept.append((message, text))
            encoded.append(text)
        del kept[len(messages) :]
        return ",".join(encoded)

    def _streams(self, request: ModelRequest) -> bool:
        if self.streaming == "auto":
            return request.max_tokens > STREAM_ABOVE_MAX_TOKENS
        return self.streaming == "always"

    async def _post_once(self, body: bytes) -> _Reply:
        """One plain POST of the already-encoded body; the JSON answer is read without models.

        Errors come back as the SDK's (APIStatusError for a non-2xx answer, APIConnectionError
        for a connection that fails or a body cut short), so ``_classify`` treats both paths
        alike."""
        response = await self._client.post(
            # a parsed URL where the SDK types a str: the SDK and httpx both take it as it is
            cast(str, self._messages_url),
            cast_to=httpx2.Response,
            content=body,
            # max_retries given (the client's is 0 too: retries are ours) spares the SDK a copy
            options={"headers": _JSON_HEADERS, "timeout": self.timeout_s, "max_retries": 0},
        )
        try:
            message = json.loads(response.content)
        except ValueError as exc:
            raise _BrokenStream(f"malformed answer ({type(exc).__name__})") from exc
        if not isinstance(message, dict) or message.get("type") != "message":
            raise _BrokenStream("the answer is not a message")
        content = message.get("content")
        if not isinstance(content, list):
            raise _BrokenStream("the answer has no content list")
        stop_reason = message.get("stop_reason")
        if not isinstance(stop_reason, str):
            raise _BrokenStream("the answer has no stop_reason")
        model = message.get("model")
        return _Reply(
            content=[_json_block(b) for b in content],
            stop_reason=stop_reason,
            usage=_usage_from_json(message.get("usage")),
            model=model if isinstance(model, str) else "",
            request_id=response.headers.get("request-id"),
        )

    async def _stream_once(self, kwargs: dict[str, Any]) -> _Reply:
        async with self._client.messages.stream(**kwargs) as stream:
            saw_stop = False
            try:
                async for event in stream:
                    if event.type == "message_stop":
                        saw_stop = True
            except (ValueError, RuntimeError, AssertionError) as exc:
                # The SDK failing to assemble the events (cut-off JSON, events out of order).
                raise _BrokenStream(f"malformed stream ({type(exc).__name__})") from exc
            if not saw_stop:
                raise _BrokenStream("the stream ended before message_stop")
            message = stream.current_message_snapshot
            if message.stop_reason is None:
                raise _BrokenStream("the stream ended without a stop_reason")
            return _Reply(
                content=[_block_to_dict(b) for b in message.content],
                stop_reason=message.stop_reason,
                usage=_usage(message.usage),
                model=message.model,
                request_id=stream.request_id,
            )

    def _backoff(self, attempt: int) -> float:
        # Exponential with jitter in [50 %, 100 %], so concurrent callers spread out.
        ceiling = min(self.backoff_max_s, self.backoff_base_s * (2 ** (attempt - 1)))
        return float(ceiling * random.uniform(0.5, 1.0))

    def _scrub(self, text: str) -> str:
        # Belt and braces: the API never echoes the key, but no message of ours may carry it.
        # (Keys too short to be real would only mangle the text.)
        if len(self._api_key) >= 8:
            return text.replace(self._api_key, "[redacted]")
        return text

    async def _with_retries(
        self,
        once: Callable[[], Awaitable[_T]],
        model: str,
        agent_id: str | None,
        *,
        max_attempts: int | None = None,
    ) -> tuple[_T, int]:
        attempts = max_attempts or self.max_attempts
        last_reason = "no attempt made"
        last_exc: BaseException | None = None
        for attempt in range(1, attempts + 1):
            await self.gate.wait()
            try:
                return await once(), attempt - 1
            except Exception as exc:
                failure = _classify(exc, model)
                if failure is None:
                    raise
                last_reason, last_exc = self._scrub(failure.reason), exc
                if not failure.retry:
                    assert failure.error is not None
                    err = type(failure.error)(self._scrub(str(failure.error)))
                    raise err from exc
                if attempt == attempts:
                    break
                if failure.retry_after_s is not None:
                    delay = min(failure.retry_after_s, MAX_RETRY_AFTER_S)
                else:
                    delay = self._backoff(attempt)
                if failure.rate_limited:
                    # Rate limits are per organisation: hold every call of the process, not only ours.
                    self.gate.hold_off(delay)
                log.warning(
                    "model call %s attempt %d/%d failed (%s); retrying in %.2fs",
                    agent_id or "-",
                    attempt,
                    attempts,
                    last_reason,
                    delay,
                )
                self._notify(RetryNotice(agent_id, attempt, delay, last_reason))
                await asyncio.sleep(delay)
        raise ModelUnavailableError(
            f"the model endpoint is unavailable after {attempts} attempt{'' if attempts == 1 else 's'}; "
            f"last error: {last_reason}"
        ) from last_exc

    def _notify(self, notice: RetryNotice) -> None:
        if self.on_retry is None:
            return
        try:
            self.on_retry(notice)
        except Exception:  # a broken listener must not break the call
            log.exception("on_retry callback failed")
