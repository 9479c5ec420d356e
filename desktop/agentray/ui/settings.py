"""The tray's preferences over QSettings (organization "Agentray", application "agentray").

Lists and presets are stored as JSON strings: QSettings hands a one-element list back as a plain
string on some backends. The API key is never stored here (keyring or ANTHROPIC_API_KEY only).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings

from agentray.checkpoints import DEFAULT_KEEP_DAYS
from agentray.engine import DEFAULT_MODEL, RunConfig

__all__ = [
    "APPLICATION",
    "DEFAULT_LIMITS",
    "MAX_RECENT",
    "ORGANIZATION",
    "AppSettings",
]

ORGANIZATION = "Agentray"
APPLICATION = "agentray"
MAX_RECENT = 8
DEFAULT_LIMITS: dict[str, Any] = {
    "max_concurrent": 6,
    "max_agents": 30,
    "max_depth": 2,
    "budget_usd": 10.0,
}


def _as_bool(value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


class AppSettings:
    """Typed access to the preferences. ``path``: an explicit .ini file (tests); otherwise the
    per-user IniFormat location (tests may redirect it with ``QSettings.setPath``)."""

    def __init__(self, path: Path | str | None = None) -> None:
        if path is not None:
            self.qsettings = QSettings(str(path), QSettings.Format.IniFormat)
        else:
            self.qsettings = QSettings(
                QSettings.Format.IniFormat, QSettings.Scope.UserScope, ORGANIZATION, APPLICATION
            )

    # ------------------------------------------------------------------ low level
    def _get_json(self, key: str, default: Any) -> Any:
        raw = self.qsettings.value(key)
        if raw is None or raw == "":
            return default
        try:
            return json.loads(str(raw))
        except ValueError:
            return default

    def _set_json(self, key: str, value: Any) -> None:
        self.qsettings.setValue(key, json.dumps(value))
        self.qsettings.sync()

    def _set(self, key: str, value: Any) -> None:
        self.qsettings.setValue(key, value)
        self.qsettings.sync()

    def file_name(self) -> str:
        return self.qsettings.fileName()

    # ------------------------------------------------------------------ model and limits
    @property
    def default_model(self) -> str:
        value = self.qsettings.value("default_model")
        return str(value) if value else DEFAULT_MODEL

    @default_model.setter
    def default_model(self, value: str) -> None:
        self._set("default_model", value.strip() or DEFAULT_MODEL)

    @property
    def limits(self) -> dict[str, Any]:
        """max_concurrent, max_agents, max_depth (int) and budget_usd (float, or None: no cap)."""
        stored = self._get_json("limits", {})
        merged = dict(DEFAULT_LIMITS)
        if isinstance(stored, dict):
            merged.update({k: v for k, v in stored.items() if k in DEFAULT_LIMITS})
        return merged

    @limits.setter
    def limits(self, value: dict[str, Any]) -> None:
        merged = dict(self.limits)
        merged.update({k: v for k, v in value.items() if k in DEFAULT_LIMITS})
        self._set_json("limits", merged)

    @property
    def max_concurrent(self) -> int:
        return int(self.limits["max_concurrent"])

    @property
    def max_agents(self) -> int:
        return int(self.limits["max_agents"])

    @property
    def max_depth(self) -> int:
        return int(self.limits["max_depth"])

    @property
    def budget_usd(self) -> float | None:
        value = self.limits["budget_usd"]
        return None if value is None else float(value)

    # ------------------------------------------------------------------ flags
    @property
    def notifications_muted(self) -> bool:
        return _as_bool(self.qsettings.value("notifications_muted"), False)

    @notifications_muted.setter
    def notifications_muted(self, value: bool) -> None:
        self._set("notifications_muted", bool(value))

    @property
    def escalation_reminder(self) -> bool:
        """Remind once (after ``ui.notifications.REMINDER_S``) of a question left unanswered."""
        return _as_bool(self.qsettings.value("escalation_reminder"), True)

    @escalation_reminder.setter
    def escalation_reminder(self, value: bool) -> None:
        self._set("escalation_reminder", bool(value))

    @property
    def start_at_login(self) -> bool:
        return _as_bool(self.qsettings.value("start_at_login"), False)

    @start_at_login.setter
    def start_at_login(self, value: bool) -> None:
        self._set("start_at_login", bool(value))

    @property
    def keep_days(self) -> int:
        """Runs that ended more than this many days ago are forgotten with their snapshots."""
        try:
            value = int(str(self.qsettings.value("keep_days", DEFAULT_KEEP_DAYS)))
        except (TypeError, ValueError):
            return DEFAULT_KEEP_DAYS
        return value if value >= 1 else DEFAULT_KEEP_DAYS

    @keep_days.setter
    def keep_days(self, value: int) -> None:
        self._set("keep_days", max(1, int(value)))

    @property
    def run_unsandboxed(self) -> bool:
        """The person agreed that, where no command sandbox exists, runs go without one. Only a
        yes is remembered: a no cancels that one start, and the next one asks again."""
        return _as_bool(self.qsettings.value("run_without_sandbox"), False)

    @run_unsandboxed.setter
    def run_unsandboxed(self, value: bool) -> None:
        self._set("run_without_sandbox", bool(value))

    @property
    def welcome_shown(self) -> bool:
        return _as_bool(self.qsettings.value("welcome_shown"), False)

    @welcome_shown.setter
    def welcome_shown(self, value: bool) -> None:
        self._set("welcome_shown", bool(value))

    # ------------------------------------------------------------------ recents
    @property
    def recent_goals(self) -> list[str]:
        value = self._get_json("recent_goals", [])
        return [str(v) for v in value][:MAX_RECENT] if isinstance(value, list) else []

    @property
    def recent_folders(self) -> list[str]:
        value = self._get_json("recent_folders", [])
        return [str(v) for v in value][:MAX_RECENT] if isinstance(value, list) else []

    def add_recent_goal(self, goal: str) -> None:
        goal = goal.strip()
        if goal:
            items = [goal] + [g for g in self.recent_goals if g != goal]
            self._set_json("recent_goals", items[:MAX_RECENT])

    def add_recent_folder(self, folder: str | Path) -> None:
        text = str(folder).strip()
        if text:
            items = [text] + [f for f in self.recent_folders if f != text]
            self._set_json("recent_folders", items[:MAX_RECENT])

    @property
    def presets(self) -> list[dict[str, Any]]:
        """Each: name, goal, workspace, build_command (str|None), model, limits (dict),
        allow_network (bool; absent in presets saved before it existed)."""
        value = self._get_json("presets", [])
        if not isinstance(value, list):
            return []
        return [p for p in value if isinstance(p, dict) and p.get("name")]

    def get_preset(self, name: str) -> dict[str, Any] | None:
        return next((p for p in self.presets if p["name"] == name), None)

    def save_preset(
        self,
        name: str,
        goal: str,
        workspace: str,
        build_command: str | None = None,
        model: str | None = None,
        limits: dict[str, Any] | None = None,
        *,
        allow_network: bool = False,
    ) -> dict[str, Any]:
        """Add or replace (by name) a preset; returns it."""
        name = name.strip()
        if not name:
            raise ValueError("a preset needs a name")
        preset: dict[str, Any] = {
            "name": name,
            "goal": goal,
            "workspace": str(workspace),
            "build_command": build_command or None,
            "model": model or self.default_model,
            "limits": {**self.limits, **(limits or {})},
            "allow_network": bool(allow_network),
        }
        others = [p for p in self.presets if p["name"] != name]
        self._set_json("presets", [*others, preset])
        return preset

    def run_config(
        self,
        goal: str,
        workspace: str | Path,
        build_command: str | None = None,
        model: str | None = None,
        limits: dict[str, Any] | None = None,
        *,
        allow_network: bool = False,
    ) -> RunConfig:
        """A RunConfig with the default model and limits, overridden by the arguments. Its
        commands run in the sandbox (the controller decides when there is none)."""
        merged = {**self.limits, **(limits or {})}
        budget = merged.get("budget_usd")
        return RunConfig(
            goal=goal,
            workspace=str(workspace),
            build_command=build_command or None,
            model=model or self.default_model,
            max_concurrent=int(merged["max_concurrent"]),
            max_agents=int(merged["max_agents"]),
            max_depth=int(merged["max_depth"]),
            budget_usd=None if budget is None else float(budget),
            allow_network=allow_network,
        )

    def preset_config(self, preset: dict[str, Any]) -> RunConfig:
        return self.run_config(
            preset.get("goal", ""),
            preset.get("workspace", ""),
            preset.get("build_command"),
            preset.get("model"),
            preset.get("limits"),
            allow_network=bool(preset.get("allow_network", False)),
        )
