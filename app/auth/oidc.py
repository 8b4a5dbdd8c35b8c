"""Bearer JWTs from an OpenID Connect issuer, verified by PyJWT against the issuer's JWKS.

Signatures, ``exp``/``nbf``/``iat``, ``iss`` and ``aud`` are all PyJWT's work; this module only
picks the key, pins the algorithms to asymmetric ones (a JWKS never legitimately carries HMAC
keys, and accepting one would let anyone who reads the JWKS sign tokens) and maps claims to a
:class:`Principal`.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import jwt

from app.auth.principal import ROLES, Principal, Role
from app.config import Settings
from app.errors import Unauthorized

log = logging.getLogger("runplane")

ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"]


def is_jwt(credential: str) -> bool:
    return credential.count(".") == 2


@dataclass(frozen=True, slots=True)
class Verified:
    """What a verified token says: its subject, role and projects (by name: the issuer knows
    no ids; ``app.auth.authn`` binds them to the projects that bear those names now)."""

    subject: str
    role: Role
    projects: list[str]
    expires_at: datetime

    def principal(self, project_ids: Mapping[str, uuid.UUID]) -> Principal:
        return Principal(
            name=self.subject, role=self.role, id=f"oidc:{self.subject}", projects=project_ids
        )


class OidcVerifier:
    """Verifies tokens for one issuer and audience; the JWKS comes from a file or a URL."""

    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks_url: str | None = None,
        jwks_file: Path | None = None,
        role_claim: str = "runplane_role",
        projects_claim: str = "runplane_projects",
        leeway: float = 30.0,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self.role_claim = role_claim
        self.projects_claim = projects_claim
        self.leeway = leeway
        self._file = jwks_file
        self._file_keys: dict[str, jwt.PyJWK] = {}
        self._file_mtime = -1.0
        self._lock = threading.Lock()
        if jwks_file is not None:
            self._load_file()  # fail at start-up, not on the first request
        # PyJWKClient caches the set and refetches it when it meets an unknown kid (rotation).
        self._client = jwt.PyJWKClient(jwks_url, lifespan=300, timeout=5) if jwks_url else None

    @classmethod
    def from_settings(cls, settings: Settings) -> OidcVerifier | None:
        if not settings.oidc_issuer or not settings.oidc_audience:
            return None
        return cls(
            issuer=settings.oidc_issuer,
            audience=settings.oidc_audience,
            jwks_url=settings.oidc_jwks_url,
            jwks_file=settings.oidc_jwks_file,
            role_claim=settings.oidc_role_claim,
            projects_claim=settings.oidc_projects_claim,
            leeway=settings.oidc_leeway_seconds,
        )

    def _key(self, token: str) -> jwt.PyJWK:
        header = jwt.get_unverified_header(token)
        if header.get("alg") not in ALGORITHMS:
            raise jwt.InvalidAlgorithmError("the token's algorithm is not accepted")
        kid = header.get("kid")
        if self._client is not None:
            if not kid:
                raise jwt.InvalidTokenError("the token names no key (kid)")
            return self._client.get_signing_key(kid)
        keys = self._load_file()
        if kid is None and len(keys) == 1:
            return next(iter(keys.values()))
        if kid not in keys:
            raise jwt.InvalidTokenError("the token's key is not in the JWKS")
        return keys[kid]

    def _load_file(self) -> dict[str, jwt.PyJWK]:
        """The file's keys, read again whenever the file changes (key rotation)."""
        assert self._file is not None
        with self._lock:
            try:
                mtime = self._file.stat().st_mtime
                if mtime != self._file_mtime:
                    jwks = jwt.PyJWKSet.from_json(self._file.read_text())
                    self._file_keys = {
                        str(k.key_id or i): k
                        for i, k in enumerate(jwks.keys)
                        if k.key_type in ("RSA", "EC") and k.algorithm_name in ALGORITHMS
                    }
                    self._file_mtime = mtime
            except (OSError, jwt.PyJWTError, ValueError):
                if self._file_mtime < 0:
                    raise
                # A half-written file during rotation: keep the keys we had.
                log.warning(
                    "could not reread the JWKS file %s; keeping its previous keys", self._file
                )
            return self._file_keys

    def verify(self, token: str) -> Verified:
        """Who the token names and when it expires; may fetch the issuer's keys."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=self._key(token),
                algorithms=ALGORITHMS,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("The bearer token has expired.") from None
        except (jwt.PyJWTError, ValueError):
            # PyJWT's messages say why; none of them quotes the token.
            raise Unauthorized("The bearer token is not valid.") from None
        role = claims.get(self.role_claim)
        if role not in ROLES:
            raise Unauthorized(f"The token carries no Runplane role (claim {self.role_claim!r}).")
        return Verified(
            subject=str(claims["sub"]),
            role=role,
            projects=_project_names(claims.get(self.projects_claim)),
            expires_at=datetime.fromtimestamp(float(claims["exp"]) + self.leeway, UTC),
        )


def _project_names(value: Any) -> list[str]:
    """A list of names, or one string of names separated by spaces or commas."""
    if isinstance(value, str):
        return [p for p in value.replace(",", " ").split() if p]
    if isinstance(value, list):
        return [p for p in value if isinstance(p, str) and p]
    return []
