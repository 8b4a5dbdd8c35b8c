"""Field paths in error answers, in one syntax: ``spec.environmentVariables[0].name``,
``spec.labels["team"]``. Pure: every place that turns a pydantic error location into a path
for a user goes through :func:`field_path`, and its message through :func:`error_message`."""

from __future__ import annotations

import json
from collections.abc import Container, Iterable, Mapping
from typing import Any

KEY_MARK = "[key]"  # pydantic's last loc element when a map's key, not its value, failed


def _is_label(part: str) -> bool:
    # Pydantic names its validator steps and union members in ``loc``
    # ("function-after[_check(), str]", "[key]"): they mean nothing to a user.
    return "[" in part or part.startswith("function-")


def field_path(
    loc: Iterable[int | str], *, prefix: str = "", maps: Container[str] = frozenset()
) -> str:
    """``loc`` as a path under ``prefix``: list indexes as ``[0]``, the keys of a map field as
    ``["key"]``. ``maps`` holds the map fields' paths (dotted, without indexes or prefix)."""
    out, schema_path, in_map = prefix, "", False
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif in_map:
            out += f"[{json.dumps(part)}]"
            in_map = False
        elif not _is_label(part):
            out += f".{part}" if out else part
            schema_path = f"{schema_path}.{part}" if schema_path else part
            in_map = schema_path in maps
    return out


def error_message(error: Mapping[str, Any]) -> str:
    """A pydantic error's message as the API words it."""
    kind = error.get("type")
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        return "unknown field"
    message = str(error.get("msg", "invalid")).removeprefix("Value error, ")
    loc = error.get("loc") or ()
    return f"key: {message}" if loc and loc[-1] == KEY_MARK else message
