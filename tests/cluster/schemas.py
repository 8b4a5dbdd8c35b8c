"""Validation of objects against the schemas an API server would apply, for tests.

Built-in kinds use ``kubernetes-validate`` (the official OpenAPI schemas, status included);
Kubeflow kinds use the CRDs in ``shared/crds``, made strict: where a CRD lists an object's
properties, any other property is an error (an API server would silently prune it, which would
hide a typo in a test fixture or in the simulation).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from kubernetes_validate.utils import schema_contents
from referencing import Registry, Resource

KUBERNETES_VERSION = "1.31.0"
CRDS = Path(__file__).resolve().parents[3] / "shared" / "crds"
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRDs are megabytes of YAML


def _strict(schema: Any) -> Any:
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@functools.cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    schemas = {}
    for path in sorted(CRDS.glob("*.yaml")):
        crd = yaml.load(path.read_text(), Loader=_LOADER)
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            schema = _strict(version["schema"]["openAPIV3Schema"])
            schemas[(f"{group}/{version['name']}", kind)] = schema
    return schemas


@functools.cache
def _validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    if api_version.startswith("kubeflow.org/"):
        if not CRDS.is_dir():
            pytest.skip(f"the Kubeflow CRDs are not at {CRDS}")
        return jsonschema.Draft7Validator(crd_schemas()[(api_version, kind)])
    # What kubernetes_validate.validate(strict=True) does, with the schemas loaded once: it
    # reads the large definitions file on every call.
    directory = f"kubernetes-json-schema/v{KUBERNETES_VERSION}-local-strict"
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    schema = schema_contents(f"{directory}/{kind.lower()}-{group_version}.json", KUBERNETES_VERSION)
    definitions = schema_contents(f"{directory}/_definitions.json", KUBERNETES_VERSION)
    registry = Resource.from_contents(definitions) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.Draft202012Validator(schema, registry=registry)


def validate(obj: dict[str, Any]) -> None:
    """Raise if ``obj`` (status included) is not what the API server would hold."""
    _validator(obj.get("apiVersion", ""), obj.get("kind", "")).validate(obj)
