"""The pure policy engine (SPEC §3): validate policy documents, resolve the effective policy of a
(project, workload type), and apply it to a submission (fill defaults, check every rule).

Nothing here does I/O. ``resolve_effective`` does the expensive work once (flattening, regex
compilation, quantity parsing) so that the caller can cache its result and ``apply_policy`` stays
well under a millisecond.
"""

from __future__ import annotations

import difflib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache
from typing import Any, Literal, Protocol

import re2
from pydantic import ValidationError

from app.domain import baseline
from app.domain.fields import (
    RULE_KEYS,
    FieldInfo,
    FieldKind,
    catalogue,
    group_paths,
    map_paths,
)
from app.domain.quantity import quantity_value
from app.domain.spec import INT64, SPEC_MODELS, WorkloadType
from app.fieldpath import error_message, field_path

PolicySource = Literal["global", "project"]
# Where a violation comes from: a policy's rule, or a safe default no policy lifted.
ViolationSource = Literal["global", "project", "baseline"]
EffectiveSource = Literal["project", "global", "merged", "none"]

MAX_PATTERN_LENGTH = 1000
MAX_SUGGESTIONS = 50
# A policy covers at most every field of a spec (a few hundred) and some default list items.
MAX_POLICY_VALUES = 10_000
# Pattern rules run on RE2 (google-re2): matching is linear in the value's length, so no pattern
# an administrator writes, e.g. ``(a+)+$``, can backtrack for minutes on a crafted value. RE2 has
# no lookaround or backreferences; such patterns are refused when the policy is written, with the
# same engine and options that later run them. The memory cap bounds huge repetitions.
_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # a refused pattern is the client's 422, not a line on stderr
_RE2_OPTIONS.max_mem = 8 << 20

Number = int | float | Decimal


# --- public result types -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PolicyProblem:
    """One thing wrong with a policy document, e.g. ``rules.compute.gpuDevicesRequest.max``."""

    field: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


class InvalidPolicyError(ValueError):
    """A stored policy no longer compiles (e.g. the spec models changed under it)."""

    def __init__(self, problems: list[PolicyProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))


@dataclass(frozen=True, slots=True)
class Violation:
    """A rule the resolved spec breaks, in words a researcher can act on."""

    field: str
    rule: str
    message: str
    value: Any
    source: ViolationSource

    def to_dict(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "rule": self.rule,
            "message": self.message,
            "value": self.value,
            "source": self.source,
        }


@dataclass(frozen=True, slots=True)
class Resolution:
    """The outcome of applying a policy: the resolved spec, what defaults filled, what failed."""

    spec: dict[str, Any]
    applied_defaults: list[str]
    violations: list[Violation]

    @property
    def ok(self) -> bool:
        return not self.violations

    def to_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "appliedDefaults": list(self.applied_defaults),
            "violations": [v.to_dict() for v in self.violations],
        }


@dataclass(frozen=True, slots=True)
class FieldSources:
    """Which policy a field's default and its rules come from (None: there is none)."""

    default: PolicySource | None
    rules: PolicySource | None

    def to_dict(self) -> dict[str, str | None]:
        return {"default": self.default, "rules": self.rules}


@dataclass(frozen=True, slots=True)
class _Plan:
    """One field's default and compiled rules, ready to apply without further parsing."""

    path: str
    keys: tuple[str, ...]
    kind: FieldKind
    item_key: str | None
    item_defaults: Mapping[str, Any]
    has_default: bool
    default: Any
    # Itemized defaults by item key, normalised with the item model's defaults for comparison.
    default_items: Mapping[str, dict[str, Any]]
    rules_source: PolicySource | None
    required: bool = False
    can_edit: bool = True
    minimum: Number | None = None
    minimum_text: str = ""
    maximum: Number | None = None
    maximum_text: str = ""
    step: int | None = None
    options: frozenset[Any] | None = None
    options_text: str = ""
    pattern: Pattern | None = None
    can_add: bool = True
    locked: frozenset[str] = frozenset()
    allow_unsafe: bool = False

    @property
    def has_checks(self) -> bool:
        return self.rules_source is not None


class Pattern(Protocol):
    """A compiled RE2 pattern (google-re2 ships no type information)."""

    @property
    def pattern(self) -> str: ...

    def fullmatch(self, text: str) -> object | None: ...


