"""The environment agents' commands run with: the user's, minus anything that looks secret."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

__all__ = ["command_env", "is_secret_name", "is_secret_value", "scrubbed_env"]

# Substrings of variable NAMES that mark a secret (matched case-insensitively). Deliberately broad:
# losing e.g. SSH_AUTH_SOCK or DBUS_SESSION_BUS_ADDRESS costs little, leaking a key costs a lot.
_SECRET_NAME_PARTS = (
    "KEY",
    "TOKEN",
    "SECRET",
    "PASSWORD",
    "PASSWD",
    "CREDENTIAL",
    "AUTH",
    "SESSION",
    "COOKIE",
    "PRIVATE",
)

# VALUES that look like a credential whatever the variable is called.
_SECRET_VALUE = re.compile(
    r"""^(?:
        sk-                                   # OpenAI / Anthropic (sk-ant-) style keys
      | gh[pousr]_ | github_pat_              # GitHub tokens
      | xox[abposr]-                          # Slack tokens
      | (?:AKIA|ASIA)[0-9A-Z]{12,}            # AWS access key ids
      | glpat-                                # GitLab personal tokens
      | AIza[0-9A-Za-z_\-]{20,}               # Google API keys
      | -----BEGIN[ A-Z]*PRIVATE\ KEY-----    # PEM private keys
    )""",
    re.VERBOSE,
)
# URLs with an embedded password (proxy or database URLs): scheme://user:pass@host
_URL_WITH_PASSWORD = re.compile(r"[a-z][a-z0-9+.\-]*://[^/\s:@]+:[^/\s@]+@", re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    upper = name.upper()
    return upper.startswith("ANTHROPIC_") or any(part in upper for part in _SECRET_NAME_PARTS)


def is_secret_value(value: str) -> bool:
    stripped = value.strip()
    return bool(_SECRET_VALUE.match(stripped) or _URL_WITH_PASSWORD.search(stripped))


def scrubbed_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """A copy of ``base`` (default ``os.environ``) without secrets, set up for non-interactive use."""
    source = os.environ if base is None else base
    env = {
        name: value
        for name, value in source.items()
        if not is_secret_name(name) and not is_secret_value(value)
    }
    # Output arrives while the command runs, and git never waits for a password on a closed stdin.
    env["PYTHONUNBUFFERED"] = "1"
    env["GIT_TERMINAL_PROMPT"] = "0"
    return env


# What a command's environment may hold (PRODUCT.md, "The command sandbox"): what shells,
# compilers and language tool chains need, never addresses of agents or buses (SSH_AUTH_SOCK,
# DBUS_SESSION_BUS_ADDRESS, DISPLAY, XDG_RUNTIME_DIR) and never keys.
_ALLOWED_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "LANG",
        "LANGUAGE",
        "TERM",
        "TZ",
        "COLORTERM",
        "NO_COLOR",
        "FORCE_COLOR",
        "TMPDIR",
        "EDITOR",
        "PAGER",
        "JAVA_HOME",
        "GOPATH",
        "GOROOT",
        "GOFLAGS",
        "CARGO_HOME",
        "RUSTUP_HOME",
        "NVM_DIR",
        "PYENV_ROOT",
        "VIRTUAL_ENV",
        "CONDA_PREFIX",
        "PYTHONPATH",
        "NODE_PATH",
        "GEM_HOME",
        "GEM_PATH",
        "PKG_CONFIG_PATH",
        "LD_LIBRARY_PATH",
        "CC",
        "CXX",
        "CFLAGS",
        "CXXFLAGS",
        "CPPFLAGS",
        "LDFLAGS",
        "MAKEFLAGS",
        "CMAKE_PREFIX_PATH",
        "XDG_CONFIG_DIRS",
        "XDG_DATA_DIRS",
    }
)
_ALLOWED_PREFIXES = ("LC_",)
# Only useful when the command may reach the network.
_NETWORK_NAMES = frozenset(
    {
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "ALL_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
        "all_proxy",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "REQUESTS_CA_BUNDLE",
        "PIP_INDEX_URL",
    }
)


def command_env(
    base: Mapping[str, str] | None = None,
    *,
    allow_network: bool = True,
    sandbox: str = "none",
) -> dict[str, str]:
    """The allow-listed environment an agent's command runs with (secrets scrubbed on top)."""
    source = os.environ if base is None else base
    allowed = {
        name: value
        for name, value in source.items()
        if (
            name in _ALLOWED_NAMES
            or name.startswith(_ALLOWED_PREFIXES)
            or (allow_network and name in _NETWORK_NAMES)
        )
    }
    env = scrubbed_env(allowed)
    env.setdefault("PATH", os.defpath)
    # No __pycache__ in the person's folder, and no stale bytecode: an edit within the same second
    # that keeps a file's size leaves a .pyc that Python still trusts (mtime and size match).
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    if sandbox != "none":
        env["TMPDIR"] = "/tmp"  # the sandbox's own /tmp; the person's TMPDIR may be hidden
    env["AGENTRAY_SANDBOX"] = sandbox
    return env
