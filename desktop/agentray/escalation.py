"""What the engine asks the person, and how they answer: one ``Escalation`` type, options that
carry ids, and ``Answer``s that name an option by id (never by its label, so renaming a button
changes no behaviour).

    Escalation            id, run, agent, kind, question, context, options
    ├── EscalationKind    question | approval | blocker | build | budget
    └── EscalationOption  option_id + label (+ denies: what ``--on-escalation deny`` picks)
    Answer                option_id (or None: a free reply) + text + who answered

The model sees ``{"answer": <text>, "choice": <label or null>}`` (PRODUCT.md); the engine acts on
``option_id``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = [
    "APPROVAL_OPTIONS",
    "BLOCKER_OPTIONS_FAILED",
    "BLOCKER_OPTIONS_WAITING",
    "BUDGET_OPTIONS",
    "BUILD_OPTIONS",
    "Answer",
    "AnsweredBy",
    "Escalation",
    "EscalationKind",
    "EscalationOption",
    "OptionId",
    "model_options",
    "options_from_json",
    "options_to_json",
]


class EscalationKind(StrEnum):
    QUESTION = "question"  # the escalate tool, with options to choose from
    APPROVAL = "approval"  # the escalate tool without options: approve or deny (or reply)
    BLOCKER = "blocker"  # an agent's blocker after its one mitigation
    BUILD = "build"  # the build failed max_fix_rounds times in a row
    BUDGET = "budget"  # the run reached its budget


class AnsweredBy(StrEnum):
    HUMAN = "human"
    POLICY_DENY = "policy:deny"  # --on-escalation deny
    POLICY_FAIL = "policy:fail"  # --on-escalation fail
    ENGINE = "engine"  # expired when the run was resumed


class OptionId(StrEnum):
    """The engine's own options; a model's options get ids "1", "2", … in their order."""

    APPROVE = "approve"
    DENY = "deny"
    CONTINUE = "continue"
    CANCEL_AGENT = "cancel_agent"
    RETRY = "retry"
    SKIP = "skip"
    KEEP_FIXING = "keep_fixing"
    FINISH_AS_FAILURE = "finish_as_failure"
    RAISE_BUDGET = "raise_budget"
    STOP_RUN = "stop_run"


@dataclass(frozen=True)
class EscalationOption:
    option_id: str
    label: str
    denies: bool = False  # the conservative "no" (what --on-escalation deny picks)


def _option(option_id: OptionId, label: str, *, denies: bool = False) -> EscalationOption:
    return EscalationOption(option_id.value, label, denies)


APPROVAL_OPTIONS = (
    _option(OptionId.APPROVE, "Approve"),
    _option(OptionId.DENY, "Deny", denies=True),
)
BLOCKER_OPTIONS_WAITING = (
    _option(OptionId.CONTINUE, "Continue with my answer"),
    _option(OptionId.CANCEL_AGENT, "Cancel the agent", denies=True),
    _option(OptionId.STOP_RUN, "Stop the run"),
)
BLOCKER_OPTIONS_FAILED = (
    _option(OptionId.RETRY, "Retry with my answer"),
    _option(OptionId.SKIP, "Skip it", denies=True),
    _option(OptionId.STOP_RUN, "Stop the run"),
)
BUILD_OPTIONS = (
    _option(OptionId.KEEP_FIXING, "Keep fixing"),
    _option(OptionId.FINISH_AS_FAILURE, "Finish as failure", denies=True),
    _option(OptionId.STOP_RUN, "Stop the run"),
)
BUDGET_OPTIONS = (
    _option(OptionId.RAISE_BUDGET, "Raise the budget"),
    _option(OptionId.STOP_RUN, "Stop the run", denies=True),
)

# A model writes its own options; which one says "no" can only be read from its words.
_DENY_WORDS = (
    r"^(no|deny|denied|reject|decline)\b",
    r"^(skip|cancel|leave|don'?t|do not)\b",
    r"finish as failure",
    r"^stop\b",
)


def model_options(labels: Iterable[str]) -> tuple[EscalationOption, ...]:
    """The escalate tool's options, ids "1", "2", …; none at all make it an approval."""
    texts = [str(label) for label in labels]
    if not texts:
        return APPROVAL_OPTIONS
    denying = next(
        (
            i
            for pattern in _DENY_WORDS
            for i, text in enumerate(texts)
            if re.search(pattern, text.strip(), re.I)
        ),
        None,
    )
    return tuple(
        EscalationOption(str(i + 1), text, denies=i == denying) for i, text in enumerate(texts)
    )


def options_to_json(options: Iterable[EscalationOption]) -> list[dict[str, Any]]:
    return [{"id": o.option_id, "label": o.label, "denies": o.denies} for o in options]


def options_from_json(value: Any) -> tuple[EscalationOption, ...]:
    """Journaled options: ``[{"id", "label", "denies"}]``, or plain labels (journals before ids)."""
    items = list(value or ())
    if items and all(isinstance(item, str) for item in items):
        return model_options(items)
    return tuple(
        EscalationOption(str(item["id"]), str(item["label"]), bool(item.get("denies", False)))
        for item in items
        if isinstance(item, dict) and "id" in item and "label" in item
    )


@dataclass(frozen=True)
class Escalation:
    escalation_id: str
    run_id: str
    agent_id: str
    kind: EscalationKind
    question: str
    context: str
    options: tuple[EscalationOption, ...]
    created_at: float = 0.0
    agent_title: str = ""  # who asks, for the person (filled where known)

    def option(self, option_id: str | None) -> EscalationOption | None:
        return next((o for o in self.options if o.option_id == option_id), None)

    @property
    def deny_option(self) -> EscalationOption | None:
        return next((o for o in self.options if o.denies), None)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(o.label for o in self.options)


@dataclass(frozen=True)
class Answer:
    """``option_id`` None is a free reply (``text`` only)."""

    option_id: str | None
    text: str = ""
    answered_by: AnsweredBy = AnsweredBy.HUMAN

    def for_model(self, escalation: Escalation) -> dict[str, Any]:
        """The escalate tool's result: the answer text and the chosen option's label."""
        option = escalation.option(self.option_id)
        text = self.text.strip() or (option.label if option is not None else "(no answer)")
        return {"answer": text, "choice": option.label if option is not None else None}