@dataclass(frozen=True)
class EffectivePolicy:
    """What applies to a (project, workload type). Compute once, cache, apply many times."""

    workload_type: WorkloadType
    source: EffectiveSource
    defaults: dict[str, Any]
    rules: dict[str, Any]
    fields: Mapping[str, FieldSources]
    _plans: tuple[_Plan, ...] = field(default=(), repr=False, compare=False)
    # The safe defaults in force: those of the type's fields that no rule allowUnsafe lifts.
    _safe: tuple[tuple[str, baseline.Check], ...] = field(default=(), repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "defaults": _clone(self.defaults),
            "rules": _clone(self.rules),
            "fields": {path: s.to_dict() for path, s in self.fields.items()},
        }


# --- small helpers -------------------------------------------------------------------------------


def _clone(value: Any) -> Any:
    """Copy JSON-like data; much faster than ``copy.deepcopy`` and enough for specs."""
    if isinstance(value, dict):
        return {k: _clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_clone(v) for v in value]
    return value


def _show(value: Any) -> str:
    """A value as a researcher would type it in JSON: ``"abc"``, ``4``, ``true``."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


@lru_cache(maxsize=4096)
def _quantity(value: str) -> Decimal | None:
    # Parsing is the slowest step of a check; the same few quantities recur across submissions.
    try:
        return quantity_value(value)
    except ValueError:
        return None


def _numeric(kind: FieldKind, value: Any) -> Number | None:
    """The number to compare for min/max, or None when the value is not one (the spec model
    reports wrong types; the policy engine does not double-report them)."""
    if isinstance(value, bool):
        return None
    if kind == "quantity":
        if isinstance(value, str):
            return _quantity(value)
        if isinstance(value, int | float) and value >= 0:
            return Decimal(str(value))
        return None
    if isinstance(value, int | float):
        return value
    return None


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _suggest(word: str, choices: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _key_of(item: Any, item_key: str) -> Any:
    return item.get(item_key) if isinstance(item, dict) else None


def _normalise_item(item: dict[str, Any], item_defaults: Mapping[str, Any]) -> dict[str, Any]:
    # `{"readOnly": false}` and an omitted readOnly mean the same item.
    return {**item_defaults, **item}


def _items_by_key(
    items: Any, item_key: str, item_defaults: Mapping[str, Any]
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    if isinstance(items, list):
        for item in items:
            key = _key_of(item, item_key)
            if key is not None:
                out[key] = _normalise_item(item, item_defaults)
    return out


# --- flattening policy documents -----------------------------------------------------------------


def _flatten(
    tree: Any,
    *,
    root: str,
    workload_type: WorkloadType,
    problems: list[PolicyProblem],
) -> dict[str, Any]:
    """``{"compute": {"gpuDevicesRequest": x}}`` -> ``{"compute.gpuDevicesRequest": x}``,
    reporting paths that are not fields. ``root`` is ``defaults`` or ``rules``."""
    cat, groups = catalogue(workload_type), group_paths(workload_type)
    out: dict[str, Any] = {}
    if tree is None:
        return out
    if not isinstance(tree, Mapping):
        problems.append(PolicyProblem(root, "must be an object"))
        return out

    def walk(prefix: str, node: Mapping[Any, Any]) -> None:
        for key, value in node.items():
            path = f"{prefix}{key}"
            if path in cat:
                out[path] = value
            elif path in groups:
                if isinstance(value, Mapping):
                    walk(path + ".", value)
                elif value is not None:
                    problems.append(
                        PolicyProblem(
                            f"{root}.{path}", f"{path} is a group of fields: use an object"
                        )
                    )
            else:
                # difflib costs ~0.2 ms a key: a 1 MB document of unknown keys would hold a
                # worker for seconds, so only the first few unknown fields get a suggestion.
                suggest = len(problems) < MAX_SUGGESTIONS
                problems.append(
                    PolicyProblem(
                        f"{root}.{path}",
                        _unknown_field_message(path, workload_type, root, suggest=suggest),
                    )
                )

    walk("", tree)
    return out


def _unknown_field_message(
    path: str, workload_type: WorkloadType, root: str, *, suggest: bool = True
) -> str:
    parent, _, last = path.rpartition(".")
    if root == "rules" and last in RULE_KEYS and parent in group_paths(workload_type):
        # The commonest slip: a rule object on a group (`rules.compute: {required: true}`).
        return f"{parent} is a group of fields, not a field: put rules on its fields"
    message = f"{path!r} is not a field of {workload_type} workloads"
    return message + _suggest(path, list(catalogue(workload_type))) if suggest else message


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    """The inverse of flattening, for showing an effective policy in the spec's shape."""
    out: dict[str, Any] = {}
    for path, value in flat.items():
        node = out
        *parents, last = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = _clone(value)
    return out


