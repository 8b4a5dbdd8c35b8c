"""Shared API schema pieces: the camelCase base models, pagination and problem documents."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from app.errors import ValidationFailed

T = TypeVar("T")

DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS1035_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"


class ApiModel(BaseModel):
    """Read models: camelCase on the wire."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        from_attributes=True,
    )


class InputModel(ApiModel):
    """Request bodies: unknown fields are rejected, not ignored."""

    model_config = ConfigDict(extra="forbid")


class Page(ApiModel, Generic[T]):
    items: list[T]
    next: str | None = Field(description="Cursor of the next page; null on the last page.")


class ProblemError(BaseModel):
    model_config = ConfigDict(extra="allow")

    field: str = Field(description="Dotted path of the offending field.")
    message: str


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    model_config = ConfigDict(extra="allow")

    type: str
    title: str
    status: int
    detail: str
    instance: str
    errors: list[ProblemError] | None = None


def encode_cursor(*values: Any) -> str:
    raw = json.dumps(list(values), separators=(",", ":"), default=str).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int) -> list[Any]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(values, list) or len(values) != arity:
            raise ValueError
        return values
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ValidationFailed(
            "The cursor is not one this API issued.",
            errors=[{"field": "cursor", "message": "invalid cursor; use the `next` of a page"}],
        ) from None


def decode_time_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """A ``(created_at, id)`` keyset cursor."""
    created, ident = decode_cursor(cursor, 2)
    try:
        return datetime.fromisoformat(str(created)), uuid.UUID(str(ident))
    except ValueError:
        raise ValidationFailed(
            "The cursor is not one this API issued.",
            errors=[{"field": "cursor", "message": "invalid cursor; use the `next` of a page"}],
        ) from None


def encode_time_cursor(created_at: datetime, ident: uuid.UUID) -> str:
    return encode_cursor(created_at.isoformat(), str(ident))


class PageParams(BaseModel):
    limit: int
    cursor: str | None


async def page_params(
    limit: Annotated[int, Query(ge=1, le=500, description="Page size (1-500).")] = 50,
    cursor: Annotated[
        str | None, Query(max_length=512, description="The `next` of the previous page.")
    ] = None,
) -> PageParams:
    return PageParams(limit=limit, cursor=cursor)
