"""The dashboard's Timeline tab: one row per agent, its states over time as coloured bars, arrows
from what it depended on, escalation marks and, while the run goes on, a "now" line.

The model is :class:`agentray.timeline.TimelineBuilder` (Qt-free). The dashboard hands the view a
builder read from the journal once, when a run is selected, then passes on the engine events it
already receives; the view never reads the journal. A single-shot timer turns the builder into a
snapshot and repaints at most every ``REPAINT_INTERVAL_MS``, however many events arrive.
"""

from __future__ import annotations

import time

from PySide6.QtCore import QEvent, QPointF, QRect, QRectF, QSize, Qt, QTimer
from PySide6.QtGui import (
    QColor,
    QFontMetrics,
    QHelpEvent,
    QPainter,
    QPainterPath,
    QPaintEvent,
    QPalette,
    QPen,
    QPolygonF,
)
from PySide6.QtWidgets import QToolTip, QWidget

from agentray import events as ev
from agentray.timeline import (
    AgentStatus,
    AgentTimeline,
    EscalationMark,
    Segment,
    Timeline,
    TimelineBuilder,
    axis_ticks,
    format_duration,
    tick_label,
)

__all__ = ["REPAINT_INTERVAL_MS", "STATE_COLORS", "TimelineView"]

REPAINT_INTERVAL_MS = 100  # at most ~10 snapshots and repaints a second
CLOCK_INTERVAL_MS = 1000  # a live run's bars grow, and its "now" line moves, once a second
STATE_COLORS: dict[AgentStatus, str] = {
    AgentStatus.QUEUED: "#c3c9d1",
    AgentStatus.RUNNING: "#2e86de",
    AgentStatus.WAITING: "#f4c542",
    AgentStatus.BLOCKED: "#e67e22",
    AgentStatus.DONE: "#27ae60",
    AgentStatus.FAILED: "#c0392b",
    AgentStatus.CANCELLED: "#8e9aa6",
}
ESCALATION_COLOR = "#8e44ad"
NOW_COLOR = "#c0392b"
ARROW_COLOR = "#7f8c8d"

AXIS_H = 24
LEGEND_H = 44  # room for two lines
ROW_H = 24
BAR_H = 12
LABEL_W = 230  # the labels' column, at most; a narrow view gives it a third of its width
MARGIN = 12
INDENT = 10  # per nesting level of the labels


