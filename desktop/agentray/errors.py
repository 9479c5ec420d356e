"""Agentray's exception tree.

AgentrayError
├── BadInputError            user input the CLI rejects (exit code 2)
│   ├── NoApiKeyError        no key in ANTHROPIC_API_KEY nor the keyring
│   ├── SandboxUnavailableError  no OS sandbox for commands, and --no-sandbox was not given
│   └── RunBusyError         another process owns the run
├── ModelError               the model endpoint failed us
│   ├── ModelAuthError       401/403: the key is invalid; never retried
│   ├── ModelNotFoundError   404 for the model: unknown model name; never retried
│   ├── ModelRequestError    another 4xx: the request itself is wrong; never retried
│   └── ModelUnavailableError  retries exhausted (429/5xx/overloaded/broken streams)
├── ToolError                a tool refused or failed; becomes an is_error tool result
│   └── ConfinementError     a path resolves outside the workspace
└── JournalError             the SQLite journal cannot be used
"""

from __future__ import annotations

__all__ = [
    "AgentrayError",
    "BadInputError",
    "ConfinementError",
    "JournalError",
    "ModelAuthError",
    "ModelError",
    "ModelNotFoundError",
    "ModelRequestError",
    "ModelUnavailableError",
    "NoApiKeyError",
    "RunBusyError",
    "SandboxUnavailableError",
    "ToolError",
]


class AgentrayError(Exception):
    """Base of every error Agentray raises on purpose."""


class BadInputError(AgentrayError):
    """Input the user can fix; the CLI prints it on one line and exits with 2."""


class NoApiKeyError(BadInputError):
    def __init__(self) -> None:
        super().__init__(
            "no API key: set ANTHROPIC_API_KEY, or store one with "
            "`agentray key set` (reads it from stdin); `agentray demo` needs none"
        )


class SandboxUnavailableError(BadInputError):
    """Commands would run unconfined: the person must install a sandbox or pass --no-sandbox."""


class RunBusyError(BadInputError):
    """Another process drives the run."""


class ModelError(AgentrayError):
    """The model endpoint failed."""


class ModelAuthError(ModelError):
    """401/403 from the endpoint: the key is wrong or lacks permission."""


class ModelNotFoundError(ModelError):
    """The endpoint does not know the model."""


class ModelRequestError(ModelError):
    """A 4xx other than auth/not-found/rate-limit: retrying cannot help."""


class ModelUnavailableError(ModelError):
    """Retries are exhausted for a transient failure."""


class ToolError(AgentrayError):
    """A tool refuses or fails; the agent receives it as ``{"error": str(exc)}`` with is_error."""


class ConfinementError(ToolError):
    """A path leads outside the workspace."""


class JournalError(AgentrayError):
    """The journal database cannot be opened, migrated or written."""

    def __init__(self, message: str, *, disk_full: bool = False) -> None:
        super().__init__(message)
        self.disk_full = disk_full  # SQLite's "database or disk is full": exit 1, resumable
