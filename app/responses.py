"""Answers in more than one media type: Kubernetes manifests as JSON, or multi-document YAML."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import yaml
from fastapi.responses import JSONResponse, Response

YAML = "application/yaml"
MANIFESTS_RESPONSE: dict[str, Any] = {
    "description": "Kubernetes objects; multi-document YAML on request",
    "content": {YAML: {"schema": {"type": "string"}}},
}


def manifests(objects: Sequence[Any], accept: str | None) -> Response:
    """JSON, unless the client prefers YAML (``Accept: application/yaml``)."""
    if accept and ("yaml" in accept) and "json" not in accept.split(",")[0]:
        text = yaml.safe_dump_all(objects, sort_keys=False, explicit_start=True)
        return Response(text, media_type=YAML)
    return JSONResponse(objects)
