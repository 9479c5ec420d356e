"""Workspace file tools: confinement, reading, atomic writes, edits, listing and searching."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from agentray.errors import ConfinementError, ToolError
from agentray.tools import Workspace, scrubbed_env, truncate_text
from agentray.tools import _names as names_mod
from agentray.tools._names import NAME_ESCAPE_NOTE


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Workspace, Path]:
    """A workspace next to an 'outside' folder holding a secret file."""
    root = tmp_path / "ws"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("TOP SECRET\n")
    return Workspace(root), outside


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# ----------------------------------------------------------------------------- construction


def test_root_must_be_an_existing_directory(tmp_path: Path) -> None:
    with pytest.raises(ToolError, match="does not exist"):
        Workspace(tmp_path / "missing")
    (tmp_path / "f").write_text("x")
    with pytest.raises(ToolError, match="not a directory"):
        Workspace(tmp_path / "f")
    ws = Workspace(str(tmp_path / "." / ""))
    assert ws.root == tmp_path.resolve()


# ----------------------------------------------------------------------------- confinement


@pytest.mark.parametrize(
    "bad",
    ["../x", "a/../../x", "../outside/secret.txt", "/etc/passwd", "~/x", "~", "", "   ", "a\0b"],
)
def test_escaping_paths_are_refused(layout: tuple[Workspace, Path], bad: str) -> None:
    ws, outside = layout
    before = _snapshot(outside)
    for call in (
        lambda: ws.read_file(bad),
        lambda: ws.write_file(bad, "pwned"),
        lambda: ws.edit_file(bad, "TOP", "PWNED"),
        lambda: ws.list_files(bad),
        lambda: ws.search_files("SECRET", bad),
    ):
        with pytest.raises(ConfinementError):
            call()
    assert _snapshot(outside) == before
    assert not (ws.root.parent / "x").exists()


def test_absolute_path_to_an_outside_file_is_refused(layout: tuple[Workspace, Path]) -> None:
    ws, outside = layout
    with pytest.raises(ConfinementError, match="absolute"):
        ws.read_file(str(outside / "secret.txt"))
    # Even an absolute path that points inside is refused: paths are relative.
    (ws.root / "in.txt").write_text("hi")
    with pytest.raises(ConfinementError):
        ws.read_file(str(ws.root / "in.txt"))


def test_symlinked_file_pointing_outside(layout: tuple[Workspace, Path]) -> None:
    ws, outside = layout
    (ws.root / "link.txt").symlink_to(outside / "secret.txt")
    with pytest.raises(ConfinementError, match="outside"):
        ws.read_file("link.txt")
    with pytest.raises(ConfinementError):
        ws.write_file("link.txt", "pwned")
    with pytest.raises(ConfinementError):
        ws.edit_file("link.txt", "TOP", "PWNED")
    assert (outside / "secret.txt").read_text() == "TOP SECRET\n"
    # search does not read through it either
    assert ws.search_files("SECRET")["matches"] == []


def test_symlinked_directory_pointing_outside(layout: tuple[Workspace, Path]) -> None:
    ws, outside = layout
    (ws.root / "d").symlink_to(outside, target_is_directory=True)
    before = _snapshot(outside)
    with pytest.raises(ConfinementError):
        ws.read_file("d/secret.txt")
    with pytest.raises(ConfinementError):
        ws.write_file("d/new.txt", "pwned")
    with pytest.raises(ConfinementError):
        ws.write_file("d/sub/deeper/new.txt", "pwned")
    with pytest.raises(ConfinementError):
        ws.list_files("d")
    assert _snapshot(outside) == before
    assert not (outside / "sub").exists()
    assert "d/secret.txt" not in ws.list_files()["files"]


def test_dangling_symlink_to_outside_is_not_written_through(
    layout: tuple[Workspace, Path],
) -> None:
    ws, outside = layout
    (ws.root / "dangling").symlink_to(outside / "created-by-agent.txt")
    with pytest.raises(ConfinementError):
        ws.write_file("dangling", "pwned")
    assert not (outside / "created-by-agent.txt").exists()


def test_symlinks_that_stay_inside_are_fine(layout: tuple[Workspace, Path]) -> None:
    ws, _ = layout
    (ws.root / "real").mkdir()
    (ws.root / "real" / "f.txt").write_text("one\n")
    (ws.root / "alias").symlink_to(ws.root / "real", target_is_directory=True)
    assert ws.read_file("alias/f.txt")["content"] == "    1\tone"
    assert ws.resolve("alias/../real/f.txt") == ws.root / "real" / "f.txt"
    assert ws.resolve(".") == ws.root


def test_agent_responses_is_read_only_for_agents(layout: tuple[Workspace, Path]) -> None:
    ws, _ = layout
    (ws.root / "agent-responses").mkdir()
    (ws.root / "agent-responses" / "a1.md").write_text("Status: running\n")
    for path in ("agent-responses/a1.md", "./agent-responses/x.md", "sub/../agent-responses/y"):
        with pytest.raises(ConfinementError, match="agent-responses"):
            ws.write_file(path, "Status: done\n")
    with pytest.raises(ConfinementError):
        ws.edit_file("agent-responses/a1.md", "running", "done")
    assert (ws.root / "agent-responses" / "a1.md").read_text() == "Status: running\n"
    assert sorted(p.name for p in (ws.root / "agent-responses").iterdir()) == ["a1.md"]
    assert ws.read_file("agent-responses/a1.md")["content"] == "    1\tStatus: running"


# ----------------------------------------------------------------------------- read_file


def test_read_with_offset_and_limit(layout: tuple[Workspace, Path]) -> None:
    ws, _ = layout
    (ws.root / "f.py").write_text("".join(f"line{i}\n" for i in range(1, 11)))
    part = ws.read_file("f.py", offset=2, limit=3)
    assert part["content"] == "    3\tline3\n    4\tline4\n    5\tline5"
    assert part["total_lines"] == 10
    assert part["lines_returned"] == 3
    assert part["offset"] == 2
    assert part["truncated"] is True
    whole = ws.read_file("f.py")
    assert whole["lines_returned"] == 10 and whole["truncated"] is False
    assert whole["path"] == "f.py"
    tail = ws.read_file("f.py", offset=8, limit=100)
    assert tail["content"] == "    9\tline9\n   10\tline10" and tail["truncated"] is False
    with pytest.raises(ToolError, match="past the end"):
        ws.read_file("f.py", offset=10)


def test_read_errors_and_clipping(layout: tuple[Workspace, Path]) -> None:
    ws, _ = layout
    with pytest.raises(ToolError, match="no such file"):
        ws.read_file("missing.txt")
    (ws.root / "dir").mkdir()
    with pytest.raises(ToolError, match="directory"):
        ws.read_file("dir")
    (ws.root / "blob.bin").write_bytes(b"\x89PNG\r\n\x00\x00\x01")
    with pytest.raises(ToolError, match=r"blob.bin is a binary file, 9 bytes"):
        ws.read_file("blob.bin")
    (ws.root / "long.txt").write_text("a" * 100_000 + "\nshort\n")
    result = ws.read_file("long.txt")
    first, second = result["content"].split("\n")
    assert len(first) < 2100 and first.endswith("[line clipped; 100000 bytes in all]")
    assert first.startswith("    1\t" + "a" * 2000 + " …")
    assert second == "    2\tshort"
    assert result["total_lines"] == 2
    assert "clipped" in result["note"]
    (ws.root / "empty.txt").write_text("")
    assert ws.read_file("empty.txt")["total_lines"] == 0


def test_fifo_is_refused_without_blocking(layout: tuple[Workspace, Path]) -> None:
    ws, _ = layout
    os.mkfifo(ws.root / "pipe")
    with pytest.raises(ToolError, match="not a regular file"):
        ws.read_file("pipe")


# ----------------------------------------------------------------------------- write / edit


def test_write_creates_parents_and_reports_creation(layout: tuple[Workspace, Path]) -> None:
    ws, _ = layout
    first = ws.write_file("a/b/c.txt", "héllo\n")
    assert first == {"path": "a/b/c.txt", "bytes_written": 7, "created": True}
    assert (ws.root / "a/b/c.txt").read_text(encoding="utf-8") == "héllo\n"
    second = ws.write_file("a/b/c.txt", "bye")
    assert second["created"] is False and second["bytes_written"] == 3
    assert (ws.root / "a/b/c.txt").read_text() == "bye"
    assert sorted(p.name for p in (ws.root / "a/b").iterdir()) == ["c.txt"]  # no temp files left
    with pytest.raises(ToolError, match="directory"):
        ws.write_file("a/b", "x")
    with pytest.raises(ToolError, match="parent path is a file"):
        ws.write_file("a/b/c.txt/d.txt", "x")


def test_write_is_atomic_replace_and_keeps_mode(layout: tuple[Workspace, Path]) -> None:
    ws, _ = layout
    target = ws.root / "run.sh"
    target.write_text("old\n")
    target.chmod(0o755)
    os.link(target, ws.root / "hardlink")  # an in-place write would change the hard link too
    ws.write_file("run.sh", "#!/bin/sh\necho new\n")
    assert target.read_text() == "#!/bin/sh\necho new\n"
    assert (ws.root / "hardlink").read_text() == "old\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o755
    # a new file gets the usual rw-r--r--, not the private mode of the temporary file behind it
    assert ws.write_file("new.txt", "fresh\n")["created"] is True
    assert stat.S_IMODE((ws.root / "new.txt").stat().st_mode) == 0o644


def test_edit_uniqueness_and_replace_all(layout: tuple[Workspace, Path]) -> None:
    ws, _ = layout
    (ws.root / "m.py").write_text("x = 1\nx = 1\nx = 1\ny = 2\n")
    with pytest.raises(ToolError, match="3 times"):
        ws.edit_file("m.py", "x = 1", "x = 9")
    assert (ws.root / "m.py").read_text() == "x = 1\nx = 1\nx = 1\ny = 2\n"
    assert ws.edit_file("m.py", "y = 2", "y = 3") == {"path": "m.py", "replacements": 1}
    assert ws.edit_file("m.py", "x = 1", "x = 0", replace_all=True)["replacements"] == 3
    assert (ws.root / "m.py").read_text() == "x = 0\nx = 0\nx = 0\ny = 3\n"
    with pytest.raises(ToolError, match="not found"):
        ws.edit_file("m.py", "z = 5", "z = 6")
    with pytest.raises(ToolError, match="no such file"):
        ws.edit_file("nope.py", "a", "b")


def test_edit_keeps_crlf_line_endings(layout: tuple[Workspace, Path]) -> None:
    ws, _ = layout
    (ws.root / "w.txt").write_bytes(b"one\r\ntwo\r\n")
    ws.edit_file("w.txt", "two", "2")
    assert (ws.root / "w.txt").read_bytes() == b"one\r\n2\r\n"


# ----------------------------------------------------------------------------- list / search


@pytest.fixture
def tree(layout: tuple[Workspace, Path]) -> Workspace:
    ws, _ = layout
    files = {
        "README.md": "hello world\n",
        "src/app.py": "def main():\n    return 'hello'\n",
        "src/util/helpers.py": "HELLO = 1\n",
        ".git/config": "hello from git\n",
        "node_modules/pkg/index.js": "hello js\n",
        "src/__pycache__/app.cpython-311.pyc": "hello cache\n",
        ".venv/lib/site.py": "hello venv\n",
    }
    for rel, text in files.items():
        (ws.root / rel).parent.mkdir(parents=True, exist_ok=True)
        (ws.root / rel).write_text(text)
    (ws.root / "src/data.bin").write_bytes(b"hello\x00binary")
    return ws


def test_list_files_skips_tool_folders_and_sorts(tree: Workspace) -> None:
    listing = tree.list_files()
    assert listing == {
        "files": ["README.md", "src/app.py", "src/data.bin", "src/util/helpers.py"],
        "truncated": False,
    }
    assert tree.list_files("src", glob="*.py")["files"] == ["src/app.py", "src/util/helpers.py"]
    assert tree.list_files(glob="src/*.py")["files"] == ["src/app.py", "src/util/helpers.py"]
    assert tree.list_files("src", glob="util/*.py")["files"] == ["src/util/helpers.py"]
    assert tree.list_files(glob="**/*.md")["files"] == ["README.md"]
    limited = tree.list_files(limit=2)
    assert len(limited["files"]) == 2 and limited["truncated"] is True
    assert tree.list_files("src/app.py")["files"] == ["src/app.py"]
    with pytest.raises(ToolError, match="no such file or directory"):
        tree.list_files("nowhere")


def test_search_files(tree: Workspace) -> None:
    found = tree.search_files("hello")
    assert found["truncated"] is False
    assert found["matches"] == [
        {"path": "README.md", "line": 1, "text": "hello world"},
        {"path": "src/app.py", "line": 2, "text": "    return 'hello'"},
    ]
    insensitive = tree.search_files("(?i)hello", "src", glob="*.py")
    assert [m["path"] for m in insensitive["matches"]] == ["src/app.py", "src/util/helpers.py"]
    capped = tree.search_files("(?i)hello", limit=1)
    assert len(capped["matches"]) == 1 and capped["truncated"] is True
    with pytest.raises(ToolError, match="bad regular expression"):
        tree.search_files("([unclosed")


# ----------------------------------------------------------------------------- non-UTF-8 names
#
# Convention: a byte that is not valid UTF-8 is shown as \xHH, a backslash of the name as \\.


def _names(folder: Path) -> set[bytes]:
    return set(os.listdir(os.fsencode(folder)))


def _json_bytes(result: dict[str, Any]) -> bytes:
    """What the engine does with a result (json, then UTF-8 for the journal and the API)."""
    return json.dumps(result, ensure_ascii=False).encode("utf-8")


@pytest.fixture
def odd_names(layout: tuple[Workspace, Path]) -> Workspace:
    ws, _ = layout
    root = os.fsencode(ws.root)
    with open(os.path.join(root, b"caf\xe9.txt"), "wb") as f:  # Latin-1 "café.txt"
        f.write(b"latin one\nneedle in latin\n")
    os.mkdir(os.path.join(root, b"d\xff"))
    with open(os.path.join(root, b"d\xff", b"x.txt"), "wb") as f:
        f.write(b"needle deep\n")
    (ws.root / "ok.txt").write_text("needle plain\n")
    return ws


def test_non_utf8_names_are_listed_escaped(odd_names: Workspace) -> None:
    listing = odd_names.list_files()
    assert listing["files"] == ["caf\\xe9.txt", "d\\xff/x.txt", "ok.txt"]
    assert "\\xHH" in listing["note"]
    _json_bytes(listing)  # no UnicodeEncodeError
    assert odd_names.list_files(glob="*.txt")["files"] == listing["files"]
    assert odd_names.list_files(glob="caf\\xe9*")["files"] == ["caf\\xe9.txt"]
    assert odd_names.list_files("d\\xff")["files"] == ["d\\xff/x.txt"]
    assert "note" not in odd_names.list_files(glob="ok.*")  # plain names: no note


def test_non_utf8_names_are_searched_escaped(odd_names: Workspace) -> None:
    found = odd_names.search_files("needle")
    assert found["matches"] == [  # a folder's files come before its subfolders
        {"path": "caf\\xe9.txt", "line": 2, "text": "needle in latin"},
        {"path": "ok.txt", "line": 1, "text": "needle plain"},
        {"path": "d\\xff/x.txt", "line": 1, "text": "needle deep"},
    ]
    assert "\\xHH" in found["note"]
    _json_bytes(found)
    assert [m["path"] for m in odd_names.search_files("needle", "d\\xff")["matches"]] == [
        "d\\xff/x.txt"
    ]


def test_escaped_names_round_trip_through_read_write_edit(odd_names: Workspace) -> None:
    ws = odd_names
    read = ws.read_file("caf\\xe9.txt")
    assert read["path"] == "caf\\xe9.txt" and read["content"] == "    1\tlatin one\n    2\tneedle in latin"
    assert read["note"] == NAME_ESCAPE_NOTE  # says how to read the escape, as listing does
    assert "note" not in ws.read_file("ok.txt")
    _json_bytes(read)
    assert ws.edit_file("caf\\xe9.txt", "latin one", "edited") == {
        "path": "caf\\xe9.txt",
        "replacements": 1,
    }
    assert ws.write_file("d\\xff/x.txt", "rewritten\n")["created"] is False
    created = ws.write_file("new\\xe9\\xe8.txt", "fresh\n")
    assert created == {"path": "new\\xe9\\xe8.txt", "bytes_written": 6, "created": True}
    root = os.fsencode(ws.root)
    assert _names(ws.root) == {b"caf\xe9.txt", b"d\xff", b"ok.txt", b"new\xe9\xe8.txt"}
    with open(os.path.join(root, b"caf\xe9.txt"), "rb") as f:
        assert f.read() == b"edited\nneedle in latin\n"
    with open(os.path.join(root, b"d\xff", b"x.txt"), "rb") as f:
        assert f.read() == b"rewritten\n"
    # what list_files shows is exactly what read_file takes
    for shown in ws.list_files()["files"]:
        assert ws.read_file(shown)["path"] == shown


def test_valid_utf8_name_holding_a_backslash(layout: tuple[Workspace, Path]) -> None:
    ws, _ = layout
    (ws.root / "a\\b.txt").write_text("back\n")  # one real backslash in the name
    (ws.root / "café.txt").write_text("utf8\n")
    listing = ws.list_files()
    assert listing["files"] == ["a\\\\b.txt", "café.txt"]  # shown doubled
    assert ws.read_file("a\\\\b.txt")["content"] == "    1\tback"
    assert ws.read_file("a\\b.txt")["path"] == "a\\\\b.txt"  # an undoubled one still reaches it
    assert ws.read_file("café.txt")["path"] == "café.txt"  # valid UTF-8 stays as it is
    assert ws.read_file("caf\\xc3\\xa9.txt")["path"] == "café.txt"  # its bytes, escaped
    ws.write_file("a\\\\b.txt", "changed\n")
    assert (ws.root / "a\\b.txt").read_text() == "changed\n"
    assert _names(ws.root) == {b"a\\b.txt", "café.txt".encode()}


def test_name_holding_the_escape_sequence_literally(layout: tuple[Workspace, Path]) -> None:
    ws, _ = layout
    (ws.root / "caf\\xe9.txt").write_text("literal\n")  # the 4 characters \ x e 9
    with open(os.path.join(os.fsencode(ws.root), b"caf\xe9.txt"), "wb") as f:
        f.write(b"latin\n")
    listing = ws.list_files()["files"]
    assert sorted(listing) == ["caf\\\\xe9.txt", "caf\\xe9.txt"]  # distinct, no collision
    assert ws.read_file("caf\\\\xe9.txt")["content"] == "    1\tliteral"
    assert ws.read_file("caf\\xe9.txt")["content"] == "    1\tlatin"
    ws.write_file("caf\\\\xe9.txt", "literal 2\n")
    assert (ws.root / "caf\\xe9.txt").read_text() == "literal 2\n"
    with open(os.path.join(os.fsencode(ws.root), b"caf\xe9.txt"), "rb") as f:
        assert f.read() == b"latin\n"
    # \xHH below 80 is no escape: it stays text (it can never spell "/", "." or NUL)
    (ws.root / "x\\x41.txt").write_text("not A\n")
    assert ws.read_file("x\\x41.txt")["path"] == "x\\\\x41.txt"


def test_confinement_holds_for_escaped_names(layout: tuple[Workspace, Path]) -> None:
    ws, outside = layout
    root = os.fsencode(ws.root)
    os.symlink(os.fsencode(outside), os.path.join(root, b"l\xe9nk"))
    os.symlink(os.fsencode(outside / "secret.txt"), os.path.join(root, b"s\xe9cret"))
    before = _snapshot(outside)
    for bad in ("l\\xe9nk/secret.txt", "s\\xe9cret", "../caf\\xe9.txt", "d\\xff/../../x\\xe9"):
        with pytest.raises(ConfinementError):
            ws.read_file(bad)
        with pytest.raises(ConfinementError):
            ws.write_file(bad, "pwned")
    with pytest.raises(ConfinementError, match="absolute"):
        ws.read_file(os.fsdecode(root) + "/caf\\xe9.txt")
    with pytest.raises(ConfinementError):
        ws.list_files("l\\xe9nk")
    with pytest.raises(ConfinementError, match="agent-responses"):
        ws.write_file("agent-responses/\\xe9.md", "x")
    # an escape below 80 is not decoded, so "\x2e\x2e/" is a plain (missing) folder name
    with pytest.raises(ToolError, match="no such file"):
        ws.read_file("\\x2e\\x2e/outside/secret.txt")
    # a lone surrogate that no file name can hold is refused, not a crash
    with pytest.raises(ConfinementError, match="no file name") as refused:
        ws.read_file("bad\ud800.txt")
    str(refused.value).encode("utf-8")  # the message itself is safe to send
    assert _snapshot(outside) == before
    assert "s\\xe9cret" in ws.list_files()["files"]  # listed, but never read through
    assert ws.search_files("SECRET")["matches"] == []


def test_where_names_must_be_unicode_an_escape_is_taken_as_it_is(
    layout: tuple[Workspace, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a platform whose file names must be Unicode (Windows: fsdecode refuses bytes that are
    not UTF-8), ``\\xHH`` cannot name a raw byte: the path is taken as given, backslash and all."""
    ws, _ = layout
    (ws.root / "caf\\xe9.txt").write_text("literal\n")  # the 4 characters \ x e 9 in the name

    def unicode_only(raw: bytes) -> str:
        return raw.decode("utf-8")  # strict: a lone byte e9 raises UnicodeDecodeError

    windows_like = SimpleNamespace(fsencode=os.fsencode, fsdecode=unicode_only)
    monkeypatch.setattr(names_mod, "os", windows_like)
    assert names_mod.parse_name("caf\\xe9.txt") == "caf\\xe9.txt"
    assert names_mod.parse_name("caf\\\\x.txt") == "caf\\x.txt"  # valid UTF-8: decoded as usual
    assert ws.read_file("caf\\xe9.txt")["content"] == "    1\tliteral"


