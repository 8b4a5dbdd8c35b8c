"""Policy documents are validated on write, listing every problem (SPEC §3)."""

from __future__ import annotations

from typing import Any

import pytest

from app.domain.spec import WorkloadType
from app.policies.engine import MAX_PATTERN_LENGTH, validate_policy

GPU = "compute.gpuDevicesRequest"


def _problems(
    defaults: dict[str, Any] | None = None,
    rules: dict[str, Any] | None = None,
    workload_type: WorkloadType = "training",
) -> dict[str, str]:
    found = validate_policy(workload_type, defaults=defaults or {}, rules=rules or {})
    return {p.field: p.message for p in found}


def _gpu_rule(**rule: Any) -> dict[str, Any]:
    return {"compute": {"gpuDevicesRequest": rule}}


# (defaults, rules, field reported, words the message must contain)
BAD_POLICIES: list[tuple[str, dict[str, Any], dict[str, Any], str, str]] = [
    # unknown field paths
    ("unknown rule path", {}, {"gpus": {"max": 1}}, "rules.gpus", "not a field of training"),
    (
        "typo suggests the field",
        {},
        {"compute": {"gpuDeviceRequest": {"max": 1}}},
        "rules.compute.gpuDeviceRequest",
        f"did you mean '{GPU}'",
    ),
    ("unknown default path", {"imagge": "x"}, {}, "defaults.imagge", "did you mean 'image'"),
    (
        "field of another workload type",
        {},
        {"distributedFramework": {"required": True}},
        "rules.distributedFramework",
        "not a field of training",
    ),
    (
        "snake_case is not the wire name",
        {"compute": {"gpu_devices_request": 1}},
        {},
        "defaults.compute.gpu_devices_request",
        "not a field",
    ),
    (
        "rule object on a group",
        {},
        {"compute": {"required": True}},
        "rules.compute.required",
        "compute is a group of fields",
    ),
    ("group given a scalar", {"compute": 4}, {}, "defaults.compute", "group of fields"),
    ("rule object not an object", {}, {"image": True}, "rules.image", "must be a rule object"),
    ("rules not an object", {}, ["x"], "rules", "must be an object"),  # type: ignore[list-item]
    # rule keys
    ("unknown rule key", {}, _gpu_rule(maximum=4), f"rules.{GPU}.maximum", "unknown rule"),
    (
        "rule on a field inside items",
        {},
        {"environmentVariables": {"name": {"pattern": "A.*"}}},
        "rules.environmentVariables.name",
        "fields inside environmentVariables items take no rules",
    ),
    ("min on a string", {}, {"image": {"min": 1}}, "rules.image.min", "does not apply"),
    ("canAdd on a scalar", {}, _gpu_rule(canAdd=False), f"rules.{GPU}.canAdd", "does not apply"),
    (
        "step on a float",
        {},
        {"compute": {"cpuCoreRequest": {"min": 0, "step": 1}}},
        "rules.compute.cpuCoreRequest.step",
        "does not apply to a number field",
    ),
    ("pattern on an int", {}, _gpu_rule(pattern="1"), f"rules.{GPU}.pattern", "does not apply"),
    (
        "options on a quantity",
        {},
        {"compute": {"gpuMemoryRequest": {"options": ["1Gi"]}}},
        "rules.compute.gpuMemoryRequest.options",
        "does not apply",
    ),
    ("locked on a map", {}, {"labels": {"locked": ["a"]}}, "rules.labels.locked", "does not apply"),
    (
        "min on a bool",
        {},
        {"security": {"runAsNonRoot": {"min": 0}}},
        "rules.security.runAsNonRoot.min",
        "does not apply",
    ),
    # values of rule keys
    (
        "required not a bool",
        {},
        {"image": {"required": "yes"}},
        "rules.image.required",
        "true or false",
    ),
    ("canEdit not a bool", {}, _gpu_rule(canEdit=0), f"rules.{GPU}.canEdit", "true or false"),
    (
        "min > max",
        {},
        _gpu_rule(min=8, max=4),
        f"rules.{GPU}.min",
        "min (8) is greater than max (4)",
    ),
    (
        "quantity min > max",
        {},
        {"compute": {"cpuMemoryRequest": {"min": "2G", "max": "1Gi"}}},
        "rules.compute.cpuMemoryRequest.min",
        "greater than max",
    ),
    ("int min not whole", {}, _gpu_rule(min=1.5), f"rules.{GPU}.min", "whole number"),
    ("int max a string", {}, _gpu_rule(max="4"), f"rules.{GPU}.max", "whole number"),
    (
        "float min a string",
        {},
        {"compute": {"cpuCoreRequest": {"min": "1"}}},
        "rules.compute.cpuCoreRequest.min",
        "must be a number",
    ),
    (
        "quantity max not a quantity",
        {},
        {"compute": {"gpuMemoryRequest": {"max": "10 gigs"}}},
        "rules.compute.gpuMemoryRequest.max",
        "Kubernetes quantity",
    ),
    ("step without min", {}, _gpu_rule(step=2), f"rules.{GPU}.step", "needs min"),
    ("step zero", {}, _gpu_rule(min=0, step=0), f"rules.{GPU}.step", "greater than 0"),
    ("step negative", {}, _gpu_rule(min=0, step=-2), f"rules.{GPU}.step", "greater than 0"),
    ("step fractional", {}, _gpu_rule(min=0, step=0.5), f"rules.{GPU}.step", "whole number"),
    ("options empty", {}, {"image": {"options": []}}, "rules.image.options", "non-empty list"),
    (
        "options not a list",
        {},
        {"image": {"options": "a"}},
        "rules.image.options",
        "non-empty list",
    ),
    (
        "int options as strings",
        {},
        _gpu_rule(options=["1", "2"]),
        f"rules.{GPU}.options[0]",
        "whole number",
    ),
    (
        "string options as ints",
        {},
        {"image": {"options": [1]}},
        "rules.image.options[0]",
        "a string",
    ),
    (
        "bool as an int option",
        {},
        _gpu_rule(options=[1, True]),
        f"rules.{GPU}.options[1]",
        "whole number",
    ),
    (
        "option outside the field's own values",
        {},
        {"preemptibility": {"options": ["preemptible", "sometimes"]}},
        "rules.preemptibility.options[1]",
        '"sometimes" is never a valid preemptibility',
    ),
    (
        "option object without value",
        {},
        {"image": {"options": [{"displayed": "PyTorch"}]}},
        "rules.image.options[0]",
        '{"value", "displayed"}',
    ),
    (
        "option object with a stray key",
        {},
        {"image": {"options": [{"value": "a", "label": "A"}]}},
        "rules.image.options[0]",
        '{"value", "displayed"}',
    ),
    (
        "displayed not a string",
        {},
        {"image": {"options": [{"value": "a", "displayed": 1}]}},
        "rules.image.options[0].displayed",
        "must be a string",
    ),
    ("option twice", {}, _gpu_rule(options=[1, {"value": 1}]), f"rules.{GPU}.options[1]", "twice"),
    (
        "invalid regex",
        {},
        {"image": {"pattern": "nvcr.io/(.*"}},
        "rules.image.pattern",
        "not a valid regular expression",
    ),
    (
        "over-long regex",
        {},
        {"image": {"pattern": "a" * (MAX_PATTERN_LENGTH + 1)}},
        "rules.image.pattern",
        "too long",
    ),
    (
        "regex not a string",
        {},
        {"image": {"pattern": 5}},
        "rules.image.pattern",
        "regular expression",
    ),
    (
        "locked not a list of keys",
        {},
        {"storage": {"pvc": {"locked": "data"}}},
        "rules.storage.pvc.locked",
        "list of claimName values",
    ),
    (
        "canAdd not a bool",
        {},
        {"tolerations": {"canAdd": "no"}},
        "rules.tolerations.canAdd",
        "true or false",
    ),
    # defaults of the wrong type, reported by the spec model itself
    (
        "int default as a string",
        {"compute": {"gpuDevicesRequest": "4"}},
        {},
        f"defaults.{GPU}",
        "valid integer",
    ),
    (
        "int default below the model's bound",
        {"compute": {"gpuDevicesRequest": -1}},
        {},
        f"defaults.{GPU}",
        "greater than or equal to 0",
    ),
    (
        "float default as text",
        {"compute": {"cpuCoreRequest": "1"}},
        {},
        "defaults.compute.cpuCoreRequest",
        "valid number",
    ),
    (
        "bool default as text",
        {"compute": {"largeShmRequest": "yes"}},
        {},
        "defaults.compute.largeShmRequest",
        "valid boolean",
    ),
    (
        "quantity default malformed",
        {"compute": {"gpuMemoryRequest": "lots"}},
        {},
        "defaults.compute.gpuMemoryRequest",
        "not a Kubernetes quantity",
    ),
    (
        "literal default not allowed",
        {"imagePullPolicy": "Sometimes"},
        {},
        "defaults.imagePullPolicy",
        "'Always', 'IfNotPresent' or 'Never'",
    ),
    ("string-list default a string", {"command": "python"}, {}, "defaults.command", "valid list"),
    ("map default a list", {"labels": ["a"]}, {}, "defaults.labels", "valid dictionary"),
    (
        "map default value not text",
        {"labels": {"team": 1}},
        {},
        'defaults.labels["team"]',
        "valid string",
    ),
    (
        "itemized default item incomplete",
        {"storage": {"pvc": [{"claimName": "data"}]}},
        {},
        "defaults.storage.pvc[0].path",
        "is required",
    ),
    (
        "itemized default item invalid",
        {"environmentVariables": [{"name": "1BAD", "value": "x"}]},
        {},
        "defaults.environmentVariables[0]",
        "environment variable name '1BAD' is invalid",
    ),
    (
        "itemized default repeats a key",
        {"tolerations": [{"key": "gpu"}, {"key": "gpu", "operator": "Exists"}]},
        {},
        "defaults.tolerations",
        'key "gpu" appears more than once',
    ),
    # defaults that break the policy's own rules
    (
        "default above max",
        {"compute": {"gpuDevicesRequest": 8}},
        _gpu_rule(max=4),
        f"defaults.{GPU}",
        "breaks the rule rules.compute.gpuDevicesRequest.max: must be no greater than 4",
    ),
    (
        "default off step",
        {"compute": {"gpuDevicesRequest": 3}},
        _gpu_rule(min=0, step=2),
        f"defaults.{GPU}",
        ".step",
    ),
    (
        "default quantity below min",
        {"compute": {"cpuMemoryRequest": "1G"}},
        {"compute": {"cpuMemoryRequest": {"min": "1Gi"}}},
        "defaults.compute.cpuMemoryRequest",
        "must be at least 1Gi",
    ),
    (
        "default outside options",
        {"preemptibility": "non-preemptible"},
        {"preemptibility": {"options": ["preemptible"]}},
        "defaults.preemptibility",
        "must be one of",
    ),
    (
        "default not matching pattern",
        {"image": "docker.io/evil"},
        {"image": {"pattern": r"nvcr\.io/.+"}},
        "defaults.image",
        "must match the pattern",
    ),
]


