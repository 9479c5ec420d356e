"""A run's timeline: one row per agent with its states over time, its escalations and what it
depends on. Qt-free; the dashboard paints it, ``agentray show RUN --timeline`` prints it.

Two sources feed the same :class:`TimelineBuilder`:

* the journal (:func:`load_timeline`): the agents' rows and the ``agent_status`` events the engine
  writes on every status change, plus the escalations table. An agent of a run recorded before
  those events existed falls back to its created / started / ended times.
* live engine events (:meth:`TimelineBuilder.feed`): ``AgentSpawned``, ``AgentStatusChanged``,
  ``EscalationRaised``, ``EscalationAnswered``, ``RunStarted`` (a resume) and ``RunFinished``.

:meth:`TimelineBuilder.snapshot` turns what was fed into frozen :class:`Timeline` values; while a
run goes on, its agents' last segments end at "now".
"""

from __future__ import annotations

import math
import shutil
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from agentray import events as ev
from agentray.states import TERMINAL, AgentStatus

if TYPE_CHECKING:
    from agentray.journal import AgentRow, EscalationRow, Journal, RunRow

__all__ = [
    "AgentStatus",
    "AgentTimeline",
    "Dependency",
    "EscalationMark",
    "Segment",
    "Timeline",
    "TimelineBuilder",
    "axis_ticks",
    "builder_from_records",
    "format_duration",
    "load_timeline",
    "print_timeline",
    "render_timeline",
    "tick_label",
]


# the journal's agent_status events are all the timeline reads of the events table
STATUS_EVENT = "agent_status"


def _state(value: object) -> AgentStatus | None:
    try:
        return AgentStatus(str(value))
    except ValueError:
        return None


@dataclass(frozen=True)
class Segment:
    """The agent was in ``state`` from ``start`` to ``end`` (wall-clock seconds)."""

    start: float
    end: float
    state: AgentStatus

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class EscalationMark:
    escalation_id: str
    agent_id: str
    kind: str
    raised_at: float
    answered_at: float | None  # None: still waiting for an answer


@dataclass(frozen=True)
class Dependency:
    """``agent_id`` started only after ``depends_on`` was done."""

    agent_id: str
    depends_on: str


@dataclass(frozen=True)
class AgentTimeline:
    agent_id: str
    role: str
    title: str
    parent_id: str | None
    depends_on: tuple[str, ...]
    depth: int
    created_at: float
    status: AgentStatus  # its latest state
    ended_at: float | None  # when it reached a terminal state (None: it has not)
    segments: tuple[Segment, ...]
    escalations: tuple[EscalationMark, ...]

    def segment_at(self, ts: float) -> Segment | None:
        """The segment that covers ``ts`` (the later one where two meet)."""
        for segment in reversed(self.segments):
            if segment.start <= ts <= segment.end:
                return segment
        return None

    def states(self) -> list[AgentStatus]:
        """Its states in order (consecutive repeats merged), the terminal one included."""
        states = [s.state for s in self.segments]
        if self.status in TERMINAL and (not states or states[-1] != self.status):
            states.append(self.status)
        return states

    def time_in(self, state: AgentStatus) -> float:
        return sum(s.duration for s in self.segments if s.state == state)


@dataclass(frozen=True)
class Timeline:
    run_id: str
    start: float
    end: float  # the run's end, or "now" while it goes on
    live: bool  # the run is still going: the open segments grow
    agents: tuple[AgentTimeline, ...]
    dependencies: tuple[Dependency, ...]

    @property
    def duration(self) -> float:
        return max(0.0, self.end - self.start)

    def agent(self, agent_id: str) -> AgentTimeline:
        for agent in self.agents:
            if agent.agent_id == agent_id:
                return agent
        raise KeyError(agent_id)

    @property
    def escalations(self) -> tuple[EscalationMark, ...]:
        return tuple(mark for agent in self.agents for mark in agent.escalations)


# ---------------------------------------------------------------------------------------- model
@dataclass
class _Track:
    agent_id: str
    role: str
    title: str
    parent_id: str | None
    depends_on: tuple[str, ...]
    depth: int
    created_at: float
    changes: list[tuple[float, AgentStatus]] = field(default_factory=list)

    @property
    def state(self) -> AgentStatus:
        return self.changes[-1][1]

    @property
    def last_ts(self) -> float:
        return self.changes[-1][0]


