"""What every value a client sends must be before anything stores, renders or writes it back:
text without U+0000 (PostgreSQL's text and jsonb refuse it) or unpaired UTF-16 surrogates (not
Unicode: UTF-8, orjson and PostgreSQL refuse them), numbers finite (JSON has no NaN or Infinity,
yet Python's parser reads ``NaN``, ``Infinity`` and ``1e309``). Pure: checked once for a whole
request (``app.deps.Authorize``), so that no model, engine or repository meets them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from typing import Any

import orjson

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


def plainly_storable(raw: bytes) -> bool:
    """Whether a JSON body surely holds nothing :func:`problems` would find, without walking it:
    orjson refuses NaN, Infinity, numbers past a double and unpaired surrogates, so a body it
    reads that has no NUL escape is storable (a few microseconds, against tens for the walk)."""
    if b"\\u0000" in raw:
        return False
    try:
        orjson.loads(raw)
    except orjson.JSONDecodeError:
        return False
    return True


NOT_FINITE = "must be a finite number (JSON has no NaN or Infinity; 1e309 is past a double)"


def problems(document: Any, root: str = "") -> list[dict[str, str]]:
    """``{field, message}`` for every string (key or value) and number in a JSON document that
    cannot be stored, ``field`` its path under ``root`` (``spec.labels["a"]``, ``args[2]``)."""
    found = []
    for path, value, is_key in _leaves(document, root):
        if isinstance(value, str):
            problem = text_problem(value)
            if problem is not None:
                found.append({"field": path or "body", "message": _as_key(problem, is_key)})
        elif isinstance(value, float) and not math.isfinite(value):
            found.append({"field": path or "body", "message": NOT_FINITE})
    return found


def _as_key(message: str, is_key: bool) -> str:
    return f"key: {message}" if is_key else message


def _leaves(document: Any, root: str) -> Iterator[tuple[str, Any, bool]]:
    # Iterative: a body may nest as deep as the JSON parser allows, deeper than Python recurses.
    stack: list[tuple[str, Any]] = [(root, document)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, Mapping):
            children = [(_child(path, key), key, value) for key, value in node.items()]
            for here, key, _ in children:
                yield here, key, True
            stack.extend((here, value) for here, _, value in reversed(children))
        elif isinstance(node, list):
            stack.extend((f"{path}[{i}]", node[i]) for i in reversed(range(len(node))))
        else:
            yield path, node, False


def _child(path: str, key: Any) -> str:
    text = str(key)
    if text.isidentifier():
        return f"{path}.{text}" if path else text
    # ASCII escapes: the key may itself be what cannot be written out.
    return f"{path}[{json.dumps(text)}]"


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