@pytest.mark.parametrize(
    ("defaults", "rules", "field", "words"),
    [case[1:] for case in BAD_POLICIES],
    ids=[case[0] for case in BAD_POLICIES],
)
def test_bad_policy_is_reported_at_the_field(
    defaults: dict[str, Any], rules: dict[str, Any], field: str, words: str
) -> None:
    problems = _problems(defaults, rules)
    assert field in problems, problems
    assert words in problems[field]


GOOD_POLICIES: list[tuple[str, WorkloadType, dict[str, Any], dict[str, Any]]] = [
    ("empty", "training", {}, {}),
    (
        "typical",
        "training",
        {
            "image": "nvcr.io/nvidia/pytorch:24.05-py3",
            "compute": {"gpuDevicesRequest": 2, "cpuMemoryRequest": "8Gi"},
            "environmentVariables": [{"name": "HF_HOME", "value": "/data"}],
            "storage": {"pvc": [{"claimName": "data", "path": "/data"}]},
            "labels": {"team": "nlp"},
        },
        {
            "image": {"required": True, "pattern": r"nvcr\.io/.+"},
            "compute": {
                "gpuDevicesRequest": {"min": 0, "max": 8, "step": 2, "canEdit": True},
                "cpuMemoryRequest": {"min": "1G", "max": "64Gi"},
                "cpuCoreRequest": {"min": 0.5, "max": 16},
            },
            "environmentVariables": {"canAdd": True, "locked": ["HF_HOME"]},
            "storage": {"pvc": {"canAdd": False, "locked": ["data"]}},
            "labels": {"required": True},
        },
    ),
    (
        "options with display names and bare values",
        "distributed",
        {"distributedFramework": "PyTorch"},
        {
            "distributedFramework": {
                "options": [{"value": "PyTorch", "displayed": "PyTorch (DDP)"}, "MPI"]
            },
            "numWorkers": {"options": [1, 2, {"value": 4}]},
            "masterSpec": {"compute": {"gpuDevicesRequest": {"max": 1}}},
        },
    ),
    # A rule the submission must satisfy needs no default.
    ("required without a default", "training", {}, {"image": {"required": True}}),
    # Partial defaults that a submission completes are fine.
    ("partial group", "inference", {"servingPort": {"protocol": "grpc"}}, {}),
    ("parallelism without completions", "training", {"parallelism": 4}, {}),
    ("quantity bounds as numbers", "training", {}, {"compute": {"gpuMemoryRequest": {"max": 1e9}}}),
    ("null group", "training", {"compute": None}, {"compute": None}),
]


