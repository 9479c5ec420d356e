"""The D-Bus facts ``agentray doctor`` and the welcome dialog report, asked through QtDBus (what the
tray itself uses) on a private connection that is closed afterwards; no display is needed."""

from __future__ import annotations

import uuid
from typing import Any

from agentray.doctor import (
    DBUS_CALL_MS,
    DBUS_NAME,
    NOTIFICATIONS_NAME,
    SNI_WATCHER_NAME,
    BusFacts,
    session_bus_address,
)

__all__ = ["probe_session_bus"]


def probe_session_bus() -> BusFacts:
    address = session_bus_address()
    if address is None:
        return BusFacts(
            "no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is unset and there is no "
            "$XDG_RUNTIME_DIR/bus)"
        )
    try:
        from PySide6.QtDBus import QDBus, QDBusConnection, QDBusMessage
    except ImportError as error:
        return BusFacts(f"Qt's D-Bus module cannot be loaded ({error})")

    name = f"agentray-doctor-{uuid.uuid4().hex}"
    connection = QDBusConnection.connectToBus(address, name)
    try:
        if not connection.isConnected():
            why = connection.lastError().message() or "no reason given"
            return BusFacts(f"cannot connect to the D-Bus session bus at {address} ({why})")

        def call(
            service: str, path: str, interface: str, method: str, *args: Any
        ) -> list[Any] | None:
            message = QDBusMessage.createMethodCall(service, path, interface, method)
            if args:
                message.setArguments(list(args))
            reply = connection.call(message, QDBus.CallMode.Block, DBUS_CALL_MS)
            if reply.type() != QDBusMessage.MessageType.ReplyMessage:
                return None
            return list(reply.arguments())

        def bus(method: str, *args: Any) -> list[Any] | None:
            return call(DBUS_NAME, "/org/freedesktop/DBus", DBUS_NAME, method, *args)

        owned = bus("NameHasOwner", NOTIFICATIONS_NAME)
        if owned is None:
            return BusFacts("the D-Bus session bus does not answer")
        notifier_running = bool(owned and owned[0])
        notifier: str | None = None
        activatable = False
        if notifier_running:
            info = call(
                NOTIFICATIONS_NAME,
                "/org/freedesktop/Notifications",
                NOTIFICATIONS_NAME,
                "GetServerInformation",
            )
            if info:
                notifier = " ".join(str(part) for part in info[:3] if part) or None
        else:  # D-Bus can start one on demand (without us starting it now)
            names = bus("ListActivatableNames")
            activatable = bool(names) and NOTIFICATIONS_NAME in (names[0] if names else [])

        sni_host = False
        watcher = bus("NameHasOwner", SNI_WATCHER_NAME)
        if watcher and watcher[0]:
            # what Qt asks before it uses the StatusNotifierItem tray instead of XEmbed
            value = call(
                SNI_WATCHER_NAME,
                "/StatusNotifierWatcher",
                "org.freedesktop.DBus.Properties",
                "Get",
                SNI_WATCHER_NAME,
                "IsStatusNotifierHostRegistered",
            )
            if value:
                inner = value[0].variant() if hasattr(value[0], "variant") else value[0]
                sni_host = bool(inner)
        return BusFacts(None, notifier, notifier_running, activatable, sni_host)
    finally:
        QDBusConnection.disconnectFromBus(name)
