"""Tray and window icons: SVGs from agentray.resources/icons rendered at several sizes (HiDPI),
with the number of working agents drawn as a badge."""

from __future__ import annotations

from functools import cache
from importlib.resources import files

from PySide6.QtCore import QByteArray, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QIcon, QPainter, QPen, QPixmap
from PySide6.QtSvg import QSvgRenderer

__all__ = [
    "ICON_SIZES",
    "STATES",
    "app_icon",
    "badge_text",
    "render_pixmap",
    "state_icon",
    "svg_bytes",
]

STATES = ("idle", "working", "attention", "error")
ICON_SIZES = (16, 22, 24, 32, 48, 64, 128, 256)


@cache
def svg_bytes(name: str) -> bytes:
    return (files("agentray.resources") / "icons" / f"{name}.svg").read_bytes()


def badge_text(count: int) -> str:
    return "" if count <= 0 else (str(count) if count < 10 else "9+")


def render_pixmap(name: str, size: int, badge: str = "") -> QPixmap:
    renderer = QSvgRenderer(QByteArray(svg_bytes(name)))
    pixmap = QPixmap(size, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    renderer.render(painter, QRectF(0, 0, size, size))
    if badge:
        _draw_badge(painter, size, badge)
    painter.end()
    return pixmap


def _draw_badge(painter: QPainter, size: int, text: str) -> None:
    # A filled circle in the top right corner, light outline so it reads on dark and light panels.
    diameter = max(9.0, size * 0.56)
    rect = QRectF(size - diameter, 0, diameter, diameter)
    painter.setPen(QPen(QColor("#ffffff"), max(1.0, size / 32)))
    painter.setBrush(QColor("#2563eb"))
    painter.drawEllipse(rect.adjusted(0.5, 0.5, -0.5, -0.5))
    font = QFont()
    font.setBold(True)
    font.setPixelSize(max(7, int(diameter * (0.62 if len(text) == 1 else 0.5))))
    painter.setFont(font)
    painter.setPen(QColor("#ffffff"))
    painter.drawText(rect, int(Qt.AlignmentFlag.AlignCenter), text)


def state_icon(state: str, count: int = 0) -> QIcon:
    """The tray icon for a state (idle | working | attention | error); ``count`` is drawn as a
    badge on the working icon."""
    if state not in STATES:
        raise ValueError(f"unknown tray state {state!r}")
    badge = badge_text(count) if state == "working" else ""
    icon = QIcon()
    for size in ICON_SIZES:
        icon.addPixmap(render_pixmap(state, size, badge))
    return icon


def app_icon() -> QIcon:
    icon = QIcon()
    for size in ICON_SIZES:
        icon.addPixmap(render_pixmap("agentray", size))
    return icon
