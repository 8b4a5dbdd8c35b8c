"""The policy field catalogue follows the spec models: kinds, options, item keys, groups."""

from __future__ import annotations

import json
from typing import Any, Literal

import pytest
from pydantic import BaseModel, Field, ValidationError

from app.domain.fields import FieldInfo, build_catalogue, catalogue, group_paths
from app.domain.quantity import Quantity
from app.domain.spec import (
    SPEC_MODELS,
    WORKLOAD_TYPES,
    CommonSpec,
    SpecModel,
    TrainingSpec,
    WorkloadType,
    item_key,
)


@pytest.mark.parametrize(
    ("workload_type", "path", "kind"),
    [
        ("training", "image", "string"),
        ("training", "imagePullPolicy", "string"),
        ("training", "command", "string-list"),
        ("training", "nodePools", "string-list"),
        ("training", "labels", "map"),
        ("training", "annotations", "map"),
        ("training", "compute.gpuDevicesRequest", "int"),
        ("training", "compute.gpuPortionRequest", "float"),
        ("training", "compute.cpuCoreRequest", "float"),
        ("training", "compute.gpuMemoryRequest", "quantity"),
        ("training", "compute.cpuMemoryLimit", "quantity"),
        ("training", "compute.largeShmRequest", "bool"),
        ("training", "security.runAsNonRoot", "bool"),
        ("training", "completions", "int"),
        ("interactive", "tool", "string"),
        ("distributed", "masterSpec.compute.gpuDevicesRequest", "int"),
        ("distributed", "masterSpecSameAsWorker", "bool"),
        ("inference", "servingPort.container", "int"),
        ("inference", "autoscaling.metricThreshold", "float"),
    ],
)
def test_kind_of_field(workload_type: WorkloadType, path: str, kind: str) -> None:
    assert catalogue(workload_type)[path].kind == kind


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("environmentVariables", "name"),
        ("storage.pvc", "claimName"),
        ("storage.hostPath", "name"),
        ("tolerations", "key"),
        ("ports", "name"),
        ("compute.extendedResources", "resource"),
    ],
)
def test_itemized_lists_carry_their_item_key(path: str, key: str) -> None:
    info = catalogue("training")[path]
    assert info.kind == "itemized"
    assert info.item_key == key
    assert key in [f.path for f in info.item_fields]


def test_fields_inside_items_are_not_policyable() -> None:
    cat = catalogue("training")
    assert "storage.pvc.claimName" not in cat
    assert "environmentVariables.name" not in cat


def test_nested_models_are_groups_not_leaves() -> None:
    cat, groups = catalogue("distributed"), group_paths("distributed")
    for group in ("compute", "storage", "security", "masterSpec", "masterSpec.compute"):
        assert group in groups
        assert group not in cat
    assert {"servingPort", "autoscaling"} <= group_paths("inference")


def test_options_come_from_literal_types() -> None:
    assert catalogue("distributed")["distributedFramework"].options == ("PyTorch", "TF", "MPI")
    assert catalogue("interactive")["tool"].options == ("jupyter", "tensorboard", "none")
    assert catalogue("training")["image"].options is None


def test_type_specific_fields_only_in_their_type() -> None:
    assert "distributedFramework" not in catalogue("training")
    assert "servingPort.container" not in catalogue("interactive")
    assert "completions" in catalogue("training")


def test_bounds_come_from_the_model() -> None:
    info = catalogue("training")["compute.gpuDevicesRequest"]
    assert (info.ge, info.le) == (0, 1024)
    portion = catalogue("training")["compute.gpuPortionRequest"]
    assert (portion.gt, portion.lt) == (0, 1)


def test_a_field_added_to_a_model_appears() -> None:
    class Scratch(SpecModel):
        size: Quantity = Field(description="Scratch size.")

    class Cache(SpecModel):
        name: str
        size: Quantity | None = None

    class ExtendedTraining(TrainingSpec):
        queue_hint: Literal["fast", "cheap"] | None = Field(default=None, description="Queue.")
        scratch: Scratch | None = None
        caches: list[Cache] | None = Field(default=None, json_schema_extra=item_key("name"))

    cat = build_catalogue(ExtendedTraining)
    assert cat["queueHint"].options == ("fast", "cheap")
    assert cat["queueHint"].description == "Queue."
    assert cat["scratch.size"].kind == "quantity"
    assert cat["caches"].item_key == "name"
    # The original fields are still there.
    assert set(catalogue("training")) < set(cat)


