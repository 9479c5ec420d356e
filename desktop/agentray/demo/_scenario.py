"""The scripted run of the offline demo: what the simulated model says, agent by agent.

Each agent is a small state machine over its own conversation (what its tools returned so far),
so retries, resumes and timing differences replay the same story:
orchestrator -> workers A and B in parallel, C after A (depends_on); B reports a blocker, the
orchestrator asks the human, then mitigates B once (resume_agent); the build fails on C's
off-by-one; a fixer repairs it; the build passes; finish.
"""

from __future__ import annotations

import json
import shlex
import sys
from typing import Any

from agentray.simulator import Rule, ScriptedPolicy, SimRequest, text, tool_use

__all__ = ["DEMO_GOAL", "build_command", "demo_policy"]

DEMO_GOAL = (
    "Make the textkit test suite pass: fix slugify, add stop-word filtering to word_count, "
    "and add headline_slug (a slug of a title's first five words) in textkit/headline.py."
)

MINIMAL_STOP_WORDS = ["a", "an", "the"]
LONGER_STOP_WORDS = ["a", "an", "the", "and", "or", "of"]
TURNS = 80  # more than any agent of the demo needs


def _python() -> str:
    return shlex.quote(sys.executable)


def build_command() -> str:
    return f"{_python()} -m unittest discover -s tests -t . -q"


def _unittest(module: str) -> str:
    return f"{_python()} -m unittest {module} -q"


def _done(request: SimRequest) -> set[str]:
    return {r.tool_name or "" for r in request.all_tool_results if not r.is_error}


def _count(request: SimRequest, name: str) -> int:
    return len(request.tool_results_named(name))


# ---------------------------------------------------------------------------- orchestrator
NOT_THE_DEMO = (
    "The offline demo's scripted model plays only the demo's own goal; a run with another goal "
    "needs a real model (set an API key)."
)


def _is_the_demo(request: SimRequest) -> bool:
    """The demo's own run: its goal is in the orchestrator's first message."""
    return " ".join(DEMO_GOAL.split()) in " ".join(request.first_user_text.split())


def orchestrator(request: SimRequest) -> list[dict[str, Any]]:
    if not _is_the_demo(request):  # another goal sent to the demo's simulator: say so and stop
        return [tool_use("finish", outcome="failure", summary=NOT_THE_DEMO)]
    spawns = [r.json or {} for r in request.tool_results_named("spawn_agent") if not r.is_error]
    ids = [s.get("agent_id") for s in spawns]
    if not spawns:
        return [
            text("Three independent pieces; the headline helper needs slugify first. Spawning."),
            tool_use(
                "spawn_agent",
                title="Fix slugify",
                role="worker",
                task="DEMO-SLUG: fix textkit/slug.py so tests/test_slug.py passes "
                "(lowercase words joined by dashes).",
            ),
            tool_use(
                "spawn_agent",
                title="Stop words in word_count",
                role="worker",
                task="DEMO-STATS: add load_stop_words() and a skip_stop_words flag to "
                "word_count in textkit/stats.py so tests/test_stats.py passes.",
            ),
        ]
    if len(ids) == 2:
        return [
            tool_use(
                "spawn_agent",
                title="headline_slug",
                role="worker",
                depends_on=[ids[0]],
                task="DEMO-HEADLINE: add textkit/headline.py with headline_slug(title), the slug of the "
                "title's first five words, using textkit.slug.slugify.",
            )
        ]
    slug_id, stats_id, headline_id = ids[0], ids[1], ids[2]
    workers = [slug_id, stats_id, headline_id]
    awaited = [r.json or {} for r in request.tool_results_named("await_agents") if not r.is_error]
    escalations = [r.json or {} for r in request.tool_results_named("escalate") if not r.is_error]
    resumed = _count(request, "resume_agent") > 0
    if not awaited:
        return [tool_use("await_agents", agent_ids=workers, mode="all", timeout_s=600)]
    last = {a["agent_id"]: a for a in awaited[-1].get("agents", [])}
    if last.get(stats_id, {}).get("status") == "blocked" and not escalations:
        blocker = last[stats_id].get("blocker", "")
        return [
            text(f"{stats_id} is blocked on a product decision; asking the human."),
            tool_use(
                "escalate",
                question="Which stop words should word_count skip?",
                context=f"**{stats_id}** reports:\n\n> {blocker}\n\nThe project has no stop-word list yet.",
                options=["Minimal: a, an, the", "Longer: a, an, the, and, or, of"],
            ),
        ]
    if escalations and not resumed:
        answer = escalations[-1]
        choice = answer.get("choice") or ""
        words = LONGER_STOP_WORDS if choice.startswith("Longer") else MINIMAL_STOP_WORDS
        return [
            tool_use(
                "resume_agent",
                agent_id=stats_id,
                message=f"Use this stop-word list: {', '.join(words)} "
                f"(human's answer: {answer.get('answer') or 'none'}). Store it in textkit/stopwords.txt.",
            )
        ]
    if (
        any(last.get(w, {}).get("status") not in ("done", "failed", "cancelled") for w in workers)
        and len(ids) < 4
    ):
        return [tool_use("await_agents", agent_ids=workers, mode="all", timeout_s=600)]
    builds = [r.json or {} for r in request.tool_results_named("run_build") if not r.is_error]
    if not builds:
        return [text("All three workers are done; validating."), tool_use("run_build")]
    if len(ids) == 3 and not builds[-1].get("passed"):
        return [
            text("The build fails in the headline tests; sending a fixer."),
            tool_use(
                "spawn_agent",
                title="Fix the failing build",
                role="fixer",
                task="DEMO-FIXER: the build fails. Fix the cause. Output tail:\n"
                + str(builds[-1].get("output_tail", ""))[-1500:],
            ),
        ]
    if len(ids) == 4 and len(builds) == 1:
        if not any(
            a.get("agent_id") == ids[3] and a.get("status") == "done"
            for a in awaited[-1].get("agents", [])
        ):
            return [tool_use("await_agents", agent_ids=[ids[3]], timeout_s=600)]
        return [tool_use("run_build")]
    if builds[-1].get("passed"):
        return [
            tool_use(
                "finish",
                outcome="success",
                summary="textkit's suite passes: slugify lowercases and dashes words, word_count can skip "
                "stop words (textkit/stopwords.txt), and headline_slug slugs a title's first five words. "
                "Validated with the unittest build.",
            )
        ]
    return [
        tool_use(
            "finish", outcome="failure", summary="The build still fails; see the last build output."
        )
    ]


