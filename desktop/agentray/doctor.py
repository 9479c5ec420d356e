"""``agentray doctor``: what this machine offers Agentray, one line each (PRODUCT.md, "Safe to walk
away"): sandbox, keyring, notifications, display (and tray host), key.

Exit 0 when the essentials are there (a command sandbox and an API key), 1 otherwise. Every check
is bounded in time and never raises: a failure to check is itself a line. The welcome dialog shows
the same facts through ``run_checks()``.

D-Bus is asked through QtDBus by ``agentray.ui.bus_probe`` (imported lazily: Qt stays on the UI side), on a private,
named connection: no QCoreApplication and no display are needed, and nothing is autolaunched.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

__all__ = ["CHECK_NAMES", "Check", "doctor_main", "format_check", "run_checks"]

CHECK_NAMES = ("sandbox", "keyring", "notifications", "display", "key")
ESSENTIAL = frozenset({"sandbox", "key"})

TIMEOUT_S = 5.0  # for everything together; a healthy machine answers in well under a second
DBUS_CALL_MS = 700  # per D-Bus call
SOCKET_TIMEOUT_S = 0.5

NOTIFICATIONS_NAME = "org.freedesktop.Notifications"
SNI_WATCHER_NAME = "org.kde.StatusNotifierWatcher"
DBUS_NAME = "org.freedesktop.DBus"


@dataclass(frozen=True)
class Check:
    name: str  # one of CHECK_NAMES
    ok: bool  # nothing that needs fixing (a warning is still ok)
    essential: bool  # runs cannot start without it
    detail: str  # what was found, one line
    hint: str = ""  # how to fix it (or what the warning means), one line
    warning: bool = False  # works, but not as well as it could

    @property
    def mark(self) -> str:
        if not self.ok:
            return "✗"
        return "warn" if self.warning else "ok"

    @property
    def text(self) -> str:
        """The detail and the hint, on one line."""
        text = self.detail if not self.hint else f"{self.detail} — {self.hint}"
        return " ".join(text.split())


def format_check(check: Check) -> str:
    return f"{check.name:<14} {check.mark:<4} {check.text}"


# ---------------------------------------------------------------------------------- the checks
def check_sandbox() -> Check:
    from agentray.sandbox import detect_sandbox

    status = detect_sandbox()  # its problem line already says how to install bubblewrap
    return Check("sandbox", status.available, True, status.describe())


def check_keyring() -> Check:
    from agentray import keys

    problem = keys.keyring_problem()
    if problem is not None:
        return Check(
            "keyring",
            False,
            False,
            problem,
            f"the key can only come from {keys.ENV_VAR}",
        )
    import keyring

    backend = type(keyring.get_keyring())
    return Check("keyring", True, False, f"{backend.__module__}.{backend.__name__}")


def check_key() -> Check:
    from agentray import keys

    status = keys.key_status()
    if status.source == "environment":
        return Check("key", True, True, f"from {keys.ENV_VAR}: {status.masked}")
    if status.source is not None:
        return Check("key", True, True, f"from the {status.source}: {status.masked}")
    if status.keyring_usable:
        hint = f"run `agentray key set` or set {keys.ENV_VAR}"
    else:
        hint = f"set {keys.ENV_VAR} (there is no usable keyring to store one in)"
    return Check("key", False, True, "no API key", hint + "; `agentray demo` needs none")


# ------------------------------------------------------------------------------------ D-Bus
@dataclass(frozen=True)
class BusFacts:
    problem: str | None = None  # no session bus, in one line; then the rest is unknown
    notifier: str | None = None  # the notification server's name, when one owns the name
    notifier_running: bool = False
    notifier_activatable: bool = False
    sni_host: bool = False  # a StatusNotifier host is registered with the watcher


def session_bus_address() -> str | None:
    """Where the session bus is, as libdbus (and so Qt) would find it without autolaunching."""
    address = os.environ.get("DBUS_SESSION_BUS_ADDRESS", "").strip()
    if address:
        return address
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.exists(os.path.join(runtime, "bus")):
        return "unix:path=" + os.path.join(runtime, "bus")
    return None


def _uses_dbus() -> bool:
    return sys.platform not in ("darwin", "win32")


def check_notifications(facts: BusFacts) -> Check:
    if sys.platform == "darwin":
        return Check("notifications", True, False, "macOS Notification Center")
    if sys.platform == "win32":
        return Check("notifications", True, False, "Windows notifications")
    hint = (
        "you would not hear about questions or finished runs; start your desktop's notification "
        "service (e.g. dunst or mako)"
    )
    if facts.problem:
        return Check("notifications", False, False, facts.problem, hint)
    if facts.notifier_running:
        who = f"{facts.notifier} " if facts.notifier else "a notification server "
        return Check(
            "notifications", True, False, f"{who}on the session bus ({NOTIFICATIONS_NAME})"
        )
    if facts.notifier_activatable:
        return Check(
            "notifications",
            True,
            False,
            f"a notification server that D-Bus starts on demand ({NOTIFICATIONS_NAME})",
        )
    return Check(
        "notifications",
        False,
        False,
        f"no notification server on the session bus ({NOTIFICATIONS_NAME} has no owner)",
        hint,
    )


def _connects(address: str | tuple[str, int], family: int) -> bool:
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(SOCKET_TIMEOUT_S)
            sock.connect(address)
        return True
    except OSError:
        return False


def _x11_answers(display: str) -> bool:
    host, _, rest = display.rpartition(":")
    number = rest.split(".", 1)[0]
    if not number.isdigit():
        return False
    if host in ("", "unix"):
        path = f"/tmp/.X11-unix/X{number}"
        abstract = sys.platform.startswith("linux") and _connects("\0" + path, socket.AF_UNIX)
        return abstract or _connects(path, socket.AF_UNIX)
    if host.startswith("/"):  # launchd-style socket path
        return _connects(display, socket.AF_UNIX)
    return _connects(
        (host.strip("[]"), 6000 + int(number)), socket.AF_INET6 if ":" in host else socket.AF_INET
    )


def _wayland_answers(display: str) -> bool:
    path = (
        display
        if os.path.isabs(display)
        else os.path.join(os.environ.get("XDG_RUNTIME_DIR", ""), display)
    )
    return _connects(path, socket.AF_UNIX)


def check_display(facts: BusFacts) -> Check:
    if sys.platform == "darwin":
        return Check("display", True, False, "the macOS menu bar")
    if sys.platform == "win32":
        return Check("display", True, False, "the Windows notification area")
    x11 = os.environ.get("DISPLAY", "").strip()
    wayland = os.environ.get("WAYLAND_DISPLAY", "").strip()
    if not x11 and not wayland:
        return Check(
            "display",
            False,
            False,
            "no graphical session (DISPLAY and WAYLAND_DISPLAY are unset)",
            "the tray needs one; `agentray run` and `agentray demo --headless` work without",
        )
    found: list[str] = []
    missing: list[str] = []
    if wayland:
        (found if _wayland_answers(wayland) else missing).append(f"Wayland {wayland}")
    if x11:
        (found if _x11_answers(x11) else missing).append(f"X11 {x11}")
    if not found:
        return Check(
            "display",
            False,
            False,
            f"nothing answers at {' or '.join(missing)}",
            "start the tray from your desktop session",
        )
    session = " and ".join(found)
    if facts.problem:
        return Check(
            "display",
            True,
            False,
            f"{session}; no tray host known: {facts.problem}",
            "Qt falls back to the XEmbed tray, which many desktops do not show",
            warning=True,
        )
    if facts.sni_host:
        return Check(
            "display", True, False, f"{session}, StatusNotifier tray host on the session bus"
        )
    fallback = (
        "Qt falls back to the old XEmbed tray, which many desktops do not show (GNOME: enable the "
        "AppIndicator extension)"
        if any(s.startswith("X11") for s in found)
        else "there is no tray icon under Wayland without one; the dashboard window is the way in"
    )
    return Check(
        "display",
        True,
        False,
        f"{session}; no StatusNotifier tray host on the session bus",
        fallback,
        warning=True,
    )


# ------------------------------------------------------------------------------------ running
def _guarded(name: str, check: Callable[[], Check]) -> Callable[[], Check]:
    def run() -> Check:
        try:
            return check()
        except Exception as error:  # any failure to check is a line, never a traceback
            why = str(error).strip().splitlines()[0] if str(error).strip() else ""
            detail = f"could not check: {type(error).__name__}" + (f": {why}" if why else "")
            return Check(name, False, name in ESSENTIAL, detail)

    return run


def _desktop_checks() -> list[Check]:
    facts = BusFacts()
    if _uses_dbus():
        try:
            from agentray.ui.bus_probe import probe_session_bus  # Qt stays on the UI side

            facts = probe_session_bus()
        except Exception as error:
            facts = BusFacts(
                f"the D-Bus session bus could not be asked ({type(error).__name__}: {error})"
            )
    return [
        _guarded("notifications", lambda: check_notifications(facts))(),
        _guarded("display", lambda: check_display(facts))(),
    ]


def run_checks(timeout_s: float = TIMEOUT_S) -> list[Check]:
    """The five checks, in CHECK_NAMES order. Independent groups run side by side in daemon
    threads; one that does not answer within ``timeout_s`` (a hung keyring or bus) says so."""
    groups: list[tuple[tuple[str, ...], Callable[[], list[Check]]]] = [
        (("sandbox",), lambda: [_guarded("sandbox", check_sandbox)()]),
        (
            ("keyring", "key"),
            lambda: [_guarded("keyring", check_keyring)(), _guarded("key", check_key)()],
        ),
        (("notifications", "display"), _desktop_checks),
    ]
    results: dict[str, Check] = {}
    lock = threading.Lock()
    threads: list[threading.Thread] = []

    def worker(run: Callable[[], list[Check]]) -> None:
        try:
            checks = run()
        except BaseException:  # _guarded already turns errors into lines; this is belt and braces
            return
        with lock:
            for check in checks:
                results[check.name] = check

    for _, run in groups:
        thread = threading.Thread(target=worker, args=(run,), name="agentray-doctor", daemon=True)
        thread.start()
        threads.append(thread)
    deadline = time.monotonic() + timeout_s
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    with lock:
        return [
            results.get(name)
            or Check(
                name, False, name in ESSENTIAL, f"could not check: no answer within {timeout_s:g} s"
            )
            for name in CHECK_NAMES
        ]


def essentials_ok(checks: Sequence[Check]) -> bool:
    return all(check.ok for check in checks if check.essential)


def _printable(line: str, encoding: str | None) -> str:
    try:
        line.encode(encoding or "utf-8")
    except (UnicodeEncodeError, LookupError):
        return line.replace("✗", "x").replace("—", "-").encode("ascii", "replace").decode("ascii")
    return line


def doctor_main() -> int:
    checks = run_checks()
    encoding = getattr(sys.stdout, "encoding", None)
    for check in checks:
        print(_printable(format_check(check), encoding))
    sys.stdout.flush()
    return 0 if essentials_ok(checks) else 1
