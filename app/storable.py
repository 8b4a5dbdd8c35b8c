"""What every value a client sends must be before anything stores, renders or writes it back:
text without U+0000 (PostgreSQL's text and jsonb refuse it) or unpaired UTF-16 surrogates (not
Unicode: UTF-8, orjson and PostgreSQL refuse them), numbers finite (JSON has no NaN or Infinity,
yet Python's parser reads ``NaN``, ``Infinity`` and ``1e309``). Pure: checked once for a whole
request (``app.deps.storable_input``), so that no model, engine or repository meets them.
"""

from __future__ import annotations

import json
import math
from collections import deque
from typing import Any

NUL = "\x00"
REPLACEMENT = "\ufffd"


def text_problem(text: str) -> str | None:
    """Why ``text`` cannot be stored, or None."""
    if NUL in text:
        return "must not contain the NUL character (U+0000)"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "must not contain unpaired UTF-16 surrogates (\\ud800-\\udfff): they are not text"
    return None


NOT_FINITE = "must be a finite number (JSON has no NaN or Infinity; 1e309 is past a double)"


def problems(document: Any, root: str = "") -> list[dict[str, str]]:
    """``{field, message}`` for every string (key or value) and number in a JSON document that
    cannot be stored, ``field`` its path under ``root`` (``spec.labels["a"]``, ``args[2]``)."""
    if _clean(document):
        return []
    found: list[dict[str, str]] = []
    if not isinstance(document, dict | list):
        problem = _problem(document)
        return [{"field": root or "body", "message": problem}] if problem else []
    # Iterative: a body may nest as deep as the JSON parser allows, deeper than Python recurses.
    # Paths are kept as links to the parent's and written out only for what is refused.
    queue: deque[tuple[Any, _Link]] = deque([(document, None)])
    while queue:
        node, link = queue.popleft()
        is_map = isinstance(node, dict)
        for key, value in node.items() if is_map else enumerate(node):
            if is_map and (problem := _problem(key)):
                found.append({"field": _path((link, key), root), "message": f"key: {problem}"})
            if isinstance(value, dict | list):
                queue.append((value, (link, key)))
            elif problem := _problem(value):
                found.append({"field": _path((link, key), root), "message": problem})
    return found


def _problem(value: Any) -> str | None:
    if isinstance(value, str):
        return text_problem(value)
    if isinstance(value, float) and not math.isfinite(value):
        return NOT_FINITE
    return None


_Link = tuple[Any, Any] | None  # (the parent's link, the key or index here)


def _clean(document: Any) -> bool:
    # The common case at C speed: the json encoder refuses NaN and Infinity, writes unpaired
    # surrogates that UTF-8 then refuses, and escapes NUL (a false alarm on a literal "\\u0000"
    # only costs the exact walk).
    try:
        text = json.dumps(document, ensure_ascii=False, allow_nan=False)
        text.encode("utf-8")
    except (ValueError, UnicodeEncodeError, RecursionError):
        return False
    return "\\u0000" not in text


def _path(link: _Link, root: str) -> str:
    parts: list[Any] = []
    while link is not None:
        link, key = link
        parts.append(key)
    path = root
    for key in reversed(parts):
        if isinstance(key, int):
            path += f"[{key}]"
        elif str(key).isidentifier():
            path += f".{key}" if path else str(key)
        else:
            # ASCII escapes: the key may itself be what cannot be written out.
            path += f"[{json.dumps(str(key))}]"
    return path or "body"


def scrub(value: Any) -> Any:
    """``value`` with what cannot be stored replaced by U+FFFD: for records that must be kept
    whatever the request held (the audit log)."""
    if isinstance(value, str):
        if text_problem(value) is None:
            return value
        # Through UTF-16: an unpaired surrogate decodes as U+FFFD, a split pair as its character.
        utf16 = value.replace(NUL, REPLACEMENT).encode("utf-16-le", "surrogatepass")
        return utf16.decode("utf-16-le", "replace")
    if isinstance(value, dict):
        return {scrub(k): scrub(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
