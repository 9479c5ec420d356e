"""The Seatbelt profile for ``sandbox-exec`` (macOS): the same file and network rules as bubblewrap.

macOS has no PID namespaces: the command runs in its own process group (the engine kills the group
and every descendant), and the profile forbids signalling anything outside that group. This module
only builds text; it cannot run on Linux, so its tests check the profile itself.
"""

from __future__ import annotations

from pathlib import Path

from ._policy import SandboxPolicy

__all__ = ["SANDBOX_EXEC", "seatbelt_argv", "seatbelt_profile"]

SANDBOX_EXEC = "/usr/bin/sandbox-exec"

# Where macOS tools write besides the workspace: the per-user temp dirs and the terminal devices.
_WRITABLE_SYSTEM = ("/private/tmp", "/private/var/folders", "/dev")


def _quote(path: Path | str) -> str:
    text = str(path).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def seatbelt_profile(policy: SandboxPolicy) -> str:
    lines = [
        "(version 1)",
        "(allow default)",
        ";; file system: read-only except the workspace and the temp dirs",
        "(deny file-write*)",
        "(allow file-write*",
        f"  (subpath {_quote(policy.workspace)})",
        *(f"  (subpath {_quote(p)})" for p in _WRITABLE_SYSTEM),
        *(f"  (subpath {_quote(p)})" for p in policy.scratch),
        ")",
    ]
    hidden = [p for p in policy.hidden if p != policy.workspace]
    if hidden:
        lines += [
            ";; hidden: Agentray's own dirs, the session's sockets, secret stores",
            "(deny file-read* file-write*",
            *(f"  (subpath {_quote(p)})" for p in hidden),
            ")",
        ]
    if not policy.allow_network:
        lines += [";; no network, not even loopback or local sockets", "(deny network*)"]
    lines += [
        ";; processes: signal only its own group, never the engine",
        "(deny signal (target others))",
        "(allow signal (target pgrp))",
        "(allow signal (target children))",
        "(allow signal (target self))",
        "(deny process-info* (target others))",
        "(allow process-info* (target pgrp))",
        "(allow process-info* (target children))",
        "(allow process-info* (target self))",
    ]
    return "\n".join(lines) + "\n"


def seatbelt_argv(policy: SandboxPolicy, command: str, shell: str = "/bin/sh") -> list[str]:
    return [SANDBOX_EXEC, "-p", seatbelt_profile(policy), shell, "-c", command]
