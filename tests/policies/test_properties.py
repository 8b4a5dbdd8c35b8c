"""Properties of applying a policy, over generated submissions and policies.

The rule oracle below is written independently of the engine (plain, slow, obvious code) so that
"the engine accepts" can be checked against what the rules say.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from app.domain.quantity import quantity_value
from app.policies.engine import apply_policy, resolve_effective

IMAGES = ["nvcr.io/nvidia/pytorch:24.05", "nvcr.io/a", "docker.io/library/python", "ghcr.io/x/y"]
QUANTITIES = ["500M", "1G", "1Gi", "1073741824", "2G", "4Gi", "64Gi"]
PATTERNS = [r"nvcr\.io/.+", r"(nvcr|ghcr)\.io/.+", r".*", r"nvcr"]
ENV_NAMES = ["A", "B", "C", "D"]
CLAIMS = ["data", "ckpt", "scratch"]
# What an omitted item field means, per the spec models (written out here on purpose).
ITEM_DEFAULTS: dict[str, dict[str, Any]] = {
    "environmentVariables": {"value": ""},
    "storage.pvc": {"readOnly": False},
}
ITEM_KEYS = {"environmentVariables": "name", "storage.pvc": "claimName"}


def _optional(strategies: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries({}, optional=strategies)


def _unique_items(
    keys: list[str], make: st.SearchStrategy[dict[str, Any]], key: str
) -> st.SearchStrategy[list[dict[str, Any]]]:
    return st.lists(
        st.tuples(st.sampled_from(keys), make).map(lambda kv: {key: kv[0], **kv[1]}),
        max_size=len(keys),
        unique_by=lambda item: item[key],
    )


env_vars = _unique_items(ENV_NAMES, _optional({"value": st.sampled_from(["1", "2"])}), "name")
pvcs = _unique_items(
    CLAIMS,
    st.fixed_dictionaries(
        {"path": st.sampled_from(["/data", "/mnt"])}, optional={"readOnly": st.booleans()}
    ),
    "claimName",
)

# Partial training specs, as a client (or a policy's defaults) would write them.
specs = _optional(
    {
        "image": st.sampled_from(IMAGES),
        "imagePullPolicy": st.sampled_from(["Always", "IfNotPresent", "Never"]),
        "compute": _optional(
            {
                "gpuDevicesRequest": st.integers(0, 16),
                "cpuMemoryRequest": st.sampled_from(QUANTITIES),
                "cpuCoreRequest": st.sampled_from([0.5, 1.0, 2.0, 8.0]),
            }
        ),
        "environmentVariables": env_vars,
        "storage": _optional({"pvc": pvcs}),
        "labels": st.dictionaries(st.sampled_from(["a", "b", "c"]), st.sampled_from(["x", "y"])),
        "nodePools": st.lists(st.sampled_from(["a100", "h100"]), max_size=2),
        "security": _optional({"runAsNonRoot": st.booleans()}),
    }
)


@st.composite
def bounds(draw: st.DrawFn, values: st.SearchStrategy[Any], *, key: Any = None) -> dict[str, Any]:
    low, high = sorted(draw(st.lists(values, min_size=2, max_size=2)), key=key)
    rule: dict[str, Any] = {}
    if draw(st.booleans()):
        rule["min"] = low
    if draw(st.booleans()):
        rule["max"] = high
    return rule


@st.composite
def gpu_rules(draw: st.DrawFn) -> dict[str, Any]:
    rule = draw(bounds(st.integers(0, 16)))
    if "min" in rule and draw(st.booleans()):
        rule["step"] = draw(st.integers(1, 4))
    if draw(st.booleans()):
        rule["options"] = draw(
            st.lists(
                st.integers(0, 16) | st.integers(0, 16).map(lambda v: {"value": v}),
                min_size=1,
                max_size=4,
                unique_by=lambda o: o["value"] if isinstance(o, dict) else o,
            )
        )
    return rule


common = {"required": st.booleans(), "canEdit": st.booleans()}
rules = _optional(
    {
        "image": _optional({**common, "pattern": st.sampled_from(PATTERNS)}),
        "imagePullPolicy": _optional(
            {
                **common,
                "options": st.lists(
                    st.sampled_from(["Always", "IfNotPresent", "Never"]), min_size=1, unique=True
                ),
            }
        ),
        "compute": _optional(
            {
                "gpuDevicesRequest": st.tuples(gpu_rules(), _optional(common)).map(
                    lambda r: {**r[0], **r[1]}
                ),
                "cpuMemoryRequest": bounds(st.sampled_from(QUANTITIES), key=quantity_value),
                "cpuCoreRequest": bounds(st.sampled_from([0.25, 1.0, 4.0])),
            }
        ),
        "environmentVariables": _optional(
            {**common, "canAdd": st.booleans(), "locked": st.lists(st.sampled_from(ENV_NAMES))}
        ),
        "storage": _optional(
            {
                "pvc": _optional(
                    {**common, "canAdd": st.booleans(), "locked": st.lists(st.sampled_from(CLAIMS))}
                )
            }
        ),
        "labels": _optional(common),
        "nodePools": _optional(common),
        "security": _optional({"runAsNonRoot": _optional(common)}),
    }
)
policies = st.fixed_dictionaries({"defaults": specs, "rules": rules})


def _get(tree: Any, path: str) -> Any:
    for part in path.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree


def _rules(tree: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    """Flatten rules: a rule object is a dict whose keys are rule names (or empty)."""
    out: dict[str, dict[str, Any]] = {}
    for key, value in tree.items():
        path = prefix + key
        if path in ("compute", "storage", "security"):
            out.update(_rules(value, path + "."))
        else:
            out[path] = value
    return out


def _by_key(path: str, items: list[dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    return {i[ITEM_KEYS[path]]: {**ITEM_DEFAULTS[path], **i} for i in items or []}


def _number(path: str, value: Any) -> Any:
    return quantity_value(value) if path == "compute.cpuMemoryRequest" else value


def _oracle(policy: dict[str, Any], submitted: dict[str, Any], spec: dict[str, Any]) -> set[Any]:
    """(field, rule) pairs the resolved spec breaks, straight from SPEC §3."""
    broken: set[tuple[str, str]] = set()
    for path, rule in _rules(policy["rules"]).items():
        value, sent = _get(spec, path), _get(submitted, path)
        default = _get(policy["defaults"], path)
        if rule.get("required") and value in (None, "", [], {}):
            broken.add((path, "required"))
        if value is None:
            continue
        if rule.get("canEdit") is False and sent is not None:
            if path in ITEM_KEYS:
                same = _by_key(path, value) == _by_key(path, default)
            elif path == "compute.cpuMemoryRequest":
                same = default is not None and _number(path, value) == _number(path, default)
            else:
                same = value == default
            if not same:
                broken.add((path, "canEdit"))
        if "min" in rule and _number(path, value) < _number(path, rule["min"]):
            broken.add((path, "min"))
        if "max" in rule and _number(path, value) > _number(path, rule["max"]):
            broken.add((path, "max"))
        if "step" in rule and (value < rule["min"] or (value - rule["min"]) % rule["step"]):
            broken.add((path, "step"))
        if "options" in rule:
            allowed = [o["value"] if isinstance(o, dict) else o for o in rule["options"]]
            if value not in allowed:
                broken.add((path, "options"))
        if "pattern" in rule and not re.fullmatch(rule["pattern"], value):
            broken.add((path, "pattern"))
        if rule.get("canAdd") is False and set(_by_key(path, value)) - set(_by_key(path, default)):
            broken.add((path, "canAdd"))
        for key in rule.get("locked", []):
            mine, theirs = _by_key(path, sent).get(key), _by_key(path, default).get(key)
            if mine is not None and theirs is not None and mine != theirs:
                broken.add((path, "locked"))
    return broken


def _resolve(policy: dict[str, Any]) -> Any:
    return resolve_effective(
        "training", global_policy=policy, project_policy=None, inherit_global=False
    )


@settings(max_examples=300)
@given(policy=policies, submitted=specs)
def test_applying_defaults_twice_equals_applying_once(
    policy: dict[str, Any], submitted: dict[str, Any]
) -> None:
    effective = _resolve(policy)
    once = apply_policy("training", submitted, effective)
    twice = apply_policy("training", once.spec, effective)
    assert twice.spec == once.spec
    assert twice.applied_defaults == []


@settings(max_examples=300)
@given(policy=policies, submitted=specs)
def test_accepted_specs_satisfy_every_rule_and_violations_are_real(
    policy: dict[str, Any], submitted: dict[str, Any]
) -> None:
    before = copy.deepcopy(submitted)
    resolution = apply_policy("training", submitted, _resolve(policy))
    assert submitted == before

    broken = _oracle(policy, submitted, resolution.spec)
    reported = {(v.field, v.rule) for v in resolution.violations}
    assert reported <= broken  # no false alarm
    assert bool(reported) == bool(broken)  # accepted exactly when every rule holds


@settings(max_examples=200)
@given(policy=policies, submitted=specs)
def test_applied_defaults_name_exactly_the_fields_the_policy_changed(
    policy: dict[str, Any], submitted: dict[str, Any]
) -> None:
    resolution = apply_policy("training", submitted, _resolve(policy))
    for path in _rules({**policy["defaults"]}):
        changed = _get(resolution.spec, path) != _get(submitted, path)
        assert (path in resolution.applied_defaults) == changed, path
        if not changed:
            continue
        sent, default = _get(submitted, path), _get(policy["defaults"], path)
        if sent is None:
            assert _get(resolution.spec, path) == default
        else:  # only keyed collections are merged; the submission's entries are kept
            assert path in (*ITEM_KEYS, "labels")
            if isinstance(sent, dict):
                assert _get(resolution.spec, path) == {**default, **sent}
            else:
                assert _get(resolution.spec, path)[: len(sent)] == sent
