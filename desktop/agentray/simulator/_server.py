"""The simulator's HTTP server: a stdlib ThreadingHTTPServer on its own daemon thread.

It runs outside any asyncio loop so the engine's loop timing is what it would be against the real
API. Every handler runs on its own thread; shared state is guarded by one lock.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import secrets
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ._cache import CacheResult, PromptCache, flatten_prompt, output_tokens
from ._faults import ERROR_STATUS, Fault, error_body
from ._policy import EchoPolicy, Policy, Reply, SimRequest, as_reply, new_tool_use_id
from ._validate import validate_body
from ._wire import fit_to_max_tokens, message_json, sse_bytes, stream_frames, usage_json

__all__ = ["DEFAULT_MODELS", "RecordedRequest", "SimStats", "Simulator"]

log = logging.getLogger("agentray.simulator")

DEFAULT_MODELS: frozenset[str] = frozenset(
    {
        "claude-sonnet-4-5",
        "claude-sonnet-4-5-20250929",
        "claude-opus-4-1",
        "claude-haiku-4-5",
        "claude-3-5-haiku-latest",
        "claude-sonnet-4-0",
        "claude-opus-4-5",
        "claude-sonnet-4-6",
        "sim-model",
    }
)

# Header values worth keeping for assertions; auth headers are never stored, only their scheme.
_SAFE_HEADER_PREFIXES = ("anthropic-", "x-stainless-", "content-type", "user-agent", "accept")


@dataclass
class RecordedRequest:
    """One request as the simulator saw it. The API key itself is never stored."""

    method: str
    path: str
    body: Any  # the parsed JSON body, or None when it was not JSON
    header_names: list[str]
    headers: dict[str, str]  # non-secret headers only (anthropic-*, x-stainless-*, ...)
    auth_scheme: str | None  # "x-api-key" | "bearer" | None
    request_id: str
    time: float
    fault: Fault | None = None
    status: int = 0
    usage: dict[str, Any] | None = None

    @property
    def sim(self) -> SimRequest:
        return SimRequest(self.body if isinstance(self.body, dict) else {})


@dataclass(frozen=True)
class SimStats:
    """Totals over the model responses produced so far (error responses only count in errors)."""

    requests: int = 0
    errors: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0

    @property
    def input(self) -> int:
        return self.input_tokens

    @property
    def output(self) -> int:
        return self.output_tokens

    @property
    def cache_creation(self) -> int:
        return self.cache_creation_input_tokens

    @property
    def cache_read(self) -> int:
        return self.cache_read_input_tokens


class _ApiError(Exception):
    def __init__(self, error_type: str, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message
        self.status = status or ERROR_STATUS.get(error_type, 500)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default backlog (5) refuses bursts of concurrent agents
    sim: Simulator

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up (cancelled streams, closed pools) are routine, not server errors.
        log.debug("connection from %s ended with an error", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer
    timeout = 600  # idle keep-alive connections are dropped after this

    def setup(self) -> None:
        super().setup()
        # small SSE frames must not wait for delayed ACKs (Nagle): ~40 ms per response otherwise
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.sim._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.sim._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_POST(self) -> None:
        self.server.sim._handle(self)

    def do_GET(self) -> None:
        self.server.sim._handle(self)


class Simulator:
    """An offline Messages API: ``base_url = sim.start()``, then point any Anthropic client at it."""

    def __init__(
        self,
        policy: Policy | None = None,
        *,
        api_keys: set[str] | frozenset[str] | None = None,
        models: set[str] | frozenset[str] | None = DEFAULT_MODELS,
        latency_s: float = 0.0,
        min_cache_tokens: int = 1024,
        host: str = "127.0.0.1",
        port: int = 0,
        chunk_delay_s: float = 0.0,
        context_window: int | None = 200_000,
    ) -> None:
        self.policy: Policy = policy if policy is not None else EchoPolicy()
        self.api_keys = frozenset(api_keys) if api_keys is not None else None
        self.models = frozenset(models) if models is not None else None
        self.latency_s = latency_s  # before the first byte of every /v1/messages answer
        self.chunk_delay_s = chunk_delay_s  # between SSE frames
        self.context_window = context_window
        self.cache = PromptCache(min_cache_tokens)
        self.host, self.port = host, port
        self._lock = threading.Lock()
        self._faults: deque[Fault] = deque()
        self._requests: list[RecordedRequest] = []
        self._fired: list[str] = []
        self._stats = SimStats()
        self._served_ids: set[str] = set()
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> str:
        if self._server is not None:
            return self.base_url
        self._stopping.clear()
        server = _HTTPServer((self.host, self.port), _Handler)
        server.sim = self
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="agentray-sim",
            daemon=True,
        )
        self._thread.start()
        log.info("simulator listening on %s", self.base_url)
        return self.base_url

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()  # wakes handlers sleeping on latency
        server.shutdown()
        server.server_close()
        with self._lock:
            conns = list(self._connections)
        for conn in conns:  # unblock handlers waiting on idle keep-alive connections
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Simulator:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("simulator is not running; call start()")
        return f"http://{self.host}:{self.port}"

    # --- test-facing state -----------------------------------------------------------------
    def inject(self, fault: Fault, times: int = 1) -> None:
        """Queue ``fault`` for the next ``times`` /v1/messages requests (FIFO with earlier ones)."""
        with self._lock:
            self._faults.extend([fault] * times)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    @property
    def pending_faults(self) -> int:
        with self._lock:
            return len(self._faults)

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def message_requests(self) -> list[RecordedRequest]:
        """Only the POST /v1/messages requests."""
        return [r for r in self.requests if r.path == "/v1/messages"]

    @property
    def faults_fired(self) -> list[str]:
        """Names of the faults applied so far, in order (``Fault.name``)."""
        with self._lock:
            return list(self._fired)

    @property
    def stats(self) -> SimStats:
        with self._lock:
            return self._stats

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    # --- request handling ------------------------------------------------------------------
    def _handle(self, h: _Handler) -> None:
        request_id = "req_sim_" + secrets.token_hex(12)
        path = h.path.split("?", 1)[0].rstrip("/") or "/"
        raw = b""
        length = int(h.headers.get("content-length") or 0)
        if length:
            raw = h.rfile.read(length)
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        api_key, scheme = self._auth(h)
        names = [k.lower() for k in h.headers]
        safe = {
            k.lower(): v
            for k, v in h.headers.items()
            if k.lower().startswith(_SAFE_HEADER_PREFIXES) and "key" not in k.lower()
        }
        rec = RecordedRequest(h.command, path, body, names, safe, scheme, request_id, time.time())
        with self._lock:
            self._requests.append(rec)
        try:
            self._route(h, rec, api_key, raw)
        except _ApiError as e:
            self._error(h, rec, e.error_type, e.message, e.status)
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True
        except Exception as e:  # a bug in a policy, or here: answer like the API would
            log.exception("simulator failed on %s %s", h.command, path)
            self._error(h, rec, "api_error", f"simulator error: {e}")

    def _auth(self, h: _Handler) -> tuple[str | None, str | None]:
        key = h.headers.get("x-api-key")
        if key:
            return key, "x-api-key"
        auth = h.headers.get("authorization") or ""
        if auth.lower().startswith("bearer ") and auth[7:].strip():
            return auth[7:].strip(), "bearer"
        return None, None

    def _route(self, h: _Handler, rec: RecordedRequest, api_key: str | None, raw: bytes) -> None:
        if not api_key or (self.api_keys is not None and api_key not in self.api_keys):
            raise _ApiError("authentication_error", "invalid x-api-key")
        key_id = hashlib.sha256(api_key.encode()).hexdigest()[:16]
        if h.command == "GET":
            return self._get(h, rec)
        if rec.path not in ("/v1/messages", "/v1/messages/count_tokens"):
            raise _ApiError("not_found_error", "Not Found")
        if raw and rec.body is None:
            raise _ApiError("invalid_request_error", "request body is not valid JSON")
        count_only = rec.path.endswith("count_tokens")
        err = validate_body(rec.body, count_only=count_only)
        if err:
            raise _ApiError("invalid_request_error", err)
        body: dict[str, Any] = rec.body
        model = body["model"]
        if self.models is not None and model not in self.models:
            raise _ApiError("not_found_error", f"model: {model}")
        blocks = flatten_prompt(body)
        prompt_tokens = sum(b.tokens for b in blocks)
        if self.context_window is not None and prompt_tokens > self.context_window:
            raise _ApiError(
                "invalid_request_error",
                f"prompt is too long: {prompt_tokens} tokens > {self.context_window} maximum",
            )
        if count_only:
            return self._json(h, rec, 200, {"input_tokens": prompt_tokens})
        self._messages(h, rec, body, key_id, blocks)

    def _get(self, h: _Handler, rec: RecordedRequest) -> None:
        ids = sorted(self.models or DEFAULT_MODELS)
        if rec.path == "/v1/models":
            data = [self._model_info(m) for m in ids]
            page = {"data": data, "has_more": False, "first_id": ids[0], "last_id": ids[-1]}
            return self._json(h, rec, 200, page)
        if rec.path.startswith("/v1/models/"):
            model = rec.path.rsplit("/", 1)[1]
            if self.models is None or model in self.models:
                return self._json(h, rec, 200, self._model_info(model))
            raise _ApiError("not_found_error", f"model: {model}")
        raise _ApiError("not_found_error", "Not Found")

    @staticmethod
    def _model_info(model: str) -> dict[str, Any]:
        return {
            "type": "model",
            "id": model,
            "display_name": model,
            "created_at": "2025-01-01T00:00:00Z",
        }

    def _messages(
        self,
        h: _Handler,
        rec: RecordedRequest,
        body: dict[str, Any],
        key_id: str,
        blocks: list[Any],
    ) -> None:
        stream = bool(body.get("stream"))
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
            if fault is not None:
                self._fired.append(fault.name)
        rec.fault = fault
        delay = self.latency_s + (fault.seconds if fault and fault.kind == "latency" else 0.0)
        if delay > 0 and self._stopping.wait(delay):
            raise _ApiError("api_error", "simulator is shutting down")
        if fault is not None and fault.kind == "disconnect":
            h.close_connection = True
            self._count_error()
            return
        if fault is not None and (
            fault.kind == "http_error" or (fault.kind == "mid_stream_error" and not stream)
        ):
            raise _ApiError(fault.error_type, fault.message, fault.status)

        reply = self._call_policy(SimRequest(body, stream=stream, path=rec.path))
        content, cut = fit_to_max_tokens(reply.content, int(body["max_tokens"]))
        stop_reason = "max_tokens" if cut else reply.resolved_stop_reason()
        out = output_tokens(content)
        cache: CacheResult = self.cache.account(key_id, blocks)
        usage = usage_json(cache, out)
        rec.usage = usage
        with self._lock:
            s = self._stats
            self._stats = SimStats(
                s.requests + 1,
                s.errors,
                s.input_tokens + cache.input_tokens,
                s.output_tokens + out,
                s.cache_creation_input_tokens + cache.cache_creation_input_tokens,
                s.cache_read_input_tokens + cache.cache_read_input_tokens,
            )
        msg_id = "msg_sim_" + secrets.token_hex(12)
        model = body["model"]
        if not stream:
            payload = message_json(msg_id, model, content, stop_reason, usage)
            if fault is not None and fault.kind == "truncated_stream":
                return self._truncated_json(h, rec, payload)
            return self._json(h, rec, 200, payload)
        frames = stream_frames(msg_id, model, content, stop_reason, cache, out)
        self._stream(h, rec, frames, fault)

    def _call_policy(self, request: SimRequest) -> Reply:
        try:
            reply = as_reply(self.policy.respond(request))
        except Exception as e:
            log.exception("simulator policy failed")
            raise _ApiError("api_error", f"policy error: {type(e).__name__}: {e}") from e
        content: list[dict[str, Any]] = []
        for block in copy.deepcopy(reply.content):
            kind = block.get("type") if isinstance(block, dict) else None
            if kind == "text" and isinstance(block.get("text"), str):
                content.append(block)
            elif kind == "tool_use" and isinstance(block.get("input"), dict) and block.get("name"):
                with self._lock:
                    # Real ids are unique per response; scripted turns reuse theirs on a replay.
                    if not block.get("id") or block["id"] in self._served_ids:
                        block["id"] = new_tool_use_id()
                    self._served_ids.add(block["id"])
                content.append(block)
            else:
                raise _ApiError("api_error", f"policy returned an invalid content block: {block!r}")
        return Reply(content, reply.stop_reason)

    # --- writing ---------------------------------------------------------------------------
    def _count_error(self) -> None:
        with self._lock:
            s = self._stats
            self._stats = SimStats(
                s.requests,
                s.errors + 1,
                s.input_tokens,
                s.output_tokens,
                s.cache_creation_input_tokens,
                s.cache_read_input_tokens,
            )

    def _error(
        self,
        h: _Handler,
        rec: RecordedRequest,
        error_type: str,
        message: str,
        status: int | None = None,
    ) -> None:
        status = status or ERROR_STATUS.get(error_type, 500)
        self._count_error()
        payload = {**error_body(error_type, message), "request_id": rec.request_id}
        extra: dict[str, str] = {}
        fault = rec.fault
        if fault is not None and fault.retry_after is not None and status == 429:
            extra["retry-after"] = f"{fault.retry_after:g}"
        try:
            self._json(h, rec, status, payload, extra)
        except (BrokenPipeError, ConnectionResetError):
            h.close_connection = True

    def _json(
        self,
        h: _Handler,
        rec: RecordedRequest,
        status: int,
        payload: dict[str, Any],
        extra_headers: dict[str, str] | None = None,
    ) -> None:
        data = json.dumps(payload).encode()
        rec.status = status
        h.send_response(status)
        h.send_header("content-type", "application/json")
        h.send_header("content-length", str(len(data)))
        h.send_header("request-id", rec.request_id)
        for k, v in (extra_headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(data)
        h.wfile.flush()

    def _truncated_json(self, h: _Handler, rec: RecordedRequest, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        rec.status = 200
        h.send_response(200)
        h.send_header("content-type", "application/json")
        h.send_header("content-length", str(len(data)))
        h.send_header("request-id", rec.request_id)
        h.end_headers()
        h.wfile.write(data[: len(data) // 2])
        h.wfile.flush()
        h.close_connection = True

    def _stream(
        self, h: _Handler, rec: RecordedRequest, frames: list[Any], fault: Fault | None
    ) -> None:
        rec.status = 200
        h.send_response(200)
        h.send_header("content-type", "text/event-stream; charset=utf-8")
        h.send_header("cache-control", "no-cache")
        h.send_header("transfer-encoding", "chunked")
        h.send_header("request-id", rec.request_id)
        h.end_headers()

        cut = fault is not None and fault.kind in ("mid_stream_error", "truncated_stream")
        deltas = 0
        for frame in frames:
            if cut and fault is not None:
                # Cut before the first frame that would close the message, or after N deltas.
                if deltas >= fault.after_deltas or frame.event in ("message_delta", "message_stop"):
                    break
            self._chunk(h, sse_bytes(frame))
            deltas += frame.is_delta
            if self.chunk_delay_s > 0 and self._stopping.wait(self.chunk_delay_s):
                h.close_connection = True
                return
        if fault is not None and fault.kind == "mid_stream_error":
            err = {**error_body(fault.error_type, fault.message), "request_id": rec.request_id}
            self._chunk(h, f"event: error\ndata: {json.dumps(err)}\n\n".encode())
        if fault is not None and fault.kind == "truncated_stream" and fault.abrupt:
            h.close_connection = True  # no terminating chunk: the client sees a broken body
            return
        h.wfile.write(b"0\r\n\r\n")
        h.wfile.flush()

    @staticmethod
    def _chunk(h: _Handler, data: bytes) -> None:
        h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        h.wfile.flush()
