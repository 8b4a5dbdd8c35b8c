"""API tokens: minting, hashing, lookup, revocation and the throttled ``last_used_at``.

A token is ``rp_`` + 43 URL-safe characters (256 random bits). Only its SHA-256 is stored. A
slow password hash (bcrypt, argon2) protects *guessable* secrets; nobody can enumerate 2^256
candidates, so a fast hash loses nothing here, and it lets a request find its token with one
indexed equality lookup instead of trying a slow hash against every row. The lookup compares
digests, never the secret: the timing of the index probe depends on the hash, which an
attacker cannot steer towards a stored one.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import LiteralString

import psycopg

from app.auth.principal import Principal, Role
from app.db import Conn
from app.errors import Conflict, NotFound, ValidationFailed
from app.projects import repository as project_store
from app.schemas import PageParams, decode_time_cursor, encode_time_cursor
from app.sql import columns, fetch_all, fetch_one, page

TOKEN_PREFIX = "rp_"
PREFIX_LENGTH = 11  # "rp_" + 8 characters: enough to tell tokens apart, useless to guess one
# last_used_at is written at most this often per token, so reads stay read-only.
LAST_USED_EVERY_SECONDS = 60


@dataclass(frozen=True, slots=True)
class TokenRow:
    id: uuid.UUID
    name: str
    role: str
    # The projects of its scope that still exist, by name, and their ids in the same order.
    projects: list[str]
    project_ids: list[uuid.UUID]
    prefix: str
    created_at: datetime
    created_by: str
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


def _columns(table: LiteralString) -> LiteralString:
    """The row of ``table`` (api_tokens or a set of its rows): a scope is stored as project ids,
    and reads as the projects those ids still denote. A deleted project's id denotes none."""
    live = f"FROM projects p WHERE p.id = ANY({table}.project_ids) ORDER BY p.name"
    return columns(TokenRow, table).replace(
        f"{table}.projects, {table}.project_ids",
        f"ARRAY(SELECT p.name {live}) AS projects, ARRAY(SELECT p.id {live}) AS project_ids",
    )


def new_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def looks_like_api_token(credential: str) -> bool:
    return credential.startswith(TOKEN_PREFIX)


def principal_of(token: TokenRow) -> Principal:
    return Principal(
        name=token.name,
        role=token.role,  # type: ignore[arg-type]  # the column only ever holds a Role
        id=f"token:{token.id}",
        projects=dict(zip(token.projects, token.project_ids, strict=True)),
    )


async def use(conn: Conn, digest: str) -> TokenRow | None:
    """The token with this secret hash, whatever its state (the caller checks it), recording its
    use at most once a minute, in the same statement."""
    return await fetch_one(
        conn,
        TokenRow,
        f"""
        WITH found AS (SELECT * FROM api_tokens WHERE secret_hash = %(digest)s),
        touched AS (
            UPDATE api_tokens t SET last_used_at = now() FROM found
            WHERE t.id = found.id AND found.revoked_at IS NULL
              AND (found.last_used_at IS NULL
                   OR found.last_used_at < now() - make_interval(secs => %(every)s))
        )
        SELECT {_columns("found")} FROM found
        """,
        {"digest": digest, "every": LAST_USED_EVERY_SECONDS},
    )


async def create(
    conn: Conn,
    *,
    name: str,
    role: Role,
    projects: list[str],
    expires_at: datetime | None,
    created_by: str,
) -> tuple[TokenRow, str]:
    """Store a new token; return it with its secret, which is shown once and never again."""
    problems = []
    if role == "admin" and projects:
        problems.append({"field": "projects", "message": "an admin token is not scoped"})
    if expires_at is not None and expires_at <= datetime.now(UTC):
        problems.append({"field": "expiresAt", "message": "must be in the future"})
    known = await project_store.ids_by_name(conn, projects)
    if projects:
        problems += [
            {"field": "projects", "message": f"project {p!r} does not exist"}
            for p in projects
            if p not in known
        ]
    if problems:
        raise ValidationFailed("The token request is not valid; see `errors`.", errors=problems)
    secret = new_secret()
    try:
        token = await fetch_one(
            conn,
            TokenRow,
            f"""
            INSERT INTO api_tokens (id, name, role, project_ids, prefix, secret_hash,
                                    created_by, expires_at)
            VALUES (%(id)s, %(name)s, %(role)s, %(project_ids)s, %(prefix)s, %(hash)s,
                    %(created_by)s, %(expires_at)s)
            RETURNING {_columns("api_tokens")}
            """,
            {
                "id": uuid.uuid4(),
                "name": name,
                "role": role,
                "project_ids": sorted(set(known.values())),
                "prefix": secret[:PREFIX_LENGTH],
                "hash": hash_secret(secret),
                "created_by": created_by,
                "expires_at": expires_at,
            },
        )
    except psycopg.errors.UniqueViolation:
        raise Conflict(
            f"A live token named {name!r} already exists; revoke it or pick another name.",
            errors=[{"field": "name", "message": "already in use"}],
        ) from None
    assert token is not None
    return token, secret


async def list_page(
    conn: Conn, page_params: PageParams, *, revoked: bool | None
) -> tuple[list[TokenRow], str | None]:
    after = decode_time_cursor(page_params.cursor) if page_params.cursor else None
    rows = await fetch_all(
        conn,
        TokenRow,
        f"""
        SELECT {_columns("api_tokens")} FROM api_tokens
        WHERE (%(revoked)s::bool IS NULL OR (revoked_at IS NOT NULL) = %(revoked)s)
          AND (%(created)s::timestamptz IS NULL OR (created_at, id) < (%(created)s, %(id)s))
        ORDER BY created_at DESC, id DESC LIMIT %(limit)s
        """,
        {
            "revoked": revoked,
            "created": after[0] if after else None,
            "id": after[1] if after else None,
            "limit": page_params.limit + 1,
        },
    )
    return page(rows, page_params.limit, lambda t: encode_time_cursor(t.created_at, t.id))


async def revoke(conn: Conn, token_id: uuid.UUID) -> TokenRow:
    """Revoke at once; revoking a revoked token changes nothing (DELETE is idempotent)."""
    token = await fetch_one(
        conn,
        TokenRow,
        f"""
        UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()) WHERE id = %s
        RETURNING {_columns("api_tokens")}
        """,
        (token_id,),
    )
    if token is None:
        raise NotFound(f"Token {token_id} does not exist.")
    return token
