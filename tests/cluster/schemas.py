"""Validation of objects against the schemas an API server would apply, for tests.

Built-in kinds use ``kubernetes-validate`` (the official OpenAPI schemas, status included);
custom kinds use their CRD's schema as the app has it (``app/rendering/crd_schemas.json``), made
strict: where a CRD lists an object's properties, any other property is an error (an API server
would silently prune it, which would hide a typo in a test fixture or in the simulation).
"""

from __future__ import annotations

import functools
import re
from typing import Any

import jsonschema
from kubernetes_validate.utils import schema_contents
from referencing import Registry, Resource

from app.rendering.validation import crd_validator

KUBERNETES_VERSION = "1.31.0"


@functools.cache
def _validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    custom = crd_validator(api_version, kind)
    if custom is not None:
        return custom
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
