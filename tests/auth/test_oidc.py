"""OIDC bearer JWTs: a test RSA key, its JWKS as a file (and over HTTP), signed tokens."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient
from jwt.algorithms import RSAAlgorithm
from pydantic import ValidationError

from app.config import Settings
from app.main import create_app
from tests.auth.conftest import TRAINING, assert_problem, bearer
from tests.conftest import make_settings

ISSUER = "https://idp.example"
AUDIENCE = "runplane"


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return new_key()


def jwks(key: rsa.RSAPrivateKey, kid: str = "k1") -> dict[str, Any]:
    public = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
    return {"keys": [{**public, "kid": kid, "alg": "RS256", "use": "sig"}]}


@pytest.fixture
def jwks_file(tmp_path: Path, key: rsa.RSAPrivateKey) -> Path:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps(jwks(key)))
    return path


def sign(key: rsa.RSAPrivateKey, kid: str = "k1", alg: str = "RS256", **claims: Any) -> str:
    now = int(time.time())
    payload = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 300}
    payload.update(claims)
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid})


def oidc_settings(base: Settings | None = None, **overrides: Any) -> Settings:
    """``base`` (the test database's settings) with OIDC on and ``overrides``."""
    values = {"oidc_issuer": ISSUER, "oidc_audience": AUDIENCE, **overrides}
    if base is None:
        return make_settings(**values)
    return make_settings(database_url=base.database_url, **values)


@pytest.fixture
def oidc_client(client: TestClient, jwks_file: Path, settings: Settings) -> Iterator[TestClient]:
    for name in ("team-a", "team-b"):
        assert client.post("/api/v1/projects", json={"name": name}).status_code == 201
    app = create_app(oidc_settings(settings, oidc_jwks_file=jwks_file), reconcile=False)
    with TestClient(app) as c:
        yield c


def submit(c: TestClient, token: str, project: str) -> Any:
    return c.post(
        "/api/v1/workloads/trainings",
        json={"name": "w", "project": project, "spec": TRAINING},
        headers=bearer(token),
    )


def test_role_and_projects_come_from_the_claims(
    oidc_client: TestClient, key: rsa.RSAPrivateKey
) -> None:
    token = sign(key, runplane_role="researcher", runplane_projects=["team-a"])
    assert submit(oidc_client, token, "team-a").status_code == 201
    assert_problem(submit(oidc_client, token, "team-b"), 404)
    assert_problem(
        oidc_client.put("/api/v1/policies/global/trainings", json={}, headers=bearer(token)), 403
    )
    # A space-separated string works as well as a list.
    viewer = sign(key, runplane_role="viewer", runplane_projects="team-a team-b")
    names = oidc_client.get("/api/v1/projects", headers=bearer(viewer)).json()["items"]
    assert [p["name"] for p in names] == ["team-a", "team-b"]
    assert_problem(submit(oidc_client, viewer, "team-a"), 403)
    admin = sign(key, runplane_role="admin", sub="root")
    assert oidc_client.get("/api/v1/audit", headers=bearer(admin)).status_code == 200
    actors = {
        e["actorId"]
        for e in oidc_client.get("/api/v1/audit", headers=bearer(admin)).json()["items"]
    }
    assert {"oidc:alice"} <= actors


@pytest.mark.parametrize(
    "case",
    [
        "wrong-audience",
        "wrong-issuer",
        "expired",
        "no-exp",
        "other-key",
        "unknown-kid",
        "alg-none",
        "hs256-with-public-key",
        "no-role",
        "unknown-role",
        "tampered",
    ],
)
def test_bad_jwts_are_401(oidc_client: TestClient, key: rsa.RSAPrivateKey, case: str) -> None:
    role = {"runplane_role": "admin"}
    token = {
        "wrong-audience": lambda: sign(key, aud="someone-else", **role),
        "wrong-issuer": lambda: sign(key, iss="https://evil.example", **role),
        "expired": lambda: sign(key, exp=int(time.time()) - 3600, **role),
        "no-exp": lambda: sign(key, exp=None, **role),
        "other-key": lambda: sign(new_key(), **role),
        "unknown-kid": lambda: sign(key, kid="k2", **role),
        "alg-none": lambda: jwt.encode(
            {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": 2**31, **role},
            "",
            algorithm="none",
            headers={"kid": "k1"},
        ),
        "hs256-with-public-key": lambda: _hs256_confusion(key, role),
        "no-role": lambda: sign(key),
        "unknown-role": lambda: sign(key, runplane_role="root"),
        "tampered": lambda: _tamper(sign(key, runplane_role="viewer")),
    }[case]()
    r = oidc_client.get("/api/v1/projects", headers=bearer(token))
    body = assert_problem(r, 401)
    assert token not in r.text
    assert token not in json.dumps(body)


def _hs256_confusion(key: rsa.RSAPrivateKey, claims: dict[str, Any]) -> str:
    """The classic attack: sign with HMAC, using the public key as the shared secret."""
    import base64
    import hashlib
    import hmac

    pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
    body = {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": int(time.time()) + 300, **claims}
    payload = b64(json.dumps(body).encode())
    signature = hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


def _tamper(token: str) -> str:
    import base64

    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["runplane_role"] = "admin"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}"


def test_claim_names_are_settings(
    settings: Settings, client: TestClient, jwks_file: Path, key: rsa.RSAPrivateKey
) -> None:
    assert client.post("/api/v1/projects", json={"name": "team-a"}).status_code == 201
    named = oidc_settings(
        settings, oidc_jwks_file=jwks_file, oidc_role_claim="role", oidc_projects_claim="groups"
    )
    with TestClient(create_app(named, reconcile=False)) as c:
        token = sign(key, role="viewer", groups=["team-a"])
        assert [p["name"] for p in c.get("/api/v1/projects", headers=bearer(token)).json()[
            "items"
        ]] == ["team-a"]  # fmt: skip
        assert_problem(c.get("/api/v1/projects", headers=bearer(sign(key))), 401)


def test_without_oidc_a_jwt_is_just_a_bad_token(
    anon_client: TestClient, key: rsa.RSAPrivateKey
) -> None:
    token = sign(key, runplane_role="admin")
    assert_problem(anon_client.get("/api/v1/projects", headers=bearer(token)), 401)


@pytest.fixture
def jwks_server(key: rsa.RSAPrivateKey) -> Iterator[str]:
    document = json.dumps(jwks(key)).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(document)))
            self.end_headers()
            self.wfile.write(document)

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/jwks.json"
    server.shutdown()
    thread.join()


