"""FastAPI dependencies shared by the resource routers: the control plane and the caller."""

from __future__ import annotations

from fastapi import Request

from privatelink.core.principal import Principal
from privatelink.service import ControlPlane


def control_plane(request: Request) -> ControlPlane:
    """The app's control plane."""
    plane: ControlPlane = request.app.state.control_plane
    return plane


def caller(request: Request) -> Principal:
    """The authenticated principal (set by the auth dependency on the ARM routers)."""
    principal: Principal = request.state.principal
    return principal


def page_size(request: Request) -> int:
    """Items per list page."""
    size: int = request.app.state.page_size
    return size
