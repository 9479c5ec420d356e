"""Run configuration: the goal, the workspace and the caps the model cannot talk its way past."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["DEFAULT_MODEL", "RunConfig"]

DEFAULT_MODEL = "claude-sonnet-4-6"


@dataclass(frozen=True)
class RunConfig:
    goal: str
    workspace: str
    build_command: str | None = None
    model: str = DEFAULT_MODEL
    worker_model: str | None = None  # None: workers use ``model``
    max_agents: int = 30  # spawned agents per run (the orchestrator not counted)
    max_concurrent: int = 6  # agents talking to the model at once
    max_depth: int = 2  # orchestrator 0, workers 1, helpers 2
    budget_usd: float | None = 10.0
    max_turns: int = 80  # model calls per agent
    max_fix_rounds: int = 2  # failing builds in a row before the engine escalates
    build_timeout_s: float = 900.0
    command_timeout_s: float = 300.0  # default and ceiling for run_command
    max_tokens: int = 8192  # per model call
    context_window: int | None = None  # None: from the pricing table
    compact_at: float = 0.75  # fraction of the window that triggers compaction
    tool_output_limit: int = 30_000  # characters of one tool result the model sees
    sandbox: bool = True  # commands run in the OS sandbox; False only when the person chose so
    allow_network: bool = False  # sandboxed commands may reach the network

    @property
    def effective_worker_model(self) -> str:
        return self.worker_model or self.model

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def replace(self, **changes: Any) -> RunConfig:
        return dataclasses.replace(self, **changes)
