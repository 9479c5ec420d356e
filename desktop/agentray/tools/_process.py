"""``run_command`` and the registry that lets cancel / Stop all kill every process an agent started.

Commands start through a ``Sandbox`` (bubblewrap, Seatbelt, or a plain ``sh -c``) in a new
session, so the first process leads its own process group and session. Killing trees means:
one scan of the process table collects each root's descendants and everything left in its
session *before* signalling (children die first and would lose their parent link otherwise),
SIGTERM to every group and process, one shared grace period, SIGKILL to survivors. Kill requests
made in the same moment (Stop all cancels every command at once) join one batch. A bubblewrap
sandbox needs no grace: its PID namespace dies with its first process. Our own children are never
waited for with psutil (that would reap them and steal the exit status from asyncio); we poll for
"gone or zombie" instead.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import logging
import math
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from agentray.errors import ToolError
from agentray.sandbox import Sandbox
from agentray.tools._env import command_env
from agentray.tools._truncate import split_limit, truncation_note

__all__ = ["MAX_TIMEOUT_S", "CommandResult", "ProcessRegistry", "run_command"]

log = logging.getLogger(__name__)

MAX_TIMEOUT_S = 3600.0
_POLL_S = 0.02
_DRAIN_S = 2.0  # how long to wait for the output pipe to close after the process tree is gone
_LEFTOVER_GRACE_S = 1.0
# SIGTERM, then this long before SIGKILL: Stop all ends within 2 s even when every command
# ignores SIGTERM (under bubblewrap the namespace dies at once and no grace is needed)
KILL_GRACE_S = 1.0

# Cleanup tasks that must outlive a cancelled caller; kept referenced so they are not collected.
_background: set[asyncio.Task[Any]] = set()


@dataclass(frozen=True)
class CommandResult:
    exit_code: int | None
    timed_out: bool
    output: str
    duration_s: float
    killed: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "exit_code": self.exit_code,
            "timed_out": self.timed_out,
            "duration_s": round(self.duration_s, 3),
            "output": self.output,
        }
        if self.killed:
            out["killed"] = True
        return out


# --------------------------------------------------------------------------------- tree killing


def _create_time(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except (psutil.Error, OSError):
        return None


def _is_gone(proc: psutil.Process) -> bool:
    try:
        return not proc.is_running() or proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


def _snapshot() -> tuple[dict[int, list[int]], dict[int, list[int]]]:
    """One pass over every process: children by parent pid, members by session id."""
    children: dict[int, list[int]] = {}
    sessions: dict[int, list[int]] = {}
    for proc in psutil.process_iter(["ppid"]):
        ppid = proc.info.get("ppid")
        if ppid is not None:
            children.setdefault(ppid, []).append(proc.pid)
        try:
            sessions.setdefault(os.getsid(proc.pid), []).append(proc.pid)
        except OSError:
            continue
    return children, sessions


def _collect_trees(roots: list[tuple[int, float | None]]) -> dict[int, list[psutil.Process]]:
    """Per root: the root (if it is still ours), its descendants, and everything left in its session.

    One pass over the process table for all roots, so killing 60 trees costs one scan, not 60.
    """
    me = os.getpid()
    children, sessions = _snapshot()
    trees: dict[int, list[psutil.Process]] = {}
    for root_pid, create_time in roots:
        pids: set[int] = set()
        try:
            root = psutil.Process(root_pid)
            if create_time is not None and abs(root.create_time() - create_time) > 0.01:
                # The pid was reused by an unrelated process: ours and its session are gone
                # (the kernel does not hand out a pid still used as a session or group id).
                trees[root_pid] = []
                continue
            stack = [root_pid]
            while stack:
                pid = stack.pop()
                if pid not in pids:
                    pids.add(pid)
                    stack.extend(children.get(pid, ()))
        except psutil.NoSuchProcess:
            pass
        except psutil.Error:
            trees[root_pid] = []
            continue
        pids.update(sessions.get(root_pid, ()))
        pids.discard(me)
        procs = []
        for pid in pids:
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                if not _is_gone(proc):
                    procs.append(proc)
        trees[root_pid] = procs
    return trees


def _signal_all(root_pid: int, procs: list[psutil.Process], sig: signal.Signals) -> None:
    # The group catches processes forked after collection; never signal our own group.
    if root_pid != os.getpgrp():
        with contextlib.suppress(OSError):
            os.killpg(root_pid, sig)
    for proc in procs:
        with contextlib.suppress(psutil.Error, OSError):
            proc.send_signal(sig)


def _still_alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    return [p for p in procs if not _is_gone(p)]


async def _wait_gone(procs: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Poll until every process is gone; a worker thread only for each short check, so a long
    grace period never holds a thread of the default pool."""
    deadline = time.monotonic() + timeout
    alive = await asyncio.to_thread(_still_alive, procs)
    while alive and time.monotonic() < deadline:
        await asyncio.sleep(_POLL_S)
        alive = await asyncio.to_thread(_still_alive, alive)
    return alive


