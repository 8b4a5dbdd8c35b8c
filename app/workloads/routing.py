"""The submission endpoints' route: a short path for well-formed requests.

Per request, FastAPI solves the endpoint's parameters generically (dependencies, query,
headers, the body parsed by ``json`` then validated): about a fifth of a submission's CPU.
:class:`SubmissionRoute` gives a well-formed request (a JSON body its model accepts, at most
a plain ``dryRun``, an ``Idempotency-Key`` within its length) the same values directly, from
the same functions: the principal and access decision of :mod:`app.deps`, the body validated
by its model straight from the bytes. Any other request, and every refusal of a malformed one,
goes through FastAPI's own handler unchanged, as does every request while the app has
``dependency_overrides``; FastAPI also still reads the endpoint's signature for the OpenAPI
document.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Coroutine
from typing import Any, get_type_hints

from fastapi import Request, Response
from pydantic import BaseModel, ValidationError

from app.audit.recorder import AuditedRoute, record_of
from app.deps import authorize, database_of, get_principal, settings_of

PARAMETERS = ("request", "db", "settings", "access", "body", "dry_run", "idempotency_key")
IDEMPOTENCY_KEY_MAX = 255
_DRY_RUN = {b"": False, b"dryRun=true": True, b"dryRun=false": False}


class SubmissionRoute(AuditedRoute):
    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        found = tuple(inspect.signature(endpoint).parameters)
        if found != PARAMETERS:
            raise TypeError(f"{endpoint.__name__} must take {PARAMETERS}, not {found}")
        # Before FastAPI's __init__, which builds the handler.
        self.body_model: type[BaseModel] = get_type_hints(endpoint, include_extras=False)["body"]
        super().__init__(path, endpoint, **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        fastapi_handler = super().get_route_handler()
        endpoint, body_model = self.endpoint, self.body_model

        async def handler(request: Request) -> Response:
            dry_run = _DRY_RUN.get(request.scope["query_string"])
            key = request.headers.get("idempotency-key")
            body = None
            if (
                dry_run is not None
                and (key is None or len(key) <= IDEMPOTENCY_KEY_MAX)
                # Overridden dependencies are FastAPI's to apply.
                and not request.app.dependency_overrides
            ):
                body = await _json_body(request, body_model)
            if body is None:
                return await fastapi_handler(request)
            access = await authorize(request, await get_principal(request))
            response: Response = await endpoint(
                request=request,
                db=database_of(request),
                settings=settings_of(request),
                access=access,
                body=body,
                dry_run=dry_run,
                idempotency_key=key,
            )
            record_of(request.scope).status = response.status_code
            return response

        return handler


async def _json_body(request: Request, model: type[BaseModel]) -> BaseModel | None:
    """The body as ``model``, or None when it is not a JSON document the model accepts."""
    content_type = request.headers.get("content-type", "")
    if content_type.partition(";")[0].strip().lower() != "application/json":
        return None
    raw = await request.body()
    try:
        return model.model_validate_json(raw)
    except ValidationError:
        return None
