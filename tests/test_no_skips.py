"""AGENTRAY_NO_SKIPS=1 turns every kind of skip into a failure (tests/no_skips.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent

SKIPPING = {
    "test_marked.py": """
        import pytest

        @pytest.mark.skip(reason="not here")
        def test_marked():
            pass
    """,
    "test_imperative.py": """
        import pytest

        def test_imperative():
            pytest.skip("no server")
    """,
    "test_in_a_fixture.py": """
        import pytest

        @pytest.fixture
        def server():
            pytest.skip("no server")

        def test_in_a_fixture(server):
            pass
    """,
    "test_whole_module.py": """
        import pytest

        pytest.skip("not on this platform", allow_module_level=True)

        def test_never():
            pass
    """,
    "test_expected_failure.py": """
        import pytest

        @pytest.mark.xfail(reason="a known bug", strict=True)
        def test_known_bug():
            assert False

        def test_passes():
            pass
    """,
}


def _pytest(folder: Path, no_skips: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "AGENTRAY_NO_SKIPS"}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), env.get("PYTHONPATH", "")])
    if no_skips:
        env["AGENTRAY_NO_SKIPS"] = "1"
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:qt",
            "-rA",
            "--continue-on-collection-errors",
            str(folder),
        ],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def suite(tmp_path: Path) -> Path:
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    (tmp_path / "conftest.py").write_text(
        "from no_skips import pytest_make_collect_report, pytest_runtest_makereport  # noqa: F401\n"
    )
    for name, body in SKIPPING.items():
        (tmp_path / name).write_text(textwrap.dedent(body))
    return tmp_path


def test_skips_are_skips_by_default(suite: Path) -> None:
    done = _pytest(suite, no_skips=False)
    assert done.returncode == 0, done.stdout
    assert "1 passed, 4 skipped, 1 xfailed" in done.stdout


def test_every_kind_of_skip_fails_with_no_skips(suite: Path) -> None:
    done = _pytest(suite, no_skips=True)
    assert done.returncode == 1, done.stdout
    # a skip at setup (a mark, a fixture) is an error, one in the test a failure
    assert "1 failed, 1 passed, 1 xfailed, 3 errors" in done.stdout
    for reason in ("not here", "no server", "not on this platform"):
        assert f"{reason} -- a skip fails the run when AGENTRAY_NO_SKIPS=1" in done.stdout
    assert "skipped" not in done.stdout.splitlines()[-1]