def _collect_and_terminate(
    roots: list[tuple[int, float | None]],
) -> dict[int, list[psutil.Process]]:
    trees = _collect_trees(roots)
    for root_pid, procs in trees.items():
        if procs:
            _signal_all(root_pid, procs, signal.SIGTERM)
    return trees


def _kill_survivors(trees: dict[int, list[psutil.Process]], alive: set[int]) -> None:
    for root_pid, procs in trees.items():
        doomed = [p for p in procs if p.pid in alive]
        if doomed:
            _signal_all(root_pid, doomed, signal.SIGKILL)


async def _kill_trees(roots: list[tuple[int, float | None]], grace_s: float) -> dict[int, int]:
    """SIGTERM every tree at once, one shared grace period, then SIGKILL what is left.

    A bubblewrap sandbox dies whole with its first process (its PID namespace goes with it), so
    there the grace period ends as soon as the outer ``bwrap`` has gone.
    """
    trees = await asyncio.to_thread(_collect_and_terminate, roots)
    everything = [proc for procs in trees.values() for proc in procs]
    if everything:
        survivors = await _wait_gone(everything, grace_s)
        if survivors:
            await asyncio.to_thread(_kill_survivors, trees, {p.pid for p in survivors})
            await _wait_gone(survivors, 1.0)
    return {root: len(procs) for root, procs in trees.items()}


@dataclass
class _KillBatch:
    """Kill requests made in the same moment (Stop all cancels every command at once), served by
    one scan of the process table and one grace period."""

    future: asyncio.Future[dict[int, int]]
    roots: dict[int, float | None] = field(default_factory=dict)
    grace_s: float = math.inf
    started: bool = False


