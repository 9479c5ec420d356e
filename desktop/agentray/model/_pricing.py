"""USD prices per model, read from the dated table ``resources/pricing.json``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from agentray.model._types import Usage

__all__ = ["ModelPrice", "Pricing"]

_PER_MILLION = 1_000_000.0


@dataclass(frozen=True)
class ModelPrice:
    """Prices in USD per million tokens, plus the model's context window in tokens."""

    input: float
    output: float
    cache_write_5m: float
    cache_read: float
    context_window: int

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> ModelPrice:
        inp = float(raw["input"])
        return cls(
            input=inp,
            output=float(raw["output"]),
            # The API's published multipliers, when the table leaves them out.
            cache_write_5m=float(raw.get("cache_write_5m", inp * 1.25)),
            cache_read=float(raw.get("cache_read", inp * 0.1)),
            context_window=int(raw.get("context_window", 200_000)),
        )


class Pricing:
    """Looks up a model's price; dated names (``claude-sonnet-4-5-20250929``) match their family."""

    def __init__(
        self,
        models: dict[str, ModelPrice],
        default: ModelPrice,
        *,
        as_of: str = "",
        source: str = "",
        currency: str = "USD",
    ) -> None:
        self._models = dict(models)
        self.default = default
        self.as_of = as_of
        self.source = source
        self.currency = currency

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Pricing:
        models = {name: ModelPrice.from_dict(v) for name, v in raw.get("models", {}).items()}
        return cls(
            models,
            ModelPrice.from_dict(raw["default"]),
            as_of=str(raw.get("as_of", "")),
            source=str(raw.get("source", "")),
            currency=str(raw.get("currency", "USD")),
        )

    @classmethod
    def load(cls) -> Pricing:
        """The table shipped in the package (``agentray.resources/pricing.json``)."""
        text = files("agentray.resources").joinpath("pricing.json").read_text(encoding="utf-8")
        return cls.from_dict(json.loads(text))

    @property
    def models(self) -> list[str]:
        return sorted(self._models)

    def _match(self, model: str) -> ModelPrice | None:
        if model in self._models:
            return self._models[model]
        # Longest prefix that ends on a "-" boundary, so "claude-opus-4-10" never matches "claude-opus-4-1".
        best: str | None = None
        for name in self._models:
            if model.startswith(name + "-") and (best is None or len(name) > len(best)):
                best = name
        return self._models[best] if best is not None else None

    def is_known(self, model: str) -> bool:
        return self._match(model) is not None

    def price(self, model: str) -> ModelPrice:
        return self._match(model) or self.default

    def context_window(self, model: str) -> int:
        return self.price(model).context_window

    def cost(self, model: str, usage: Usage) -> float:
        p = self.price(model)
        return (
            usage.input_tokens * p.input
            + usage.output_tokens * p.output
            + usage.cache_creation_input_tokens * p.cache_write_5m
            + usage.cache_read_input_tokens * p.cache_read
        ) / _PER_MILLION
