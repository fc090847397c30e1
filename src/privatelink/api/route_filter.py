"""A quick "no route here" for the routers the app includes (FastAPI's routing cost).

FastAPI asks each included router in turn whether it has a route for the request; the
router tests its routes one by one, several Python calls each (about 20,000 machine
instructions per route), and the router that matches tests them again to pick one. A
GET of a private link service went past some thirty routes of the routers before it,
which was a fifth of all the server's work for that request (see docs/benchmarks.md,
"API speed").

`prefilter(router)` puts one regular expression in front of that: the union of the
paths of the router's routes. A request whose path matches none of them cannot match
the router in FastAPI either (a route matches only when its path does; a wrong method
on a matching path still goes to FastAPI, which answers 405), so the router answers
"no match" at once; any other request goes through FastAPI's own matching unchanged.

It works on the router object FastAPI keeps and calls (`APIRouter.matches`, which each
inclusion of the router calls for every request); the expression is rebuilt when routes
are added. It applies only where it can be exact: routers of plain routes (no nested
routers or mounts) included without a prefix, requests without a root path.
"""

from __future__ import annotations

import re
from collections.abc import Callable, MutableMapping
from typing import Any

from fastapi import APIRouter
from starlette.routing import BaseRoute, Match, Route

Scope = MutableMapping[str, Any]
_MARK = "_privatelink_prefilter"
# A route's path pattern names its parameters; in a union the names would repeat.
_NAMED_GROUP = re.compile(r"\(\?P<[^>]+>")


def paths_pattern(routes: list[BaseRoute]) -> re.Pattern[str] | None:
    """One expression matching exactly the paths some route matches; None if a route is
    not a plain path route (its own matching is not just its path)."""
    parts = []
    for route in routes:
        if not isinstance(route, Route):  # APIRoute is a Route
            return None
        parts.append("(?:" + _NAMED_GROUP.sub("(?:", route.path_regex.pattern) + ")")
    return re.compile("|".join(parts)) if parts else None


def prefilter(router: APIRouter) -> APIRouter:
    """Let `router` answer "no match" with one expression test; returns `router`.

    Include the router without a prefix. Applying it again (a router shared by several
    apps) changes nothing.
    """
    if getattr(router, _MARK, False):
        return router
    original: Callable[[Scope], tuple[Match, Scope]] = router.matches
    built: list[Any] = [None, None]  # what the routes were when built, the pattern

    def matches(scope: Scope) -> tuple[Match, Scope]:
        if scope.get("type") == "http" and not scope.get("root_path"):
            routes = router.routes
            shape = (len(routes), id(routes[0]), id(routes[-1])) if routes else None
            if built[0] != shape:
                built[1] = paths_pattern(routes)
                built[0] = shape
            pattern: re.Pattern[str] | None = built[1]
            if pattern is not None and pattern.match(scope["path"]) is None:
                return Match.NONE, {}
        return original(scope)

    router.matches = matches  # type: ignore[method-assign]
    setattr(router, _MARK, True)
    return router
