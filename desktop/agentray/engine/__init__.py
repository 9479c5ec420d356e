"""The orchestration engine (imports no Qt): runs, agents, tools, scheduling, guard, journal.

    Engine           commands: start_run, resume_run, stop_run, stop_all, answer_escalation, cancel_agent
    ├── Run          one task group: agents, caps, escalations, build gate
    │   └── agents   the loop of model turns and tools (_agent_loop), tools (_tools)
    ├── EventBus     typed frozen events (agentray.events) for the CLI and the tray
    └── SystemGuard  psutil: new agents wait while the machine is saturated
"""

from ._bus import EventBus
from ._config import DEFAULT_MODEL, RunConfig
from ._engine import Engine, check_build_command, validate_config
from ._guard import GuardReading, SystemGuard
from ._progress import PROGRESS_DIR, ProgressFile
from ._run import Escalation, Run, RunOutcome
from ._state import ACTIVE, SETTLED, TERMINAL, AgentState

__all__ = [
    "ACTIVE",
    "DEFAULT_MODEL",
    "PROGRESS_DIR",
    "SETTLED",
    "TERMINAL",
    "AgentState",
    "Engine",
    "Escalation",
    "EventBus",
    "GuardReading",
    "ProgressFile",
    "Run",
    "RunConfig",
    "RunOutcome",
    "SystemGuard",
    "check_build_command",
    "validate_config",
]
