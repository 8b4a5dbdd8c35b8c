"""Authentication: a bearer credential becomes a :class:`Principal`, or a 401.

Three kinds of credential: the bootstrap admin token (``RUNPLANE_ADMIN_TOKEN``), API tokens
(``rp_...``, matched by hash), and, when configured, OIDC JWTs. Error details never quote the
credential.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime

from app.auth import tokens
from app.auth.oidc import OidcVerifier, is_jwt
from app.auth.principal import Principal
from app.db import Database
from app.errors import Unauthorized

BOOTSTRAP_ADMIN = Principal(name="admin", role="admin", id="admin")


class CredentialRejected(Unauthorized):
    """A known token that may no longer be used; ``principal`` says whose, for the audit log."""

    def __init__(self, detail: str, principal: Principal) -> None:
        super().__init__(detail)
        self.principal = principal


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


def authenticate(
    credential: str,
    *,
    db: Database,
    admin_token: str | None,
    oidc: OidcVerifier | None,
) -> Principal:
    """May do I/O (an API token lookup, an OIDC key fetch): call it from a worker thread."""
    if is_bootstrap(credential, admin_token):
        return BOOTSTRAP_ADMIN
    if tokens.looks_like_api_token(credential):
        return _api_token(db, credential)
    if oidc is not None and is_jwt(credential):
        return oidc.verify(credential)
    raise Unauthorized("The bearer token is not valid.")


def _api_token(db: Database, credential: str) -> Principal:
    # A transaction of its own: the use of a token is recorded even when the request fails.
    with db.session() as session:
        token = tokens.find(session, credential)
        if token is None:
            raise Unauthorized("The bearer token is not valid.")
        principal = tokens.principal_of(token)
        now = datetime.now(UTC)
        if token.revoked_at is not None:
            raise CredentialRejected("The bearer token has been revoked.", principal)
        if token.expires_at is not None and token.expires_at <= now:
            raise CredentialRejected("The bearer token has expired.", principal)
        tokens.touch(session, token, now)
    return principal
