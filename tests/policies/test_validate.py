"""Policy documents are validated on write, listing every problem (SPEC §3)."""

from __future__ import annotations

from typing import Any

import pytest

from app.domain.spec import WorkloadType
from app.policies.engine import validate_policy

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
    (
        "quantity bound a negative number",
        {},
        {"compute": {"cpuMemoryRequest": {"min": -1}}},
        "rules.compute.cpuMemoryRequest.min",
        "Kubernetes quantity",
    ),
    (
        "quantity bound infinite",
        {},
        {"compute": {"cpuMemoryRequest": {"max": float("inf")}}},
        "rules.compute.cpuMemoryRequest.max",
        "Kubernetes quantity",
    ),
    (
        "quantity bound a boolean",
        {},
        {"compute": {"cpuMemoryRequest": {"max": True}}},
        "rules.compute.cpuMemoryRequest.max",
        "Kubernetes quantity",
    ),
    (
        "float bound infinite",
        {},
        {"compute": {"cpuCoreRequest": {"max": float("inf")}}},
        "rules.compute.cpuCoreRequest.max",
        "must be a number",
    ),
    (
        "rule key on a group in defaults",
        {"compute": {"required": True}},
        {},
        "defaults.compute.required",
        "'compute.required' is not a field of training workloads",
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
        {"image": {"pattern": "a" * 1001}},
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
        "duplicate names after another default",
        {
            "image": "nvcr.io/nvidia/pytorch:24.05-py3",
            "command": ["python", "train.py"],
            "environmentVariables": [{"name": "A", "value": "1"}, {"name": "A", "value": "2"}],
        },
        {},
        "defaults.environmentVariables",
        'name "A" appears more than once',
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
    # Lists of strings repeat values freely: only itemized lists are keyed.
    (
        "list defaults",
        "training",
        {"command": ["python", "train.py"], "args": ["--tag", "a", "--tag", "b"]},
        {"command": {"required": True}, "args": {"canEdit": False}},
    ),
    (
        "defaults that satisfy every kind of rule",
        "training",
        {
            "image": "nvcr.io/nvidia/pytorch:24.05-py3",
            "imagePullPolicy": "Always",
            "compute": {"gpuDevicesRequest": 4, "cpuMemoryRequest": "8Gi"},
            "environmentVariables": [{"name": "A", "value": "1"}],
        },
        {
            "image": {"pattern": r"nvcr\.io/.+", "canEdit": False},
            "imagePullPolicy": {"options": ["Always", "IfNotPresent"]},
            "compute": {
                "gpuDevicesRequest": {"min": 0, "max": 4, "step": 2},
                "cpuMemoryRequest": {"min": 8589934592, "max": "8Gi"},
            },
            "environmentVariables": {"canAdd": False, "locked": ["A"]},
        },
    ),
    ("null group", "training", {"compute": None}, {"compute": None}),
    (
        "min equal to max",
        "training",
        {"compute": {"gpuDevicesRequest": 4}},
        _gpu_rule(min=4, max=4),
    ),
    ("step of one", "training", {}, _gpu_rule(min=0, step=1)),
    ("quantity bound zero", "training", {}, {"compute": {"cpuMemoryRequest": {"min": 0}}}),
    ("pattern of the longest length", "training", {}, {"image": {"pattern": "a" * 1000}}),
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
    # "9" is reported as a wrong type once, not again as breaking max or options.
    for rule in (_gpu_rule(max=4), _gpu_rule(options=[1, 2])):
        problems = validate_policy(
            "training", defaults={"compute": {"gpuDevicesRequest": "9"}}, rules=rule
        )
        assert [p.field for p in problems] == [f"defaults.{GPU}"]
        assert "valid integer" in problems[0].message
    # Items with a bad name are reported as such, not again as a repeated key.
    twice = [{"name": "1BAD", "value": "x"}, {"name": "1BAD", "value": "y"}]
    assert list(_problems({"environmentVariables": twice})) == [
        "defaults.environmentVariables[0]",
        "defaults.environmentVariables[1]",
    ]


def test_one_mistake_does_not_hide_the_next() -> None:
    # The rest of a rule object is checked after an unknown or misplaced rule key.
    problems = _problems(rules=_gpu_rule(maximum=4, max="4"))
    assert set(problems) == {f"rules.{GPU}.maximum", f"rules.{GPU}.max"}
    problems = _problems(rules=_gpu_rule(pattern="1", max="4"))
    assert set(problems) == {f"rules.{GPU}.pattern", f"rules.{GPU}.max"}
    # Every bad option is listed.
    problems = _problems(
        rules=_gpu_rule(options=["1", {"label": 2}, 3, 3, {"value": 4, "displayed": 4}])
    )
    assert set(problems) == {
        f"rules.{GPU}.options[0]",
        f"rules.{GPU}.options[1]",
        f"rules.{GPU}.options[3]",
        f"rules.{GPU}.options[4].displayed",
    }
    problems = _problems(rules={"preemptibility": {"options": ["sometimes", "never"]}})
    assert set(problems) == {"rules.preemptibility.options[0]", "rules.preemptibility.options[1]"}
    # An unknown field, a group's cross-field check and a missing field are left to others,
    # and the spec model's later findings still count.
    assert set(_problems({"compute": {"bogus": 1}, "priorityClass": 5})) == {
        "defaults.compute.bogus",
        "defaults.priorityClass",
    }
    partial = {"compute": {"cpuCoreRequest": 4, "cpuCoreLimit": 2}, "priorityClass": 5}
    assert set(_problems(partial)) == {"defaults.priorityClass"}


@pytest.mark.parametrize(
    ("options", "where"),
    [
        ([{"displayed": "never"}, "preemptible"], "[0]"),
        ([{"value": "preemptible", "displayed": 1}], "[0].displayed"),
        (["preemptible", 1], "[1]"),
        (["preemptible", "sometimes"], "[1]"),
        (["preemptible", "preemptible"], "[1]"),
    ],
)
def test_options_with_a_mistake_are_not_used_to_judge_the_default(
    options: list[Any], where: str
) -> None:
    # One problem, at the options: not a second one for the default they were meant to allow.
    problems = _problems(
        {"preemptibility": "non-preemptible"}, {"preemptibility": {"options": options}}
    )
    assert list(problems) == [f"rules.preemptibility.options{where}"]


@pytest.mark.parametrize(
    ("key", "hinted"),
    [("name", True), ("value", True), ("alpha", False), ("weight", False)],
)
def test_a_rule_on_an_item_field_is_explained(key: str, hinted: bool) -> None:
    problems = _problems(rules={"environmentVariables": {key: {"required": True}}})
    message = problems[f"rules.environmentVariables.{key}"]
    hint = "fields inside environmentVariables items take no rules of their own"
    assert (hint in message) is hinted, message


def test_only_the_first_fifty_unknown_fields_get_a_suggestion() -> None:
    problems = _problems({f"imagge{i:02}": "x" for i in range(60)})
    suggested = [field for field, message in problems.items() if "did you mean" in message]
    assert suggested == [f"defaults.imagge{i:02}" for i in range(50)]


def test_a_refused_pattern_writes_nothing_to_stderr(capfd: pytest.CaptureFixture[str]) -> None:
    assert "rules.image.pattern" in _problems(rules={"image": {"pattern": "nvcr.io/(.*"}})
    assert capfd.readouterr().err == ""


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("nvcr.io/(.*", "missing ): nvcr.io/(.*"),
        ("(?=nvcr)nvcr.io/.*", "invalid perl operator: (?="),
        (r"(a)\1", r"invalid escape sequence: \1"),
    ],
)
def test_a_refused_pattern_says_why_in_re2s_words(pattern: str, reason: str) -> None:
    assert _problems(rules={"image": {"pattern": pattern}}) == {
        "rules.image.pattern": f"is not a valid regular expression: {reason} "
        "(RE2 syntax: no lookaround or backreferences)"
    }


