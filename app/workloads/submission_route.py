"""How every submission route handles its requests: FastAPI's handler, with a short way through.

A submission's own work is a few hundred microseconds; FastAPI's generic handling of its
parameters (solving the dependencies one by one, decoding the body, then validating the decoded
value, each query and header parameter) takes a fifth of it again (bench/README.md). So
:class:`SubmissionRoute` answers the ordinary request itself, and hands every other one to
FastAPI's handler, unchanged:

- The short way is built per inclusion of the route, from the dependant FastAPI made for it (the
  include's dependencies, such as ``main.py``'s, with the route's own). It exists only when each
  dependency is an async callable of the request alone (``Authorize``), so that it can run every
  one of them, in FastAPI's order and with its caching; a route with any other dependency, a
  path or cookie parameter, or a required query or header parameter is FastAPI's alone.
- A request takes it only when FastAPI would do nothing more with it: a JSON content type, no
  query string and none of the route's header parameters (they all keep their defaults), no
  dependency override, and a body the model accepts as it stands (``model_validate_json``).
  Anything else (``dryRun``, an ``Idempotency-Key``, a body with a problem) goes to FastAPI,
  whose answer, 422s included, is then the only one there is. A body is validated before the
  dependencies run, so that no dependency (a rate limit's count) runs twice.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response
from fastapi import routing as fastapi_routing
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from app.audit.recorder import AuditedRoute, Handler

_UNSET = object()


@dataclass(frozen=True)
class _Shortcut:
    """What the short way needs to know of a route's dependant, checked once."""

    endpoint: Callable[..., Awaitable[Response]]
    dependencies: list[tuple[str | None, Callable[[Request], Awaitable[Any]]]]
    request_name: str
    body_name: str
    body_model: type[BaseModel]
    defaults: dict[str, Any]  # the query and header parameters, at their defaults
    headers: tuple[str, ...]  # their names, lowercase: present, FastAPI decides
    overrides: Any  # what holds app.dependency_overrides

    @classmethod
    def of(cls, route: Any) -> _Shortcut | None:
        """The shortcut of ``route`` (an APIRoute or FastAPI's context of one inclusion of it),
        or None when some part of its dependant needs FastAPI's handling."""
        d: Dependant = route.dependant
        if (
            d.path_params
            or d.cookie_params
            or len(d.body_params) != 1
            or d.request_param_name is None
            or d.websocket_param_name
            or d.http_connection_param_name
            or d.response_param_name
            or d.background_tasks_param_name
            or d.security_scopes_param_name
            or getattr(route, "_embed_body_fields", False)
            or not inspect.iscoroutinefunction(d.call)
        ):
            return None
        (body,) = d.body_params
        model = body.field_info.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
        params = [*d.query_params, *d.header_params]
        if any(p.field_info.is_required() for p in params):
            return None
        dependencies = []
        for sub in d.dependencies:
            if sub.call is None or not _request_only(sub):
                return None
            dependencies.append((sub.name, sub.call))
        return cls(
            endpoint=d.call,
            dependencies=dependencies,
            request_name=d.request_param_name,
            body_name=body.name,
            body_model=model,
            defaults={p.name: p.get_default() for p in params},
            headers=tuple(p.alias.lower() for p in d.header_params),
            overrides=route.dependency_overrides_provider,
        )

    def takes(self, request: Request) -> bool:
        scope = request.scope
        if scope["query_string"]:
            return False
        content_type = request.headers.get("content-type", "")
        subtype = content_type.partition(";")[0].strip().lower().rpartition("/")[2]
        if subtype != "json" and not subtype.endswith("+json"):
            return False
        if any(name in request.headers for name in self.headers):
            return False
        overrides = getattr(self.overrides, "dependency_overrides", None)
        return not overrides or not any(call in overrides for _, call in self.dependencies)

    async def answer(self, request: Request) -> Response | None:
        """The endpoint's answer, or None: FastAPI's handler answers instead."""
        try:
            body = self.body_model.model_validate_json(await request.body())
        except ValidationError:
            return None
        values: dict[str, Any] = {**self.defaults, self.request_name: request, self.body_name: body}
        solved: dict[Any, Any] = {}
        for name, call in self.dependencies:
            value = solved.get(call, _UNSET)
            if value is _UNSET:
                value = solved[call] = await call(request)
            if name is not None:
                values[name] = value
        return await self.endpoint(**values)


def _request_only(sub: Dependant) -> bool:
    """A dependency the short way can run: async, of the request alone, cached."""
    call = sub.call
    return (
        call is not None
        and sub.use_cache
        and sub.request_param_name is not None
        and not (
            sub.path_params
            or sub.query_params
            or sub.header_params
            or sub.cookie_params
            or sub.body_params
            or sub.dependencies
            or sub.security_scopes_param_name
            or sub.background_tasks_param_name
            or sub.response_param_name
        )
        and (
            inspect.iscoroutinefunction(call)
            or inspect.iscoroutinefunction(getattr(call, "__call__", None))  # noqa: B004
        )
    )


def _this_inclusion(route: APIRoute) -> Any:
    """FastAPI's context of the inclusion whose handler is being built (it holds the include's
    dependencies), else the route itself. FastAPI >= 0.165 builds a handler per inclusion,
    with this context set; earlier versions copied the route per inclusion instead."""
    var = getattr(fastapi_routing, "_effective_route_context_var", None)
    context = var.get() if var is not None else None
    return context if context is not None and context.original_route is route else route


class SubmissionRoute(AuditedRoute):
    """The route class of the submission endpoints: FastAPI's handler, answering the ordinary
    request the short way (module docstring)."""

    def answering_handler(self) -> Handler:
        generic = super().answering_handler()
        shortcut = _Shortcut.of(_this_inclusion(self))
        if shortcut is None:
            return generic

        async def handler(request: Request) -> Response:
            if shortcut.takes(request):
                response = await shortcut.answer(request)
                if response is not None:
                    return response
            return await generic(request)

        return handler
