"""A finished run made by hand for the Changes view tests: real files, real git (the checkpoints'
shadow repository), a real journal; two agents, one file changed by both."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from agentray.checkpoints import Checkpoints
from agentray.journal import Journal

RUN_ID = "r0101-c4a9"
GOAL = "Tidy the project: TWO in keep.txt, g() in shared.py, new.txt instead of old.txt"
ORIGINAL = {
    "keep.txt": "one\ntwo\nthree\n",
    "shared.py": "def f():\n    return 1\n",
    "old.txt": "old\n",
}
COMMAND = "echo 'brand new' > new.txt && rm old.txt && cat more/g.py >> shared.py"
AFTER_A001 = "def f():\n    return 2\n"
AFTER_RUN = {
    "keep.txt": "one\nTWO\nthree\n",
    "shared.py": AFTER_A001 + "\n\ndef g():\n    return 3\n",
    "new.txt": "brand new\n",
}


@dataclass(frozen=True)
class MadeRun:
    run_id: str
    workspace: Path

    def read(self) -> dict[str, str]:
        """Every file of the workspace (the shadow repository lives elsewhere)."""
        return {
            p.relative_to(self.workspace).as_posix(): p.read_text()
            for p in sorted(self.workspace.rglob("*"))
            if p.is_file()
        }


def make_run(journal: Journal, root: Path, run_id: str = RUN_ID) -> MadeRun:
    """a001 edits keep.txt and shared.py with the file tools; then a002, through a shell
    command, creates new.txt, deletes old.txt and appends g() to shared.py."""
    workspace = root / f"ws-{run_id}"
    workspace.mkdir(parents=True)
    for name, text in ORIGINAL.items():
        (workspace / name).write_text(text)
    journal.create_run(run_id, goal=GOAL, workspace=str(workspace), config={}, pid=os.getpid())
    for agent_id, title in (("a001", "Edit the sources"), ("a002", "Shell chores")):
        journal.create_agent(
            run_id, agent_id, parent_id=None, role="worker", title=title, task=title, depth=1,
            depends_on=[], mitigates=None, status="done", model="claude-sonnet-4-6",
        )  # fmt: skip
    checkpoints = Checkpoints(journal, run_id, workspace)
    checkpoints.take(agent_id=None, call_id=None, tool="base")
    (workspace / "keep.txt").write_text(AFTER_RUN["keep.txt"])
    checkpoints.take(agent_id="a001", call_id="c1", tool="edit_file")
    (workspace / "shared.py").write_text(AFTER_A001)
    checkpoints.take(agent_id="a001", call_id="c2", tool="edit_file")
    # as the engine journals it: the call first, its snapshot when it ends
    journal.start_tool_call(run_id, "a002", "c3", "run_command", {"command": COMMAND})
    (workspace / "new.txt").write_text(AFTER_RUN["new.txt"])
    (workspace / "old.txt").unlink()
    (workspace / "shared.py").write_text(AFTER_RUN["shared.py"])
    journal.finish_tool_call(run_id, "c3", result={"exit_code": 0}, is_error=False)
    checkpoints.take(agent_id="a002", call_id="c3", tool="run_command")
    journal.update_run(run_id, status="succeeded", ended_at=time.time(), summary="tidied")
    return MadeRun(run_id, workspace)
