#!/usr/bin/env python3
"""Mutation testing for the engine and the tools, with nothing but the standard library.

Each mutant is one small change to one module, made in a copy of ``desktop/`` in a temporary
folder (never in the working tree); the copy goes first on PYTHONPATH of a pytest subprocess that
runs the tests mapped to that module, stopping at the first failure (``-x``). A failing test
kills the mutant; so does a per-mutant timeout (a mutant that hangs the engine is caught, just
late). A mutant the tests let through "survives": a rule nobody checks, or an equivalent change.

Operators (the ``operator`` column of the report):
  cmp-flip     ``<`` <-> ``<=``, ``>`` <-> ``>=``, ``==`` <-> ``!=``, ``is`` <-> ``is not``, ``in`` <-> ``not in``
  bool-swap    ``and`` <-> ``or``
  not-drop     ``not x`` -> ``x``
  int+1/int-1  an integer constant plus or minus one
  return       ``return x`` -> ``return None`` (``return True`` <-> ``return False``)
  stmt-drop    a statement in the body of an ``if``/``elif``/``else`` replaced by ``pass``

    scripts/mutate.py --sample 40 --seed 1          # 40 mutants drawn from every module
    scripts/mutate.py --module engine/_run.py --list # what would be tried, without running it

Before the mutants, the mapped tests run once on the unmutated copy: a test that already fails
there (someone's work in progress) is deselected, so it cannot "kill" mutants.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "desktop" / "agentray"
TARGETS = ("engine", "tools")
BASELINE_TIMEOUT_S = 1800.0
FAULTHANDLER_S = 300  # a test still running this long dumps every thread's stack into the log

ENGINE_CORE = [
    "tests/test_rule_edges.py",
    "tests/test_engine_views.py",
    "tests/test_engine_primitives.py",
    "tests/test_engine_caps.py",
    "tests/test_engine_recovery.py",
    "tests/test_engine_build.py",
    "tests/test_engine_edges.py",
    "tests/test_honest_outcome.py",  # finish's refusals and the "not everything went to plan" report
]
# Which tests can see a change in which module (the most telling first: -x stops at the first
# failure). A module not named here gets ENGINE_CORE.
TEST_MAP: dict[str, list[str]] = {
    "engine/_guard.py": ["tests/test_engine_guard.py", "tests/test_guard_env.py"],
    "engine/_engine.py": [*ENGINE_CORE, "tests/test_engine_lifecycle.py"],
    "engine/_run.py": [*ENGINE_CORE, "tests/test_engine_lifecycle.py"],
    "engine/_agent_loop.py": [
        *ENGINE_CORE,
        "tests/test_engine_lifecycle.py",
        "tests/test_engine_faults.py",
        "tests/test_crash_recovery.py",  # resuming after kill -9 (the finish replayed or not)
    ],
    "engine/_context.py": [
        "tests/test_engine_lifecycle.py",
        "tests/test_crash_recovery.py",
        "tests/test_project_instructions.py",
    ],
    "engine/_state.py": [*ENGINE_CORE, "tests/test_scheduler.py"],
    "engine/_ownership.py": ["tests/test_engine_edges.py", "tests/test_crash_recovery.py"],
    "engine/_processes.py": ["tests/test_engine_lifecycle.py", "tests/test_crash_recovery.py"],
    "engine/_progress.py": [
        "tests/test_progress_coalescing.py",
        "tests/test_engine_primitives.py",
        "tests/test_engine_faults.py",
        "tests/test_sandbox.py",
    ],
    "engine/_snapshots.py": ["tests/test_checkpoints.py", "tests/test_crash_recovery.py"],
    "engine/_toolkit.py": ["tests/test_engine_caps.py", *ENGINE_CORE],
    "engine/_recovery.py": [
        "tests/test_rule_edges.py",
        "tests/test_engine_recovery.py",
        *ENGINE_CORE,
    ],
    "engine/_tool_calls.py": [*ENGINE_CORE, "tests/test_crash_recovery.py"],
    "engine/_views.py": [*ENGINE_CORE, "tests/test_engine_lifecycle.py"],
    "tools/_process.py": [
        "tests/test_tools_edges.py",
        "tests/test_tools_process.py",
        "tests/test_engine_lifecycle.py",
    ],
    "tools/_workspace.py": [
        "tests/test_tools_edges.py",
        "tests/test_tools_workspace.py",
        "tests/test_tools_large_files.py",
        "tests/test_tools_ignore.py",
    ],
    "tools/_search.py": [
        "tests/test_tools_edges.py",
        "tests/test_tools_workspace.py",
        "tests/test_tools_ignore.py",
        "tests/test_tools_large_files.py",
    ],
    "tools/_ignore.py": [
        "tests/test_tools_edges.py",
        "tests/test_tools_ignore.py",
        "tests/test_tools_workspace.py",
    ],
    "tools/_names.py": ["tests/test_tools_workspace.py", "tests/test_tools_large_files.py"],
    "tools/_truncate.py": [
        "tests/test_tools_edges.py",
        "tests/test_tools_process.py",
        "tests/test_tools_large_files.py",
    ],
    "tools/_env.py": ["tests/test_tools_process.py", "tests/test_sandbox_profiles.py"],
    "tools/__init__.py": ["tests/test_tools_process.py", "tests/test_tools_workspace.py"],
}

CMP_FLIPS: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}


@dataclass(frozen=True)
class Mutant:
    module: str  # relative to desktop/agentray, e.g. engine/_run.py
    line: int
    col: int
    end_line: int
    end_col: int
    operator: str
    replacement: str  # the new text of the span
    original: str  # the old text of the span

    @property
    def where(self) -> str:
        return f"{self.module}:{self.line}"


@dataclass
class Result:
    mutant: Mutant
    outcome: str  # killed | survived | timeout | invalid
    seconds: float
    detail: str = ""
    mutated_line: str = ""


@dataclass
class Report:
    results: list[Result] = field(default_factory=list)
    deselected: dict[str, list[str]] = field(default_factory=dict)


# ---------------------------------------------------------------------------- finding mutants
def _skip_zones(tree: ast.Module) -> set[int]:
    """ids of nodes no mutant may touch: docstrings, annotations, f-strings, TYPE_CHECKING blocks,
    ``__all__``."""
    skip: set[int] = set()

    def mark(node: ast.AST) -> None:
        for sub in ast.walk(node):
            skip.add(id(sub))

    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                mark(body[0])
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for arg in [*node.args.args, *node.args.kwonlyargs, *node.args.posonlyargs]:
                if arg.annotation is not None:
                    mark(arg.annotation)
            if node.returns is not None:
                mark(node.returns)
        if isinstance(node, ast.AnnAssign):
            mark(node.annotation)
        if isinstance(node, ast.JoinedStr):
            mark(node)  # positions inside f-strings are not reliable before 3.12
        if (
            isinstance(node, ast.If)
            and isinstance(node.test, ast.Name)
            and node.test.id == "TYPE_CHECKING"
        ):
            mark(node)
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
        ):
            mark(node)
    return skip


def _is_logging(stmt: ast.stmt) -> bool:
    """``log.debug(...)`` and friends: dropping them changes nothing a test should see."""
    if not (isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call)):
        return False
    func = stmt.value.func
    return (
        isinstance(func, ast.Attribute)
        and isinstance(func.value, ast.Name)
        and func.value.id in ("log", "logger")
    )


def find_mutants(module: str) -> list[Mutant]:
    path = PACKAGE / module
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source)
    skip = _skip_zones(tree)
    found: list[Mutant] = []

    def add(node: ast.AST, operator: str, replacement: str) -> None:
        original = ast.get_source_segment(source, node)
        if original is None or replacement == original:
            return
        found.append(
            Mutant(
                module,
                node.lineno,  # type: ignore[attr-defined]
                node.col_offset,  # type: ignore[attr-defined]
                node.end_lineno,  # type: ignore[attr-defined]
                node.end_col_offset,  # type: ignore[attr-defined]
                operator,
                replacement,
                original,
            )
        )

    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Compare):
            for i, op in enumerate(node.ops):
                flipped = CMP_FLIPS.get(type(op))
                if flipped is None:
                    continue
                ops = list(node.ops)
                ops[i] = flipped()
                new = ast.Compare(left=node.left, ops=ops, comparators=node.comparators)
                add(node, "cmp-flip", f"({ast.unparse(new)})")
        elif isinstance(node, ast.BoolOp):
            other = ast.Or() if isinstance(node.op, ast.And) else ast.And()
            add(node, "bool-swap", f"({ast.unparse(ast.BoolOp(op=other, values=node.values))})")
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            add(node, "not-drop", f"({ast.unparse(node.operand)})")
        elif isinstance(node, ast.Constant) and type(node.value) is int:
            for delta, name in ((1, "int+1"), (-1, "int-1")):
                value = node.value + delta
                add(node, name, f"({value})" if value < 0 else str(value))
        elif isinstance(node, ast.Return) and node.value is not None:
            value = node.value
            if isinstance(value, ast.Constant) and value.value is None:
                continue
            if isinstance(value, ast.Constant) and isinstance(value.value, bool):
                replacement = "return " + str(not value.value)
            else:
                replacement = "return None"
            add(node, "return", replacement)
        elif isinstance(node, ast.If):
            for stmt in [*node.body, *node.orelse]:
                if id(stmt) in skip or isinstance(stmt, ast.If | ast.Pass) or _is_logging(stmt):
                    continue  # an elif is an If of its own; its statements are found there
                add(stmt, "stmt-drop", "pass")
    found.sort(key=lambda m: (m.line, m.col, m.operator, m.replacement))
    return found


def apply(source: str, mutant: Mutant) -> str:
    lines = source.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line.encode("utf-8")))
    data = source.encode("utf-8")
    start = offsets[mutant.line - 1] + mutant.col
    end = offsets[mutant.end_line - 1] + mutant.end_col
    return (data[:start] + mutant.replacement.encode("utf-8") + data[end:]).decode("utf-8")


def modules(filters: list[str]) -> list[str]:
    found = []
    for target in TARGETS:
        for path in sorted((PACKAGE / target).glob("*.py")):
            rel = path.relative_to(PACKAGE).as_posix()
            if not filters or any(f in rel for f in filters):
                found.append(rel)
    return found


def tests_for(module: str) -> list[str]:
    return [t for t in dict.fromkeys(TEST_MAP.get(module, ENGINE_CORE)) if (ROOT / t).exists()]


# ---------------------------------------------------------------------------- running
class BaselineError(Exception):
    """The unmutated tests hang or crash: no mutant of theirs can be judged."""


def _pytest(
    copy: Path, tests: list[str], *, stop_at_first: bool, deselect: list[str], timeout: float
) -> tuple[int | None, str, float]:
    """pytest on the copy (first on PYTHONPATH): (exit code or None on timeout, output, seconds)."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(copy / "desktop"), os.environ.get("PYTHONPATH", "")]),
        "PYTHONDONTWRITEBYTECODE": "1",  # a stale .pyc of another mutant can never be loaded
        "QT_QPA_PLATFORM": "offscreen",
    }
    command = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-rfE",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:qt",
    ]
    command += ["-o", f"faulthandler_timeout={FAULTHANDLER_S}"]
    if stop_at_first:
        command.append("-x")
    for node in deselect:
        command += ["--deselect", node]
    started = time.monotonic()
    proc = subprocess.Popen(
        [*command, *tests],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # a timeout kills the tests' own children too
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        return None, out, time.monotonic() - started
    return proc.returncode, out, time.monotonic() - started


def _failures(output: str) -> list[str]:
    return sorted(set(re.findall(r"^(?:FAILED|ERROR) (\S+?)(?: - .*)?$", output, re.MULTILINE)))


def baseline(copy: Path, tests: list[str], logs: Path) -> tuple[list[str], float]:
    """The mapped tests on the unmutated copy: which fail already (to deselect), and how long
    they take. A baseline that hangs or dies is tried once more: a wrong list of failures would
    let a test that fails anyway "kill" every mutant."""
    for attempt in (1, 2):
        code, out, seconds = _pytest(
            copy, tests, stop_at_first=False, deselect=[], timeout=BASELINE_TIMEOUT_S
        )
        name = "-".join(Path(t).stem.removeprefix("test_") for t in tests)[:100]
        (logs / f"baseline-{name}-{attempt}.txt").write_text(out, encoding="utf-8")
        if code in (0, 1):
            return _failures(out), seconds
        print(f"  the baseline ended with {code} (a hang or a crash), once more", flush=True)
    raise BaselineError(f"the unmutated tests do not run to an end: {' '.join(tests)}")


def judge(code: int | None, out: str) -> tuple[str, str]:
    if code is None:
        return "timeout", ""
    if code == 0:
        return "survived", ""
    if code == 5:
        return "error", "no tests ran"
    failed = _failures(out)
    lines = out.strip().splitlines()
    return "killed", failed[0] if failed else (lines[-1] if lines else f"exit {code}")


def mutated_line(source: str, mutant: Mutant) -> str:
    new = apply(source, mutant).splitlines()
    return new[mutant.line - 1].strip() if mutant.line - 1 < len(new) else ""


def run(mutants: list[Mutant], *, timeout_factor: float, min_timeout: float, logs: Path) -> Report:
    report = Report()
    by_module: dict[str, list[Mutant]] = defaultdict(list)
    for m in mutants:
        by_module[m.module].append(m)
    with tempfile.TemporaryDirectory(prefix="agentray-mutants-") as tmp:
        copy = Path(tmp)
        ignore = shutil.ignore_patterns("__pycache__")
        shutil.copytree(ROOT / "desktop", copy / "desktop", ignore=ignore)
        where = subprocess.run(
            [sys.executable, "-c", "import agentray; print(agentray.__file__)"],
            env={**os.environ, "PYTHONPATH": str(copy / "desktop")},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        if not where.startswith(str(copy)):
            raise SystemExit(f"the copy is not what gets imported ({where})")
        baselines: dict[tuple[str, ...], tuple[list[str], float] | None] = {}
        for module, group in by_module.items():
            tests = tests_for(module)
            key = tuple(tests)
            if key not in baselines:
                print(f"baseline for {module}: {' '.join(tests)}", flush=True)
                try:
                    baselines[key] = baseline(copy, tests, logs)
                except BaselineError as error:
                    print(f"  {error}; its mutants are skipped", flush=True)
                    baselines[key] = None
                else:
                    failing, seconds = baselines[key] or ([], 0.0)
                    if failing:
                        print(f"  already failing, deselected: {', '.join(failing)}", flush=True)
                    print(f"  {seconds:.1f} s", flush=True)
            known = baselines[key]
            if known is None:
                report.results += [Result(m, "error", 0.0, "baseline hangs") for m in group]
                continue
            failing, seconds = known
            report.deselected[module] = failing
            timeout = max(min_timeout, seconds * timeout_factor)
            target = copy / "desktop" / "agentray" / module
            original = target.read_text(encoding="utf-8")
            for mutant in group:
                text = apply(original, mutant)
                line = mutated_line(original, mutant)
                try:
                    compile(text, str(target), "exec")
                except SyntaxError as error:
                    report.results.append(Result(mutant, "invalid", 0.0, str(error), line))
                    continue
                target.write_text(text, encoding="utf-8")
                try:
                    code, out, secs = _pytest(
                        copy, tests, stop_at_first=True, deselect=failing, timeout=timeout
                    )
                finally:
                    target.write_text(original, encoding="utf-8")
                outcome, detail = judge(code, out)
                if outcome in ("timeout", "error"):
                    log = (
                        logs
                        / f"{outcome}-{module.replace('/', '_')}-{mutant.line}-{mutant.col}.txt"
                    )
                    log.write_text(out, encoding="utf-8")
                report.results.append(Result(mutant, outcome, secs, detail, line))
                print(
                    f"  {outcome:8} {secs:6.1f} s  {mutant.where:28} {mutant.operator:9} {line[:90]}",
                    flush=True,
                )
    return report


# ---------------------------------------------------------------------------- reporting
def table(report: Report) -> str:
    rows: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for r in report.results:
        if r.outcome in ("invalid", "error"):
            continue
        row = rows[r.mutant.module]
        row["mutants"] += 1
        row[r.outcome] += 1
    total: dict[str, int] = defaultdict(int)
    out = [
        f"{'module':28} {'mutants':>7} {'killed':>6} {'survived':>8} {'timeouts':>8} {'kill rate':>9}"
    ]
    for module in sorted(rows):
        row = rows[module]
        for key, value in row.items():
            total[key] += value
        out.append(_row(module, row))
    out.append(_row("total", total))
    return "\n".join(out)


def _row(name: str, row: dict[str, int]) -> str:
    mutants = row["mutants"]
    caught = row["killed"] + row["timeout"]
    rate = f"{100 * caught / mutants:.0f} %" if mutants else "-"
    return (
        f"{name:28} {mutants:7} {row['killed']:6} {row['survived']:8} {row['timeout']:8} {rate:>9}"
    )


def survivors(report: Report) -> Iterator[str]:
    for r in report.results:
        if r.outcome == "survived":
            yield f"{r.mutant.where:28} {r.mutant.operator:9} {r.mutant.original[:60]!r} -> {r.mutated_line}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sample", type=int, help="try only N mutants, drawn at random")
    parser.add_argument("--seed", type=int, default=0, help="seed of the draw (default 0)")
    parser.add_argument(
        "--module",
        action="append",
        default=[],
        help="only modules whose path contains this (repeatable)",
    )
    parser.add_argument(
        "--operator", action="append", default=[], help="only these operators (repeatable)"
    )
    parser.add_argument(
        "--line", type=int, action="append", default=[], help="only mutants on these lines"
    )
    parser.add_argument("--list", action="store_true", help="list the mutants, run nothing")
    parser.add_argument(
        "--timeout-factor",
        type=float,
        default=3.0,
        help="a mutant's timeout: this x the baseline time",
    )
    parser.add_argument(
        "--min-timeout", type=float, default=60.0, help="the shortest per-mutant timeout, seconds"
    )
    parser.add_argument("--json", type=Path, help="also write every result to this file")
    parser.add_argument(
        "--logs", type=Path, help="keep the pytest output of baselines, timeouts and errors here"
    )
    args = parser.parse_args(argv)

    mutants = [m for module in modules(args.module) for m in find_mutants(module)]
    if args.operator:
        mutants = [m for m in mutants if m.operator in args.operator]
    if args.line:
        mutants = [m for m in mutants if m.line in args.line]
    print(f"{len(mutants)} mutants in {len({m.module for m in mutants})} modules", flush=True)
    if args.sample is not None and args.sample < len(mutants):
        mutants = sorted(
            random.Random(args.seed).sample(mutants, args.sample),
            key=lambda m: (m.module, m.line, m.col),
        )
        print(f"sampled {len(mutants)} (seed {args.seed})", flush=True)
    if args.list:
        for m in mutants:
            source = (PACKAGE / m.module).read_text(encoding="utf-8")
            print(f"{m.where:28} {m.operator:9} {mutated_line(source, m)}")
        return 0
    started = time.monotonic()
    logs = args.logs or Path(tempfile.mkdtemp(prefix="agentray-mutants-logs-"))
    logs.mkdir(parents=True, exist_ok=True)
    report = run(
        mutants, timeout_factor=args.timeout_factor, min_timeout=args.min_timeout, logs=logs
    )
    elapsed = time.monotonic() - started
    tried = [r for r in report.results if r.outcome not in ("invalid", "error")]
    print()
    print(table(report))
    print()
    per = elapsed / len(tried) if tried else 0.0
    print(
        f"{len(tried)} mutants in {elapsed / 60:.1f} min ({per:.1f} s per mutant, baselines included)"
    )
    invalid = sum(r.outcome == "invalid" for r in report.results)
    if invalid:
        print(f"{invalid} mutants did not compile and were not counted")
    errors = [r for r in report.results if r.outcome == "error"]
    if errors:
        print(
            f"{len(errors)} mutants ran no test (not counted): "
            + ", ".join(r.mutant.where for r in errors)
        )
    print(f"pytest output of the baselines (and of any timeout): {logs}")
    lines = list(survivors(report))
    if lines:
        print("\nsurvivors:")
        print("\n".join(lines))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "elapsed_s": elapsed,
                    "deselected": report.deselected,
                    "results": [{**asdict(r), "mutant": asdict(r.mutant)} for r in report.results],
                },
                indent=2,
            ),
            encoding="utf-8",
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