@dataclass
class _Escalation:
    agent_id: str
    kind: str
    raised_at: float
    answered_at: float | None = None


class TimelineBuilder:
    """The mutable model behind :class:`Timeline`: fed status changes, read as snapshots."""

    def __init__(self, run_id: str, started_at: float) -> None:
        self.run_id = run_id
        self.started_at = started_at
        self.ended_at: float | None = None
        self._tracks: dict[str, _Track] = {}
        self._escalations: dict[str, _Escalation] = {}
        self._latest = started_at

    @property
    def live(self) -> bool:
        return self.ended_at is None

    @property
    def latest(self) -> float:
        """The latest moment anything was fed."""
        return self._latest

    def __contains__(self, agent_id: object) -> bool:
        return agent_id in self._tracks

    def _seen(self, ts: float) -> None:
        self._latest = max(self._latest, ts)

    # -------------------------------------------------------------- changes
    def add_agent(
        self,
        agent_id: str,
        *,
        role: str,
        title: str,
        parent_id: str | None,
        depends_on: Iterable[str],
        depth: int,
        created_at: float,
    ) -> bool:
        """A new agent, queued at ``created_at``; False when it is known already."""
        if agent_id in self._tracks:
            return False
        track = _Track(
            agent_id, role, title, parent_id, tuple(depends_on), depth, created_at,
            [(created_at, AgentStatus.QUEUED)],
        )  # fmt: skip
        self._tracks[agent_id] = track
        self._seen(created_at)
        return True

    def change(self, agent_id: str, ts: float, status: str, previous: str | None = None) -> bool:
        """``agent_id`` went into ``status`` at ``ts``; False when that changes nothing."""
        state = _state(status)
        if state is None:
            return False
        track = self._tracks.get(agent_id)
        if track is None:  # a status before its spawn (an event missed): start it here
            before = _state(previous) or AgentStatus.QUEUED
            track = _Track(agent_id, "", agent_id, None, (), 1, ts, [(ts, before)])
            self._tracks[agent_id] = track
        if track.state == state or ts < track.last_ts:
            return False  # nothing new, or older than what is known (a late duplicate)
        track.changes.append((ts, state))
        self._seen(ts)
        return True

    def raise_escalation(self, escalation_id: str, agent_id: str, kind: str, ts: float) -> bool:
        if escalation_id in self._escalations:  # raised again on resume: the first time counts
            return False
        self._escalations[escalation_id] = _Escalation(agent_id, kind, ts)
        self._seen(ts)
        return True

    def answer_escalation(self, escalation_id: str, ts: float) -> bool:
        escalation = self._escalations.get(escalation_id)
        if escalation is None or escalation.answered_at is not None:
            return False
        escalation.answered_at = ts
        self._seen(ts)
        return True

    def finish(self, ts: float) -> bool:
        if self.ended_at is not None:
            return False
        self.ended_at = max(ts, self.started_at)
        self._seen(ts)
        return True

    def feed(self, event: ev.Event) -> bool:
        """Apply one engine event of this run; True when the timeline changed."""
        if event.run_id != self.run_id:
            return False
        match event:
            case ev.AgentSpawned():
                return self.add_agent(
                    event.agent_id, role=event.role, title=event.title, parent_id=event.parent_id,
                    depends_on=event.depends_on, depth=event.depth, created_at=event.ts,
                )  # fmt: skip
            case ev.AgentStatusChanged():
                return self.change(event.agent_id, event.ts, event.status, event.previous)
            case ev.EscalationRaised():
                return self.raise_escalation(
                    event.escalation_id, event.agent_id, event.kind, event.ts
                )
            case ev.EscalationAnswered():
                return self.answer_escalation(event.escalation_id, event.ts)
            case ev.RunFinished():
                return self.finish(event.ts)
            case ev.RunStarted() if event.resumed and self.ended_at is not None:
                self.ended_at = None  # resumed: it goes on
                return True
        return False

    # -------------------------------------------------------------- reading
    def snapshot(self, now: float) -> Timeline:
        """The timeline as of ``now`` (a live run's open segments end there)."""
        end = self.ended_at if self.ended_at is not None else max(now, self._latest)
        end = max(end, self.started_at)
        marks: dict[str, list[EscalationMark]] = {}
        for escalation_id, e in self._escalations.items():
            marks.setdefault(e.agent_id, []).append(
                EscalationMark(escalation_id, e.agent_id, e.kind, e.raised_at, e.answered_at)
            )
        agents = [
            _agent_timeline(track, end, marks.get(track.agent_id, []))
            for track in sorted(self._tracks.values(), key=lambda t: t.created_at)
        ]
        known = set(self._tracks)
        dependencies = tuple(
            Dependency(agent.agent_id, dep)
            for agent in agents
            for dep in agent.depends_on
            if dep in known
        )
        start = min([self.started_at, *(a.created_at for a in agents)])
        return Timeline(self.run_id, start, end, self.live, tuple(agents), dependencies)


