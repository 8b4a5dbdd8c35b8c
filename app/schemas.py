"""Shared API schema pieces: the camelCase base models, pagination and problem documents."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
)
from pydantic.alias_generators import to_camel

from app.domain.spec import INT64
from app.errors import ValidationFailed

T = TypeVar("T")
K = TypeVar("K")

DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS1035_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"


def in_utc(value: datetime) -> datetime:
    """An aware time in UTC; a ValueError when UTC has no such time (year 9999 at -23:59 is
    year 10000 in UTC: past what Python, and so the answer, can hold)."""
    if value.tzinfo is None:
        return value
    try:
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("must be a time between the years 1 and 9999 in UTC") from None


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
    """Request bodies: unknown fields are rejected, not ignored; numbers are finite."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


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


# A keyset cursor holds the sort key of a page's last row; each list decodes its own by type, so
# that a cursor made by hand ([true], a lone surrogate, 2^64) is a 422, never a value the SQL
# meets. Row ids are strict: JSON's true is not 1 here.
ROW_ID = TypeAdapter(tuple[Annotated[int, Field(strict=True, ge=0, le=INT64.hi)]])
TIME_ID = TypeAdapter(tuple[Annotated[datetime, AfterValidator(in_utc)], uuid.UUID])
NAME = TypeAdapter(tuple[Annotated[str, StringConstraints(max_length=63, pattern=DNS1123_LABEL)]])


def decode_cursor(cursor: str, key: TypeAdapter[K]) -> K:
    """The sort key a cursor of :func:`encode_cursor` holds, as ``key`` types it; 422 when the
    cursor is not one this API issued."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return key.validate_python(json.loads(base64.urlsafe_b64decode(padded.encode())))
    except (ValueError, binascii.Error, UnicodeDecodeError):  # ValidationError included
        raise ValidationFailed(
            "The cursor is not one this API issued.",
            errors=[{"field": "cursor", "message": "invalid cursor; use the `next` of a page"}],
        ) from None


def decode_time_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """A ``(created_at, id)`` keyset cursor."""
    return decode_cursor(cursor, TIME_ID)


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
