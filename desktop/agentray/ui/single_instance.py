"""One tray per user: a QLocalServer with a per-user name. A second launch sends "show" (or
"demo") to the running one, which brings its dashboard forward, and exits."""

from __future__ import annotations

import getpass
import os

from PySide6.QtCore import QObject, Signal
from PySide6.QtNetwork import QAbstractSocket, QLocalServer, QLocalSocket

__all__ = ["SingleInstance", "default_server_name"]

CONNECT_TIMEOUT_MS = 500


def default_server_name() -> str:
    """Per user: the uid where there is one (POSIX), else the user name (Windows)."""
    getuid = getattr(os, "getuid", None)
    who = str(getuid()) if getuid is not None else getpass.getuser()
    return f"agentray-tray-{who}"


class SingleInstance(QObject):
    message_received = Signal(str)

    def __init__(self, name: str | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.name = name or default_server_name()
        self.server: QLocalServer | None = None

    def send(self, message: str, timeout_ms: int = CONNECT_TIMEOUT_MS) -> bool:
        """Deliver ``message`` to a running instance; False when none answers."""
        socket = QLocalSocket()
        socket.connectToServer(self.name)
        if not socket.waitForConnected(timeout_ms):
            return False
        data = (message.strip() + "\n").encode("utf-8")
        ok = socket.write(data) == len(data)
        # flush() may write it all at once; then there is nothing left for waitForBytesWritten
        socket.flush()
        if socket.bytesToWrite() > 0:
            ok = socket.waitForBytesWritten(timeout_ms) and ok
        socket.disconnectFromServer()
        if socket.state() != QLocalSocket.LocalSocketState.UnconnectedState:
            socket.waitForDisconnected(timeout_ms)
        return ok

    def listen(self) -> bool:
        """Become the running instance; a stale socket (a crashed tray) is removed first."""
        server = QLocalServer(self)
        server.setSocketOptions(QLocalServer.SocketOption.UserAccessOption)
        if not server.listen(self.name):
            if server.serverError() != QAbstractSocket.SocketError.AddressInUseError:
                return False
            QLocalServer.removeServer(self.name)
            if not server.listen(self.name):
                return False
        server.newConnection.connect(self._on_connection)
        self.server = server
        return True

    def acquire(self, message: str = "show") -> bool:
        """True: we are the first instance (now listening). False: another one runs and got
        ``message``."""
        if self.send(message):
            return False
        return self.listen()

    def _on_connection(self) -> None:
        assert self.server is not None
        while self.server.hasPendingConnections():
            socket = self.server.nextPendingConnection()
            buffer = bytearray()

            def read(s: QLocalSocket = socket, buf: bytearray = buffer) -> None:
                buf.extend(bytes(s.readAll().data()))
                while b"\n" in buf:
                    line, _, rest = bytes(buf).partition(b"\n")
                    buf[:] = rest
                    text = line.decode("utf-8", "replace").strip()
                    if text:
                        self.message_received.emit(text)

            socket.readyRead.connect(read)
            socket.disconnected.connect(socket.deleteLater)
            if socket.bytesAvailable():
                read()

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
