"""The workspace's AGENTS.md and CLAUDE.md reach every agent: in the system prompt, inside the cached
prefix, labelled, capped; read once per run start; never through a symlink that leads outside."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from agent_scripts import complete, orchestrator, policy, spawned_ids, worker
from agentray.engine._context import MAX_INSTRUCTION_BYTES
from agentray.engine._engine import load_prompts
from agentray.simulator import SimRequest, tool_use
from conftest import SimEngineFactory

AGENTS = "Run the tests with `make check`. Never edit vendor/."
CLAUDE = "Prefer small commits; British spelling in docs."


def _two_agent_policy(on_spawn: Any = None) -> Any:
    def spawn(req: SimRequest) -> list[dict[str, Any]]:
        if on_spawn is not None:
            on_spawn()
        return [tool_use("spawn_agent", task="W-ONE say hello", title="One")]

    def wait(req: SimRequest) -> list[dict[str, Any]]:
        return [tool_use("await_agents", agent_ids=spawned_ids(req))]

    return policy(
        orchestrator(spawn, wait, [tool_use("finish", summary="done", outcome="success")]),
        worker("W-ONE", complete("hello")),
    )


def _system_blocks(req: SimRequest) -> list[dict[str, Any]]:
    system = req.body["system"]
    return [{"type": "text", "text": system}] if isinstance(system, str) else list(system)


async def test_both_files_reach_the_orchestrator_and_the_workers_in_the_cached_prefix(
    sim_engine: SimEngineFactory, workspace: Path
) -> None:
    (workspace / "AGENTS.md").write_text(f"# Rules\n{AGENTS}\n")
    (workspace / "CLAUDE.md").write_text(f"{CLAUDE}\n")
    se = sim_engine(_two_agent_policy())
    _, outcome = await se.run()
    assert outcome.status == "succeeded", outcome
    orch = [
        r.sim for r in se.sim.message_requests if "You are the orchestrator" in r.sim.system_text
    ]
    work = se.requests_of("W-ONE")
    assert len(orch) == 3 and len(work) == 1
    prompts = load_prompts()
    for req, role in [*((r, "orchestrator") for r in orch), *((r, "worker") for r in work)]:
        system = req.system_text
        assert system.startswith(prompts[role])  # the engine's own rules come first
        assert "Project instructions from AGENTS.md (the workspace's own file" in system
        assert f"# Rules\n{AGENTS}" in system
        assert "Project instructions from CLAUDE.md (the workspace's own file" in system
        assert CLAUDE in system
        assert system.index("AGENTS.md") < system.index("CLAUDE.md")
        # inside the cached prefix: the system block carries the cache breakpoint
        blocks = _system_blocks(req)
        assert AGENTS in blocks[-1]["text"] and "cache_control" in blocks[-1]
        assert req.messages and AGENTS not in req.first_user_text  # not repeated per message
    # the same prefix on every turn, so the cache is read
    assert len({r.system_text for r in orch}) == 1


async def test_read_once_per_run_start(sim_engine: SimEngineFactory, workspace: Path) -> None:
    agents_md = workspace / "AGENTS.md"
    agents_md.write_text(AGENTS)
    se = sim_engine(_two_agent_policy(on_spawn=lambda: agents_md.write_text("CHANGED MID-RUN")))
    _, outcome = await se.run()
    assert outcome.status == "succeeded", outcome
    for req in (r.sim for r in se.sim.message_requests):
        assert AGENTS in req.system_text and "CHANGED MID-RUN" not in req.system_text
    # the next run reads the file again
    _, outcome = await se.run()
    assert outcome.status == "succeeded", outcome
    assert "CHANGED MID-RUN" in se.sim.message_requests[-1].sim.system_text


async def test_a_big_file_is_cut_and_says_so(sim_engine: SimEngineFactory, workspace: Path) -> None:
    head = "H" * (MAX_INSTRUCTION_BYTES - 1) + "é"  # a two-byte character across the cap
    (workspace / "AGENTS.md").write_text(head + "TAIL-NOT-SHOWN" * 1000, encoding="utf-8")
    size = (workspace / "AGENTS.md").stat().st_size
    se = sim_engine(_two_agent_policy())
    _, outcome = await se.run()
    assert outcome.status == "succeeded", outcome
    system = se.requests_of("W-ONE")[0].system_text
    assert "H" * (MAX_INSTRUCTION_BYTES - 1) in system
    assert "TAIL-NOT-SHOWN" not in system and "\ufffd" not in system
    assert f"AGENTS.md is {size} bytes; only its first {MAX_INSTRUCTION_BYTES} bytes" in system
    assert "read_file" in system


async def test_without_the_files_the_prompt_is_the_engines_own(
    sim_engine: SimEngineFactory, workspace: Path
) -> None:
    (workspace / "docs").mkdir()
    (workspace / "docs" / "AGENTS.md").write_text(AGENTS)  # only the root's count
    se = sim_engine(_two_agent_policy())
    _, outcome = await se.run()
    assert outcome.status == "succeeded", outcome
    prompts = load_prompts()
    orch = [
        r.sim for r in se.sim.message_requests if "You are the orchestrator" in r.sim.system_text
    ]
    assert orch and all(r.system_text == prompts["orchestrator"] for r in orch)
    assert se.requests_of("W-ONE")[0].system_text == prompts["worker"]


async def test_symlinks_out_of_the_workspace_are_not_followed(
    sim_engine: SimEngineFactory, workspace: Path, tmp_path: Path
) -> None:
    secret = tmp_path / "outside.md"
    secret.write_text("SECRET FROM OUTSIDE THE WORKSPACE")
    (workspace / "AGENTS.md").symlink_to(secret)
    (workspace / "rules.md").write_text(CLAUDE)
    (workspace / "CLAUDE.md").symlink_to(workspace / "rules.md")  # inside: fine
    se = sim_engine(_two_agent_policy())
    _, outcome = await se.run()
    assert outcome.status == "succeeded", outcome
    system = se.requests_of("W-ONE")[0].system_text
    assert "SECRET" not in system and "from AGENTS.md" not in system
    assert "Project instructions from CLAUDE.md (the workspace's own file" in system
    assert CLAUDE in system


async def test_claude_md_linked_to_agents_md_is_given_once(
    sim_engine: SimEngineFactory, workspace: Path
) -> None:
    (workspace / "AGENTS.md").write_text(AGENTS)
    (workspace / "CLAUDE.md").symlink_to("AGENTS.md")
    se = sim_engine(_two_agent_policy())
    _, outcome = await se.run()
    assert outcome.status == "succeeded", outcome
    system = se.requests_of("W-ONE")[0].system_text
    assert system.count(AGENTS) == 1 and "from CLAUDE.md" not in system


async def test_a_fifo_named_agents_md_is_left_out_without_blocking(
    sim_engine: SimEngineFactory, workspace: Path
) -> None:
    """AGENTS.md is a named pipe with a writer holding data: it is not a regular file, so it is
    left out (neither read nor waited on); CLAUDE.md beside it still comes."""
    os.mkfifo(workspace / "AGENTS.md")
    writer = os.open(workspace / "AGENTS.md", os.O_RDWR | os.O_NONBLOCK)  # never blocks
    try:
        os.write(writer, b"FIFO SECRET\n")
        (workspace / "CLAUDE.md").write_text(CLAUDE)
        se = sim_engine(_two_agent_policy())
        _, outcome = await se.run()
        assert outcome.status == "succeeded", outcome
        for req in (r.sim for r in se.sim.message_requests):
            assert "FIFO SECRET" not in req.system_text and "from AGENTS.md" not in req.system_text
            assert CLAUDE in req.system_text
        assert os.read(writer, 100) == b"FIFO SECRET\n"  # still in the pipe: nobody read it
    finally:
        os.close(writer)