def _agent_timeline(track: _Track, end: float, marks: list[EscalationMark]) -> AgentTimeline:
    segments: list[Segment] = []
    changes = track.changes
    ended_at: float | None = None
    for i, (ts, state) in enumerate(changes):
        if i + 1 < len(changes):
            until = changes[i + 1][0]
        elif state in TERMINAL:
            ended_at = ts
            break
        else:
            until = max(end, ts)  # open: to the run's end, or now
        if until <= ts:
            continue
        if segments and segments[-1].state == state and segments[-1].end == ts:
            segments[-1] = Segment(segments[-1].start, until, state)
        else:
            segments.append(Segment(ts, until, state))
    return AgentTimeline(
        agent_id=track.agent_id,
        role=track.role,
        title=track.title,
        parent_id=track.parent_id,
        depends_on=track.depends_on,
        depth=track.depth,
        created_at=track.created_at,
        status=track.state,
        ended_at=ended_at,
        segments=tuple(segments),
        escalations=tuple(sorted(marks, key=lambda m: m.raised_at)),
    )


# -------------------------------------------------------------------------------------- journal
def builder_from_records(
    run: RunRow,
    agents: Sequence[AgentRow],
    status_events: Sequence[Mapping[str, Any]],
    escalations: Sequence[EscalationRow],
) -> TimelineBuilder:
    """A builder holding what the journal recorded of a run."""
    builder = TimelineBuilder(run.run_id, run.started_at)
    by_agent: dict[str, list[Mapping[str, Any]]] = {}
    for event in status_events:
        if event.get("type", STATUS_EVENT) == STATUS_EVENT and isinstance(
            event.get("ts"), int | float
        ):
            by_agent.setdefault(str(event.get("agent_id")), []).append(event)
    for row in agents:
        builder.add_agent(
            row.agent_id, role=row.role, title=row.title, parent_id=row.parent_id,
            depends_on=row.depends_on, depth=row.depth, created_at=row.created_at,
        )  # fmt: skip
        changes = by_agent.get(row.agent_id, [])
        if changes:
            first_ts = float(changes[0]["ts"])
            before = _state(changes[0].get("previous"))
            if before is not None and before != AgentStatus.QUEUED:
                # its events start later (a run resumed after the upgrade): what came before
                at = row.started_at if row.started_at is not None else row.created_at
                builder.change(row.agent_id, min(at, first_ts), before)
            for change in changes:
                builder.change(row.agent_id, float(change["ts"]), str(change.get("status")))
        elif row.started_at is not None:  # recorded before agent_status events existed
            builder.change(row.agent_id, row.started_at, AgentStatus.RUNNING)
        final = _state(row.status)
        ended = row.ended_at if row.ended_at is not None else run.ended_at
        if final in TERMINAL and ended is not None:
            builder.change(row.agent_id, ended, final)
    for esc in escalations:
        builder.raise_escalation(esc.escalation_id, esc.agent_id, str(esc.kind), esc.created_at)
        if esc.answered_at is not None:
            builder.answer_escalation(esc.escalation_id, esc.answered_at)
    if run.status != "running":
        builder.finish(run.ended_at if run.ended_at is not None else builder.latest)
    return builder


def load_timeline(journal: Journal, run_id: str) -> TimelineBuilder:
    """The run's timeline from the journal (four reads); KeyError for an unknown run."""
    run = journal.get_run(run_id)
    if run is None:
        raise KeyError(run_id)
    return builder_from_records(
        run,
        journal.list_agents(run.run_id),
        journal.list_events_of(run.run_id, (STATUS_EVENT,)),
        journal.list_escalations(run.run_id),
    )