def _labels(count: int) -> dict[str, Any]:
    """A defaults document holding ``count`` keys in all."""
    return {"labels": {f"k{i}": "v" for i in range(count - 1)}}


def _variables(count: int) -> dict[str, Any]:
    """A defaults document of 1 + ``count`` * 3 keys and list items."""
    return {"environmentVariables": [{"name": f"V{i}", "value": "x"} for i in range(count)]}


def test_a_policy_of_up_to_ten_thousand_values_is_checked_field_by_field() -> None:
    # Too many for the spec model, which says so at the field.
    assert set(_problems(defaults=_labels(10_000))) == {"defaults.labels"}
    assert set(_problems(defaults=_variables(3333))) == {"defaults.environmentVariables"}


@pytest.mark.parametrize("document", [_labels(10_001), _variables(3334)])
@pytest.mark.parametrize("root", ["defaults", "rules"])
def test_a_policy_of_more_than_ten_thousand_values_is_refused_at_once(
    root: str, document: dict[str, Any]
) -> None:
    documents: dict[str, Any] = {"defaults": None, "rules": None, root: document}
    found = validate_policy("training", **documents)
    assert [p.to_dict() for p in found] == [
        {"field": root, "message": "has more than 10000 values; no policy needs that many"}
    ]


def test_a_pattern_may_compile_to_at_most_8_mib() -> None:
    # A letter class repeated 400 times fits RE2's program in 8 MiB (not in 7); 450 times does
    # not (but in 9). Measured with google-re2 1.1.20251105: another RE2 may need them anew.
    assert _problems(rules={"image": {"pattern": r"\pL{400}"}}) == {}
    assert _problems(rules={"image": {"pattern": r"\pL{450}"}}) == {
        "rules.image.pattern": "is not a valid regular expression: pattern too large - compile "
        "failed (RE2 syntax: no lookaround or backreferences)"
    }
