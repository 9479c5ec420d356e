"""The journal's safety net against storing secrets, and its JSON encoding."""

from __future__ import annotations

import json
import os
import re
from typing import Any

__all__ = ["REDACTED", "_dumps", "_redact"]

REDACTED = "[redacted]"

# Anthropic keys first (they contain '-' and '_'), then generic OpenAI-style keys; both begin
# with "sk-" (``_redact`` relies on it).
_SECRET_PATTERNS = (
    re.compile(r"sk-ant-[A-Za-z0-9_-]{8,}"),
    re.compile(r"sk-[A-Za-z0-9]{20,}"),
)

# A key in a non-standard format (a proxy's, say) is still caught when it is the one in the env.
_ENV_KEYS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")
_TOKEN = re.compile(r"[A-Za-z0-9_.+/=-]+")


def _redact(text: str) -> str:
    """Replace anything that looks like an API key with ``[redacted]``.

    The patterns never match a quote or a backslash, so redacting JSON text keeps it valid JSON.
    """
    for name in _ENV_KEYS:
        secret = os.environ.get(name, "")
        # Only token-like secrets: cutting one out of JSON text must keep the JSON valid.
        if len(secret) >= 8 and _TOKEN.fullmatch(secret) and secret in text:
            text = text.replace(secret, REDACTED)
    if "sk-" in text:  # what both patterns begin with: most texts skip the regular expressions
        for pattern in _SECRET_PATTERNS:
            text = pattern.sub(REDACTED, text)
    return text


def _default(obj: Any) -> Any:
    # SDK objects (pydantic models) that slip into a message still serialise sensibly.
    dump = getattr(obj, "model_dump", None)
    if callable(dump):
        return dump()
    if isinstance(obj, set | frozenset | tuple):
        return list(obj)
    return str(obj)


def _dumps(obj: Any) -> str:
    """JSON text of ``obj`` with secrets redacted."""
    return _redact(json.dumps(obj, ensure_ascii=False, default=_default))