# --- compiling rules -----------------------------------------------------------------------------


def _compile_rules(
    info: FieldInfo, rule: Any, *, where: str, problems: list[PolicyProblem]
) -> dict[str, Any]:
    """Check one field's rule object; return the valid parts, compiled, as ``_Plan`` kwargs."""
    out: dict[str, Any] = {}
    if not isinstance(rule, dict):
        problems.append(PolicyProblem(where, 'must be a rule object, e.g. {"required": true}'))
        return out
    allowed = info.rule_keys
    for key, value in rule.items():
        at = f"{where}.{key}"
        if key not in RULE_KEYS:
            hint = ""
            if info.item_fields and any(f.path == key for f in info.item_fields):
                hint = f"; fields inside {info.path} items take no rules of their own"
            problems.append(
                PolicyProblem(
                    at,
                    f"unknown rule {key!r}{hint or _suggest(str(key), RULE_KEYS)} "
                    f"(rules for this field: {', '.join(allowed)})",
                )
            )
            continue
        if key not in allowed:
            problems.append(
                PolicyProblem(
                    at,
                    f"{key!r} does not apply to {_KIND_NAMES[info.kind]} "
                    f"(rules for this field: {', '.join(allowed)})",
                )
            )
            continue
        if key in _FLAGS:
            if type(value) is not bool:
                problems.append(PolicyProblem(at, "must be true or false"))
            else:
                out[_FLAGS[key]] = value
        elif key in ("min", "max"):
            number = _rule_number(info, value)
            if number is None:
                problems.append(PolicyProblem(at, _number_expected(info.kind)))
            else:
                name = "minimum" if key == "min" else "maximum"
                out[name] = number
                out[f"{name}_text"] = str(value)
        elif key == "step":
            if type(value) is not int or value > INT64.hi:
                problems.append(PolicyProblem(at, _WHOLE))
            elif value <= 0:
                problems.append(PolicyProblem(at, "must be greater than 0"))
            elif "min" not in rule:
                problems.append(
                    PolicyProblem(at, "needs min: the allowed values are min, min+step, ...")
                )
            else:
                out["step"] = value
        elif key == "options":
            options = _compile_options(info, value, at=at, problems=problems)
            if options is not None:
                out["options"] = frozenset(options)
                out["options_text"] = ", ".join(_show(o) for o in options)
        elif key == "pattern":
            pattern = _compile_pattern(value, at=at, problems=problems)
            if pattern is not None:
                out["pattern"] = pattern
        elif key == "locked":
            if not isinstance(value, list) or not all(isinstance(k, str) for k in value):
                problems.append(
                    PolicyProblem(at, f"must be a list of {info.item_key} values (item keys)")
                )
            else:
                out["locked"] = frozenset(value)
    low, high = out.get("minimum"), out.get("maximum")
    if low is not None and high is not None and low > high:
        problems.append(
            PolicyProblem(
                f"{where}.min", f"min ({rule['min']}) is greater than max ({rule['max']})"
            )
        )
        out.pop("minimum")
        out.pop("maximum")
    return out


_FLAGS = {
    "required": "required",
    "canEdit": "can_edit",
    "canAdd": "can_add",
    baseline.ALLOW_UNSAFE: "allow_unsafe",
}
# Rule values are stored as JSON (orjson writes 64-bit integers) and compared with spec values,
# which are Kubernetes int32 or int64.
_WHOLE = f"must be a whole number from {INT64.lo} to {INT64.hi}"


def _whole(value: Any) -> bool:
    return type(value) is int and INT64.lo <= value <= INT64.hi


