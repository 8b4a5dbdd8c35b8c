"""Safety limits: the per-principal rate limit (429 + Retry-After) and the body size (413)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from app.auth.ratelimit import RateLimiter, TooManyRequests
from tests.auth.conftest import Mint, assert_problem, bearer
from tests.conftest import AUTH, AppFactory


def test_token_bucket_refills_over_time() -> None:
    now = [0.0]
    limiter = RateLimiter(2, clock=lambda: now[0])  # two a minute: one every 30 s
    limiter.check("a")
    limiter.check("a")
    with pytest.raises(TooManyRequests) as exc:
        limiter.check("a")
    assert exc.value.headers["Retry-After"] == "30"
    limiter.check("b")  # buckets are per principal
    now[0] = 29.0
    with pytest.raises(TooManyRequests) as exc:
        limiter.check("a")
    assert exc.value.headers["Retry-After"] == "1"
    now[0] = 31.0
    limiter.check("a")


def test_rate_limit_answers_429_problem_with_retry_after(make_app: AppFactory, mint: Mint) -> None:
    viewer = mint("v", "viewer")
    app = make_app(rate_limit_per_minute=3)
    with TestClient(app, headers=AUTH) as c:
        for _ in range(3):
            assert c.get("/api/v1/projects").status_code == 200
        r = c.get("/api/v1/projects")
        body = assert_problem(r, 429)
        assert int(r.headers["retry-after"]) >= 1
        assert "3 requests a minute" in body["detail"]
        # Another principal has its own bucket; the audit log records the refusal.
        assert c.get("/api/v1/projects", headers=bearer(viewer)).status_code == 200
        assert_problem(c.post("/api/v1/projects", json={"name": "p"}), 429)
    with TestClient(app, headers=bearer(viewer)) as c:
        assert c.get("/api/v1/projects").status_code == 200


def test_no_rate_limit_by_default(client: TestClient) -> None:
    for _ in range(50):
        assert client.get("/api/v1/projects").status_code == 200


def test_body_limit_still_applies(client: TestClient) -> None:
    r = client.post(
        "/api/v1/tokens", content=b"x" * 2_000_000, headers={"Content-Type": "application/json"}
    )
    assert_problem(r, 413)