# ------------------------------------------------------------------------------------- terminal
def format_duration(seconds: float) -> str:
    """``40ms``, ``0.4s``, ``12s``, ``3m05s``, ``1h02m``."""
    seconds = max(0.0, seconds)
    if seconds < 0.1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 10:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def tick_label(seconds: float) -> str:
    """An axis label: ``0s``, ``0.5s``, ``30s``, ``1m``, ``1m30s``, ``2h``."""
    if seconds < 60:
        return f"{seconds:g}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m" + (f"{secs:02d}s" if secs else "")
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h" + (f"{minutes:02d}m" if minutes else "")


_STEPS = (0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800)


def axis_ticks(duration: float, most: int) -> list[float]:
    """Seconds from the start for at most ``most`` (at least 1) evenly spaced ticks of a round
    step, 0 first, covering ``duration``."""
    span = max(duration, 1e-3)
    most = max(1, most)
    step = next((s for s in _STEPS if span / s <= most), None)
    if step is None:
        step = math.ceil(span / most / 3600) * 3600
    return [round(k * step, 6) for k in range(int(span / step + 1e-9) + 1)]


@dataclass(frozen=True)
class _Glyphs:
    fill: Mapping[AgentStatus, str]
    escalation: str
    failed_end: str
    arrow: str
    ellipsis: str
    rule: str
    tick: str


UNICODE_GLYPHS = _Glyphs(
    fill={
        AgentStatus.QUEUED: "░", AgentStatus.RUNNING: "█", AgentStatus.WAITING: "▒", AgentStatus.BLOCKED: "▓",
        AgentStatus.DONE: "─", AgentStatus.FAILED: "✗", AgentStatus.CANCELLED: "─",
    },
    escalation="!", failed_end="✗", arrow="←", ellipsis="…", rule="─", tick="┬",
)  # fmt: skip
ASCII_GLYPHS = _Glyphs(
    fill={
        AgentStatus.QUEUED: ".", AgentStatus.RUNNING: "#", AgentStatus.WAITING: "=", AgentStatus.BLOCKED: "%",
        AgentStatus.DONE: "-", AgentStatus.FAILED: "X", AgentStatus.CANCELLED: "-",
    },
    escalation="!", failed_end="X", arrow="<-", ellipsis="...", rule="-", tick="+",
)  # fmt: skip
MIN_WIDTH = 40
_STATUS_WIDTH = 9  # "cancelled"


def _cut(text: str, width: int, ellipsis: str) -> str:
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    if width <= len(ellipsis):
        return text[:width]
    return text[: width - len(ellipsis)] + ellipsis


def _bar(agent: AgentTimeline, t0: float, per_cell: float, cells: int, glyphs: _Glyphs) -> str:
    """One character per cell: the state that fills most of it; ``!`` where an escalation was
    raised; the failure mark where it failed."""
    out: list[str] = []
    for i in range(cells):
        lo, hi = t0 + i * per_cell, t0 + (i + 1) * per_cell
        cover: dict[AgentStatus, float] = {}
        for segment in agent.segments:
            overlap = min(hi, segment.end) - max(lo, segment.start)
            if overlap > 0 or (segment.duration == 0 and lo <= segment.start < hi):
                cover[segment.state] = cover.get(segment.state, 0.0) + max(overlap, 0.0)
        out.append(glyphs.fill[max(cover, key=lambda s: cover[s])] if cover else " ")

    def cell(ts: float) -> int:
        return min(cells - 1, max(0, int((ts - t0) / per_cell)))

    if agent.status == AgentStatus.FAILED and agent.ended_at is not None:
        out[cell(agent.ended_at)] = glyphs.failed_end
    for mark in agent.escalations:
        out[cell(mark.raised_at)] = glyphs.escalation
    return "".join(out)