def test_the_jwks_can_come_from_a_url(
    settings: Settings, client: TestClient, jwks_server: str, key: rsa.RSAPrivateKey
) -> None:
    app = create_app(oidc_settings(settings, oidc_jwks_url=jwks_server), reconcile=False)
    with TestClient(app) as c:
        ok = c.get("/api/v1/projects", headers=bearer(sign(key, runplane_role="viewer")))
        assert ok.status_code == 200, ok.text
        bad = c.get("/api/v1/projects", headers=bearer(sign(new_key(), runplane_role="admin")))
        assert_problem(bad, 401)


@pytest.mark.parametrize(
    "overrides",
    [
        {"oidc_issuer": ISSUER},
        {"oidc_issuer": ISSUER, "oidc_audience": AUDIENCE},
        {
            "oidc_issuer": ISSUER,
            "oidc_audience": AUDIENCE,
            "oidc_jwks_url": "https://idp.example/jwks",
            "oidc_jwks_file": "/tmp/jwks.json",
        },
    ],
)
def test_incomplete_oidc_settings_are_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        make_settings(**overrides)


def test_a_rotated_jwks_file_is_read_again(
    settings: Settings, client: TestClient, jwks_file: Path, key: rsa.RSAPrivateKey
) -> None:
    # No credential cache: a token verified before the rotation would stay trusted for its
    # lifetime (RUNPLANE_CREDENTIAL_CACHE_SECONDS), like a revoked API token.
    rotating = oidc_settings(settings, oidc_jwks_file=jwks_file, credential_cache_seconds=0)
    with TestClient(create_app(rotating, reconcile=False)) as c:
        assert c.get(
            "/api/v1/projects", headers=bearer(sign(key, runplane_role="viewer"))
        ).is_success
        rotated = new_key()
        jwks_file.write_text(json.dumps(jwks(rotated, kid="k2")))
        stat = jwks_file.stat()
        os.utime(jwks_file, (stat.st_atime, stat.st_mtime + 10))
        fresh = sign(rotated, kid="k2", runplane_role="viewer")
        assert c.get("/api/v1/projects", headers=bearer(fresh)).status_code == 200
        old = sign(key, runplane_role="viewer")
        assert_problem(c.get("/api/v1/projects", headers=bearer(old)), 401)


def test_a_missing_jwks_file_fails_at_start_up(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        create_app(oidc_settings(oidc_jwks_file=tmp_path / "missing.json"))
