"""Agentray's journal: a durable SQLite record of runs, agents, transcripts, tool calls,
escalations, usage and events, committed as things happen."""

from __future__ import annotations

from agentray.journal._journal import ENV_VAR, RUN_STATUSES, Journal, default_journal_path
from agentray.journal._redact import _redact
from agentray.journal._rows import AgentRow, EscalationRow, RunRow, SnapshotRow, ToolCallRow
from agentray.journal._schema import SCHEMA_VERSION

__all__ = [
    "ENV_VAR",
    "RUN_STATUSES",
    "SCHEMA_VERSION",
    "AgentRow",
    "EscalationRow",
    "Journal",
    "RunRow",
    "SnapshotRow",
    "ToolCallRow",
    "_redact",
    "default_journal_path",
]
