"""FastAPI dependencies shared by the resource routers: the control plane and the caller.

They are `async def` although they do no I/O: FastAPI runs a plain `def` dependency in
the thread pool, a hop per dependency per request that costs more than the dependency.
"""

from __future__ import annotations

from fastapi import Request

from privatelink.api.authorize import access_of
from privatelink.core.authorization import Access
from privatelink.core.principal import Principal
from privatelink.service import ControlPlane


async def control_plane(request: Request) -> ControlPlane:
    """The app's control plane."""
    plane: ControlPlane = request.app.state.control_plane
    return plane


async def caller(request: Request) -> Access:
    """The caller's access: its principal and role assignments (set by `authorize`)."""
    return access_of(request)


async def principal(request: Request) -> Principal:
    """The authenticated principal (set by the gate on ARM paths)."""
    found: Principal = request.state.principal
    return found


async def page_size(request: Request) -> int:
    """Items per list page."""
    size: int = request.app.state.page_size
    return size
