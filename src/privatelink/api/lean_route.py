"""Routes whose request handling skips FastAPI's general machinery when it has no work.

For every request FastAPI's handler re-walks the endpoint's dependency tree: it looks
each parameter up in the path, query, headers, cookies and body, validates every value
with pydantic, resolves each dependency the same way, and wraps it all in telemetry and
error-context bookkeeping. For the API's reads (a GET of one resource: a `Request`, the
path's strings, and `async def dep(request)` checks) all of that produces what
`request.path_params` already holds, and it was about a fifth of the server's work for
such a GET (docs/benchmarks.md, "API speed").

`LeanRoute` is an `APIRoute` (FastAPI's documented extension point is
`get_route_handler`). When a route qualifies it answers with a handler that does only
what FastAPI would have done for it:

* the route's dependencies (the router's `dependencies=[...]` included) are called in
  FastAPI's order, each once (FastAPI caches a dependency per request), with the request;
* the endpoint is called with the request, the named dependencies' results and the path
  parameters as strings (FastAPI's `str` validation of a path segment returns it as is);
  a plain `def` endpoint runs in the thread pool, as FastAPI runs it;
* it is declared to return a `Response` and sends it as is (what FastAPI does with
  one; returning anything else is a programming error: `TypeError`).

A route qualifies when its endpoint and every dependency take nothing but the request,
plain required `str` path parameters (the endpoint only), and results of such
dependencies; dependencies are `async def`, none has its own dependencies, and the app
has no dependency overrides. Any other route, or a request while overrides are set,
goes through FastAPI unchanged.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar
from typing import Any

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.dependencies.utils import get_typed_return_annotation
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

_included: ContextVar[Any] | None
try:  # the route as included (the router's dependencies merged in), FastAPI 0.165
    from fastapi.routing import _effective_route_context_var as _included
except ImportError:  # pragma: no cover - another FastAPI: every route takes FastAPI's way
    _included = None

Handler = Callable[[Request], Coroutine[Any, Any, Response]]
_SPECIAL = (
    "websocket_param_name",
    "http_connection_param_name",
    "response_param_name",
    "background_tasks_param_name",
    "security_scopes_param_name",
)


def _only_request(dependant: Dependant, *, path_params: bool) -> bool:
    """True when `dependant` asks for nothing FastAPI would have to look up or validate
    (besides plain `str` path parameters when `path_params`)."""
    if dependant.query_params or dependant.header_params or dependant.cookie_params:
        return False
    if dependant.body_params or any(getattr(dependant, name, None) for name in _SPECIAL):
        return False
    if dependant.path_params and not path_params:
        return False
    for field in dependant.path_params:
        info = field.field_info
        if info.annotation is not str or info.metadata or field.alias != field.name:
            return False
    return True


def _plain_dependency(dependant: Dependant) -> bool:
    call = dependant.call
    return (
        call is not None
        and inspect.iscoroutinefunction(call)
        and not dependant.dependencies
        and _only_request(dependant, path_params=False)
        and not getattr(dependant, "own_oauth_scopes", None)
    )


def lean_handler(dependant: Dependant) -> Handler | None:
    """The lean handler for an endpoint's dependant, or None when it does not qualify."""
    endpoint = dependant.call
    if endpoint is None or not _only_request(dependant, path_params=True):
        return None
    if inspect.isgeneratorfunction(endpoint) or inspect.isasyncgenfunction(endpoint):
        return None
    # Only an endpoint declared to return a Response: FastAPI sends one as is, while
    # anything else it would validate and serialize.
    returns = get_typed_return_annotation(endpoint)
    if not (isinstance(returns, type) and issubclass(returns, Response)):
        return None
    if not all(_plain_dependency(d) for d in dependant.dependencies):
        return None
    # FastAPI solves a dependency once per request (its cache) and hands the value to
    # every parameter that names it: call each once, in order.
    calls: list[tuple[Callable[..., Awaitable[Any]], str | None]] = []
    for dep in dependant.dependencies:
        if any(call is dep.call for call, _ in calls):
            if not dep.use_cache:
                return None  # FastAPI would call it again
            continue
        calls.append((dep.call, dep.request_param_name))  # type: ignore[arg-type]
    named = [(dep.name, dep.call) for dep in dependant.dependencies if dep.name]
    request_name = dependant.request_param_name
    path_names = [field.name for field in dependant.path_params]
    is_async = inspect.iscoroutinefunction(endpoint)

    async def handler(request: Request) -> Response:
        solved: dict[Any, Any] = {}
        for call, request_arg in calls:
            solved[call] = await (call(**{request_arg: request}) if request_arg else call())
        kwargs: dict[str, Any] = {name: solved[call] for name, call in named}
        if request_name:
            kwargs[request_name] = request
        params = request.path_params
        for name in path_names:
            kwargs[name] = params[name]
        if is_async:
            response = await endpoint(**kwargs)
        else:
            response = await run_in_threadpool(endpoint, **kwargs)
        if not isinstance(response, Response):
            raise TypeError(f"{endpoint.__qualname__} must return a Response on a lean route")
        return response

    return handler


class LeanRoute(APIRoute):
    """An `APIRoute` that handles qualifying requests without FastAPI's parameter and
    dependency machinery (module docstring); use it as a router's `route_class`."""

    def get_route_handler(self) -> Handler:
        """FastAPI's handler, or the lean one in front of it when the route qualifies."""
        general = super().get_route_handler()
        route: Any = self
        if _included is not None:
            context = _included.get()
            if context is not None and context.original_route is self:
                route = context
        lean = lean_handler(route.dependant)
        if lean is None:
            return general
        provider = route.dependency_overrides_provider

        async def handler(request: Request) -> Response:
            if provider is not None and getattr(provider, "dependency_overrides", None):
                return await general(request)  # overrides: FastAPI resolves them
            return await lean(request)

        return handler