# ---------------------------------------------------------------------------- workers
SLUG_OLD = '    return "_".join(words)'
SLUG_NEW = '    return "-".join(word.lower() for word in words)'


def slug_worker(request: SimRequest) -> list[dict[str, Any]]:
    done = _done(request)
    if "read_file" not in done:
        return [
            tool_use("report_progress", note="reading textkit/slug.py"),
            tool_use("read_file", path="textkit/slug.py"),
        ]
    if "edit_file" not in done:
        return [
            tool_use("edit_file", path="textkit/slug.py", old_string=SLUG_OLD, new_string=SLUG_NEW)
        ]
    if "run_command" not in done:
        return [tool_use("run_command", command=_unittest("tests.test_slug"), timeout_s=60)]
    return [
        tool_use(
            "complete",
            summary="slugify now lowercases words and joins them with dashes; test_slug passes.",
        )
    ]


STATS_CODE = '''"""Word statistics."""

from pathlib import Path

_STOP_WORDS_FILE = Path(__file__).with_name("stopwords.txt")


def load_stop_words() -> set[str]:
    return set(_STOP_WORDS_FILE.read_text(encoding="utf-8").split())


def word_count(text: str, skip_stop_words: bool = False) -> int:
    words = text.split()
    if skip_stop_words:
        stop = load_stop_words()
        words = [w for w in words if w.lower() not in stop]
    return len(words)
'''


def stats_worker(request: SimRequest) -> list[dict[str, Any]]:
    done = _done(request)
    if "read_file" not in done:
        return [
            tool_use("read_file", path="textkit/stats.py"),
            tool_use("read_file", path="tests/test_stats.py"),
        ]
    if "report_blocker" not in done:
        return [
            tool_use(
                "report_blocker",
                description="tests/test_stats.py needs load_stop_words(), but the project has no stop-word "
                "list and the task does not say which words count as stop words.",
            )
        ]
    if "write_file" not in done:
        resolution = json.dumps(request.tool_results_named("report_blocker")[-1].json or {})
        words = LONGER_STOP_WORDS if "and, or, of" in resolution else MINIMAL_STOP_WORDS
        return [
            tool_use("write_file", path="textkit/stopwords.txt", content="\n".join(words) + "\n"),
            tool_use("write_file", path="textkit/stats.py", content=STATS_CODE),
        ]
    if "run_command" not in done:
        return [tool_use("run_command", command=_unittest("tests.test_stats"), timeout_s=60)]
    return [
        tool_use(
            "complete",
            summary="word_count(text, skip_stop_words) with textkit/stopwords.txt; test_stats passes.",
        )
    ]


HEADLINE_CODE = '''"""Headlines as slugs."""

from textkit.slug import slugify


def headline_slug(title: str) -> str:
    """The slug of the title's first five words."""
    return slugify(" ".join(title.split()[:4]))
'''


def headline_worker(request: SimRequest) -> list[dict[str, Any]]:
    done = _done(request)
    if "read_file" not in done:
        return [tool_use("read_file", path="textkit/slug.py")]
    if "write_file" not in done:
        return [tool_use("write_file", path="textkit/headline.py", content=HEADLINE_CODE)]
    return [tool_use("complete", summary="added textkit/headline.py with headline_slug().")]


def fixer(request: SimRequest) -> list[dict[str, Any]]:
    done = _done(request)
    if "read_file" not in done:
        return [tool_use("read_file", path="textkit/headline.py")]
    if "edit_file" not in done:
        return [
            text("Off by one: the slice keeps four words, the test wants five."),
            tool_use("edit_file", path="textkit/headline.py", old_string="[:4]", new_string="[:5]"),
        ]
    if "run_command" not in done:
        return [tool_use("run_command", command=_unittest("tests.test_headline"), timeout_s=60)]
    return [
        tool_use(
            "complete",
            summary="headline_slug kept four words instead of five; fixed, test_headline passes.",
        )
    ]


def demo_policy() -> ScriptedPolicy:
    return ScriptedPolicy(
        [
            Rule(match="You are the orchestrator", turns=[orchestrator] * TURNS),
            Rule(match="DEMO-SLUG", turns=[slug_worker] * TURNS),
            Rule(match="DEMO-STATS", turns=[stats_worker] * TURNS),
            Rule(match="DEMO-HEADLINE", turns=[headline_worker] * TURNS),
            Rule(match="DEMO-FIXER", turns=[fixer] * TURNS),
        ]
    )
