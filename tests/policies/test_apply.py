"""Applying an effective policy: defaults fill and merge, every rule is checked (SPEC §3)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from app.domain.spec import WorkloadType
from app.policies.engine import (
    EffectivePolicy,
    Resolution,
    apply_policy,
    resolve_effective,
)

GPU = "compute.gpuDevicesRequest"


def _effective(
    defaults: dict[str, Any] | None = None,
    rules: dict[str, Any] | None = None,
    workload_type: WorkloadType = "training",
) -> EffectivePolicy:
    return resolve_effective(
        workload_type,
        global_policy={"defaults": defaults or {}, "rules": rules or {}},
        project_policy=None,
        inherit_global=False,
    )


def _apply(
    submitted: dict[str, Any],
    *,
    defaults: dict[str, Any] | None = None,
    rules: dict[str, Any] | None = None,
    workload_type: WorkloadType = "training",
) -> Resolution:
    effective = _effective(defaults, rules, workload_type)
    return apply_policy(workload_type, submitted, effective)


def _nested(path: str, value: Any) -> dict[str, Any]:
    *parents, leaf = path.split(".")
    tree: dict[str, Any] = {leaf: value}
    for part in reversed(parents):
        tree = {part: tree}
    return tree


def _broken(resolution: Resolution) -> list[tuple[str, str]]:
    return [(v.field, v.rule) for v in resolution.violations]


# --- rules, by rule kind and value type ----------------------------------------------------------

# (path, rule object, submitted value (None: not submitted), broken rule or None)
RULE_CASES: list[tuple[str, dict[str, Any], Any, str | None]] = [
    # required, for every kind of value
    ("image", {"required": True}, None, "required"),
    ("image", {"required": True}, "", "required"),
    ("image", {"required": True}, "nvcr.io/x", None),
    (GPU, {"required": True}, 0, None),  # 0 GPUs is a value
    ("compute.largeShmRequest", {"required": True}, False, None),  # so is false
    ("compute.largeShmRequest", {"required": True}, None, "required"),
    ("nodePools", {"required": True}, [], "required"),
    ("labels", {"required": True}, {"a": "b"}, None),
    ("environmentVariables", {"required": True}, None, "required"),
    # min / max on int, inclusive
    (GPU, {"max": 4}, 4, None),
    (GPU, {"max": 4}, 5, "max"),
    (GPU, {"min": 1}, 1, None),
    (GPU, {"min": 1}, 0, "min"),
    # min / max on float
    ("compute.cpuCoreRequest", {"max": 2}, 2.0, None),
    ("compute.cpuCoreRequest", {"max": 2}, 2.5, "max"),
    ("compute.cpuCoreRequest", {"min": 0.5}, 0.25, "min"),
    # min / max on quantities, compared numerically: 1G < 1Gi < 2G
    ("compute.cpuMemoryRequest", {"min": "1Gi"}, "1G", "min"),
    ("compute.cpuMemoryRequest", {"min": "1Gi"}, "1Gi", None),
    ("compute.cpuMemoryRequest", {"min": "1Gi"}, "2G", None),
    ("compute.cpuMemoryRequest", {"max": "1Gi"}, "2G", "max"),
    ("compute.cpuMemoryRequest", {"max": "1Gi"}, "1024Mi", None),
    ("compute.cpuMemoryRequest", {"max": "1Gi"}, "1G", None),
    ("compute.cpuMemoryRequest", {"max": "1Gi"}, "1073741825", "max"),
    ("compute.cpuMemoryRequest", {"max": 1000000000}, "1Gi", "max"),
    ("compute.gpuMemoryRequest", {"min": "500Mi", "max": "40Gi"}, "80Gi", "max"),
    # a quantity field given as a plain number of bytes: compared with the rule numerically
    ("compute.cpuMemoryRequest", {"max": "8Gi"}, 8589934592, None),
    ("compute.cpuMemoryRequest", {"max": "8Gi"}, 8589934593, "max"),
    ("compute.cpuMemoryRequest", {"min": 1024}, 1023, "min"),
    ("compute.cpuMemoryRequest", {"min": 1024}, 1024.0, None),
    ("compute.cpuMemoryRequest", {"min": "1Ki"}, 0, "min"),
    # not a quantity at all: the spec model reports it, not the policy
    ("compute.cpuMemoryRequest", {"min": "1Ki"}, -5, None),
    ("compute.cpuMemoryRequest", {"min": "1Ki"}, -0.5, None),
    ("compute.cpuMemoryRequest", {"max": "8Gi"}, True, None),
    ("compute.cpuMemoryRequest", {"max": "8Gi"}, "lots", None),
    (GPU, {"max": 4}, True, None),
    (GPU, {"max": 4}, "8", None),
    # step on int: allowed values are min, min+step, ...
    (GPU, {"min": 2, "step": 2}, 2, None),
    (GPU, {"min": 2, "step": 2}, 6, None),
    (GPU, {"min": 2, "step": 2}, 5, "step"),
    (GPU, {"min": 1, "step": 4}, 9, None),
    (GPU, {"min": 2, "step": 2}, 0, "min"),  # below min: reported once, as min
    # options on string and int, bare or {value, displayed}
    ("imagePullPolicy", {"options": ["Always"]}, "Always", None),
    ("imagePullPolicy", {"options": ["Always"]}, "Never", "options"),
    ("priorityClass", {"options": [{"value": "low", "displayed": "Low"}]}, "low", None),
    ("priorityClass", {"options": [{"value": "low", "displayed": "Low"}]}, "high", "options"),
    (GPU, {"options": [0, 1, 2, 4, 8]}, 4, None),
    (GPU, {"options": [0, 1, 2, 4, 8]}, 3, "options"),
    # pattern: the whole value must match
    ("image", {"pattern": r"nvcr\.io/.+"}, "nvcr.io/nvidia/pytorch", None),
    ("image", {"pattern": r"nvcr\.io/.+"}, "docker.io/evil/nvcr.io/x", "pattern"),
    ("image", {"pattern": r"nvcr\.io"}, "nvcr.io/nvidia/pytorch", "pattern"),
    ("image", {"pattern": "a|b"}, "ab", "pattern"),
    ("workingDir", {"pattern": "/workspace(/.*)?"}, "/workspace/src", None),
    # canEdit false with no default: the field may not be set at all
    ("security.allowPrivilegeEscalation", {"canEdit": False}, True, "canEdit"),
    ("security.allowPrivilegeEscalation", {"canEdit": False}, None, None),
    ("command", {"canEdit": False}, ["sh"], "canEdit"),
    # rules on fields of a nested spec
    ("masterSpec.compute.gpuDevicesRequest", {"max": 1}, 2, "max"),
]


@pytest.mark.parametrize(("path", "rule", "value", "broken"), RULE_CASES)
def test_rule(path: str, rule: dict[str, Any], value: Any, broken: str | None) -> None:
    submitted = {} if value is None else _nested(path, value)
    resolution = _apply(submitted, rules=_nested(path, rule), workload_type="distributed")
    assert _broken(resolution) == ([(path, broken)] if broken else [])


# canEdit against a default: (path, default, submitted (None: not submitted), broken?)
CAN_EDIT_CASES: list[tuple[str, Any, Any, bool]] = [
    (GPU, 1, None, False),
    (GPU, 1, 1, False),
    (GPU, 1, 2, True),
    ("compute.cpuCoreRequest", 1.0, 1, False),
    ("compute.cpuMemoryRequest", "1Gi", "1024Mi", False),  # same quantity, other spelling
    ("compute.cpuMemoryRequest", "1Gi", "1G", True),
    ("compute.cpuMemoryRequest", "1Gi", "2Gi", True),
    # a string field is compared as text, even when both read as the same quantity
    ("nodeType", "1k", "1000", True),
    ("security.runAsNonRoot", True, False, True),
    ("security.runAsNonRoot", True, True, False),
    ("image", "nvcr.io/a", "nvcr.io/b", True),
    ("nodePools", ["a", "b"], ["b", "a"], True),
    ("labels", {"team": "x"}, {"team": "x"}, False),
    ("labels", {"team": "x"}, {"other": "y"}, True),
    ("environmentVariables", [{"name": "A", "value": "1"}], [{"name": "A", "value": "1"}], False),
    ("environmentVariables", [{"name": "A", "value": "1"}], [{"name": "A", "value": "2"}], True),
    ("environmentVariables", [{"name": "A", "value": "1"}], [{"name": "B"}], True),
    # an omitted item field equals its model default
    (
        "storage.pvc",
        [{"claimName": "d", "path": "/d", "readOnly": False}],
        [{"claimName": "d", "path": "/d"}],
        False,
    ),
]


@pytest.mark.parametrize(("path", "default", "value", "broken"), CAN_EDIT_CASES)
def test_can_edit_false(path: str, default: Any, value: Any, broken: bool) -> None:
    submitted = {} if value is None else _nested(path, value)
    resolution = _apply(
        submitted, defaults=_nested(path, default), rules=_nested(path, {"canEdit": False})
    )
    assert _broken(resolution) == ([(path, "canEdit")] if broken else [])
    if broken:
        (violation,) = resolution.violations
        assert violation.value == value
        assert "cannot be changed from the policy's default" in violation.message


def test_violation_reads_as_in_the_spec() -> None:
    resolution = _apply(
        {"compute": {"gpuDevicesRequest": 8}}, rules={"compute": {"gpuDevicesRequest": {"max": 4}}}
    )
    assert [v.to_dict() for v in resolution.violations] == [
        {
            "field": "compute.gpuDevicesRequest",
            "rule": "max",
            "message": "must be no greater than 4",
            "value": 8,
            "source": "global",
        }
    ]


@pytest.mark.parametrize(
    ("rule", "value", "message"),
    [
        ({"min": 1}, 0, "must be at least 1"),
        ({"min": 0, "step": 2}, 3, "must be one of 0, 2, 4, ..."),
        ({"options": [1, {"value": 2, "displayed": "two"}]}, 3, "must be one of 1, 2"),
    ],
)
def test_messages_say_what_to_do(rule: dict[str, Any], value: int, message: str) -> None:
    (violation,) = _apply(_nested(GPU, value), rules=_nested(GPU, rule)).violations
    assert violation.message.startswith(message)


def test_every_violation_is_returned() -> None:
    resolution = _apply(
        {
            "image": "docker.io/x",
            "compute": {"gpuDevicesRequest": 9, "cpuMemoryRequest": "100Gi"},
            "imagePullPolicy": "Never",
        },
        rules={
            "image": {"pattern": r"nvcr\.io/.+"},
            "compute": {"gpuDevicesRequest": {"max": 8}, "cpuMemoryRequest": {"max": "64Gi"}},
            "imagePullPolicy": {"options": ["Always", "IfNotPresent"]},
            "nodeType": {"required": True},
        },
    )
    assert sorted(_broken(resolution)) == [
        ("compute.cpuMemoryRequest", "max"),
        (GPU, "max"),
        ("image", "pattern"),
        ("imagePullPolicy", "options"),
        ("nodeType", "required"),
    ]


def test_rules_check_the_value_after_defaults() -> None:
    # A default that the rule accepts satisfies `required`; the rule still judges the value.
    resolution = _apply(
        {},
        defaults={"image": "nvcr.io/base"},
        rules={"image": {"required": True, "pattern": r"nvcr\.io/.+"}},
    )
    assert resolution.ok
    assert resolution.spec["image"] == "nvcr.io/base"


# --- defaults ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "default", "submitted", "resolved"),
    [
        # scalars and plain lists are taken whole
        (GPU, 1, None, 1),
        (GPU, 1, 4, 4),
        (GPU, 1, 0, 0),
        ("compute.largeShmRequest", True, False, False),
        ("command", ["python", "train.py"], ["bash"], ["bash"]),
        ("nodePools", ["a100"], None, ["a100"]),
        ("nodePools", ["a100"], [], []),
        # maps merge by key; the submission's value wins
        ("labels", {"team": "nlp", "tier": "gold"}, {"team": "cv"}, {"team": "cv", "tier": "gold"}),
        ("annotations", {"a": "1"}, None, {"a": "1"}),
    ],
)
def test_defaults_fill_unset_fields(path: str, default: Any, submitted: Any, resolved: Any) -> None:
    resolution = _apply(
        {} if submitted is None else _nested(path, submitted), defaults=_nested(path, default)
    )
    assert resolution.spec == _nested(path, resolved)
    assert resolution.applied_defaults == ([path] if resolved != submitted else [])


ITEMIZED = [
    ("environmentVariables", "name", {"value": "v"}),
    ("storage.pvc", "claimName", {"path": "/mnt"}),
    ("storage.hostPath", "name", {"path": "/host", "mountPath": "/mnt"}),
    ("tolerations", "key", {"operator": "Exists"}),
    ("ports", "name", {"container": 8080}),
    ("compute.extendedResources", "resource", {"quantity": "1"}),
]


@pytest.mark.parametrize(("path", "key", "rest"), ITEMIZED)
def test_itemized_lists_merge_by_key(path: str, key: str, rest: dict[str, Any]) -> None:
    default = [{key: "a", **rest}, {key: "b", **rest}]
    mine = {key: "b", **rest, "extra": "mine"}  # overrides the default item "b"
    submitted = [{key: "c", **rest}, mine]
    resolution = _apply(_nested(path, submitted), defaults=_nested(path, default))
    node: Any = resolution.spec
    for part in path.split("."):
        node = node[part]
    assert [item[key] for item in node] == ["c", "b", "a"]
    assert node[1] == mine  # the submission's item is kept as sent
    assert resolution.applied_defaults == [path]


@pytest.mark.parametrize(("path", "key", "rest"), ITEMIZED)
def test_itemized_default_items_already_present_apply_nothing(
    path: str, key: str, rest: dict[str, Any]
) -> None:
    submitted = [{key: "a", **rest}]
    resolution = _apply(_nested(path, submitted), defaults=_nested(path, [{key: "a", **rest}]))
    assert resolution.spec == _nested(path, submitted)
    assert resolution.applied_defaults == []


def test_groups_are_created_for_defaults_and_siblings_kept() -> None:
    resolution = _apply(
        {"compute": {"cpuCoreRequest": 2.0}, "image": "x"},
        defaults={"compute": {"gpuDevicesRequest": 1}, "security": {"runAsNonRoot": True}},
    )
    assert resolution.spec == {
        "image": "x",
        "compute": {"cpuCoreRequest": 2.0, "gpuDevicesRequest": 1},
        "security": {"runAsNonRoot": True},
    }
    assert resolution.applied_defaults == [GPU, "security.runAsNonRoot"]


def test_null_counts_as_unset() -> None:
    resolution = _apply(
        {"compute": None, "image": None},
        defaults={"compute": {"gpuDevicesRequest": 1}, "image": "nvcr.io/base"},
    )
    assert resolution.spec == {"compute": {"gpuDevicesRequest": 1}, "image": "nvcr.io/base"}


def test_master_spec_defaults_for_distributed() -> None:
    resolution = _apply(
        {"distributedFramework": "PyTorch", "masterSpec": {"image": "m"}},
        defaults={"masterSpec": {"compute": {"gpuDevicesRequest": 1}}, "numWorkers": 2},
        workload_type="distributed",
    )
    assert resolution.spec["masterSpec"] == {"image": "m", "compute": {"gpuDevicesRequest": 1}}
    assert resolution.applied_defaults == ["numWorkers", "masterSpec.compute.gpuDevicesRequest"]


# --- itemized rules ------------------------------------------------------------------------------

PVC_DEFAULT = [{"claimName": "datasets", "path": "/data", "readOnly": True}]


@pytest.mark.parametrize(
    ("submitted", "broken"),
    [
        (None, []),
        ([{"claimName": "datasets", "path": "/data", "readOnly": True}], []),
        ([{"claimName": "scratch", "path": "/scratch"}], [("storage.pvc", "canAdd")]),
    ],
)
def test_can_add_false(submitted: Any, broken: list[tuple[str, str]]) -> None:
    resolution = _apply(
        {} if submitted is None else {"storage": {"pvc": submitted}},
        defaults={"storage": {"pvc": PVC_DEFAULT}},
        rules={"storage": {"pvc": {"canAdd": False}}},
    )
    assert _broken(resolution) == broken
    if broken:
        assert resolution.violations[0].value == ["scratch"]
        assert '"scratch"' in resolution.violations[0].message


def test_can_add_false_without_defaults_allows_no_items() -> None:
    resolution = _apply(
        {"tolerations": [{"key": "gpu", "operator": "Exists"}]},
        rules={"tolerations": {"canAdd": False}},
    )
    assert _broken(resolution) == [("tolerations", "canAdd")]
    assert resolution.violations[0].message == (
        'cannot add items: "gpu" not allowed (the policy allows key none)'
    )


def test_can_add_false_names_the_items_the_policy_allows() -> None:
    resolution = _apply(
        {"tolerations": [{"key": "spot", "operator": "Exists"}]},
        defaults={"tolerations": [{"key": "gpu", "operator": "Exists"}]},
        rules={"tolerations": {"canAdd": False}},
    )
    assert [v.message for v in resolution.violations] == [
        'cannot add items: "spot" not allowed (the policy allows key "gpu")'
    ]


def test_a_map_submitted_as_something_else_is_left_to_the_spec_model() -> None:
    resolution = _apply({"labels": "team=nlp"}, defaults={"labels": {"owner": "x"}})
    assert resolution.spec == {"labels": "team=nlp"}
    assert resolution.applied_defaults == []


@pytest.mark.parametrize(
    ("submitted", "broken"),
    [
        # not submitted, or submitted without the locked item: the default item is merged in
        (None, False),
        ([{"claimName": "scratch", "path": "/scratch"}], False),
        ([{"claimName": "datasets", "path": "/data", "readOnly": True}], False),
        ([{"claimName": "datasets", "path": "/data"}], True),  # readOnly false != true
        ([{"claimName": "datasets", "path": "/elsewhere", "readOnly": True}], True),
    ],
)
def test_locked_items(submitted: Any, broken: bool) -> None:
    resolution = _apply(
        {} if submitted is None else {"storage": {"pvc": submitted}},
        defaults={"storage": {"pvc": PVC_DEFAULT}},
        rules={"storage": {"pvc": {"locked": ["datasets"]}}},
    )
    assert _broken(resolution) == ([("storage.pvc", "locked")] if broken else [])
    pvcs = {p["claimName"]: p for p in resolution.spec["storage"]["pvc"]}
    if not broken:
        assert pvcs["datasets"] == PVC_DEFAULT[0]  # the locked item is always there


def test_unlocked_items_may_change() -> None:
    resolution = _apply(
        {"environmentVariables": [{"name": "B", "value": "mine"}]},
        defaults={
            "environmentVariables": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
        },
        rules={"environmentVariables": {"locked": ["A"]}},
    )
    assert resolution.ok
    assert resolution.spec["environmentVariables"] == [
        {"name": "B", "value": "mine"},
        {"name": "A", "value": "1"},
    ]


# --- purity --------------------------------------------------------------------------------------


def test_inputs_are_not_modified_and_results_do_not_alias_the_policy() -> None:
    policy: dict[str, Any] = {
        "defaults": {
            "labels": {"team": "x"},
            "environmentVariables": [{"name": "A", "value": "1"}],
            "compute": {"gpuDevicesRequest": 1},
            "nodePools": ["a100"],
        },
        "rules": {"compute": {"gpuDevicesRequest": {"max": 4}}},
    }
    submitted = {"labels": {"mine": "y"}, "environmentVariables": [{"name": "B"}], "compute": {}}
    policy_before, submitted_before = copy.deepcopy(policy), copy.deepcopy(submitted)

    effective = resolve_effective(
        "training", global_policy=policy, project_policy=None, inherit_global=False
    )
    first = apply_policy("training", submitted, effective)
    assert submitted == submitted_before
    assert policy == policy_before

    # Whoever holds the resolved spec may change it without changing the next submission's.
    first.spec["labels"]["team"] = "hacked"
    first.spec["environmentVariables"][1]["value"] = "hacked"
    first.spec["compute"]["gpuDevicesRequest"] = 99
    first.spec["nodePools"].append("cpu-only")
    policy["defaults"]["labels"]["team"] = "changed after resolving"
    second = apply_policy("training", submitted, effective)
    assert second.spec == {
        "labels": {"mine": "y", "team": "x"},
        "environmentVariables": [{"name": "B"}, {"name": "A", "value": "1"}],
        "compute": {"gpuDevicesRequest": 1},
        "nodePools": ["a100"],
    }


def test_policy_of_another_type_is_refused() -> None:
    with pytest.raises(ValueError, match="training"):
        apply_policy("inference", {}, _effective())
    with pytest.raises(ValueError, match="inference"):
        apply_policy("training", {}, _effective(workload_type="inference"))


def test_resolution_serialises() -> None:
    resolution = _apply({}, defaults={"image": "x"}, rules={"nodeType": {"required": True}})
    assert resolution.to_dict() == {
        "spec": {"image": "x"},
        "appliedDefaults": ["image"],
        "violations": [
            {
                "field": "nodeType",
                "rule": "required",
                "message": "a value is required",
                "value": None,
                "source": "global",
            }
        ],
    }


# --- safe defaults (the baseline) -----------------------------------------------------------------

HOST_PATH = [{"name": "root", "path": "/", "mountPath": "/host"}]


def test_the_baseline_refuses_what_no_rule_allows_even_a_rule_on_the_field() -> None:
    """A host path is refused with no policy, and with a rule on the field that does not say
    ``allowUnsafe``; only ``allowUnsafe: true`` lifts the baseline."""
    submitted = {"image": "x", "storage": {"hostPath": HOST_PATH}}
    for rules in ({}, {"storage": {"hostPath": {"canEdit": True}}}):
        refused = _apply(submitted, rules=rules)
        assert _broken(refused) == [("storage.hostPath", "baseline")], rules
        (violation,) = refused.violations
        assert (violation.value, violation.source) == (HOST_PATH, "baseline")
    allowed = _apply(submitted, rules={"storage": {"hostPath": {"allowUnsafe": True}}})
    assert allowed.violations == []
    assert _apply({"image": "x"}).violations == []  # nothing unsafe asked for