def test_a_list_of_models_without_an_item_key_is_refused() -> None:
    class Thing(SpecModel):
        name: str

    class Broken(CommonSpec):
        things: list[Thing] | None = None

    with pytest.raises(TypeError, match="things"):
        build_catalogue(Broken)


def test_an_unknown_field_type_is_refused() -> None:
    class Broken(BaseModel):
        when: complex | None = None

    with pytest.raises(TypeError, match="when"):
        build_catalogue(Broken)


def _sample(info: FieldInfo) -> Any:
    """A value of the field's kind that the model accepts."""
    if info.options:
        return info.options[0]
    return {
        "int": 1,
        "float": 0.5,
        "bool": True,
        "string": "x",
        "quantity": "1Gi",
        "string-list": ["x"],
        "itemized": [],
        "map": {"k": "v"},
    }[info.kind]


def _wrong(info: FieldInfo) -> Any:
    """A value of another kind, which the model must reject."""
    return {
        "int": "many",
        "float": "many",
        "bool": "maybe",
        "string": 5,
        "quantity": "lots",
        "string-list": "x",
        "itemized": "x",
        "map": ["x"],
    }[info.kind]


def _with(path: str, value: Any) -> dict[str, Any]:
    """A spec with ``path`` set, plus what the field's group itself requires."""
    # servingPort.container is required once servingPort is given.
    spec: dict[str, Any] = (
        {"servingPort": {"container": 8000}} if path.startswith("serving") else {}
    )
    node = spec
    *parents, leaf = path.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return spec


@pytest.mark.parametrize("workload_type", WORKLOAD_TYPES)
def test_every_catalogue_path_is_a_spec_field_of_its_kind(workload_type: WorkloadType) -> None:
    model = SPEC_MODELS[workload_type]
    for path, info in catalogue(workload_type).items():
        model.model_validate(_with(path, _sample(info)), strict=True)
        with pytest.raises(ValidationError) as caught:
            model.model_validate(_with(path, _wrong(info)), strict=True)
        assert caught.value.errors()[0]["loc"][: path.count(".") + 1] == tuple(path.split("."))


def test_catalogue_is_json_serialisable_for_explain() -> None:
    dumped = json.loads(json.dumps([f.to_dict() for f in catalogue("distributed").values()]))
    by_field = {d["field"]: d for d in dumped}
    assert by_field["compute.gpuDevicesRequest"]["bounds"] == {"ge": 0, "le": 1024}
    assert "max" in by_field["compute.gpuDevicesRequest"]["ruleKeys"]
    assert by_field["distributedFramework"]["options"] == ["PyTorch", "TF", "MPI"]
    pvc = by_field["storage.pvc"]
    assert pvc["itemKey"] == "claimName"
    assert {f["field"]: f["required"] for f in pvc["itemFields"]} == {
        "claimName": True,
        "path": True,
        "readOnly": False,
    }


@pytest.mark.parametrize(
    ("path", "allowed", "refused"),
    [
        ("compute.gpuDevicesRequest", {"min", "max", "step", "options"}, {"pattern", "canAdd"}),
        ("compute.cpuCoreRequest", {"min", "max"}, {"step", "options"}),
        ("compute.gpuMemoryRequest", {"min", "max"}, {"step", "pattern"}),
        ("image", {"options", "pattern"}, {"min", "locked"}),
        ("storage.pvc", {"canAdd", "locked"}, {"min", "options"}),
        ("compute.largeShmRequest", {"required", "canEdit"}, {"options", "min"}),
    ],
)
def test_rule_keys_by_kind(path: str, allowed: set[str], refused: set[str]) -> None:
    keys = set(catalogue("training")[path].rule_keys)
    assert allowed <= keys
    assert not refused & keys