# ----------------------------------------------------------------------------- argument types


def test_wrong_argument_types_are_tool_errors(layout: tuple[Workspace, Path]) -> None:
    real, _ = layout
    (real.root / "f.txt").write_text("a\n")
    ws: Any = real  # the model can send anything; bypass the static types on purpose
    cases = [
        (lambda: ws.read_file(123), "path must be a string"),
        (lambda: ws.read_file(None), "path must be a string"),
        (lambda: ws.read_file("f.txt", offset="1"), "offset must be an integer"),
        (lambda: ws.read_file("f.txt", limit=True), "limit must be an integer"),
        (lambda: ws.read_file("f.txt", offset=-1), "offset must be at least 0"),
        (lambda: ws.read_file("f.txt", limit=0), "limit must be at least 1"),
        (lambda: ws.write_file("f.txt", None), "content must be a string"),
        (lambda: ws.write_file(["f.txt"], "x"), "path must be a string"),
        (lambda: ws.edit_file("f.txt", 1, "b"), "old_string must be a string"),
        (lambda: ws.edit_file("f.txt", "", "b"), "old_string must not be empty"),
        (lambda: ws.edit_file("f.txt", "a", None), "new_string must be a string"),
        (
            lambda: ws.edit_file("f.txt", "a", "b", replace_all="yes"),
            "replace_all must be a boolean",
        ),
        (lambda: ws.list_files(glob=3), "glob must be a string"),
        (lambda: ws.list_files(limit="9"), "limit must be an integer"),
        (lambda: ws.search_files(None), "pattern must be a string"),
        (lambda: ws.search_files("a", path=5), "path must be a string"),
    ]
    for call, message in cases:
        with pytest.raises(ToolError, match=message):
            call()
    assert (real.root / "f.txt").read_text() == "a\n"


