"""The orchestration engine (imports no Qt): runs, agents, tools, scheduling, guard, journal.

Engine             commands: start_run, resume_run, stop_run, stop_all, answer_escalation,
│                  cancel_agent; reading: view(), run_view() (frozen RunView / AgentRecord)
├── Run            coordination of one run: its task group, caps, budget, build gate
│   ├── RecoveryLedger  how agents end; blockers, their one mitigation, escalations, answers
│   └── AgentRunner     runs one agent; InProcessRunner (the model/tool loop) is the default
├── EventBus       typed frozen events (agentray.events) for the CLI and the tray
└── SystemGuard    psutil: new agents wait while the machine is saturated
"""

from agentray.states import ACTIVE, SETTLED, TERMINAL

from ._agent_loop import InProcessRunner
from ._bus import EventBus
from ._config import DEFAULT_MODEL, RunConfig
from ._engine import Engine, check_build_command, validate_config
from ._guard import GuardReading, SystemGuard
from ._progress import PROGRESS_DIR, ProgressFile
from ._recovery import RecoveryLedger
from ._run import AgentRunner, Run, RunOutcome
from ._state import AgentRecord, AgentState
from ._views import EngineView, RunView

__all__ = [
    "ACTIVE",
    "DEFAULT_MODEL",
    "PROGRESS_DIR",
    "SETTLED",
    "TERMINAL",
    "AgentRecord",
    "AgentRunner",
    "AgentState",
    "Engine",
    "EngineView",
    "EventBus",
    "GuardReading",
    "InProcessRunner",
    "ProgressFile",
    "RecoveryLedger",
    "Run",
    "RunConfig",
    "RunOutcome",
    "RunView",
    "SystemGuard",
    "check_build_command",
    "validate_config",
]
