"""Faults the simulator can inject into the next requests, and the API error shapes."""

from __future__ import annotations

from dataclasses import dataclass, replace

__all__ = ["ERROR_STATUS", "Fault", "error_body"]

# Anthropic's error types and the HTTP status each one comes with.
ERROR_STATUS: dict[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}

_DEFAULT_MESSAGES: dict[str, str] = {
    "rate_limit_error": "Number of request tokens has exceeded your per-minute rate limit",
    "api_error": "Internal server error",
    "overloaded_error": "Overloaded",
}


def error_body(error_type: str, message: str) -> dict[str, object]:
    return {"type": "error", "error": {"type": error_type, "message": message}}


@dataclass(frozen=True)
class Fault:
    """One injected fault. Build them with the class methods, queue them with ``Simulator.inject``.

    kinds: ``http_error`` (status + error type, before any output), ``mid_stream_error``
    (a stream starts, then an ``error`` event ends it), ``truncated_stream`` (deltas, then the
    stream ends without message_delta/message_stop), ``latency`` (a delay, then a normal answer),
    ``disconnect`` (the connection is closed without any response).
    """

    kind: str
    error_type: str = ""
    status: int = 0
    message: str = ""
    retry_after: float | None = None
    seconds: float = 0.0
    after_deltas: int = 2
    abrupt: bool = False

    @property
    def name(self) -> str:
        """A short label: the error type for errors, else the kind."""
        if self.kind == "http_error":
            return {429: "rate_limit", 529: "overloaded", 500: "server_error"}.get(
                self.status, self.error_type
            )
        return self.kind

    @classmethod
    def http_error(cls, status: int, error_type: str, message: str = "") -> Fault:
        return cls(
            "http_error",
            error_type=error_type,
            status=status,
            message=message or _DEFAULT_MESSAGES.get(error_type, error_type),
        )

    @classmethod
    def rate_limit(cls, retry_after: float | None = 1.0, message: str = "") -> Fault:
        return replace(cls.http_error(429, "rate_limit_error", message), retry_after=retry_after)

    @classmethod
    def overloaded(cls, message: str = "") -> Fault:
        return cls.http_error(529, "overloaded_error", message)

    @classmethod
    def server_error(cls, message: str = "") -> Fault:
        return cls.http_error(500, "api_error", message)

    @classmethod
    def mid_stream_error(
        cls, kind: str = "overloaded_error", message: str = "", after_deltas: int = 2
    ) -> Fault:
        """On a streaming request: some deltas, then ``event: error``. On a plain request: the
        error's HTTP status."""
        return cls(
            "mid_stream_error",
            error_type=kind,
            status=ERROR_STATUS.get(kind, 500),
            message=message or _DEFAULT_MESSAGES.get(kind, kind),
            after_deltas=after_deltas,
        )

    @classmethod
    def truncated_stream(cls, after_deltas: int = 2, abrupt: bool = False) -> Fault:
        """Deltas, then the stream ends with no message_delta/message_stop.

        ``abrupt=False`` ends the HTTP body cleanly (the SDK sees a message with stop_reason
        None); ``abrupt=True`` drops the connection mid-body (the SDK raises a transport error).
        """
        return cls("truncated_stream", after_deltas=after_deltas, abrupt=abrupt)

    @classmethod
    def latency(cls, seconds: float) -> Fault:
        return cls("latency", seconds=seconds)

    @classmethod
    def disconnect(cls) -> Fault:
        """Close the connection without answering (the SDK sees a connection error)."""
        return cls("disconnect")
