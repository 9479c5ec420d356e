"""CLI rough edges: ambiguous run prefixes, a reader that stops reading."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from agentray.journal import Journal

PY = sys.executable


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "AGENTRAY_JOURNAL": str(tmp_path / "journal.sqlite3")}


def _runs(tmp_path: Path, ids: list[str]) -> None:
    journal = Journal(tmp_path / "journal.sqlite3")
    for run_id in ids:
        journal.create_run(
            run_id, goal=f"goal of {run_id}", workspace=str(tmp_path), config={}, pid=1
        )
        journal.update_run(run_id, status="failed", ended_at=1.0)
    journal.close()


def test_an_ambiguous_prefix_names_the_candidates(tmp_path: Path) -> None:
    _runs(tmp_path, ["r1128-aaa1", "r1128-aaa2", "r1129-bbbb"])
    commands = (
        ["show", "r1128"],
        ["resume", "r1128-aaa"],
        ["stop", "r1128"],
        ["diff", "r1128"],
        ["undo", "r1128"],
        ["show", "r1128", "--json"],
        ["diff", "r1128-a", "--stat"],
    )
    for command in commands:
        done = subprocess.run(
            [PY, "-m", "agentray.cli", *command], env=_env(tmp_path), capture_output=True, text=True
        )
        assert done.returncode == 2, command
        assert (
            done.stderr.startswith(f"agentray: ambiguous run '{command[1]}': ")
            and len(done.stderr.splitlines()) == 1
        )
        assert (
            "r1128-aaa1" in done.stderr
            and "r1128-aaa2" in done.stderr
            and "r1129" not in done.stderr
        )
    unique = subprocess.run(
        [PY, "-m", "agentray.cli", "show", "r1129"],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
    )
    assert unique.returncode == 0 and unique.stdout.startswith("run r1129-bbbb")
    missing = subprocess.run(
        [PY, "-m", "agentray.cli", "show", "zzz"],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
    )
    assert (
        missing.returncode == 2
        and missing.stderr == "agentray: no run 'zzz' (see `agentray runs`)\n"
    )


def test_many_candidates_are_cut_at_five(tmp_path: Path) -> None:
    _runs(tmp_path, [f"r1130-{i:04x}" for i in range(7)])
    done = subprocess.run(
        [PY, "-m", "agentray.cli", "undo", "r1130"],
        env=_env(tmp_path),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("agentray: ambiguous run 'r1130': ") and line.endswith(
        ", …; give more of the id"
    )
    assert line.count("r1130-") == 5


def test_a_closed_pipe_ends_quietly(tmp_path: Path) -> None:
    _runs(tmp_path, [f"r1128-{i:04x}" for i in range(400)])
    proc = subprocess.Popen(
        [PY, "-m", "agentray.cli", "runs", "--limit", "400"],
        env=_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    assert first.startswith(b"RUN")
    proc.stdout.close()  # what `| head -1` does
    err = proc.stderr.read().decode()
    assert proc.wait(30) == 0
    assert "Traceback" not in err and "BrokenPipe" not in err and err == ""
