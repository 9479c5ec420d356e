"""Dataclass tools: a name, a JSON schema, a handler; plus the light input validation that turns
the model's bad input (wrong types, unknown keys, huge arguments) into an is_error result."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from agentray.errors import ToolError

__all__ = ["MAX_INPUT_CHARS", "Tool", "prop", "validate_input"]

MAX_INPUT_CHARS = 2_000_000

Handler = Callable[[Any, Any, dict[str, Any]], Awaitable[dict[str, Any]]]


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    properties: dict[str, dict[str, Any]]
    handler: Handler
    required: tuple[str, ...] = ()
    # a waiting tool releases the agent's concurrency slot while it waits
    waits: bool = False

    def schema(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": {
                "type": "object",
                "properties": self.properties,
                "required": list(self.required),
                "additionalProperties": False,
            },
        }


def prop(kind: str, description: str, **extra: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": kind, "description": description}
    if kind == "array" and "items" not in extra:
        spec["items"] = {"type": "string"}
    spec.update(extra)
    return spec


_PY_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
}


def validate_input(tool: Tool, raw: Any) -> dict[str, Any]:
    """Check the model's input against the tool's schema; raise ToolError saying what is wrong."""
    if not isinstance(raw, dict):
        raise ToolError(f"{tool.name}: input must be a JSON object")
    if len(json.dumps(raw, default=str)) > MAX_INPUT_CHARS:
        raise ToolError(f"{tool.name}: input is larger than {MAX_INPUT_CHARS} characters")
    unknown = sorted(set(raw) - set(tool.properties))
    if unknown:
        raise ToolError(
            f"{tool.name}: unknown input {', '.join(unknown)}; "
            f"accepted: {', '.join(tool.properties) or 'none'}"
        )
    missing = [name for name in tool.required if raw.get(name) is None]
    if missing:
        raise ToolError(f"{tool.name}: missing required input {', '.join(missing)}")
    for name, value in raw.items():
        if value is None:
            continue
        spec = tool.properties[name]
        kind = spec.get("type", "string")
        accepted = _PY_TYPES.get(kind, (object,))
        # bool is an int in Python; the schema does not mean it that way
        if isinstance(value, bool) and kind in ("integer", "number"):
            raise ToolError(f"{tool.name}: {name} must be a {kind}, not a boolean")
        if not isinstance(value, accepted):
            raise ToolError(f"{tool.name}: {name} must be a {kind}, got {type(value).__name__}")
        if kind == "array":
            item_kind = spec.get("items", {}).get("type", "string")
            item_types = _PY_TYPES.get(item_kind, (object,))
            if not all(isinstance(item, item_types) for item in value):  # type: ignore[attr-defined]
                raise ToolError(f"{tool.name}: every item of {name} must be a {item_kind}")
        if "enum" in spec and value not in spec["enum"]:
            raise ToolError(
                f"{tool.name}: {name} must be one of {', '.join(map(str, spec['enum']))}"
            )
        if kind in ("integer", "number"):
            if "minimum" in spec and value < spec["minimum"]:
                raise ToolError(f"{tool.name}: {name} must be >= {spec['minimum']}")
            if "maximum" in spec and value > spec["maximum"]:
                raise ToolError(f"{tool.name}: {name} must be <= {spec['maximum']}")
    return raw
