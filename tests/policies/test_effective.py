"""The effective policy: project, else global, else none; or a per-field merge (inheritGlobal)."""

from __future__ import annotations

from typing import Any

import pytest

from app.policies.engine import (
    FieldSources,
    InvalidPolicyError,
    apply_policy,
    check_defaults,
    resolve_effective,
)

GPU = "compute.gpuDevicesRequest"

GLOBAL: dict[str, Any] = {
    "defaults": {
        "imagePullPolicy": "Always",
        "compute": {"gpuDevicesRequest": 1},
        "labels": {"org": "acme"},
    },
    "rules": {
        "compute": {"gpuDevicesRequest": {"max": 4}},
        "image": {"pattern": r"nvcr\.io/.+"},
    },
}
PROJECT: dict[str, Any] = {
    "defaults": {"compute": {"gpuDevicesRequest": 2}, "nodeType": "a100"},
    "rules": {"compute": {"gpuDevicesRequest": {"max": 8, "step": 2, "min": 0}}},
}


@pytest.mark.parametrize(
    ("global_policy", "project_policy", "inherit", "source"),
    [
        (None, None, False, "none"),
        (None, None, True, "none"),
        (GLOBAL, None, False, "global"),
        (GLOBAL, None, True, "global"),
        (None, PROJECT, False, "project"),
        (None, PROJECT, True, "project"),
        (GLOBAL, PROJECT, False, "project"),
        (GLOBAL, PROJECT, True, "merged"),
    ],
)
def test_source(
    global_policy: dict[str, Any] | None,
    project_policy: dict[str, Any] | None,
    inherit: bool,
    source: str,
) -> None:
    effective = resolve_effective(
        "training",
        global_policy=global_policy,
        project_policy=project_policy,
        inherit_global=inherit,
    )
    assert effective.source == source


def test_no_policy_passes_the_submission_through() -> None:
    effective = resolve_effective(
        "training", global_policy=None, project_policy=None, inherit_global=False
    )
    submitted = {"image": "anything", "compute": {"gpuDevicesRequest": 64}}
    resolution = apply_policy("training", submitted, effective)
    assert resolution.spec == submitted
    assert resolution.applied_defaults == []
    assert resolution.ok


def test_project_policy_replaces_the_global_one_entirely() -> None:
    effective = resolve_effective(
        "training", global_policy=GLOBAL, project_policy=PROJECT, inherit_global=False
    )
    resolution = apply_policy("training", {"image": "docker.io/x"}, effective)
    # No global default (imagePullPolicy) and no global rule (image pattern) apply.
    assert resolution.spec == {
        "image": "docker.io/x",
        "compute": {"gpuDevicesRequest": 2},
        "nodeType": "a100",
    }
    assert resolution.ok
    assert {s.default for s in effective.fields.values()} == {"project"}
    assert {s.rules for s in effective.fields.values()} <= {"project", None}


def test_inherit_global_merges_field_by_field() -> None:
    effective = resolve_effective(
        "training", global_policy=GLOBAL, project_policy=PROJECT, inherit_global=True
    )
    assert effective.fields == {
        "image": FieldSources(default=None, rules="global"),
        "imagePullPolicy": FieldSources(default="global", rules=None),
        "labels": FieldSources(default="global", rules=None),
        GPU: FieldSources(default="project", rules="project"),
        "nodeType": FieldSources(default="project", rules=None),
    }
    assert effective.defaults == {
        "imagePullPolicy": "Always",
        "compute": {"gpuDevicesRequest": 2},
        "labels": {"org": "acme"},
        "nodeType": "a100",
    }
    # The project's rule object replaces the global one for that field: max 8, not 4.
    assert effective.rules == {
        "compute": {"gpuDevicesRequest": {"max": 8, "step": 2, "min": 0}},
        "image": {"pattern": r"nvcr\.io/.+"},
    }

    ok = apply_policy(
        "training", {"image": "nvcr.io/x", "compute": {"gpuDevicesRequest": 6}}, effective
    )
    assert ok.ok
    assert ok.spec["imagePullPolicy"] == "Always"

    bad = apply_policy(
        "training", {"image": "docker.io/x", "compute": {"gpuDevicesRequest": 5}}, effective
    )
    assert [(v.field, v.rule, v.source) for v in bad.violations] == [
        ("image", "pattern", "global"),
        (GPU, "step", "project"),
    ]


def test_project_rule_only_keeps_the_global_default() -> None:
    effective = resolve_effective(
        "training",
        global_policy=GLOBAL,
        project_policy={"rules": {"compute": {"gpuDevicesRequest": {"max": 2}}}},
        inherit_global=True,
    )
    assert effective.fields[GPU] == FieldSources(default="global", rules="project")
    resolution = apply_policy("training", {}, effective)
    assert resolution.spec["compute"] == {"gpuDevicesRequest": 1}


def test_effective_policy_serialises_with_sources() -> None:
    effective = resolve_effective(
        "training", global_policy=GLOBAL, project_policy=PROJECT, inherit_global=True
    )
    dumped = effective.to_dict()
    assert dumped["source"] == "merged"
    assert dumped["fields"][GPU] == {"default": "project", "rules": "project"}
    assert dumped["fields"]["image"] == {"default": None, "rules": "global"}
    dumped["defaults"]["compute"]["gpuDevicesRequest"] = 99
    assert effective.defaults["compute"]["gpuDevicesRequest"] == 2


def test_a_stored_policy_that_no_longer_compiles_is_refused() -> None:
    with pytest.raises(InvalidPolicyError) as caught:
        resolve_effective(
            "training",
            global_policy={"rules": {"compute": {"gpuDevicesRequest": {"max": "four"}}}},
            project_policy=None,
            inherit_global=False,
        )
    assert [p.field for p in caught.value.problems] == [f"global.rules.{GPU}.max"]


def test_merged_defaults_that_break_global_rules_are_found() -> None:
    # Each policy is valid on its own; together the project's default breaks the global max.
    effective = resolve_effective(
        "training",
        global_policy={"rules": {"compute": {"gpuDevicesRequest": {"max": 4}}}},
        project_policy={"defaults": {"compute": {"gpuDevicesRequest": 8}}},
        inherit_global=True,
    )
    problems = check_defaults(effective)
    assert [p.field for p in problems] == [f"defaults.{GPU}"]
    assert "must be no greater than 4" in problems[0].message
