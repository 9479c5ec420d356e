"""The API key: from ``ANTHROPIC_API_KEY`` or the OS keyring (service ``agentray``), never a file.

A keyring backend that stores secrets in plaintext files, or the fail/null backends, does not
count as usable: then only the environment variable is used.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass

__all__ = [
    "KEYRING_SERVICE",
    "KEYRING_USERNAME",
    "KeyStatus",
    "delete_key",
    "hide_env_key",
    "key_status",
    "keyring_problem",
    "resolve_api_key",
    "store_key",
]

KEYRING_SERVICE = "agentray"
KEYRING_USERNAME = "anthropic_api_key"
ENV_VAR = "ANTHROPIC_API_KEY"


@dataclass(frozen=True)
class KeyStatus:
    source: str | None  # "environment" | "keyring" | None
    keyring_usable: bool
    keyring_problem: str | None
    masked: str | None  # e.g. "sk-ant-…(108 chars)": never the key itself


def keyring_problem() -> str | None:
    """None when a real OS keyring is there; else why not, in one line."""
    try:
        import keyring
        from keyring.backends import fail
    except Exception as error:  # pragma: no cover - keyring is a dependency
        return f"the keyring module cannot be loaded: {error}"
    try:
        backend = keyring.get_keyring()
    except Exception as error:
        return f"no keyring backend: {error}"
    name = type(backend).__module__ + "." + type(backend).__name__
    if isinstance(backend, fail.Keyring) or "null" in name.lower():
        return "no usable OS keyring (Secret Service, macOS Keychain or Windows Credential Locker) was found"
    if "plaintext" in name.lower() or "file" in type(backend).__module__.lower():
        return f"the keyring backend {name} stores secrets in a file; refusing it"
    priority = getattr(backend, "priority", 1)
    if priority is not None and priority <= 0:
        return f"the keyring backend {name} is not usable here"
    return None


def _keyring_get() -> str | None:
    if keyring_problem() is not None:
        return None
    import keyring

    try:
        return keyring.get_password(KEYRING_SERVICE, KEYRING_USERNAME)
    except Exception:  # a locked or broken keyring means "no key here", not a crash
        return None


# The key ANTHROPIC_API_KEY held when hide_env_key() took it out of the process environment.
_taken_from_env: str | None = None


def _scrub_initial_environ(name: str) -> None:
    """Overwrite ``name``'s value in the environment block the process started with.

    ``/proc/<pid>/environ`` shows that block, not the live environment, so removing the variable
    is not enough: anything running as the same user could still read the key there.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    with open("/proc/self/stat", "rb") as handle:
        fields = handle.read().rsplit(b")", 1)[1].split()
    env_start, env_end = int(fields[47]), int(fields[48])  # fields 50 and 51 of proc(5)
    with open("/proc/self/environ", "rb") as handle:
        block = handle.read()
    if env_end - env_start < len(block):
        return
    prefix = name.encode() + b"="
    offset = 0
    for entry in block.split(b"\0"):
        if entry.startswith(prefix):
            value_at = env_start + offset + len(prefix)
            ctypes.memset(value_at, 0, len(entry) - len(prefix))
        offset += len(entry) + 1


def hide_env_key() -> None:
    """Take ANTHROPIC_API_KEY out of this process's environment, keeping it for resolve_api_key().

    Called once by the CLI and the tray before any run starts: then no child process inherits it
    and ``/proc/<pid>/environ`` of Agentray no longer shows it.
    """
    global _taken_from_env
    value = os.environ.pop(ENV_VAR, "").strip()
    if not value:
        return
    _taken_from_env = value
    with contextlib.suppress(Exception):  # best effort: the variable is gone from os.environ anyway
        _scrub_initial_environ(ENV_VAR)


def resolve_api_key() -> tuple[str | None, str | None]:
    """(key, source): the environment wins over the keyring."""
    value = os.environ.get(ENV_VAR, "").strip() or _taken_from_env
    if value:
        return value, "environment"
    stored = _keyring_get()
    if stored:
        return stored, "keyring"
    return None, None


def mask(key: str) -> str:
    prefix = "sk-ant-" if key.startswith("sk-ant-") else key[:3]
    return f"{prefix}…({len(key)} chars)"


def key_status() -> KeyStatus:
    problem = keyring_problem()
    key, source = resolve_api_key()
    return KeyStatus(source, problem is None, problem, mask(key) if key else None)


def store_key(key: str) -> None:
    key = key.strip()
    if not key:
        raise ValueError("the key is empty")
    if any(c.isspace() for c in key):
        raise ValueError("the key contains white space")
    problem = keyring_problem()
    if problem is not None:
        raise RuntimeError(f"{problem}; set {ENV_VAR} instead")
    import keyring
    from keyring.errors import KeyringError

    try:
        keyring.set_password(KEYRING_SERVICE, KEYRING_USERNAME, key)
    except (KeyringError, OSError) as error:
        # e.g. a locked Secret Service whose unlock prompt cannot be shown
        # the Secret Service's own texts end in "." or ".." ("Prompt dismissed.."): one sentence here
        why = str(error).strip().rstrip(".") or type(error).__name__
        raise RuntimeError(
            f"the OS keyring refused the key ({why}); set {ENV_VAR} instead"
        ) from None


def delete_key() -> bool:
    """True when a stored key was removed."""
    if keyring_problem() is not None:
        return False
    import keyring
    from keyring.errors import KeyringError, PasswordDeleteError

    try:
        keyring.delete_password(KEYRING_SERVICE, KEYRING_USERNAME)
    except PasswordDeleteError:
        return False
    except (KeyringError, OSError) as error:
        raise RuntimeError(f"the OS keyring refused to delete the key ({error})") from None
    return True