class ProcessRegistry:
    """Every process an agent starts, tracked as a tree so cancel / stop-all can kill it whole."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owners: dict[int, str] = {}
        self._created: dict[int, float | None] = {}
        self._killed: set[int] = set()
        self._batch: _KillBatch | None = None

    def track(self, pid: int, owner: str) -> None:
        created = _create_time(pid)
        with self._lock:
            self._owners[pid] = owner
            self._created[pid] = created
            self._killed.discard(pid)

    def untrack(self, pid: int) -> None:
        with self._lock:
            self._owners.pop(pid, None)
            self._created.pop(pid, None)
            self._killed.discard(pid)

    def pids(self, owner: str | None = None) -> list[int]:
        with self._lock:
            return sorted(p for p, o in self._owners.items() if owner is None or o == owner)

    def was_killed(self, pid: int) -> bool:
        """Whether a kill_* call signalled this tracked process tree."""
        with self._lock:
            return pid in self._killed

    async def kill_tree(self, pid: int, grace_s: float = KILL_GRACE_S) -> int:
        """Kill one process tree (and its session); returns how many processes were signalled."""
        return await self._kill(pid, grace_s, mark=True)

    async def _kill(self, pid: int, grace_s: float, *, mark: bool) -> int:
        return await self._kill_many([pid], grace_s, mark=mark)

    async def kill_owner(self, owner: str, grace_s: float = KILL_GRACE_S) -> int:
        return await self._kill_many(self.pids(owner), grace_s)

    async def kill_all(self, grace_s: float = KILL_GRACE_S) -> int:
        return await self._kill_many(self.pids(), grace_s)

    async def _kill_many(self, pids: list[int], grace_s: float, *, mark: bool = True) -> int:
        if not pids:
            return 0
        with self._lock:
            roots = [(pid, self._created.get(pid)) for pid in pids]
            if mark:
                self._killed.update(pid for pid in pids if pid in self._owners)
        batch = self._batch
        if batch is None or batch.started:
            batch = self._batch = _KillBatch(asyncio.get_running_loop().create_future())
            task = asyncio.ensure_future(self._serve(batch))
            _background.add(task)
            task.add_done_callback(_background.discard)
        batch.roots.update(roots)
        batch.grace_s = min(batch.grace_s, grace_s)
        # Shielded: a cancelled caller (a stopped agent) must not cancel the others' kill.
        counts = await asyncio.shield(batch.future)
        return sum(counts.get(pid, 0) for pid, _ in roots)

    async def _serve(self, batch: _KillBatch) -> None:
        try:
            await asyncio.sleep(0)  # let every request of this moment join
            batch.started = True
            if self._batch is batch:
                self._batch = None
            # One scan for every tree, one shared grace period, no thread held while waiting.
            batch.future.set_result(await _kill_trees(list(batch.roots.items()), batch.grace_s))
        except BaseException as error:
            # Whatever happens here, no caller may wait on this batch forever.
            batch.started = True
            if self._batch is batch:
                self._batch = None
            if not batch.future.done():
                if isinstance(error, asyncio.CancelledError):
                    batch.future.cancel()
                else:
                    batch.future.set_exception(error)
            if isinstance(error, asyncio.CancelledError):
                raise


# --------------------------------------------------------------------------------- run_command


class _BoundedOutput:
    """Keeps the first ``head`` and last ``tail`` characters of a stream, counting the rest."""

    def __init__(self, limit: int) -> None:
        self._head_cap, self._tail_cap = split_limit(limit)
        self._head: list[str] = []
        self._head_len = 0
        self._tail = ""
        self.total = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, data: bytes, final: bool = False) -> None:
        self._add(self._decoder.decode(data, final))

    def _add(self, text: str) -> None:
        if not text:
            return
        self.total += len(text)
        room = self._head_cap - self._head_len
        if room > 0:
            self._head.append(text[:room])
            self._head_len += min(room, len(text))
            text = text[room:]
        if text and self._tail_cap:
            self._tail = (self._tail + text)[-self._tail_cap :]

    def text(self) -> str:
        head = "".join(self._head)
        kept = self._head_len + len(self._tail)
        if kept >= self.total:
            return head + self._tail
        return head + truncation_note(self.total - kept, self.total) + self._tail


class _CommandProtocol(asyncio.SubprocessProtocol):
    """Feeds output into a bounded buffer and reports exit and pipe closure separately.

    (``asyncio.subprocess.Process.wait()`` also waits for the pipes to close, so a background
    child holding stdout would make it hang long after the shell exited.)
    """

    def __init__(self, out: _BoundedOutput, loop: asyncio.AbstractEventLoop) -> None:
        self._out = out
        self.exited: asyncio.Future[None] = loop.create_future()
        self.closed: asyncio.Future[None] = loop.create_future()

    def pipe_data_received(self, fd: int, data: bytes | bytearray) -> None:
        self._out.feed(bytes(data))

    def process_exited(self) -> None:
        if not self.exited.done():
            self.exited.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        # All pipes are closed and the process has exited.
        self._out.feed(b"", final=True)
        if not self.closed.done():
            self.closed.set_result(None)


async def _wait_future(fut: asyncio.Future[None], timeout: float) -> bool:
    """Wait for ``fut`` without cancelling it on timeout; True when it completed."""
    done, _ = await asyncio.wait({fut}, timeout=timeout)
    return bool(done)


async def _kill_and_reap(
    pid: int,
    registry: ProcessRegistry,
    transport: asyncio.SubprocessTransport,
    protocol: _CommandProtocol,
) -> None:
    try:
        await registry._kill(pid, KILL_GRACE_S, mark=False)
        await _wait_future(protocol.exited, 5.0)
    finally:
        transport.close()


async def _kill_when_spawned(
    spawn: asyncio.Future[tuple[asyncio.SubprocessTransport, _CommandProtocol]],
    registry: ProcessRegistry,
    owner: str,
) -> None:
    """The caller was cancelled while the child was being started: wait for it, kill its tree."""
    try:
        transport, protocol = await spawn
    except Exception as error:  # it never started: nothing to kill, and nobody left to tell
        log.debug("a cancelled command failed to start: %s", error)
        return
    pid = transport.get_pid()
    registry.track(pid, owner)
    try:
        await _kill_and_reap(pid, registry, transport, protocol)
    finally:
        registry.untrack(pid)


def _check_timeout(timeout_s: object) -> float:
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float):
        raise ToolError("timeout_s must be a number of seconds")
    value = float(timeout_s)
    if math.isnan(value) or value <= 0:
        raise ToolError("timeout_s must be greater than 0")
    return min(value, MAX_TIMEOUT_S)


async def run_command(
    command: str,
    *,
    cwd: Path,
    registry: ProcessRegistry,
    owner: str,
    timeout_s: float = 120.0,
    max_output: int = 30_000,
    env: Mapping[str, str] | None = None,
    sandbox: Sandbox | None = None,
) -> CommandResult:
    """Run ``command`` with ``sh`` in ``cwd`` (inside ``sandbox`` when given); output is
    stdout+stderr, head and tail kept.

    Background processes still running when the command ends are killed with it: a command's
    process tree never outlives the call.
    """
    sandbox = sandbox or Sandbox.unconfined()
    if not isinstance(command, str):
        raise ToolError("command must be a string")
    if not command.strip():
        raise ToolError("command must not be empty")
    if "\0" in command:
        raise ToolError("command must not contain NUL bytes")
    timeout = _check_timeout(timeout_s)
    if isinstance(max_output, bool) or not isinstance(max_output, int) or max_output < 1:
        raise ToolError("max_output must be a positive integer")

    loop = asyncio.get_running_loop()
    out = _BoundedOutput(max_output)
    started = time.monotonic()
    if env is None:
        allow_network = sandbox.policy.allow_network if sandbox.policy else True
        env = command_env(allow_network=allow_network, sandbox=sandbox.kind.value)
    # The sandbox's lifeline: only this process holds the write end (see Sandbox.argv).
    lifeline = os.pipe() if sandbox.own_pid_namespace else None
    spawn = asyncio.ensure_future(
        loop.subprocess_exec(
            lambda: _CommandProtocol(out, loop),
            *sandbox.argv(command, lifeline[0] if lifeline else None),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=dict(env),
            pass_fds=(lifeline[0],) if lifeline else (),
        )
    )
    try:
        return await _supervise(
            spawn,
            cwd=cwd,
            registry=registry,
            owner=owner,
            timeout=timeout,
            out=out,
            started=started,
            sandbox=sandbox,
        )
    finally:
        if lifeline:
            os.close(lifeline[0])
            os.close(lifeline[1])


async def _supervise(
    spawn: asyncio.Future[tuple[asyncio.SubprocessTransport, _CommandProtocol]],
    *,
    cwd: Path,
    registry: ProcessRegistry,
    owner: str,
    timeout: float,
    out: _BoundedOutput,
    started: float,
    sandbox: Sandbox,
) -> CommandResult:
    try:
        # Shielded: a cancellation during the spawn must not lose a child that already exists.
        transport, protocol = await asyncio.shield(spawn)
    except asyncio.CancelledError:
        cleanup = asyncio.ensure_future(_kill_when_spawned(spawn, registry, owner))
        _background.add(cleanup)
        cleanup.add_done_callback(_background.discard)
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.shield(cleanup)
        raise
    except OSError as exc:
        # A missing or non-directory cwd lands here too (the child's chdir fails).
        raise ToolError(f"cannot start the command in {cwd}: {exc.strerror or exc}") from None

    pid = transport.get_pid()
    registry.track(pid, owner)
    timed_out = False
    leftovers = 0
    try:
        if not await _wait_future(protocol.exited, timeout):
            timed_out = True
            await registry._kill(pid, KILL_GRACE_S, mark=False)
            await _wait_future(protocol.exited, 5.0)
        elif not sandbox.own_pid_namespace:
            # The shell has ended; anything still in its session was started in the background.
            # (A bubblewrap sandbox has ended them already: its PID namespace died with the shell.)
            leftovers = await registry._kill(pid, _LEFTOVER_GRACE_S, mark=False)
        # Drain what is left in the pipe; something that escaped (setsid) may hold it open.
        await _wait_future(protocol.closed, _DRAIN_S)
    except BaseException:
        # Cancelled (or failed): the tree must die whatever happens to this task.
        cleanup = asyncio.ensure_future(_kill_and_reap(pid, registry, transport, protocol))
        _background.add(cleanup)
        cleanup.add_done_callback(_background.discard)
        # If we are cancelled again while waiting, the shielded cleanup still runs to the end.
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await asyncio.shield(cleanup)
        raise
    finally:
        killed = registry.was_killed(pid)
        registry.untrack(pid)

    transport.close()
    output = out.text()
    if leftovers and not timed_out:
        output += (
            f"\n[agentray: stopped {leftovers} background process(es) still running when the "
            "command ended; start a server and its clients within one command]"
        )
    return CommandResult(
        # None also when the process could not be confirmed dead (e.g. stuck in the kernel).
        exit_code=None if timed_out else transport.get_returncode(),
        timed_out=timed_out,
        output=output,
        duration_s=time.monotonic() - started,
        killed=killed or timed_out,
    )