@pytest.mark.parametrize(
    ("workload_type", "defaults", "rules"),
    [case[1:] for case in GOOD_POLICIES],
    ids=[case[0] for case in GOOD_POLICIES],
)
def test_good_policy_has_no_problems(
    workload_type: WorkloadType, defaults: dict[str, Any], rules: dict[str, Any]
) -> None:
    assert validate_policy(workload_type, defaults=defaults, rules=rules) == []


def test_every_problem_is_listed_at_once() -> None:
    problems = _problems(
        defaults={"compute": {"gpuDevicesRequest": 16}, "imagge": "x"},
        rules={
            "compute": {"gpuDevicesRequest": {"max": 8}, "cpuCoreRequest": {"min": 2, "max": 1}},
            "image": {"pattern": "("},
            "tool": {"required": True},
        },
    )
    assert set(problems) == {
        "defaults.imagge",
        f"defaults.{GPU}",  # 16 > 8 is still found though other rules are broken
        "rules.compute.cpuCoreRequest.min",
        "rules.image.pattern",
        "rules.tool",
    }


def test_problems_serialise() -> None:
    (problem,) = validate_policy("training", defaults={}, rules=_gpu_rule(max=-1, min=0))
    assert problem.to_dict() == {
        "field": f"rules.{GPU}.min",
        "message": "min (0) is greater than max (-1)",
    }


def test_master_spec_fields_validate_like_the_workers() -> None:
    problems = _problems(
        defaults={"masterSpec": {"compute": {"gpuDevicesRequest": 4}}},
        rules={"masterSpec": {"compute": {"gpuDevicesRequest": {"max": 2}}}},
        workload_type="distributed",
    )
    assert list(problems) == [f"defaults.masterSpec.{GPU}"]


def test_a_broken_default_is_not_also_checked_against_rules() -> None:
    # "9" is reported as a wrong type once, not again as breaking max.
    problems = validate_policy(
        "training", defaults={"compute": {"gpuDevicesRequest": "9"}}, rules=_gpu_rule(max=4)
    )
    assert [p.field for p in problems] == [f"defaults.{GPU}"]
    assert "valid integer" in problems[0].message
