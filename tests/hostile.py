"""Hostile input, drawn from the API's own OpenAPI document, and what must never be stored.

``request_bodies(schema)`` draws documents shaped like a request model (so that they get past
the first field and reach the engine, the renderers and the database) with a value or a key or
two among them that broke things: integers past int32 and int64, NaN and Infinity (``1e309``
parses as one), U+0000 and unpaired surrogates, quantities beyond what Kubernetes holds.
``with_hostile_value(schema)`` goes field by field instead, each with the values that break its
type; ``cursors`` are hand-made keyset cursors. ``out_of_range(engine)`` lists anything stored
that no request should have been able to store.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterator, Mapping
from typing import Any

from hypothesis import strategies as st
from pydantic import ValidationError
from sqlalchemy import Engine, text

from app.domain.fields import catalogue
from app.domain.quantity import quantity_value
from app.domain.spec import INT64, SPEC_MODELS
from app.policies.engine import validate_policy

# --- values ---------------------------------------------------------------------------------

INTS = [
    2**31 - 1,
    2**31,
    -(2**31) - 1,
    2**53 + 1,
    2**63 - 1,
    2**63,
    -(2**63) - 1,
    2**64,
    10**20,
    10**30,
    -1,
    0,
]
FLOATS = [math.inf, -math.inf, math.nan, 1e308, -1e308, 5e-324, 2.0**63, 0.5, -0.0]
TEXT = [
    "\x00",
    "a\x00b",
    "\ud800",
    "x\udfffy",
    "\ud83d",
    "",
    " ",
    "1e28",
    "1e999999999",
    "1e+300",
    "nan",
    "inf",
    "Infinity",
    "-1",
    "9223372036854775808",
    "8Ei",
    "0.0000000001",
    "kube-system",
    "default",
    "system-node-critical",
    "/",
    "../../etc",
    "a" * 300,
    "é" * 64,
    "true",
    "[true]",
]
hostile_text = st.one_of(st.sampled_from(TEXT), st.text(max_size=20))
hostile_numbers = st.one_of(st.sampled_from(INTS), st.sampled_from(FLOATS))
hostile = st.one_of(hostile_text, hostile_numbers, st.booleans(), st.none())
# The values that break a field of a type, and now and then any other.
HOSTILE_BY_KIND: dict[str, st.SearchStrategy[Any]] = {
    "integer": st.one_of(st.sampled_from(INTS), st.sampled_from(FLOATS), hostile),
    "number": st.one_of(st.sampled_from(FLOATS), st.sampled_from(INTS), hostile),
    "string": st.one_of(st.sampled_from(TEXT), hostile),
}
json_values = st.recursive(
    hostile,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(hostile_text, inner, max_size=3)
    ),
    max_leaves=8,
)


def cursor_of(value: Any) -> str:
    raw = json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


cursors = st.one_of(
    st.builds(cursor_of, st.lists(json_values, max_size=3)),
    st.builds(cursor_of, json_values),
    hostile_text,
)

# --- documents shaped by a JSON schema ----------------------------------------------------------


def _resolve(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any]:
    while "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    return schema


def request_bodies(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    """Documents of ``schema``'s shape with, mostly, one or two values or keys made hostile:
    one bad value among good ones is what must fail alone."""
    return _mutated(_valid(schema, defs))


@st.composite
def _mutated(draw: st.DrawFn, documents: st.SearchStrategy[Any]) -> Any:
    document = draw(documents)
    for _ in range(draw(st.integers(0, 2))):
        places = list(_places(document, ()))
        path = draw(st.sampled_from(places))
        if not path:
            return draw(hostile)
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        if isinstance(parent, dict) and draw(st.booleans()):
            parent[draw(hostile_text)] = parent.pop(path[-1])  # a hostile key instead
        else:
            parent[path[-1]] = draw(hostile)
    return document


def _places(value: Any, path: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _places(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _places(item, (*path, index))


def _valid(schema: Mapping[str, Any], defs: Mapping[str, Any]) -> st.SearchStrategy[Any]:
    schema = _resolve(schema, defs)
    if "anyOf" in schema:
        return st.one_of([_valid(s, defs) for s in schema["anyOf"]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "const" in schema:
        return st.just(schema["const"])
    kind = schema.get("type")
    if kind == "object":
        props = schema.get("properties", {})
        if props:
            return _objects(schema, defs)
        values = schema.get("additionalProperties")
        inner = _valid(values, defs) if isinstance(values, dict) else json_values
        return st.dictionaries(st.sampled_from(["team", "app", "example.com/x"]), inner, max_size=3)
    if kind == "array":
        return st.lists(_valid(schema.get("items", {}), defs), max_size=3)
    if kind == "integer":
        lo, hi = schema.get("minimum"), schema.get("maximum")
        return st.integers(None if lo is None else int(lo), None if hi is None else int(hi))
    if kind == "number":
        return st.floats(schema.get("minimum"), schema.get("maximum"), allow_nan=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "string":
        if schema.get("format") == "quantity":
            return st.sampled_from(["1", "500m", "64Gi", "0.5", "7Ei", "1e18"])
        if schema.get("format") == "date-time":
            return st.sampled_from(["2030-01-01T00:00:00Z", "9999-12-31T23:59:59-23:59"])
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True).filter(
                lambda s: len(s) <= schema.get("maxLength", 63)
            )
        return st.sampled_from(["team-a", "team-a", "x", "nvcr.io/x:1"])
    return json_values


# What a spec needs once a policy's defaults are applied, though its model makes it optional.
_NEEDED = {
    "InteractiveSpec": ("image",),
    "TrainingSpec": ("image",),
    "DistributedSpec": ("image", "distributedFramework"),
    "InferenceSpec": ("image", "servingPort"),
}


@st.composite
def _objects(
    draw: st.DrawFn,
    schema: Mapping[str, Any],
    defs: Mapping[str, Any],
    along: tuple[Any, ...] | None = None,
) -> Any:
    # Few optional fields at a time: a document of many random ones nearly always breaks a
    # cross-field rule, and never reaches the engine, the renderers or the database.
    props = schema["properties"]
    required = [*schema.get("required", ()), *_NEEDED.get(schema.get("title", ""), ())]
    optional = sorted(set(props) - set(required))
    most = 3 if along is None else 1
    chosen = (
        draw(st.lists(st.sampled_from(optional), max_size=most, unique=True)) if optional else []
    )
    document = {key: draw(_valid(props[key], defs)) for key in [*required, *chosen]}
    if along:
        document[along[0]] = draw(_along(props[along[0]], defs, along[1:]))
    return document


def leaves(
    schema: Mapping[str, Any], defs: Mapping[str, Any], path: tuple[Any, ...] = ()
) -> list[tuple[tuple[Any, ...], str]]:
    """Every value a document of ``schema`` can hold, as (path, JSON type); list items at 0."""
    schema = _resolve(schema, defs)
    if "anyOf" in schema:
        found = [leaf for option in schema["anyOf"] for leaf in leaves(option, defs, path)]
        return [leaf for leaf in found if leaf[1] != "null"] or found
    kind = schema.get("type")
    if kind == "object" and schema.get("properties"):
        return [
            leaf
            for key, sub in schema["properties"].items()
            for leaf in leaves(sub, defs, (*path, key))
        ]
    if kind == "array":
        return [(path, "array"), *leaves(schema.get("items", {}), defs, (*path, 0))]
    return [(path, str(kind or "any"))]


def _along(
    schema: Mapping[str, Any], defs: Mapping[str, Any], path: tuple[Any, ...]
) -> st.SearchStrategy[Any]:
    """A valid document of ``schema`` that holds ``path``, whose value there is hostile."""
    schema = _resolve(schema, defs)
    if not path:
        kinds = [_resolve(o, defs).get("type") for o in schema.get("anyOf", [schema])]
        return st.one_of([HOSTILE_BY_KIND.get(str(k), hostile) for k in kinds if k != "null"])
    if "anyOf" in schema:
        options = [
            o for o in schema["anyOf"] if _resolve(o, defs).get("type") in ("object", "array")
        ]
        return st.one_of([_along(o, defs, path) for o in options])
    if schema.get("type") == "array":
        return st.builds(
            lambda item, rest: [item, *rest],
            _along(schema["items"], defs, path[1:]),
            st.lists(_valid(schema["items"], defs), max_size=1),
        )
    return _objects(schema, defs, path)


def with_hostile_value(
    schema: Mapping[str, Any], defs: Mapping[str, Any]
) -> st.SearchStrategy[Any]:
    """Valid documents but for one value, the same as the document's leaves go: every field of
    a request model meets every hostile value of its type."""
    paths = [path for path, _ in leaves(schema, defs)]
    return st.sampled_from(paths).flatmap(lambda path: _along(schema, defs, path))


# --- policies: the nesting of the spec, rule objects at the leaves ------------------------------

_NUMBERS = st.one_of(st.integers(-10, 10), st.sampled_from(INTS), st.sampled_from(FLOATS))
_RULE_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "min": st.one_of(_NUMBERS, st.sampled_from(TEXT)),
    "max": st.one_of(_NUMBERS, st.sampled_from(TEXT)),
    "step": _NUMBERS,
    "options": st.lists(st.one_of(_NUMBERS, hostile_text, st.just({"value": "\x00"})), max_size=3),
    "pattern": st.one_of(hostile_text, st.sampled_from(["nvcr\\.io/.*", "(a+)+$", "\\ud800"])),
    "locked": st.lists(hostile_text, max_size=2),
}


@st.composite
def policy_documents(draw: st.DrawFn, spec_schema: st.SearchStrategy[Any]) -> dict[str, Any]:
    """A training policy: defaults of the spec's shape, and rule objects on real field paths,
    each key one the field takes (mostly) with a value of the right kind (mostly)."""
    fields = catalogue("training")
    rules: dict[str, Any] = {}
    for path in draw(st.lists(st.sampled_from(sorted(fields)), max_size=3, unique=True)):
        node = rules
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        keys = st.one_of(st.sampled_from(fields[path].rule_keys), hostile_text)
        rule: dict[str, Any] = {}
        for key in draw(st.lists(keys, max_size=3, unique=True)):
            rule[key] = draw(st.one_of(_RULE_VALUES.get(key, st.booleans()), hostile))
        node[leaf] = rule
    document: dict[str, Any] = {"rules": rules}
    if draw(st.booleans()):
        document["defaults"] = draw(spec_schema)
    return document


def dumps(document: Any) -> bytes:
    """JSON as a hostile client writes it: NaN and Infinity as Python's tokens, lone surrogates
    as escapes (both of which Python's JSON parser then reads back)."""
    return json.dumps(document).encode()


# --- what must never be stored -------------------------------------------------------------------


def _numbers(value: Any) -> Iterator[int | float]:
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _numbers(item)
    elif isinstance(value, list):
        for item in value:
            yield from _numbers(item)


def out_of_range(engine: Engine) -> list[str]:
    """What the database holds that no request should have stored: specs their own models
    refuse, quantities beyond Kubernetes', policies that do not validate, numbers in JSON
    beyond int64 or not finite, namespaces Kubernetes owns."""
    found: list[str] = []
    with engine.connect() as conn:
        workloads = conn.execute(
            text("SELECT id, type, spec, submitted_spec, manifests FROM workloads")
        )
        for ident, kind, spec, submitted, manifests in workloads:
            for label, document in (("spec", spec), ("submittedSpec", submitted)):
                try:
                    SPEC_MODELS[kind].model_validate(document)
                except ValidationError as exc:
                    found.append(f"workload {ident} {label}: {exc.errors()[0]['msg']}")
            for number in _numbers([spec, submitted, manifests]):
                if not math.isfinite(number) or not INT64.lo <= number <= INT64.hi:
                    found.append(f"workload {ident}: the number {number!r}")
        for name, namespace, quota in conn.execute(
            text("SELECT name, namespace, quota FROM projects")
        ):
            if namespace == "default" or namespace.startswith("kube-"):
                found.append(f"project {name}: namespace {namespace}")
            for resource, amounts in quota.items():
                for field, quantity in amounts.items():
                    if quantity is not None:
                        try:
                            quantity_value(quantity)
                        except ValueError as exc:
                            found.append(f"project {name}: quota {resource}.{field} {exc}")
        for ident, kind, defaults, rules in conn.execute(
            text("SELECT id, workload_type, defaults, rules FROM policies")
        ):
            problems = validate_policy(kind, defaults=defaults, rules=rules)
            found += [f"policy {ident}: {p.field} {p.message}" for p in problems]
    return found
