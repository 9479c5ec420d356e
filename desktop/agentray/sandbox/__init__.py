"""Where agents' commands run: an OS sandbox around every ``run_command`` and ``run_build``.

Linux: bubblewrap (``bwrap``), a private mount, PID, network, IPC and UTS namespace per command.
macOS: ``sandbox-exec`` with a Seatbelt profile (file and network rules; process-group containment).
Elsewhere, or without ``bwrap``: no sandbox, which a run must ask for (``--no-sandbox``).
See PRODUCT.md, "The command sandbox".
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from ._bubblewrap import bwrap_argv
from ._paths import SECRET_STORES, agentray_dirs, default_hidden_paths
from ._policy import SandboxPolicy, journal_paths
from ._seatbelt import SANDBOX_EXEC, seatbelt_argv, seatbelt_profile

__all__ = [
    "BWRAP_ENV_VAR",
    "NO_SANDBOX_HINT",
    "SECRET_STORES",
    "Sandbox",
    "SandboxKind",
    "SandboxPolicy",
    "SandboxStatus",
    "agentray_dirs",
    "bwrap_argv",
    "default_hidden_paths",
    "detect_sandbox",
    "journal_paths",
    "seatbelt_argv",
    "seatbelt_profile",
]

BWRAP_ENV_VAR = "AGENTRAY_BWRAP"  # another bwrap binary (or a missing path, to test without one)
SHELL = "/bin/sh"

NO_SANDBOX_HINT = (
    "no command sandbox on this system: install bubblewrap (Debian/Ubuntu: `sudo apt install "
    "bubblewrap`, Fedora: `sudo dnf install bubblewrap`, Arch: `sudo pacman -S bubblewrap`) "
    "or pass --no-sandbox to let agents' commands run with your full authority"
)


class SandboxKind(StrEnum):
    BUBBLEWRAP = "bubblewrap"
    SEATBELT = "seatbelt"
    NONE = "none"


@dataclass(frozen=True)
class SandboxStatus:
    kind: SandboxKind  # NONE when nothing usable was found
    program: str | None
    problem: str | None  # why there is no sandbox, in one line

    @property
    def available(self) -> bool:
        return self.kind is not SandboxKind.NONE

    def describe(self) -> str:
        if self.available:
            return f"{self.kind.value} ({self.program})"
        return self.problem or "no sandbox"


def _probe_bwrap(program: str) -> str | None:
    """None when ``program`` can build a sandbox here; else why not (user namespaces off, …)."""
    argv = [
        program,
        "--unshare-all",
        "--die-with-parent",
        "--cap-drop",
        "ALL",
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--",
        SHELL,
        "-c",
        "exit 0",
    ]
    try:
        done = subprocess.run(
            argv, capture_output=True, timeout=10, stdin=subprocess.DEVNULL, env={}
        )
    except (OSError, subprocess.SubprocessError) as error:
        return f"{program} cannot run: {error}"
    if done.returncode != 0:
        why = (done.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
        return (
            f"{program} cannot create a sandbox here ({why}); unprivileged user namespaces may be "
            "off (sysctl kernel.unprivileged_userns_clone / kernel.apparmor_restrict_unprivileged_userns)"
        )
    return None


@functools.cache
def _detect(platform: str, bwrap_override: str | None) -> SandboxStatus:
    if platform.startswith("linux"):
        program = bwrap_override if bwrap_override is not None else shutil.which("bwrap")
        if not program or not os.access(program, os.X_OK):
            return SandboxStatus(SandboxKind.NONE, None, NO_SANDBOX_HINT)
        problem = _probe_bwrap(program)
        if problem:
            return SandboxStatus(SandboxKind.NONE, program, problem + "; or pass --no-sandbox")
        return SandboxStatus(SandboxKind.BUBBLEWRAP, program, None)
    if platform == "darwin" and os.access(SANDBOX_EXEC, os.X_OK):
        return SandboxStatus(SandboxKind.SEATBELT, SANDBOX_EXEC, None)
    return SandboxStatus(
        SandboxKind.NONE,
        None,
        f"no command sandbox on {platform}; pass --no-sandbox to let agents' commands run with "
        "your full authority",
    )


def detect_sandbox() -> SandboxStatus:
    """The sandbox this machine offers (probed once per process)."""
    return _detect(sys.platform, os.environ.get(BWRAP_ENV_VAR))


@dataclass(frozen=True)
class Sandbox:
    """How one run's commands are started: ``argv(command)`` is what gets executed."""

    kind: SandboxKind
    policy: SandboxPolicy | None = None
    program: str | None = None

    @classmethod
    def unconfined(cls) -> Sandbox:
        return cls(SandboxKind.NONE)

    @classmethod
    def for_workspace(
        cls,
        status: SandboxStatus,
        workspace: str | Path,
        *,
        allow_network: bool = False,
        journal: Path | None = None,
    ) -> Sandbox:
        if not status.available:
            raise RuntimeError(status.problem or NO_SANDBOX_HINT)
        policy = SandboxPolicy.for_workspace(
            workspace, allow_network=allow_network, journal=journal
        )
        return cls(status.kind, policy, status.program)

    @property
    def confined(self) -> bool:
        return self.kind is not SandboxKind.NONE

    @property
    def own_pid_namespace(self) -> bool:
        """Ending the sandbox's first process ends every process in it (bubblewrap)."""
        return self.kind is SandboxKind.BUBBLEWRAP

    def argv(self, command: str, lifeline_fd: int | None = None) -> list[str]:
        """The command line; ``lifeline_fd`` (bubblewrap): a pipe's read end whose write end only
        the engine holds, so the sandbox ends when the engine does (see ``lifeline_script``)."""
        if self.kind is SandboxKind.BUBBLEWRAP:
            assert self.policy is not None and self.program is not None
            return bwrap_argv(self.program, self.policy, command, SHELL, lifeline_fd)
        if self.kind is SandboxKind.SEATBELT:
            assert self.policy is not None
            return seatbelt_argv(self.policy, command, SHELL)
        return [SHELL, "-c", command]

    def describe(self) -> str:
        if not self.confined:
            return "none (commands run unconfined)"
        network = "network allowed" if self.policy and self.policy.allow_network else "no network"
        return f"{self.kind.value}, {network}"
