"""API tokens: a hash of the secret, a visible prefix, a role and the projects it may touch."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ARRAY, DateTime, Index, String, Uuid, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, IdMixin, TimestampMixin


class ApiToken(IdMixin, TimestampMixin, Base):
    __tablename__ = "api_tokens"
    __table_args__ = (
        # A name identifies a live token for humans; a revoked token frees its name.
        Index(
            "uq_api_tokens_name_live",
            "name",
            unique=True,
            postgresql_where=text("revoked_at IS NULL"),
        ),
    )

    name: Mapped[str] = mapped_column(String(63))
    role: Mapped[str] = mapped_column(String(16))
    # The projects it is scoped to, by id: a name is free again once its project is deleted,
    # and must not carry the scope over to a new project of that name. A deleted project's id
    # stays here and matches no project any more. Empty for admin tokens.
    project_ids: Mapped[list[uuid.UUID]] = mapped_column(
        ARRAY(Uuid), default=list, server_default="{}"
    )
    # The first characters of the secret, to recognise a token in lists; never enough to use it.
    prefix: Mapped[str] = mapped_column(String(16))
    # SHA-256 (hex) of the secret: requests are matched by this hash, the secret is never stored.
    secret_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_by: Mapped[str] = mapped_column(String(255), default="")
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Written at most once a minute per token (see app.auth.tokens.touch), not on every request.
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