def _axis(duration: float, per_cell: float, cells: int, glyphs: _Glyphs) -> tuple[str, str]:
    """The tick labels and the rule under them, ``cells`` wide: a tick every 7 cells or more."""
    labels = [" "] * cells
    rule = [glyphs.rule] * cells
    free_from = 0
    for at in axis_ticks(duration, max(1, cells // 7)):
        col = min(cells - 1, round(at / per_cell))
        rule[col] = glyphs.tick
        text = tick_label(at)
        start = min(col, cells - len(text))  # the last label ends at the edge
        if start >= free_from:
            labels[start : start + len(text)] = list(text)
            free_from = start + len(text) + 1
    return "".join(labels).rstrip(), "".join(rule)


def render_timeline(timeline: Timeline, *, width: int = 100, unicode: bool = True) -> list[str]:
    """The timeline as terminal lines fitted to ``width`` columns (at least 40): a header, the
    legend, the time axis, then one row per agent in the order they were spawned."""
    glyphs = UNICODE_GLYPHS if unicode else ASCII_GLYPHS
    width = max(MIN_WIDTH, width)
    agents = timeline.agents
    state = "running" if timeline.live else "ended"
    noun = "agent" if len(agents) == 1 else "agents"
    lines = [
        f"{timeline.run_id}  {state}  {format_duration(timeline.duration)}  {len(agents)} {noun}"
    ]
    legend = [
        f"{glyphs.fill[s]} {s.value}"
        for s in (AgentStatus.RUNNING, AgentStatus.WAITING, AgentStatus.QUEUED)
    ]
    legend += [f"{glyphs.fill[AgentStatus.BLOCKED]} blocked", f"{glyphs.failed_end} failed"]
    legend += [f"{glyphs.escalation} escalation", f"{glyphs.arrow} depends on"]
    line = ""
    for item in legend:  # wrapped to the width
        if line and len(line) + 2 + len(item) > width:
            lines.append(line)
            line = ""
        line = f"{line}  {item}" if line else item
    lines.append(line)
    if not agents:
        lines.append("(no agents)")
        return lines
    id_w = max(len(a.agent_id) for a in agents)
    deps = {
        a.agent_id: f" {glyphs.arrow} {', '.join(a.depends_on)}" if a.depends_on else ""
        for a in agents
    }
    # columns: id role  title  bar status deps; the bar gets what the words leave, and on a
    # narrow terminal the dependencies, then the roles, give way first
    avail = width - (id_w + 1) - 2 - 2 - 1 - _STATUS_WIDTH
    rest = avail - (10 if width < 60 else 16)
    deps_w = min(max(len(d) for d in deps.values()), 24)
    deps_w = deps_w if rest - deps_w >= 12 else 0
    rest -= deps_w
    role_w = min(max(len(a.role) for a in agents), 12)
    role_w = role_w if rest - role_w >= 8 else 0
    rest -= role_w
    title_w = max(3, min(max(len(a.title) for a in agents), 28, rest))
    cells = max(10, avail - deps_w - role_w - title_w)
    role_sep = 2 if role_w else 0
    prefix_w = id_w + 1 + role_w + role_sep + title_w + 2
    duration = max(timeline.duration, 1e-3)
    per_cell = duration / cells
    labels, rule = _axis(duration, per_cell, cells, glyphs)
    scale = f"1 column = {format_duration(per_cell)}"
    lines.append(f"{scale:<{prefix_w}}{labels}".rstrip())
    lines.append(" " * prefix_w + rule)
    for agent in agents:
        bar = _bar(agent, timeline.start, per_cell, cells, glyphs)
        title = _cut(agent.title, title_w, glyphs.ellipsis)
        role = _cut(agent.role, role_w, glyphs.ellipsis) + " " * role_sep
        status = agent.status.value
        lines.append(
            f"{agent.agent_id:<{id_w}} {role:<{role_w + role_sep}}{title:<{title_w}}  {bar:<{cells}} "
            f"{status:<{_STATUS_WIDTH}}{_cut(deps[agent.agent_id], deps_w, glyphs.ellipsis)}".rstrip()
        )
    return lines


def _can_print(stream: TextIO, text: str) -> bool:
    encoding = getattr(stream, "encoding", None) or "ascii"
    try:
        text.encode(encoding)
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def print_timeline(timeline: Timeline, stream: TextIO | None = None) -> None:
    """Print for the terminal: its width (at least 40 columns), block characters where the
    output's encoding has them, else plain ASCII."""
    out = stream if stream is not None else sys.stdout
    width = shutil.get_terminal_size((100, 24)).columns
    sample = "".join(UNICODE_GLYPHS.fill.values()) + UNICODE_GLYPHS.arrow + UNICODE_GLYPHS.tick
    lines = render_timeline(timeline, width=width, unicode=_can_print(out, sample))
    out.write("\n".join(lines) + "\n")
