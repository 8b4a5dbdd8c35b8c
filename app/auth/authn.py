"""Authentication: a bearer credential becomes a :class:`Principal`, or a 401.

Three kinds of credential: the bootstrap admin token (``RUNPLANE_ADMIN_TOKEN``), API tokens
(``rp_...``, matched by hash), and, when configured, OIDC JWTs. Error details never quote the
credential.
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from app.auth import tokens
from app.auth.oidc import OidcVerifier, is_jwt
from app.auth.principal import Principal
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


def authenticate(
    credential: str,
    *,
    session: Session,
    admin_token: str | None,
    oidc: OidcVerifier | None,
) -> Principal:
    # The bootstrap token first: it may itself look like an API token (``rp_...``).
    if admin_token and hmac.compare_digest(credential.encode(), admin_token.encode()):
        return BOOTSTRAP_ADMIN
    if tokens.looks_like_api_token(credential):
        return _api_token(session, credential)
    if oidc is not None and is_jwt(credential):
        return oidc.verify(credential)
    raise Unauthorized("The bearer token is not valid.")


def _api_token(session: Session, credential: str) -> Principal:
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
