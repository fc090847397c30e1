"""accessMode Restricted over the wire, through azure-mgmt-network.

Restricted admits only the subscriptions a service's visibility list names: the server's
admin (Owner of every default-tenant subscription, so an RBAC holder of the service)
connects from a listed subscription, and is refused from an unlisted one with 403
PrivateLinkServiceAccessRestricted, where Default would have let it in; a principal
without rights still gets PrivateLinkServiceNotFound. checkPrivateLinkServiceVisibility
agrees. See tests/unit/test_access_mode.py for the whole table.
"""

from __future__ import annotations

from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError

pytestmark = pytest.mark.integration

LOCATION = "eastus"


def _visible(client: Any, alias: str) -> bool:
    return bool(
        client.private_link_services.begin_check_private_link_service_visibility(
            LOCATION, {"privateLinkServiceAlias": alias}
        )
        .result()
        .visible
    )


def _put_pls(provider: Any, name: str, mode: str | None, **kw: Any) -> Any:
    body = provider.pls_body(**kw)
    if mode is not None:
        body["properties"]["accessMode"] = mode
    return provider.client.private_link_services.begin_create_or_update(
        provider.rg, name, body
    ).result()


def test_restricted_admits_only_listed_subscriptions(world: Any, helpers: Any) -> None:
    provider = world.provider()
    listed = world.consumer()
    unlisted = world.consumer()  # the admin holds rights on the service from here too
    stranger = world.new_tenant().consumer()  # no rights at all
    name = helpers.unique("pls")
    pls = _put_pls(provider, name, "restricted", visibility=[listed.sub])
    assert pls.access_mode == "Restricted"
    got = provider.client.private_link_services.get(provider.rg, name)
    assert got.access_mode == "Restricted"

    # Listed: an automatic request is approved by the admin's approval right.
    pe = listed.create_pe("pe-ok", pls.alias, manual=False)
    (conn,) = pe.private_link_service_connections
    assert conn.private_link_service_connection_state.status == "Approved"
    assert _visible(listed.client, pls.alias) is True

    # Unlisted with rights on the service: refused, and told why (synchronously: 403).
    err = helpers.expect_error(
        lambda: unlisted.create_pe("pe-rbac", pls.id), 403, "PrivateLinkServiceAccessRestricted"
    )
    assert unlisted.sub in str(err.message)
    helpers.expect_error(
        lambda: unlisted.create_pe("pe-rbac2", pls.alias, manual=False),
        403,
        "PrivateLinkServiceAccessRestricted",
    )
    assert _visible(unlisted.client, pls.alias) is False
    # Without rights: as if there were no such service.
    helpers.expect_error(
        lambda: stranger.create_pe("pe-none", pls.alias), 400, "PrivateLinkServiceNotFound"
    )
    assert _visible(stranger.client, pls.alias) is False
    for side, names in ((unlisted, ("pe-rbac", "pe-rbac2")), (stranger, ("pe-none",))):
        for pe_name in names:
            with pytest.raises(ResourceNotFoundError):
                side.client.private_endpoints.get(side.rg, pe_name)
    assert (
        len(
            provider.client.private_link_services.get(
                provider.rg, name
            ).private_endpoint_connections
        )
        == 1
    )

    # Back to Default: the admin's rights admit it again.
    assert _put_pls(provider, name, "Default", visibility=[listed.sub]).access_mode == "Default"
    assert _visible(unlisted.client, pls.alias) is True
    assert unlisted.create_pe("pe-rbac", pls.alias).provisioning_state == "Succeeded"


def test_default_is_default_and_bad_values_are_refused(world: Any, helpers: Any) -> None:
    provider = world.provider()
    name = helpers.unique("pls")
    assert _put_pls(provider, name, None, visibility=[]).access_mode == "Default"
    helpers.expect_error(
        lambda: _put_pls(provider, name, "Private", visibility=[]),
        400,
        "InvalidPrivateLinkServiceAccessMode",
    )
    helpers.expect_error(
        lambda: _put_pls(provider, name, "Restricted", visibility=["*"]),
        400,
        "PrivateLinkServiceRestrictedAccessModeRequiresSubscriptionList",
    )
    assert provider.client.private_link_services.get(provider.rg, name).access_mode == "Default"


def test_an_older_api_version_put_keeps_the_mode(world: Any, helpers: Any) -> None:
    """2024-03-01 (the pinned azure-cli's) has no accessMode: its GET-then-PUT update
    rewrites the service without it, which must not open a Restricted service."""
    provider = world.provider()
    consumer = world.consumer()
    name = helpers.unique("pls")
    _put_pls(provider, name, "Restricted", visibility=[consumer.sub])
    body = provider.pls_body(visibility=[consumer.sub], fqdns=["db.example"])
    url = f"{provider.pls_id(name)}?api-version=2024-03-01"
    reply = provider.server.http.put(url, json=body)
    assert reply.status_code == 200, reply.text
    assert reply.json()["properties"]["accessMode"] == "Restricted"
    got = provider.client.private_link_services.get(provider.rg, name)
    assert (got.access_mode, got.fqdns) == ("Restricted", ["db.example"])