# ----------------------------------------------------------------------------- helpers


def test_truncate_text_keeps_head_and_tail() -> None:
    assert truncate_text("short", 10) == "short"
    text = "H" * 500 + "M" * 9_000 + "T" * 500
    cut = truncate_text(text, 1000)
    assert cut.startswith("H" * 400) and cut.endswith("M" * 100 + "T" * 500)
    note = "\n…[truncated 9000 characters of 10000; showing head and tail]…\n"
    head, found, tail = cut.partition(note)
    assert found and len(head) == 400 and len(tail) == 600


def test_scrubbed_env_drops_secrets_and_keeps_the_rest() -> None:
    base = {
        "PATH": "/usr/bin",
        "HOME": "/home/u",
        "LANG": "C.UTF-8",
        "ANTHROPIC_API_KEY": "sk-ant-abc",
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:1",
        "OPENAI_API_KEY": "x",
        "GITHUB_TOKEN": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "db_password": "x",
        "MY_Session_ID": "x",
        "HARMLESS_NAME": "ghp_abcdefghijklmnop",
        "OTHER": "sk-proj-123",
        "AWS_ID": "AKIAABCDEFGHIJKLMNOP",
        "SLACK": "xoxb-123-456",
        "PROXY_URL": "http://user:hunter2@proxy:3128",
        "NORMAL_URL": "https://example.com/a",
    }
    env = scrubbed_env(base)
    assert env == {
        "PATH": "/usr/bin",
        "HOME": "/home/u",
        "LANG": "C.UTF-8",
        "NORMAL_URL": "https://example.com/a",
        "PYTHONUNBUFFERED": "1",
        "GIT_TERMINAL_PROMPT": "0",
    }
    assert "ANTHROPIC_API_KEY" in base  # the input is not modified
