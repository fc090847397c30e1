"""The admin endpoints behind `privatelink site ...`: on-premises sites (core/site.py).

Routes, under `/privatelink/admin` beside the tenant endpoints (identity/admin.py) and
behind the same gate (only the default tenant's admin; 401 without a valid token, 403
`AuthorizationFailed` for anyone else):

* `PUT /privatelink/admin/sites/{name}` `{"addressSpace": [prefix, ...], "gatewayIp",
  "sharedKey"}` -> 201 with the site; 409 `SiteAlreadyExists` when one has the name (a
  site is not updated in place: delete it and create it again), 409 `SiteGatewayIpInUse`
  when a public IP or another site holds the address; 400 with the rule's code for a bad
  body (unknown fields too: nothing is silently ignored).
* `GET /privatelink/admin/sites` -> `{"value": [site, ...]}`, oldest first;
  `GET /privatelink/admin/sites/{name}` -> one site, 404 `SiteNotFound`.
* `DELETE /privatelink/admin/sites/{name}` -> 204; 404 `SiteNotFound`.

A site shows `name`, `addressSpace`, `gatewayIp` and `created`; never its shared key (as
a connection's GET never shows its key): whoever set it has it. Errors are ARM error
bodies. After a put or a delete the data plane is told (`on_change`, the control plane's
`poke`), and the answer waits a little for it, as an ARM change does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from fastapi import APIRouter, Body, Request
from fastapi.responses import Response

from privatelink.core import errors
from privatelink.core import site as sitem
from privatelink.core.limits import Limits
from privatelink.identity.admin import PREFIX, AdminGate
from privatelink.store.repository import utc_now

#: The body fields of a PUT, wire name -> what it is.
FIELDS = {
    "addressSpace": "a list of IPv4 prefixes",
    "gatewayIp": "an IPv4 address of the public range",
    "sharedKey": "the pre-shared key",
}


class SiteStore(Protocol):
    """The store's sites (satisfied by `SqlRepository`)."""

    def put_site(self, site: sitem.Site) -> None: ...

    def get_site(self, name: str) -> sitem.Site | None: ...

    def list_sites(self) -> Sequence[sitem.Site]: ...

    def delete_site(self, name: str) -> bool: ...


def view(site: sitem.Site) -> dict[str, Any]:
    """A site as the API shows it (no shared key)."""
    return {
        "name": site.name,
        "addressSpace": list(site.address_space),
        "gatewayIp": site.gateway_ip,
        "created": site.created,
    }


def _body(body: Any) -> dict[str, Any]:
    """The PUT body's fields: a JSON object with exactly the known ones."""
    if not isinstance(body, dict):
        raise errors.InvalidRequestContent(
            "The request body must be a JSON object with addressSpace, gatewayIp and sharedKey."
        )
    unknown = sorted(set(body) - set(FIELDS))
    if unknown:
        raise errors.InvalidRequestContent(
            f"Unknown field '{errors.clip(str(unknown[0]))}' in the site; a site has "
            "addressSpace, gatewayIp and sharedKey."
        )
    for name, what in FIELDS.items():
        if body.get(name) in (None, "", []):
            raise errors.InvalidRequestContent(f"The request body must contain '{name}' ({what}).")
    return body


def build_site_router(
    gate: AdminGate,
    store: SiteStore,
    limits: Limits,
    on_change: Callable[[], None] = lambda: None,
) -> APIRouter:
    """The site routes under `/privatelink/admin`; `on_change()` runs after every put and
    delete that changed something (it tells the data plane)."""
    router = APIRouter(prefix=PREFIX, tags=["admin"])

    def find(name: str) -> sitem.Site:
        found = store.get_site(name)
        if found is None:
            raise errors.SiteNotFound(name=name)
        return found

    @router.put("/sites/{name}")
    def create_site(request: Request, name: str, body: Any = Body(None)) -> Response:
        """Create a site; 201 with it (no shared key)."""

        def action() -> tuple[int, Any]:
            sitem.check_name(name)
            fields = _body(body)
            site = sitem.validate(
                name,
                fields["addressSpace"],
                fields["gatewayIp"],
                fields["sharedKey"],
                limits,
                created=utc_now(),
            )
            store.put_site(site)
            on_change()
            return 201, view(site)

        return gate.run(request, action)

    @router.get("/sites")
    def list_sites(request: Request) -> Response:
        """Every site, oldest first (no shared keys)."""
        return gate.run(request, lambda: (200, {"value": [view(s) for s in store.list_sites()]}))

    @router.get("/sites/{name}")
    def show_site(request: Request, name: str) -> Response:
        """One site by name, without regard to case (no shared key)."""
        return gate.run(request, lambda: (200, view(find(name))))

    @router.delete("/sites/{name}")
    def delete_site(request: Request, name: str) -> Response:
        """Delete a site and free its gateway IP; 204, or 404 when there is none."""

        def action() -> tuple[int, Any]:
            if not store.delete_site(name):
                raise errors.SiteNotFound(name=name)
            on_change()
            return 204, None

        return gate.run(request, action)

    return router
