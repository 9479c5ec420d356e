"""Agentray's tray (PySide6 + qasync). The only package that imports Qt.

AppController   owns the engine, bridges its events to Qt signals (controller.py)
AppSettings     preferences over QSettings (settings.py)
run_tray        the tray application's entry point (app.py)
"""

from __future__ import annotations

from typing import Any

from .controller import AppController, EscalationView, RunSummary
from .settings import AppSettings

__all__ = ["AppController", "AppSettings", "EscalationView", "RunSummary", "run_tray"]


def __getattr__(name: str) -> Any:
    # run_tray pulls in QtWidgets and qasync; load it only when asked for.
    if name == "run_tray":
        from .app import run_tray

        return run_tray
    raise AttributeError(name)
