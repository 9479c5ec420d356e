"""The ``bwrap`` command line for one sandboxed command (Linux).

Mount order matters, later mounts cover earlier ones: the whole file system read-only, a fresh
``/dev``, ``/proc`` and ``/tmp``, what must stay visible under ``/tmp`` (an interpreter living
there), the hidden paths outside the workspace, the workspace read-write, then hidden paths inside
the workspace (a workspace that is the home folder still hides ``~/.ssh``).
"""

from __future__ import annotations

from pathlib import Path

from ._paths import is_within
from ._policy import SandboxPolicy

__all__ = ["bwrap_argv"]

_TMP = Path("/tmp")


def _hide(path: Path) -> list[str]:
    if path.is_dir():
        return ["--tmpfs", str(path)]
    return ["--ro-bind", "/dev/null", str(path)]


def lifeline_script(fd: int, shell: str) -> str:
    """Run ``$0`` after starting a watcher that ends the sandbox when the engine's pipe closes.

    ``--die-with-parent`` misses an engine that dies while bwrap is still setting up (the parent
    death signal is armed only then); the pipe's write end lives in the engine, so its death is an
    end-of-file here, however early: the watcher kills every process of the PID namespace.
    """
    # (/proc/self/fd reopens the pipe: POSIX shells only name descriptors 0-9 in redirections)
    return f'{{ read _ < /proc/self/fd/{fd}; kill -KILL -1; }} & exec {shell} -c "$0"'


def bwrap_argv(
    bwrap: str,
    policy: SandboxPolicy,
    command: str,
    shell: str = "/bin/sh",
    lifeline_fd: int | None = None,
) -> list[str]:
    workspace = policy.workspace
    argv = [
        bwrap,
        "--unshare-all",  # user (where needed), ipc, pid, net, uts, cgroup namespaces
        *(["--share-net"] if policy.allow_network else []),
        "--die-with-parent",  # the engine dies: the sandbox's pid 1 dies, and with it every process
        "--new-session",  # no TIOCSTI into a terminal
        "--cap-drop",
        "ALL",  # root outside stays without capabilities inside
        "--ro-bind",
        "/",
        "/",
        "--dev",
        "/dev",
        "--proc",
        "/proc",
        "--tmpfs",
        "/tmp",
    ]
    for keep in policy.visible_under_tmp:
        if is_within(keep, _TMP) and keep.exists() and not is_within(keep, workspace):
            argv += ["--ro-bind", str(keep), str(keep)]
    inside = [p for p in policy.hidden if is_within(p, workspace) and p != workspace]
    outside = [
        p
        for p in policy.hidden
        if not is_within(p, workspace) and not is_within(p, _TMP) and p.exists()
    ]
    for path in outside:
        argv += _hide(path)
    for scratch in policy.scratch:
        if scratch.is_dir() and not is_within(workspace, scratch):
            argv += ["--tmpfs", str(scratch)]
    argv += ["--bind", str(workspace), str(workspace)]
    for path in inside:
        if path.exists():
            argv += _hide(path)
    argv += ["--chdir", str(workspace), "--"]
    if lifeline_fd is None:
        return [*argv, shell, "-c", command]
    return [*argv, shell, "-c", lifeline_script(lifeline_fd, shell), command]
