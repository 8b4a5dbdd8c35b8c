"""API tokens: minting, hashing, lookup, revocation and the throttled ``last_used_at``.

A token is ``rp_`` + 43 URL-safe characters (256 random bits). Only its SHA-256 is stored. A
slow password hash (bcrypt, argon2) protects *guessable* secrets; nobody can enumerate 2^256
candidates, so a fast hash loses nothing here, and it lets a request find its token with one
indexed equality lookup instead of trying a slow hash against every row. The lookup compares
digests, never the secret: the timing of the index probe depends on the hash, which an
attacker cannot steer towards a stored one; the final ``hmac.compare_digest`` is belt and
braces.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import or_, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.auth.principal import Principal, Role
from app.errors import Conflict, NotFound, ValidationFailed
from app.models import ApiToken, Project
from app.schemas import PageParams, decode_time_cursor, encode_time_cursor

TOKEN_PREFIX = "rp_"
PREFIX_LENGTH = 11  # "rp_" + 8 characters: enough to tell tokens apart, useless to guess one
# last_used_at is written at most this often per token, so reads stay read-only.
LAST_USED_EVERY = timedelta(minutes=1)


def new_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def looks_like_api_token(credential: str) -> bool:
    return credential.startswith(TOKEN_PREFIX)


def principal_of(token: ApiToken) -> Principal:
    return Principal(
        name=token.name,
        role=token.role,  # type: ignore[arg-type]  # the column only ever holds a Role
        id=f"token:{token.id}",
        projects=frozenset(token.projects),
    )


def find(session: Session, secret: str) -> ApiToken | None:
    """The token this secret belongs to, whatever its state (the caller checks expiry)."""
    digest = hash_secret(secret)
    token = session.scalars(select(ApiToken).where(ApiToken.secret_hash == digest)).one_or_none()
    if token is None or not hmac.compare_digest(token.secret_hash, digest):
        return None
    return token


def touch(session: Session, token: ApiToken, now: datetime) -> None:
    """Record use at most once a minute; never wait for another request's row lock."""
    if token.last_used_at is not None and now - token.last_used_at < LAST_USED_EVERY:
        return
    locked = (
        select(ApiToken.id)
        .where(
            ApiToken.id == token.id,
            or_(
                ApiToken.last_used_at.is_(None),
                ApiToken.last_used_at < now - LAST_USED_EVERY,
            ),
        )
        .with_for_update(skip_locked=True)
        .scalar_subquery()
    )
    session.execute(
        update(ApiToken)
        .where(ApiToken.id == locked)
        .values(last_used_at=now)
        .execution_options(synchronize_session=False)
    )


def create(
    session: Session,
    *,
    name: str,
    role: Role,
    projects: list[str],
    expires_at: datetime | None,
    created_by: str,
) -> tuple[ApiToken, str]:
    """Store a new token; return it with its secret, which is shown once and never again."""
    problems = []
    if role == "admin" and projects:
        problems.append({"field": "projects", "message": "an admin token is not scoped"})
    if expires_at is not None and expires_at <= datetime.now(UTC):
        problems.append({"field": "expiresAt", "message": "must be in the future"})
    if projects:
        known = set(session.scalars(select(Project.name).where(Project.name.in_(projects))))
        problems += [
            {"field": "projects", "message": f"project {p!r} does not exist"}
            for p in projects
            if p not in known
        ]
    if problems:
        raise ValidationFailed("The token request is not valid; see `errors`.", errors=problems)
    secret = new_secret()
    token = ApiToken(
        id=uuid.uuid4(),
        name=name,
        role=role,
        projects=sorted(set(projects)),
        prefix=secret[:PREFIX_LENGTH],
        secret_hash=hash_secret(secret),
        created_by=created_by,
        expires_at=expires_at,
    )
    try:
        with session.begin_nested():
            session.add(token)
    except IntegrityError:
        raise Conflict(
            f"A live token named {name!r} already exists; revoke it or pick another name.",
            errors=[{"field": "name", "message": "already in use"}],
        ) from None
    session.refresh(token)
    return token, secret


def list_page(
    session: Session, page: PageParams, *, revoked: bool | None
) -> tuple[list[ApiToken], str | None]:
    query = (
        select(ApiToken)
        .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())
        .limit(page.limit + 1)
    )
    if revoked is not None:
        query = query.where(
            ApiToken.revoked_at.is_not(None) if revoked else ApiToken.revoked_at.is_(None)
        )
    if page.cursor:
        query = query.where(
            tuple_(ApiToken.created_at, ApiToken.id) < tuple_(*decode_time_cursor(page.cursor))
        )
    rows = list(session.scalars(query))
    more = len(rows) > page.limit
    rows = rows[: page.limit]
    return rows, encode_time_cursor(rows[-1].created_at, rows[-1].id) if more else None


def revoke(session: Session, token_id: uuid.UUID) -> ApiToken:
    """Revoke at once; revoking a revoked token changes nothing (DELETE is idempotent)."""
    token = session.scalars(
        select(ApiToken).where(ApiToken.id == token_id).with_for_update()
    ).one_or_none()
    if token is None:
        raise NotFound(f"Token {token_id} does not exist.")
    if token.revoked_at is None:
        token.revoked_at = datetime.now(UTC)
        session.flush()
    return token
