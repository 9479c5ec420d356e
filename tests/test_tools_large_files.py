"""read_file streams (big, binary, long-lined files), search_files on odd content, the engine's file
handlers off the event loop, and a whole run over non-UTF-8 file names.

Timings are measured by hand, not asserted here; these tests assert what the model is told.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import threading
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from agent_scripts import complete, orchestrator, policy, result_of, spawned_ids, worker
from agentray.engine import _tools
from agentray.errors import ToolError
from agentray.simulator import SimRequest, tool_use
from agentray.tools import Workspace
from agentray.tools import _workspace as wsmod
from agentray.tools._workspace import _LineReader, finish_in_thread
from conftest import SimEngineFactory

GB = 1_200_000_000


@pytest.fixture
def ws(workspace: Path) -> Workspace:
    return Workspace(workspace)


def _sparse(path: Path, size: int, head: bytes = b"", tail: bytes = b"") -> None:
    with open(path, "wb") as f:
        f.write(head)
    os.truncate(path, size)
    with open(path, "ab") as f:
        f.write(tail)
    if os.stat(path).st_blocks * 512 > 64 * 1024 * 1024:
        pytest.skip("this filesystem has no sparse files")


# ----------------------------------------------------------------------------- big files


def test_a_huge_file_is_read_up_to_its_window_only(ws: Workspace) -> None:
    lines = b"".join(b"line %06d of the head\n" % i for i in range(50_000))
    _sparse(ws.root / "big.log", GB, head=lines, tail=b"\ntail 1\ntail 2\n")
    first = ws.read_file("big.log", limit=3)
    assert first["content"] == (
        "    1\tline 000000 of the head\n    2\tline 000001 of the head\n    3\tline 000002 of the head"
    )
    assert first["total_lines"] is None  # the end was not reached: unknown, not guessed
    assert first["truncated"] is True and first["next_offset"] == 3
    assert first["size_bytes"] == GB + len(b"\ntail 1\ntail 2\n")
    assert f"large file ({first['size_bytes']} bytes)" in first["note"]
    later = ws.read_file("big.log", offset=49_998, limit=1)
    assert later["content"] == "49999\tline 049998 of the head" and later["total_lines"] is None
    # the NUL-filled gap is one giant line: shown as binary data, and the read stops there
    gap = ws.read_file("big.log", offset=49_999, limit=5)
    assert gap["content"].splitlines() == ["50000\tline 049999 of the head", "50001\t[binary data]"]
    assert gap["lines_returned"] == 2 and gap["next_offset"] == 50_001
    assert "line 50001 is longer than" in gap["note"]
    # past the gap (skipping it scans the file, off the loop in the engine): the exact end
    end = ws.read_file("big.log", offset=50_001, limit=10)
    assert end["content"] == "50002\ttail 1\n50003\ttail 2"
    assert end["total_lines"] == 50_003 and end["truncated"] is False and "next_offset" not in end


def test_total_is_exact_while_the_rest_is_small(ws: Workspace) -> None:
    (ws.root / "f.txt").write_text("".join(f"{i}\n" for i in range(100_000)))
    part = ws.read_file("f.txt", offset=10, limit=2)
    assert part["content"] == "   11\t10\n   12\t11"
    assert part["total_lines"] == 100_000 and part["next_offset"] == 12
    assert "note" not in part


def test_binary_files_say_so_with_their_size(ws: Workspace) -> None:
    (ws.root / "img.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 40)
    with pytest.raises(ToolError, match=r"^img.png is a binary file, 10256 bytes"):
        ws.read_file("img.png")
    # NUL bytes later than the first 8 KiB: the text is shown, that line is not garbage
    (ws.root / "mixed.txt").write_bytes(b"x" * 9000 + b"\nok\nbad\x00\x00bytes\nend\n")
    mixed = ws.read_file("mixed.txt", offset=1)
    assert mixed["content"] == "    2\tok\n    3\t[binary data, 10 bytes]\n    4\tend"
    assert mixed["total_lines"] == 4


def test_long_lines_are_clipped_with_their_size(ws: Workspace) -> None:
    (ws.root / "min.js").write_bytes(b"var a=1;" * 250_000 + b"\r\nsecond\r\n")  # one 2 MB line
    read = ws.read_file("min.js")
    first, second = read["content"].split("\n")
    assert first == "    1\t" + ("var a=1;" * 250)[:2000] + " …[line clipped; 2000000 bytes in all]"
    assert second == "    2\tsecond"
    assert read["total_lines"] == 2 and "clipped" in read["note"]
    # a character cut in two by the clipping is not called invalid UTF-8
    (ws.root / "wide.txt").write_text("é" * 5000 + "\n", encoding="utf-8")
    wide = ws.read_file("wide.txt")
    assert wide["content"].startswith("    1\t" + "é" * 2000 + " …[line clipped; 10000 bytes")
    assert "not valid UTF-8" not in wide["note"]
    # the widest UTF-8 characters (4 bytes): still 2000 of them shown
    (ws.root / "emoji.txt").write_text("\U0001f600" * 2500 + "\n", encoding="utf-8")
    emoji = ws.read_file("emoji.txt")["content"]
    assert emoji == "    1\t" + "\U0001f600" * 2000 + " …[line clipped; 10000 bytes in all]"


def test_a_line_over_the_scan_limit_ends_the_read(ws: Workspace) -> None:
    (ws.root / "one.txt").write_bytes(b"start\n" + b"y" * (5 * 1024 * 1024) + b"\nafter\n")
    read = ws.read_file("one.txt")
    rows = read["content"].split("\n")
    assert rows[0] == "    1\tstart"
    assert rows[1].startswith("    2\tyyy") and "more than" in rows[1]
    assert read["lines_returned"] == 2 and read["total_lines"] is None
    assert read["next_offset"] == 2 and "line 2 is longer than" in read["note"]
    assert ws.read_file("one.txt", offset=2)["content"] == "    3\tafter"


def test_small_edges(ws: Workspace) -> None:
    (ws.root / "empty.txt").write_bytes(b"")
    empty = ws.read_file("empty.txt")
    assert (empty["content"], empty["total_lines"], empty["truncated"]) == ("", 0, False)
    with pytest.raises(ToolError, match=r"offset 1 is past the end of empty\.txt, which has 0 lines"):
        ws.read_file("empty.txt", offset=1)
    (ws.root / "nl.txt").write_bytes(b"\n")
    assert ws.read_file("nl.txt")["content"] == "    1\t" and ws.read_file("nl.txt")["total_lines"] == 1
    (ws.root / "three.txt").write_bytes(b"a\r\nb\r\nc")  # CRLF, no final newline
    assert ws.read_file("three.txt")["content"] == "    1\ta\n    2\tb\n    3\tc"
    one = ws.read_file("three.txt", limit=1)
    assert one["content"] == "    1\ta" and one["total_lines"] == 3 and one["next_offset"] == 1
    last = ws.read_file("three.txt", offset=2, limit=1)
    assert last["content"] == "    3\tc" and last["truncated"] is False
    for past in (3, 4, 10_000):
        with pytest.raises(ToolError, match=rf"offset {past} is past the end of three\.txt, which has 3 lines"):
            ws.read_file("three.txt", offset=past)
    (ws.root / "latin.txt").write_bytes(b"caf\xe9\nplain\n")
    latin = ws.read_file("latin.txt")
    assert latin["content"] == "    1\tcaf\ufffd\n    2\tplain"
    assert "not valid UTF-8" in latin["note"]


def test_edit_file_takes_files_up_to_max_edit_bytes(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wsmod, "MAX_EDIT_BYTES", 100)
    (ws.root / "at.txt").write_text("a" * 99 + "\n")
    (ws.root / "over.txt").write_text("a" * 100 + "\n")
    assert ws.edit_file("at.txt", "a\n", "b\n")["replacements"] == 1
    assert (ws.root / "at.txt").read_text() == "a" * 98 + "b\n"
    with pytest.raises(ToolError, match=r"over\.txt is too large to edit \(101 bytes, edit_file takes up to 100\); use write_file"):
        ws.edit_file("over.txt", "a\n", "b\n")
    assert (ws.root / "over.txt").read_text() == "a" * 100 + "\n"


def test_edit_file_takes_exactly_10_mib_and_refuses_a_byte_more(ws: Workspace) -> None:
    """The real cap, not a patched one: a 10 MiB text file is edited, one byte more is refused
    (with its size) and left as it was."""
    cap = 10 * 1024 * 1024
    body = b"x" * 1023 + b"\n"
    (ws.root / "at.txt").write_bytes(body * (cap // 1024 - 1) + b"y" * 1019 + b"\nEND\n")
    (ws.root / "over.txt").write_bytes(body * (cap // 1024) + b"\n")
    assert (ws.root / "at.txt").stat().st_size == cap
    assert ws.edit_file("at.txt", "END", "FIN")["replacements"] == 1
    assert (ws.root / "at.txt").read_bytes().endswith(b"y\nFIN\n")
    with pytest.raises(ToolError, match=rf"over\.txt is too large to edit \({cap + 1} bytes, edit_file takes up to {cap}\)"):
        ws.edit_file("over.txt", "x", "z")
    assert (ws.root / "over.txt").stat().st_size == cap + 1


def test_max_chars_stops_at_a_whole_line(ws: Workspace) -> None:
    (ws.root / "wide.txt").write_text("".join(f"{i:04d} " + "w" * 95 + "\n" for i in range(1000)))
    read = ws.read_file("wide.txt", max_chars=6000)
    rows = read["content"].split("\n")
    assert 40 <= len(rows) <= 50 and rows[-1].endswith("w" * 95)
    assert read["next_offset"] == len(rows) and read["total_lines"] == 1000
    assert f"read on with offset={len(rows)}" in read["note"]
    # at least one line, even when it alone is over the budget
    assert ws.read_file("wide.txt", max_chars=10)["lines_returned"] == 1


def test_max_chars_takes_a_line_that_fits_exactly(ws: Workspace) -> None:
    """The lines' JSON may fill ``max_chars`` (less the room kept for the other fields) to the
    last character; one character less and the last line waits for the next read."""
    (ws.root / "rows.txt").write_text("".join(f"row {i} " + "é" * i + '"\t\n' for i in range(9)))
    whole = ws.read_file("rows.txt")["content"].split("\n")
    for shown in (1, 4, 8):
        fits = wsmod._RESULT_OVERHEAD_CHARS + len(
            json.dumps("\n".join(whole[:shown]), ensure_ascii=False)
        )
        exact = ws.read_file("rows.txt", max_chars=fits)
        assert exact["content"].split("\n") == whole[:shown] and exact["next_offset"] == shown
        short = ws.read_file("rows.txt", max_chars=fits - 1)
        assert short["lines_returned"] == max(1, shown - 1)


def test_line_reader_matches_a_plain_split_at_every_chunk_boundary(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(wsmod, "_READ_CHUNK", 7)
    rng = random.Random(20240611)
    for case in range(300):
        data = b"".join(rng.choice([b"\n", b"\r\n", b"a", b"bc", b"\r", b"xyz" * rng.randint(0, 9)])
                        for _ in range(rng.randint(0, 40)))
        expected = data.split(b"\n")
        if expected[-1] == b"":
            expected.pop()
        expected = [line[:-1] if line.endswith(b"\r") else line for line in expected]
        path = tmp_path / f"c{case}"
        path.write_bytes(data)
        offset = rng.randint(0, len(expected) + 1)
        keep = rng.randint(0, 12)
        with open(path, "rb", buffering=0) as f:
            reader = _LineReader(f)
            assert reader.skip(offset) == min(offset, len(expected)), data
            got = []
            for _ in range(rng.randint(0, 5)):
                line = reader.line(keep)
                if line is None:
                    break
                got.append(line)
            rest, at_end = reader.count_rest(1 << 20)
        want = expected[offset : offset + len(got)]
        assert [g[0] for g in got] == [w[:keep] for w in want], data
        assert [g[1] for g in got] == [len(w) for w in want], data
        assert at_end and min(offset, len(expected)) + len(got) + rest == len(expected), data


# ----------------------------------------------------------------------------- search


def test_search_skips_binary_and_large_files_and_survives_bad_bytes(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    (ws.root / "a.bin").write_bytes(b"needle\x00\x01")
    (ws.root / "b.txt").write_bytes(b"needle \xff\xfe latin \xe9\nno\n")
    (ws.root / "c.txt").write_bytes(b"x" * 9000 + b"\nneedle after\x00nul\n")
    monkeypatch.setattr(wsmod, "MAX_SEARCH_BYTES", 20_000)
    (ws.root / "d.log").write_bytes(b"needle\n" * 5000)
    found = ws.search_files("needle")
    assert found["matches"] == [
        {"path": "b.txt", "line": 1, "text": "needle \ufffd\ufffd latin \ufffd"},
        {"path": "c.txt", "line": 2, "text": "needle after\x00nul"},
    ]
    assert found["skipped"] == {"binary": 1, "too_large": 1}
    assert "run_command" in found["skipped_note"]


# ----------------------------------------------------------------------------- engine handlers


AGENT = SimpleNamespace(agent_id="a002")


def _run(ws: Workspace, limit: int = 30_000) -> Any:
    return SimpleNamespace(
        files=ws, config=SimpleNamespace(tool_output_limit=limit), progress=lambda *a: None,
        snapshots=SimpleNamespace(claim=lambda *a: None),
    )


async def test_handlers_read_and_write_off_the_event_loop(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: dict[str, int] = {}
    for name in ("read_file", "write_file", "edit_file"):
        real = getattr(Workspace, name)

        def spy(self: Workspace, *a: Any, _real: Any = real, _name: str = name, **k: Any) -> Any:
            threads[_name] = threading.get_ident()
            return _real(self, *a, **k)

        monkeypatch.setattr(Workspace, name, spy)
    run = _run(ws, limit=3000)
    wrote = await _tools.write_file(run, AGENT, {"path": "w.txt", "content": "a\n" * 5000})  # type: ignore[arg-type]
    assert wrote["created"] is True
    edited = await _tools.edit_file(run, AGENT, {"path": "w.txt", "old_string": "a\n", "new_string": "b\n", "replace_all": True})  # type: ignore[arg-type]
    assert edited["replacements"] == 5000
    read = await _tools.read_file(run, None, {"path": "w.txt"})  # type: ignore[arg-type]
    loop_thread = threading.get_ident()
    assert set(threads) == {"read_file", "write_file", "edit_file"}
    assert loop_thread not in threads.values()
    # the run's tool_output_limit bounds the read: whole lines and where to go on
    assert 0 < read["lines_returned"] < 2000 and read["next_offset"] == read["lines_returned"]
    assert read["total_lines"] == 5000


async def test_a_cancelled_write_lands_before_the_cancel_goes_on() -> None:
    started, release = threading.Event(), threading.Event()
    landed: list[str] = []

    def work() -> str:
        started.set()
        release.wait(10)
        landed.append("written")
        return "ok"

    task = asyncio.create_task(finish_in_thread(work))
    await asyncio.to_thread(started.wait, 10)
    task.cancel()
    for _ in range(5):
        await asyncio.sleep(0)
    assert not task.done()  # still waiting for the write in flight
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert landed == ["written"]
    assert await finish_in_thread(lambda: 42) == 42


# ----------------------------------------------------------------------------- a whole run


async def test_a_run_over_non_utf8_names(sim_engine: SimEngineFactory, workspace: Path) -> None:
    root = os.fsencode(workspace)
    with open(os.path.join(root, b"caf\xe9.txt"), "wb") as f:
        f.write(b"menu: needle soup\n")
    (workspace / "plain.txt").write_text("needle too\n")

    def read_listed(req: SimRequest) -> list[dict[str, object]]:
        odd = [n for n in result_of(req, "list_files").json["files"] if "\\" in n]
        return [tool_use("read_file", path=odd[0])]

    def spawn(req: SimRequest) -> list[dict[str, object]]:
        path = result_of(req, "read_file").json["path"]
        return [tool_use("spawn_agent", task=f"W-EDIT change soup to stew in {path}")]

    def edit(req: SimRequest) -> list[dict[str, object]]:
        path = req.first_user_text.split("stew in ")[1].split()[0]
        return [tool_use("edit_file", path=path, old_string="soup", new_string="stew")]

    seen: dict[str, Any] = {}

    def finish(req: SimRequest) -> list[dict[str, object]]:
        for name in ("list_files", "search_files", "read_file"):
            seen[name] = result_of(req, name)
        seen["spawned"] = spawned_ids(req)
        return [tool_use("finish", summary="edited", outcome="success")]

    se = sim_engine(
        policy(
            orchestrator(
                [tool_use("list_files"), tool_use("search_files", pattern="needle")],
                read_listed,
                spawn,
                [tool_use("await_agents")],
                finish,
            ),
            worker("W-EDIT", edit, complete("changed it")),
        )
    )
    run_id, outcome = await se.run()
    assert outcome.status == "succeeded", outcome
    listing, search, read = seen["list_files"], seen["search_files"], seen["read_file"]
    assert not (listing.is_error or search.is_error or read.is_error)
    ours = [f for f in listing.json["files"] if not f.startswith("agent-responses/")]
    assert ours == ["caf\\xe9.txt", "plain.txt"]
    found = [m["path"] for m in search.json["matches"] if not m["path"].startswith("agent-")]
    assert found == ["caf\\xe9.txt", "plain.txt"]
    assert read.json["content"] == "    1\tmenu: needle soup"
    with open(os.path.join(root, b"caf\xe9.txt"), "rb") as f:
        assert f.read() == b"menu: needle stew\n"
    assert len(seen["spawned"]) == 1 and run_id