_KIND_NAMES: Mapping[FieldKind, str] = {
    "int": "a whole-number field",
    "float": "a number field",
    "bool": "a true/false field",
    "string": "a string field",
    "quantity": "a quantity field",
    "string-list": "a list of strings",
    "itemized": "an itemized list",
    "map": "a map",
}


def _rule_number(info: FieldInfo, value: Any) -> Number | None:
    if isinstance(value, bool):
        return None
    if info.kind == "int":
        return value if _whole(value) else None
    if info.kind == "float":
        return value if isinstance(value, int | float) and math.isfinite(value) else None
    # quantity: "10Gi" or a plain non-negative number
    if isinstance(value, str):
        return _quantity(value)
    if isinstance(value, int | float) and math.isfinite(value) and value >= 0:
        return Decimal(str(value))
    return None


def _number_expected(kind: FieldKind) -> str:
    return {
        "int": _WHOLE,
        "float": "must be a number",
        "quantity": 'must be a Kubernetes quantity such as "10Gi" or "500m"',
    }.get(kind, "must be a number")


def _compile_options(
    info: FieldInfo, value: Any, *, at: str, problems: list[PolicyProblem]
) -> list[Any] | None:
    if not isinstance(value, list) or not value:
        problems.append(
            PolicyProblem(
                at, 'must be a non-empty list of values or {"value", "displayed"} objects'
            )
        )
        return None
    values: list[Any] = []
    ok = True
    for index, entry in enumerate(value):
        here = f"{at}[{index}]"
        if isinstance(entry, dict):
            extra = set(entry) - {"value", "displayed"}
            if "value" not in entry or extra:
                problems.append(
                    PolicyProblem(here, 'must be a value or an object {"value", "displayed"}')
                )
                ok = False
                continue
            if "displayed" in entry and not isinstance(entry["displayed"], str):
                problems.append(PolicyProblem(f"{here}.displayed", "must be a string"))
                ok = False
            entry = entry["value"]
        if info.kind == "int":
            type_ok = _whole(entry)
        else:
            type_ok = isinstance(entry, str)
        if not type_ok:
            expected = _WHOLE.removeprefix("must be ") if info.kind == "int" else "a string"
            problems.append(PolicyProblem(here, f"must be {expected}, not {_show(entry)}"))
            ok = False
            continue
        if info.options is not None and entry not in info.options:
            problems.append(
                PolicyProblem(
                    here,
                    f"{_show(entry)} is never a valid {info.path}; the field takes "
                    + ", ".join(_show(o) for o in info.options),
                )
            )
            ok = False
            continue
        if entry in values:
            problems.append(PolicyProblem(here, f"{_show(entry)} is listed twice"))
            ok = False
            continue
        values.append(entry)
    return values if ok else None


def compile_pattern(value: str) -> Pattern:
    """Compile a pattern rule with RE2; raise ``re2.error`` when RE2 refuses it."""
    compiled: Pattern = re2.compile(value, options=_RE2_OPTIONS)
    return compiled


def _compile_pattern(value: Any, *, at: str, problems: list[PolicyProblem]) -> Pattern | None:
    if not isinstance(value, str):
        problems.append(PolicyProblem(at, "must be a regular expression (a string)"))
        return None
    if len(value) > MAX_PATTERN_LENGTH:
        problems.append(PolicyProblem(at, f"is too long: at most {MAX_PATTERN_LENGTH} characters"))
        return None
    try:
        return compile_pattern(value)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "syntax error"
        if isinstance(reason, bytes):
            reason = reason.decode("utf-8", "replace")
        problems.append(
            PolicyProblem(
                at,
                f"is not a valid regular expression: {reason} (RE2 syntax: no lookaround "
                "or backreferences)",
            )
        )
        return None


def _build_plans(
    cat: Mapping[str, FieldInfo],
    *,
    defaults: Mapping[str, tuple[Any, PolicySource]],
    rules: Mapping[str, tuple[dict[str, Any], PolicySource]],
) -> tuple[_Plan, ...]:
    plans: list[_Plan] = []
    # Catalogue order keeps violations and applied defaults in the order of the spec.
    for path, info in cat.items():
        has_default = path in defaults and defaults[path][0] is not None
        if not has_default and path not in rules:
            continue
        default = _clone(defaults[path][0]) if has_default else None
        item_defaults = info.item_defaults or {}
        default_items: dict[str, dict[str, Any]] = {}
        if info.kind == "itemized" and info.item_key is not None and has_default:
            default_items = _items_by_key(default, info.item_key, item_defaults)
        compiled, source = rules.get(path, ({}, None))
        plans.append(
            _Plan(
                path=path,
                keys=tuple(path.split(".")),
                kind=info.kind,
                item_key=info.item_key,
                item_defaults=item_defaults,
                has_default=has_default,
                default=default,
                default_items=default_items,
                rules_source=source,
                **compiled,
            )
        )
    return tuple(plans)


