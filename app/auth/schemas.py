"""Token requests and responses. The secret appears in one model only: the create answer."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, Field, StringConstraints

from app.auth.principal import Role
from app.projects.schemas import ProjectName
from app.schemas import DNS1123_LABEL, ApiModel, InputModel, Page, in_utc

TokenName = Annotated[str, StringConstraints(min_length=1, max_length=63, pattern=DNS1123_LABEL)]


class TokenCreate(InputModel):
    name: TokenName = Field(description="Unique among live tokens.", examples=["alice-laptop"])
    role: Role = Field(description="admin, researcher or viewer.")
    projects: list[ProjectName] = Field(
        default_factory=list,
        max_length=1000,
        description="Projects a researcher or viewer may see; empty for admins.",
    )
    expires_at: Annotated[AwareDatetime, AfterValidator(in_utc)] | None = Field(
        default=None, description="When the token stops working; null for never."
    )


class Token(ApiModel):
    id: uuid.UUID
    name: str
    role: Role
    projects: list[str]
    prefix: str = Field(description="The secret's first characters, to recognise it.")
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None = Field(description="Updated at most once a minute.")


class TokenCreated(Token):
    token: str = Field(description="The secret. Shown this once; store it now.")


class TokenPage(Page[Token]):
    pass
