"""Form fields shared by the new-run and settings dialogs: the model and the run's limits."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QFormLayout, QSpinBox, QWidget

from agentray.engine import DEFAULT_MODEL

if TYPE_CHECKING:
    from .settings import AppSettings

__all__ = ["KNOWN_MODELS", "LimitFields", "model_combo"]

KNOWN_MODELS = (DEFAULT_MODEL, "claude-opus-4-5", "claude-sonnet-4-5", "claude-haiku-4-5")


def model_combo(current: str, parent: QWidget | None = None) -> QComboBox:
    """An editable combo with the known model names (any other name can be typed)."""
    combo = QComboBox(parent)
    combo.setEditable(True)
    for name in dict.fromkeys((current, *KNOWN_MODELS)):
        if name:
            combo.addItem(name)
    combo.setCurrentText(current or DEFAULT_MODEL)
    return combo


def _spin(value: int, low: int, high: int) -> QSpinBox:
    box = QSpinBox()
    box.setRange(low, high)
    box.setValue(value)
    return box


class LimitFields:
    """Spin boxes for max_concurrent, max_agents, max_depth and the budget, from the settings."""

    def __init__(self, settings: AppSettings) -> None:
        self.max_concurrent = _spin(settings.max_concurrent, 1, 64)
        self.max_agents = _spin(settings.max_agents, 1, 500)
        self.max_depth = _spin(settings.max_depth, 1, 5)
        self.budget = QDoubleSpinBox()
        self.budget.setRange(0.01, 10_000.0)
        self.budget.setDecimals(2)
        self.budget.setPrefix("$ ")
        self.budget.setValue(float(settings.budget_usd or 10.0))

    def add_rows(self, form: QFormLayout, labels: tuple[str, str, str, str]) -> None:
        for label, widget in zip(
            labels, (self.max_concurrent, self.max_agents, self.max_depth, self.budget), strict=True
        ):
            form.addRow(label, widget)

    def values(self) -> dict[str, Any]:
        return {
            "max_concurrent": self.max_concurrent.value(),
            "max_agents": self.max_agents.value(),
            "max_depth": self.max_depth.value(),
            "budget_usd": self.budget.value(),
        }

    def set_values(self, limits: dict[str, Any]) -> None:
        for name in ("max_concurrent", "max_agents", "max_depth"):
            if limits.get(name) is not None:
                getattr(self, name).setValue(int(limits[name]))
        if limits.get("budget_usd") is not None:
            self.budget.setValue(float(limits["budget_usd"]))
