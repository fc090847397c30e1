"""A quick "no route here" for the routers the app includes (FastAPI's routing cost).

FastAPI asks each included router in turn whether it has a route for the request; the
router tests its routes one by one, several Python calls each (about 20,000 machine
instructions per route), and the router that matches tests them again to pick one. A
GET of a private link service went past some thirty routes of the routers before it,
which was a fifth of all the server's work for that request (see docs/benchmarks.md,
"API speed").

`prefilter(router)` puts one quick test in front of that: the router's route paths as
segment templates (a literal segment, or a `{parameter}` that matches any non-empty
segment, as Starlette's `[^/]+` does). A request whose path fits none of them cannot
match the router in FastAPI either (a route matches only when its path does; a wrong
method on a matching path still goes to FastAPI, which answers 405), so the router
answers "no match" at once; any other request goes through FastAPI's own matching
unchanged. The test compares the segments from the last literal backwards (the
resource type first: what tells the routers apart), and a path ending in a newline,
which Starlette's `$` would let through, always goes to FastAPI. (A union of the
routes' regular expressions did the same job at several times the cost: each
alternative rescans the path from the start.)

It works on the router object FastAPI keeps and calls (`APIRouter.matches`, which each
inclusion of the router calls for every request); the templates are rebuilt when routes
are added. It applies only where it can be exact: routers of plain path routes with
string parameters (no nested routers, mounts or converters), included without a
prefix, requests without a root path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, MutableMapping
from typing import Any

from fastapi import APIRouter
from starlette.routing import BaseRoute, Match, Route

Scope = MutableMapping[str, Any]
_MARK = "_privatelink_prefilter"
_PARAMETER = re.compile(r"\{\w+(?::str)?\}")
# Per segment count: for each route, its literal segments (index, text), last first, and
# the indexes of its parameters.
Templates = dict[int, list[tuple[tuple[tuple[int, str], ...], tuple[int, ...]]]]


def path_templates(routes: list[BaseRoute]) -> Templates | None:
    """The routes' paths as segment templates, or None if one is not a plain path route
    with string parameters (its own matching is not just this)."""
    templates: Templates = {}
    for route in routes:
        if not isinstance(route, Route):  # APIRoute is a Route
            return None
        parts = route.path.split("/")
        literals: list[tuple[int, str]] = []
        params: list[int] = []
        for i, part in enumerate(parts):
            if _PARAMETER.fullmatch(part):
                params.append(i)
            elif "{" in part or "}" in part:
                return None  # a parameter inside a segment, or a converter
            else:
                literals.append((i, part))
        templates.setdefault(len(parts), []).append((tuple(reversed(literals)), tuple(params)))
    return templates


def fits(templates: Templates, path: str) -> bool:
    """Whether `path` fits one of the templates (as a route's regular expression would
    match it; a path ending in a newline counts as fitting: Starlette's `$` matches
    before one)."""
    if path.endswith("\n"):
        return True
    parts = path.split("/")
    for literals, params in templates.get(len(parts), ()):
        for i, text in literals:
            if parts[i] != text:
                break
        else:
            if all(parts[i] for i in params):
                return True
    return False


def prefilter(router: APIRouter) -> APIRouter:
    """Let `router` answer "no match" with one expression test; returns `router`.

    Include the router without a prefix. Applying it again (a router shared by several
    apps) changes nothing.
    """
    if getattr(router, _MARK, False):
        return router
    original: Callable[[Scope], tuple[Match, Scope]] = router.matches
    built: list[Any] = [None, None]  # what the routes were when built, the templates

    def matches(scope: Scope) -> tuple[Match, Scope]:
        if scope.get("type") == "http" and not scope.get("root_path"):
            routes = router.routes
            shape = (len(routes), id(routes[0]), id(routes[-1])) if routes else None
            if built[0] != shape:
                built[1] = path_templates(routes)
                built[0] = shape
            templates: Templates | None = built[1]
            if templates is not None and not fits(templates, scope["path"]):
                return Match.NONE, {}
        return original(scope)

    router.matches = matches  # type: ignore[method-assign]
    setattr(router, _MARK, True)
    return router
