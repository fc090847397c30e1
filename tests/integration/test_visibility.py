"""Visibility over the wire: who can find a private link service, by alias or by id."""

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


def _status(pe: Any) -> str:
    (conn,) = pe.manual_private_link_service_connections
    return str(conn.private_link_service_connection_state.status)


def test_outside_visibility_looks_like_a_missing_alias(world: Any, helpers: Any) -> None:
    allowed = world.consumer()
    stranger = world.new_tenant().consumer()  # no RBAC rights on the provider's service
    provider = world.provider()
    pls = provider.create_pls(helpers.unique("pls"), visibility=[allowed.sub])
    fake_alias = pls.alias.replace(pls.alias.split(".")[1], "00000000-0000-4000-8000-000000000000")

    missing = helpers.expect_error(
        lambda: stranger.create_pe("pe-missing", fake_alias), 400, "PrivateLinkServiceNotFound"
    )
    hidden = helpers.expect_error(
        lambda: stranger.create_pe("pe-hidden", pls.alias), 400, "PrivateLinkServiceNotFound"
    )
    assert type(missing) is type(hidden)
    # By resource id the same: a hidden service is indistinguishable from a missing one.
    helpers.expect_error(
        lambda: stranger.create_pe("pe-by-id", pls.id, manual=False),
        400,
        "PrivateLinkServiceNotFound",
    )
    helpers.expect_error(
        lambda: stranger.create_pe("pe-by-id2", pls.id + "-nope", manual=False),
        400,
        "PrivateLinkServiceNotFound",
    )
    # Nothing was created on either side.
    for name in ("pe-missing", "pe-hidden", "pe-by-id", "pe-by-id2"):
        with pytest.raises(ResourceNotFoundError):
            stranger.client.private_endpoints.get(stranger.rg, name)
    assert list(stranger.client.private_endpoints.list(stranger.rg)) == []
    assert list(stranger.client.network_interfaces.list(stranger.rg)) == []
    assert (
        provider.client.private_link_services.get(
            provider.rg, pls.name
        ).private_endpoint_connections
        == []
    )

    assert _visible(allowed.client, pls.alias) is True
    assert _visible(stranger.client, pls.alias) is False
    assert _visible(stranger.client, fake_alias) is False
    # The allowed subscription can connect.
    pe = allowed.create_pe("pe-ok", pls.alias)
    assert _status(pe) == "Pending"


def test_empty_visibility_is_rbac_only(world: Any, helpers: Any) -> None:
    provider = world.provider()
    pls = provider.create_pls(helpers.unique("pls"), visibility=[])
    assert not (pls.visibility and pls.visibility.subscriptions)
    # Another tenant: neither its subscription nor its principal is RBAC-entitled.
    elsewhere = world.new_tenant()
    other = elsewhere.consumer()

    assert _visible(provider.client, pls.alias) is True
    assert _visible(other.client, pls.alias) is False
    assert _visible(elsewhere.client(elsewhere.new_subscription()), pls.alias) is False
    helpers.expect_error(
        lambda: other.create_pe("pe", pls.alias), 400, "PrivateLinkServiceNotFound"
    )

    # The provider's admin (RBAC rights on the service) can connect from another VNet.
    own = world.consumer(provider.sub, prefix="10.1.0.0/16", subnet="10.1.1.0/24")
    pe = own.create_pe("pe-own", pls.alias)
    assert _status(pe) == "Pending"


def test_star_visibility_is_everyone(world: Any, helpers: Any) -> None:
    provider = world.provider()
    pls = provider.create_pls(helpers.unique("pls"), visibility=["*"])
    anyone = world.consumer()
    assert _visible(anyone.client, pls.alias) is True
    pe = anyone.create_pe("pe", pls.alias)
    assert _status(pe) == "Pending"


def test_visibility_change_applies_to_new_requests(world: Any, helpers: Any) -> None:
    consumer = world.new_tenant().consumer()
    provider = world.provider()
    name = helpers.unique("pls")
    pls = provider.create_pls(name, visibility=[])
    assert _visible(consumer.client, pls.alias) is False
    updated = provider.create_pls(name, visibility=[consumer.sub])
    assert updated.alias == pls.alias
    assert _visible(consumer.client, pls.alias) is True
    assert consumer.create_pe("pe", pls.alias).provisioning_state == "Succeeded"