# --- applying ------------------------------------------------------------------------------------


def _fill(plan: _Plan, given: Any) -> tuple[Any, bool]:
    """The value after defaults, and whether the default contributed to it."""
    if given is None:
        return _clone(plan.default), True
    if (
        plan.kind == "itemized"
        and plan.item_key is not None
        and isinstance(given, list)
        and isinstance(plan.default, list)
    ):
        present = {_key_of(item, plan.item_key) for item in given}
        missing = [
            _clone(item) for item in plan.default if _key_of(item, plan.item_key) not in present
        ]
        if missing:
            return [*given, *missing], True
        return given, False
    if plan.kind == "map" and isinstance(given, dict) and isinstance(plan.default, dict):
        added = {k: _clone(v) for k, v in plan.default.items() if k not in given}
        if added:
            return {**given, **added}, True
    return given, False


def _same_as_default(plan: _Plan, value: Any) -> bool:
    if plan.kind == "itemized" and plan.item_key is not None:
        return _items_by_key(value, plan.item_key, plan.item_defaults) == plan.default_items
    if plan.kind == "quantity":
        a, b = _numeric("quantity", value), _numeric("quantity", plan.default)
        if a is not None and b is not None:
            return a == b
    return bool(value == plan.default)


def _check(plan: _Plan, *, given: Any, value: Any, out: list[Violation]) -> None:
    source = plan.rules_source
    assert source is not None  # only called for fields with rules
    path = plan.path

    if plan.required and _is_empty(value):
        out.append(Violation(path, "required", "a value is required", value, source))
    if value is None:
        return

    if not plan.can_edit and given is not None and not _same_as_default(plan, value):
        message = (
            f"cannot be changed from the policy's default {_show(plan.default)}"
            if plan.has_default
            else "cannot be set: the policy does not allow editing it"
        )
        out.append(Violation(path, "canEdit", message, given, source))

    if plan.minimum is not None or plan.maximum is not None:
        number = _numeric(plan.kind, value)
        if number is not None:
            if plan.minimum is not None and number < plan.minimum:
                out.append(
                    Violation(path, "min", f"must be at least {plan.minimum_text}", value, source)
                )
            elif plan.maximum is not None and number > plan.maximum:
                out.append(
                    Violation(
                        path, "max", f"must be no greater than {plan.maximum_text}", value, source
                    )
                )
            # step is compiled for int fields only, whose min is an int
            elif (
                plan.step is not None and isinstance(plan.minimum, int) and isinstance(number, int)
            ):
                if (number - plan.minimum) % plan.step:
                    first = plan.minimum
                    out.append(
                        Violation(
                            path,
                            "step",
                            f"must be one of {first}, {first + plan.step}, "
                            f"{first + 2 * plan.step}, ... (steps of {plan.step} from {first})",
                            value,
                            source,
                        )
                    )

    if (
        plan.options is not None
        and isinstance(value, str | int)
        and (isinstance(value, bool) or value not in plan.options)
    ):
        out.append(Violation(path, "options", f"must be one of {plan.options_text}", value, source))

    if (
        plan.pattern is not None
        and isinstance(value, str)
        and plan.pattern.fullmatch(value) is None
    ):
        out.append(
            Violation(
                path,
                "pattern",
                f"must match the pattern {plan.pattern.pattern}",
                value,
                source,
            )
        )

    if plan.item_key is not None and isinstance(value, list):
        if not plan.can_add:
            extra = [
                key
                for item in value
                if (key := _key_of(item, plan.item_key)) not in plan.default_items
            ]
            if extra:
                allowed = ", ".join(_show(k) for k in plan.default_items) or "none"
                out.append(
                    Violation(
                        path,
                        "canAdd",
                        f"cannot add items: {', '.join(_show(k) for k in extra)} "
                        f"not allowed (the policy allows {plan.item_key} {allowed})",
                        extra,
                        source,
                    )
                )
        if plan.locked and isinstance(given, list):
            for item in given:
                key = _key_of(item, plan.item_key)
                if (
                    key in plan.locked
                    and key in plan.default_items
                    and _normalise_item(item, plan.item_defaults) != plan.default_items[key]
                ):
                    out.append(
                        Violation(
                            path,
                            "locked",
                            f"item {_show(key)} is locked by the policy and cannot be changed "
                            f"from {_show(plan.default_items[key])}",
                            item,
                            source,
                        )
                    )


