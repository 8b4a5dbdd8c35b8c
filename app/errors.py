"""The AppError hierarchy and its rendering as RFC 9457 ``application/problem+json``."""

from __future__ import annotations

from typing import Any

PROBLEM_JSON = "application/problem+json"
PROBLEM_BASE = "https://runplane.io/problems/"


class AppError(Exception):
    """A business error: never a 500. ``errors`` lists field-level problems."""

    status = 400
    title = "Bad request"
    slug = "bad-request"

    def __init__(
        self,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}

    def problem(self, instance: str) -> dict[str, Any]:
        return problem_body(
            status=self.status,
            title=self.title,
            slug=self.slug,
            detail=self.detail,
            instance=instance,
            errors=self.errors,
        )


class Unauthorized(AppError):
    status, title, slug = 401, "Unauthorized", "unauthorized"

    def __init__(self, detail: str = "A valid bearer token is required.") -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(AppError):
    status, title, slug = 403, "Forbidden", "forbidden"


class NotFound(AppError):
    status, title, slug = 404, "Not found", "not-found"


class Conflict(AppError):
    status, title, slug = 409, "Conflict", "conflict"


class PreconditionFailed(AppError):
    status, title, slug = 412, "Precondition failed", "precondition-failed"


class ValidationFailed(AppError):
    status, title, slug = 422, "Validation failed", "validation-failed"


class Unavailable(AppError):
    """A dependency (the cluster's API server) cannot answer now."""

    status, title, slug = 503, "Service unavailable", "service-unavailable"


class PolicyViolation(ValidationFailed):
    title, slug = "Policy violation", "policy-violation"


def problem_body(
    *,
    status: int,
    title: str,
    slug: str,
    detail: str,
    instance: str,
    errors: list[dict[str, Any]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
        "instance": instance,
    }
    if errors is not None:
        body["errors"] = errors
    body.update(extra)
    return body
