"""Audit log responses."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from app.schemas import ApiModel, Page


class AuditEntry(ApiModel):
    id: int
    time: datetime
    actor: str = Field(description="Who: a token's name, an OIDC subject, or `anonymous`.")
    actor_id: str | None = Field(description="Stable id: `admin`, `token:<id>`, `oidc:<sub>`.")
    role: str | None
    method: str
    route: str = Field(description="The route template, e.g. `/api/v1/projects/{project}`.")
    target: str | None = Field(description="The resource acted on (name, id, project/type).")
    status: int = Field(description="The HTTP status the request answered.")
    dry_run: bool
    request_id: str | None
    before: dict[str, Any] | None = Field(description="Policies: the document before.")
    after: dict[str, Any] | None = Field(description="Policies: the document after.")


class AuditPage(Page[AuditEntry]):
    pass
