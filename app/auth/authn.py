"""Authentication: a bearer credential becomes a :class:`Principal`, or a 401.

Three kinds of credential: the bootstrap admin token (``RUNPLANE_ADMIN_TOKEN``), API tokens
(``rp_...``, matched by hash), and, when configured, OIDC JWTs. Error details never quote the
credential.

Every request is authenticated, so a credential this process has seen lately costs no I/O: what
the database (or the JWT's signature) said of it is kept for
``RUNPLANE_CREDENTIAL_CACHE_SECONDS`` (default 10), keyed by the credential's SHA-256. Expiry is
checked on every use. A token revoked through this process stops working at once; through
another API process, within that bound.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime

import anyio.to_thread
from cachetools import TTLCache

from app.auth import tokens
from app.auth.oidc import OidcVerifier, is_jwt
from app.auth.principal import Principal
from app.db import Database
from app.errors import Unauthorized
from app.projects import repository as project_store

BOOTSTRAP_ADMIN = Principal(name="admin", role="admin", id="admin")
CACHE_SIZE = 100_000


class CredentialRejected(Unauthorized):
    """A known token that may no longer be used; ``principal`` says whose, for the audit log."""

    def __init__(self, detail: str, principal: Principal) -> None:
        super().__init__(detail)
        self.principal = principal


@dataclass(frozen=True, slots=True)
class Known:
    """What was found out about a credential: its principal, or why it is refused."""

    principal: Principal | None
    expires_at: datetime | None = None
    refusal: str | None = None  # "revoked" or "not valid": refused whatever the time


class CredentialCache:
    """One per app (so per process); ``forget_all`` makes a revocation take effect at once."""

    def __init__(self, ttl: float) -> None:
        self._known: TTLCache[str, Known] = TTLCache(maxsize=CACHE_SIZE, ttl=ttl)

    def get(self, digest: str) -> Known | None:
        return self._known.get(digest)

    def put(self, digest: str, known: Known) -> None:
        self._known[digest] = known

    def forget_all(self) -> None:
        self._known.clear()


def bearer(authorization: str | None) -> str:
    scheme, _, credential = (authorization or "").partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise Unauthorized()
    return credential


def is_bootstrap(credential: str, admin_token: str | None) -> bool:
    """The bootstrap admin token: checked first, as it may itself look like an API token."""
    return bool(admin_token) and hmac.compare_digest(
        credential.encode(), (admin_token or "").encode()
    )


async def authenticate(
    credential: str,
    *,
    db: Database,
    admin_token: str,
    oidc: OidcVerifier | None,
    cache: CredentialCache,
) -> Principal:
    if is_bootstrap(credential, admin_token):
        return BOOTSTRAP_ADMIN
    digest = hashlib.sha256(credential.encode()).hexdigest()
    known = cache.get(digest)
    if known is None:
        known = await _find_out(credential, digest, db=db, oidc=oidc)
        cache.put(digest, known)
    return _admit(known)


async def _find_out(
    credential: str, digest: str, *, db: Database, oidc: OidcVerifier | None
) -> Known:
    if tokens.looks_like_api_token(credential):
        async with db.connection() as conn:
            token = await tokens.use(conn, digest)
        if token is None:
            return Known(None, refusal="The bearer token is not valid.")
        principal = tokens.principal_of(token)
        if token.revoked_at is not None:
            return Known(principal, refusal="The bearer token has been revoked.")
        return Known(principal, expires_at=token.expires_at)
    if oidc is not None and is_jwt(credential):
        # The issuer's keys may have to be fetched: once per new token, in a worker thread.
        try:
            verified = await anyio.to_thread.run_sync(oidc.verify, credential)
        except Unauthorized as exc:
            return Known(None, refusal=exc.detail)
        ids = {}
        if verified.role != "admin" and verified.projects:
            async with db.connection() as conn:
                ids = await project_store.ids_by_name(conn, verified.projects)
        return Known(verified.principal(ids), expires_at=verified.expires_at)
    return Known(None, refusal="The bearer token is not valid.")


def _admit(known: Known) -> Principal:
    if known.refusal is not None:
        if known.principal is None:
            raise Unauthorized(known.refusal)
        raise CredentialRejected(known.refusal, known.principal)
    assert known.principal is not None
    if known.expires_at is not None and known.expires_at <= datetime.now(UTC):
        raise CredentialRejected("The bearer token has expired.", known.principal)
    return known.principal