class TimelineView(QWidget):
    """Custom-painted Gantt chart of one run; see the module docstring."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("timelineView")
        self.setAutoFillBackground(True)
        self.setBackgroundRole(QPalette.ColorRole.Base)
        self.snapshot_count = 0  # how many snapshots were taken (the tests bound it)
        self._builder: TimelineBuilder | None = None
        self._timeline: Timeline | None = None
        self._repaint = QTimer(self)
        self._repaint.setSingleShot(True)
        self._repaint.setInterval(REPAINT_INTERVAL_MS)
        self._repaint.timeout.connect(self._take_snapshot)
        self._clock = QTimer(self)
        self._clock.setInterval(CLOCK_INTERVAL_MS)
        self._clock.timeout.connect(self._tick)

    # ------------------------------------------------------------------ feeding
    def set_builder(self, builder: TimelineBuilder | None) -> None:
        """Show this run (None: nothing); drawn at once."""
        self._builder = builder
        self._repaint.stop()
        self._take_snapshot()

    def feed(self, event: ev.Event) -> None:
        """An engine event of any run: only the shown run's changes schedule a repaint."""
        if self._builder is not None and self._builder.feed(event):
            self._schedule()

    def timeline(self) -> Timeline | None:
        """The snapshot on show."""
        return self._timeline

    @property
    def pending(self) -> bool:
        """Changes were fed that the snapshot on show does not have yet."""
        return self._repaint.isActive()

    def _schedule(self) -> None:
        if not self._repaint.isActive():
            self._repaint.start()

    def _tick(self) -> None:
        if self._builder is not None and self._builder.live and self.isVisible():
            self._schedule()

    def _take_snapshot(self) -> None:
        builder = self._builder
        self._timeline = builder.snapshot(time.time()) if builder is not None else None
        self.snapshot_count += 1
        live = builder is not None and builder.live
        if live and not self._clock.isActive():
            self._clock.start()
        elif not live:
            self._clock.stop()
        self.updateGeometry()
        self.update()

    # ------------------------------------------------------------------ geometry
    def sizeHint(self) -> QSize:
        rows = len(self._timeline.agents) if self._timeline is not None else 0
        return QSize(LABEL_W + 480, AXIS_H + max(rows, 1) * ROW_H + LEGEND_H + MARGIN)

    def minimumSizeHint(self) -> QSize:
        return QSize(120 + 240, self.sizeHint().height())

    def label_width(self) -> int:
        return max(120, min(LABEL_W, self.width() // 3))

    def _chart_left(self) -> int:
        return self.label_width()

    def _chart_width(self) -> int:
        return max(1, self.width() - self.label_width() - MARGIN)

    def x_at(self, ts: float) -> float:
        """The x of a moment of the shown run."""
        timeline = self._timeline
        if timeline is None:
            return float(self._chart_left())
        span = max(timeline.duration, 1e-3)
        return self._chart_left() + (ts - timeline.start) / span * self._chart_width()

    def row_top(self, index: int) -> int:
        return AXIS_H + index * ROW_H

    def bar_rect(self, index: int, segment: Segment) -> QRectF:
        """Where a segment of the ``index``-th agent is drawn (at least a pixel wide)."""
        left = self.x_at(segment.start)
        right = max(self.x_at(segment.end), left + 1.0)
        top = self.row_top(index) + (ROW_H - BAR_H) / 2
        return QRectF(left, top, right - left, BAR_H)

    def _row_index(self, agent_id: str) -> int | None:
        if self._timeline is None:
            return None
        for index, agent in enumerate(self._timeline.agents):
            if agent.agent_id == agent_id:
                return index
        return None

    def segment_rect(self, agent_id: str, segment_index: int) -> QRectF:
        """For tests and tooltips: the rectangle of one segment of ``agent_id``."""
        index = self._row_index(agent_id)
        if index is None or self._timeline is None:
            raise KeyError(agent_id)
        return self.bar_rect(index, self._timeline.agents[index].segments[segment_index])

    # ------------------------------------------------------------------ painting
    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        try:
            self._paint(painter)
        finally:
            painter.end()

    def _paint(self, painter: QPainter) -> None:
        palette = self.palette()
        text = palette.color(QPalette.ColorRole.Text)
        muted = palette.color(QPalette.ColorRole.PlaceholderText)
        timeline = self._timeline
        if timeline is None or not timeline.agents:
            painter.setPen(muted)
            message = "Select a run." if timeline is None else "No agents yet."
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, message)
            return
        self._paint_axis(painter, timeline, muted)
        alternate = palette.color(QPalette.ColorRole.AlternateBase)
        for index in range(len(timeline.agents)):
            if index % 2:
                painter.fillRect(QRect(0, self.row_top(index), self.width(), ROW_H), alternate)
        metrics = QFontMetrics(self.font())
        for index, agent in enumerate(timeline.agents):
            self._paint_label(painter, metrics, index, agent, text, muted)
            for segment in agent.segments:
                painter.fillRect(self.bar_rect(index, segment), QColor(STATE_COLORS[segment.state]))
            self._paint_end(painter, index, agent)
        self._paint_legend(painter, metrics, self.row_top(len(timeline.agents)) + 8, text)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        self._paint_dependencies(painter, timeline)
        for index, agent in enumerate(timeline.agents):
            for mark in agent.escalations:
                self._paint_escalation(painter, index, mark, timeline)
        if timeline.live:
            pen = QPen(QColor(NOW_COLOR), 1.5, Qt.PenStyle.DashLine)
            painter.setPen(pen)
            x = self.x_at(timeline.end)
            painter.drawLine(QPointF(x, AXIS_H - 6), QPointF(x, self.row_top(len(timeline.agents))))

    def _paint_axis(self, painter: QPainter, timeline: Timeline, muted: QColor) -> None:
        painter.setPen(muted)
        metrics = QFontMetrics(self.font())
        most = max(1, self._chart_width() // 70)
        bottom = AXIS_H - 4
        painter.drawLine(
            self._chart_left(), bottom, self._chart_left() + self._chart_width(), bottom
        )
        for at in axis_ticks(timeline.duration, most):
            x = round(self.x_at(timeline.start + at))
            painter.drawLine(x, bottom - 4, x, bottom)
            label = tick_label(at)
            width = metrics.horizontalAdvance(label)
            left = min(x - width // 2, self._chart_left() + self._chart_width() - width)
            painter.drawText(max(left, self._chart_left()), bottom - 6, label)

    def _paint_label(
        self,
        painter: QPainter,
        metrics: QFontMetrics,
        index: int,
        agent: AgentTimeline,
        text: QColor,
        muted: QColor,
    ) -> None:
        top = self.row_top(index)
        indent = 6 + INDENT * min(agent.depth, 4)
        ident = f"{agent.agent_id}  "
        painter.setPen(muted)
        painter.drawText(
            QRect(indent, top, self.label_width(), ROW_H), Qt.AlignmentFlag.AlignVCenter, ident
        )
        left = indent + metrics.horizontalAdvance(ident)
        room = max(0, self.label_width() - left - 8)
        title = metrics.elidedText(agent.title, Qt.TextElideMode.ElideRight, room)
        painter.setPen(text)
        painter.drawText(QRect(left, top, room, ROW_H), Qt.AlignmentFlag.AlignVCenter, title)

    def _paint_end(self, painter: QPainter, index: int, agent: AgentTimeline) -> None:
        """A terminal agent's end: a small square in its final colour (a cross when it failed)."""
        if agent.ended_at is None:
            return
        x = self.x_at(agent.ended_at)
        middle = self.row_top(index) + ROW_H / 2
        color = QColor(STATE_COLORS[agent.status])
        if agent.status == AgentStatus.FAILED:
            painter.setPen(QPen(color, 2))
            painter.drawLine(QPointF(x + 1, middle - 4), QPointF(x + 9, middle + 4))
            painter.drawLine(QPointF(x + 1, middle + 4), QPointF(x + 9, middle - 4))
        else:
            painter.fillRect(QRectF(x + 1, middle - 3, 6, 6), color)

    def _paint_escalation(
        self, painter: QPainter, index: int, mark: EscalationMark, timeline: Timeline
    ) -> None:
        """A triangle over the bar where it was raised; a line under it until it was answered."""
        color = QColor(ESCALATION_COLOR)
        x = self.x_at(mark.raised_at)
        top = self.row_top(index) + 1.0
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(color)
        painter.drawPolygon(
            QPolygonF([QPointF(x - 5, top), QPointF(x + 5, top), QPointF(x, top + 7)])
        )
        until = mark.answered_at if mark.answered_at is not None else timeline.end
        y = self.row_top(index) + (ROW_H + BAR_H) / 2 + 2
        painter.setPen(QPen(color, 2))
        painter.drawLine(QPointF(x, y), QPointF(max(self.x_at(until), x + 2), y))
        painter.setBrush(Qt.BrushStyle.NoBrush)

    def _paint_dependencies(self, painter: QPainter, timeline: Timeline) -> None:
        """From the end of each dependency's bar down to where its dependent started to run,
        arriving on top of that bar with an arrowhead."""
        rows = {agent.agent_id: i for i, agent in enumerate(timeline.agents)}
        color = QColor(ARROW_COLOR)
        for dependency in timeline.dependencies:
            source, target = rows[dependency.depends_on], rows[dependency.agent_id]
            before, after = timeline.agents[source], timeline.agents[target]
            end = before.ended_at if before.ended_at is not None else timeline.end
            start = next(
                (s.start for s in after.segments if s.state != AgentStatus.QUEUED), timeline.end
            )
            x1, x2 = self.x_at(end), self.x_at(start)
            gap = (ROW_H - BAR_H) / 2
            down = target > source
            y1 = self.row_top(source) + (ROW_H - gap if down else gap)
            y2 = self.row_top(target) + (gap if down else ROW_H - gap)
            turn = y2 - (gap / 2 if down else -gap / 2)
            path = QPainterPath(QPointF(x1, y1))
            path.lineTo(QPointF(x1, turn))
            path.lineTo(QPointF(x2, turn))
            path.lineTo(QPointF(x2, y2))
            painter.setPen(QPen(color, 1.2))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawPath(path)
            tip = 4.0 if down else -4.0
            painter.setPen(Qt.PenStyle.NoPen)
            painter.setBrush(color)
            painter.drawPolygon(
                QPolygonF(
                    [QPointF(x2, y2), QPointF(x2 - 3.5, y2 - tip), QPointF(x2 + 3.5, y2 - tip)]
                )
            )
        painter.setBrush(Qt.BrushStyle.NoBrush)

    def _paint_legend(
        self, painter: QPainter, metrics: QFontMetrics, top: int, text: QColor
    ) -> None:
        x, middle = 8.0, top + 10.0
        items: list[tuple[str, QColor]] = [
            (state.value, QColor(STATE_COLORS[state]))
            for state in (
                AgentStatus.QUEUED, AgentStatus.RUNNING, AgentStatus.WAITING, AgentStatus.BLOCKED,
                AgentStatus.DONE, AgentStatus.FAILED,
            )
        ]  # fmt: skip
        items.append(("escalation", QColor(ESCALATION_COLOR)))
        for label, color in items:
            width = 14 + metrics.horizontalAdvance(label)
            if x > 8 and x + width > self.width() - MARGIN:  # wrap
                x, middle = 8.0, middle + 20
            painter.fillRect(QRectF(x, middle - 5, 10, 10), color)
            painter.setPen(text)
            painter.drawText(QPointF(x + 14, middle + metrics.ascent() / 2 - 1), label)
            x += width + 14

    # ------------------------------------------------------------------ tooltips
    def tooltip_at(self, x: float, y: float) -> str:
        """What the tooltip at (x, y) says: the agent and, over a bar, its state and duration."""
        timeline = self._timeline
        if timeline is None or y < AXIS_H:
            return ""
        index = int((y - AXIS_H) // ROW_H)
        if not 0 <= index < len(timeline.agents):
            return ""
        agent = timeline.agents[index]
        who = f"{agent.agent_id} {agent.title} ({agent.role or 'agent'})"
        if agent.depends_on:
            who += f"\ndepends on {', '.join(agent.depends_on)}"
        for mark in agent.escalations:
            if abs(self.x_at(mark.raised_at) - x) <= 5 and y < self.row_top(index) + ROW_H / 2:
                waited = (mark.answered_at or timeline.end) - mark.raised_at
                state = "answered" if mark.answered_at is not None else "waiting for an answer"
                return f"{who}\nescalation ({mark.kind}), {state} after {format_duration(waited)}"
        for segment in agent.segments:
            if self.bar_rect(index, segment).adjusted(0, -4, 0, 4).contains(QPointF(x, y)):
                still = " so far" if timeline.live and segment.end >= timeline.end else ""
                return (
                    f"{who}\n{segment.state.value} for {format_duration(segment.duration)}{still}"
                    f" ({_clock(segment.start)}–{_clock(segment.end)})"
                )
        total = (agent.ended_at or timeline.end) - agent.created_at
        return f"{who}\n{agent.status.value}, {format_duration(total)} since it was spawned"

    def event(self, event: QEvent) -> bool:
        if event.type() == QEvent.Type.ToolTip and isinstance(event, QHelpEvent):
            tip = self.tooltip_at(event.pos().x(), event.pos().y())
            if tip:
                QToolTip.showText(event.globalPos(), tip, self)
            else:
                QToolTip.hideText()
                event.ignore()
            return True
        return super().event(event)


def _clock(ts: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(ts))
