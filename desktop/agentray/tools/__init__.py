"""Worker tool implementations: workspace-confined file tools and ``run_command``.

Plain functions and classes; the engine wraps them as model-facing tools and turns
``ToolError`` / ``ConfinementError`` into ``{"error": msg}`` tool results.
"""

from agentray.tools._env import command_env, scrubbed_env
from agentray.tools._process import CommandResult, ProcessRegistry, run_command
from agentray.tools._truncate import truncate_text
from agentray.tools._workspace import Workspace

__all__ = [
    "CommandResult",
    "ProcessRegistry",
    "Workspace",
    "command_env",
    "run_command",
    "scrubbed_env",
    "truncate_text",
]
