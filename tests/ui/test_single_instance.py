"""One tray per user: the second instance hands its message to the first and steps aside."""

from __future__ import annotations

import os
import socket
import uuid
from pathlib import Path

import pytest
from PySide6.QtNetwork import QLocalServer

from agentray.ui.single_instance import SingleInstance, default_server_name


def test_name_is_per_user() -> None:
    name = default_server_name()
    assert name.startswith("agentray-tray-")
    if hasattr(os, "getuid"):
        assert name.endswith(str(os.getuid()))


def test_second_instance_sends_show_to_first(qtbot) -> None:
    name = f"agentray-test-{uuid.uuid4().hex[:8]}"
    first = SingleInstance(name)
    assert first.acquire("show")
    got: list[str] = []
    first.message_received.connect(got.append)
    try:
        second = SingleInstance(name)
        assert not second.acquire("show")
        qtbot.waitUntil(lambda: got == ["show"], timeout=3000)
        assert second.server is None  # it did not take over
        assert SingleInstance(name).send("demo")
        qtbot.waitUntil(lambda: got == ["show", "demo"], timeout=3000)
    finally:
        first.close()
    # once the first is gone, a new one becomes the instance
    third = SingleInstance(name)
    assert third.acquire()
    third.close()


@pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="POSIX sockets")
def test_stale_socket_is_replaced(tmp_path: Path, qtbot) -> None:
    name = f"agentray-test-{uuid.uuid4().hex[:8]}"
    probe = QLocalServer()
    assert probe.listen(name)
    path = probe.fullServerName()
    probe.close()
    # a crashed tray leaves its socket file behind: bound, nobody listening
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(path)
    stale.close()
    assert Path(path).exists()
    instance = SingleInstance(name)
    assert instance.acquire()
    got: list[str] = []
    instance.message_received.connect(got.append)
    try:
        assert SingleInstance(name).send("show")
        qtbot.waitUntil(lambda: got == ["show"], timeout=3000)
    finally:
        instance.close()