def _run(
    plans: tuple[_Plan, ...],
    submitted: Mapping[str, Any],
    safe: tuple[tuple[str, baseline.Check], ...] = (),
) -> Resolution:
    spec: dict[str, Any] = _clone(submitted)
    applied: list[str] = []
    violations: list[Violation] = []
    for plan in plans:
        # Find the field's parent object, if the submission has one.
        parent: Any = spec
        for key in plan.keys[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
            if parent is None:
                break
        leaf = plan.keys[-1]
        given = parent.get(leaf) if isinstance(parent, dict) else None
        value = given
        if plan.has_default:
            value, filled = _fill(plan, given)
            if filled:
                target = _ensure_parent(spec, plan.keys)
                if target is not None:
                    target[leaf] = value
                    applied.append(plan.path)
                else:  # the submission has a non-object where a group belongs
                    value = given
        if plan.has_checks:
            _check(plan, given=given, value=value, out=violations)
    for path, check in safe:
        refused = check.refused(_value_at(spec, path))
        if refused is not None:
            violations.append(
                Violation(path, "baseline", baseline.refusal(check, path), refused, "baseline")
            )
    return Resolution(spec=spec, applied_defaults=applied, violations=violations)


def _value_at(spec: Mapping[str, Any], path: str) -> Any:
    node: Any = spec
    for key in path.split("."):
        node = node.get(key) if isinstance(node, Mapping) else None
    return node


def _safe_defaults(
    cat: Mapping[str, FieldInfo], rules: Mapping[str, tuple[dict[str, Any], PolicySource]]
) -> tuple[tuple[str, baseline.Check], ...]:
    """The safe defaults of a type's fields that no compiled rule ``allowUnsafe`` lifts."""
    return tuple(
        (path, info.safe_default)
        for path, info in cat.items()
        if info.safe_default is not None
        and not rules.get(path, ({}, None))[0].get("allow_unsafe", False)
    )


def _ensure_parent(spec: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any] | None:
    node = spec
    for key in keys[:-1]:
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        elif not isinstance(child, dict):
            return None
        node = child
    return node


# --- public API ----------------------------------------------------------------------------------


def _layer(
    policy: Mapping[str, Any] | None,
    *,
    source: PolicySource,
    workload_type: WorkloadType,
    problems: list[PolicyProblem],
) -> tuple[dict[str, Any], dict[str, Any]]:
    if policy is None:
        return {}, {}
    found: list[PolicyProblem] = []
    defaults = _flatten(
        policy.get("defaults"), root="defaults", workload_type=workload_type, problems=found
    )
    rules = _flatten(policy.get("rules"), root="rules", workload_type=workload_type, problems=found)
    # Say which policy is broken: with inheritGlobal there are two.
    problems.extend(PolicyProblem(f"{source}.{p.field}", p.message) for p in found)
    return defaults, rules


def resolve_effective(
    workload_type: WorkloadType,
    *,
    global_policy: Mapping[str, Any] | None,
    project_policy: Mapping[str, Any] | None,
    inherit_global: bool,
) -> EffectivePolicy:
    """The policy that applies to a project's workloads of one type (SPEC §1).

    The project's policy if it has one, else the global one, else none; with ``inherit_global``
    a project policy is merged field by field over the global one (the project's default and the
    project's rule object for a field win). Policies are ``{"defaults": ..., "rules": ...}``
    dicts. Raises :class:`InvalidPolicyError` if a policy does not compile, which can only happen
    when the spec models changed after it was validated on write.
    """
    layers: list[tuple[PolicySource, Mapping[str, Any]]] = []
    source: EffectiveSource
    if project_policy is not None and inherit_global and global_policy is not None:
        source = "merged"
        layers = [("global", global_policy), ("project", project_policy)]
    elif project_policy is not None:
        source = "project"
        layers = [("project", project_policy)]
    elif global_policy is not None:
        source = "global"
        layers = [("global", global_policy)]
    else:
        source = "none"

    cat = catalogue(workload_type)
    problems: list[PolicyProblem] = []
    flat_defaults: dict[str, tuple[Any, PolicySource]] = {}
    flat_rules: dict[str, tuple[Any, PolicySource]] = {}
    for layer_source, policy in layers:
        defaults, rules = _layer(
            policy, source=layer_source, workload_type=workload_type, problems=problems
        )
        # Later layers (the project) win field by field.
        for path, value in defaults.items():
            if value is not None:
                flat_defaults[path] = (value, layer_source)
        for path, rule in rules.items():
            flat_rules[path] = (rule, layer_source)

    compiled: dict[str, tuple[dict[str, Any], PolicySource]] = {}
    for path, (rule, rule_source) in flat_rules.items():
        where = f"{rule_source}.rules.{path}"
        compiled[path] = (
            _compile_rules(cat[path], rule, where=where, problems=problems),
            rule_source,
        )
    if problems:
        raise InvalidPolicyError(problems)

    sources = {
        path: FieldSources(
            default=flat_defaults[path][1] if path in flat_defaults else None,
            rules=flat_rules[path][1] if path in flat_rules else None,
        )
        for path in cat
        if path in flat_defaults or path in flat_rules
    }
    return EffectivePolicy(
        workload_type=workload_type,
        source=source,
        defaults=_nest({p: v for p, (v, _) in flat_defaults.items()}),
        rules=_nest({p: r for p, (r, _) in flat_rules.items()}),
        fields=sources,
        _plans=_build_plans(cat, defaults=flat_defaults, rules=compiled),
        _safe=_safe_defaults(cat, compiled),
    )


def apply_policy(
    workload_type: WorkloadType, submitted: Mapping[str, Any], effective: EffectivePolicy
) -> Resolution:
    """Fill what the submission leaves unset from the defaults, then check every rule.

    ``submitted`` is the camelCase spec as the client sent it (``exclude_unset``); a field set
    to null counts as unset. Itemized lists and maps merge by key: the submission's items stay,
    default items it lacks are added. Neither argument is modified. Policy rules only: the spec
    model's own checks (``model_validate``, ``missing_required``) are the caller's to run on the
    resolved spec.
    """
    if effective.workload_type != workload_type:
        raise ValueError(
            f"the effective policy is for {effective.workload_type} workloads, not {workload_type}"
        )
    return _run(effective._plans, submitted, effective._safe)


def check_defaults(effective: EffectivePolicy) -> list[PolicyProblem]:
    """Defaults of an effective policy that break its own rules, or a safe default it does not
    lift (``allowUnsafe``).

    ``validate_policy`` runs this on the policy alone; run it on the merged policy too when a
    project policy inherits the global one, where a project default may break a global rule.
    ``required`` is left out: a rule that the submission must supply a field is not broken by
    a policy that leaves the field without a default.
    """
    return [
        PolicyProblem(
            f"defaults.{v.field}",
            f"the default {_show(v.value)} "
            + (
                f"is not allowed: {v.message}"
                if v.source == "baseline"
                else f"breaks the rule rules.{v.field}.{v.rule}: {v.message}"
            ),
        )
        for v in _run(effective._plans, {}, effective._safe).violations
        if v.rule != "required"
    ]


def validate_policy(
    workload_type: WorkloadType,
    *,
    defaults: Mapping[str, Any] | None,
    rules: Mapping[str, Any] | None,
) -> list[PolicyProblem]:
    """Every problem with a policy document (SPEC §3), for a 422 on write; empty when valid."""
    oversized = [
        PolicyProblem(root, f"has more than {MAX_POLICY_VALUES} values; no policy needs that many")
        for root, tree in (("defaults", defaults), ("rules", rules))
        if _more_values_than(tree, MAX_POLICY_VALUES)
    ]
    if oversized:
        # Checking a 1 MB document of junk field by field costs a worker seconds; say no at once.
        return oversized
    cat, groups = catalogue(workload_type), group_paths(workload_type)
    problems: list[PolicyProblem] = []
    flat_rules = _flatten(rules, root="rules", workload_type=workload_type, problems=problems)
    flat_defaults = _flatten(
        defaults, root="defaults", workload_type=workload_type, problems=problems
    )

    bad_defaults = _check_default_values(
        workload_type, defaults, cat=cat, groups=groups, problems=problems
    )
    _check_default_keys(flat_defaults, cat=cat, problems=problems, bad=bad_defaults)

    # The source is irrelevant here: check_defaults reports problems, not violations.
    compiled: dict[str, tuple[dict[str, Any], PolicySource]] = {
        path: (_compile_rules(cat[path], rule, where=f"rules.{path}", problems=problems), "project")
        for path, rule in flat_rules.items()
    }
    # Check the well-typed defaults against the rules that compiled, so that one mistake does
    # not hide another.
    usable: dict[str, tuple[Any, PolicySource]] = {
        p: (v, "project") for p, v in flat_defaults.items() if p not in bad_defaults
    }
    plans = _build_plans(cat, defaults=usable, rules=compiled)
    effective = EffectivePolicy(
        workload_type=workload_type,
        source="project",
        defaults={},
        rules={},
        fields={},
        _plans=plans,
        _safe=_safe_defaults(cat, compiled),
    )
    problems.extend(check_defaults(effective))
    return problems


def _more_values_than(tree: Any, limit: int) -> bool:
    """Whether ``tree`` holds more than ``limit`` keys and list items; stops counting there."""
    count, stack = 0, [tree]
    while stack:
        node = stack.pop()
        children = node.values() if isinstance(node, Mapping) else node
        if isinstance(node, Mapping | list):
            count += len(node)
            if count > limit:
                return True
            stack.extend(child for child in children if isinstance(child, Mapping | list))
    return False


def _check_default_values(
    workload_type: WorkloadType,
    defaults: Any,
    *,
    cat: Mapping[str, FieldInfo],
    groups: frozenset[str],
    problems: list[PolicyProblem],
) -> set[str]:
    """Type-check defaults with the spec model itself; return the leaf paths that failed."""
    if not isinstance(defaults, Mapping):
        return set()
    bad: set[str] = set()
    try:
        # Strict: "4" is not a default for an int field, even though a lax parse would take it.
        SPEC_MODELS[workload_type].model_validate(defaults, strict=True)
    except ValidationError as exc:
        maps = map_paths(SPEC_MODELS[workload_type])
        for error in exc.errors(include_url=False):
            if error["type"] == "extra_forbidden":
                continue  # _flatten reports unknown fields with a suggestion
            loc = error["loc"]
            names = []
            for part in loc:
                if not isinstance(part, str):
                    break
                names.append(part)
            leaf = ".".join(names)
            in_item = len(names) < len(loc)
            if not in_item and (leaf in groups or not leaf or error["type"] == "missing"):
                # Defaults are a partial spec that the submission completes: a field a group
                # requires (servingPort.container) and cross-field checks of a group
                # (cpuCoreLimit >= cpuCoreRequest) are judged on the resolved spec instead.
                # List items are taken whole, so within them everything counts. A group that
                # is not an object is reported by _flatten.
                continue
            while names and ".".join(names) not in cat:
                names.pop()
            if names:
                bad.add(".".join(names))
            where = field_path(loc, prefix="defaults", maps=maps)
            problems.append(PolicyProblem(where, error_message(error)))
    return bad


def _check_default_keys(
    flat_defaults: Mapping[str, Any],
    *,
    cat: Mapping[str, FieldInfo],
    problems: list[PolicyProblem],
    bad: set[str],
) -> None:
    """Itemized defaults must not repeat a key: merging by key would be ambiguous."""
    for path, value in flat_defaults.items():
        info = cat[path]
        if info.item_key is None or not isinstance(value, list) or path in bad:
            continue
        seen: set[Any] = set()
        for item in value:
            key = _key_of(item, info.item_key)
            if key in seen:
                problems.append(
                    PolicyProblem(
                        f"defaults.{path}", f"{info.item_key} {_show(key)} appears more than once"
                    )
                )
                bad.add(path)
            seen.add(key)
