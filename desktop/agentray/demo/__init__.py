"""The offline demo: a small real project with failing tests, fixed by a scripted run through
the real engine and the Messages-API simulator. No key, no network."""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass, field
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

from agentray.engine import RunConfig
from agentray.errors import BadInputError
from agentray.simulator import Simulator

from ._scenario import DEMO_GOAL, build_command, demo_policy

__all__ = [
    "DEMO_API_KEY",
    "DEMO_GOAL",
    "DEMO_MODEL",
    "DemoSession",
    "create_demo_project",
    "demo_policy",
]

DEMO_API_KEY = "sk-ant-demo-offline-simulator"
DEMO_MODEL = "claude-sonnet-4-6"


def create_demo_project(target: Path | None = None) -> Path:
    """Copy the demo project into ``target`` (new or empty) or a fresh temporary folder."""
    if target is None:
        target = Path(tempfile.mkdtemp(prefix="agentray-demo-"))
    target = target.expanduser()
    if target.exists():
        if not target.is_dir():
            raise BadInputError(f"--dir {target}: not a directory")
        if any(target.iterdir()):
            raise BadInputError(
                f"--dir {target}: not empty; the demo only writes into a new or empty folder"
            )
    template = files("agentray.resources") / "demo" / "project"
    with as_file(template) as source:
        shutil.copytree(
            source, target, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__")
        )
    return target.resolve()


@dataclass
class DemoSession:
    """The demo project plus a running simulator that plays the scripted run."""

    workspace: Path
    simulator: Simulator
    api_key: str = DEMO_API_KEY
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def start(cls, directory: Path | None = None, *, latency_s: float = 0.3) -> DemoSession:
        workspace = create_demo_project(directory)
        simulator = Simulator(demo_policy(), latency_s=latency_s)
        simulator.start()
        return cls(workspace=workspace, simulator=simulator)

    @property
    def base_url(self) -> str:
        return self.simulator.base_url

    def config(self, **overrides: Any) -> RunConfig:
        values: dict[str, Any] = {
            "goal": DEMO_GOAL,
            "workspace": str(self.workspace),
            "build_command": build_command(),
            "model": DEMO_MODEL,
            "budget_usd": 5.0,
        }
        values.update({k: v for k, v in overrides.items() if v is not None})
        return RunConfig(**values)

    def close(self) -> None:
        self.simulator.stop()
